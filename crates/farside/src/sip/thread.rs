//! SIP over UDP: one thread owns the `[sip] listen` UDP sockets, answers STUN Binding requests on
//! them (RFC 5626 keep-alives), and hands SIP to the sans-IO cores of `farside-sip`: each
//! request's top Via gets `received` and `rport` (RFC 3581), REGISTERs go to the registrar, and
//! the answer goes back to where the request came from. Other requests go through the stateless
//! proxy (`farside_sip::proxy`) to the flow a local user registered over; responses follow the
//! Via back.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use farside_io::Epoll;
use farside_sip::dialogs::{DialogEvent, Dialogs};
use farside_sip::digest::Algorithm;
use farside_sip::edge::{ContactFix, Edge, EdgeRegistrations};
use farside_sip::flow_token::FlowTokens;
use farside_sip::keepalive::{KeepaliveConfig, Keepalives};
use farside_sip::nat::{self, NatTests, Transport};
use farside_sip::proxy::{Action, Proxy};
use farside_sip::registrar::{Binding, Flow, Outcome, Registrar, RegistrarConfig, Users};
use farside_sip::transaction::Transactions;
use farside_sip::{Edits, Message, Method, StartLine};
use farside_stun::binding::{BindingServer, Outcome as StunOutcome, Received};

use crate::control::credentials::CredentialsCell;
use crate::sip::streams::{Inbound, SipTcp};
use crate::telemetry::sip::{MethodKind, SipCounters};

/// The status code of a response's bytes.
fn status_of(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes.get(8..11)?).ok()?.parse().ok()
}

/// The store's users as the registrar asks for them: their long-term keys are Digest's HA1.
struct StoreUsers(Arc<farside_turn::Credentials>);

impl Users for StoreUsers {
    fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        let keys = self.0.user(realm, user)?;
        Some(match algorithm {
            Algorithm::Md5 => keys.md5.to_vec(),
            Algorithm::Sha256 => keys.sha256.to_vec(),
        })
    }
}

/// Binds `addresses`, restores the registrations the store at `store_url` holds, and starts
/// the thread (and a writer thread that keeps the store in step with the registrar).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    addresses: &[SocketAddr],
    stream_addresses: &[(SocketAddr, Transport)],
    tls: Option<crate::net::tls_reload::TlsFiles>,
    max_connections: usize,
    store_url: &str,
    config: RegistrarConfig,
    upstream: Option<SocketAddr>,
    contact_fix: ContactFix,
    keepalive: Option<KeepaliveConfig>,
    credentials: Arc<CredentialsCell>,
    binding: Arc<BindingServer>,
    counters: Arc<SipCounters>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut sockets = Vec::new();
    for &a in addresses {
        // Large buffers ride out bursts (Kamailio asks for as much as the kernel allows too);
        // no SO_REUSEPORT: a second server on the port must fail, not share it.
        let options = farside_io::SocketOptions {
            reuse_port: false,
            ..farside_io::SocketOptions::default()
        };
        let s = farside_io::bind_udp(a, options)
            .with_context(|| format!("S401 cannot bind SIP udp {a}"))?;
        match upstream {
            None => tracing::info!(
                "S400 SIP registrar for {:?} listening on udp {a}",
                config.domain
            ),
            Some(u) => tracing::info!("S400 SIP edge in front of {u} listening on udp {a}"),
        }
        sockets.push((a, s));
    }
    let domain = config.domain.clone();
    let tcp = SipTcp::bind(stream_addresses, tls, max_connections)?;
    for (a, kind) in tcp.addresses() {
        match upstream {
            None => tracing::info!(
                "S400 SIP registrar for {:?} listening on {kind} {a}",
                config.domain
            ),
            Some(u) => tracing::info!("S400 SIP edge in front of {u} listening on {kind} {a}"),
        }
    }
    let mut store = farside_store::open(store_url)
        .map_err(|e| anyhow::anyhow!("S303 cannot open the store: {e}"))?;
    // Keys kept in the store: nonces and flow tokens given out before a restart stay good.
    let mut key = |name: &str| {
        store
            .server_key(name, crate::runtime::seed::random_key())
            .map_err(|e| anyhow::anyhow!("S303 cannot read the {name} key from the store: {e}"))
    };
    let mut registrar = Registrar::new(config, key("sip-digest-nonces")?);
    let tokens = FlowTokens::new(key("sip-flow-tokens")?);
    let now = crate::runtime::clock::unix_ms() / 1000;
    let rows = store
        .load_registrations(i64::try_from(now).unwrap_or(i64::MAX))
        .map_err(|e| anyhow::anyhow!("S303 cannot read registrations from the store: {e}"))?;
    let restored = rows.len();
    let mut by_aor: std::collections::BTreeMap<String, Vec<Binding>> = Default::default();
    for row in rows {
        if let Some(b) = binding_of(&row) {
            by_aor.entry(row.aor).or_default().push(b);
        }
    }
    for (aor, bindings) in by_aor {
        registrar.restore(aor, bindings);
    }
    tracing::info!("S405 SIP registrations restored from the store: {restored}");
    let writer = spawn_writer(store)?;
    std::thread::Builder::new()
        .name("sip-udp".into())
        .spawn(move || {
            let addresses = sockets
                .iter()
                .map(|(a, _)| *a)
                .chain(tcp.addresses().map(|(a, _)| a))
                .collect();
            let mut t = SipUdp {
                sockets,
                tcp,
                dialogs: Dialogs::new(
                    MAX_DIALOGS,
                    DIALOG_MAX_AGE,
                    crate::runtime::seed::fresh_seed(),
                ),
                edge_registrations: EdgeRegistrations::default(),
                invites: Transactions::new(MAX_TRANSACTIONS),
                extra: Vec::new(),
                addresses,
                registrar,
                writer,
                keepalives: keepalive
                    .map(|k| Keepalives::new(k, crate::runtime::seed::fresh_seed())),
                domain,
                upstream,
                contact_fix,
                tokens,
                branch_key: crate::runtime::seed::fresh_seed(),
                credentials,
                binding,
                counters,
                last_log: None,
            };
            if let Err(e) = t.run(&shutdown) {
                tracing::error!("S402 the SIP thread stopped: {e:#}");
            }
        })
        .context("spawn the SIP thread")
}

/// One message to send, and how.
struct Out {
    bytes: Vec<u8>,
    transport: Transport,
    /// Farside's address to send from (a UDP socket's).
    from: SocketAddr,
    /// The peer (for a stream, its connection).
    to: SocketAddr,
}

struct SipUdp {
    sockets: Vec<(SocketAddr, UdpSocket)>,
    tcp: SipTcp,
    /// Dialogs through the proxy, for the counters.
    dialogs: Dialogs,
    /// The stateful proxy's transactions (registrar mode).
    invites: Transactions,
    /// Packets a message gave beyond the first (forks, ACKs, CANCELs), sent right after it.
    extra: Vec<Out>,
    /// Edge mode: REGISTERs on their way to the upstream (their 2xx fills the registrar's
    /// table, which then only serves keep-alives and the store).
    edge_registrations: EdgeRegistrations,
    /// Every listener address (UDP, TCP, TLS).
    addresses: Arc<[SocketAddr]>,
    registrar: Registrar,
    /// Changed registrations, for the store writer.
    writer: std::sync::mpsc::SyncSender<(String, Vec<farside_store::RegistrationRow>)>,
    keepalives: Option<Keepalives>,
    domain: String,
    /// Edge mode: the registrar behind the edge.
    upstream: Option<SocketAddr>,
    /// Edge mode: how NATed Contacts are fixed for an upstream that keeps no Path.
    contact_fix: ContactFix,
    /// Signs the flow tokens of the edge's Paths and Record-Routes.
    tokens: FlowTokens,
    branch_key: u64,
    credentials: Arc<CredentialsCell>,
    binding: Arc<BindingServer>,
    counters: Arc<SipCounters>,
    /// When a malformed message was last logged (at most one a second).
    last_log: Option<Instant>,
}

impl SipUdp {
    fn run(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        let mut epoll = Epoll::new()?;
        for (i, (_, s)) in self.sockets.iter().enumerate() {
            epoll.add(s.as_raw_fd(), i as u64)?;
        }
        self.tcp.register(&epoll)?;
        let mut ready = Vec::new();
        let mut inbound = Vec::new();
        let mut rx = farside_io::RecvBatch::new(RECV_BATCH, farside_sip::MAX_MESSAGE);
        let mut last_expire = Instant::now();
        while !shutdown.load(Relaxed) {
            ready.clear();
            epoll.wait(Duration::from_millis(200), |t| ready.push(t))?;
            for &token in &ready {
                if token >= crate::sip::streams::LISTENER_TOKENS {
                    self.tcp.ready(&epoll, token, &mut inbound);
                    for i in inbound.drain(..) {
                        match i {
                            Inbound::Message {
                                transport,
                                local,
                                remote,
                                bytes,
                            } => {
                                if let Some(out) = self.handle(local, remote, &bytes, transport) {
                                    self.send(&epoll, out);
                                    self.send_extra(&epoll);
                                    self.send_extra(&epoll);
                                }
                            }
                            Inbound::Keepalive => {
                                self.counters.keepalives.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    continue;
                }
                let i = token as usize;
                // One recvmmsg for up to RECV_BATCH datagrams, a few times, then the others'
                // turn (level-triggered: what is left wakes the next wait).
                for _ in 0..4 {
                    let Some((local, socket)) = self.sockets.get(i) else {
                        break;
                    };
                    let local = *local;
                    match farside_io::recv_batch(socket, &mut rx) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                    for d in rx.iter() {
                        if d.truncated {
                            continue;
                        }
                        // A dual-stack socket names IPv4 senders ::ffff:a.b.c.d: use a.b.c.d.
                        let remote = SocketAddr::new(d.source.ip().to_canonical(), d.source.port());
                        if let Some(out) = self.handle(local, remote, d.payload, Transport::Udp) {
                            self.send(&epoll, out);
                        }
                    }
                    if rx.len() < RECV_BATCH {
                        break;
                    }
                }
            }
            self.keepalive_round(&epoll);
            // The stateful proxy's retransmissions and timeouts.
            let timed_out = self.invites.poll(crate::runtime::clock::unix_ms());
            for code in self.invites.take_refusals() {
                self.counters.count_refusal(code);
            }
            for p in timed_out {
                self.extra.push(Out {
                    bytes: p.bytes,
                    transport: p.transport,
                    from: p.from,
                    to: p.to,
                });
            }
            self.send_extra(&epoll);
            // Registrations reach the store within a pass (so a kill -9 loses at most that).
            for (aor, bindings) in self.registrar.take_changed() {
                let rows = bindings.iter().map(|b| row_of(&aor, b)).collect();
                if self.writer.try_send((aor, rows)).is_err() {
                    tracing::warn!(
                        "S406 the store writer is behind: a registration change was not saved"
                    );
                }
            }
            let now = Instant::now();
            self.tcp.refresh(now);
            if now.duration_since(last_expire) >= Duration::from_secs(1) {
                last_expire = now;
                self.registrar
                    .expire(crate::runtime::clock::unix_ms() / 1000);
                let live: usize = self.registrar.all().map(|(_, b)| b.len()).sum();
                self.counters.bindings.store(live as u64, Relaxed);
                self.counters
                    .connections
                    .store(self.tcp.len() as u64, Relaxed);
            }
        }
        Ok(())
    }

    /// Sends the keep-alives due and drops the bindings that stopped answering them.
    fn keepalive_round(&mut self, epoll: &Epoll) {
        let Some(k) = self.keepalives.as_mut() else {
            return;
        };
        let round = k.poll(crate::runtime::clock::unix_ms(), &self.registrar);
        for ping in round.pings {
            let sent = self.send(
                epoll,
                Out {
                    bytes: ping.bytes,
                    transport: ping.flow.transport,
                    from: ping.flow.local,
                    to: ping.flow.remote,
                },
            );
            if sent {
                self.counters.pings_sent.fetch_add(1, Relaxed);
            }
        }
        // Missed pings go to the store with the binding: a restart resumes the count.
        for (aor, contact, missed) in &round.missed {
            self.counters.pings_missed.fetch_add(1, Relaxed);
            self.registrar.set_keepalive_failures(aor, contact, *missed);
        }
        for (aor, contact) in round.unreachable {
            if self.registrar.remove_binding(&aor, &contact) {
                self.counters.unreachable.fetch_add(1, Relaxed);
                tracing::info!(
                    "S409 {aor}: {contact} stopped answering keep-alives; binding removed"
                );
            }
        }
    }

    /// Sends what is waiting in `self.extra`.
    fn send_extra(&mut self, epoll: &Epoll) {
        for out in std::mem::take(&mut self.extra) {
            self.send(epoll, out);
        }
    }

    /// The UDP socket address to send from on behalf of a listener at `local`: the socket at
    /// that very address, else one on its IP, else the first.
    fn udp_address(&self, local: SocketAddr) -> SocketAddr {
        let udp = || self.sockets.iter().map(|(a, _)| *a);
        udp()
            .find(|a| *a == local)
            .or_else(|| udp().find(|a| a.ip() == local.ip()))
            .or_else(|| udp().next())
            .unwrap_or(local)
    }

    /// Sends `out` over UDP from the socket at its `from` address (else the first), or over
    /// the TCP connection to its `to`; false if that cannot be (the flow is gone).
    fn send(&mut self, epoll: &Epoll, out: Out) -> bool {
        if out.transport.is_stream() {
            let sent = self.tcp.send(epoll, out.to, &out.bytes);
            if !sent {
                self.counters.no_flow.fetch_add(1, Relaxed);
            }
            return sent;
        }
        let socket = self
            .sockets
            .iter()
            .find(|(a, _)| *a == out.from)
            .or(self.sockets.first());
        socket.is_some_and(|(_, s)| s.send_to(&out.bytes, out.to).is_ok())
    }

    /// What to send for one message that arrived over `transport`, if anything.
    fn handle(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        transport: Transport,
    ) -> Option<Out> {
        let back = |bytes: Vec<u8>| {
            Some(Out {
                bytes,
                transport,
                from: local,
                to: remote,
            })
        };
        let udp = self.udp_address(local);
        let flow = Flow {
            transport,
            local,
            remote,
        };
        let proxy = Proxy::new(local, transport, &self.domain, self.branch_key)
            .with_addresses(Arc::clone(&self.addresses), udp)
            .with_flow(flow, self.tokens.clone());
        // Keep-alives: CRLF (RFC 5626 §3.5.1 over UDP is STUN, but phones send CRLF or four
        // zero bytes all the same).
        if transport == Transport::Udp
            && bytes.len() <= 4
            && bytes.iter().all(|&b| matches!(b, b'\r' | b'\n' | 0))
        {
            self.counters.keepalives.fetch_add(1, Relaxed);
            return None;
        }
        if transport == Transport::Udp && is_stun(bytes) {
            let mut out = [0u8; 512];
            let outcome = self.binding.handle(
                Received {
                    transport: farside_stun::binding::Transport::Udp,
                    local,
                    remote,
                    bytes,
                },
                &mut out,
            );
            if let StunOutcome::Respond(r) = outcome {
                self.counters.stun.fetch_add(1, Relaxed);
                return back(out[..r.len].to_vec());
            }
            return None;
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Relaxed);
                let now = Instant::now();
                if self
                    .last_log
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    self.last_log = Some(now);
                    tracing::debug!("S403 SIP message from {remote} dropped: {e}");
                }
                return None;
            }
        };
        let StartLine::Request { method, uri } = msg.start_line() else {
            if let Some((aor, contact)) = self
                .keepalives
                .as_mut()
                .and_then(|k| k.answered_binding(&msg))
            {
                self.counters.pings_answered.fetch_add(1, Relaxed);
                self.registrar.set_keepalive_failures(&aor, &contact, 0);
                return None;
            }
            let action = proxy.response(&msg);
            let now_ms = crate::runtime::clock::unix_ms();
            // INVITE responses belong to a transaction (registrar mode); the rest go on as
            // the stateless proxy says.
            let packets = match self.upstream {
                None => self.invites.response(&msg, action.clone(), now_ms),
                Some(_) => None,
            }
            .unwrap_or_else(|| {
                farside_sip::transaction::Packet::of(action)
                    .into_iter()
                    .collect()
            });
            if packets.is_empty() {
                self.counters.responses_dropped.fetch_add(1, Relaxed);
                return None;
            }
            self.counters
                .forwarded
                .fetch_add(packets.len() as u64, Relaxed);
            let now = now_ms / 1000;
            if self.upstream.is_some()
                && let Some((aor, bindings)) = self.edge_registrations.response(&msg, now)
            {
                self.registrar.mirror(&aor, bindings, now);
            }
            match self.dialogs.response(&msg, now) {
                Some(DialogEvent::Started) => {
                    self.counters.dialogs_started.fetch_add(1, Relaxed);
                }
                Some(DialogEvent::Ended) => {
                    self.counters.dialogs_ended.fetch_add(1, Relaxed);
                }
                None => {}
            }
            self.counters
                .dialogs
                .store(self.dialogs.len() as u64, Relaxed);
            return self.several(packets);
        };
        self.counters.requests[MethodKind::of(method) as usize].fetch_add(1, Relaxed);
        let tests = nat::detect(&msg, remote, transport);
        for (i, (bit, _)) in NatTests::ALL.iter().enumerate() {
            if tests.any(*bit) {
                self.counters.nat[i].fetch_add(1, Relaxed);
            }
        }
        // RFC 3581: the answer goes where the request came from, and its Via says so.
        let mut edits = Edits::new(bytes);
        nat::fix_via(&msg, remote, &mut edits);
        let fixed = edits.apply().ok()?;
        let msg = Message::parse(&fixed).ok()?;
        if let Some(upstream) = self.upstream {
            // The edge's own address in Paths and toward the upstream is its UDP one.
            let edge = Edge::new(udp, upstream, self.tokens.clone(), self.branch_key)
                .with_addresses(Arc::clone(&self.addresses))
                .with_contact_fix(self.contact_fix);
            let action = edge.request(&msg, flow);
            if matches!(action, Action::Forward { .. }) && remote != upstream {
                // Its answer tells which bindings to keep alive.
                let now = crate::runtime::clock::unix_ms() / 1000;
                self.edge_registrations.forwarded(&msg, flow, now);
            }
            return self.act(action, method, uri, local, remote, transport);
        }
        if method == Method::REGISTER {
            let users = StoreUsers(self.credentials.load());
            let now = crate::runtime::clock::unix_ms() / 1000;
            let (answer, outcome) = self.registrar.register(&msg, flow, now, &users);
            let c = &self.counters;
            match outcome {
                Outcome::Registered { ref aor, bindings } => {
                    tracing::debug!(
                        "S411 {aor} registered from {} {remote}: {bindings} bindings, NAT tests fired: {}",
                        transport.via_name().to_ascii_lowercase(),
                        tests.names()
                    );
                    c.registered.fetch_add(1, Relaxed)
                }
                Outcome::Challenged { stale } => {
                    if stale {
                        c.stale.fetch_add(1, Relaxed);
                    }
                    c.challenged.fetch_add(1, Relaxed)
                }
                Outcome::AuthFailed => c.auth_failures.fetch_add(1, Relaxed),
                Outcome::RateLimited => {
                    c.auth_rate_limited.fetch_add(1, Relaxed);
                    return None;
                }
                Outcome::Refused(code) => {
                    c.count_refusal(code);
                    c.refused.fetch_add(1, Relaxed)
                }
            };
            return back(answer);
        }
        let now_ms = crate::runtime::clock::unix_ms();
        let now = now_ms / 1000;
        // INVITE, its CANCEL and the ACK of a refusal are transactions (RFC 3261 §16, §17).
        let source = (transport, local, remote);
        if method == Method::INVITE {
            let registrar = &self.registrar;
            let packets = self.invites.request(&msg, source, now_ms, || {
                proxy.fork(&msg, registrar, now, MAX_FORKS)
            });
            if packets.len() > 1 {
                tracing::debug!(
                    "S404 INVITE {} from {remote} forwarded to {} branch(es)",
                    String::from_utf8_lossy(uri.as_bytes()),
                    packets.len() - 1
                );
                self.counters
                    .forwarded
                    .fetch_add(packets.len() as u64 - 1, Relaxed);
            }
            return self.several(packets);
        }
        // Other requests (not ACK, not CANCEL): a transaction each, one target.
        if method != Method::ACK && method != Method::CANCEL {
            let registrar = &self.registrar;
            let mut forwarded = false;
            let packets = self.invites.request(&msg, source, now_ms, || {
                let action = proxy.request(&msg, registrar, now);
                forwarded = matches!(action, Action::Forward { .. });
                // OPTIONS for Farside itself is answered here, not a transaction's business
                // (but its retransmission gets the same answer).
                match action {
                    Action::Answer(r) => vec![Action::Respond(r)],
                    other => vec![other],
                }
            });
            if forwarded {
                self.counters.forwarded.fetch_add(1, Relaxed);
                tracing::debug!(
                    "S404 {} {} from {remote} forwarded",
                    String::from_utf8_lossy(method.0),
                    String::from_utf8_lossy(uri.as_bytes())
                );
            }
            return self.several(packets);
        }
        if method == Method::CANCEL
            && let Some(packets) = self.invites.cancel(&msg, source)
        {
            return self.several(packets);
        }
        if method == Method::ACK && self.invites.ack(&msg) {
            return None;
        }
        let action = proxy.request(&msg, &self.registrar, now);
        self.act(action, method, uri, local, remote, transport)
    }

    /// The first of `packets` to send now; the others wait in `self.extra` for the caller.
    /// The refusals the transactions gave meanwhile are counted.
    fn several(&mut self, packets: Vec<farside_sip::transaction::Packet>) -> Option<Out> {
        for code in self.invites.take_refusals() {
            self.counters.count_refusal(code);
        }
        let mut outs = packets.into_iter().map(|p| Out {
            bytes: p.bytes,
            transport: p.transport,
            from: p.from,
            to: p.to,
        });
        let first = outs.next();
        self.extra.extend(outs);
        first
    }

    /// Counts and logs what the proxy or edge decided, and gives the datagram to send.
    fn act(
        &self,
        action: Action,
        method: Method<'_>,
        uri: farside_sip::Uri<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        arrived: Transport,
    ) -> Option<Out> {
        let back = |bytes: Vec<u8>| Out {
            bytes,
            transport: arrived,
            from: local,
            to: remote,
        };
        match action {
            Action::Answer(r) => Some(back(r)),
            Action::Respond(r) => {
                if let Some(code) = status_of(&r) {
                    self.counters.count_refusal(code);
                }
                Some(back(r))
            }
            Action::Forward {
                bytes,
                transport,
                from,
                to,
            } => {
                self.counters.forwarded.fetch_add(1, Relaxed);
                tracing::debug!(
                    "S404 {} {} from {remote} forwarded to {to}",
                    String::from_utf8_lossy(method.0),
                    String::from_utf8_lossy(uri.as_bytes())
                );
                Some(Out {
                    bytes,
                    transport,
                    from,
                    to,
                })
            }
            Action::Drop => None,
        }
    }
}

/// The store writer: a thread of its own, since SQLite calls block.
fn spawn_writer(
    mut store: Box<dyn farside_store::Store>,
) -> anyhow::Result<std::sync::mpsc::SyncSender<(String, Vec<farside_store::RegistrationRow>)>> {
    let (tx, rx) =
        std::sync::mpsc::sync_channel::<(String, Vec<farside_store::RegistrationRow>)>(WRITE_QUEUE);
    std::thread::Builder::new()
        .name("sip-store".into())
        .spawn(move || {
            // Whatever queued up meanwhile goes in the same transaction (one disk sync for
            // many changes under load), the last change of each address of record winning.
            let mut last_write: Option<Instant> = None;
            while let Ok(first) = rx.recv() {
                // Under load, at most one transaction per WRITE_INTERVAL: the rest queue up
                // and are coalesced (a kill -9 loses at most that much more).
                if let Some(t) = last_write {
                    std::thread::sleep(WRITE_INTERVAL.saturating_sub(t.elapsed()));
                }
                last_write = Some(Instant::now());
                let mut batch = vec![first];
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(change) => batch.push(change),
                        Err(_) => break,
                    }
                }
                let mut latest = std::collections::HashMap::with_capacity(batch.len());
                for (i, (aor, _)) in batch.iter().enumerate() {
                    latest.insert(aor.clone(), i);
                }
                let mut i = 0;
                batch.retain(|(aor, _)| {
                    i += 1;
                    latest.get(aor) == Some(&(i - 1))
                });
                let rows: usize = batch.iter().map(|(_, r)| r.len()).sum();
                match store.save_registrations_many(&batch) {
                    Ok(()) => tracing::debug!(
                        "S408 saved the registrations of {} addresses of record ({rows} bindings)",
                        batch.len()
                    ),
                    Err(e) => tracing::warn!(
                        "S407 cannot save the registrations of {} addresses of record: {e}",
                        batch.len()
                    ),
                }
            }
        })
        .context("spawn the SIP store writer")?;
    Ok(tx)
}

/// INVITE transactions at once at most (more get 503).
const MAX_TRANSACTIONS: usize = 10_000;
/// Bindings an INVITE is forked to at most.
const MAX_FORKS: usize = 8;

/// Dialogs counted at once at most (the oldest is forgotten beyond).
const MAX_DIALOGS: usize = 100_000;
/// A dialog whose end was not seen is forgotten after this many seconds.
const DIALOG_MAX_AGE: u64 = 12 * 3600;

/// Datagrams read by one `recvmmsg`.
const RECV_BATCH: usize = 32;

/// Registration changes waiting for the store writer at most.
const WRITE_QUEUE: usize = 4096;
/// Most changes the store writer puts in one transaction.
const WRITE_BATCH: usize = 4096;
/// Least time between two transactions of the store writer.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);

fn row_of(aor: &str, b: &Binding) -> farside_store::RegistrationRow {
    farside_store::RegistrationRow {
        aor: aor.to_owned(),
        contact: b.contact.clone(),
        transport: match b.flow.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
        .to_owned(),
        local: b.flow.local.to_string(),
        remote: b.flow.remote.to_string(),
        expires_at: i64::try_from(b.expires_at).unwrap_or(i64::MAX),
        instance: b.instance.clone(),
        reg_id: b.reg_id.map(i64::from),
        call_id: b.call_id.clone(),
        cseq: i64::from(b.cseq),
        path: b.path.join("\n"),
        nat: i64::from(b.nat.0),
        keepalive_failures: i64::from(b.keepalive_failures),
    }
}

/// A stored registration back as a binding; `None` if a field does not parse (skipped).
fn binding_of(r: &farside_store::RegistrationRow) -> Option<Binding> {
    let transport = match r.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        _ => return None,
    };
    Some(Binding {
        contact: r.contact.clone(),
        flow: Flow {
            transport,
            local: r.local.parse().ok()?,
            remote: r.remote.parse().ok()?,
        },
        expires_at: u64::try_from(r.expires_at).ok()?,
        instance: r.instance.clone(),
        reg_id: r.reg_id.and_then(|n| u32::try_from(n).ok()),
        call_id: r.call_id.clone(),
        cseq: u32::try_from(r.cseq).ok()?,
        path: r
            .path
            .lines()
            .map(str::to_owned)
            .filter(|p| !p.is_empty())
            .collect(),
        nat: NatTests(u16::try_from(r.nat).ok()?),
        keepalive_failures: u32::try_from(r.keepalive_failures).unwrap_or(0),
    })
}

/// A STUN message with the magic cookie (RFC 7983's first-byte rule, then the cookie).
fn is_stun(b: &[u8]) -> bool {
    b.len() >= farside_stun::HEADER_LEN
        && b[0] < 4
        && b[4..8] == farside_stun::MAGIC_COOKIE.to_be_bytes()
}
