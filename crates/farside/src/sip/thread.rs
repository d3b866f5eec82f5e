//! The SIP thread: it owns the `[sip] listen` UDP sockets and connections and moves bytes between
//! them and [`SipServer`], which makes every SIP decision. What the server reports is counted,
//! logged and handed to the store writer here.
//!
//! UDP is read with `recvmmsg` and answered with `sendmmsg`: each socket's answers to one batch
//! leave in one system call.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use farside_io::{Epoll, RecvBatch, SendBatch};
use farside_sip::digest::Algorithm;
use farside_sip::nat::Transport;
use farside_sip::registrar::{Flow, Outcome, Users};
use farside_sip::server::{Event, Keys, Mode, SipServer, SipServerConfig};
use farside_sip::{ParseError, Transmit};
use farside_time::Timestamp;

use super::registrations::{self, Ack, Job};
use crate::control::credentials::CredentialsCell;
use crate::net::stream::{self, After, Kind, Pool, Urgency};
use crate::net::tls_reload::TlsFiles;
use crate::runtime::clock;
use crate::runtime::versioned::Versioned;
use crate::telemetry::sip::SipCounters;
use crate::telemetry::stream::StreamCounters;

/// Datagrams read by one `recvmmsg`, and answers queued per socket for one `sendmmsg`.
const BATCH: usize = 32;
/// Room per queued answer; a larger one (rare: a 401 is about 600 bytes) is sent alone.
const SLOT: usize = 4096;
/// Batches a socket may take per pass while it has more, before the others' turn.
const ROUNDS: usize = 4;
/// The longest wait, so that shutdown is seen.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// The wait of a thread waiting on its lone socket: the SIP server's timers are no finer.
const TICK: Duration = Duration::from_millis(100);
/// Epoll tokens of the connections' pool start here (the UDP sockets' are below).
const STREAM_TOKENS: u64 = 1 << 40;

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

/// What the SIP thread is started with.
pub struct SipShell {
    /// The server's settings (its listeners among them).
    pub server: SipServerConfig,
    /// The registrar and keep-alive settings a reload replaces.
    pub settings: Arc<Versioned<SipSettings>>,
    /// Registrations an operator asked to remove.
    pub board: Arc<crate::control::sessions::SipBoard>,
    /// The limits of its connections.
    pub limits: stream::Limits,
    /// Its connections' counters.
    pub stream_counters: Arc<StreamCounters>,
    /// The certificate for TLS and WSS listeners.
    pub tls: Option<TlsFiles>,
    /// Which pages may open WebSocket connections.
    pub ws_origins: farside_sip::websocket::Origins,
    /// The client side for dialling phones' TLS Contacts; none: they get 480.
    pub dial_tls: Option<Arc<rustls::ClientConfig>>,
    /// The store holding users, keys and registrations.
    pub store_url: String,
    /// This node's name in the store (`store.node`).
    pub node: String,
    /// The RTP relay the server's calls are relayed through, if it runs.
    pub relay: Option<Box<dyn farside_sip::media::MediaRelay + Send>>,
    /// `sip.write_behind`: how late refreshes may reach the store; zero: write-through.
    pub write_behind: Duration,
    /// Which addresses the STUN service answered lately (the SIP ALG check's).
    pub stun_seen: Arc<dyn farside_sip::alg::StunSeen + Send + Sync>,
}

/// What a reload may change in the running SIP server: the registrar's settings (but its
/// domain and realm) and the keep-alives'.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// The registrar's settings.
    pub registrar: farside_sip::registrar::RegistrarConfig,
    /// The keep-alives' settings, `None` when off.
    pub keepalive: Option<farside_sip::keepalive::KeepaliveConfig>,
    /// `sip.refusals_per_second`.
    pub refusals_per_second: u32,
}

/// Binds the listeners, restores the registrations the store holds, and starts the thread (and
/// the store writer's).
pub fn spawn(
    shell: SipShell,
    credentials: Arc<CredentialsCell>,
    counters: Arc<SipCounters>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let config = shell.server;
    let what = match config.mode {
        Mode::Registrar => format!("registrar for {:?}", config.registrar.domain),
        Mode::Edge { upstream, .. } => format!("edge in front of {upstream}"),
    };
    let mut sockets = Vec::new();
    let mut streams = Vec::new();
    for &(a, transport) in &config.listeners {
        let kind = match transport {
            Transport::Udp => None,
            Transport::Tcp => Some(Kind::SipTcp),
            Transport::Tls => Some(Kind::SipTls),
            Transport::Ws => Some(Kind::SipWs),
            Transport::Wss => Some(Kind::SipWss),
        };
        if let Some(kind) = kind {
            streams.push((a, kind));
            continue;
        }
        // Large buffers ride out bursts (Kamailio asks for as much as the kernel allows too);
        // no SO_REUSEPORT: a second server on the port must fail, not share it.
        let options = farside_io::SocketOptions {
            reuse_port: false,
            ..farside_io::SocketOptions::default()
        };
        let s = farside_io::bind_udp(a, options)
            .with_context(|| format!("S401 cannot bind SIP udp {a}"))?;
        tracing::info!("S400 SIP {what} listening on udp {a}");
        sockets.push((a, s));
    }
    let mut tcp = Pool::bind(
        &streams,
        shell.tls,
        shell.limits,
        shell.stream_counters,
        STREAM_TOKENS,
    )
    .map_err(|e| anyhow::anyhow!("S401 cannot bind a SIP listener: {e:#}"))?;
    tcp.set_ws_origins(shell.ws_origins);
    if let Some(client) = shell.dial_tls {
        tcp.set_dial_tls(client);
    }
    for (a, kind) in tcp.addresses() {
        tracing::info!("S400 SIP {what} listening on {} {a}", kind.name());
    }
    let mut store = farside_store::open(&shell.store_url)
        .map_err(|e| anyhow::anyhow!("S303 cannot open the store: {e}"))?;
    // Keys kept in the store: nonces and flow tokens given out before a restart stay good.
    let mut key = |name: &str| {
        store
            .server_key(name, crate::runtime::seed::random_key())
            .map_err(|e| anyhow::anyhow!("S303 cannot read the {name} key from the store: {e}"))
    };
    let keys = Keys {
        nonces: key("sip-digest-nonces")?,
        flow_tokens: key("sip-flow-tokens")?,
    };
    let mut server = SipServer::new(config, keys, crate::runtime::seed::fresh_seed());
    let settings = shell.settings;
    let board = shell.board;
    if let Some(relay) = shell.relay {
        server.set_media_relay(relay);
    }
    server.set_stun_seen(shell.stun_seen);
    let mut restored = 0;
    for (aor, bindings) in registrations::load(&mut *store, clock::now(), &shell.node)? {
        restored += bindings.len();
        server.restore(aor, bindings);
    }
    tracing::info!("S405 SIP registrations restored from the store: {restored}");
    let (writer, writer_thread) = registrations::spawn_writer(store, shell.node.clone())?;
    // A store nodes share (PostgreSQL): the phones whose flows other nodes hold are reached
    // through them.
    let elsewhere = match shell.store_url.starts_with("postgres") {
        true => Some(registrations::watch_elsewhere(
            &shell.store_url,
            shell.node.clone(),
        )?),
        false => None,
    };
    server.set_refresh_flush(shell.write_behind);
    let tx = sockets
        .iter()
        .map(|_| SendBatch::new(BATCH, SLOT))
        .collect();
    std::thread::Builder::new()
        .name("sip".into())
        .spawn(move || {
            let mut t = SipThread {
                sockets,
                tx,
                tcp,
                server,
                credentials,
                credentials_seen: 0,
                settings,
                settings_seen: 0,
                elsewhere,
                elsewhere_seen: 0,
                board,
                writer: writer.jobs,
                acks: writer.acks,
                store_ok: writer.healthy,
                counters,
                last_malformed_log: None,
                dials: Vec::new(),
                dialling: HashMap::new(),
            };
            if let Err(e) = t.run(&shutdown) {
                tracing::error!("S402 the SIP thread stopped: {e:#}");
            }
            // Whatever the store has not seen yet goes to it before the writer ends.
            t.server.flush_changes();
            t.drain_events(clock::now());
            drop(t);
            let _ = writer_thread.join();
        })
        .context("spawn the SIP thread")
}

struct SipThread {
    sockets: Vec<(SocketAddr, UdpSocket)>,
    /// Each socket's queued answers.
    tx: Vec<SendBatch>,
    tcp: Pool,
    server: SipServer,
    credentials: Arc<CredentialsCell>,
    credentials_seen: u64,
    settings: Arc<Versioned<SipSettings>>,
    settings_seen: u64,
    /// The bindings other nodes hold, when nodes share the store.
    elsewhere: Option<Arc<Versioned<registrations::ByAor>>>,
    elsewhere_seen: u64,
    board: Arc<crate::control::sessions::SipBoard>,
    writer: SyncSender<Job>,
    /// The store writer's acknowledgements of marks.
    acks: std::sync::mpsc::Receiver<Ack>,
    /// Whether the store takes writes now (the writer says).
    store_ok: Arc<AtomicBool>,

    counters: Arc<SipCounters>,
    /// When a malformed message was last logged (at most one a second).
    last_malformed_log: Option<Timestamp>,
    /// Dials the server asked for ([`Event::Dial`]), made once its events are in.
    dials: Vec<Transmit>,
    /// Connections Farside opened whose phone has not spoken yet, with what went over them:
    /// handed back to the server if the connection fails first.
    dialling: HashMap<u64, Vec<Transmit>>,
}

impl SipThread {
    fn run(&mut self, shutdown: &AtomicBool) -> anyhow::Result<()> {
        let mut epoll = Epoll::new()?;
        for (i, (_, s)) in self.sockets.iter().enumerate() {
            epoll.add(s.as_raw_fd(), i as u64)?;
        }
        self.tcp.register(&epoll)?;
        // With one UDP socket and no connections to watch, the thread waits in `recvmmsg` on
        // it (one system call per wake-up, as Kamailio's receivers wait in `recvfrom`); else
        // in `epoll_wait`.
        let lone = match (&self.sockets[..], self.tcp.addresses().next()) {
            ([(_, s)], None) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(TICK))?;
                true
            }
            _ => false,
        };
        let mut ready = Vec::new();
        let mut rx = RecvBatch::new(BATCH, farside_sip::MAX_MESSAGE);
        let mut last_gauges: Option<Timestamp> = None;
        while !shutdown.load(Relaxed) {
            ready.clear();
            if lone {
                self.receive(&epoll, 0, &mut rx, true);
            } else {
                let wait = match self.tcp.has_resumed() {
                    true => Duration::ZERO,
                    // Answers wait for the store: look for its acknowledgement soon.
                    false if self.server.awaiting_store() => HELD_WAIT,
                    false => self
                        .server
                        .poll_timeout()
                        .map_or(MAX_WAIT, |t| clock::until(t).min(MAX_WAIT)),
                };
                epoll.wait(wait, |t| ready.push(t))?;
                ready.extend(self.tcp.take_resumed());
            }
            let now = clock::now();
            self.refresh_users();
            self.take_acks();
            for &token in &ready {
                if self.tcp.owns(token) {
                    let (server, dialling) = (&mut self.server, &mut self.dialling);
                    self.tcp.ready(&epoll, now, token, &mut |meta, bytes, _| {
                        // A dialled phone that speaks is reached: its connection is a flow.
                        dialling.remove(&meta.id);
                        server.handle_input(now, flow_of(meta), bytes);
                        After::Continue
                    });
                    self.drain(&epoll, now);
                    continue;
                }
                self.receive(&epoll, token as usize, &mut rx, false);
            }
            if self.server.poll_timeout().is_some_and(|t| now >= t) {
                self.server.handle_timeout(now);
            }
            self.drain(&epoll, now);
            self.flush();
            self.tcp.flush_all(&epoll, now);
            // Nothing rides on a SIP connection but what the registrar holds, and what went
            // over a dialled one that failed before the phone spoke.
            for closed in self.tcp.take_closed() {
                for t in self.dialling.remove(&closed.meta.id).unwrap_or_default() {
                    self.server.dial_failed(now, t);
                }
            }
            self.drain(&epoll, now);
            if last_gauges.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                last_gauges = Some(now);
                let server = &self.server;
                self.tcp
                    .sweep(&epoll, now, &|meta| server.holds_flow(&flow_of(meta)));
                let c = &self.counters;
                c.bindings
                    .store(self.server.registrar().len() as u64, Relaxed);
                c.dialogs.store(self.server.dialogs() as u64, Relaxed);
                c.connections.store(self.tcp.len() as u64, Relaxed);
            }
        }
        Ok(())
    }

    /// Takes a few batches from UDP socket `i` (the first waiting for a datagram, if `wait`),
    /// hands them to the server and sends its answers; then the others' turn (epoll is
    /// level-triggered: what is left wakes the next wait).
    fn receive(&mut self, epoll: &Epoll, i: usize, rx: &mut RecvBatch, wait: bool) {
        for round in 0..ROUNDS {
            let Some((local, socket)) = self.sockets.get(i) else {
                break;
            };
            let local = *local;
            let got = if wait && round == 0 {
                farside_io::recv_batch_waiting(socket, rx)
            } else {
                farside_io::recv_batch(socket, rx)
            };
            match got {
                Ok(n) if n > 0 => {}
                _ => break,
            }
            // A lone socket's datagrams are handled before the main loop looks again: users
            // added while the thread waited must be known to them.
            self.refresh_users();
            let now = clock::now();
            for (k, d) in rx.iter().filter(|d| !d.truncated).enumerate() {
                // A dual-stack socket names IPv4 senders ::ffff:a.b.c.d: use a.b.c.d.
                let remote = SocketAddr::new(d.source.ip().to_canonical(), d.source.port());
                let flow = Flow {
                    transport: Transport::Udp,
                    local,
                    remote,
                };
                self.server.handle_input(now, flow, d.payload);
                // The first answer of a wake-up leaves at once, the rest in one batch: its
                // sender's next request (the REGISTER with credentials after a 401) may then
                // arrive while the rest of the batch is handled, not after the thread slept.
                if round == 0 && k == 0 && rx.len() > 1 {
                    self.drain(epoll, now);
                    self.flush();
                }
            }
            self.drain(epoll, now);
            self.flush();
            if rx.len() < BATCH {
                break;
            }
        }
    }

    /// The store's users, if they changed since the server last got them (one atomic load
    /// when they did not).
    fn refresh_users(&mut self) {
        if let Some(c) = self.credentials.newer_than(&mut self.credentials_seen) {
            self.server.set_users(Arc::new(StoreUsers(c)));
        }
        if let Some(s) = self.settings.newer_than(&mut self.settings_seen) {
            self.server.set_settings(
                s.registrar.clone(),
                s.keepalive.clone(),
                crate::runtime::seed::fresh_seed(),
            );
            self.server.set_refusals_per_second(s.refusals_per_second);
            tracing::debug!("S416 SIP registrar and keep-alive settings reloaded");
        }
        if let Some(e) = self
            .elsewhere
            .as_ref()
            .and_then(|e| e.newer_than(&mut self.elsewhere_seen))
        {
            self.server.set_bindings_elsewhere((*e).clone());
        }
        for (aor, contact) in self.board.take() {
            if self.server.remove_binding(&aor, &contact) {
                tracing::info!("S417 {aor}: {contact} removed by the operator");
            }
        }
    }

    /// Sends what the server has to send and takes in what it reports, until it has nothing
    /// more (a failed send or dial gives it more to say).
    fn drain(&mut self, epoll: &Epoll, now: Timestamp) {
        loop {
            while let Some(t) = self.server.poll_transmit() {
                self.send(epoll, now, t);
            }
            self.drain_events(now);
            if self.dials.is_empty() && !self.server.has_transmits() {
                break;
            }
            for t in std::mem::take(&mut self.dials) {
                self.dial(epoll, now, t);
            }
        }
    }

    /// Takes in the store writer's acknowledgements.
    fn take_acks(&mut self) {
        self.server.set_store_writable(self.store_ok.load(Relaxed));
        while let Ok((seq, saved)) = self.acks.try_recv() {
            self.server.persisted(seq, saved);
        }
    }

    /// Sends `t` over the connection Farside has to its destination, or opens one (RFC 3261
    /// §18.1.1); hands it back to the server when that cannot be done.
    fn dial(&mut self, epoll: &Epoll, now: Timestamp, t: Transmit) {
        let kind = match t.transport {
            Transport::Tls => Kind::SipTls,
            _ => Kind::SipTcp,
        };
        let found = self.tcp.find(t.from, t.to);
        let id = found.or_else(|| self.tcp.connect(epoll, now, t.from, t.to, kind, DIALLED));
        match id {
            Some(id)
                if self
                    .tcp
                    .send_to(epoll, now, id, &t.bytes, Urgency::Required) =>
            {
                if found.is_none() {
                    tracing::debug!(
                        "S419 SIP {} connection to {} opened for a request",
                        kind.name(),
                        t.to
                    );
                }
                self.dialling.entry(id).or_default().push(t);
            }
            _ => {
                tracing::debug!(
                    "S419 SIP {} connection to {} could not be opened",
                    kind.name(),
                    t.to
                );
                self.server.dial_failed(now, t);
            }
        }
    }

    /// Takes in what the server reports.
    fn drain_events(&mut self, now: Timestamp) {
        while let Some(e) = self.server.poll_event() {
            self.event(e, now);
        }
    }

    /// Queues `t` on its UDP socket's batch (sent by [`SipThread::flush`]), or sends it over
    /// its connection.
    fn send(&mut self, epoll: &Epoll, now: Timestamp, t: Transmit) {
        if t.transport.is_stream() {
            if !self
                .tcp
                .send(epoll, now, t.from, t.to, &t.bytes, Urgency::Required)
            {
                // The flow is gone: the server decides (430, a dial, 480, or nothing).
                self.server.flow_failed(now, t);
            }
            return;
        }
        let j = self
            .sockets
            .iter()
            .position(|(a, _)| *a == t.from)
            .unwrap_or(0);
        let (Some((_, socket)), Some(batch)) = (self.sockets.get(j), self.tx.get_mut(j)) else {
            return;
        };
        if t.bytes.len() > SLOT {
            // Larger than a slot: alone, after what is queued (order kept).
            send_counted(socket, batch, &self.counters);
            if socket.send_to(&t.bytes, t.to).is_err() {
                self.counters.send_failures.fetch_add(1, Relaxed);
            }
            return;
        }
        if batch.is_full() {
            send_counted(socket, batch, &self.counters);
        }
        batch.push(t.to, |buf: &mut [u8]| {
            buf.get_mut(..t.bytes.len())?.copy_from_slice(&t.bytes);
            Some(t.bytes.len())
        });
    }

    /// Sends every socket's queued answers.
    fn flush(&mut self) {
        for ((_, socket), batch) in self.sockets.iter().zip(&mut self.tx) {
            if !batch.is_empty() {
                send_counted(socket, batch, &self.counters);
            }
        }
    }

    fn event(&mut self, e: Event, now: Timestamp) {
        let c = &self.counters;
        let one = |n: &std::sync::atomic::AtomicU64| {
            n.fetch_add(1, Relaxed);
        };
        match e {
            Event::KeepaliveReceived => one(&c.keepalives),
            Event::StunAnswered => one(&c.stun),
            Event::Mirrored => one(&c.mirrored),
            Event::EchoCall => one(&c.echo_calls),
            Event::AlgSuspected { from, suspicion } => {
                one(&c.alg_suspected);
                // Once per source: the core reports a source's first rewritten request only.
                tracing::warn!(
                    "S424 SIP ALG suspected for {from} from {}: {}. Ask the user to turn off \"SIP ALG\" (or \"SIP helper\") on their router",
                    suspicion.source,
                    suspicion.evidence
                );
            }
            Event::CallAlgSuspected {
                call_id,
                callee,
                suspicion,
            } => {
                let side = if callee { "callee" } else { "caller" };
                // The phone was logged once (S424); its calls are listed, each side once (a
                // second 18x or 2xx costs a look, nothing more).
                if !self.board.has_alg_call(&call_id, side) {
                    one(&c.alg_calls);
                    tracing::debug!(
                        "S425 call {call_id}: SIP ALG suspected at the {side} {}: {}",
                        suspicion.source,
                        suspicion.evidence
                    );
                    self.board.alg_call(crate::control::sessions::AlgCall {
                        call_id,
                        side,
                        source: suspicion.source,
                        evidence: suspicion.evidence,
                        seen_unix_ms: now.unix_millis(),
                    });
                }
            }
            Event::Malformed { remote, error } => {
                one(&c.malformed);
                self.log_malformed(now, remote, error);
            }
            Event::Request { method, nat } => {
                one(&c.requests[method as usize]);
                for (i, (bit, _)) in farside_sip::nat::NatTests::ALL.iter().enumerate() {
                    if nat.any(*bit) {
                        one(&c.nat[i]);
                    }
                }
            }
            Event::Register(outcome) => match outcome {
                Outcome::Registered { .. } => one(&c.registered),
                Outcome::Challenged { stale } => {
                    if stale {
                        one(&c.stale);
                    }
                    one(&c.challenged);
                }
                Outcome::AuthFailed => one(&c.auth_failures),
                Outcome::RateLimited => one(&c.auth_rate_limited),
                Outcome::Refused(_) => one(&c.refused),
            },
            Event::Refused(code) => c.count_refusal(code),
            Event::Forwarded(n) => {
                c.forwarded.fetch_add(n as u64, Relaxed);
            }
            Event::ResponseDropped => one(&c.responses_dropped),
            Event::FlowFailed => one(&c.no_flow),
            Event::StoreUnavailable => one(&c.store_refused),
            Event::Persist(seq) => {
                if self.writer.try_send(Job::Mark(seq)).is_err() {
                    self.server.persisted(seq, false);
                }
            }
            Event::Dial(t) => self.dials.push(t),
            Event::RefusalRateLimited => one(&c.refusals_rate_limited),
            Event::DialogStarted => one(&c.dialogs_started),
            Event::DialogEnded => one(&c.dialogs_ended),
            Event::MediaRelayed { answer, rewritten } => {
                one(&c.media[usize::from(answer) + if rewritten { 0 } else { 2 }]);
            }
            Event::MediaDeleted => one(&c.media[4]),
            Event::PingSent => one(&c.pings_sent),
            Event::PingAnswered => one(&c.pings_answered),
            Event::PingMissed => one(&c.pings_missed),
            Event::Unreachable { aor, contact } => {
                one(&c.unreachable);
                tracing::info!(
                    "S409 {aor}: {contact} stopped answering keep-alives; binding removed"
                );
            }
            Event::BindingsChanged { aor, bindings } => {
                let rows = registrations::rows(&aor, &bindings);
                if self.writer.try_send(Job::Change(aor, rows)).is_err() {
                    tracing::warn!(
                        "S406 the store writer is behind: a registration change was not saved"
                    );
                }
            }
        }
    }

    /// S403, at most once a second: the counter has them all.
    fn log_malformed(&mut self, now: Timestamp, remote: SocketAddr, error: ParseError) {
        if self
            .last_malformed_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_malformed_log = Some(now);
            tracing::debug!("S403 SIP message from {remote} dropped: {error}");
        }
    }
}

/// The flow of a SIP connection.
/// How long the thread waits at most while answers wait for the store writer.
const HELD_WAIT: Duration = Duration::from_millis(2);

/// The pool's mark on connections Farside opened.
const DIALLED: u64 = 1;

/// Sends `batch` on `socket`, counting what the kernel refused (a full send buffer, an
/// unreachable destination): the answer is lost, and a phone retransmits its request.
fn send_counted(socket: &UdpSocket, batch: &mut SendBatch, counters: &SipCounters) {
    let refused = crate::net::udp::send_refused(socket, batch);
    if refused > 0 {
        counters.send_failures.fetch_add(refused, Relaxed);
    }
}

fn flow_of(meta: &stream::Meta) -> Flow {
    Flow {
        transport: meta.kind.sip_transport(),
        local: meta.local,
        remote: meta.remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_kernel_refuses_are_counted_and_the_rest_still_go() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let counters = SipCounters::default();
        let mut batch = SendBatch::new(BATCH, SLOT);
        // Port 0 is no destination: the kernel answers EINVAL for that datagram alone.
        let nowhere: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        for to in [nowhere, peer.local_addr().expect("addr"), nowhere] {
            batch.push(to, |buf: &mut [u8]| {
                buf.get_mut(..5)?.copy_from_slice(b"hello");
                Some(5)
            });
        }
        send_counted(&socket, &mut batch, &counters);
        assert_eq!(counters.send_failures.load(Relaxed), 2);
        let mut buf = [0u8; 16];
        assert_eq!(peer.recv(&mut buf).expect("the good one arrives"), 5);
        assert!(batch.is_empty());
    }
}
