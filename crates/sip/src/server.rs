//! The SIP server: everything Farside does with SIP, as one sans-IO state machine in the shape
//! of `farside-probe`'s and quinn's. It never touches a socket, a clock or the store. The I/O
//! shell
//!
//! 1. creates it with [`SipServer::new`] (the keys from the store, so nonces and flow tokens
//!    outlive a restart) and puts back the stored registrations with [`SipServer::restore`],
//! 2. hands it every datagram and every framed stream message with
//!    [`SipServer::handle_input`], and calls [`SipServer::handle_timeout`] once
//!    [`SipServer::poll_timeout`] is reached,
//! 3. sends every [`Transmit`] from [`SipServer::poll_transmit`] (over UDP from the socket at
//!    its `from`, or over the connection to its `to`), and
//! 4. counts, logs and stores what [`SipServer::poll_event`] reports.
//!
//! Inside, it tells keep-alives and STUN from SIP, fixes the top Via (`received`, `rport`,
//! RFC 3581), runs the NAT tests, and routes: in registrar mode REGISTERs go to the
//! [`Registrar`] and other requests through the stateful proxy ([`Transactions`], forking with
//! [`Proxy::fork`]); in edge mode everything goes to the [`Edge`] and the upstream's 2xx to a
//! REGISTER is mirrored for keep-alives. Keep-alive pings ([`Keepalives`]) and dialogs
//! ([`Dialogs`]) are driven from here too.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farside_stun::binding::{BindingConfig, BindingServer, Outcome as StunOutcome, Received};
use farside_time::Timestamp;

use crate::alg::{AlgDetector, StunSeen};
use crate::dialogs::{DialogEvent, Dialogs};
use crate::echo::EchoCalls;
use crate::edge::{ContactFix, Edge, EdgeRegistrations};
use crate::extensions;
use crate::flow_token::FlowTokens;
use crate::keepalive::{KeepaliveConfig, Keepalives};
use crate::media::{self, MediaCalls, MediaRelay, RelayPolicy, Step};
use crate::message::{Message, Method, StartLine};
use crate::nat::{self, NatTests, Transport};
use crate::proxy::{Action, Proxy};
use crate::registrar::{Binding, Flow, Outcome, Registrar, RegistrarConfig, Users, aor_of};
use crate::transaction::Transactions;
use crate::transmit::Transmit;
use crate::{Edits, HeaderName, ParseError};

/// What the server is in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Farside is the registrar: it authenticates phones and routes their calls.
    Registrar,
    /// Farside is the NAT edge of the registrar or PBX at `upstream` (RFC 5626 §5).
    Edge {
        /// Where requests from phones go.
        upstream: SocketAddr,
        /// How NATed Contacts are fixed for an upstream that keeps no Path.
        contact_fix: ContactFix,
    },
}

/// Bounds on what the server holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Transactions at once (new requests beyond get 503).
    pub max_transactions: usize,
    /// Bindings one INVITE is forked to at most.
    pub max_forks: usize,
    /// Dialogs counted at once (the oldest is forgotten beyond).
    pub max_dialogs: usize,
    /// A dialog whose end was not seen is forgotten after this long.
    pub dialog_max_age: Duration,
    /// Answers Farside writes itself over UDP (error answers, answers to OPTIONS) per source
    /// IP and second; beyond, they are dropped unsent, so that a forged source draws no flood
    /// (0: no limit). Responses forwarded from phones are not counted.
    pub refusals_per_second: u32,
    /// Sources whose SIP ALG verdict is remembered ([`crate::alg`]): one found again after it
    /// was forgotten is judged afresh by its next request.
    pub alg_sources: usize,
    /// Echo calls at once ([`crate::echo`]; 486 Busy Here beyond).
    pub echo_calls: usize,
    /// How long an echo call runs at most.
    pub echo_max_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transactions: 10_000,
            max_forks: 8,
            max_dialogs: 100_000,
            dialog_max_age: Duration::from_secs(12 * 3600),
            refusals_per_second: 50,
            alg_sources: 100_000,
            echo_calls: crate::echo::DEFAULT_MAX_CALLS,
            echo_max_duration: crate::echo::DEFAULT_MAX_DURATION,
        }
    }
}

/// Everything the server is configured with.
#[derive(Debug, Clone)]
pub struct SipServerConfig {
    /// The registrar's settings (its domain is the proxy's too).
    pub registrar: RegistrarConfig,
    /// Registrar or edge.
    pub mode: Mode,
    /// Keep-alive pings to registered phones; `None`: off.
    pub keepalive: Option<KeepaliveConfig>,
    /// Every listener: its address and transport. The UDP ones are where requests sent over
    /// UDP leave from.
    pub listeners: Vec<(SocketAddr, Transport)>,
    /// Bounds.
    pub limits: Limits,
    /// SOFTWARE in answers to STUN Binding requests on SIP ports; none by default.
    pub software: Option<String>,
    /// Which calls the RTP relay set with [`SipServer::set_media_relay`] relays.
    pub relay: RelayPolicy,
    /// The mirror service's reserved user ([`crate::mirror`]); empty: no mirror.
    pub mirror_user: String,
    /// The echo service's reserved user ([`crate::echo`]); empty: no echo.
    pub echo_user: String,
}

/// The keys that sign what the server hands out; kept across restarts (in the store) so that
/// nonces and flow tokens given out before one stay good.
#[derive(Clone)]
pub struct Keys {
    /// Signs Digest nonces.
    pub nonces: [u8; 32],
    /// Signs RFC 5626 flow tokens.
    pub flow_tokens: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// Request methods counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// INVITE.
    Invite,
    /// Anything else.
    Other,
}

impl MethodKind {
    /// Every kind with its label.
    pub const ALL: [(MethodKind, &'static str); 4] = [
        (MethodKind::Register, "REGISTER"),
        (MethodKind::Options, "OPTIONS"),
        (MethodKind::Invite, "INVITE"),
        (MethodKind::Other, "other"),
    ];

    /// The kind of `method`.
    pub fn of(method: Method<'_>) -> MethodKind {
        if method == Method::REGISTER {
            MethodKind::Register
        } else if method == Method::OPTIONS {
            MethodKind::Options
        } else if method == Method::INVITE {
            MethodKind::Invite
        } else {
            MethodKind::Other
        }
    }
}

/// What happened, for the shell to count, log and store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A keep-alive arrived: CRLF or four zero bytes over UDP, a CRLF ping or pong over a
    /// connection (RFC 5626 §3.5.1).
    KeepaliveReceived,
    /// A STUN Binding request on a SIP port was answered (RFC 5626 §3.5.1's UDP keep-alive).
    StunAnswered,
    /// Bytes from `remote` that are not a SIP message were dropped.
    Malformed {
        /// Where they came from.
        remote: SocketAddr,
        /// What is wrong with them.
        error: ParseError,
    },
    /// A source's first request that looks rewritten by a SIP ALG ([`crate::alg`]): log it
    /// once. Its requests and bindings carry [`NatTests::ALG_SUSPECTED`] from then on.
    AlgSuspected {
        /// The From URI of the request (who the phone says it is).
        from: String,
        /// The source and the evidence.
        suspicion: crate::alg::Suspicion,
    },
    /// A call in which a SIP ALG is suspected on one side: its caller's first INVITE came
    /// from a suspected source, or its callee answered from one. Reported per call (a
    /// retransmission or another provisional answer reports it again).
    CallAlgSuspected {
        /// The call's Call-ID.
        call_id: String,
        /// The callee's side (else the caller's).
        callee: bool,
        /// The side's source and the evidence.
        suspicion: crate::alg::Suspicion,
    },
    /// A request for the mirror service was answered with what arrived ([`crate::mirror`]).
    Mirrored,
    /// A call to the echo service began ([`crate::echo`]).
    EchoCall,
    /// A request arrived, and these NAT tests fired for it.
    Request {
        /// Its method.
        method: MethodKind,
        /// The tests (Kamailio's `nat_uac_test` bits).
        nat: NatTests,
    },
    /// What became of a REGISTER in registrar mode.
    Register(Outcome),
    /// An error response Farside wrote itself, by status code (a request refused at once is
    /// counted again when retransmitted; a transaction's own 408 once, however often it is
    /// sent again).
    Refused(u16),
    /// This many requests or responses were sent on (each fork counts).
    Forwarded(usize),
    /// A response that belongs to nothing here was dropped.
    ResponseDropped,
    /// An answer Farside wrote over UDP was dropped unsent: its destination's budget of
    /// [`Limits::refusals_per_second`] was spent.
    RefusalRateLimited,
    /// A dialog began (the first 2xx to an INVITE).
    DialogStarted,
    /// A dialog ended (a 2xx to its BYE).
    DialogEnded,
    /// An SDP offer or answer went to the RTP relay; `rewritten` unless the relay refused
    /// it (or did not answer) and the SDP passed as it came.
    MediaRelayed {
        /// An answer (else an offer).
        answer: bool,
        /// The SDP passed on names the relay.
        rewritten: bool,
    },
    /// A relayed call ended, and the relay was told.
    MediaDeleted,
    /// A message could not go over its flow (the connection is gone; see
    /// [`SipServer::flow_failed`]): dropped, or its request answered 430 or 480, or dialled.
    FlowFailed,
    /// Open a connection from `from` (a listener) to `to` over `transport` (TCP or TLS), and
    /// send `bytes` over it: a request for a phone whose own connection is gone, to the
    /// address its Contact names (RFC 3261 §18.1.1). When that fails, hand the transmit back
    /// with [`SipServer::flow_failed`].
    Dial(Transmit),
    /// A keep-alive ping went to a binding's flow.
    PingSent,
    /// A SIP keep-alive ping was answered.
    PingAnswered,
    /// A SIP keep-alive ping went unanswered.
    PingMissed,
    /// Hand the store this mark after the [`Event::BindingsChanged`] before it, and tell the
    /// server with [`SipServer::persisted`] once the store has them (write-through: answers to
    /// REGISTERs wait for it).
    Persist(u64),
    /// A REGISTER was answered 500 with Retry-After instead of 2xx: the store took no writes.
    StoreUnavailable,
    /// A binding missed `max_failures` pings in a row and was removed.
    Unreachable {
        /// Its address of record.
        aor: String,
        /// Its Contact.
        contact: String,
    },
    /// The bindings of an address of record changed (none left: it is gone); the store keeps
    /// them.
    BindingsChanged {
        /// The address of record.
        aor: String,
        /// Its bindings now.
        bindings: Vec<Binding>,
    },
}

/// How often the server wants [`SipServer::handle_timeout`] while transactions are live
/// (their retransmission timers run from 500 ms, RFC 3261 §17.1.1.1).
const TRANSACTION_TICK: Duration = Duration::from_millis(100);
/// How often otherwise: keep-alives, expiry of bindings and failure counts.
const HOUSEKEEPING_TICK: Duration = Duration::from_secs(1);
/// How often mere refreshes of registrations (and keep-alive counts) go to the store, unless
/// set otherwise: a restart after a crash may find an expiry up to this much older than it
/// was, never a binding missing (new and removed bindings go at once).
const REFRESH_FLUSH: Duration = Duration::from_secs(10);

/// The SIP server (see the module documentation).
pub struct SipServer {
    mode: Mode,
    domain: String,
    /// Every listener address (Routes and Vias naming one are ours).
    addresses: Arc<[SocketAddr]>,
    /// The UDP listeners.
    udp: Vec<SocketAddr>,
    /// Every listener with its transport (where a dialled connection starts).
    listeners: Vec<(SocketAddr, Transport)>,
    limits: Limits,
    binding: BindingServer,
    /// The SIP ALG verdict per source.
    alg: AlgDetector,
    /// The mirror service's reserved user; empty: none.
    mirror_user: String,
    /// The echo service's reserved user; empty: none.
    echo_user: String,
    /// The echo calls up.
    echo: EchoCalls,
    /// Which addresses Farside's STUN service answered (set by the shell).
    stun_seen: Option<Arc<dyn StunSeen + Send + Sync>>,
    registrar: Registrar,
    users: Arc<dyn Users + Send + Sync>,
    keepalives: Option<Keepalives>,
    transactions: Transactions,
    dialogs: Dialogs,
    /// The calls handed to the RTP relay, and the relay.
    media: MediaCalls,
    relay: Option<Box<dyn MediaRelay + Send>>,
    edge_registrations: EdgeRegistrations,
    tokens: FlowTokens,
    branch_key: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// When housekeeping last ran.
    housekept: Option<Timestamp>,
    /// When transactions were last polled.
    ticked: Option<Timestamp>,
    /// When refreshes last went to the store.
    refreshes_flushed: Option<Timestamp>,
    /// How often refreshes go to the store ([`SipServer::set_refresh_flush`]).
    refresh_flush: Duration,
    /// Registrar 2xx answers and the store.
    store: crate::store_gate::StoreGate,
    /// Error answers over UDP, per destination and second.
    refusals: farside_ratelimit::PerSource,
    /// The latest time handed in (what [`SipServer::poll_transmit`] judges budgets by).
    now: Timestamp,
}

impl std::fmt::Debug for SipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipServer")
            .field("mode", &self.mode)
            .field("domain", &self.domain)
            .field("bindings", &self.registrar.len())
            .field("transactions", &self.transactions.len())
            .finish_non_exhaustive()
    }
}

/// No users at all (until the shell sets them).
struct NoUsers;

impl Users for NoUsers {
    fn ha1(&self, _: &str, _: &str, _: crate::digest::Algorithm) -> Option<Vec<u8>> {
        None
    }
}

impl SipServer {
    /// A server; `seed` (random) salts branches, dialog ids and keep-alive phases.
    pub fn new(config: SipServerConfig, keys: Keys, seed: u64) -> Self {
        let key = |n: u64| crate::scan::hash64(seed, &[&n.to_be_bytes()]);
        let domain = config.registrar.domain.to_ascii_lowercase();
        SipServer {
            mode: config.mode,
            domain,
            addresses: config.listeners.iter().map(|(a, _)| *a).collect(),
            udp: config
                .listeners
                .iter()
                .filter(|(_, t)| *t == Transport::Udp)
                .map(|(a, _)| *a)
                .collect(),
            listeners: config.listeners.clone(),
            limits: config.limits,
            binding: BindingServer::new(BindingConfig {
                alternate: None,
                software: config.software,
            }),
            alg: AlgDetector::new(config.limits.alg_sources),
            mirror_user: config.mirror_user,
            echo_user: config.echo_user,
            echo: EchoCalls::new(config.limits.echo_calls, config.limits.echo_max_duration),
            stun_seen: None,
            registrar: Registrar::new(config.registrar, keys.nonces),
            users: Arc::new(NoUsers),
            keepalives: config.keepalive.map(|k| Keepalives::new(k, key(1))),
            transactions: Transactions::new(config.limits.max_transactions),
            dialogs: Dialogs::new(
                config.limits.max_dialogs,
                config.limits.dialog_max_age,
                key(2),
            ),
            media: MediaCalls::new(
                config.relay,
                config.limits.max_dialogs,
                config.limits.dialog_max_age,
            ),
            relay: None,
            edge_registrations: EdgeRegistrations::default(),
            tokens: FlowTokens::new(keys.flow_tokens),
            branch_key: key(3),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            housekept: None,
            ticked: None,
            refreshes_flushed: None,
            refresh_flush: REFRESH_FLUSH,
            store: crate::store_gate::StoreGate::new(),
            refusals: farside_ratelimit::PerSource::new(config.limits.refusals_per_second, key(4)),
            now: Timestamp::EPOCH,
        }
    }

    /// Which addresses Farside's STUN service answered lately, so that phones that learned
    /// their public address there are not taken for rewritten by a SIP ALG.
    pub fn set_stun_seen(&mut self, seen: Arc<dyn StunSeen + Send + Sync>) {
        self.stun_seen = Some(seen);
    }

    /// How often mere refreshes of registrations (and keep-alive counts) are reported for the
    /// store: 10 s by default; zero reports them with every change, as new and removed
    /// bindings are (a store kept write-through).
    pub fn set_refresh_flush(&mut self, every: Duration) {
        self.refresh_flush = every;
        self.store.set_write_through(every.is_zero());
    }

    /// Whether the store takes writes now: while it does not, REGISTERs are answered 500 with
    /// Retry-After instead of 2xx (see `store_gate`).
    pub fn set_store_writable(&mut self, writable: bool) {
        self.store.set_writable(writable);
    }

    /// The store has every change reported before mark `seq` ([`Event::Persist`]), or (not
    /// `saved`) could not write them: the answers waiting for it go out, as 2xx or as 500.
    pub fn persisted(&mut self, seq: u64, saved: bool) {
        for (t, refused) in self.store.release(seq, saved) {
            if refused {
                self.events.push_back(Event::StoreUnavailable);
            }
            self.transmits.push_back(t);
        }
    }

    /// Whether answers wait for the store (write-through): the shell should look for its
    /// acknowledgement soon.
    pub fn awaiting_store(&self) -> bool {
        self.store.holding()
    }

    /// A new budget of error answers over UDP per source and second (a reload).
    pub fn set_refusals_per_second(&mut self, per_second: u32) {
        self.refusals.set_per_second(per_second);
        self.limits.refusals_per_second = per_second;
    }

    /// The bindings other nodes sharing the store hold (their flows' local ends are those
    /// nodes' addresses), replacing the last set: a request for one of those users goes to the
    /// node holding the flow, unless this node holds a flow of the same phone instance.
    pub fn set_bindings_elsewhere(&mut self, bindings: Vec<(String, Vec<Binding>)>) {
        self.registrar.set_elsewhere(bindings);
    }

    /// Removes one binding at an operator's request; the store hears of it with the next
    /// events. Returns whether there was one. The phone is reached no more until it
    /// registers again (its next refresh, or a restart).
    pub fn remove_binding(&mut self, aor: &str, contact: &str) -> bool {
        let removed = self.registrar.remove_binding(aor, contact);
        if removed {
            self.take_changed(false);
        }
        removed
    }

    /// New registrar and keep-alive settings (a reload); registrations, dialogs and
    /// transactions stay. Keep-alives turned on start with the next round; turned off, they
    /// stop.
    pub fn set_settings(
        &mut self,
        registrar: crate::registrar::RegistrarConfig,
        keepalive: Option<KeepaliveConfig>,
        seed: u64,
    ) {
        self.registrar.set_config(registrar);
        match (&mut self.keepalives, keepalive) {
            (Some(k), Some(c)) => k.set_config(c),
            (slot, c) => *slot = c.map(|c| Keepalives::new(c, seed)),
        }
    }

    /// The users REGISTERs authenticate against (replaced whole when the store changes).
    pub fn set_users(&mut self, users: Arc<dyn Users + Send + Sync>) {
        self.users = users;
    }

    /// The RTP relay that calls are relayed through (by [`SipServerConfig::relay`]'s rule);
    /// without one, SDP passes as it came.
    pub fn set_media_relay(&mut self, relay: Box<dyn MediaRelay + Send>) {
        self.relay = Some(relay);
    }

    /// Calls handed to the RTP relay and not yet ended.
    pub fn relayed_calls(&self) -> usize {
        self.media.len()
    }

    /// Puts back the bindings of `aor` read from the store at start.
    pub fn restore(&mut self, aor: String, bindings: Vec<Binding>) {
        self.registrar.restore(aor, bindings);
    }

    /// The registrar's table (bindings, by address of record).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// Dialogs established and not ended.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Whether a live registration rides on `flow`: a connection that carries one is kept
    /// open while it lives, however quiet.
    pub fn holds_flow(&self, flow: &Flow) -> bool {
        self.registrar.holds_flow(flow)
    }

    /// Whether something waits to be sent.
    pub fn has_transmits(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        // Whoever wrote it, a final failure to a relayed call's INVITE ends the call.
        if let Some(call_id) = self.media.leaving(&t.bytes) {
            self.media_delete(&call_id);
        }
        Some(t)
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            // Registration changes are gathered once per drain, not per message; the mark
            // that releases the answers waiting for them follows them.
            self.take_changed(self.refresh_flush.is_zero());
            if let Some(seq) = self.store.take_mark() {
                self.events.push_back(Event::Persist(seq));
            }
        }
        self.events.pop_front()
    }

    /// When [`SipServer::handle_timeout`] is due: soon while transactions run, else at the
    /// next housekeeping (keep-alives, expiry).
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let housekeeping = self.housekept.map(|t| t + HOUSEKEEPING_TICK);
        let transactions = (!self.transactions.is_empty())
            .then(|| self.ticked.map(|t| t + TRANSACTION_TICK))
            .flatten();
        let next = match (housekeeping, transactions) {
            (Some(h), Some(t)) => Some(h.min(t)),
            (h, t) => h.or(t).or(Some(Timestamp::EPOCH)),
        };
        match (next, self.echo.next()) {
            (Some(n), Some(e)) => Some(n.min(e)),
            (n, e) => n.or(e),
        }
    }

    /// Runs the timers due at `now`: retransmissions and timeouts of transactions, keep-alive
    /// pings and their misses, expiry of bindings.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        if self.echo.len() > 0 {
            let due = self.echo.poll(now);
            self.transmits.extend(due.again);
            for call_id in due.ended {
                self.echo_delete(&call_id);
            }
        }
        if self.ticked.is_none_or(|t| now >= t + TRANSACTION_TICK) {
            self.ticked = Some(now);
            let due = self.transactions.poll(now);
            self.take_refusals();
            for t in due {
                // A final response retransmitted until its ACK comes (RFC 3261 §17.2.1): to a
                // forged source, that ACK never does.
                if is_response(&t.bytes) {
                    self.answer(now, t, false);
                } else {
                    self.transmits.push_back(t);
                }
            }
        }
        if self.housekept.is_none_or(|t| now >= t + HOUSEKEEPING_TICK) {
            self.housekept = Some(now);
            self.keepalive_round(now);
            self.registrar.expire(now);
            for call_id in self.media.expire(now) {
                self.media_delete(&call_id);
            }
            let refreshes = self
                .refreshes_flushed
                .is_none_or(|t| now.duration_since(t) >= self.refresh_flush);
            if refreshes {
                self.refreshes_flushed = Some(now);
            }
            self.take_changed(refreshes);
        }
    }

    /// Reports every registration change not yet reported, refreshes too ([`Event::BindingsChanged`]):
    /// before a shutdown, so the store has everything.
    pub fn flush_changes(&mut self) {
        self.take_changed(true);
    }

    /// Handles what arrived over `flow`: a datagram, or one framed message (or CRLF ping or
    /// pong) from a connection.
    pub fn handle_input(&mut self, now: Timestamp, flow: Flow, bytes: &[u8]) {
        self.now = self.now.max(now);
        if flow.transport.is_stream() {
            // RFC 5626 §3.5.1: a CRLF CRLF ping is answered with CRLF; a lone CRLF is the pong.
            if bytes == b"\r\n\r\n" {
                self.events.push_back(Event::KeepaliveReceived);
                self.send_back(flow, b"\r\n".to_vec());
                return;
            }
            if bytes == b"\r\n" {
                self.events.push_back(Event::KeepaliveReceived);
                return;
            }
        } else {
            // Phones send CRLF, or four zero bytes, over UDP all the same.
            if bytes.len() <= 4 && bytes.iter().all(|&b| matches!(b, b'\r' | b'\n' | 0)) {
                self.events.push_back(Event::KeepaliveReceived);
                return;
            }
            if is_stun(bytes) {
                self.stun(flow, bytes);
                return;
            }
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(error) => {
                self.events.push_back(Event::Malformed {
                    remote: flow.remote,
                    error,
                });
                // RFC 3261 §16.3 step 1, §21.4.1: a request that can be answered is, naming
                // the problem.
                if let Some(answer) = crate::bad_request::answer(bytes, error) {
                    self.events
                        .push_back(Event::Refused(status_of(&answer).unwrap_or(400)));
                    self.send_back(flow, answer);
                }
                return;
            }
        };
        match msg.start_line() {
            StartLine::Request { method, .. } => self.request(now, flow, &msg, method),
            StartLine::Response { .. } => self.response(now, flow, &msg),
        }
    }

    /// A message the shell could not send over its stream flow: the connection is gone (a
    /// NAT dropped it, the phone closed it) or a dial failed. A response or a ping is dropped.
    /// A request (an ACK too) for a phone registered over that flow goes on as RFC 5626 §5.3 and
    /// RFC 3261 §18.1.1 say: an outbound flow (`reg-id`) cannot be replaced by the server, so
    /// 430 Flow Failed (the phone will register a new one); otherwise the phone's Contact is
    /// dialled (UDP: sent to; TCP or TLS: [`Event::Dial`]). What cannot be dialled (a name, a
    /// WebSocket, a non-unicast address, or a dial that failed) gets 480. The failure answers
    /// the request's branch as if the phone had, so forking and the caller's transaction go
    /// on as they do for any answer; an ACK that cannot be dialled is dropped.
    pub fn flow_failed(&mut self, now: Timestamp, t: Transmit) {
        self.failed(now, t, true);
    }

    /// A dial ([`Event::Dial`]) failed: the connection could not be opened, or closed before
    /// the phone said anything. A request it carried is answered 480; nothing is dialled
    /// again for it.
    pub fn dial_failed(&mut self, now: Timestamp, t: Transmit) {
        self.failed(now, t, false);
    }

    fn failed(&mut self, now: Timestamp, t: Transmit, dial: bool) {
        self.now = self.now.max(now);
        self.events.push_back(Event::FlowFailed);
        let Ok(msg) = Message::parse(&t.bytes) else {
            return;
        };
        let StartLine::Request { method, .. } = msg.start_line() else {
            return;
        };
        // A ping, or the ACK this proxy wrote for a non-2xx answer (its one Via is ours,
        // RFC 3261 §17.1.1.3), which only the phone that answered needs: dropped.
        if Keepalives::is_ping(&msg) || (method == Method::ACK && msg.vias().nth(1).is_none()) {
            return;
        }
        let flow = Flow {
            transport: t.transport,
            local: t.from,
            remote: t.to,
        };
        let binding = match dial {
            true => self.registrar.binding_on_flow(&flow, now),
            false => None,
        };
        let (code, reason) = match binding {
            Some(b) if b.reg_id.is_some() => (430, "Flow Failed"),
            Some(b) => match self.dial_target(&b.contact) {
                Some((transport, from, to)) => {
                    let dial = Transmit {
                        bytes: t.bytes.clone(),
                        transport,
                        from,
                        to,
                    };
                    tracing::debug!(
                        "S418 {} over {} {} failed: dialling its Contact {}",
                        String::from_utf8_lossy(method.0),
                        flow.transport.via_name().to_ascii_lowercase(),
                        flow.remote,
                        b.contact
                    );
                    if transport.is_stream() {
                        self.events.push_back(Event::Dial(dial));
                    } else {
                        self.transmits.push_back(dial);
                    }
                    return;
                }
                None => (480, "Temporarily Unavailable"),
            },
            None => (480, "Temporarily Unavailable"),
        };
        // An ACK gets no answer: it follows the dial above (the 2xx it acknowledges came over
        // the dialled connection, but the dialog's route names the old flow), or is dropped.
        if method == Method::ACK {
            return;
        }
        // The answer the phone would have given: to the request as forwarded (our Via on
        // top), taken in as if it had come over the flow.
        let answer = crate::response::response(&msg, code, reason, "fsf", &[]);
        self.events.push_back(Event::Refused(code));
        if let Ok(answer) = Message::parse(&answer) {
            self.route_response(now, flow, &answer);
        }
    }

    /// Where a request for a phone with `contact` can be sent when its own flow is gone: the
    /// transport its Contact asks for (UDP when it names none, TLS for `sips:`), from a
    /// listener of that transport and family, to the Contact's address (an IP literal; a
    /// unicast one, as for any request Farside routes by a URI). None for a WebSocket (a
    /// browser cannot be dialled) or a name.
    fn dial_target(&self, contact: &str) -> Option<(Transport, SocketAddr, SocketAddr)> {
        let uri = crate::uri::Uri::parse(contact.as_bytes()).ok()?;
        let secure = uri.scheme().eq_ignore_ascii_case(b"sips");
        let transport = match crate::proxy::transport_of(&uri) {
            Transport::Udp if secure => Transport::Tls,
            t => t,
        };
        if matches!(transport, Transport::Ws | Transport::Wss) {
            return None;
        }
        let ip = crate::uri::ip_literal(uri.host())?;
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
            return None;
        }
        let port = uri.port().unwrap_or(if transport == Transport::Tls {
            5061
        } else {
            5060
        });
        let from = self
            .listeners
            .iter()
            .find(|(a, t)| *t == transport && a.is_ipv4() == ip.is_ipv4())?
            .0;
        Some((transport, from, SocketAddr::new(ip, port)))
    }

    /// A STUN Binding request on a SIP port (RFC 5626 §3.5.1 keep-alive): answered.
    fn stun(&mut self, flow: Flow, bytes: &[u8]) {
        let mut out = [0u8; 512];
        let outcome = self.binding.handle(
            Received {
                transport: farside_stun::binding::Transport::Udp,
                local: flow.local,
                remote: flow.remote,
                bytes,
            },
            &mut out,
        );
        if let StunOutcome::Respond(r) = outcome {
            self.alg.told(flow.remote);
            self.events.push_back(Event::StunAnswered);
            self.send_back(flow, out[..r.len].to_vec());
        }
    }

    fn request(&mut self, now: Timestamp, flow: Flow, msg: &Message<'_>, method: Method<'_>) {
        let mut nat = nat::detect(msg, flow.remote, flow.transport);
        let stun_seen = self.stun_seen.as_deref().map(|s| s as &dyn StunSeen);
        // The edge's upstream is a server that names itself honestly, not a phone.
        let from_upstream =
            matches!(self.mode, Mode::Edge { upstream, .. } if upstream == flow.remote);
        if !from_upstream
            && let Some(suspicion) =
                self.alg
                    .examine(now, msg, flow.remote, flow.transport, stun_seen)
        {
            nat.0 |= NatTests::ALG_SUSPECTED;
            if method == Method::INVITE && msg.to().tag().is_none() {
                self.events.push_back(Event::CallAlgSuspected {
                    call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
                    callee: false,
                    suspicion: suspicion.clone(),
                });
            }
            if suspicion.first {
                let from = String::from_utf8_lossy(msg.from().uri().as_bytes()).into_owned();
                self.events
                    .push_back(Event::AlgSuspected { from, suspicion });
            }
        }
        self.events.push_back(Event::Request {
            method: MethodKind::of(method),
            nat,
        });
        if msg.is_for_user(&self.echo_user) {
            self.echo_request(now, flow, msg, method);
            return;
        }
        if msg.is_for_user(&self.mirror_user) {
            let via = nat::fixed_top_via(msg, flow.remote);
            if let Some(answer) = crate::mirror::answer(msg, method, via.as_deref()) {
                self.events.push_back(Event::Mirrored);
                // Within the source's budget over UDP, as answers to OPTIONS are: the copy is
                // larger than the request.
                self.answer_back(flow, answer, true);
            }
            return;
        }
        // A REGISTER to the registrar is answered from here: its answers' Via is fixed as they
        // are written, without rewriting and parsing the request again.
        if method == Method::REGISTER && self.mode == Mode::Registrar {
            self.registrar_request(now, flow, msg, method, nat);
            return;
        }
        // RFC 3581: the answer goes where the request came from, and its Via says so.
        let mut edits = Edits::new(msg.as_bytes());
        nat::fix_via(msg, flow.remote, &mut edits);
        let Ok(fixed) = edits.apply() else {
            return;
        };
        let Ok(msg) = Message::parse(&fixed) else {
            return;
        };
        // RFC 3261 §16.3 step 4: an extension a proxy must support and this one does not.
        if method != Method::ACK && method != Method::CANCEL {
            let tags = extensions::unsupported(&msg, HeaderName::ProxyRequire, &extensions::PROXY);
            if !tags.is_empty() {
                let unsupported = tags.join(", ");
                let answer = crate::response::response(
                    &msg,
                    420,
                    "Bad Extension",
                    "fsp",
                    &[("Unsupported", &unsupported)],
                );
                self.events.push_back(Event::Refused(420));
                self.send_back(flow, answer);
                return;
            }
        }
        let relayed = self.media_request(now, flow, &msg, nat);
        let msg = match &relayed {
            Some(bytes) => match Message::parse(bytes) {
                Ok(m) => m,
                Err(_) => return,
            },
            None => msg,
        };
        match self.mode {
            Mode::Edge {
                upstream,
                contact_fix,
            } => self.edge_request(now, flow, &msg, upstream, contact_fix),
            Mode::Registrar => self.registrar_request(now, flow, &msg, method, nat),
        }
    }

    fn registrar_request(
        &mut self,
        now: Timestamp,
        flow: Flow,
        msg: &Message<'_>,
        method: Method<'_>,
        nat: NatTests,
    ) {
        if method == Method::REGISTER {
            let (answer, outcome) =
                self.registrar
                    .register_detected(msg, flow, nat, now, &*self.users);
            if let Outcome::Registered { aor, bindings } = &outcome {
                tracing::debug!(
                    "S411 {aor} registered from {} {}: {bindings} bindings, NAT tests fired: {}",
                    flow.transport.via_name().to_ascii_lowercase(),
                    flow.remote,
                    nat.names()
                );
            }
            match outcome {
                // Not answered: the source failed authentication too often lately.
                Outcome::RateLimited => {}
                Outcome::Refused(code) => {
                    self.events.push_back(Event::Refused(code));
                    self.send_back(flow, answer);
                }
                // The bindings changed: acknowledged as the store allows.
                Outcome::Registered { .. } => {
                    let t = Transmit {
                        bytes: answer,
                        transport: flow.transport,
                        from: flow.local,
                        to: flow.remote,
                    };
                    if let Some((t, refused)) = self.store.pass(t) {
                        if refused {
                            self.events.push_back(Event::StoreUnavailable);
                        }
                        self.transmits.push_back(t);
                    }
                }
                _ => self.send_back(flow, answer),
            }
            self.events.push_back(Event::Register(outcome));
            return;
        }
        let proxy = self.proxy(flow);
        let source = (flow.transport, flow.local, flow.remote);
        let registrar = &self.registrar;
        // INVITE, its CANCEL and the ACK of a refusal are transactions (RFC 3261 §16, §17);
        // other requests but ACK and CANCEL are a transaction each, with one target.
        let out = if method == Method::INVITE {
            let max = self.limits.max_forks;
            let out = self
                .transactions
                .request(msg, source, now, || proxy.fork(msg, registrar, now, max));
            // The first is our 100 Trying (or the refusal).
            let forks: Vec<SocketAddr> = out.iter().skip(1).map(|t| t.to).collect();
            self.forwarded(&forks, msg, flow);
            out
        } else if method != Method::ACK && method != Method::CANCEL {
            let mut forwarded = false;
            let out = self.transactions.request(msg, source, now, || {
                let action = proxy.request(msg, registrar, now);
                forwarded = matches!(action, Action::Forward { .. });
                // OPTIONS for Farside itself is answered here, not a transaction's business
                // (but its retransmission gets the same answer).
                match action {
                    Action::Answer(r) => vec![Action::Respond(r)],
                    other => vec![other],
                }
            });
            if forwarded {
                let to: Vec<SocketAddr> = out.iter().map(|t| t.to).collect();
                self.forwarded(&to, msg, flow);
            }
            out
        } else if let Some(out) = (method == Method::CANCEL)
            .then(|| self.transactions.cancel(msg, source))
            .flatten()
        {
            out
        } else if method == Method::ACK && self.transactions.ack(msg) {
            Vec::new()
        } else {
            let action = proxy.request(msg, &self.registrar, now);
            self.act(flow, msg, action);
            Vec::new()
        };
        self.take_refusals();
        for t in out {
            // While a request is handled, a response to its source is the answer to it (the
            // 100 Trying, a refusal, or a final response again for a retransmission).
            if t.to == flow.remote && is_response(&t.bytes) {
                self.answer(now, t, method == Method::OPTIONS);
            } else {
                self.transmits.push_back(t);
            }
        }
    }

    fn edge_request(
        &mut self,
        now: Timestamp,
        flow: Flow,
        msg: &Message<'_>,
        upstream: SocketAddr,
        contact_fix: ContactFix,
    ) {
        // The edge's own address in Paths and toward the upstream is its UDP one.
        let edge = Edge::new(
            self.udp_address(flow.local),
            upstream,
            self.tokens.clone(),
            self.branch_key,
        )
        .with_addresses(Arc::clone(&self.addresses))
        .with_contact_fix(contact_fix);
        let action = edge.request(msg, flow);
        if matches!(action, Action::Forward { .. }) && flow.remote != upstream {
            // Its answer tells which bindings to keep alive.
            self.edge_registrations.forwarded(msg, flow, now);
        }
        self.act(flow, msg, action);
    }

    fn response(&mut self, now: Timestamp, flow: Flow, msg: &Message<'_>) {
        if let Some((aor, contact)) = self
            .keepalives
            .as_mut()
            .and_then(|k| k.answered_binding(msg))
        {
            self.events.push_back(Event::PingAnswered);
            self.registrar.set_keepalive_failures(&aor, &contact, 0);
            return;
        }
        self.callee_alg(flow, msg);
        match self.media_response(now, flow, msg) {
            Some(bytes) => {
                if let Ok(msg) = Message::parse(&bytes) {
                    self.route_response(now, flow, &msg);
                }
            }
            None => self.route_response(now, flow, msg),
        }
    }

    /// A callee's answer to an INVITE (18x or 2xx) from a source where an ALG is suspected:
    /// the call is reported.
    fn callee_alg(&mut self, flow: Flow, msg: &Message<'_>) {
        let StartLine::Response { code, .. } = msg.start_line() else {
            return;
        };
        if !(180..300).contains(&code) || msg.cseq().method != Method::INVITE {
            return;
        }
        if let Some(evidence) = self.alg.suspected(flow.remote) {
            self.events.push_back(Event::CallAlgSuspected {
                call_id: String::from_utf8_lossy(msg.call_id()).into_owned(),
                callee: true,
                suspicion: crate::alg::Suspicion {
                    source: flow.remote,
                    evidence,
                    first: false,
                },
            });
        }
    }

    /// Sends a response on: within its transaction, or as the stateless proxy does.
    fn route_response(&mut self, now: Timestamp, flow: Flow, msg: &Message<'_>) {
        let action = self.proxy_at(flow.local, flow.transport).response(msg);
        // Responses within a transaction go as it says; the rest as the stateless proxy does.
        let out = match self.mode {
            Mode::Registrar => self.transactions.response(msg, action.clone(), now),
            Mode::Edge { .. } => None,
        }
        .unwrap_or_else(|| Transmit::of(action).into_iter().collect());
        self.take_refusals();
        if out.is_empty() {
            self.events.push_back(Event::ResponseDropped);
            return;
        }
        self.events.push_back(Event::Forwarded(out.len()));
        self.transmits.extend(out);
        if let Mode::Edge { .. } = self.mode
            && let Some((aor, bindings)) = self.edge_registrations.response(msg, now)
        {
            self.registrar.mirror(&aor, bindings, now);
        }
        match self.dialogs.response(msg, now) {
            Some(DialogEvent::Started) => self.events.push_back(Event::DialogStarted),
            Some(DialogEvent::Ended) => self.events.push_back(Event::DialogEnded),
            None => {}
        }
    }

    /// Sends what the stateless proxy or the edge decided, and counts it.
    fn act(&mut self, flow: Flow, msg: &Message<'_>, action: Action) {
        match action {
            Action::Answer(r) => self.answer_back(flow, r, msg.method() == Method::OPTIONS),
            Action::Respond(r) => {
                if let Some(code) = status_of(&r) {
                    self.events.push_back(Event::Refused(code));
                }
                self.send_back(flow, r);
            }
            Action::Forward { to, .. } => {
                self.forwarded(&[to], msg, flow);
                self.transmits.extend(Transmit::of(action));
            }
            Action::Drop => {}
        }
    }

    /// Counts (and traces) `msg` sent on to `to` (one address per branch).
    fn forwarded(&mut self, to: &[SocketAddr], msg: &Message<'_>, flow: Flow) {
        if to.is_empty() {
            return;
        }
        self.events.push_back(Event::Forwarded(to.len()));
        if let StartLine::Request { method, uri } = msg.start_line() {
            let method = String::from_utf8_lossy(method.0);
            let uri = String::from_utf8_lossy(uri.as_bytes());
            match to {
                [one] => tracing::debug!(
                    "S404 {method} {uri} from {} forwarded to {one}",
                    flow.remote
                ),
                _ => tracing::debug!(
                    "S404 {method} {uri} from {} forwarded to {} branches",
                    flow.remote,
                    to.len()
                ),
            }
        }
    }

    /// Hands a request's SDP to the RTP relay when its call is relayed (a first INVITE, by
    /// the policy); the request rewritten to carry the relay's SDP, if it was.
    fn media_request(
        &mut self,
        now: Timestamp,
        flow: Flow,
        msg: &Message<'_>,
        nat: NatTests,
    ) -> Option<Vec<u8>> {
        self.relay.as_ref()?;
        let registrar = &self.registrar;
        let step = self.media.request(msg, now, || {
            nat.natted() || nat.any(NatTests::PRIVATE_SDP) || callee_nated(registrar, msg, now)
        });
        if step == Step::Delete {
            self.media_delete(msg.call_id());
            return None;
        }
        self.media_step(now, flow, msg, step)
    }

    /// Hands a response's SDP (an answer, or a late offer) to the RTP relay when its call is
    /// relayed; the response rewritten, if it was.
    fn media_response(&mut self, now: Timestamp, flow: Flow, msg: &Message<'_>) -> Option<Vec<u8>> {
        self.relay.as_ref()?;
        let step = self.media.response(msg);
        self.media_step(now, flow, msg, step)
    }

    /// Asks the relay to take `msg`'s SDP as an offer or an answer; `msg` with the relay's SDP
    /// in place of its own, if it gave one.
    fn media_step(
        &mut self,
        now: Timestamp,
        flow: Flow,
        msg: &Message<'_>,
        step: Step,
    ) -> Option<Vec<u8>> {
        let relay = self.relay.as_mut()?;
        let source = from_phone(self.mode, flow).then_some(flow.remote.ip());
        let (answer, sdp) = match step {
            Step::Offer { reversed } => (
                false,
                relay.offer(now, &media::passing(msg, source, reversed)),
            ),
            Step::Answer { reversed } => {
                (true, relay.answer(&media::passing(msg, source, reversed)))
            }
            Step::Delete | Step::None => return None,
        };
        trace_media(
            msg,
            if answer { "answer" } else { "offer" },
            flow,
            sdp.is_some(),
        );
        self.events.push_back(Event::MediaRelayed {
            answer,
            rewritten: sdp.is_some(),
        });
        sdp.map(|sdp| media::with_body(msg, &sdp))
    }

    /// Tells the relay that a call ended.
    fn media_delete(&mut self, call_id: &[u8]) {
        if let Some(relay) = self.relay.as_mut() {
            relay.delete(call_id);
            self.events.push_back(Event::MediaDeleted);
        }
    }

    /// Tells the relay that an echo call ended (its BYE, or its time ran out). Not a relayed
    /// call's end: no [`Event::MediaDeleted`].
    fn echo_delete(&mut self, call_id: &[u8]) {
        if let Some(relay) = self.relay.as_mut() {
            relay.delete(call_id);
        }
    }

    /// A request for the echo service ([`crate::echo`]): answered here, as its dialog's UAS.
    fn echo_request(&mut self, now: Timestamp, flow: Flow, msg: &Message<'_>, method: Method<'_>) {
        let via = nat::fixed_top_via(msg, flow.remote);
        let via = via.as_deref();
        let call_id = msg.call_id();
        let tag = format!("fse{:x}", crate::scan::hash64(self.branch_key, &[call_id]));
        let reply = |code: u16, reason: &str, extra: &[(&str, &str)]| {
            crate::response::response_via(msg, via, code, reason, &tag, extra)
        };
        let allow = [("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")];
        // Within a dialog here: the To tag this server gave (RFC 3261 §12.2.2).
        let in_dialog = msg.to().tag().is_some_and(|t| self.echo.holds(call_id, t));
        let answer = match method {
            Method::ACK => {
                if in_dialog {
                    self.echo.acked(call_id);
                }
                return;
            }
            // The echo keeps its first offer.
            Method::INVITE if in_dialog => reply(488, "Not Acceptable Here", &[]),
            Method::INVITE if msg.to().tag().is_some() => {
                reply(481, "Call/Transaction Does Not Exist", &[])
            }
            Method::INVITE => {
                if let Some(again) = self.echo.answer(call_id) {
                    self.transmits.push_back(again.clone());
                    return;
                }
                match self.echo_begin(now, flow, msg, via, &tag) {
                    Ok(()) => return,
                    Err((code, reason)) => reply(code, reason, &[]),
                }
            }
            Method::BYE if in_dialog => {
                self.echo.end(call_id);
                self.echo_delete(call_id);
                reply(200, "OK", &[])
            }
            // A CANCEL comes after the 200 and changes nothing (RFC 3261 §9.2).
            Method::CANCEL if self.echo.has(call_id) => reply(200, "OK", &[]),
            Method::BYE | Method::CANCEL => reply(481, "Call/Transaction Does Not Exist", &[]),
            Method::OPTIONS => reply(200, "OK", &allow),
            _ => reply(405, "Method Not Allowed", &allow),
        };
        self.answer_back(flow, answer, method == Method::OPTIONS);
    }

    /// An echo call's first INVITE: the relay's echo SDP in a 200 OK, sent and kept; else the
    /// error to answer.
    fn echo_begin(
        &mut self,
        now: Timestamp,
        flow: Flow,
        msg: &Message<'_>,
        via: Option<&[u8]>,
        tag: &str,
    ) -> Result<(), (u16, &'static str)> {
        if !media::has_sdp(msg) {
            return Err((488, "Echo Needs An SDP Offer"));
        }
        if !self.echo.has_room() {
            return Err((486, "Busy Here"));
        }
        let source = from_phone(self.mode, flow).then_some(flow.remote.ip());
        let relay = self.relay.as_mut().ok_or((503, "No RTP Relay Here"))?;
        let offer = media::Passing {
            call_id: msg.call_id(),
            from_tag: msg.from().tag().unwrap_or_default(),
            to_tag: Some(tag.as_bytes()),
            sdp: msg.body(),
            source,
        };
        let sdp = relay
            .echo(now, &offer)
            .ok_or((503, "The RTP Relay Refused The Echo"))?;
        let transport = match flow.transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.via_name().to_ascii_lowercase()),
        };
        let contact = format!("<sip:{}@{}{transport}>", self.echo_user, flow.local);
        let ok = crate::response::response_body(
            msg,
            via,
            200,
            "OK",
            tag,
            &[("Contact", &contact)],
            Some(("application/sdp", &sdp)),
        );
        let t = Transmit {
            bytes: ok,
            transport: flow.transport,
            from: flow.local,
            to: flow.remote,
        };
        self.echo
            .begin(now, msg.call_id(), tag.to_owned(), t.clone());
        self.events.push_back(Event::EchoCall);
        self.transmits.push_back(t);
        Ok(())
    }

    /// Keep-alive pings due at `now`, and the bindings that stopped answering them.
    fn keepalive_round(&mut self, now: Timestamp) {
        let Some(k) = self.keepalives.as_mut() else {
            return;
        };
        let round = k.poll(now, &self.registrar);
        for ping in round.pings {
            self.events.push_back(Event::PingSent);
            self.transmits.push_back(Transmit {
                bytes: ping.bytes,
                transport: ping.flow.transport,
                from: ping.flow.local,
                to: ping.flow.remote,
            });
        }
        // Missed pings go to the store with the binding: a restart resumes the count.
        for (aor, contact, missed) in &round.missed {
            self.events.push_back(Event::PingMissed);
            self.registrar.set_keepalive_failures(aor, contact, *missed);
        }
        for (aor, contact) in round.unreachable {
            if self.registrar.remove_binding(&aor, &contact) {
                self.events.push_back(Event::Unreachable { aor, contact });
            }
        }
    }

    /// Registration changes, for the store (refreshes only with `refreshes`).
    fn take_changed(&mut self, refreshes: bool) {
        for (aor, bindings) in self.registrar.take_changed(refreshes) {
            self.events
                .push_back(Event::BindingsChanged { aor, bindings });
        }
    }

    /// The refusals the transaction layer wrote, counted once each.
    fn take_refusals(&mut self) {
        for code in self.transactions.take_refusals() {
            self.events.push_back(Event::Refused(code));
        }
    }

    /// An answer to what came over `flow` (not to an OPTIONS), sent back over it.
    fn send_back(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.answer_back(flow, bytes, false);
    }

    /// [`SipServer::send_back`] for an answer to a request that may be an OPTIONS.
    fn answer_back(&mut self, flow: Flow, bytes: Vec<u8>, to_options: bool) {
        let t = Transmit {
            bytes,
            transport: flow.transport,
            from: flow.local,
            to: flow.remote,
        };
        self.answer(self.now, t, to_options);
    }

    /// Queues an answer Farside wrote to a request (`to_options`: to an OPTIONS). Over UDP its
    /// destination may be a forged
    /// source, so error answers and answers to OPTIONS (several times their request, some of
    /// them) go within that address's budget per second, and are dropped and counted beyond
    /// it. Answers over connections go to a peer that completed a handshake.
    fn answer(&mut self, now: Timestamp, t: Transmit, to_options: bool) {
        if t.transport == Transport::Udp
            && spends_budget(&t.bytes, to_options)
            && !self.refusals.take(t.to.ip(), now)
        {
            self.events.push_back(Event::RefusalRateLimited);
            return;
        }
        self.transmits.push_back(t);
    }

    /// The proxy for a request that came over `flow`.
    fn proxy(&self, flow: Flow) -> Proxy {
        self.proxy_at(flow.local, flow.transport)
            .with_flow(flow, self.tokens.clone())
    }

    /// The proxy at the listener `me` (reached over `transport`).
    fn proxy_at(&self, me: SocketAddr, transport: Transport) -> Proxy {
        Proxy::new(me, transport, &self.domain, self.branch_key)
            .with_addresses(Arc::clone(&self.addresses), self.udp_address(me))
    }

    /// The UDP listener that sends on behalf of a listener at `local`: the one at that very
    /// address, else one on its IP, else the first.
    fn udp_address(&self, local: SocketAddr) -> SocketAddr {
        let udp = || self.udp.iter().copied();
        udp()
            .find(|a| *a == local)
            .or_else(|| udp().find(|a| a.ip() == local.ip()))
            .or_else(|| udp().next())
            .unwrap_or(local)
    }
}

/// Traces an SDP handed to the relay.
fn trace_media(msg: &Message<'_>, what: &str, flow: Flow, rewritten: bool) {
    tracing::debug!(
        "S415 call {}: the SDP {what} from {} went to the RTP relay and {}",
        String::from_utf8_lossy(msg.call_id()),
        flow.remote,
        if rewritten {
            "was rewritten"
        } else {
            "passed as it came"
        }
    );
}

/// Whether a message that came over `flow` was sent by the phone itself (not by the proxy an
/// edge fronts), so that its source is where the phone's media comes from.
fn from_phone(mode: Mode, flow: Flow) -> bool {
    match mode {
        Mode::Registrar => true,
        Mode::Edge { upstream, .. } => flow.remote != upstream,
    }
}

/// Whether the callee of `msg` (by its Request-URI, or To, as an address of record) holds a
/// binding registered from behind a NAT.
fn callee_nated(registrar: &Registrar, msg: &Message<'_>, now: Timestamp) -> bool {
    let StartLine::Request { uri, .. } = msg.start_line() else {
        return false;
    };
    [aor_of(&uri), aor_of(&msg.to().uri())]
        .into_iter()
        .flatten()
        .any(|aor| registrar.bindings(&aor, now).any(|b| b.nat.natted()))
}

/// Whether `bytes` is a response (a Status-Line).
fn is_response(bytes: &[u8]) -> bool {
    bytes.starts_with(b"SIP/2.0 ")
}

/// Whether an answer Farside sends spends its destination's budget of error answers: a
/// response of 300 or more, or a 2xx to an OPTIONS (which lists what Farside allows). Read from
/// the status code only: answers are on every request's path.
fn spends_budget(bytes: &[u8], to_options: bool) -> bool {
    let code = bytes
        .strip_prefix(b"SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .map_or(0, |c| {
            c.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        });
    code >= 300 || (to_options && code >= 200)
}

/// A STUN message with the magic cookie (RFC 7983's first-byte rule, then the cookie).
fn is_stun(b: &[u8]) -> bool {
    b.len() >= farside_stun::HEADER_LEN
        && b[0] < 4
        && b[4..8] == farside_stun::MAGIC_COOKIE.to_be_bytes()
}

/// The status code of a response Farside wrote.
fn status_of(response: &[u8]) -> Option<u16> {
    match Message::parse(response).ok()?.start_line() {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    }
}
