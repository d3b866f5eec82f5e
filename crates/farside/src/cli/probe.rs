//! `farside probe`: the I/O shell around the sans-IO NAT behaviour discovery client
//! (`farside-probe`). It finds the server (DNS SRV), owns the UDP sockets and the clock, and
//! prints the report; every decision about STUN is the core's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use farside_time::Timestamp;

use anyhow::Context as _;
use clap::Args;
use farside_probe::{Event, LifetimeConfig, Probe, ProbeConfig, Report, SocketId, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::cli::dns::{self, Candidate, Target};
use crate::runtime::clock;

/// Exit status: the server answered but does not do RFC 5780, so only the public address is known.
const EXIT_NO_RFC5780: u8 = 3;
/// Exit status: no server answered (down, or UDP blocked on the way).
const EXIT_NO_ANSWER: u8 = 4;
/// Exit status: the target could not be resolved or the arguments are wrong.
const EXIT_USAGE: u8 = 2;
/// Exit status: the server does RFC 5780, but some asked-for verdict could not be reached.
const EXIT_PARTIAL: u8 = 5;

/// `farside probe` arguments.
#[derive(Args, Debug)]
#[command(after_long_help = "\
Exit status: 0 every verdict asked for was reached; 2 the target could not be resolved or an \
argument is wrong; 3 the server answered but does not support RFC 5780, so only the public \
address is known; 4 no server answered (it is down, or UDP is blocked); 5 the server does RFC \
5780 but some verdict (mapping, filtering or the lifetime asked for) could not be reached; see \
the notes.")]
pub struct ProbeArgs {
    /// The STUN server: an address (`192.0.2.1`, `[2001:db8::1]:3478`), `host:port`, or a
    /// domain whose `_stun._udp` SRV records name the servers (RFC 8489 §8.1), with A/AAAA
    /// and port 3478 as the fallback.
    #[arg(value_name = "TARGET", default_value = "localhost")]
    target: String,
    /// The DNS server to ask instead of the system's, as IP or IP:port.
    #[arg(long, value_name = "SERVER")]
    dns: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// First retransmission timeout in milliseconds (RFC 8489 §6.2.1); it doubles on each
    /// retransmission.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    timeout: u64,
    /// Retransmissions of each request before a test counts as unanswered (RFC 8489's Rc − 1).
    #[arg(long, value_name = "N", default_value_t = 6)]
    retransmits: u32,
    /// Also measure how long the NAT keeps an idle UDP binding (RFC 5780 §4.6). This takes
    /// minutes: a binary search that waits up to --lifetime-max seconds per step.
    #[arg(long)]
    lifetime: bool,
    /// The longest binding lifetime to look for, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    lifetime_max: u64,
    /// The precision of the lifetime measurement, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    lifetime_resolution: u64,
    /// The local address to send from (default: the one the system routes to the server from).
    #[arg(long, value_name = "IP")]
    local: Option<IpAddr>,
}

/// Runs the probe and prints its report.
pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let target = match Target::parse(&args.target) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let dns_server = match args.dns.as_deref().map(dns::parse_server).transpose() {
        Ok(d) => d,
        Err(e) => return usage(e),
    };
    let resolver = dns::resolver(dns_server)?;
    let candidates =
        match dns::candidates(&target, &resolver, crate::runtime::seed::fresh_seed()).await {
            Ok(c) => c,
            Err(e) => return usage(e),
        };

    if let Some(ip) = args.local {
        if ip.is_unspecified() {
            return usage(anyhow::anyhow!(
                "--local {ip}: name the address to send from, not a wildcard"
            ));
        }
        if candidates
            .iter()
            .all(|c| c.address.is_ipv4() != ip.is_ipv4())
        {
            return usage(anyhow::anyhow!(
                "--local {ip}: no server of that address family"
            ));
        }
    }

    let mut last: Option<(Candidate, Report)> = None;
    let mut failures = Vec::new();
    for candidate in candidates {
        match probe_one(&args, &candidate, crate::runtime::seed::fresh_seed()).await {
            Ok(report) => {
                let answered = report.reachable;
                last = Some((candidate, report));
                if answered {
                    break; // else the next SRV target may answer (RFC 2782)
                }
            }
            // No route to one target (an IPv6 one on an IPv4-only host, say): try the next.
            Err(e) => failures.push(format!("{}: {e:#}", candidate.address)),
        }
    }
    let Some((candidate, mut report)) = last else {
        return usage(anyhow::anyhow!(
            "no server could be probed: {}",
            failures.join("; ")
        ));
    };
    report
        .notes
        .extend(failures.into_iter().map(|f| format!("skipped {f}")));
    if args.json {
        println!("{}", to_json(&candidate, &report));
    } else {
        print!("{}", to_text(&candidate, &report));
    }
    let partial = report.mapping.is_none()
        || report.filtering.is_none()
        || (args.lifetime && report.lifetime.is_none());
    Ok(ExitCode::from(if !report.reachable {
        EXIT_NO_ANSWER
    } else if !report.rfc5780 {
        EXIT_NO_RFC5780
    } else if partial {
        EXIT_PARTIAL
    } else {
        0
    }))
}

fn usage(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("farside probe: {e:#}");
    Ok(ExitCode::from(EXIT_USAGE))
}

/// One datagram handed from a socket's reader task to the loop.
struct Arrival {
    socket: SocketId,
    from: SocketAddr,
    at: Timestamp,
    bytes: Vec<u8>,
}

async fn probe_one(args: &ProbeArgs, candidate: &Candidate, seed: u64) -> anyhow::Result<Report> {
    let config = ProbeConfig {
        server: candidate.address,
        rto: Duration::from_millis(args.timeout.max(1)),
        retransmits: args.retransmits,
        lifetime: args.lifetime.then(|| LifetimeConfig {
            max: Duration::from_secs(args.lifetime_max.max(1)),
            resolution: Duration::from_secs(args.lifetime_resolution.max(1)),
        }),
        ..ProbeConfig::default()
    };
    // Progress matters when the probe takes minutes (--lifetime) or someone watches.
    let progress = args.lifetime || std::io::IsTerminal::is_terminal(&std::io::stderr());
    discover(config, args.local, seed, progress).await
}

/// Runs NAT behaviour discovery as `config` says, from `local` (default: the address the
/// system routes to the server from); each progress line goes to stderr when `progress`.
pub(crate) async fn discover(
    config: ProbeConfig,
    local: Option<IpAddr>,
    seed: u64,
    progress: bool,
) -> anyhow::Result<Report> {
    let server = config.server;
    let local_ip = match local {
        Some(ip) => ip,
        None => route_source(server).await?,
    };

    let (tx, mut rx) = mpsc::channel::<Arrival>(1024);
    let mut sockets: HashMap<SocketId, Arc<UdpSocket>> = HashMap::new();
    let mut readers = Vec::new();
    let first = open_socket(local_ip, SocketId(0), &tx, &mut readers).await?;
    let local = first.local_addr()?;
    sockets.insert(SocketId(0), first);
    let mut probe = Probe::new(config, local, clock::now(), seed);

    loop {
        while let Some(Transmit { from, to, payload }) = probe.poll_transmit() {
            if let std::collections::hash_map::Entry::Vacant(e) = sockets.entry(from) {
                let s = open_socket(local_ip, from, &tx, &mut readers).await?;
                probe.local_address_of(from, s.local_addr()?);
                e.insert(s);
            }
            if let Some(s) = sockets.get(&from) {
                // A send error (no route, ICMP) is a lost datagram: retransmission decides.
                let _ = s.send_to(&payload, to).await;
            }
        }
        while let Some(event) = probe.poll_event() {
            if let Event::Progress(p) = event
                && progress
            {
                eprintln!("  … {p}");
            }
        }
        if probe.is_done() {
            break;
        }
        let deadline = probe
            .poll_timeout()
            .unwrap_or_else(|| clock::now() + Duration::from_secs(1));
        tokio::select! {
            got = rx.recv() => {
                if let Some(a) = got {
                    probe.handle_datagram(a.at, a.socket, a.from, &a.bytes);
                }
            }
            () = tokio::time::sleep(clock::until(deadline)) => probe.handle_timeout(clock::now()),
        }
    }
    for r in readers {
        r.abort();
    }
    Ok(probe.report().clone())
}

/// The local address the system would use to reach `server`.
pub(crate) async fn route_source(server: SocketAddr) -> anyhow::Result<IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(any).await?;
    s.connect(server)
        .await
        .with_context(|| format!("no route to {server}"))?;
    Ok(s.local_addr()?.ip())
}

async fn open_socket(
    ip: IpAddr,
    id: SocketId,
    tx: &mpsc::Sender<Arrival>,
    readers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Arc<UdpSocket>> {
    let s = Arc::new(
        UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .with_context(|| format!("bind a UDP socket on {ip}"))?,
    );
    let reader = Arc::clone(&s);
    let tx = tx.clone();
    readers.push(tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            // ICMP errors surface as receive errors on Linux; they carry nothing to act on.
            // A pause keeps a persistent error from spinning the runtime.
            let Ok((n, from)) = reader.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let arrival = Arrival {
                socket: id,
                from,
                at: clock::now(),
                bytes: buf[..n].to_vec(),
            };
            if tx.send(arrival).await.is_err() {
                return;
            }
        }
    }));
    Ok(s)
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not tested",
    }
}

fn or_unknown<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "not determined".to_string(), |x| x.to_string())
}

fn lifetime_text(report: &Report) -> Option<String> {
    report.lifetime.as_ref().map(|l| match l.less_than {
        Some(hi) => format!(
            "at least {} s, less than {} s",
            l.at_least.as_secs(),
            hi.as_secs()
        ),
        None => format!("at least {} s (the longest tried)", l.at_least.as_secs()),
    })
}

fn to_text(candidate: &Candidate, r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "STUN server        {} ({})",
        candidate.address, candidate.source
    );
    if !r.reachable {
        let _ = writeln!(
            s,
            "result             no answer: the server is down, or UDP is blocked on the way"
        );
        let _ = writeln!(s, "classic NAT type   {}", r.classic);
        return s;
    }
    let _ = writeln!(s, "local address      {}", r.local);
    let _ = writeln!(s, "public address     {}", or_unknown(&r.public));
    let _ = writeln!(s, "NAT                {}", yes_no(r.nat));
    let _ = writeln!(s, "mapping            {}", or_unknown(&r.mapping));
    let _ = writeln!(s, "filtering          {}", or_unknown(&r.filtering));
    let hairpinning = match (r.nat, r.hairpinning) {
        (Some(false), None) => "not applicable (no NAT)",
        (_, h) => yes_no(h),
    };
    let _ = writeln!(s, "hairpinning        {hairpinning}");
    if let Some(l) = lifetime_text(r) {
        let _ = writeln!(s, "binding lifetime   {l}");
    }
    let _ = writeln!(s, "classic NAT type   {}", r.classic);
    for n in &r.notes {
        let _ = writeln!(s, "note               {n}");
    }
    s
}

fn to_json(candidate: &Candidate, r: &Report) -> String {
    let opt = |v: Option<String>| v.map_or(serde_json::Value::Null, serde_json::Value::String);
    serde_json::json!({
        "server": candidate.address.to_string(),
        "server_source": candidate.source,
        "reachable": r.reachable,
        "rfc5780": r.rfc5780,
        "other_address": opt(r.other_address.map(|a| a.to_string())),
        "local": r.local.to_string(),
        "public": opt(r.public.map(|a| a.to_string())),
        "nat": r.nat,
        "mapping": opt(r.mapping.map(|b| b.to_string())),
        "filtering": opt(r.filtering.map(|b| b.to_string())),
        "hairpinning": r.hairpinning,
        "lifetime_at_least_s": r.lifetime.as_ref().map(|l| l.at_least.as_secs()),
        "lifetime_less_than_s": r.lifetime.as_ref().and_then(|l| l.less_than.map(|d| d.as_secs())),
        "classic": r.classic.to_string(),
        "notes": r.notes,
    })
    .to_string()
}
