//! Partner mode: RFC 5780 behaviour discovery with servers that have one IP address each.
//!
//! RFC 5780 §6 wants two IP addresses on one server. A host with one address can still answer
//! "change port" itself, but for "change IP" it hands the request to a partner (another
//! Farside on another host, listening on the same two ports), which answers the client from its
//! own address. OTHER-ADDRESS names a partner. This is the snom 4S STUN server's "other STUN
//! server" list: change-IP requests go to the partners in round robin, and a retransmission of
//! one request goes to the next partner, so a dead partner costs the client one retransmission.
//! Partners also greet each other every heartbeat; one not heard from for three heartbeats is
//! skipped while another is alive.
//!
//! # Wire format
//!
//! Partner messages are Binding *indications* (any STUN server drops them unanswered) sent
//! from one server's primary address to the partner's primary address. They carry private,
//! comprehension-optional attributes ([`attr`]) and end in MESSAGE-INTEGRITY-SHA256 keyed with
//! a shared secret. The transaction id is a fresh random nonce. A receiver accepts a message
//! only if it comes from a configured partner's primary address to its own, the HMAC verifies
//! under one of its secrets, the timestamp is within `max_age` of its clock (and not before the
//! receiver started), the nonce was not seen within twice `max_age`, and the partner's rate
//! limit allows it. So a partner can never be turned into a reflector: only a key holder can
//! make it answer, each signed request is answered once, and at a bounded rate.
//!
//! Everything here is sans-IO: time comes in as Unix milliseconds, randomness from a seed.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use farside_time::Timestamp;

use crate::attributes::XorMappedAddress;
use crate::drop_reason::DropReason;
use crate::{
    Attribute, Class, Header, MAGIC_COOKIE, Message, MessageBuilder, MessageType, Method,
    TransactionId, attr_type,
};

/// Most partners one server may list.
pub const MAX_PARTNERS: usize = 16;

/// Most shared secrets (the first signs; all verify, so secrets can be rotated).
pub const MAX_SECRETS: usize = 4;

/// Shortest shared secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// A partner is dead once this many heartbeats pass without a word from it.
const HEARTBEATS_TO_DEATH: u64 = 3;

/// Slots remembering recent forwards, so a retransmission goes to another partner.
const RECENT_SLOTS: usize = 64;

/// Farside's private attribute types (comprehension-optional range, RFC 8489 §18.3).
pub mod attr {
    /// The sender's clock, Unix milliseconds, 8 bytes.
    pub const PARTNER_TIMESTAMP: u16 = 0xC0F0;
    /// The client's reflexive address as the first server saw it (XOR-MAPPED-ADDRESS format).
    pub const PARTNER_CLIENT: u16 = 0xC0F1;
    /// The OTHER-ADDRESS the first server gave the client (XOR-MAPPED-ADDRESS format).
    pub const PARTNER_OTHER: u16 = 0xC0F2;
    /// 4 bytes: 1 = answer from the alternate port, 0 = from the primary port.
    pub const PARTNER_ANSWER_PORT: u16 = 0xC0F3;
    /// The client's request, verbatim.
    pub const PARTNER_REQUEST: u16 = 0xC0F4;
}

/// Partner mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConfig {
    /// This server's primary address: partner messages leave from it and must arrive on it.
    pub primary: SocketAddr,
    /// This server's alternate port (the partners use the same two ports).
    pub alternate_port: u16,
    /// The partners' IP addresses (at most [`MAX_PARTNERS`]).
    pub partners: Vec<IpAddr>,
    /// Shared secrets; the first signs, any verifies (at most [`MAX_SECRETS`]).
    pub secrets: Vec<Vec<u8>>,
    /// Partner messages older or newer than this (by this server's clock) are refused.
    pub max_age: Duration,
    /// Forwards sent, and forwards answered, per second per worker.
    pub rate_limit: u32,
    /// How often to greet each partner.
    pub heartbeat: Duration,
}

/// What all workers share: the configuration, and when each partner was last heard from.
#[derive(Debug)]
pub struct PartnerBook {
    config: PartnerConfig,
    last_heard: Box<[AtomicU64]>,
    started_ms: u64,
}

impl PartnerBook {
    /// A book for `config`, created at `now_ms`. Messages timestamped earlier are refused: a
    /// restart forgets the seen nonces, and this keeps old captures out.
    pub fn new(config: PartnerConfig, now: Timestamp) -> Self {
        let now_ms = now.unix_millis();
        let last_heard = config.partners.iter().map(|_| AtomicU64::new(0)).collect();
        PartnerBook {
            config,
            last_heard,
            started_ms: now_ms,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PartnerConfig {
        &self.config
    }

    /// Whether partner `i` greeted us within the last three heartbeats.
    pub fn is_alive(&self, i: usize, now: Timestamp) -> bool {
        let now_ms = now.unix_millis();
        let last = self
            .last_heard
            .get(i)
            .map_or(0, |t| t.load(Ordering::Relaxed));
        last != 0
            && now_ms.saturating_sub(last) <= HEARTBEATS_TO_DEATH * millis(self.config.heartbeat)
    }

    /// Each partner and whether it is alive now.
    pub fn status(&self, now: Timestamp) -> impl Iterator<Item = (IpAddr, bool)> + '_ {
        (self.config.partners.iter().enumerate()).map(move |(i, ip)| (*ip, self.is_alive(i, now)))
    }

    fn heard(&self, i: usize, now_ms: u64) {
        if let Some(t) = self.last_heard.get(i) {
            t.fetch_max(now_ms.max(1), Ordering::Relaxed);
        }
    }

    /// The first alive partner from `start` on (wrapping); `start` itself when none is alive
    /// (at startup, or when the heartbeats are lost), since trying beats refusing.
    fn pick(&self, start: usize, now: Timestamp) -> usize {
        let n = self.config.partners.len().max(1);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.is_alive(i, now))
            .unwrap_or(start % n)
    }
}

/// A message for a partner, written at the start of the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerMessage {
    /// Its length.
    pub len: usize,
    /// This server's primary address, to send from.
    pub from: SocketAddr,
    /// The partner's primary address.
    pub to: SocketAddr,
}

/// A verified forward from a partner: answer `client` on the first server's behalf.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's reflexive address (XOR-MAPPED-ADDRESS of the answer).
    pub client: SocketAddr,
    /// The OTHER-ADDRESS (and CHANGED-ADDRESS) the first server gave.
    pub other: SocketAddr,
    /// Answer from the alternate port rather than the primary one.
    pub alternate_port: bool,
    /// The client's request.
    pub request: &'a [u8],
}

/// What a verified partner message asks.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// A heartbeat from this partner.
    Hello(IpAddr),
    /// Answer a client.
    Forward(Forwarded<'a>),
}

/// One worker's partner state: round robin, recent forwards, seen nonces, rate limits.
#[derive(Debug)]
pub struct PartnerWorker {
    book: Arc<PartnerBook>,
    rng: u64,
    next: usize,
    recent: [Option<Recent>; RECENT_SLOTS],
    seen: SeenNonces,
    send_budget: TokenBucket,
    answer_budget: TokenBucket,
    greets: bool,
    next_hello_ms: u64,
    hello_index: usize,
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    transaction: TransactionId,
    client: SocketAddr,
    partner: usize,
}

impl PartnerWorker {
    /// A worker's state. `seed` feeds the nonces; `greets` makes this worker the one that
    /// sends the heartbeats (one per server is enough).
    pub fn new(book: Arc<PartnerBook>, seed: u64, greets: bool) -> Self {
        let c = book.config();
        // Every fresh message stays in the cache for twice max_age (see `receive`), and at
        // most `rate_limit` forwards per second (plus heartbeats) get that far.
        let window_s = (2 * millis(c.max_age)).div_ceil(1000) + 1;
        let capacity = (u64::from(c.rate_limit) * window_s) as usize + 64 * MAX_PARTNERS;
        PartnerWorker {
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            next: 0,
            recent: [None; RECENT_SLOTS],
            seen: SeenNonces::with_capacity(capacity),
            send_budget: TokenBucket::new(c.rate_limit),
            answer_budget: TokenBucket::new(c.rate_limit),
            greets,
            next_hello_ms: 0,
            hello_index: 0,
            book,
        }
    }

    /// The shared book.
    pub fn book(&self) -> &Arc<PartnerBook> {
        &self.book
    }

    /// The partner to name in OTHER-ADDRESS for `client`: stable per client IP (so one
    /// client's tests meet one partner), spread over the alive ones.
    pub fn other_partner(&self, client: SocketAddr, now: Timestamp) -> IpAddr {
        let partners = &self.book.config.partners;
        let start = (hash_ip(client.ip()) % partners.len().max(1) as u64) as usize;
        partners
            .get(self.book.pick(start, now))
            .copied()
            .unwrap_or(self.book.config.primary.ip())
    }

    /// Writes a forward of `request` (from `client`) for the next partner into `out`. A
    /// retransmission of a request forwarded lately goes to the partner after the last one.
    pub fn forward(
        &mut self,
        request: &Message<'_>,
        client: SocketAddr,
        other: SocketAddr,
        alternate_port: bool,
        now: Timestamp,
        out: &mut [u8],
    ) -> Result<PartnerMessage, DropReason> {
        let now_ms = now.unix_millis();
        if !self.send_budget.take(now_ms) {
            return Err(DropReason::PartnerRateLimited);
        }
        let n = self.book.config.partners.len();
        if n == 0 {
            return Err(DropReason::UnsupportedMethod);
        }
        let tid = request.transaction_id();
        let slot = (hash_bytes(&tid.0) % RECENT_SLOTS as u64) as usize;
        let start = match self.recent[slot] {
            Some(r) if r.transaction == tid && r.client == client => r.partner + 1,
            _ => {
                self.next = (self.next + 1) % n;
                self.next
            }
        };
        let partner = self.book.pick(start, now);
        self.recent[slot] = Some(Recent {
            transaction: tid,
            client,
            partner,
        });

        let (mut b, header) = self.start_message(out, now_ms)?;
        add_address(&mut b, attr::PARTNER_CLIENT, client, &header)?;
        add_address(&mut b, attr::PARTNER_OTHER, other, &header)?;
        b.add_raw(
            attr::PARTNER_ANSWER_PORT,
            &u32::from(alternate_port).to_be_bytes(),
        )
        .map_err(|_| DropReason::NoRoom)?;
        b.add_raw(attr::PARTNER_REQUEST, request.as_bytes())
            .map_err(|_| DropReason::NoRoom)?;
        let len = self.sign(b)?;
        Ok(self.message_to(partner, len))
    }

    /// The next heartbeat that is due, written into `out`; call until `None`.
    pub fn poll_hello(&mut self, now: Timestamp, out: &mut [u8]) -> Option<PartnerMessage> {
        let now_ms = now.unix_millis();
        let n = self.book.config.partners.len();
        if !self.greets || n == 0 || now_ms < self.next_hello_ms {
            return None;
        }
        let partner = self.hello_index;
        self.hello_index += 1;
        if self.hello_index >= n {
            self.hello_index = 0;
            self.next_hello_ms = now_ms + millis(self.book.config.heartbeat);
        }
        let (b, _) = self.start_message(out, now_ms).ok()?;
        let len = self.sign(b).ok()?;
        Some(self.message_to(partner, len))
    }

    /// Verifies a partner message that arrived from `remote` on `local` (see the module
    /// documentation for every check) and says what it asks.
    pub fn receive<'m>(
        &mut self,
        msg: &Message<'m>,
        local: SocketAddr,
        remote: SocketAddr,
        now: Timestamp,
    ) -> Result<Incoming<'m>, DropReason> {
        let now_ms = now.unix_millis();
        let c = &self.book.config;
        // The only path partner messages take: partner primary → our primary. Pinning the
        // 4-tuple also pins the SO_REUSEPORT worker, so this worker's nonce cache sees every
        // copy of a message.
        if local != c.primary || remote.port() != c.primary.port() {
            return Err(DropReason::PartnerForged);
        }
        let Some(partner) = c.partners.iter().position(|p| *p == remote.ip()) else {
            return Err(DropReason::PartnerForged);
        };
        if msg
            .raw_attribute(attr_type::MESSAGE_INTEGRITY_SHA256)
            .is_none()
            || !c
                .secrets
                .iter()
                .any(|s| msg.verify_integrity_sha256(s).is_ok())
        {
            return Err(DropReason::PartnerForged);
        }
        let stamp = msg
            .raw_attribute(attr::PARTNER_TIMESTAMP)
            .and_then(|a| <[u8; 8]>::try_from(a.value).ok())
            .map(u64::from_be_bytes)
            .ok_or(DropReason::PartnerForged)?;
        if stamp < self.book.started_ms || stamp.abs_diff(now_ms) > millis(c.max_age) {
            return Err(DropReason::PartnerStale);
        }
        // A message is valid until its stamp + max_age, and its stamp may be up to max_age
        // ahead of our clock: remembering it for 2 × max_age from now covers both.
        self.seen
            .insert(msg.transaction_id(), now_ms, now_ms + 2 * millis(c.max_age))?;
        self.book.heard(partner, now_ms);

        let Some(request) = msg.raw_attribute(attr::PARTNER_REQUEST) else {
            return Ok(Incoming::Hello(remote.ip()));
        };
        if !self.answer_budget.take(now_ms) {
            return Err(DropReason::PartnerRateLimited);
        }
        let header = msg.header();
        let address = |typ| {
            msg.raw_attribute(typ)
                .and_then(|a| XorMappedAddress::decode(a.value, &header).ok())
                .map(|a| a.0)
        };
        let alternate_port = msg
            .raw_attribute(attr::PARTNER_ANSWER_PORT)
            .and_then(|a| <[u8; 4]>::try_from(a.value).ok())
            .map(|v| u32::from_be_bytes(v) == 1);
        match (
            address(attr::PARTNER_CLIENT),
            address(attr::PARTNER_OTHER),
            alternate_port,
        ) {
            (Some(client), Some(other), Some(alternate_port)) => Ok(Incoming::Forward(Forwarded {
                client,
                other,
                alternate_port,
                request: request.value,
            })),
            _ => Err(DropReason::Malformed),
        }
    }

    fn start_message<'b>(
        &mut self,
        out: &'b mut [u8],
        now_ms: u64,
    ) -> Result<(MessageBuilder<'b>, Header), DropReason> {
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&self.random().to_be_bytes());
        tid[8..].copy_from_slice(&self.random().to_be_bytes()[..4]);
        let header = Header {
            cookie: MAGIC_COOKIE.to_be_bytes(),
            transaction_id: TransactionId(tid),
        };
        let ty = MessageType {
            class: Class::Indication,
            method: Method::BINDING,
        };
        let mut b = MessageBuilder::new(out, ty, header).map_err(|_| DropReason::NoRoom)?;
        b.add_raw(attr::PARTNER_TIMESTAMP, &now_ms.to_be_bytes())
            .map_err(|_| DropReason::NoRoom)?;
        Ok((b, header))
    }

    fn sign(&self, mut b: MessageBuilder<'_>) -> Result<usize, DropReason> {
        let key = self.book.config.secrets.first().ok_or(DropReason::NoRoom)?;
        b.add_message_integrity_sha256(key)
            .map_err(|_| DropReason::NoRoom)?;
        Ok(b.finish())
    }

    fn message_to(&self, partner: usize, len: usize) -> PartnerMessage {
        let c = &self.book.config;
        let ip = c.partners.get(partner).copied().unwrap_or(c.primary.ip());
        PartnerMessage {
            len,
            from: c.primary,
            to: SocketAddr::new(ip, c.primary.port()),
        }
    }

    /// splitmix64: nonces need uniqueness, not secrecy (the HMAC makes them unforgeable).
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn add_address(
    b: &mut MessageBuilder<'_>,
    typ: u16,
    addr: SocketAddr,
    header: &Header,
) -> Result<(), DropReason> {
    let a = XorMappedAddress(addr);
    let mut value = [0u8; 20];
    let len = a.encoded_len();
    let v = value.get_mut(..len).ok_or(DropReason::NoRoom)?;
    a.encode(v, header);
    b.add_raw(typ, v).map_err(|_| DropReason::NoRoom)
}

/// FNV-1a; only spreads clients and requests over slots and partners.
fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// Nonces seen lately, each kept until its expiry. Sized once; when full, new messages are
/// refused (rate-limited) rather than old nonces forgotten early.
#[derive(Debug)]
struct SeenNonces {
    set: HashSet<[u8; 12]>,
    order: VecDeque<([u8; 12], u64)>,
    capacity: usize,
}

impl SeenNonces {
    fn with_capacity(capacity: usize) -> Self {
        SeenNonces {
            set: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    fn insert(&mut self, tid: TransactionId, now_ms: u64, until_ms: u64) -> Result<(), DropReason> {
        while let Some(&(old, expiry)) = self.order.front() {
            if expiry > now_ms {
                break;
            }
            self.set.remove(&old);
            self.order.pop_front();
        }
        if self.set.contains(&tid.0) {
            return Err(DropReason::PartnerReplay);
        }
        if self.order.len() >= self.capacity {
            return Err(DropReason::PartnerRateLimited);
        }
        self.set.insert(tid.0);
        self.order.push_back((tid.0, until_ms));
        Ok(())
    }
}

/// `rate` tokens per second, a burst of one second's worth.
#[derive(Debug)]
struct TokenBucket {
    rate: u64,
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        TokenBucket {
            rate: u64::from(rate),
            milli_tokens: u64::from(rate) * 1000,
            last_ms: 0,
        }
    }

    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli_tokens =
            (self.milli_tokens + elapsed.saturating_mul(self.rate)).min(self.rate * 1000);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Whole milliseconds of `d`, as partner messages count time.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
