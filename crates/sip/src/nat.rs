//! NAT detection and the edits that make a NATed phone reachable (RFC 3261 §18.2.1, RFC 3581,
//! and what Kamailio's nathelper does): which tests fired for a message, `received` and
//! `rport` on the top Via, and a Contact rewritten to, or tagged with, where the message
//! really came from.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use crate::edit::Edits;
use crate::header::HeaderName;
use crate::message::Message;
use crate::scan::{Short, push_number, trim};
use crate::uri::{host_text, ip_literal};
use crate::via::Via;

/// The transport a message arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Its name in a Via's sent-protocol (RFC 3261 §20.42, RFC 7118 §5.1).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The transport a Via's sent-protocol or a URI's `transport` parameter names, in any case.
    pub fn from_name(name: &[u8]) -> Option<Transport> {
        Self::ALL
            .into_iter()
            .find(|t| name.eq_ignore_ascii_case(t.via_name().as_bytes()))
    }

    /// Whether it runs over a connection (a response goes back over the request's, RFC 3261
    /// §18.2.2, and keep-alives are CRLF pings, RFC 5626 §3.5.1).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// The number nathelper's `alias` parameter uses for it.
    fn alias_number(self) -> u8 {
        match self {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Tls => 3,
            Transport::Ws => 5,
            Transport::Wss => 6,
        }
    }
}

/// The NAT tests that fired, as the bits of Kamailio's `nat_uac_test` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NatTests(pub u16);

impl NatTests {
    /// 1: a Contact URI names a private address.
    pub const PRIVATE_CONTACT: u16 = 1;
    /// 2: the top Via's host is not the source address.
    pub const VIA_RECEIVED: u16 = 2;
    /// 4: the top Via names a private address.
    pub const PRIVATE_VIA: u16 = 4;
    /// 8: the SDP body's connection address is private.
    pub const PRIVATE_SDP: u16 = 8;
    /// 16: the top Via's port is not the source port.
    pub const VIA_PORT: u16 = 16;
    /// 32: the source address is private.
    pub const PRIVATE_SOURCE: u16 = 32;
    /// 64: it came over a WebSocket.
    pub const WEBSOCKET: u16 = 64;
    /// 128: a Contact URI's port is not the source port.
    pub const CONTACT_PORT: u16 = 128;
    /// 256 (Farside's own, not Kamailio's): the message looks rewritten by a SIP ALG on its
    /// way ([`crate::alg`]).
    pub const ALG_SUSPECTED: u16 = 256;
    /// Every test, with its name (for counters).
    pub const ALL: [(u16, &'static str); 9] = [
        (Self::PRIVATE_CONTACT, "private_contact"),
        (Self::VIA_RECEIVED, "via_received"),
        (Self::PRIVATE_VIA, "private_via"),
        (Self::PRIVATE_SDP, "private_sdp"),
        (Self::VIA_PORT, "via_port"),
        (Self::PRIVATE_SOURCE, "private_source"),
        (Self::WEBSOCKET, "websocket"),
        (Self::CONTACT_PORT, "contact_port"),
        (Self::ALG_SUSPECTED, "alg_suspected"),
    ];

    /// The names of the tests that fired, comma-separated ("none" when none did).
    pub fn names(self) -> String {
        let fired: Vec<&str> = Self::ALL
            .iter()
            .filter(|(bit, _)| self.any(*bit))
            .map(|(_, name)| *name)
            .collect();
        if fired.is_empty() {
            "none".into()
        } else {
            fired.join(",")
        }
    }

    /// Whether any test in `mask` fired.
    pub fn any(self, mask: u16) -> bool {
        self.0 & mask != 0
    }

    /// Whether the sender looks NATed by the tests Farside uses by default: a private
    /// Contact, Via or source, a Via that is not the source, a WebSocket. (A suspected ALG is
    /// reported, not acted on: a phone on a public address looks the same.)
    pub fn natted(self) -> bool {
        self.any(
            Self::PRIVATE_CONTACT
                | Self::VIA_RECEIVED
                | Self::PRIVATE_VIA
                | Self::VIA_PORT
                | Self::PRIVATE_SOURCE
                | Self::WEBSOCKET,
        )
    }
}

/// Runs every test on `msg`, which came from `source` over `transport`.
pub fn detect(msg: &Message<'_>, source: SocketAddr, transport: Transport) -> NatTests {
    let mut t = 0;
    let via = msg.via();
    let via_ip = ip_literal(via.host());
    let default = default_port(transport);
    for c in msg.contacts() {
        let uri = c.uri();
        if ip_literal(uri.host()).is_some_and(is_private) {
            t |= NatTests::PRIVATE_CONTACT;
        }
        if uri.port().unwrap_or(default) != source.port() {
            t |= NatTests::CONTACT_PORT;
        }
    }
    if via_ip != Some(source.ip()) {
        t |= NatTests::VIA_RECEIVED;
    }
    if via_ip.is_some_and(is_private) {
        t |= NatTests::PRIVATE_VIA;
    }
    if sdp_addresses(msg).any(is_private) {
        t |= NatTests::PRIVATE_SDP;
    }
    if via.port().unwrap_or(default) != source.port() {
        t |= NatTests::VIA_PORT;
    }
    if is_private(source.ip()) {
        t |= NatTests::PRIVATE_SOURCE;
    }
    if matches!(transport, Transport::Ws | Transport::Wss) {
        t |= NatTests::WEBSOCKET;
    }
    NatTests(t)
}

/// RFC 1918 and RFC 6598 IPv4 (as nathelper tests), and IPv6 unique-local addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xFE00) == 0xFC00,
    }
}

/// Adds `received` and `rport` to the top Via (RFC 3261 §18.2.1, RFC 3581 §4), replacing any
/// the sender put there, so that responses go back where the request came from.
pub fn fix_via<'a>(msg: &Message<'a>, source: SocketAddr, edits: &mut Edits<'a>) {
    via_edits(msg.as_bytes(), &msg.via(), source, edits);
}

/// The value of the request's first Via field as [`fix_via`] leaves it: what a server that
/// answers the request itself echoes (its responses go where it came from). Written in one
/// pass, without rewriting the request.
pub fn fixed_top_via(msg: &Message<'_>, source: SocketAddr) -> Option<Vec<u8>> {
    let field = msg.value(crate::header::HeaderName::Via)?;
    let mut out = Vec::with_capacity(field.len() + 64);
    let mut copied = 0;
    let (end, added) = via_fix(field, &msg.via(), source, |range, text| {
        out.extend_from_slice(&field[copied..range.start]);
        out.extend_from_slice(text);
        copied = range.end;
    })?;
    out.extend_from_slice(field.get(copied..end)?);
    out.extend_from_slice(added.as_bytes());
    out.extend_from_slice(&field[end..]);
    Some(out)
}

/// What [`fix_via`] changes in `via`, which lies within `base`: `replace` is called, in order,
/// with the range in `base` of each `received` or `rport` parameter `via` has and its new
/// text; returned are where `via` ends in `base` and the parameters to append there (those it
/// lacked, each with its `;`). `None` when `via` is not within `base`.
fn via_fix(
    base: &[u8],
    via: &Via<'_>,
    source: SocketAddr,
    mut replace: impl FnMut(Range<usize>, &[u8]),
) -> Option<(usize, Short)> {
    let range_of = |part: &[u8]| {
        let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
        (start + part.len() <= base.len()).then(|| start..start + part.len())
    };
    let end = range_of(via.as_bytes())?.end;
    let (received, rport) = via_params(source);
    let (mut have_received, mut have_rport) = (false, false);
    for (name, value) in via.params().iter() {
        let (text, have) = if name.eq_ignore_ascii_case(b"received") {
            (&received, &mut have_received)
        } else if name.eq_ignore_ascii_case(b"rport") {
            (&rport, &mut have_rport)
        } else {
            continue;
        };
        let (Some(n), Some(v)) = (range_of(name), range_of(value.unwrap_or(name))) else {
            continue;
        };
        replace(n.start..v.end, text.as_bytes());
        *have = true;
    }
    // At most ";received=" with an IPv6 address (49) and ";rport=65535" (12): a Short holds it.
    let mut added = Short::new();
    for (have, text) in [(have_received, &received), (have_rport, &rport)] {
        if !have {
            let _ = added.write_str(";");
            let _ = added.write_str(text.as_str());
        }
    }
    Some((end, added))
}

/// `received=IP` and `rport=PORT` for `source`.
fn via_params(source: SocketAddr) -> (Short, Short) {
    let mut received = Short::new();
    let _ = received.write_str("received=");
    match source.ip() {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    let _ = received.write_str(".");
                }
                push_number(&mut received, u64::from(o));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(received, "{v6}");
        }
    }
    let mut rport = Short::new();
    let _ = rport.write_str("rport=");
    push_number(&mut rport, u64::from(source.port()));
    (received, rport)
}

/// The edits of [`fix_via`] to the Via `via`, which lies within `base` (edits are `base`'s).
fn via_edits<'a>(base: &'a [u8], via: &Via<'a>, source: SocketAddr, edits: &mut Edits<'a>) {
    let fixed = via_fix(base, via, source, |range, text| {
        edits.replace(range, text);
    });
    if let Some((end, added)) = fixed
        && added.len() > 0
    {
        edits.insert(end, added.as_bytes());
    }
}

/// Rewrites every Contact URI's host and port to `source` (nathelper's `fix_nated_contact`),
/// for registrars that cannot store where a binding came from.
pub fn rewrite_contacts<'a>(msg: &Message<'a>, source: SocketAddr, edits: &mut Edits<'a>) {
    let text = format!("{}:{}", host_text(source.ip()), source.port());
    for c in msg.contacts() {
        if let Some(r) = hostport_range(msg, c.uri().host()) {
            edits.replace(r, text.as_bytes());
        }
    }
}

/// The address and transport an `alias` parameter in `uri` names (nathelper's
/// `handle_ruri_alias`: a request for an aliased Contact goes there).
pub fn alias_target(uri: &crate::uri::Uri<'_>) -> Option<(SocketAddr, Transport)> {
    let value = uri.params().get("alias").flatten()?;
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('~');
    let (ip, port, proto) = (parts.next()?, parts.next()?, parts.next()?);
    let ip = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = port.parse().ok()?;
    let proto: u8 = proto.parse().ok()?;
    let transport = Transport::ALL
        .into_iter()
        .find(|t| t.alias_number() == proto)?;
    (parts.next().is_none()).then_some((SocketAddr::new(ip, port), transport))
}

/// Adds `;alias=ip~port~transport` to every Contact URI (nathelper's `add_contact_alias`):
/// the Contact stays as the phone sent it, and the registrar or proxy that later routes to it
/// reads where to send from the alias.
pub fn alias_contacts<'a>(
    msg: &Message<'a>,
    source: SocketAddr,
    transport: Transport,
    edits: &mut Edits<'a>,
) {
    let value = format!(
        "{}~{}~{}",
        host_text(source.ip()),
        source.port(),
        transport.alias_number()
    );
    let alias = format!(";alias={value}");
    for c in msg.contacts() {
        let uri = c.uri();
        let Some(r) = msg.range_of(uri.as_bytes()) else {
            continue;
        };
        // An alias the phone (or anyone) wrote is replaced: only the server's may steer routing.
        if let Some(Some(old)) = uri.params().get("alias")
            && let Some(o) = msg.range_of(old)
        {
            edits.replace(o, value.as_bytes());
            continue;
        }
        // Parameters go before `?headers`.
        let end = match uri.headers().and_then(|h| msg.range_of(h)) {
            Some(h) => h.start.saturating_sub(1),
            None => r.end,
        };
        if c.is_bracketed() {
            edits.insert(end, alias.as_bytes());
        } else {
            // An unbracketed URI's parameters are the header's: brackets keep the alias the URI's.
            edits.insert(r.start, b"<");
            edits.insert(end, format!("{alias}>").as_bytes());
        }
    }
}

/// The range of `host[:port]` in the message, given the host slice a URI returned.
fn hostport_range(msg: &Message<'_>, host: &[u8]) -> Option<std::ops::Range<usize>> {
    let r = msg.range_of(host)?;
    let buf = msg.as_bytes();
    let mut end = r.end;
    if buf.get(end) == Some(&b':') {
        end += 1;
        while buf.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Some(r.start..end)
}

/// The port a transport implies when a URI or Via names none (RFC 3261 §19.1.2, RFC 7118).
fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp | Transport::Tcp => 5060,
        Transport::Tls => 5061,
        Transport::Ws => 80,
        Transport::Wss => 443,
    }
}

/// The connection addresses (`c=IN IP4 a.b.c.d`) of an SDP body.
fn sdp_addresses<'a>(msg: &Message<'a>) -> impl Iterator<Item = IpAddr> + 'a {
    let sdp = msg
        .value(HeaderName::ContentType)
        .is_some_and(|t| trim(t).to_ascii_lowercase().starts_with(b"application/sdp"));
    let body: &'a [u8] = if sdp { msg.body() } else { &[] };
    body.split(|&b| b == b'\n').filter_map(|line| {
        let line = trim(line);
        let rest = line
            .strip_prefix(b"c=IN IP4 ")
            .or_else(|| line.strip_prefix(b"c=IN IP6 "))?;
        let addr = rest.split(|&b| b == b'/' || b == b' ').next()?;
        ip_literal(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.org>;tag=1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: reg1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.168.1.20:5060;ob>;expires=3600, sip:alice@192.168.1.20\r\n\
Content-Length: 0\r\n\r\n";

    fn source() -> SocketAddr {
        "203.0.113.7:40123".parse().expect("address")
    }

    #[test]
    fn detection_fires_what_a_natted_phone_shows() {
        let m = Message::parse(REGISTER).expect("parses");
        let t = detect(&m, source(), Transport::Udp);
        for bit in [
            NatTests::PRIVATE_CONTACT,
            NatTests::VIA_RECEIVED,
            NatTests::PRIVATE_VIA,
            NatTests::VIA_PORT,
            NatTests::CONTACT_PORT,
        ] {
            assert!(t.any(bit), "{bit}");
        }
        assert!(!t.any(NatTests::PRIVATE_SOURCE | NatTests::WEBSOCKET | NatTests::PRIVATE_SDP));
        assert!(t.natted());
        // The same phone with a public address, seen where it says it is: nothing fires.
        let public = String::from_utf8_lossy(REGISTER).replace("192.168.1.20", "203.0.113.7");
        let public = public.replace(":5060", ":40123");
        let m = Message::parse(public.as_bytes()).expect("parses");
        assert_eq!(
            detect(&m, source(), Transport::Udp),
            NatTests(NatTests::CONTACT_PORT)
        );
        assert!(is_private("100.64.1.1".parse().expect("ip")));
        assert!(is_private("fd00::1".parse().expect("ip")));
        assert!(!is_private("100.128.0.1".parse().expect("ip")));
    }

    #[test]
    fn via_gets_received_and_rport_and_the_rest_is_untouched() {
        let m = Message::parse(REGISTER).expect("parses");
        let mut e = Edits::new(REGISTER);
        fix_via(&m, source(), &mut e);
        let out = e.apply().expect("edits");
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(text.contains(
            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport=40123;received=203.0.113.7\r\n"
        ), "{text}");
        let orig = String::from_utf8_lossy(REGISTER);
        assert_eq!(
            text.replace(";rport=40123;received=203.0.113.7", ";rport"),
            orig,
            "nothing else changed"
        );
        let m2 = Message::parse(&out).expect("still parses");
        assert_eq!(m2.via().received(), Some(&b"203.0.113.7"[..]));
        // Stale values the phone put there are replaced, not repeated.
        let mut e = Edits::new(&out);
        fix_via(&m2, "198.51.100.1:7".parse().expect("address"), &mut e);
        let again = String::from_utf8(e.apply().expect("edits")).expect("ascii");
        assert!(
            again.contains(";rport=7;received=198.51.100.1\r\n"),
            "{again}"
        );
    }

    #[test]
    fn the_fixed_top_via_is_what_fix_via_writes() {
        for via in [
            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport",
            "Via: SIP/2.0/UDP 192.168.1.20:5060;rport=1;branch=z9hG4bK1;received=10.0.0.1",
            "Via: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2",
            "v: SIP/2.0/TCP [2001:db8::1]:5070 ; branch=z9hG4bK3 ; RPORT",
        ] {
            let req = format!(
                "OPTIONS sip:a@b SIP/2.0\r\n{via}\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK9\r\n\
f: <sip:c@d>;tag=x\r\nt: <sip:a@b>\r\ni: abc\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let m = Message::parse(req.as_bytes()).expect("parses");
            for src in [source(), "[2001:db8::7]:40000".parse().expect("addr")] {
                let mut edits = Edits::new(m.as_bytes());
                fix_via(&m, src, &mut edits);
                let fixed = edits.apply().expect("edits");
                let f = Message::parse(&fixed).expect("parses");
                let want = f.value(crate::header::HeaderName::Via).expect("via");
                let got = fixed_top_via(&m, src).expect("a Via");
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "{via}"
                );
            }
        }
        // The longest parameters there are, both added, fit the stack text they are written in.
        let m = Message::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:c@d>;tag=x\r\n\
t: <sip:a@b>\r\ni: abc\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("parses");
        let far: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .expect("addr");
        assert_eq!(
            fixed_top_via(&m, far).as_deref(),
            Some(
                &b"SIP/2.0/UDP h;branch=z9hG4bK1;received=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff;rport=65535"[..]
            )
        );
    }

    #[test]
    fn contacts_rewritten_or_aliased() {
        let m = Message::parse(REGISTER).expect("parses");
        let mut e = Edits::new(REGISTER);
        rewrite_contacts(&m, source(), &mut e);
        let text = String::from_utf8(e.apply().expect("edits")).expect("ascii");
        assert!(text.contains(
            "Contact: <sip:alice@203.0.113.7:40123;ob>;expires=3600, sip:alice@203.0.113.7:40123\r\n"
        ), "{text}");
        let mut e = Edits::new(REGISTER);
        alias_contacts(&m, source(), Transport::Tcp, &mut e);
        let out = e.apply().expect("edits");
        let text = String::from_utf8(out.clone()).expect("ascii");
        assert!(text.contains(
            "Contact: <sip:alice@192.168.1.20:5060;ob;alias=203.0.113.7~40123~2>;expires=3600, <sip:alice@192.168.1.20;alias=203.0.113.7~40123~2>\r\n"
        ), "{text}");
        let m = Message::parse(&out).expect("still parses");
        assert!(m.contacts().all(|c| c.uri().params().has("alias")));
        // A forged alias is replaced, not kept.
        let mut e = Edits::new(&out);
        alias_contacts(
            &m,
            "198.51.100.9:7".parse().expect("address"),
            Transport::Udp,
            &mut e,
        );
        let again = String::from_utf8(e.apply().expect("edits")).expect("ascii");
        assert_eq!(
            again.matches("alias=198.51.100.9~7~1").count(),
            2,
            "{again}"
        );
        assert!(!again.contains("203.0.113.7~40123"), "{again}");
    }
}
