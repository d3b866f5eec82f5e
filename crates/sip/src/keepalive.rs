//! Keep-alives to registered phones (what Kamailio's nathelper `natping` does): each binding is
//! pinged over its flow once per interval, at a phase of its own so pings spread evenly over
//! the interval; the NAT sees traffic on the binding's mapping and keeps it. SIP pings (OPTIONS
//! or NOTIFY) expect an answer, any answer: a binding that misses `max_failures` in a row is
//! reported as unreachable, for the registrar to drop. CRLF and 4-byte pings expect none.

use farside_time::Timestamp;

use std::collections::HashMap;

use crate::message::Message;
use crate::registrar::{Flow, Registrar};
use crate::scan::hash64;

/// How bindings are pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A SIP OPTIONS request (answered by any UA).
    Options,
    /// A SIP NOTIFY with `Event: keep-alive`.
    Notify,
    /// CRLF CRLF (RFC 5626's ping, sent over UDP too).
    Crlf,
    /// Four zero bytes.
    Udp4,
}

/// Keep-alive settings.
#[derive(Debug, Clone)]
pub struct KeepaliveConfig {
    /// Each binding is pinged once per this many milliseconds.
    pub interval_ms: u64,
    /// How.
    pub method: Method,
    /// The From of SIP pings (`sip:keepalive@domain`).
    pub from: String,
    /// SIP pings missed in a row before a binding is dropped.
    pub max_failures: u32,
    /// Ping every binding, not only the NATed ones.
    pub all_contacts: bool,
}

/// One ping to send: its bytes over `flow` (from its local end to its remote end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The flow.
    pub flow: Flow,
    /// What to send.
    pub bytes: Vec<u8>,
}

/// Per-binding state, keyed by (address of record, Contact).
#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// The branch of the SIP ping awaiting an answer, if any.
    waiting: Option<u64>,
    /// Pings missed in a row.
    failures: u32,
}

/// The keep-alive scheduler of one registrar.
#[derive(Debug)]
pub struct Keepalives {
    config: KeepaliveConfig,
    states: HashMap<(String, String), State>,
    by_branch: HashMap<u64, (String, String)>,
    last_ms: Option<u64>,
    counter: u64,
    key: u64,
}

/// What [`Keepalives::poll`] found besides the pings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Pings to send now.
    pub pings: Vec<Ping>,
    /// Bindings that missed `max_failures` SIP pings in a row: (address of record, Contact).
    pub unreachable: Vec<(String, String)>,
    /// Bindings that missed one more ping: (address of record, Contact, missed in a row), for
    /// the store.
    pub missed: Vec<(String, String, u32)>,
}

impl Keepalives {
    /// A scheduler; `key` (random) seeds branches and phases.
    pub fn new(config: KeepaliveConfig, key: u64) -> Self {
        Keepalives {
            config,
            states: HashMap::new(),
            by_branch: HashMap::new(),
            last_ms: None,
            counter: key,
            key,
        }
    }

    /// New settings (a reload); every binding's count of missed pings stays.
    pub fn set_config(&mut self, config: KeepaliveConfig) {
        self.config = config;
    }

    /// The pings due between the last call and `now`, and the bindings found unreachable.
    pub fn poll(&mut self, now: Timestamp, registrar: &Registrar) -> Round {
        let now_ms = now.unix_millis();
        let mut round = Round::default();
        let interval = self.config.interval_ms.max(1);
        let Some(prev) = self.last_ms.replace(now_ms) else {
            return round; // the first call only sets the clock
        };
        if now_ms <= prev {
            return round;
        }
        // Due if a multiple of the interval, shifted by the binding's phase, lies in
        // (prev, now]. Nothing is allocated for a binding that is not due.
        let slot = |t: u64, phase: u64| (t + interval - phase) / interval;
        for (aor, bindings) in registrar.all() {
            for b in bindings.iter().filter(|b| b.expires_at > now) {
                if !self.config.all_contacts && !b.nat.natted() {
                    continue;
                }
                let phase = hash64(self.key, &[aor.as_bytes(), b.contact.as_bytes()]) % interval;
                if slot(now_ms, phase) == slot(prev, phase) {
                    continue;
                }
                let key = (aor.clone(), b.contact.clone());
                // A binding restored from the store resumes its count.
                let state = self.states.entry(key.clone()).or_insert(State {
                    waiting: None,
                    failures: b.keepalive_failures,
                });
                if let Some(old) = state.waiting.take() {
                    self.by_branch.remove(&old);
                    state.failures += 1;
                    round
                        .missed
                        .push((key.0.clone(), key.1.clone(), state.failures));
                    if state.failures >= self.config.max_failures {
                        round.unreachable.push(key);
                        continue;
                    }
                }
                self.counter = self.counter.wrapping_add(1);
                let branch = hash64(self.key, &[&self.counter.to_be_bytes(), b"ka"]);
                let bytes = match self.config.method {
                    // Over a connection only CRLF pings are allowed (RFC 5626 §3.5.1).
                    Method::Crlf | Method::Udp4 if b.flow.transport.is_stream() => {
                        b"\r\n\r\n".to_vec()
                    }
                    Method::Crlf => b"\r\n\r\n".to_vec(),
                    Method::Udp4 => vec![0; 4],
                    Method::Options | Method::Notify => {
                        state.waiting = Some(branch);
                        self.by_branch.insert(branch, key.clone());
                        self.sip_ping(b.flow, &b.contact, branch)
                    }
                };
                round.pings.push(Ping {
                    flow: b.flow,
                    bytes,
                });
            }
        }
        // Forget bindings that are gone (only ever more states than bindings then).
        if self.states.len() > registrar.len() {
            self.states
                .retain(|(aor, contact), _| registrar.binding(aor, contact).is_some());
            let states = &self.states;
            self.by_branch.retain(|_, k| states.contains_key(k));
        }
        for k in &round.unreachable {
            self.states.remove(k);
        }
        round
    }

    /// Whether `response` answers one of our SIP pings (then it is consumed here, and the
    /// binding counts as reachable).
    pub fn answered(&mut self, response: &Message<'_>) -> bool {
        self.answered_binding(response).is_some()
    }

    /// As [`Keepalives::answered`], naming the binding (address of record, Contact) that
    /// answered.
    pub fn answered_binding(&mut self, response: &Message<'_>) -> Option<(String, String)> {
        let branch = response
            .via()
            .branch()
            .and_then(|b| b.strip_prefix(b"z9hG4bKka"))
            .and_then(|h| u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())?;
        let key = self.by_branch.remove(&branch)?;
        if let Some(s) = self.states.get_mut(&key) {
            s.waiting = None;
            s.failures = 0;
        }
        Some(key)
    }

    /// Whether `request` is one of the keep-alive pings (by its branch's prefix).
    pub fn is_ping(request: &Message<'_>) -> bool {
        request
            .via()
            .branch()
            .is_some_and(|b| b.starts_with(b"z9hG4bKka"))
    }

    fn sip_ping(&self, flow: Flow, contact: &str, branch: u64) -> Vec<u8> {
        let method = match self.config.method {
            Method::Notify => "NOTIFY",
            _ => "OPTIONS",
        };
        let event = if method == "NOTIFY" {
            "Event: keep-alive\r\n"
        } else {
            ""
        };
        format!(
            "{method} {contact} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch=z9hG4bKka{branch:016x};rport\r\n\
Max-Forwards: 70\r\n\
From: <{from}>;tag=ka{tag:08x}\r\n\
To: <{contact}>\r\n\
Call-ID: ka{branch:016x}@{ip}\r\n\
CSeq: 1 {method}\r\n\
{event}Content-Length: 0\r\n\r\n",
            local = flow.local,
            transport = flow.transport.via_name(),
            from = self.config.from,
            tag = (branch >> 32) as u32,
            ip = flow.local.ip(),
        )
        .into_bytes()
    }
}
