//! A registrar (RFC 3261 §10.3) that binds each Contact to the flow its REGISTER came over
//! (the transport and the two addresses the packets really used, RFC 5626's flow), with Digest
//! authentication, `Contact: *` removal, Min-Expires, outbound's `+sip.instance` / `reg-id` and
//! Path. Sans-IO: a REGISTER and its flow in, the response's bytes out; time is a parameter.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use farside_time::Timestamp;

use crate::digest::{self, Algorithm, Credentials, Nonces};
use crate::header::HeaderName;
use crate::message::{Message, StartLine};
use crate::nat::{self, NatTests, Transport};
use crate::nonce_counts::{MAX_TRACKED, NonceCounts, parse_nc};
use crate::response::response_via;
use crate::scan::{hash64, number, push_number};
use crate::uri::Uri;

/// Where a REGISTER really came from: the flow requests for its bindings go back over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Its transport.
    pub transport: Transport,
    /// Farside's address it arrived at.
    pub local: SocketAddr,
    /// The address it came from (the NAT's public side, for a NATed phone).
    pub remote: SocketAddr,
}

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as the phone sent it (kept, not rewritten).
    pub contact: String,
    /// The flow it registered over.
    pub flow: Flow,
    /// When it lapses.
    pub expires_at: Timestamp,
    /// `+sip.instance` (RFC 5626), as written.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// The REGISTER's Call-ID and CSeq, to order refreshes (RFC 3261 §10.3 step 7).
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Path values of the REGISTER (RFC 3327), to route requests back through.
    pub path: Vec<String>,
    /// The NAT tests that fired for the REGISTER.
    pub nat: NatTests,
    /// Keep-alive pings it missed in a row (kept in the store with it, so a restart resumes
    /// the count).
    pub keepalive_failures: u32,
}

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// The domain whose users register here (Request-URI and To host).
    pub domain: String,
    /// The Digest realm.
    pub realm: String,
    /// Shortest registration accepted (423 below it).
    pub min_expires: u32,
    /// Longest granted.
    pub max_expires: u32,
    /// Granted when the phone asks for none.
    pub default_expires: u32,
    /// Most bindings per address of record (503 beyond).
    pub max_bindings_per_aor: usize,
    /// Most addresses of record (503 beyond).
    pub max_aors: usize,
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// The Digest algorithms offered, most preferred first (one challenge each); credentials
    /// with another are challenged again.
    pub algorithms: Vec<Algorithm>,
    /// Failed authentications one source IP may make per minute; then its REGISTERs are
    /// dropped unanswered for the rest of the minute (as TURN does).
    pub auth_failures_per_minute: u32,
    /// The keep-alive interval, in seconds, recommended to a phone whose RFC 5626 flow is
    /// confirmed (`Flow-Timer`, §5.4): how often it should send its CRLF or STUN keep-alives
    /// for the NATs on its way to keep the flow. `None`: not sent.
    pub flow_timer: Option<u32>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            domain: "farside.invalid".into(),
            realm: "farside".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings_per_aor: 16,
            max_aors: 100_000,
            nonce_lifetime: Duration::from_secs(300),
            // MD5 first: many UAs answer the first challenge only (SIPp 3.6 refuses any
            // other algorithm), and MD5 is what Kamailio and Asterisk offer by default.
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            auth_failures_per_minute: 20,
            flow_timer: None,
        }
    }
}

/// The user store, as the registrar needs it: HA1 = H(user:realm:password) per algorithm.
pub trait Users {
    /// HA1 for `user` in `realm` under `algorithm`, if the user exists.
    fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<Vec<u8>>;
}

/// What became of a REGISTER (for counters and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200: the address of record now has this many bindings.
    Registered {
        /// The address of record.
        aor: String,
        /// Its bindings after the change.
        bindings: usize,
    },
    /// 401: no credentials yet (or a nonce not ours), or `stale`.
    Challenged {
        /// The nonce was ours but too old.
        stale: bool,
    },
    /// 401 after wrong credentials: an authentication failure.
    AuthFailed,
    /// Nothing sent: the source failed authentication too often lately (the response bytes
    /// are empty).
    RateLimited,
    /// Another final response.
    Refused(u16),
}

/// Most distinct sources whose failed authentications are tracked at once.
const MAX_TRACKED_FAILURES: usize = 65_536;
/// The window over which failed authentications are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The registrar: the location table of one node.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    nonces: Nonces,
    aors: HashMap<String, Vec<Binding>>,
    /// How many bindings each flow carries (for [`Registrar::holds_flow`]); kept by
    /// [`Registrar::set`], the one place the table changes.
    flows: HashMap<Flow, u32>,
    /// Bindings in the table.
    count: usize,
    /// Addresses of record whose bindings changed since [`Registrar::take_changed`].
    dirty: HashSet<String>,
    /// Addresses of record only refreshed since then.
    refreshed: HashSet<String>,
    /// Failed authentications per source IP: (count, when the minute began).
    failures: HashMap<std::net::IpAddr, (u32, Timestamp)>,
    /// Each nonce's uses, so that none is accepted twice (`nc`, RFC 7616 §3.4).
    counts: NonceCounts,
    /// The key of a request's identity (a retransmission is the same request again): secret,
    /// so that nobody can make another request with the identity of one they saw.
    request_key: u64,
    /// Bindings other nodes sharing the store hold, by address of record: reached through
    /// the node holding the flow (its address is the flow's local end). Neither pinged nor
    /// stored by this node.
    elsewhere: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// New settings (a reload): expiries, limits, algorithms, the nonce lifetime apply from
    /// the next REGISTER; the domain and realm stay (they change only with a restart).
    /// Bindings stay.
    pub fn set_config(&mut self, mut config: RegistrarConfig) {
        config.domain = std::mem::take(&mut self.config.domain);
        config.realm = std::mem::take(&mut self.config.realm);
        self.nonces.set_lifetime(config.nonce_lifetime);
        self.config = config;
    }

    /// A registrar signing nonces with `nonce_key` (random, per server).
    pub fn new(config: RegistrarConfig, nonce_key: [u8; 32]) -> Self {
        let nonces = Nonces::new(nonce_key, config.nonce_lifetime);
        Registrar {
            config,
            nonces,
            aors: HashMap::new(),
            flows: HashMap::new(),
            count: 0,
            dirty: HashSet::new(),
            refreshed: HashSet::new(),
            failures: HashMap::new(),
            counts: NonceCounts::new(MAX_TRACKED, hash64(0, &[&nonce_key])),
            request_key: hash64(1, &[&nonce_key]),
            elsewhere: HashMap::new(),
        }
    }

    /// Handles a REGISTER that arrived over `flow` at `now`; returns the
    /// response to send back over the same flow.
    pub fn register(
        &mut self,
        msg: &Message<'_>,
        flow: Flow,
        now: Timestamp,
        users: &dyn Users,
    ) -> (Vec<u8>, Outcome) {
        let nat = nat::detect(msg, flow.remote, flow.transport);
        self.register_detected(msg, flow, nat, now, users)
    }

    /// [`Registrar::register`] with the NAT tests already run on the REGISTER.
    pub fn register_detected(
        &mut self,
        msg: &Message<'_>,
        flow: Flow,
        nat_tests: NatTests,
        now: Timestamp,
        users: &dyn Users,
    ) -> (Vec<u8>, Outcome) {
        let tag = to_tag(msg.call_id());
        // RFC 3581 §4: every answer's top Via says where the request came from.
        let via = nat::fixed_top_via(msg, flow.remote);
        let via = via.as_deref();
        let refuse = |code: u16, reason: &str, extra: &[(&str, &str)]| {
            (
                response_via(msg, via, code, reason, &tag, extra),
                Outcome::Refused(code),
            )
        };
        let StartLine::Request { uri, .. } = msg.start_line() else {
            return refuse(400, "Bad Request", &[]);
        };
        if !self.ours(&uri) {
            return refuse(404, "Not Found", &[]);
        }
        let to = msg.to().uri();
        let (Some(aor), true) = (aor_of(&to), self.ours(&to)) else {
            return refuse(404, "Not Found", &[]);
        };
        // A source that failed too often lately is not answered (nor its guesses checked).
        let source = flow.remote.ip();
        if let Some(&(n, since)) = self.failures.get(&source)
            && now.duration_since(since) < FAILURE_WINDOW
            && n >= self.config.auth_failures_per_minute
        {
            return (Vec::new(), Outcome::RateLimited);
        }
        // RFC 3261 §8.2.2.3: an extension the registrar does not support, asked for in
        // Require, gets 420 naming it in Unsupported (answered before a challenge: no larger
        // than the request's tags, and the source's failure limit above applies).
        let unsupported =
            crate::extensions::unsupported(msg, HeaderName::Require, &crate::extensions::REGISTRAR);
        if !unsupported.is_empty() {
            return refuse(
                420,
                "Bad Extension",
                &[("Unsupported", &unsupported.join(", "))],
            );
        }
        // RFC 3261 §10.3 steps 3-6: authenticate, and only for one's own address of record.
        let user = match self.authenticate(msg, flow, now, users) {
            Ok(user) => user,
            Err(a) => {
                let (code, outcome) = match a {
                    AuthError::Challenge { stale } => (401, Outcome::Challenged { stale }),
                    AuthError::Failed => {
                        self.count_failure(source, now);
                        (401, Outcome::AuthFailed)
                    }
                };
                let nonce = self.nonces.make(now);
                let realm = &self.config.realm;
                let challenges: Vec<String> = self
                    .config
                    .algorithms
                    .iter()
                    .map(|&a| digest::challenge(realm, &nonce, a, stale_of(&outcome)))
                    .collect();
                let extra: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|c| ("WWW-Authenticate", c.as_str()))
                    .collect();
                let out = response_via(msg, via, code, "Unauthorized", &tag, &extra);
                return (out, outcome);
            }
        };
        if Some(user.as_bytes()) != to.user() {
            return refuse(403, "Forbidden", &[]);
        }
        let header_expires = msg.expires();
        let mut changes: Vec<(Binding, u32)> = Vec::new();
        if msg.contact_is_star() {
            // Step 6: `*` only with Expires: 0, and alone.
            if header_expires != Some(0) || msg.contact_count() != 1 {
                return refuse(400, "Bad Request", &[]);
            }
            // Each binding of the same Call-ID goes only if this CSeq is higher than the one
            // that made it; else the whole removal is aborted (an old `*` arriving late must
            // not undo a newer registration). Bindings of other Call-IDs go regardless.
            let call_id = msg.call_id();
            let cseq = msg.cseq().number;
            let newer =
                self.aors.get(&aor).into_iter().flatten().any(|b| {
                    b.expires_at > now && b.call_id.as_bytes() == call_id && b.cseq >= cseq
                });
            if newer {
                return refuse(500, "Server Internal Error", &[("Retry-After", "1")]);
            }
            self.set(&aor, Vec::new());
            self.dirty.insert(aor.clone());
            let out = response_via(msg, via, 200, "OK", &tag, &[]);
            return (out, Outcome::Registered { aor, bindings: 0 });
        }
        // Bound before anything is built per Contact: a REGISTER may list many.
        if msg.contact_count() > self.config.max_bindings_per_aor {
            return refuse(503, "Service Unavailable", &[]);
        }
        // RFC 3327 §5.3: Path is stored (and echoed) only when the UA said it supports it.
        let path: Vec<String> = if msg
            .option_tags(HeaderName::Supported)
            .any(|t| t.eq_ignore_ascii_case(b"path"))
        {
            msg.items(HeaderName::Path).map(crate::scan::text).collect()
        } else {
            Vec::new()
        };
        for c in msg.contacts() {
            let asked = c
                .params()
                .get("expires")
                .flatten()
                .and_then(|v| number(v, 10))
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if asked != 0 && asked < self.config.min_expires {
                let min = self.config.min_expires.to_string();
                return refuse(423, "Interval Too Brief", &[("Min-Expires", &min)]);
            }
            let expires = asked.min(self.config.max_expires);
            let instance = c
                .params()
                .get("+sip.instance")
                .flatten()
                .map(crate::scan::text);
            // RFC 5626 §6: a reg-id without an instance is ignored.
            let reg_id = c
                .params()
                .get("reg-id")
                .flatten()
                .and_then(|v| number(v, 10))
                .and_then(|n| u32::try_from(n).ok())
                .filter(|_| instance.is_some());
            let binding = Binding {
                contact: crate::scan::text(c.uri().as_bytes()),
                flow,
                expires_at: now + Duration::from_secs(u64::from(expires)),
                instance,
                reg_id,
                call_id: crate::scan::text(msg.call_id()),
                cseq: msg.cseq().number,
                path: path.clone(),
                nat: nat_tests,
                // A REGISTER got through: the phone is reachable again.
                keepalive_failures: 0,
            };
            changes.push((binding, expires));
        }
        if !changes.is_empty()
            && !self.aors.contains_key(&aor)
            && self.aors.len() >= self.config.max_aors
        {
            return refuse(503, "Service Unavailable", &[]);
        }
        let mut bindings = self.aors.get(&aor).cloned().unwrap_or_default();
        bindings.retain(|b| b.expires_at > now);
        for (new, expires) in changes {
            let same = bindings.iter().position(|b| same_binding(b, &new));
            if let Some(i) = same {
                // Step 7: an older REGISTER of the same Call-ID cannot win. The same CSeq again
                // is a retransmission whose answer was lost: it changes nothing and is answered
                // with what holds now.
                if bindings[i].call_id == new.call_id {
                    if bindings[i].cseq == new.cseq {
                        continue;
                    }
                    if bindings[i].cseq > new.cseq {
                        return refuse(500, "Server Internal Error", &[("Retry-After", "1")]);
                    }
                }
                bindings.remove(i);
            }
            if expires > 0 {
                bindings.push(new);
            }
        }
        if bindings.len() > self.config.max_bindings_per_aor {
            return refuse(503, "Service Unavailable", &[]);
        }
        let contacts: Vec<String> = bindings
            .iter()
            .map(|b| {
                let mut v = String::with_capacity(b.contact.len() + 24);
                v.push('<');
                v.push_str(&b.contact);
                v.push_str(">;expires=");
                push_number(&mut v, (b.expires_at - now).as_secs());
                if let (Some(i), Some(r)) = (&b.instance, b.reg_id) {
                    v.push_str(&format!(";+sip.instance={i};reg-id={r}"));
                }
                v
            })
            .collect();
        let mut extra: Vec<(&str, &str)> =
            contacts.iter().map(|c| ("Contact", c.as_str())).collect();
        // RFC 5626 §6: a registration with reg-id over an outbound flow is confirmed.
        let flow_timer = self.config.flow_timer.map(|s| s.to_string());
        if bindings
            .iter()
            .any(|b| b.reg_id.is_some() && b.flow == flow)
        {
            extra.push(("Require", "outbound"));
            if let Some(t) = &flow_timer {
                extra.push(("Flow-Timer", t));
            }
        }
        let path_values: Vec<String> = path.clone();
        for p in &path_values {
            extra.push(("Path", p));
        }
        let out = response_via(msg, via, 200, "OK", &tag, &extra);
        let n = bindings.len();
        let before = self.aors.get(&aor);
        if before != Some(&bindings) {
            // A refresh (the same contacts on the same flows, only their expiry, Call-ID or
            // CSeq new) reaches the store with the next batch of refreshes; anything else at
            // once.
            let refresh = before.is_some_and(|old| same_reachability(old, &bindings));
            if refresh {
                self.refreshed.insert(aor.clone());
            } else {
                self.dirty.insert(aor.clone());
            }
            self.set(&aor, bindings);
        }
        (out, Outcome::Registered { aor, bindings: n })
    }

    /// Replaces the bindings other nodes hold (read from the shared store).
    pub fn set_elsewhere(&mut self, bindings: Vec<(String, Vec<Binding>)>) {
        self.elsewhere = bindings.into_iter().collect();
    }

    /// The live bindings of `aor` that other nodes hold.
    pub fn bindings_elsewhere(&self, aor: &str, now: Timestamp) -> impl Iterator<Item = &Binding> {
        self.elsewhere
            .get(aor)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    /// The live bindings of `aor` (`sip:user@domain`) at `now`.
    pub fn bindings(&self, aor: &str, now: Timestamp) -> impl Iterator<Item = &Binding> {
        self.aors
            .get(aor)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    /// A live binding registered over `flow`, if any: looked up when a message for that flow
    /// could not be sent. The flow index answers "none" at once; only a flow that carries
    /// bindings costs a walk of the table.
    pub fn binding_on_flow(&self, flow: &Flow, now: Timestamp) -> Option<&Binding> {
        if !self.flows.contains_key(flow) {
            return None;
        }
        self.aors
            .values()
            .flatten()
            .find(|b| b.flow == *flow && b.expires_at > now)
    }

    /// The binding of `aor` with this Contact, if any.
    pub fn binding(&self, aor: &str, contact: &str) -> Option<&Binding> {
        self.aors.get(aor)?.iter().find(|b| b.contact == contact)
    }

    /// Every address of record with live bindings, for keepalives and the store.
    pub fn all(&self) -> impl Iterator<Item = (&String, &Vec<Binding>)> {
        self.aors.iter()
    }

    /// Drops lapsed bindings; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        self.failures
            .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        // A nonce older than its lifetime is stale whatever its count: its uses can go.
        self.counts.expire(
            now.unix_secs()
                .saturating_sub(self.config.nonce_lifetime.as_secs() + 1),
        );
        let lapsed: Vec<String> = self
            .aors
            .iter()
            .filter(|(_, bs)| bs.iter().any(|b| b.expires_at <= now))
            .map(|(aor, _)| aor.clone())
            .collect();
        let mut gone = 0;
        for aor in lapsed {
            let mut bs = self.aors.get(&aor).cloned().unwrap_or_default();
            let before = bs.len();
            bs.retain(|b| b.expires_at > now);
            gone += before - bs.len();
            self.set(&aor, bs);
            self.dirty.insert(aor);
        }
        gone
    }

    /// The addresses of record whose bindings changed since the last call, with their bindings
    /// now (none: the address of record is gone), for the store. Changes to who is reachable
    /// where (a new or removed binding, a new flow) come every time; mere refreshes (and
    /// keep-alive counts) only with `refreshes`, which the server asks for every 10 s: so a
    /// phone refreshing often costs one store write per 10 s, not one per REGISTER.
    pub fn take_changed(&mut self, refreshes: bool) -> Vec<(String, Vec<Binding>)> {
        let mut dirty = std::mem::take(&mut self.dirty);
        if refreshes {
            dirty.extend(std::mem::take(&mut self.refreshed));
        } else {
            for aor in &dirty {
                self.refreshed.remove(aor);
            }
        }
        dirty
            .into_iter()
            .map(|aor| {
                let bs = self.aors.get(&aor).cloned().unwrap_or_default();
                (aor, bs)
            })
            .collect()
    }

    /// Records how many keep-alive pings a binding missed in a row; true if that changed it
    /// (then it goes to the store).
    pub fn set_keepalive_failures(&mut self, aor: &str, contact: &str, failures: u32) -> bool {
        let Some(b) = self
            .aors
            .get_mut(aor)
            .and_then(|bs| bs.iter_mut().find(|b| b.contact == contact))
        else {
            return false;
        };
        if b.keepalive_failures == failures {
            return false;
        }
        b.keepalive_failures = failures;
        self.refreshed.insert(aor.to_owned());
        true
    }

    /// Drops one binding (a phone that stopped answering keep-alives).
    pub fn remove_binding(&mut self, aor: &str, contact: &str) -> bool {
        let Some(mut bs) = self.aors.get(aor).cloned() else {
            return false;
        };
        let before = bs.len();
        bs.retain(|b| b.contact != contact);
        let removed = bs.len() != before;
        if removed {
            self.set(aor, bs);
            self.dirty.insert(aor.to_owned());
        }
        removed
    }

    /// Takes bindings another registrar granted (edge mode: the upstream's 2xx to a REGISTER
    /// the edge forwarded): each replaces the binding with its Contact, or is added; one with
    /// `expires_at <= now` removes it. Kept for keep-alives and the store, not for routing.
    pub fn mirror(&mut self, aor: &str, bindings: Vec<Binding>, now: Timestamp) {
        if !self.aors.contains_key(aor) && self.aors.len() >= self.config.max_aors {
            return;
        }
        let mut bs = self.aors.get(aor).cloned().unwrap_or_default();
        for b in bindings {
            bs.retain(|old| old.contact != b.contact);
            if b.expires_at > now && bs.len() < self.config.max_bindings_per_aor {
                bs.push(b);
            }
        }
        self.set(aor, bs);
        self.dirty.insert(aor.to_owned());
    }

    /// Puts back the bindings of `aor` read from the store at start.
    pub fn restore(&mut self, aor: String, bindings: Vec<Binding>) {
        if !bindings.is_empty() && self.aors.len() < self.config.max_aors {
            self.set(&aor, bindings);
        }
    }

    /// Whether a live binding was registered over `flow` (a connection carrying a registration
    /// is kept open as long as the registration lives).
    pub fn holds_flow(&self, flow: &Flow) -> bool {
        self.flows.contains_key(flow)
    }

    /// Bindings held now (live or lapsed but not yet expired).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The one place the table changes: `aor`'s bindings become `bindings` (none: `aor` goes),
    /// and the per-flow index and the count follow.
    fn set(&mut self, aor: &str, mut bindings: Vec<Binding>) {
        // Most addresses of record hold one binding: a vector grown by a push keeps room for
        // four (about 600 bytes each at 100,000 registrations, bench/soak.sh).
        bindings.shrink_to_fit();
        let old = match self.aors.get_mut(aor) {
            Some(slot) if !bindings.is_empty() => Some(std::mem::replace(slot, bindings)),
            Some(_) => self.aors.remove(aor),
            None if bindings.is_empty() => None,
            None => {
                self.aors.insert(aor.to_owned(), bindings);
                None
            }
        };
        let new = self.aors.get(aor).map_or(&[][..], Vec::as_slice);
        let old = old.unwrap_or_default();
        self.count = self.count - old.len() + new.len();
        // The flows of a refresh are the same: the index need not move.
        let same_flows =
            old.len() == new.len() && old.iter().zip(new).all(|(a, b)| a.flow == b.flow);
        if same_flows {
            return;
        }
        for b in &old {
            if let Some(n) = self.flows.get_mut(&b.flow) {
                *n -= 1;
                if *n == 0 {
                    self.flows.remove(&b.flow);
                }
            }
        }
        for b in new {
            *self.flows.entry(b.flow).or_insert(0) += 1;
        }
    }

    fn count_failure(&mut self, source: std::net::IpAddr, now: Timestamp) {
        if self.failures.len() >= MAX_TRACKED_FAILURES {
            self.failures
                .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        if self.failures.len() >= MAX_TRACKED_FAILURES && !self.failures.contains_key(&source) {
            return;
        }
        let e = self.failures.entry(source).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    fn ours(&self, uri: &Uri<'_>) -> bool {
        uri.is_sip()
            && uri
                .host()
                .eq_ignore_ascii_case(self.config.domain.as_bytes())
    }

    /// The authenticated username.
    fn authenticate(
        &mut self,
        msg: &Message<'_>,
        flow: Flow,
        now: Timestamp,
        users: &dyn Users,
    ) -> Result<String, AuthError> {
        let realm = self.config.realm.as_bytes();
        let creds = msg
            .fields(HeaderName::Authorization)
            .filter_map(|h| Credentials::parse(h.value).ok())
            .find(|c| c.realm == realm)
            .filter(|c| self.config.algorithms.contains(&c.algorithm()))
            .ok_or(AuthError::Challenge { stale: false })?;
        let user = crate::scan::text(creds.username);
        let ha1 = users.ha1(&self.config.realm, &user, creds.algorithm());
        match creds.verify(msg.method().0, ha1.as_deref(), &self.nonces, now) {
            Ok(()) => {}
            Err(digest::Refusal::Stale) => return Err(AuthError::Challenge { stale: true }),
            Err(digest::Refusal::UnknownNonce | digest::Refusal::Unsupported) => {
                return Err(AuthError::Challenge { stale: false });
            }
            Err(digest::Refusal::Wrong | digest::Refusal::Malformed) => {
                return Err(AuthError::Failed);
            }
        }
        // Right credentials: now the count must have gone up (a replay gets a fresh nonce,
        // which its sender cannot answer).
        let nc = match creds.qop {
            Some(_) => Some(
                creds
                    .nc
                    .and_then(parse_nc)
                    .ok_or(AuthError::Challenge { stale: false })?,
            ),
            None => None,
        };
        let made = Nonces::made_at(creds.nonce).ok_or(AuthError::Challenge { stale: false })?;
        // The request and where it came from: a retransmission is both again.
        let ip = match flow.remote.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let port = flow.remote.port().to_be_bytes();
        let request = hash64(self.request_key, &[msg.as_bytes(), &ip, &port]);
        let cnonce = creds.cnonce.unwrap_or_default();
        match self
            .counts
            .use_nonce(creds.nonce, made, creds.username, cnonce, nc, request)
        {
            Ok(()) => Ok(user),
            Err(_) => Err(AuthError::Challenge { stale: true }),
        }
    }
}

enum AuthError {
    Challenge { stale: bool },
    Failed,
}

fn stale_of(o: &Outcome) -> bool {
    matches!(o, Outcome::Challenged { stale: true })
}

/// `sip:user@host` (host in lower case) of a SIP URI with a user part.
pub fn aor_of(uri: &Uri<'_>) -> Option<String> {
    let user = uri.user()?;
    // A password in the userinfo is not part of the address of record.
    let user = user.split(|&b| b == b':').next()?;
    let host = uri.host();
    let mut aor = String::with_capacity(5 + user.len() + host.len());
    aor.push_str("sip:");
    aor.push_str(&String::from_utf8_lossy(user));
    aor.push('@');
    let host_at = aor.len();
    aor.push_str(&String::from_utf8_lossy(host));
    aor[host_at..].make_ascii_lowercase();
    Some(aor)
}

/// Whether two binding sets reach the same phones the same way: the same contacts, flows,
/// instances, reg-ids, Paths and NAT tests, in any order (expiry, Call-ID, CSeq and
/// keep-alive counts may differ).
fn same_reachability(a: &[Binding], b: &[Binding]) -> bool {
    let same = |x: &Binding, y: &Binding| {
        x.contact == y.contact
            && x.flow == y.flow
            && x.instance == y.instance
            && x.reg_id == y.reg_id
            && x.path == y.path
            && x.nat == y.nat
    };
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| same(x, y)))
}

/// RFC 5626 §6: with an instance and reg-id, the pair names the binding; otherwise the URI.
fn same_binding(a: &Binding, b: &Binding) -> bool {
    match (&a.instance, a.reg_id, &b.instance, b.reg_id) {
        (Some(ia), Some(ra), Some(ib), Some(rb)) => ia == ib && ra == rb,
        _ => a.contact == b.contact,
    }
}

/// A To tag for the registrar's responses: stable for a Call-ID (so a retransmission gets the
/// same), different across Call-IDs.
fn to_tag(call_id: &[u8]) -> String {
    let mut tag = String::with_capacity(18);
    tag.push_str("fs");
    crate::scan::push_hex(&mut tag, &hash64(0, &[call_id]).to_be_bytes());
    tag
}
