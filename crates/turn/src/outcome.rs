//! What the TURN core returns, and what it asks of the shell.

use std::net::SocketAddr;

use farside_stun::attributes::{AddressFamily, ConnectionId, ErrorCode};

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
    pub(crate) fn is_stream(self) -> bool {
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
    /// Makes every datagram relayed from `relayed` leave with the DF bit (DONT-FRAGMENT,
    /// RFC 8656 §14.8); `false` if that cannot be done, and the request gets 420.
    fn dont_fragment(&mut self, relayed: SocketAddr) -> bool {
        let _ = relayed;
        false
    }
    /// A fresh relayed transport address of `family` for a TCP allocation (RFC 6062 §5.1): the
    /// shell listens on it for peers and connects from it. A shell without TCP relaying keeps
    /// this default, and such Allocates get 442.
    fn allocate_tcp(&mut self, family: AddressFamily) -> Result<SocketAddr, RelayError> {
        let _ = family;
        Err(RelayError::TransportUnsupported)
    }
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
    /// This shell relays no TCP (answered 442).
    TransportUnsupported,
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
    /// 300: the server is draining; the client is to allocate at the ALTERNATE-SERVER it names
    /// (RFC 8656 §6.2, RFC 8489 §10).
    TryAlternate,
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
    /// 446: a TCP connection to that peer exists or is being made (RFC 6062 §5.2).
    ConnectionAlreadyExists,
    /// 447: the TCP connection to the peer failed or timed out (RFC 6062 §5.2).
    ConnectionTimeoutOrFailure,
    /// 486: the user's or the server's allocation quota is full.
    QuotaReached,
    /// 508: no relay port, or too many permissions or channels.
    InsufficientCapacity,
}

impl Refusal {
    /// Every refusal, for metrics.
    pub const ALL: [Refusal; 16] = [
        Refusal::TryAlternate,
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
        Refusal::ConnectionAlreadyExists,
        Refusal::ConnectionTimeoutOrFailure,
        Refusal::QuotaReached,
        Refusal::InsufficientCapacity,
    ];

    /// The STUN error code.
    pub fn code(self) -> u16 {
        match self {
            Refusal::TryAlternate => ErrorCode::TRY_ALTERNATE,
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
            Refusal::ConnectionAlreadyExists => ErrorCode::CONNECTION_ALREADY_EXISTS,
            Refusal::ConnectionTimeoutOrFailure => ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE,
            Refusal::QuotaReached => ErrorCode::ALLOCATION_QUOTA_REACHED,
            Refusal::InsufficientCapacity => ErrorCode::INSUFFICIENT_CAPACITY,
        }
    }

    /// A short stable name (a metrics label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TryAlternate => "try_alternate",
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
            Refusal::ConnectionAlreadyExists => "connection_already_exists",
            Refusal::ConnectionTimeoutOrFailure => "connection_timeout_or_failure",
            Refusal::QuotaReached => "quota_reached",
            Refusal::InsufficientCapacity => "insufficient_capacity",
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::TryAlternate => "Try Alternate",
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
            Refusal::ConnectionAlreadyExists => "Connection Already Exists",
            Refusal::ConnectionTimeoutOrFailure => "Connection Timeout or Failure",
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
    /// A refusal of an unauthenticated request over UDP, over the source's budget of
    /// refusals per second (a forged source must not draw a flood).
    RefusalRateLimited,
    /// The output buffer could not hold the message.
    NoRoom,
    /// Over the allocation's bandwidth cap.
    OverBandwidth,
    /// A Send indication asked for DONT-FRAGMENT, which the relay could not set.
    NoDontFragment,
    /// A Send indication or ChannelData for a TCP allocation, which relays streams only.
    TcpAllocation,
    /// A peer's TCP connection refused: no permission, policy, a second connection from the
    /// same peer, or the allocation's connection limit (RFC 6062 §5.3).
    PeerConnectionRefused,
}

impl Dropped {
    /// Every reason, for metrics.
    pub const ALL: [Dropped; 13] = [
        Dropped::NotTurn,
        Dropped::Malformed,
        Dropped::NoAllocation,
        Dropped::NoPermission,
        Dropped::NoChannel,
        Dropped::Unexpected,
        Dropped::AuthRateLimited,
        Dropped::RefusalRateLimited,
        Dropped::NoRoom,
        Dropped::OverBandwidth,
        Dropped::NoDontFragment,
        Dropped::TcpAllocation,
        Dropped::PeerConnectionRefused,
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
            Dropped::RefusalRateLimited => "refusal_rate_limited",
            Dropped::NoRoom => "no_room",
            Dropped::OverBandwidth => "over_bandwidth",
            Dropped::NoDontFragment => "no_dont_fragment",
            Dropped::TcpAllocation => "tcp_allocation",
            Dropped::PeerConnectionRefused => "peer_connection_refused",
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
    /// A Connect request (RFC 6062 §5.2): the shell opens a TCP connection from `relayed` to
    /// `peer` and reports how it went with
    /// [`TurnServer::peer_connected`](crate::TurnServer::peer_connected), which answers.
    Connect {
        /// The connection's identifier.
        id: ConnectionId,
        /// The allocation's relayed address: the connection's local end.
        relayed: SocketAddr,
        /// The peer.
        peer: SocketAddr,
    },
    /// A ConnectionBind succeeded (RFC 6062 §5.4): send this response on the connection it
    /// came from, which from then on carries only the bytes of peer connection `id`.
    Bound(Transmit, ConnectionId),
}

/// Something the server decided on its own (a timer, an allocation going away), for the shell
/// to carry out; see [`TurnServer::take_notices`](crate::TurnServer::take_notices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Close the peer connection `id` and the client data connection bound to it.
    Close(ConnectionId),
    /// Send `bytes` to a client over its control connection (`from` is the server's side).
    Send {
        /// The server's client-facing address.
        from: SocketAddr,
        /// The client.
        to: SocketAddr,
        /// The whole message.
        bytes: Vec<u8>,
    },
}
