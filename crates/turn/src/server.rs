//! The TURN server state machine (RFC 8656): one per data-plane worker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use farside_stun::attributes::{
    AddressFamily, ChannelNumber, Data, ErrorCode, EvenPort, Lifetime, Nonce, PasswordAlgorithm,
    PasswordAlgorithms, Realm, RequestedAddressFamily, RequestedTransport, ReservationToken,
    Software, Userhash, Username, XorMappedAddress, XorPeerAddress, XorRelayedAddress,
};
use farside_stun::{Class, Message, MessageBuilder, MessageType, Method, attr_type};

use crate::allocation::{Allocation, ChannelConflict, FiveTuple, Key};
use crate::channel_data::ChannelData;
use crate::config::TurnConfig;
use crate::credentials::{Credentials, rest_expiry, rest_password};
use crate::nonce::Nonces;

/// The transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl TurnTransport {
    /// Streams pad ChannelData to 4 bytes (RFC 8656 §12.5).
    fn is_stream(self) -> bool {
        !matches!(self, TurnTransport::Udp)
    }
}

/// Binds relay sockets for the server: the shell does it with real sockets, tests without.
pub trait RelayPorts {
    /// A fresh relayed transport address of `family`, with an even port if `even_port`.
    fn allocate(
        &mut self,
        family: AddressFamily,
        even_port: bool,
    ) -> Result<SocketAddr, RelayError>;
    /// An even port and, held in reserve, the next one (EVEN-PORT with the R bit, RFC 8656
    /// §7.2): returns the even one and a RESERVATION-TOKEN for the other. Reservations are
    /// shared by all workers (the client claims it from another 5-tuple) and lapse after
    /// about 30 s.
    fn allocate_reserving(
        &mut self,
        family: AddressFamily,
    ) -> Result<(SocketAddr, [u8; 8]), RelayError>;
    /// The address held under `token`, now this worker's; `None` if unknown or lapsed.
    fn claim(&mut self, token: [u8; 8]) -> Option<SocketAddr>;
    /// The allocation using `relayed` is gone: close its socket, return its port.
    fn release(&mut self, relayed: SocketAddr);
}

/// Why no relayed address could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// Every port of the relay range is in use (answered 508).
    Exhausted,
    /// This server relays no addresses of that family (answered 440).
    FamilyUnsupported,
    /// The server-wide allocation limit is reached (answered 486): workers share it, so the
    /// shell, which sees all of them, keeps it.
    Quota,
}

/// One datagram (or stream message) to send: `out[..len]` from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes written at the start of the output buffer.
    pub len: usize,
    /// The server's client-facing address, or an allocation's relayed address.
    pub from: SocketAddr,
    /// The client, or a peer.
    pub to: SocketAddr,
}

/// Why a request was refused: the error responses, counted by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// 400: malformed, or a required attribute missing.
    BadRequest,
    /// 401: no credentials yet (the normal first round trip).
    Challenge,
    /// 401: unknown user, wrong password, or expired ephemeral username.
    WrongPassword,
    /// 403: the peer address is refused by policy.
    PeerForbidden,
    /// 420: a comprehension-required attribute this server does not know.
    UnknownAttribute,
    /// 437: no allocation for this 5-tuple, or one exists already.
    AllocationMismatch,
    /// 438: the nonce expired (or was never ours).
    StaleNonce,
    /// 440: no relayed addresses of that family.
    AddressFamilyNotSupported,
    /// 441: a request for an allocation by another user.
    WrongCredentials,
    /// 442: a transport other than UDP was requested.
    UnsupportedTransport,
    /// 443: the peer's family differs from the relayed address's.
    PeerAddressFamilyMismatch,
    /// 486: the user's or the server's allocation quota is full.
    QuotaReached,
    /// 508: no relay port, or too many permissions or channels.
    InsufficientCapacity,
}

impl Refusal {
    /// Every refusal, for metrics.
    pub const ALL: [Refusal; 13] = [
        Refusal::BadRequest,
        Refusal::Challenge,
        Refusal::WrongPassword,
        Refusal::PeerForbidden,
        Refusal::UnknownAttribute,
        Refusal::AllocationMismatch,
        Refusal::StaleNonce,
        Refusal::AddressFamilyNotSupported,
        Refusal::WrongCredentials,
        Refusal::UnsupportedTransport,
        Refusal::PeerAddressFamilyMismatch,
        Refusal::QuotaReached,
        Refusal::InsufficientCapacity,
    ];

    /// The STUN error code.
    pub fn code(self) -> u16 {
        match self {
            Refusal::BadRequest => ErrorCode::BAD_REQUEST,
            Refusal::Challenge | Refusal::WrongPassword => ErrorCode::UNAUTHENTICATED,
            Refusal::PeerForbidden => ErrorCode::FORBIDDEN,
            Refusal::UnknownAttribute => ErrorCode::UNKNOWN_ATTRIBUTE,
            Refusal::AllocationMismatch => ErrorCode::ALLOCATION_MISMATCH,
            Refusal::StaleNonce => ErrorCode::STALE_NONCE,
            Refusal::AddressFamilyNotSupported => ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED,
            Refusal::WrongCredentials => ErrorCode::WRONG_CREDENTIALS,
            Refusal::UnsupportedTransport => ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL,
            Refusal::PeerAddressFamilyMismatch => ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH,
            Refusal::QuotaReached => ErrorCode::ALLOCATION_QUOTA_REACHED,
            Refusal::InsufficientCapacity => ErrorCode::INSUFFICIENT_CAPACITY,
        }
    }

    /// A short stable name (a metrics label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Challenge => "challenge",
            Refusal::WrongPassword => "wrong_password",
            Refusal::PeerForbidden => "peer_forbidden",
            Refusal::UnknownAttribute => "unknown_attribute",
            Refusal::AllocationMismatch => "allocation_mismatch",
            Refusal::StaleNonce => "stale_nonce",
            Refusal::AddressFamilyNotSupported => "address_family_not_supported",
            Refusal::WrongCredentials => "wrong_credentials",
            Refusal::UnsupportedTransport => "unsupported_transport",
            Refusal::PeerAddressFamilyMismatch => "peer_address_family_mismatch",
            Refusal::QuotaReached => "quota_reached",
            Refusal::InsufficientCapacity => "insufficient_capacity",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest => "Bad Request",
            Refusal::Challenge | Refusal::WrongPassword => "Unauthenticated",
            Refusal::PeerForbidden => "Forbidden",
            Refusal::UnknownAttribute => "Unknown Attribute",
            Refusal::AllocationMismatch => "Allocation Mismatch",
            Refusal::StaleNonce => "Stale Nonce",
            Refusal::AddressFamilyNotSupported => "Address Family not Supported",
            Refusal::WrongCredentials => "Wrong Credentials",
            Refusal::UnsupportedTransport => "Unsupported Transport Protocol",
            Refusal::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            Refusal::QuotaReached => "Allocation Quota Reached",
            Refusal::InsufficientCapacity => "Insufficient Capacity",
        }
    }
}

/// Why nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// Neither STUN nor ChannelData, or a classic RFC 3489 message.
    NotTurn,
    /// Does not parse, or a Send indication without its attributes.
    Malformed,
    /// Data for a 5-tuple or relayed address with no allocation.
    NoAllocation,
    /// Data to or from a peer without a permission.
    NoPermission,
    /// ChannelData on an unbound channel.
    NoChannel,
    /// A response, or an indication other than Send.
    Unexpected,
    /// Too many failed authentications from this source lately.
    AuthRateLimited,
    /// The output buffer could not hold the message.
    NoRoom,
}

impl Dropped {
    /// Every reason, for metrics.
    pub const ALL: [Dropped; 8] = [
        Dropped::NotTurn,
        Dropped::Malformed,
        Dropped::NoAllocation,
        Dropped::NoPermission,
        Dropped::NoChannel,
        Dropped::Unexpected,
        Dropped::AuthRateLimited,
        Dropped::NoRoom,
    ];

    /// A short stable name (a metrics label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::NotTurn => "not_turn",
            Dropped::Malformed => "malformed",
            Dropped::NoAllocation => "no_allocation",
            Dropped::NoPermission => "no_permission",
            Dropped::NoChannel => "no_channel",
            Dropped::Unexpected => "unexpected",
            Dropped::AuthRateLimited => "auth_rate_limited",
            Dropped::NoRoom => "no_room",
        }
    }
}

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A success response to the client.
    Answered(Transmit),
    /// An error response to the client.
    Refused(Transmit, Refusal),
    /// Data relayed (to a peer, or from a peer to the client).
    Relayed(Transmit),
    /// Nothing sent.
    Dropped(Dropped),
}

/// An authenticated request's user and key.
struct Auth {
    realm: String,
    username: String,
    key: Key,
    sha256_integrity: bool,
}

/// Either a value or the error response already written.
type Step<T> = Result<T, Handled>;

/// Comprehension-required attributes a TURN request may carry here. DONT-FRAGMENT is absent
/// on purpose: requests with it get 420, as RFC 8656 §7.2 asks of a server that cannot set
/// the DF bit.
const KNOWN: &[u16] = &[
    attr_type::USERNAME,
    attr_type::MESSAGE_INTEGRITY,
    attr_type::MESSAGE_INTEGRITY_SHA256,
    attr_type::REALM,
    attr_type::NONCE,
    attr_type::USERHASH,
    attr_type::PASSWORD_ALGORITHM,
    attr_type::XOR_MAPPED_ADDRESS,
    attr_type::CHANNEL_NUMBER,
    attr_type::LIFETIME,
    attr_type::XOR_PEER_ADDRESS,
    attr_type::DATA,
    attr_type::REQUESTED_ADDRESS_FAMILY,
    attr_type::EVEN_PORT,
    attr_type::REQUESTED_TRANSPORT,
    attr_type::RESERVATION_TOKEN,
];

/// The algorithms offered, in order of preference (RFC 8489 §14.11).
const ALGORITHMS: [PasswordAlgorithm<'static>; 2] = [
    PasswordAlgorithm {
        algorithm: PasswordAlgorithm::SHA256,
        parameters: &[],
    },
    PasswordAlgorithm {
        algorithm: PasswordAlgorithm::MD5,
        parameters: &[],
    },
];

/// Most distinct sources whose failed authentications are tracked at once.
const MAX_TRACKED_FAILURES: usize = 65_536;

/// Channels stay reserved this long after they expire (RFC 8656 §12).
const CHANNEL_GRACE: Duration = Duration::from_secs(300);

/// A TURN server: the allocations of one data-plane worker.
#[derive(Debug)]
pub struct TurnServer {
    config: TurnConfig,
    credentials: Arc<Credentials>,
    nonces: Nonces,
    epoch: Instant,
    unix_at_epoch: u64,
    allocations: HashMap<FiveTuple, Allocation>,
    by_relayed: HashMap<SocketAddr, FiveTuple>,
    per_user: HashMap<(String, String), usize>,
    failures: HashMap<IpAddr, (u32, Instant)>,
    indications: u64,
}

impl TurnServer {
    /// A server started at `now`, which is `unix_now` seconds after the Unix epoch (for
    /// ephemeral usernames). `nonce_key` must be random: it signs the nonces.
    pub fn new(
        config: TurnConfig,
        credentials: Arc<Credentials>,
        now: Instant,
        unix_now: u64,
        nonce_key: [u8; 32],
    ) -> Self {
        TurnServer {
            config,
            credentials,
            nonces: Nonces::new(nonce_key),
            epoch: now,
            unix_at_epoch: unix_now,
            allocations: HashMap::new(),
            by_relayed: HashMap::new(),
            per_user: HashMap::new(),
            failures: HashMap::new(),
            indications: u64::from_be_bytes([
                nonce_key[0],
                nonce_key[1],
                nonce_key[2],
                nonce_key[3],
                nonce_key[4],
                nonce_key[5],
                nonce_key[6],
                nonce_key[7],
            ]),
        }
    }

    /// Replaces the credentials (the store changed); existing allocations stay.
    pub fn set_credentials(&mut self, credentials: Arc<Credentials>) {
        self.credentials = credentials;
    }

    /// Live allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether `bytes` is for the TURN server rather than the Binding responder: ChannelData,
    /// or a STUN message of another method than Binding.
    pub fn wants(bytes: &[u8]) -> bool {
        if crate::channel_data::is_channel_data(bytes) {
            return true;
        }
        match bytes.get(..2) {
            Some(&[a, b]) if a & 0xC0 == 0 => {
                let t = u16::from_be_bytes([a, b]);
                // Method bits M0-M11 interleaved with the class bits (RFC 8489 §5).
                let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
                method != Method::BINDING.0
            }
            _ => false,
        }
    }

    /// Handles what a client sent to `local` from `remote` over `transport`: a STUN request
    /// or indication, or one ChannelData message.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_client(
        &mut self,
        now: Instant,
        transport: TurnTransport,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Handled {
        let five = FiveTuple {
            client: remote,
            server: local,
            transport,
        };
        if crate::channel_data::is_channel_data(bytes) {
            return self.client_channel_data(now, five, bytes, out);
        }
        let Ok(msg) = Message::parse(bytes) else {
            return Handled::Dropped(Dropped::Malformed);
        };
        if !msg.has_magic_cookie() {
            return Handled::Dropped(Dropped::NotTurn);
        }
        if msg.raw_attribute(attr_type::FINGERPRINT).is_some() && msg.check_fingerprint().is_err() {
            return Handled::Dropped(Dropped::NotTurn);
        }
        match msg.class() {
            Class::Request => match self.request(now, five, &msg, relay, out) {
                Ok(h) | Err(h) => h,
            },
            Class::Indication if msg.method() == Method::SEND => self.send(now, five, &msg, out),
            _ => Handled::Dropped(Dropped::Unexpected),
        }
    }

    /// Handles a datagram from `peer` on the relay socket `relayed`: relayed to the client as
    /// ChannelData if a channel is bound to the peer, else as a Data indication.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        peer: SocketAddr,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Handled {
        let Some(five) = self.by_relayed.get(&relayed).copied() else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        let Some(a) = self.allocations.get(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        if !a.has_permission(peer.ip(), now) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        let len = match a.peer_channel(peer, now) {
            Some(ch) => ChannelData::write(ch, bytes, five.transport.is_stream(), out),
            None => {
                self.indications = self.indications.wrapping_add(1);
                data_indication(self.indications, peer, bytes, out)
            }
        };
        match len {
            Some(len) => Handled::Relayed(Transmit {
                len,
                from: five.server,
                to: five.client,
            }),
            None => Handled::Dropped(Dropped::NoRoom),
        }
    }

    /// Removes expired allocations (releasing their relay ports), permissions and channels,
    /// and forgets old authentication failures. Call about once a second.
    pub fn expire(&mut self, now: Instant, relay: &mut dyn RelayPorts) -> usize {
        let dead: Vec<FiveTuple> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(f, _)| *f)
            .collect();
        for five in &dead {
            self.remove(five, relay);
        }
        for a in self.allocations.values_mut() {
            a.expire(now, CHANNEL_GRACE);
        }
        self.failures
            .retain(|_, (_, since)| now.duration_since(*since) < Duration::from_secs(60));
        dead.len()
    }

    fn remove(&mut self, five: &FiveTuple, relay: &mut dyn RelayPorts) {
        if let Some(a) = self.allocations.remove(five) {
            self.by_relayed.remove(&a.relayed);
            let user = (a.realm, a.username);
            if let Some(n) = self.per_user.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    self.per_user.remove(&user);
                }
            }
            relay.release(a.relayed);
        }
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.unix_at_epoch + now.saturating_duration_since(self.epoch).as_secs()
    }

    // ------------------------------------------------------------------------------------
    // Requests

    fn request(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        // RFC 8489 §6.3.1: unknown comprehension-required attributes first.
        if msg.unknown_comprehension_required(KNOWN).next().is_some() {
            let mut unknown = [0u16; 8];
            let mut n = 0;
            for t in msg.unknown_comprehension_required(KNOWN).take(8) {
                unknown[n] = t;
                n += 1;
            }
            return Err(self.error(
                msg,
                five,
                Refusal::UnknownAttribute,
                None,
                &unknown[..n],
                out,
            ));
        }
        let method = msg.method();
        if ![
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
        ]
        .contains(&method)
        {
            return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out));
        }
        let auth = self.authenticate(now, five, msg, out)?;
        if method == Method::ALLOCATE {
            return self.allocate(now, five, msg, &auth, relay, out);
        }
        // Every other request acts on the 5-tuple's allocation, by its owner (RFC 8656 §7.3).
        match self.allocations.get(&five) {
            Some(a) if a.expires > now => {
                if a.username != auth.username || a.realm != auth.realm {
                    return Err(self.error(
                        msg,
                        five,
                        Refusal::WrongCredentials,
                        Some(&auth),
                        &[],
                        out,
                    ));
                }
            }
            _ => {
                return Err(self.error(
                    msg,
                    five,
                    Refusal::AllocationMismatch,
                    Some(&auth),
                    &[],
                    out,
                ));
            }
        }
        match method {
            Method::REFRESH => self.refresh(now, five, msg, &auth, relay, out),
            Method::CREATE_PERMISSION => self.create_permission(now, five, msg, &auth, out),
            _ => self.channel_bind(now, five, msg, &auth, out),
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        if let Some(a) = self.allocations.get(&five).filter(|a| a.expires > now) {
            // A retransmitted Allocate gets its success again; anything else is a mismatch.
            if a.allocate_transaction == msg.transaction_id() && a.username == auth.username {
                let relayed = a.relayed;
                let left = a.expires.saturating_duration_since(now).as_secs();
                return self.allocate_success(msg, five, auth, relayed, left, None, out);
            }
            return Err(self.error(msg, five, Refusal::AllocationMismatch, Some(auth), &[], out));
        }
        let refuse = |s: &Self, r, out: &mut [u8]| Err(s.error(msg, five, r, Some(auth), &[], out));
        match msg.attribute::<RequestedTransport>() {
            None | Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
            Some(Ok(RequestedTransport(17))) => {}
            Some(Ok(_)) => return refuse(self, Refusal::UnsupportedTransport, out),
        }
        let family = match msg.attribute::<RequestedAddressFamily>() {
            None => AddressFamily::V4,
            Some(Ok(RequestedAddressFamily(f))) => f,
            Some(Err(_)) => return refuse(self, Refusal::AddressFamilyNotSupported, out),
        };
        let even_port = match msg.attribute::<EvenPort>() {
            None => None,
            Some(Ok(EvenPort { reserve })) => Some(reserve),
            Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
        };
        let token = match msg.attribute::<ReservationToken>() {
            None => None,
            Some(Ok(ReservationToken(t))) => Some(t),
            Some(Err(_)) => return refuse(self, Refusal::BadRequest, out),
        };
        // RFC 8656 §7.2: a token names the address, so neither a family nor EVEN-PORT may
        // come with it.
        if token.is_some()
            && (even_port.is_some()
                || msg
                    .raw_attribute(attr_type::REQUESTED_ADDRESS_FAMILY)
                    .is_some())
        {
            return refuse(self, Refusal::BadRequest, out);
        }
        let user = (auth.realm.clone(), auth.username.clone());
        let held = self.per_user.get(&user).copied().unwrap_or(0);
        if self.allocations.len() >= self.config.max_allocations
            || (self.config.max_allocations_per_user > 0
                && held >= self.config.max_allocations_per_user)
        {
            return refuse(self, Refusal::QuotaReached, out);
        }
        let got = match (token, even_port) {
            (Some(t), _) => relay
                .claim(t)
                .map(|a| (a, None))
                .ok_or(RelayError::Exhausted),
            (None, Some(true)) => relay.allocate_reserving(family).map(|(a, t)| (a, Some(t))),
            (None, even) => relay.allocate(family, even.is_some()).map(|a| (a, None)),
        };
        let (relayed, reserved) = match got {
            Ok(r) => r,
            Err(RelayError::Exhausted) => return refuse(self, Refusal::InsufficientCapacity, out),
            Err(RelayError::Quota) => return refuse(self, Refusal::QuotaReached, out),
            Err(RelayError::FamilyUnsupported) => {
                return refuse(self, Refusal::AddressFamilyNotSupported, out);
            }
        };
        let lifetime = self.lifetime(msg);
        self.allocations.insert(
            five,
            Allocation::new(
                relayed,
                auth.realm.clone(),
                auth.username.clone(),
                now + lifetime,
                msg.transaction_id(),
            ),
        );
        self.by_relayed.insert(relayed, five);
        *self.per_user.entry(user).or_insert(0) += 1;
        let r = self.allocate_success(msg, five, auth, relayed, lifetime.as_secs(), reserved, out);
        if r.is_err() {
            // The answer did not fit: keep no allocation nobody was told about.
            self.remove(&five, relay);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate_success(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        relayed: SocketAddr,
        lifetime: u64,
        reserved: Option<[u8; 8]>,
        out: &mut [u8],
    ) -> Step<Handled> {
        let lifetime = u32::try_from(lifetime).unwrap_or(u32::MAX);
        self.success(msg, five, auth, out, |b| {
            b.add(&XorRelayedAddress(relayed)).ok()?;
            b.add(&Lifetime(lifetime)).ok()?;
            if let Some(t) = reserved {
                b.add(&ReservationToken(t)).ok()?;
            }
            b.add(&XorMappedAddress(five.client)).ok()
        })
    }

    /// RFC 8656 §7.2: min(requested, max), but never below the default.
    fn lifetime(&self, msg: &Message<'_>) -> Duration {
        let asked = match msg.attribute::<Lifetime>() {
            Some(Ok(Lifetime(s))) => Duration::from_secs(u64::from(s)),
            _ => self.config.default_lifetime,
        };
        asked
            .min(self.config.max_lifetime)
            .max(self.config.default_lifetime)
    }

    fn refresh(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        relay: &mut dyn RelayPorts,
        out: &mut [u8],
    ) -> Step<Handled> {
        // RFC 8656 §7.3: a family that differs from the allocation's is a 443.
        if let Some(Ok(RequestedAddressFamily(f))) = msg.attribute::<RequestedAddressFamily>() {
            let relayed_v4 = self
                .allocations
                .get(&five)
                .is_some_and(|a| a.relayed.is_ipv4());
            if (f == AddressFamily::V4) != relayed_v4 {
                return Err(self.error(
                    msg,
                    five,
                    Refusal::PeerAddressFamilyMismatch,
                    Some(auth),
                    &[],
                    out,
                ));
            }
        }
        let lifetime = match msg.attribute::<Lifetime>() {
            Some(Ok(Lifetime(0))) => Duration::ZERO,
            _ => self.lifetime(msg),
        };
        if lifetime.is_zero() {
            self.remove(&five, relay);
        } else if let Some(a) = self.allocations.get_mut(&five) {
            a.expires = now + lifetime;
        }
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        self.success(msg, five, auth, out, |b| b.add(&Lifetime(secs)).ok())
    }

    fn create_permission(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        // Check every XOR-PEER-ADDRESS before installing any (RFC 8656 §10.2).
        let mut peers = [IpAddr::from([0u8; 4]); 16];
        let mut n = 0;
        for a in msg
            .attributes()
            .filter(|a| a.typ == attr_type::XOR_PEER_ADDRESS)
        {
            let Ok(XorPeerAddress(peer)) =
                <XorPeerAddress as farside_stun::Attribute>::decode(a.value, &msg.header())
            else {
                return Err(self.error(msg, five, Refusal::BadRequest, Some(auth), &[], out));
            };
            if n == peers.len() {
                return Err(self.error(
                    msg,
                    five,
                    Refusal::InsufficientCapacity,
                    Some(auth),
                    &[],
                    out,
                ));
            }
            self.check_peer(msg, five, auth, peer, out)?;
            peers[n] = peer.ip();
            n += 1;
        }
        if n == 0 {
            return Err(self.error(msg, five, Refusal::BadRequest, Some(auth), &[], out));
        }
        let max = self.config.max_permissions;
        let until = now + self.config.permission_lifetime;
        let Some(a) = self.allocations.get_mut(&five) else {
            return Err(Handled::Dropped(Dropped::NoAllocation));
        };
        if !a.permissions_fit(&peers[..n], max, now) {
            return Err(self.error(
                msg,
                five,
                Refusal::InsufficientCapacity,
                Some(auth),
                &[],
                out,
            ));
        }
        for p in &peers[..n] {
            a.permit(*p, until);
        }
        self.success(msg, five, auth, out, |_| Some(()))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        auth: &Auth,
        out: &mut [u8],
    ) -> Step<Handled> {
        let (Some(Ok(ChannelNumber(channel))), Some(Ok(XorPeerAddress(peer)))) = (
            msg.attribute::<ChannelNumber>(),
            msg.attribute::<XorPeerAddress>(),
        ) else {
            return Err(self.error(msg, five, Refusal::BadRequest, Some(auth), &[], out));
        };
        if !crate::channel_data::CHANNELS.contains(&channel) {
            return Err(self.error(msg, five, Refusal::BadRequest, Some(auth), &[], out));
        }
        self.check_peer(msg, five, auth, peer, out)?;
        let (max, until) = (self.config.max_channels, now + self.config.channel_lifetime);
        let permission_until = now + self.config.permission_lifetime;
        let Some(a) = self.allocations.get_mut(&five) else {
            return Err(Handled::Dropped(Dropped::NoAllocation));
        };
        match a.bind_channel(channel, peer, until, max, now) {
            Ok(()) => {}
            Err(ChannelConflict::TooManyChannels) => {
                return Err(self.error(
                    msg,
                    five,
                    Refusal::InsufficientCapacity,
                    Some(auth),
                    &[],
                    out,
                ));
            }
            Err(_) => return Err(self.error(msg, five, Refusal::BadRequest, Some(auth), &[], out)),
        }
        // A channel binding also installs or refreshes the peer's permission (RFC 8656 §11.2).
        a.permit(peer.ip(), permission_until);
        self.success(msg, five, auth, out, |_| Some(()))
    }

    /// The peer's family must be the relayed address's (443), and policy must allow it (403).
    fn check_peer(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        peer: SocketAddr,
        out: &mut [u8],
    ) -> Step<()> {
        let relayed_v4 = self
            .allocations
            .get(&five)
            .is_some_and(|a| a.relayed.is_ipv4());
        let peer_v4 = match peer.ip() {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some() && relayed_v4,
        };
        if peer_v4 != relayed_v4 {
            return Err(self.error(
                msg,
                five,
                Refusal::PeerAddressFamilyMismatch,
                Some(auth),
                &[],
                out,
            ));
        }
        if !self.config.peer_policy.permits(peer.ip()) {
            return Err(self.error(msg, five, Refusal::PeerForbidden, Some(auth), &[], out));
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // Data

    fn send(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Handled {
        let Some(a) = self.allocations.get(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        let (Some(Ok(XorPeerAddress(peer))), Some(Ok(Data(data)))) =
            (msg.attribute::<XorPeerAddress>(), msg.attribute::<Data>())
        else {
            return Handled::Dropped(Dropped::Malformed);
        };
        // Indications are never answered: no permission, no relay (RFC 8656 §10.2).
        if !a.has_permission(peer.ip(), now) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        relay_to_peer(a.relayed, peer, data, out)
    }

    fn client_channel_data(
        &mut self,
        now: Instant,
        five: FiveTuple,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Handled {
        let Some(cd) = ChannelData::parse(bytes) else {
            return Handled::Dropped(Dropped::Malformed);
        };
        let Some(a) = self.allocations.get(&five).filter(|a| a.expires > now) else {
            return Handled::Dropped(Dropped::NoAllocation);
        };
        let Some(peer) = a.channel_peer(cd.channel, now) else {
            return Handled::Dropped(Dropped::NoChannel);
        };
        if !a.has_permission(peer.ip(), now) {
            return Handled::Dropped(Dropped::NoPermission);
        }
        relay_to_peer(a.relayed, peer, cd.data, out)
    }

    // ------------------------------------------------------------------------------------
    // Authentication (RFC 8489 §9.2.4)

    fn authenticate(
        &mut self,
        now: Instant,
        five: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Step<Auth> {
        let source = five.client.ip();
        if let Some((n, _)) = self.failures.get(&source)
            && *n >= self.config.auth_failures_per_minute
        {
            return Err(Handled::Dropped(Dropped::AuthRateLimited));
        }
        let sha256_integrity = msg
            .raw_attribute(attr_type::MESSAGE_INTEGRITY_SHA256)
            .is_some();
        if !sha256_integrity && msg.raw_attribute(attr_type::MESSAGE_INTEGRITY).is_none() {
            return Err(self.challenge(now, msg, five, Refusal::Challenge, out));
        }
        let (Some(Ok(Realm(realm))), Some(Ok(Nonce(nonce)))) =
            (msg.attribute::<Realm>(), msg.attribute::<Nonce>())
        else {
            return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out));
        };
        let fresh = self.nonces.made_at(nonce.as_bytes()).is_some_and(|made| {
            let age = self.secs(now).saturating_sub(made);
            age <= self.config.nonce_lifetime.as_secs()
        });
        if !fresh {
            return Err(self.challenge(now, msg, five, Refusal::StaleNonce, out));
        }
        if realm != self.config.realm {
            return Err(self.challenge(now, msg, five, Refusal::WrongPassword, out));
        }
        // RFC 8489 §9.2.4: with the password-algorithms bit in our nonce, a client that sends
        // one of PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM must send both, the list exactly
        // as we gave it, and choose from it. A client that sends neither uses MD5.
        let algorithm = match (
            msg.raw_attribute(attr_type::PASSWORD_ALGORITHMS),
            msg.attribute::<PasswordAlgorithm>(),
        ) {
            (None, None) => PasswordAlgorithm::MD5,
            (Some(list), Some(Ok(chosen)))
                if list.value == offered_algorithms()
                    && ALGORITHMS.iter().any(|a| a.algorithm == chosen.algorithm)
                    && chosen.parameters.is_empty() =>
            {
                chosen.algorithm
            }
            _ => return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out)),
        };
        let username = match (msg.attribute::<Username>(), msg.attribute::<Userhash>()) {
            (Some(Ok(Username(u))), _) => u.to_owned(),
            (None, Some(Ok(Userhash(h)))) => match self.credentials.by_userhash(&h) {
                Some((r, u)) if *r == realm => u.clone(),
                _ => return Err(self.fail(now, msg, five, out)),
            },
            _ => return Err(self.error(msg, five, Refusal::BadRequest, None, &[], out)),
        };
        let verify = |key: &[u8]| {
            if sha256_integrity {
                msg.verify_integrity_sha256(key).is_ok()
            } else {
                msg.verify_integrity(key).is_ok()
            }
        };
        let key_for = |password: &str| -> Option<Key> {
            match algorithm {
                PasswordAlgorithm::SHA256 => {
                    farside_stun::long_term_key_sha256(&username, realm, password)
                        .ok()
                        .map(Key::Sha256)
                }
                _ => farside_stun::long_term_key_md5(&username, realm, password)
                    .ok()
                    .map(Key::Md5),
            }
        };
        let mut found = None;
        if let Some(expiry) =
            rest_expiry(&username).filter(|_| !self.credentials.secrets().is_empty())
        {
            if expiry >= self.unix_now(now) {
                found = self
                    .credentials
                    .secrets()
                    .iter()
                    .filter_map(|s| key_for(&rest_password(s, &username)))
                    .find(|k| verify(k.bytes()));
            }
        } else if let Some(keys) = self.credentials.user(realm, &username) {
            let key = match algorithm {
                PasswordAlgorithm::SHA256 => Key::Sha256(keys.sha256),
                _ => Key::Md5(keys.md5),
            };
            found = verify(key.bytes()).then_some(key);
        }
        match found {
            Some(key) => Ok(Auth {
                realm: realm.to_owned(),
                username,
                key,
                sha256_integrity,
            }),
            None => Err(self.fail(now, msg, five, out)),
        }
    }

    /// A failed authentication: counted against the source, answered 401.
    fn fail(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        five: FiveTuple,
        out: &mut [u8],
    ) -> Handled {
        let source = five.client.ip();
        if self.failures.len() < MAX_TRACKED_FAILURES || self.failures.contains_key(&source) {
            let e = self.failures.entry(source).or_insert((0, now));
            e.0 += 1;
        }
        self.challenge(now, msg, five, Refusal::WrongPassword, out)
    }

    fn secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    // ------------------------------------------------------------------------------------
    // Responses

    /// 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS.
    fn challenge(
        &self,
        now: Instant,
        msg: &Message<'_>,
        five: FiveTuple,
        refusal: Refusal,
        out: &mut [u8],
    ) -> Handled {
        let nonce = self.nonces.make(self.secs(now));
        let nonce = std::str::from_utf8(&nonce).unwrap_or_default();
        let len = (|| {
            let mut b = MessageBuilder::response_to(out, msg, Class::ErrorResponse).ok()?;
            b.add(&ErrorCode {
                code: refusal.code(),
                reason: refusal.reason(),
            })
            .ok()?;
            b.add(&Realm(&self.config.realm)).ok()?;
            b.add(&Nonce(nonce)).ok()?;
            b.add(&PasswordAlgorithms::new(&ALGORITHMS)).ok()?;
            self.finish(b, None).ok()
        })();
        match len {
            Some(len) => Handled::Refused(
                Transmit {
                    len,
                    from: five.server,
                    to: five.client,
                },
                refusal,
            ),
            None => Handled::Dropped(Dropped::NoRoom),
        }
    }

    /// An error response; with integrity once the request was authenticated.
    fn error(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        refusal: Refusal,
        auth: Option<&Auth>,
        unknown: &[u16],
        out: &mut [u8],
    ) -> Handled {
        let len = (|| {
            let mut b = MessageBuilder::response_to(out, msg, Class::ErrorResponse).ok()?;
            b.add(&ErrorCode {
                code: refusal.code(),
                reason: refusal.reason(),
            })
            .ok()?;
            if !unknown.is_empty() {
                let mut value = [0u8; 16];
                for (c, t) in value.chunks_exact_mut(2).zip(unknown) {
                    c.copy_from_slice(&t.to_be_bytes());
                }
                b.add_raw(attr_type::UNKNOWN_ATTRIBUTES, &value[..unknown.len() * 2])
                    .ok()?;
            }
            self.finish(b, auth).ok()
        })();
        match len {
            Some(len) => Handled::Refused(
                Transmit {
                    len,
                    from: five.server,
                    to: five.client,
                },
                refusal,
            ),
            None => Handled::Dropped(Dropped::NoRoom),
        }
    }

    fn success(
        &self,
        msg: &Message<'_>,
        five: FiveTuple,
        auth: &Auth,
        out: &mut [u8],
        body: impl FnOnce(&mut MessageBuilder<'_>) -> Option<()>,
    ) -> Step<Handled> {
        let len = (|| {
            let mut b = MessageBuilder::response_to(out, msg, Class::SuccessResponse).ok()?;
            body(&mut b)?;
            self.finish(b, Some(auth)).ok()
        })();
        match len {
            Some(len) => Ok(Handled::Answered(Transmit {
                len,
                from: five.server,
                to: five.client,
            })),
            None => Err(Handled::Dropped(Dropped::NoRoom)),
        }
    }

    /// SOFTWARE, integrity (the variant the request used), FINGERPRINT.
    fn finish(&self, mut b: MessageBuilder<'_>, auth: Option<&Auth>) -> Result<usize, ()> {
        if let Some(s) = &self.config.software {
            b.add(&Software(s)).map_err(|_| ())?;
        }
        if let Some(a) = auth {
            if a.sha256_integrity {
                b.add_message_integrity_sha256(a.key.bytes())
                    .map_err(|_| ())?;
            } else {
                b.add_message_integrity(a.key.bytes()).map_err(|_| ())?;
            }
        }
        b.add_fingerprint().map_err(|_| ())?;
        Ok(b.finish())
    }
}

/// The wire value of our PASSWORD-ALGORITHMS, for comparing with what a client echoes.
fn offered_algorithms() -> &'static [u8] {
    // SHA-256 (2), no parameters; MD5 (1), no parameters.
    &[0, 2, 0, 0, 0, 1, 0, 0]
}

fn relay_to_peer(relayed: SocketAddr, peer: SocketAddr, data: &[u8], out: &mut [u8]) -> Handled {
    match out.get_mut(..data.len()) {
        Some(buf) => {
            buf.copy_from_slice(data);
            Handled::Relayed(Transmit {
                len: data.len(),
                from: relayed,
                to: peer,
            })
        }
        None => Handled::Dropped(Dropped::NoRoom),
    }
}

/// A Data indication carrying `data` from `peer` (RFC 8656 §11.3); no integrity.
fn data_indication(counter: u64, peer: SocketAddr, data: &[u8], out: &mut [u8]) -> Option<usize> {
    // Indications need a fresh transaction id, not a secret one (RFC 8489 §5): a counter
    // that starts at a random value.
    let mut tid = [0u8; 12];
    tid[4..].copy_from_slice(&counter.to_be_bytes());
    let header = farside_stun::Header::new(farside_stun::TransactionId(tid));
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(Class::Indication, Method::DATA),
        header,
    )
    .ok()?;
    b.add(&XorPeerAddress(peer)).ok()?;
    b.add(&Data(data)).ok()?;
    Some(b.finish())
}
