//! `farside serve`: builds the listeners from the configuration and runs until a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use farside_io::SocketOptions;
use farside_stun::binding::{AlternateAddress, BindingConfig, BindingServer};
use farside_stun::partner::{PartnerBook, PartnerConfig};

use crate::config::Config;
use crate::control::admin;
use crate::control::credentials::{self, CredentialsCell};
use crate::dataplane::relay_ports::PortPool;
use crate::dataplane::turn::TurnShared;
use crate::dataplane::{tcp, udp};
use crate::telemetry::Metrics;
use crate::telemetry::turn::TurnMetrics;

/// How often the kernel's drop counters are checked for the log.
const KERNEL_DROP_CHECK: Duration = Duration::from_secs(10);

/// Runs the server until SIGINT or SIGTERM; SIGHUP reloads the file (`reload`).
pub fn run(
    config: Config,
    from_defaults: bool,
    mut reload: crate::control::reload::Reload,
    log: Arc<crate::telemetry::log_ring::LogRing>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let stun = &config.stun;
    let workers = crate::config::worker_threads(stun.workers);
    // In partner mode the alternate IP is a partner's (chosen per client); only the primary
    // IP's two ports are ours to bind.
    let alternate = stun.rfc5780_primary().and_then(|p| {
        Some(AlternateAddress {
            primary_ip: p.ip(),
            primary_port: p.port(),
            alternate_ip: stun
                .alternate_address
                .or_else(|| stun.partners.first().copied())?,
            alternate_port: stun.rfc5780_alternate_port(p),
        })
    });
    let partners = alternate.filter(|_| !stun.partners.is_empty()).map(|alt| {
        Arc::new(PartnerBook::new(
            PartnerConfig {
                primary: alt.address(false, false),
                alternate_port: alt.alternate_port,
                partners: stun.partners.clone(),
                secrets: stun
                    .partner_secrets
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect(),
                max_age: Duration::from_secs(stun.partner_max_age),
                rate_limit: stun.partner_rate_limit,
                heartbeat: Duration::from_secs(stun.partner_heartbeat),
            },
            crate::runtime::clock::now(),
        ))
    });
    let server = Arc::new(BindingServer::new(BindingConfig {
        alternate,
        software: stun.software.clone(),
    }));

    let mut udp_addresses: Vec<SocketAddr> = Vec::new();
    for &a in &stun.listen {
        match alternate.filter(|alt| alt.address(false, false) == a) {
            Some(alt) if partners.is_some() => {
                udp_addresses.extend([alt.address(false, false), alt.address(false, true)]);
            }
            Some(alt) => udp_addresses.extend(alt.all()),
            None => udp_addresses.push(a),
        }
    }
    if udp_addresses.len() > farside_io::MAX_FDS {
        anyhow::bail!(
            "stun.listen: too many addresses (at most {})",
            farside_io::MAX_FDS
        );
    }
    // With no configuration file, an IPv6 wildcard that cannot be bound (IPv6 disabled) is
    // skipped with a warning; an address the operator asked for must work.
    if from_defaults {
        udp_addresses.retain(|a| {
            if a.is_ipv6()
                && farside_io::bind_udp(SocketAddr::new(a.ip(), 0), SocketOptions::default())
                    .is_err()
            {
                tracing::warn!("S106 IPv6 is not available here; not listening on {a}");
                return false;
            }
            true
        });
    }

    let metrics = Arc::new(Metrics::new(config.admin.source_table_size));
    reload.live.sources = Some(Arc::clone(&metrics.sources));
    reload.live.log = Some(Arc::clone(&log));
    if let Some(book) = &partners {
        metrics.register_partners(Arc::clone(book));
    }
    let opts = SocketOptions {
        reuse_port: true,
        recv_buffer: stun.recv_buffer,
        send_buffer: stun.send_buffer,
        packet_info: false,
    };
    let sockets = udp::bind_all(&udp_addresses, workers, opts, &metrics)?;
    let credentials = credentials::from_store(&config)?;
    let turn = turn_shared(&config, credentials.clone())?;
    reload.live.turn = turn.clone();
    if let Some(t) = &turn {
        metrics.register_turn(Arc::clone(&t.counters));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("farside-ctl")
        .enable_all()
        .build()
        .context("start the control-plane runtime")?;
    let shutdown = Arc::new(AtomicBool::new(false));

    let admin_listener = match config.admin.address() {
        Some(addr) => Some(runtime.block_on(admin::listen(addr))?),
        None => None,
    };
    let token_file = crate::control::token::path(&config);
    let token = match admin_listener {
        Some(_) => Some(crate::control::token::load_or_create(&token_file)?),
        None => None,
    };

    let handles = udp::spawn_workers(
        sockets,
        Arc::clone(&server),
        partners.clone(),
        turn.clone(),
        stun.batch,
        &metrics,
        Arc::clone(&shutdown),
    )?;
    for a in &udp_addresses {
        tracing::info!("S001 STUN listening on udp {a} ({workers} workers)");
    }
    let mut handles = handles;
    let mut running = vec![format!("STUN on {}", list(&udp_addresses))];
    if let Some(t) = &turn {
        running.push(format!(
            "TURN relaying from {}",
            [t.relay_v4, t.relay_v6]
                .iter()
                .flatten()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    // The SIP server's line to the RTP relay, when both run (calls relayed by the policy, and
    // the echo service's).
    let rtp = &config.rtp;
    let sip_on = config.sip.enabled.wanted() && credentials.is_some();
    let (mut sip_link, media_link) = if sip_on && rtp.enabled.wanted() {
        let (sip, media) =
            crate::media::link::pair().context("S502 the SIP server's line to the RTP relay")?;
        (Some(sip), Some(media))
    } else {
        (None, None)
    };
    let calls = Arc::new(crate::control::sessions::CallBoard::default());
    let mut calls_running = false;
    // The RTP relay, driven over ng and by the SIP server; started first, so that SIP knows
    // whether it may hand calls to it.
    if rtp.enabled.wanted() && rtp.relay_address().is_some() {
        let started = crate::media::spawn(
            crate::media::MediaShell {
                relay: rtp
                    .relay_config()
                    .map(|mut r| {
                        r.peers = config.with_own_addresses(r.peers);
                        r
                    })
                    .map_err(|e| anyhow::anyhow!("[rtp]: {e}"))?,
                bind: rtp.address.clone(),
                ports: (rtp.ports.0, rtp.ports.1),
                ng: rtp.ng_listen.iter().map(|l| l.0).collect(),
                link: media_link,
                receive_buffer: rtp.receive_buffer,
                workers: crate::config::worker_threads(rtp.workers),
            },
            {
                let c = Arc::new(crate::telemetry::rtp::RtpCounters::default());
                metrics.register_rtp(Arc::clone(&c));
                c
            },
            &calls,
            Arc::clone(&shutdown),
        );
        match soft(started, rtp.enabled, "RTP relay", "rtp.enabled")? {
            Some(h) => {
                handles.extend(h);
                calls_running = true;
                running.push(format!(
                    "RTP relay on {} ports {}-{}",
                    list(&rtp.address),
                    rtp.ports.0,
                    rtp.ports.1
                ));
            }
            None => sip_link = None,
        }
    }
    let mut sip_board = None;
    if let (true, Some(cell)) = (sip_on, &credentials) {
        let sip = &config.sip;
        // Edge mode: the upstream's name is looked up once, at start.
        let upstream = match (sip.mode, &sip.upstream) {
            (crate::config::sip::Mode::Edge, Some(u)) => Some(
                std::net::ToSocketAddrs::to_socket_addrs(&(u.host.as_str(), u.port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .with_context(|| {
                        format!("S412 cannot resolve sip.upstream {}:{}", u.host, u.port)
                    })?,
            ),
            _ => None,
        };
        let counters = Arc::new(crate::telemetry::sip::SipCounters::default());
        metrics.register_sip(Arc::clone(&counters));
        let tls = match (sip.needs_tls(), &config.tls.cert, &config.tls.key) {
            (true, Some(cert), Some(key)) => {
                Some(crate::net::tls_reload::TlsFiles::load(cert, key)?)
            }
            _ => None,
        };
        let policy = match sip_link {
            Some(_) => rtp.policy(),
            None => farside_sip::media::RelayPolicy::Never,
        };
        let settings = Arc::new(crate::runtime::versioned::Versioned::new(sip.settings()));
        reload.live.sip = Some(Arc::clone(&settings));
        let board = Arc::new(crate::control::sessions::SipBoard::default());
        sip_board = Some(Arc::clone(&board));
        let shell = crate::sip::SipShell {
            board,
            settings,
            server: sip.server(upstream, stun.software.clone(), policy),
            limits: sip.stream_limits(),
            stream_counters: {
                let c = Arc::new(crate::telemetry::stream::StreamCounters::new("SIP"));
                metrics.register_sip_streams(Arc::clone(&c));
                c
            },
            tls,
            dial_tls: dial_tls(sip)?,
            ws_origins: sip.ws_origins(),
            write_behind: std::time::Duration::from_secs(sip.write_behind.0),
            store_url: config.store.url.clone(),
            node: config.store.node.clone(),
            relay: sip_link.map(|l| Box::new(l) as Box<dyn farside_sip::media::MediaRelay + Send>),
            stun_seen: Arc::clone(&metrics.stun_seen) as _,
        };
        let started = crate::sip::spawn(shell, Arc::clone(cell), counters, Arc::clone(&shutdown));
        if let Some(h) = soft(started, sip.enabled, "SIP", "sip.enabled")? {
            handles.push(h);
            running.push(format!(
                "SIP {} for {:?} on {}",
                match sip.mode {
                    crate::config::sip::Mode::Registrar => "registrar",
                    crate::config::sip::Mode::Edge => "edge",
                },
                sip.domain,
                sip.listen
                    .iter()
                    .map(|l| format!(
                        "{} {}",
                        l.transport.via_name().to_ascii_lowercase(),
                        l.address
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    // One thread serves STUN (and TURN, when on) over TCP and TLS.
    let tcp: Vec<SocketAddr> = stun
        .listen
        .iter()
        .copied()
        .filter(|a| stun.tcp && udp_addresses.contains(a))
        .collect();
    if !tcp.is_empty() || !config.tls.listen.is_empty() {
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) if !config.tls.listen.is_empty() => {
                Some(crate::net::tls_reload::TlsFiles::load(cert, key)?)
            }
            _ => None,
        };
        let settings = tcp::StreamSettings {
            tcp,
            tls_addresses: config.tls.listen.clone(),
            tls,
            limits: stun.stream_limits(),
            counters: Arc::clone(&metrics.stun_streams),
            stun_counters: Arc::clone(&metrics.tcp_stun),
        };
        handles.push(tcp::spawn(
            settings,
            turn.clone(),
            Arc::clone(&server),
            Arc::clone(&shutdown),
        )?);
    }
    match alternate {
        Some(alt) if partners.is_some() => tracing::info!(
            "S004 RFC 5780 on in partner mode: primary {}, alternate port {}, change-IP requests go to partners {:?}",
            alt.address(false, false),
            alt.alternate_port,
            stun.partners
        ),
        Some(alt) => tracing::info!(
            "S004 RFC 5780 on: primary {}, alternate {} (OTHER-ADDRESS)",
            alt.address(false, false),
            alt.address(true, true)
        ),
        None => tracing::info!("S004 RFC 5780 off: set stun.alternate_address to enable it"),
    }

    let one_time = match admin_listener {
        Some(_) => first_run_password(&config, &token_file)?,
        None => None,
    };
    if let Some(addr) = config.admin.address() {
        running.push(format!(
            "dashboard {}://{addr}/ ({}; metrics at /metrics; API token in {})",
            if config.admin.tls { "https" } else { "http" },
            match &one_time {
                Some((_, path)) => format!("first-run password in {}", path.display()),
                None => "password set with farside admin passwd".into(),
            },
            token_file.display()
        ));
    }
    tracing::info!("S010 running: {}", running.join("; "));
    let reload = Arc::new(std::sync::Mutex::new(reload));
    if let (Some(listener), Some(token)) = (admin_listener, token) {
        let api = Arc::new(crate::control::api::Api {
            token,
            started,
            running,
            metrics: Arc::clone(&metrics),
            turn: turn.as_ref().map(|t| Arc::clone(&t.board)),
            drain: turn.as_ref().map(|t| Arc::clone(&t.drain)),
            registrations_from: sip_on.then(|| config.store.url.clone()),
            sip: sip_board,
            calls: calls_running.then(|| Arc::clone(&calls)),
            reload: Arc::clone(&reload),
            log: Arc::clone(&log),
            config_text: crate::control::dashboard::redacted(&config),
            store_url: config.store.url.clone(),
            realms: config.user_realms(),
        });
        let dashboard = Arc::new(crate::control::dashboard::Dashboard {
            api: Arc::clone(&api),
            auth: crate::control::dashboard::auth::Auth::new(
                config.store.url.clone(),
                one_time.map(|(p, _)| p),
            ),
        });
        let tls = match (config.admin.tls, &config.tls.cert, &config.tls.key) {
            (true, Some(cert), Some(key)) => {
                Some(crate::net::tls_reload::TlsFiles::load(cert, key)?)
            }
            _ => None,
        };
        runtime.spawn(admin::serve(
            listener,
            Arc::clone(&metrics),
            api,
            dashboard,
            tls,
        ));
    }

    runtime.block_on(async {
        let kernel = tokio::spawn(watch_kernel_drops(Arc::clone(&metrics)));
        let watch = partners.clone().map(|b| tokio::spawn(watch_partners(b)));
        let mut signals = Signals::new();
        while let Signal::Reload = signals.next().await {
            let reload = Arc::clone(&reload);
            // Reading the file blocks; the API may be reloading at the same moment.
            let _ =
                tokio::task::spawn_blocking(move || crate::runtime::lock::lock(&reload).apply())
                    .await;
        }
        kernel.abort();
        if let Some(w) = watch {
            w.abort();
        }
    });
    tracing::info!("S005 shutting down");
    shutdown.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The TURN relay's shared state, if `[turn] enabled`.
fn turn_shared(
    config: &Config,
    cell: Option<Arc<CredentialsCell>>,
) -> anyhow::Result<Option<Arc<TurnShared>>> {
    let t = &config.turn;
    let (true, Some(cell)) = (t.enabled.wanted(), cell) else {
        tracing::info!("S300 TURN off");
        return Ok(None);
    };
    let crate::config::values::PortRange(first, last) = t.relay_ports;
    // One socket per allocation: the default soft limit (often 1024) would cap TURN early.
    match farside_io::raise_fd_limit() {
        Ok(n) if (n as usize) < t.max_allocations.min(usize::from(last - first) + 1) => {
            tracing::warn!(
                "S302 open-file limit is {n}: fewer relay sockets than turn.max_allocations; raise it (LimitNOFILE=)"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("S302 cannot raise the open-file limit: {e}"),
    }
    let (relay_v4, relay_v6) = t.relay_addresses(&config.stun);
    let mut core = t.core(config.stun.software.clone());
    core.peer_policy = config.with_own_addresses(core.peer_policy);
    tracing::info!(
        "S301 TURN on: realm {:?}, relaying from {} ports {first}-{last}, {} shared secrets in the configuration",
        t.realm,
        [relay_v4, relay_v6]
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        t.auth_secrets.len()
    );
    let settings = Arc::new(crate::runtime::versioned::Versioned::new(core.clone()));
    Ok(Some(Arc::new(TurnShared {
        drain: Arc::new(crate::control::drain::Drain::new(Arc::clone(&settings))),
        settings,
        config: core,
        pool: Arc::new(PortPool::new(first, last, t.max_allocations)),
        relay_v4,
        relay_v6,
        credentials: cell,
        counters: Arc::new(TurnMetrics::default()),
        nonce_key: turn_nonce_key(&config.store.url)?,
        quotas: Arc::new(farside_turn::Quotas::new(
            t.max_allocations_per_user,
            t.auth_failures_per_minute,
            t.refusals_per_second,
        )),
        board: Arc::default(),
    })))
}

/// The key TURN's nonces are made with, kept in the store (made on first use): a nonce stays
/// good across a restart, and on every node sharing the store.
fn turn_nonce_key(store_url: &str) -> anyhow::Result<[u8; 32]> {
    farside_store::open(store_url)
        .and_then(|mut s| s.server_key("turn-nonces", crate::runtime::seed::random_key()))
        .map_err(|e| anyhow::anyhow!("S303 cannot read the turn-nonces key from the store: {e}"))
}

/// Until `farside admin passwd` sets one, the dashboard takes a password made at each start
/// and written (mode 0600) as `dashboard.password` beside the API token; `None` when one is set.
fn first_run_password(
    config: &crate::config::Config,
    token_file: &std::path::Path,
) -> anyhow::Result<Option<(String, std::path::PathBuf)>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let set = farside_store::open(&config.store.url)
        .and_then(|mut s| s.admin_password())
        .map_err(|e| anyhow::anyhow!("S303 cannot read the store: {e}"))?;
    if set.is_some() {
        return Ok(None);
    }
    let password = crate::control::dashboard::auth::random_hex()[..20].to_string();
    let path = token_file.with_file_name("dashboard.password");
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("S014 cannot write {}", path.display()))?;
    writeln!(f, "{password}").with_context(|| format!("S014 cannot write {}", path.display()))?;
    Ok(Some((password, path)))
}

/// The client side SIP dials phones' TLS Contacts with, when it has a TLS listener to dial
/// from. A CA bundle that cannot be read fails the start (S307); no bundle at all (none
/// configured, none where distributions keep it) leaves TLS Contacts undialled, with a warning.
fn dial_tls(
    sip: &crate::config::sip::SipConfig,
) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    use crate::net::tls_client::{Verify, system_bundle};
    if !sip.dials_tls() {
        return Ok(None);
    }
    let verify = match (sip.tls_verify, &sip.tls_ca) {
        (false, _) => Some(Verify::Off),
        (true, Some(ca)) => Some(Verify::Ca(ca.clone())),
        (true, None) => system_bundle().map(Verify::Ca),
    };
    match verify {
        Some(verify) => Ok(Some(crate::net::tls_client::config(&verify)?)),
        None => {
            tracing::warn!(
                "S422 no CA bundle for checking phones' certificates: phones registered over TLS \
                 whose connection is gone get 480 rather than being dialled (set sip.tls_ca, or \
                 sip.tls_verify = false)"
            );
            Ok(None)
        }
    }
}

/// A part's start: its result when it ran; when it could not, the error if the file asked for
/// it (`enabled = true`), else `None` and a warning, and the rest runs.
fn soft<T>(
    started: anyhow::Result<T>,
    switch: crate::config::values::Switch,
    part: &str,
    key: &str,
) -> anyhow::Result<Option<T>> {
    match started {
        Ok(t) => Ok(Some(t)),
        Err(e) if switch.required() => Err(e),
        Err(e) => {
            tracing::warn!(
                "S011 {part} off: {e:#}; the rest runs (set {key} = false to silence this, or free the port)"
            );
            Ok(None)
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Logs each partner going up or down (heartbeats, see `farside_stun::partner`).
async fn watch_partners(book: Arc<PartnerBook>) {
    let mut was: Vec<Option<bool>> = vec![None; book.config().partners.len()];
    let grace = 3 * book.config().heartbeat;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for (i, (ip, alive)) in book.status(crate::runtime::clock::now()).enumerate() {
            let Some(prev) = was.get_mut(i) else { continue };
            match (*prev, alive) {
                (Some(true), true) | (Some(false), false) => continue,
                (_, true) => tracing::info!("S110 partner {ip} is up (heartbeat verified)"),
                (Some(true), false) => tracing::warn!(
                    "S111 partner {ip} stopped greeting: change-IP requests skip it while another partner is up"
                ),
                // Silence at startup is news only once the partner had time to greet.
                (None, false) if started.elapsed() < grace => continue,
                (None, false) => tracing::warn!(
                    "S112 partner {ip} has not greeted since start: is it running Farside with this \
                     server in its stun.partners and a common stun.partner_secrets?"
                ),
            }
            *prev = Some(alive);
        }
    }
}

/// What a signal asks for.
enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals the server answers, listened to for its whole life (a signal that comes while a
/// reload runs waits for the next `next`).
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some((term, int, hup))),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                Signals(None)
            }
        }
    }

    async fn next(&mut self) -> Signal {
        let Some((term, int, hup)) = &mut self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => Signal::Stop,
            _ = int.recv() => Signal::Stop,
            _ = hup.recv() => Signal::Reload,
        }
    }
}

/// Logs when the kernel drops datagrams on our sockets: the operator's cue to raise
/// `stun.recv_buffer` or `stun.workers`.
async fn watch_kernel_drops(metrics: Arc<Metrics>) {
    let mut last: Vec<(SocketAddr, u64)> = Vec::new();
    let mut tick = tokio::time::interval(KERNEL_DROP_CHECK);
    loop {
        tick.tick().await;
        for (addr, st) in metrics.kernel_socket_stats() {
            let before = last.iter().find(|(a, _)| *a == addr).map_or(0, |(_, d)| *d);
            if st.drops > before {
                tracing::warn!(
                    "S105 kernel dropped {} datagrams on udp {addr} in the last {}s (receive buffer {} bytes): \
                     raise stun.recv_buffer or stun.workers",
                    st.drops - before,
                    KERNEL_DROP_CHECK.as_secs(),
                    st.recv_buffer
                );
            }
            match last.iter_mut().find(|(a, _)| *a == addr) {
                Some(e) => e.1 = st.drops,
                None => last.push((addr, st.drops)),
            }
        }
    }
}
