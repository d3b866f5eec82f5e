//! SIP ALG detection from the server alone: evidence that a middlebox rewrote a phone's message
//! on its way (seed 001: a router's SIP ALG broke registrations and calls).
//!
//! A phone behind NAT cannot know its public address and port unless something told it: a STUN
//! answer's XOR-MAPPED-ADDRESS (RFC 8489 §14.2), or `received` and `rport` in a response
//! (RFC 3581 §4). A SIP ALG writes that address into the top Via and the Contact (and the SDP)
//! as the message passes (netfilter's `nf_nat_sip` does, and so do home routers). So when the
//! first request from a source already names that very source in its top Via, and nothing here
//! had told the source its address, the message was most likely rewritten on its way. What the
//! ALG left alone adds to the evidence: a private address in the Call-ID, the Via branch, the
//! From tag, or the SDP's `o=` or `a=rtcp:` line.
//!
//! What cannot be told apart from the message alone, and why the verdict is "suspected": a
//! phone on a public address without NAT, and one that learned its address from a STUN server
//! other than Farside's, write the same top Via. A phone that learned its address here (a STUN
//! answer on a SIP port or, through [`StunSeen`], on Farside's STUN ports; `received` and
//! `rport` in an earlier answer) is not suspected.
//!
//! The verdict is kept per source address (`ip:port`) in two generations of at most
//! `capacity / 2` each: when the newer fills, the older is dropped whole, so memory is bounded
//! and no packet costs a scan.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::header::HeaderName;
use crate::message::Message;
use crate::nat::{Transport, is_private};
use crate::scan::trim;
use crate::uri::ip_literal;
use farside_time::Timestamp;

/// Which addresses Farside's own STUN service answered lately (on its STUN ports, outside the
/// SIP server): a phone there may have learned its public address honestly. The shell keeps
/// it; tests fake it.
pub trait StunSeen {
    /// Whether a Binding request from `ip` was answered lately, as of `now`.
    fn answered(&self, ip: IpAddr, now: Timestamp) -> bool;
}

/// The SIP ALG suspected for a source, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    /// The source the rewritten message came from (the ALG's public side).
    pub source: SocketAddr,
    /// The evidence, in words ("the top Via names 198.51.100.16:5070, ...; private
    /// 192.168.6.10 left in the Call-ID").
    pub evidence: String,
    /// Whether this is the first message from the source found so (log it once).
    pub first: bool,
}

/// What is known of one source.
#[derive(Debug, Clone)]
enum Seen {
    /// It was told its address, or its first request named a private one: no ALG suspected.
    Clean,
    /// Its first request looked rewritten; the evidence.
    Suspected(String),
}

/// The verdict per source (see the module documentation).
#[derive(Debug)]
pub struct AlgDetector {
    newer: HashMap<SocketAddr, Seen>,
    older: HashMap<SocketAddr, Seen>,
    capacity: usize,
}

impl AlgDetector {
    /// A detector remembering at most `capacity` sources (at least 2).
    pub fn new(capacity: usize) -> Self {
        AlgDetector {
            newer: HashMap::new(),
            older: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    /// `source` was told its address (a STUN answer on a SIP port): what it writes from now on
    /// is its own.
    pub fn told(&mut self, source: SocketAddr) {
        if self.get(source).is_none() {
            self.put(source, Seen::Clean);
        }
    }

    /// Examines a request `msg` from `source` over `transport` at `now`; `stun` says whether
    /// Farside's STUN service answered the source's address lately. Some when an ALG is
    /// suspected for the source (`first` on the first such message).
    pub fn examine(
        &mut self,
        now: Timestamp,
        msg: &Message<'_>,
        source: SocketAddr,
        transport: Transport,
        stun: Option<&dyn StunSeen>,
    ) -> Option<Suspicion> {
        // Browsers' WebSockets write made-up Vias; a private, loopback or link-local source
        // went through no NAT on its way here.
        if matches!(transport, Transport::Ws | Transport::Wss) || !behind_some_nat(source.ip()) {
            return None;
        }
        // A request that passed a proxy carries the proxy's own Via on top, rightly naming it:
        // only a phone's own requests (one Via) are judged.
        if msg.vias().nth(1).is_some() {
            return None;
        }
        if let Some(seen) = self.get(source) {
            return match seen {
                Seen::Clean => None,
                // The source's first evidence, and what this message left private (an INVITE's
                // SDP `o=`). Its Via may name the source rightly now: it was told by `rport`.
                Seen::Suspected(first) => {
                    let mut evidence = first.clone();
                    let new: Vec<String> = private_left(msg)
                        .iter()
                        .map(|(field, address)| format!("private {address} left in the {field}"))
                        .filter(|said| !first.contains(said.as_str()))
                        .collect();
                    if !new.is_empty() {
                        let _ = write!(evidence, "; in this request, {}", new.join(", "));
                    }
                    Some(Suspicion {
                        source,
                        evidence,
                        first: false,
                    })
                }
            };
        }
        // Whatever the verdict, this request is answered with `received` and `rport`: the
        // source is told its address now.
        let evidence = rewritten(msg, source, transport)
            .filter(|_| !stun.is_some_and(|s| s.answered(source.ip(), now)));
        match evidence {
            None => {
                self.put(source, Seen::Clean);
                None
            }
            Some(evidence) => {
                self.put(source, Seen::Suspected(evidence.clone()));
                Some(Suspicion {
                    source,
                    evidence,
                    first: true,
                })
            }
        }
    }

    /// The evidence against `source` if an ALG is suspected there (a callee answering from
    /// the flow it registered over).
    pub fn suspected(&mut self, source: SocketAddr) -> Option<String> {
        match self.get(source)? {
            Seen::Suspected(evidence) => Some(evidence.clone()),
            Seen::Clean => None,
        }
    }

    fn get(&mut self, source: SocketAddr) -> Option<&Seen> {
        if !self.newer.contains_key(&source) {
            let seen = self.older.remove(&source)?;
            self.put(source, seen);
        }
        self.newer.get(&source)
    }

    fn put(&mut self, source: SocketAddr, seen: Seen) {
        if self.newer.len() >= self.capacity / 2 {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(source, seen);
    }
}

/// Whether a message from `ip` may have crossed a NAT (and its ALG) on its way: a global
/// address may; a private, loopback, link-local or unspecified one came from next door.
fn behind_some_nat(ip: IpAddr) -> bool {
    let local = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xFFC0) == 0xFE80
        }
    };
    !local && !is_private(ip)
}

/// The evidence that `msg` from `source` was rewritten on its way, if its top Via names the
/// source itself: in words, with every private address left elsewhere.
fn rewritten(msg: &Message<'_>, source: SocketAddr, transport: Transport) -> Option<String> {
    let via = msg.via();
    let default = match transport {
        Transport::Tls => 5061,
        _ => 5060,
    };
    if ip_literal(via.host()) != Some(source.ip()) || via.port().unwrap_or(default) != source.port()
    {
        return None;
    }
    let mut evidence = format!(
        "the top Via names {source}, where the request came from, though nothing had told the phone that address"
    );
    let left = private_left(msg);
    for (field, address) in &left {
        let _ = write!(evidence, "; private {address} left in the {field}");
    }
    if left.is_empty() {
        // Said so that nobody chases a router that is not there.
        evidence.push_str(" (a phone on a public address, without NAT, looks the same)");
    }
    Some(evidence)
}

/// The private addresses a rewrite of Via, Contact and `c=` leaves behind, with where.
fn private_left(msg: &Message<'_>) -> Vec<(&'static str, IpAddr)> {
    let mut left = Vec::new();
    let mut add = |field: &'static str, text: &[u8]| {
        if let Some(ip) = ipv4_literals(text).find(|ip| is_private(IpAddr::V4(*ip))) {
            left.push((field, IpAddr::V4(ip)));
        }
    };
    if let Some(call_id) = msg.value(HeaderName::CallId) {
        add("Call-ID", call_id);
    }
    if let Some(Some(branch)) = msg.via().params().get("branch") {
        add("Via branch", branch);
    }
    if let Some(from) = msg.value(HeaderName::From) {
        add("From header", from);
    }
    let sdp = msg
        .value(HeaderName::ContentType)
        .is_some_and(|t| trim(t).to_ascii_lowercase().starts_with(b"application/sdp"));
    if sdp {
        for line in msg.body().split(|&b| b == b'\n') {
            let line = trim(line);
            if line.starts_with(b"o=") {
                add("SDP o= line", line);
            } else if line.starts_with(b"a=rtcp:") {
                add("SDP a=rtcp line", line);
            }
        }
    }
    left
}

/// Every dotted-quad IPv4 address written in `text`.
fn ipv4_literals(text: &[u8]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    text.split(|b| !(b.is_ascii_digit() || *b == b'.'))
        .filter(|t| t.len() >= 7)
        .filter_map(|t| std::str::from_utf8(t).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(via: &str, call_id: &str, contact: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=1\r\nTo: <sip:alice@example.org>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{contact}>\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn source() -> SocketAddr {
        "198.51.100.16:5070".parse().expect("address")
    }

    struct Answered(IpAddr);
    impl StunSeen for Answered {
        fn answered(&self, ip: IpAddr, _: Timestamp) -> bool {
            ip == self.0
        }
    }

    #[test]
    fn a_rewritten_first_request_is_suspected_once_with_what_was_left() {
        let mut d = AlgDetector::new(100);
        let bytes = register(
            "198.51.100.16:5070",
            "a1@192.168.6.10",
            "198.51.100.16:5070",
        );
        let m = Message::parse(&bytes).expect("parses");
        let s = d
            .examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None)
            .expect("suspected");
        assert!(s.first);
        assert_eq!(
            s.evidence,
            "the top Via names 198.51.100.16:5070, where the request came from, though nothing \
had told the phone that address; private 192.168.6.10 left in the Call-ID"
        );
        // Its next requests carry the verdict, not as news.
        let again = d
            .examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None)
            .expect("kept");
        assert!(!again.first);
        assert_eq!(again.evidence, s.evidence);
        // A call from it: what its INVITE left private is added, and only that (its Via names
        // the source rightly by now, told by rport).
        let sdp =
            "v=0\r\no=- 1 1 IN IP4 192.168.6.10\r\ns=-\r\nc=IN IP4 198.51.100.16\r\nt=0 0\r\n";
        let invite = format!(
            "INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.16:5070;branch=z9hG4bK2\r\n\
From: <sip:alice@example.org>;tag=2\r\nTo: <sip:bob@example.org>\r\nCall-ID: c2@198.51.100.16\r\n\
CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let m = Message::parse(invite.as_bytes()).expect("parses");
        let call = d
            .examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None)
            .expect("kept");
        assert_eq!(
            call.evidence,
            format!(
                "{}; in this request, private 192.168.6.10 left in the SDP o= line",
                s.evidence
            )
        );
    }

    #[test]
    fn phones_that_learned_their_address_or_write_a_private_one_are_not_suspected() {
        // Behind a NAT without ALG: the private Via; then, told by rport, the public one.
        let mut d = AlgDetector::new(100);
        let private = register("192.168.1.10:5070", "a1@192.168.1.10", "192.168.1.10:5070");
        let m = Message::parse(&private).expect("parses");
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None),
            None
        );
        let learned = register(
            "198.51.100.16:5070",
            "a1@192.168.1.10",
            "198.51.100.16:5070",
        );
        let m = Message::parse(&learned).expect("parses");
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None),
            None
        );
        // Told by a STUN answer on the SIP port first.
        let mut d = AlgDetector::new(100);
        d.told(source());
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None),
            None
        );
        // Told by Farside's STUN service.
        let mut d = AlgDetector::new(100);
        let stun = Answered(source().ip());
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, Some(&stun)),
            None
        );
        // The Via names the address but another port (the NAT changed it): not the source.
        let mut d = AlgDetector::new(100);
        let other = register("198.51.100.16:5060", "x", "198.51.100.16:5060");
        let m = Message::parse(&other).expect("parses");
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None),
            None
        );
        // A request a proxy passed on (two Vias, the proxy's own on top): not judged.
        let mut d = AlgDetector::new(100);
        let proxied = String::from_utf8_lossy(&learned).replace(
            "Max-Forwards: 70\r\n",
            "Via: SIP/2.0/UDP 192.168.1.10:5070;branch=z9hG4bK0\r\nMax-Forwards: 70\r\n",
        );
        let m = Message::parse(proxied.as_bytes()).expect("parses");
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None),
            None
        );
        // A WebSocket, or a source on the server's own network: never.
        let mut d = AlgDetector::new(100);
        let m = Message::parse(&learned).expect("parses");
        assert_eq!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Wss, None),
            None
        );
        for lan in [
            "10.0.0.5:5070",
            "127.0.0.1:5070",
            "[::1]:5070",
            "[fe80::1]:5070",
        ] {
            let lan: SocketAddr = lan.parse().expect("address");
            let local = register(&lan.to_string(), "x", &lan.to_string());
            let m = Message::parse(&local).expect("parses");
            assert_eq!(
                d.examine(Timestamp::EPOCH, &m, lan, Transport::Udp, None),
                None,
                "{lan}"
            );
        }
    }

    #[test]
    fn sdp_leftovers_are_named_and_the_default_port_counts() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.168.6.10\r\ns=-\r\nc=IN IP4 198.51.100.16\r\n\
t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4 10.1.2.3\r\n";
        let invite = format!(
            "INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.16;branch=z9hG4bK-192.168.6.10\r\n\
From: <sip:alice@example.org>;tag=7\r\nTo: <sip:bob@example.org>\r\nCall-ID: c\r\n\
CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let m = Message::parse(invite.as_bytes()).expect("parses");
        let from: SocketAddr = "198.51.100.16:5060".parse().expect("address");
        let s = AlgDetector::new(10)
            .examine(Timestamp::EPOCH, &m, from, Transport::Udp, None)
            .expect("suspected");
        assert!(
            s.evidence.ends_with(
                "; private 192.168.6.10 left in the Via branch; private 192.168.6.10 left in \
the SDP o= line; private 10.1.2.3 left in the SDP a=rtcp line"
            ),
            "{}",
            s.evidence
        );
    }

    #[test]
    fn memory_is_bounded_and_recent_verdicts_survive_a_turnover() {
        let mut d = AlgDetector::new(4);
        let bytes = register("198.51.100.16:5070", "x", "198.51.100.16:5070");
        let m = Message::parse(&bytes).expect("parses");
        assert!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None)
                .is_some()
        );
        for port in 1..=1000u16 {
            d.told(SocketAddr::new(source().ip(), port));
            assert!(d.newer.len() + d.older.len() <= 4);
        }
        // Long gone: a new first request is judged afresh.
        assert!(
            d.examine(Timestamp::EPOCH, &m, source(), Transport::Udp, None)
                .expect("again")
                .first
        );
        assert_eq!(ipv4_literals(b"1.2.3.4 999.1.1.1 10.0.0.1.5").count(), 1);
    }
}
