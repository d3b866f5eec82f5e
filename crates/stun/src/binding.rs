//! The Binding responder: what a STUN server answers to one request (RFC 8489 §6.3, RFC 3489
//! §8.2, RFC 5780 §6).
//!
//! It is stateless and sans-IO: one request's bytes and addresses in, one response's bytes and
//! addresses out (or a reason to drop). It never allocates, so the I/O shell can call it once
//! per datagram on the hot path.

use std::net::{IpAddr, SocketAddr};

use farside_time::Timestamp;

use crate::attributes::{
    ChangeRequest, ChangedAddress, ErrorCode, MappedAddress, OtherAddress, Padding, ResponseOrigin,
    ResponsePort, SourceAddress, XorMappedAddress,
};
pub use crate::drop_reason::DropReason;
use crate::partner::{Forwarded, Incoming, PartnerMessage, PartnerWorker, attr as partner_attr};
use crate::{Class, HEADER_LEN, MAGIC_COOKIE, Message, MessageBuilder, Method, attr_type};

/// Most attribute types listed in one UNKNOWN-ATTRIBUTES (each costs the answer 2 bytes and
/// the request at least 4), so an attribute-stuffed request cannot buy a large 420.
const MAX_UNKNOWN_LISTED: usize = 16;

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the response may leave from another of the server's sockets (CHANGE-REQUEST).
    Udp,
    /// TCP (or TLS): the response goes back on the same connection.
    Tcp,
}

/// The second address and port of an RFC 5780 server. With it the server owns four
/// transport addresses: {primary, alternate} address × {primary, alternate} port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlternateAddress {
    /// The primary address (the one clients are told about, e.g. in DNS).
    pub primary_ip: IpAddr,
    /// The primary port.
    pub primary_port: u16,
    /// The second IP address (same family as `primary_ip`).
    pub alternate_ip: IpAddr,
    /// The second port.
    pub alternate_port: u16,
}

impl AlternateAddress {
    /// Does `local` belong to this server's four addresses? Returns (alternate ip?, alternate port?).
    fn position(&self, local: SocketAddr) -> Option<(bool, bool)> {
        let alt_ip = if local.ip() == self.primary_ip {
            false
        } else if local.ip() == self.alternate_ip {
            true
        } else {
            return None;
        };
        let alt_port = if local.port() == self.primary_port {
            false
        } else if local.port() == self.alternate_port {
            true
        } else {
            return None;
        };
        Some((alt_ip, alt_port))
    }

    /// The four transport addresses a server needs sockets on, primary first (RFC 5780 §6).
    pub fn all(&self) -> [SocketAddr; 4] {
        [
            self.address(false, false),
            self.address(true, false),
            self.address(false, true),
            self.address(true, true),
        ]
    }

    /// One of the four: with the alternate IP and/or the alternate port.
    pub fn address(&self, alt_ip: bool, alt_port: bool) -> SocketAddr {
        let ip = if alt_ip {
            self.alternate_ip
        } else {
            self.primary_ip
        };
        let port = if alt_port {
            self.alternate_port
        } else {
            self.primary_port
        };
        SocketAddr::new(ip, port)
    }
}

/// How the responder behaves; fixed for the life of a listener.
#[derive(Debug, Clone, Default)]
pub struct BindingConfig {
    /// RFC 5780 behaviour discovery: present only when the server has a second address.
    /// Without it, CHANGE-REQUEST with a flag set, RESPONSE-PORT and PADDING are answered
    /// with 420, and no OTHER-ADDRESS / RESPONSE-ORIGIN / CHANGED-ADDRESS is sent.
    pub alternate: Option<AlternateAddress>,
    /// SOFTWARE attribute for responses. `None` (the default) sends none: it helps attackers
    /// fingerprint the server and makes every response larger.
    pub software: Option<String>,
}

/// The request came from a classic RFC 3489 client (no magic cookie) or a current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// RFC 5389 / RFC 8489: has the magic cookie.
    Rfc5389,
    /// RFC 3489 "classic STUN".
    Rfc3489,
}

/// What was sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// A Binding success response.
    Success,
    /// A Binding error response with this code (400 or 420).
    Error(u16),
}

/// A response to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Bytes of the response written at the start of the output buffer.
    pub len: usize,
    /// The server's own address to send from. Over UDP it may differ from the address the
    /// request arrived on (CHANGE-REQUEST); over TCP it is always the connection's.
    pub from: SocketAddr,
    /// Where to send it: the request's source, or its port replaced by RESPONSE-PORT.
    pub to: SocketAddr,
    /// Success or error.
    pub kind: ResponseKind,
    /// Who asked.
    pub client: ClientKind,
    /// The request asked for another source address (CHANGE-REQUEST with a flag set).
    pub changed: bool,
    /// Answered on a partner server's behalf (see [`crate::partner`]).
    pub forwarded: bool,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send `out[..len]` as described.
    Respond(Response),
    /// Send nothing.
    Drop(DropReason),
    /// Partner mode: send `out[..len]` to a partner, which answers the client (change IP).
    Forward(PartnerMessage),
    /// Partner mode: a verified heartbeat from this partner; nothing to send.
    PartnerHello(IpAddr),
}

/// One received message, as the I/O shell saw it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// UDP or TCP.
    pub transport: Transport,
    /// The server's address it arrived on.
    pub local: SocketAddr,
    /// The client's address as seen by the server: the mapped address.
    pub remote: SocketAddr,
    /// The whole datagram (UDP) or one whole framed message (TCP).
    pub bytes: &'a [u8],
}

/// A stateless Binding responder.
#[derive(Debug, Clone, Default)]
pub struct BindingServer {
    config: BindingConfig,
}

impl BindingServer {
    /// A responder with `config`.
    pub fn new(config: BindingConfig) -> Self {
        BindingServer { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &BindingConfig {
        &self.config
    }

    /// Answers one message, writing the response into `out` (which should hold at least
    /// 548 bytes, the RFC 8489 §6.1 minimum path MTU a response is sized for).
    pub fn handle(&self, rx: Received<'_>, out: &mut [u8]) -> Outcome {
        self.handle_at(rx, None, out)
    }

    /// [`handle`](Self::handle) for a server in partner mode: `partners` is this worker's
    /// partner state and the time. Change-IP requests become
    /// [`Outcome::Forward`]s and partner messages are verified and answered.
    pub fn handle_at(
        &self,
        rx: Received<'_>,
        partners: Option<(&mut PartnerWorker, Timestamp)>,
        out: &mut [u8],
    ) -> Outcome {
        let bytes = rx.bytes;
        if bytes.len() < HEADER_LEN {
            return Outcome::Drop(DropReason::TooShort);
        }
        // The two most significant bits of every STUN message are zero (RFC 8489 §5); this
        // also separates STUN from RTP, DTLS and ChannelData on shared ports.
        if bytes[0] & 0xC0 != 0 {
            return Outcome::Drop(DropReason::NotStun);
        }
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if declared % 4 != 0 || HEADER_LEN + declared != bytes.len() {
            return Outcome::Drop(DropReason::BadLength);
        }
        let Ok(msg) = Message::parse(bytes) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let client = if msg.has_magic_cookie() {
            ClientKind::Rfc5389
        } else {
            ClientKind::Rfc3489
        };
        if client == ClientKind::Rfc5389
            && msg.raw_attribute(attr_type::FINGERPRINT).is_some()
            && msg.check_fingerprint().is_err()
        {
            return Outcome::Drop(DropReason::FingerprintMismatch);
        }
        match msg.class() {
            Class::Request => {}
            Class::Indication => {
                return match partners {
                    Some((p, now))
                        if rx.transport == Transport::Udp
                            && msg.method() == Method::BINDING
                            && msg.raw_attribute(partner_attr::PARTNER_TIMESTAMP).is_some() =>
                    {
                        match p.receive(&msg, rx.local, rx.remote, now) {
                            Ok(Incoming::Hello(ip)) => Outcome::PartnerHello(ip),
                            Ok(Incoming::Forward(f)) => self.answer_forwarded(f, rx.local, out),
                            Err(reason) => Outcome::Drop(reason),
                        }
                    }
                    _ => Outcome::Drop(DropReason::Indication),
                };
            }
            Class::SuccessResponse | Class::ErrorResponse => {
                return Outcome::Drop(DropReason::NotRequest);
            }
        }
        if msg.method() != Method::BINDING {
            return Outcome::Drop(DropReason::UnsupportedMethod);
        }
        match self.answer(&msg, client, rx, partners, out) {
            Some(outcome) => outcome,
            None => Outcome::Drop(DropReason::NoRoom),
        }
    }

    fn answer(
        &self,
        msg: &Message<'_>,
        client: ClientKind,
        rx: Received<'_>,
        partners: Option<(&mut PartnerWorker, Timestamp)>,
        out: &mut [u8],
    ) -> Option<Outcome> {
        // RFC 5780 applies on the UDP sockets only; `arrived` says which one. In partner
        // mode the alternate IP is a partner's, chosen per client.
        let alternate = match (self.config.alternate, &partners) {
            (Some(mut alt), Some((p, now))) => {
                alt.alternate_ip = p.other_partner(rx.remote, *now);
                Some(alt)
            }
            (alt, _) => alt,
        };
        let (rfc5780, arrived) = match alternate {
            Some(alt) if rx.transport == Transport::Udp => match alt.position(rx.local) {
                Some(pos) => (Some(alt), pos),
                None => (None, (false, false)),
            },
            _ => (None, (false, false)),
        };

        // RFC 8489 §6.3.1: unknown comprehension-required attributes get a 420 listing them.
        let known: &[u16] = if rfc5780.is_some() {
            KNOWN_WITH_RFC5780
        } else {
            KNOWN_BASIC
        };
        let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
        let mut n_unknown = 0;
        for typ in msg.unknown_comprehension_required(known) {
            if n_unknown < MAX_UNKNOWN_LISTED {
                unknown[n_unknown] = typ;
                n_unknown += 1;
            }
        }

        let reply = |kind, len, from, to, changed| Response {
            len,
            from,
            to,
            kind,
            client,
            changed,
            forwarded: false,
        };
        let error = |code: u16, reason: &str, extra: &[u16], out: &mut [u8]| {
            self.error_response(msg, code, reason, extra, out)
                .map(|len| {
                    Outcome::Respond(reply(
                        ResponseKind::Error(code),
                        len,
                        rx.local,
                        rx.remote,
                        false,
                    ))
                })
        };

        // CHANGE-REQUEST is known everywhere (classic clients send it with both flags clear
        // in their first test) but a flag can only be honoured by an RFC 5780 server over UDP.
        let change = match msg.attribute::<ChangeRequest>() {
            None => ChangeRequest {
                change_ip: false,
                change_port: false,
            },
            Some(Ok(c)) => c,
            Some(Err(_)) => return error(400, "Bad CHANGE-REQUEST", &[], out),
        };
        let wants_change = change.change_ip || change.change_port;
        if wants_change && rfc5780.is_none() {
            if rx.transport == Transport::Tcp {
                return error(400, "CHANGE-REQUEST over TCP", &[], out);
            }
            if n_unknown < MAX_UNKNOWN_LISTED {
                unknown[n_unknown] = attr_type::CHANGE_REQUEST;
                n_unknown += 1;
            }
        }
        if n_unknown > 0 {
            return error(420, "Unknown Attribute", &unknown[..n_unknown], out);
        }

        let mut from = rx.local;
        let mut to = rx.remote;
        let mut other = None;
        if let Some(alt) = rfc5780 {
            from = alt.address(arrived.0 ^ change.change_ip, arrived.1 ^ change.change_port);
            // RFC 5780 §6.1: the address differing in both IP and port from the one the
            // request arrived on.
            other = Some(alt.address(!arrived.0, !arrived.1));
            match msg.attribute::<ResponsePort>() {
                None => {}
                // Port 0 cannot be sent to: a malformed request, not a send failure.
                Some(Ok(ResponsePort(0))) => return error(400, "Bad RESPONSE-PORT", &[], out),
                Some(Ok(ResponsePort(port))) => to.set_port(port),
                Some(Err(_)) => return error(400, "Bad RESPONSE-PORT", &[], out),
            }
            if let (Some((p, now)), Some(other)) = (partners, other)
                && from.ip() != rx.local.ip()
            {
                // Change IP: only a partner has another IP.
                let alternate_port = from.port() == alt.alternate_port;
                return Some(
                    match p.forward(msg, rx.remote, other, alternate_port, now, out) {
                        Ok(m) => Outcome::Forward(m),
                        Err(reason) => Outcome::Drop(reason),
                    },
                );
            }
        }
        self.success(msg, client, rx.remote, from, other, out)
            .map(|len| Outcome::Respond(reply(ResponseKind::Success, len, from, to, wants_change)))
    }

    /// Answers a client on a partner's behalf: from this server's own address (the port the
    /// partner chose), with the mapped and other addresses the partner saw and gave.
    fn answer_forwarded(&self, f: Forwarded<'_>, local: SocketAddr, out: &mut [u8]) -> Outcome {
        let Some(alt) = self.config.alternate else {
            return Outcome::Drop(DropReason::UnsupportedMethod);
        };
        // The request was checked by the partner; it must still parse here.
        let Ok(msg) = Message::parse(f.request) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        if msg.class() != Class::Request || msg.method() != Method::BINDING {
            return Outcome::Drop(DropReason::Malformed);
        }
        let client = if msg.has_magic_cookie() {
            ClientKind::Rfc5389
        } else {
            ClientKind::Rfc3489
        };
        let port = if f.alternate_port {
            alt.alternate_port
        } else {
            alt.primary_port
        };
        let from = SocketAddr::new(local.ip(), port);
        let mut to = f.client;
        if let Some(Ok(ResponsePort(p))) = msg.attribute::<ResponsePort>()
            && p != 0
        {
            to.set_port(p);
        }
        match self.success(&msg, client, f.client, from, Some(f.other), out) {
            Some(len) => Outcome::Respond(Response {
                len,
                from,
                to,
                kind: ResponseKind::Success,
                client,
                changed: true,
                forwarded: true,
            }),
            None => Outcome::Drop(DropReason::NoRoom),
        }
    }

    /// A success response to `msg`: `mapped` is the client's reflexive address, `from` where
    /// it leaves from, `other` the RFC 5780 alternate (none without RFC 5780).
    fn success(
        &self,
        msg: &Message<'_>,
        client: ClientKind,
        mapped: SocketAddr,
        from: SocketAddr,
        other: Option<SocketAddr>,
        out: &mut [u8],
    ) -> Option<usize> {
        let mut b = MessageBuilder::response_to(out, msg, Class::SuccessResponse).ok()?;
        match client {
            ClientKind::Rfc5389 => b.add(&XorMappedAddress(mapped)).ok()?,
            ClientKind::Rfc3489 => {
                // RFC 3489 §11.2: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.
                b.add(&MappedAddress(mapped)).ok()?;
                // A wildcard socket whose real address the shell could not learn has no
                // true SOURCE-ADDRESS to give; better none than 0.0.0.0.
                if !from.ip().is_unspecified() {
                    b.add(&SourceAddress(from)).ok()?;
                    // "Where responses would have come from with both change flags set". A
                    // server with one address names itself, as RFC 3489 §11.1 wants the
                    // attribute present and coturn does; the client's test I(2) then finds
                    // the same mapping.
                    b.add(&ChangedAddress(other.unwrap_or(from))).ok()?;
                }
            }
        }
        if let (Some(other), ClientKind::Rfc5389) = (other, client) {
            b.add(&OtherAddress(other)).ok()?;
            b.add(&ResponseOrigin(from)).ok()?;
        }
        // RFC 5780 §7.6: echo PADDING so the response is as large as the request (the
        // fragmentation test); never larger, so no amplification.
        if let (Some(_), Some(Ok(Padding(pad)))) = (other, msg.attribute::<Padding>()) {
            let trailer = self.software_len(client) + fingerprint_len(msg);
            let room = msg.len().saturating_sub(b.len() + 4 + trailer);
            let pad_len = pad.len().min(room) & !3;
            if let Some(echo) = pad.get(..pad_len).filter(|p| !p.is_empty()) {
                b.add(&Padding(echo)).ok()?;
            }
        }
        self.finish(b, msg)
    }

    /// Bytes the SOFTWARE attribute adds to a response to `client`.
    fn software_len(&self, client: ClientKind) -> usize {
        match (&self.config.software, client) {
            (Some(s), ClientKind::Rfc5389) => 4 + s.len().div_ceil(4) * 4,
            _ => 0,
        }
    }

    fn error_response(
        &self,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
        unknown: &[u16],
        out: &mut [u8],
    ) -> Option<usize> {
        let classic = !msg.has_magic_cookie();
        let mut b = MessageBuilder::response_to(out, msg, Class::ErrorResponse).ok()?;
        // RFC 3489 §11.2.9: the reason phrase is a multiple of 4 bytes, padded with spaces;
        // classic parsers step over attributes by their exact length, without padding.
        let mut padded = [b' '; 64];
        let reason = match reason.get(..reason.len().min(60)) {
            Some(r) if classic => {
                padded[..r.len()].copy_from_slice(r.as_bytes());
                std::str::from_utf8(&padded[..r.len().div_ceil(4) * 4]).ok()?
            }
            _ => reason,
        };
        b.add(&ErrorCode { code, reason }).ok()?;
        if !unknown.is_empty() {
            let mut value = [0u8; (MAX_UNKNOWN_LISTED + 1) * 2];
            for (chunk, typ) in value.chunks_exact_mut(2).zip(unknown) {
                chunk.copy_from_slice(&typ.to_be_bytes());
            }
            let mut len = unknown.len() * 2;
            if classic && unknown.len() % 2 == 1 {
                // RFC 3489 §11.2.10: an odd count repeats one type to fill 32 bits.
                value.copy_within(len - 2..len, len);
                len += 2;
            }
            b.add_raw(attr_type::UNKNOWN_ATTRIBUTES, &value[..len])
                .ok()?;
        }
        self.finish(b, msg)
    }

    fn finish(&self, mut b: MessageBuilder<'_>, request: &Message<'_>) -> Option<usize> {
        // RFC 3489 has no SOFTWARE attribute, and classic parsers choke on its padding.
        if let (Some(software), true) = (&self.config.software, request.has_magic_cookie()) {
            b.add(&crate::attributes::Software(software)).ok()?;
        }
        // A client that sent FINGERPRINT (ICE agents, RFC 8445 §7.3) gets one back.
        if request.has_magic_cookie() && request.raw_attribute(attr_type::FINGERPRINT).is_some() {
            b.add_fingerprint().ok()?;
        }
        Some(b.finish())
    }
}

fn fingerprint_len(msg: &Message<'_>) -> usize {
    if msg.raw_attribute(attr_type::FINGERPRINT).is_some() {
        8
    } else {
        0
    }
}

/// Comprehension-required attributes this server understands (and may ignore: it
/// authenticates no Binding request, and never honours RFC 3489's RESPONSE-ADDRESS, which
/// would make it an open reflector). The last two, RFC 5780's, are known only with an
/// alternate address.
const KNOWN_WITH_RFC5780: &[u16] = &[
    attr_type::MAPPED_ADDRESS,
    attr_type::RESPONSE_ADDRESS,
    attr_type::CHANGE_REQUEST,
    attr_type::USERNAME,
    attr_type::PASSWORD,
    attr_type::MESSAGE_INTEGRITY,
    attr_type::REALM,
    attr_type::NONCE,
    attr_type::MESSAGE_INTEGRITY_SHA256,
    attr_type::PASSWORD_ALGORITHM,
    attr_type::USERHASH,
    attr_type::XOR_MAPPED_ADDRESS,
    attr_type::PRIORITY,
    attr_type::USE_CANDIDATE,
    attr_type::PADDING,
    attr_type::RESPONSE_PORT,
];

/// The same without RFC 5780's RESPONSE-PORT and PADDING.
const KNOWN_BASIC: &[u16] = KNOWN_WITH_RFC5780.split_at(KNOWN_WITH_RFC5780.len() - 2).0;

/// The magic cookie as bytes, for tests and callers building requests.
pub const MAGIC_COOKIE_BYTES: [u8; 4] = MAGIC_COOKIE.to_be_bytes();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Attribute, Software, UnknownAttributes};
    use crate::{Header, MessageType, TransactionId};

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const CLASSIC_COOKIE: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn alternate() -> AlternateAddress {
        AlternateAddress {
            primary_ip: "192.0.2.1".parse().expect("ip"),
            primary_port: 3478,
            alternate_ip: "192.0.2.2".parse().expect("ip"),
            alternate_port: 3479,
        }
    }

    fn rfc5780_server() -> BindingServer {
        BindingServer::new(BindingConfig {
            alternate: Some(alternate()),
            software: None,
        })
    }

    /// Builds a request with the given cookie, class, method and attributes.
    fn request_with(
        cookie: [u8; 4],
        class: Class,
        method: Method,
        build: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let header = Header {
            cookie,
            transaction_id: TransactionId(TID),
        };
        let mut b = MessageBuilder::new(&mut buf, MessageType { class, method }, header)
            .expect("room for header");
        build(&mut b);
        let n = b.finish();
        buf.truncate(n);
        buf
    }

    fn binding(build: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
        request_with(MAGIC_COOKIE_BYTES, Class::Request, Method::BINDING, build)
    }

    fn handle(
        server: &BindingServer,
        transport: Transport,
        local: &str,
        remote: &str,
        req: &[u8],
    ) -> (Outcome, Vec<u8>) {
        let mut out = vec![0u8; 2048];
        let outcome = server.handle(
            Received {
                transport,
                local: addr(local),
                remote: addr(remote),
                bytes: req,
            },
            &mut out,
        );
        let len = match outcome {
            Outcome::Respond(r) => r.len,
            _ => 0,
        };
        out.truncate(len);
        (outcome, out)
    }

    /// A UDP request from the usual client to the usual primary address.
    fn udp(server: &BindingServer, req: &[u8]) -> (Outcome, Vec<u8>) {
        handle(
            server,
            Transport::Udp,
            "192.0.2.1:3478",
            "198.51.100.7:40000",
            req,
        )
    }

    fn respond(outcome: Outcome) -> Response {
        match outcome {
            Outcome::Respond(r) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn attr_types(msg: &Message<'_>) -> Vec<u16> {
        msg.attributes().map(|a| a.typ).collect()
    }

    #[test]
    fn modern_request_gets_only_xor_mapped_address() {
        let server = BindingServer::default();
        let req = binding(|_| {});
        let (outcome, out) = udp(&server, &req);
        let r = respond(outcome);
        assert_eq!(r.kind, ResponseKind::Success);
        assert_eq!(
            (r.from, r.to),
            (addr("192.0.2.1:3478"), addr("198.51.100.7:40000"))
        );
        assert!(!r.changed);
        // 20-byte header + one 12-byte XOR-MAPPED-ADDRESS: amplification 32/20 = 1.6.
        assert_eq!(out.len(), 32);
        let msg = Message::parse(&out).expect("response parses");
        assert_eq!(msg.class(), Class::SuccessResponse);
        assert_eq!(msg.method(), Method::BINDING);
        assert_eq!(msg.transaction_id().0, TID);
        assert!(msg.has_magic_cookie());
        assert_eq!(attr_types(&msg), vec![attr_type::XOR_MAPPED_ADDRESS]);
        let xma = msg
            .attribute::<XorMappedAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(xma.0, addr("198.51.100.7:40000"));
    }

    #[test]
    fn ipv6_client_gets_its_ipv6_address() {
        let server = BindingServer::default();
        let req = binding(|_| {});
        let (outcome, out) = handle(
            &server,
            Transport::Udp,
            "[2001:db8::1]:3478",
            "[2001:db8::77]:5060",
            &req,
        );
        respond(outcome);
        assert_eq!(out.len(), 44);
        let msg = Message::parse(&out).expect("parses");
        let xma = msg
            .attribute::<XorMappedAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(xma.0, addr("[2001:db8::77]:5060"));
    }

    #[test]
    fn classic_client_gets_rfc3489_attributes_and_its_128_bit_id_back() {
        let server = rfc5780_server();
        let req = request_with(CLASSIC_COOKIE, Class::Request, Method::BINDING, |_| {});
        let (outcome, out) = udp(&server, &req);
        let r = respond(outcome);
        assert_eq!(r.client, ClientKind::Rfc3489);
        let msg = Message::parse(&out).expect("parses");
        assert_eq!(msg.cookie(), CLASSIC_COOKIE);
        assert_eq!(msg.transaction_id().0, TID);
        assert_eq!(
            attr_types(&msg),
            vec![
                attr_type::MAPPED_ADDRESS,
                attr_type::SOURCE_ADDRESS,
                attr_type::CHANGED_ADDRESS
            ]
        );
        let mapped = msg
            .attribute::<MappedAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(mapped.0, addr("198.51.100.7:40000"));
        let source = msg
            .attribute::<SourceAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(source.0, addr("192.0.2.1:3478"));
        let changed = msg
            .attribute::<ChangedAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(changed.0, addr("192.0.2.2:3479"));
    }

    #[test]
    fn classic_client_without_rfc5780_gets_the_servers_own_address_as_changed_address() {
        let server = BindingServer::default();
        let req = request_with(CLASSIC_COOKIE, Class::Request, Method::BINDING, |_| {});
        let (outcome, out) = udp(&server, &req);
        respond(outcome);
        let msg = Message::parse(&out).expect("parses");
        assert_eq!(
            attr_types(&msg),
            vec![
                attr_type::MAPPED_ADDRESS,
                attr_type::SOURCE_ADDRESS,
                attr_type::CHANGED_ADDRESS
            ]
        );
        let changed = msg
            .attribute::<ChangedAddress>()
            .expect("present")
            .expect("valid");
        assert_eq!(changed.0, addr("192.0.2.1:3478"));
    }

    #[test]
    fn a_wildcard_local_address_is_never_reported() {
        let req = request_with(CLASSIC_COOKIE, Class::Request, Method::BINDING, |_| {});
        let (outcome, out) = handle(
            &BindingServer::default(),
            Transport::Udp,
            "0.0.0.0:3478",
            "198.51.100.7:40000",
            &req,
        );
        respond(outcome);
        let msg = Message::parse(&out).expect("parses");
        assert_eq!(attr_types(&msg), vec![attr_type::MAPPED_ADDRESS]);
    }

    #[test]
    fn classic_errors_keep_every_attribute_a_multiple_of_4_and_carry_no_software() {
        let server = BindingServer::new(BindingConfig {
            alternate: None,
            software: Some("farside".into()), // 7 bytes: would need padding
        });
        let req = request_with(CLASSIC_COOKIE, Class::Request, Method::BINDING, |b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: false,
            })
            .expect("room");
        });
        let (outcome, out) = udp(&server, &req);
        assert_eq!(respond(outcome).kind, ResponseKind::Error(420));
        let msg = Message::parse(&out).expect("parses");
        for a in msg.attributes() {
            assert_eq!(
                a.value.len() % 4,
                0,
                "attribute {:#06x} has length {}",
                a.typ,
                a.value.len()
            );
        }
        assert!(msg.raw_attribute(attr_type::SOFTWARE).is_none());
        let code = msg
            .attribute::<ErrorCode>()
            .expect("present")
            .expect("valid");
        assert_eq!(code.reason.trim_end(), "Unknown Attribute");
        let unknown = msg
            .attribute::<UnknownAttributes>()
            .expect("present")
            .expect("valid");
        // RFC 3489 §11.2.10: one unknown type, repeated to fill 32 bits.
        assert_eq!(
            unknown.iter().collect::<Vec<_>>(),
            vec![attr_type::CHANGE_REQUEST; 2]
        );

        // Modern clients get the unpadded phrase, the single type, and SOFTWARE.
        let req = binding(|b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: false,
            })
            .expect("room");
        });
        let (_, out) = udp(&server, &req);
        let msg = Message::parse(&out).expect("parses");
        let code = msg
            .attribute::<ErrorCode>()
            .expect("present")
            .expect("valid");
        assert_eq!(code.reason, "Unknown Attribute");
        let unknown = msg
            .attribute::<UnknownAttributes>()
            .expect("present")
            .expect("valid");
        assert_eq!(
            unknown.iter().collect::<Vec<_>>(),
            vec![attr_type::CHANGE_REQUEST]
        );
        assert!(msg.raw_attribute(attr_type::SOFTWARE).is_some());
    }

    #[test]
    fn response_port_zero_gets_400() {
        let req = binding(|b| {
            b.add(&ResponsePort(0)).expect("room");
        });
        let (outcome, _) = udp(&rfc5780_server(), &req);
        assert_eq!(respond(outcome).kind, ResponseKind::Error(400));
    }

    #[test]
    fn change_request_is_answered_from_the_asked_socket() {
        let server = rfc5780_server();
        let cases = [
            (false, false, "192.0.2.1:3478"),
            (true, false, "192.0.2.2:3478"),
            (false, true, "192.0.2.1:3479"),
            (true, true, "192.0.2.2:3479"),
        ];
        for (change_ip, change_port, expect_from) in cases {
            let req = binding(|b| {
                b.add(&ChangeRequest {
                    change_ip,
                    change_port,
                })
                .expect("room");
            });
            let (outcome, out) = udp(&server, &req);
            let r = respond(outcome);
            assert_eq!(
                r.from,
                addr(expect_from),
                "ip {change_ip} port {change_port}"
            );
            assert_eq!(r.changed, change_ip || change_port);
            let msg = Message::parse(&out).expect("parses");
            let origin = msg
                .attribute::<ResponseOrigin>()
                .expect("present")
                .expect("valid");
            assert_eq!(origin.0, r.from);
            let other = msg
                .attribute::<OtherAddress>()
                .expect("present")
                .expect("valid");
            assert_eq!(other.0, addr("192.0.2.2:3479"));
        }
        // A request that arrived on the alternate socket and asks for a change goes back to
        // the primary ones.
        let req = binding(|b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: true,
            })
            .expect("room");
        });
        let (outcome, _) = handle(
            &server,
            Transport::Udp,
            "192.0.2.2:3479",
            "198.51.100.7:40000",
            &req,
        );
        assert_eq!(respond(outcome).from, addr("192.0.2.1:3478"));
    }

    #[test]
    fn other_and_changed_address_differ_in_both_ip_and_port_from_where_the_request_arrived() {
        let server = rfc5780_server();
        for (local, other) in [
            ("192.0.2.1:3478", "192.0.2.2:3479"),
            ("192.0.2.2:3479", "192.0.2.1:3478"),
            ("192.0.2.2:3478", "192.0.2.1:3479"),
        ] {
            let req = binding(|_| {});
            let (_, out) = handle(&server, Transport::Udp, local, "198.51.100.7:40000", &req);
            let msg = Message::parse(&out).expect("parses");
            let o = msg
                .attribute::<OtherAddress>()
                .expect("present")
                .expect("valid");
            assert_eq!(o.0, addr(other), "request on {local}");

            let req = request_with(CLASSIC_COOKIE, Class::Request, Method::BINDING, |_| {});
            let (_, out) = handle(&server, Transport::Udp, local, "198.51.100.7:40000", &req);
            let msg = Message::parse(&out).expect("parses");
            let c = msg
                .attribute::<ChangedAddress>()
                .expect("present")
                .expect("valid");
            assert_eq!(c.0, addr(other), "classic request on {local}");
        }
    }

    #[test]
    fn change_request_without_rfc5780_gets_420() {
        let server = BindingServer::default();
        let req = binding(|b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: false,
            })
            .expect("room");
        });
        let (outcome, out) = udp(&server, &req);
        assert_eq!(respond(outcome).kind, ResponseKind::Error(420));
        let msg = Message::parse(&out).expect("parses");
        let code = msg
            .attribute::<ErrorCode>()
            .expect("present")
            .expect("valid");
        assert_eq!(code.code, 420);
        let unknown = msg
            .attribute::<UnknownAttributes>()
            .expect("present")
            .expect("valid");
        assert_eq!(
            unknown.iter().collect::<Vec<_>>(),
            vec![attr_type::CHANGE_REQUEST]
        );

        // Both flags clear is a plain Binding (classic clients' first test sends this).
        let req = binding(|b| {
            b.add(&ChangeRequest {
                change_ip: false,
                change_port: false,
            })
            .expect("room");
        });
        let (outcome, _) = udp(&server, &req);
        assert_eq!(respond(outcome).kind, ResponseKind::Success);
    }

    #[test]
    fn change_request_over_tcp_gets_400() {
        let req = binding(|b| {
            b.add(&ChangeRequest {
                change_ip: true,
                change_port: true,
            })
            .expect("room");
        });
        let (outcome, _) = handle(
            &rfc5780_server(),
            Transport::Tcp,
            "192.0.2.1:3478",
            "198.51.100.7:40000",
            &req,
        );
        let r = respond(outcome);
        assert_eq!(r.kind, ResponseKind::Error(400));
        assert_eq!(r.from, addr("192.0.2.1:3478"));
    }

    #[test]
    fn unknown_comprehension_required_attributes_get_420_listing_them() {
        let req = binding(|b| {
            b.add_raw(0x7ff0, &[0; 4]).expect("room");
            b.add_raw(0xc001, &[0; 4]).expect("room"); // comprehension-optional: ignored
            b.add_raw(0x0031, &[]).expect("room");
        });
        let (outcome, out) = handle(
            &BindingServer::default(),
            Transport::Udp,
            "192.0.2.1:3478",
            "198.51.100.7:1",
            &req,
        );
        assert_eq!(respond(outcome).kind, ResponseKind::Error(420));
        let msg = Message::parse(&out).expect("parses");
        let unknown = msg
            .attribute::<UnknownAttributes>()
            .expect("present")
            .expect("valid");
        assert_eq!(unknown.iter().collect::<Vec<_>>(), vec![0x7ff0, 0x0031]);
        assert!(out.len() <= req.len() + 20, "a 420 must not amplify much");
    }

    #[test]
    fn rfc5780_attributes_are_unknown_without_an_alternate_address() {
        for typ in [attr_type::RESPONSE_PORT, attr_type::PADDING] {
            let req = binding(|b| {
                b.add_raw(typ, &[0x12, 0x34, 0, 0]).expect("room");
            });
            let (outcome, _) = handle(
                &BindingServer::default(),
                Transport::Udp,
                "192.0.2.1:3478",
                "198.51.100.7:1",
                &req,
            );
            assert_eq!(
                respond(outcome).kind,
                ResponseKind::Error(420),
                "type {typ:#06x}"
            );
        }
    }

    #[test]
    fn response_port_redirects_to_the_same_ip() {
        let req = binding(|b| {
            b.add(&ResponsePort(5555)).expect("room");
        });
        let (outcome, _) = udp(&rfc5780_server(), &req);
        assert_eq!(respond(outcome).to, addr("198.51.100.7:5555"));
    }

    #[test]
    fn padding_is_echoed_but_never_makes_the_response_larger_than_the_request() {
        // turnutils_stunclient's fragmentation test sends 1500 bytes of PADDING.
        let pad: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        for software in [None, Some("farside 0.1".to_string())] {
            let server = BindingServer::new(BindingConfig {
                alternate: Some(alternate()),
                software: software.clone(),
            });
            for fingerprint in [false, true] {
                let req = binding(|b| {
                    b.add(&Padding(&pad)).expect("room");
                    if fingerprint {
                        b.add_fingerprint().expect("room");
                    }
                });
                let (outcome, out) = udp(&server, &req);
                respond(outcome);
                let what = format!("software {software:?}, fingerprint {fingerprint}");
                assert!(
                    out.len() <= req.len(),
                    "{what}: {} > {}",
                    out.len(),
                    req.len()
                );
                assert!(
                    out.len() + 8 > req.len(),
                    "{what}: padding not echoed in full: {}",
                    out.len()
                );
                let msg = Message::parse(&out).expect("parses");
                let Padding(echo) = msg.attribute::<Padding>().expect("present").expect("valid");
                assert_eq!(echo, &pad[..echo.len()], "{what}");
            }
        }
    }

    #[test]
    fn malformed_but_parseable_attribute_values_get_400() {
        let req = binding(|b| {
            b.add_raw(attr_type::CHANGE_REQUEST, &[0, 0]).expect("room");
        });
        let (outcome, out) = udp(&rfc5780_server(), &req);
        assert_eq!(respond(outcome).kind, ResponseKind::Error(400));
        let msg = Message::parse(&out).expect("parses");
        assert_eq!(msg.class(), Class::ErrorResponse);
    }

    #[test]
    fn software_only_when_configured_and_fingerprint_when_asked() {
        let server = BindingServer::new(BindingConfig {
            alternate: None,
            software: Some("farside test".into()),
        });
        let req = binding(|b| b.add_fingerprint().expect("room"));
        let (outcome, out) = udp(&server, &req);
        respond(outcome);
        let msg = Message::parse(&out).expect("parses");
        let sw = msg
            .attribute::<Software>()
            .expect("present")
            .expect("valid");
        assert_eq!(sw.0, "farside test");
        assert_eq!(attr_types(&msg).last(), Some(&attr_type::FINGERPRINT));
        msg.check_fingerprint().expect("valid fingerprint");
    }

    #[test]
    fn what_is_not_a_binding_request_is_dropped_with_its_reason() {
        let server = rfc5780_server();
        let ok = binding(|_| {});
        let mut bad_fp = binding(|b| b.add_fingerprint().expect("room"));
        let last = bad_fp.len() - 1;
        bad_fp[last] ^= 1;
        let mut long = ok.clone();
        long.extend_from_slice(&[0; 4]);
        let mut lying_length = ok.clone();
        lying_length[3] = 8;
        let mut not_stun = ok.clone();
        not_stun[0] = 0x80;
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (ok[..19].to_vec(), DropReason::TooShort),
            (not_stun, DropReason::NotStun),
            (long, DropReason::BadLength),
            (lying_length, DropReason::BadLength),
            (
                binding(|b| b.add_raw(0x8000, &[0; 4]).expect("room"))
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| if i == 23 { 40 } else { x }) // attribute length past the end
                    .collect(),
                DropReason::Malformed,
            ),
            (bad_fp, DropReason::FingerprintMismatch),
            (
                request_with(
                    MAGIC_COOKIE_BYTES,
                    Class::SuccessResponse,
                    Method::BINDING,
                    |_| {},
                ),
                DropReason::NotRequest,
            ),
            (
                request_with(
                    MAGIC_COOKIE_BYTES,
                    Class::Indication,
                    Method::BINDING,
                    |_| {},
                ),
                DropReason::Indication,
            ),
            (
                request_with(MAGIC_COOKIE_BYTES, Class::Request, Method::ALLOCATE, |_| {}),
                DropReason::UnsupportedMethod,
            ),
        ];
        for (bytes, reason) in cases {
            let (outcome, _) = udp(&server, &bytes);
            assert_eq!(outcome, Outcome::Drop(reason), "{bytes:02x?}");
        }
    }

    #[test]
    fn software_attribute_type_matches_codec() {
        assert_eq!(<Software<'_> as Attribute<'_>>::TYPE, attr_type::SOFTWARE);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_an_outcome_and_never_amplify_past_the_classic_bound(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            v6 in proptest::bool::ANY,
        ) {
            let (local, remote) = if v6 {
                ("[2001:db8::1]:3478", "[2001:db8::2]:1")
            } else {
                ("192.0.2.1:3478", "198.51.100.7:1")
            };
            let (outcome, out) = handle(&rfc5780_server(), Transport::Udp, local, remote, &bytes);
            if let Outcome::Respond(r) = outcome {
                proptest::prop_assert_eq!(r.len, out.len());
                proptest::prop_assert!(Message::parse(&out).is_ok());
                // The largest answer to a 20-byte request is a classic one over IPv6 with
                // three 24-byte addresses (92 bytes); padding is bounded by the request.
                proptest::prop_assert!(out.len() <= bytes.len().max(20) + 72);
            }
        }

        #[test]
        fn random_binding_requests_are_answered_with_the_mapped_address(
            port in 1u16..,
            ip in proptest::array::uniform4(proptest::num::u8::ANY),
            tid in proptest::array::uniform12(proptest::num::u8::ANY),
        ) {
            let remote = SocketAddr::from((ip, port));
            let mut req = binding(|_| {});
            req[8..20].copy_from_slice(&tid);
            let mut out = [0u8; 256];
            let outcome = BindingServer::default().handle(
                Received { transport: Transport::Udp, local: addr("192.0.2.1:3478"), remote, bytes: &req },
                &mut out,
            );
            let Outcome::Respond(r) = outcome else { panic!("{outcome:?}") };
            let msg = Message::parse(&out[..r.len]).expect("parses");
            proptest::prop_assert_eq!(msg.transaction_id().0, tid);
            let xma = msg.attribute::<XorMappedAddress>().expect("present").expect("valid");
            proptest::prop_assert_eq!(xma.0, remote);
        }
    }
}
