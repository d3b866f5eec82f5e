//! Reading and rewriting session descriptions: RFC 3264's example offer, a NATed phone's offer
//! with RTCP on its own port, a browser's offer with ICE, refusals, and (proptest) any bytes.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use farside_sdp::{Connection, Direction, Error, Ice, MAX_LINES, MAX_MEDIA, Rewrite, Sdp};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rewritten(sdp: &str, r: &Rewrite<'_>) -> String {
    let mut out = Vec::new();
    Sdp::parse(sdp.as_bytes()).unwrap().rewrite(r, &mut out);
    String::from_utf8(out).unwrap()
}

/// RFC 3264 §10.1, Alice's offer (LF line ends, names for addresses).
const RFC3264_OFFER: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
";

/// A phone behind a NAT: its private address, RTCP on its own port (RFC 3605), CRLF.
const NATED_OFFER: &str = "v=0\r\n\
o=- 3911 3911 IN IP4 192.168.1.20\r\n\
s=call\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=tool:phone 1.0\r\n\
m=audio 4000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:4005 IN IP4 192.168.1.20\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";

/// A browser's offer: ICE, rtcp-mux, media-level c=, IPv4.
const WEBRTC_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=ice-options:trickle\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 10.0.0.7 54400 typ host\r\n\
a=candidate:2 1 udp 1686052607 198.51.100.9 54400 typ srflx raddr 10.0.0.7 rport 54400\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=end-of-candidates\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:45:F1:2E:E1:CF:E6:A1:E2:71\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n";

#[test]
fn the_rfc_3264_offer_gets_the_relays_address_and_ports_and_nothing_else_changes() {
    let out = rewritten(
        RFC3264_OFFER,
        &Rewrite {
            address: Some(ip("203.0.113.5")),
            origin: Some(ip("203.0.113.5")),
            ports: &[Some(30000), Some(30002)],
            ..Rewrite::default()
        },
    );
    assert_eq!(
        out,
        "v=0
o=alice 2890844526 2890844526 IN IP4 203.0.113.5
s=
c=IN IP4 203.0.113.5
t=0 0
m=audio 30000 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 30002 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
"
    );
    let sdp = Sdp::parse(RFC3264_OFFER.as_bytes()).unwrap();
    let media: Vec<_> = sdp.media().collect();
    assert_eq!(media.len(), 2);
    assert_eq!((media[0].kind, media[0].port), (&b"audio"[..], 49170));
    assert_eq!((media[1].kind, media[1].port), (&b"video"[..], 51372));
    assert_eq!(media[0].proto, b"RTP/AVP");
    // A name is not resolved by the relay.
    assert_eq!(media[0].connection, Connection::Other);
    assert_eq!(sdp.origin_address(), None);
}

#[test]
fn a_nated_offer_with_rtcp_on_its_own_port_moves_to_an_ipv6_relay() {
    let out = rewritten(
        NATED_OFFER,
        &Rewrite {
            address: Some(ip("2001:db8::5")),
            ports: &[Some(31000), Some(31002)],
            rtcp_ports: &[Some(31001), Some(31003)],
            ..Rewrite::default()
        },
    );
    assert_eq!(
        out,
        "v=0\r\n\
o=- 3911 3911 IN IP4 192.168.1.20\r\n\
s=call\r\n\
c=IN IP6 2001:db8::5\r\n\
t=0 0\r\n\
a=tool:phone 1.0\r\n\
m=audio 31000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:31001 IN IP6 2001:db8::5\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n",
        "the origin is kept unless asked; the rejected video stream stays at port 0"
    );
    let sdp = Sdp::parse(NATED_OFFER.as_bytes()).unwrap();
    let audio = sdp.media().next().unwrap();
    assert_eq!(audio.connection, Connection::Ip(ip("192.168.1.20")));
    assert_eq!(audio.rtcp_port, Some(4005));
    assert_eq!(audio.direction, Some(Direction::SendRecv));
    assert!(!audio.rtcp_mux);
    assert_eq!(sdp.origin_address(), Some(ip("192.168.1.20")));
}

#[test]
fn ice_is_removed_line_and_all_or_kept_as_asked() {
    let sdp = Sdp::parse(WEBRTC_OFFER.as_bytes()).unwrap();
    assert!(sdp.has_ice());
    let media = sdp.media().next().unwrap();
    assert!(media.rtcp_mux);
    assert_eq!(media.connection, Connection::Ip(ip("0.0.0.0")));
    let relay = Rewrite {
        address: Some(ip("203.0.113.5")),
        ports: &[Some(32000)],
        rtcp_ports: &[Some(32000)],
        ice: Ice::Remove,
        ..Rewrite::default()
    };
    let out = rewritten(WEBRTC_OFFER, &relay);
    for gone in [
        "a=ice-options",
        "a=candidate",
        "a=ice-ufrag",
        "a=ice-pwd",
        "a=end-of-candidates",
    ] {
        assert!(!out.contains(gone), "{gone} left in\n{out}");
    }
    let kept: Vec<&str> = WEBRTC_OFFER
        .split("\r\n")
        .filter(|l| !l.contains("candidate") && !l.contains("a=ice-"))
        .filter(|l| !l.starts_with("m=") && !l.starts_with("c=") && !l.starts_with("a=rtcp:"))
        .collect();
    for line in kept {
        assert!(out.contains(line), "{line:?} lost\n{out}");
    }
    assert!(out.contains("m=audio 32000 UDP/TLS/RTP/SAVPF 111\r\n"));
    assert!(out.contains("c=IN IP4 203.0.113.5\r\n"));
    assert!(out.contains("a=rtcp:32000 IN IP4 203.0.113.5\r\n"));
    assert!(!Sdp::parse(out.as_bytes()).unwrap().has_ice());
    // Kept: only the address and ports change.
    let keep = Rewrite {
        ice: Ice::Keep,
        ..relay
    };
    let expected = WEBRTC_OFFER
        .replace("m=audio 9 ", "m=audio 32000 ")
        .replace("c=IN IP4 0.0.0.0", "c=IN IP4 203.0.113.5")
        .replace("a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp:32000 IN IP4 203.0.113.5");
    assert_eq!(rewritten(WEBRTC_OFFER, &keep), expected);
}

#[test]
fn the_default_rewrite_gives_back_the_very_bytes() {
    for sdp in [RFC3264_OFFER, NATED_OFFER, WEBRTC_OFFER] {
        assert_eq!(rewritten(sdp, &Rewrite::default()), sdp);
    }
}

#[test]
fn directions_come_from_the_section_else_the_session() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n\
m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=inactive\r\n";
    let sdp = Sdp::parse(sdp.as_bytes()).unwrap();
    let d: Vec<_> = sdp.media().map(|m| m.direction).collect();
    assert_eq!(d, [Some(Direction::SendOnly), Some(Direction::Inactive)]);
}

#[test]
fn what_the_relay_cannot_work_on_is_refused_with_its_reason() {
    let head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
    let cases: Vec<(String, Error)> = vec![
        ("o=- 1 1 IN IP4 192.0.2.1\r\n".into(), Error::NoVersion),
        (
            "v=0\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n".into(),
            Error::BadOrigin,
        ),
        (
            format!("{head}c=IN IP4\r\n"),
            Error::BadConnection { line: 3 },
        ),
        (
            format!("{head}c=IN IP4 2001:db8::1\r\n"),
            Error::BadConnection { line: 3 },
        ),
        (
            format!("{head}c=ATM NSAP 1\r\n"),
            Error::BadConnection { line: 3 },
        ),
        (
            format!("{head}c=IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n"),
            Error::BadMedia { line: 4 },
        ),
        (
            format!("{head}c=IN IP4 192.0.2.1\r\nm=audio 4000\r\n"),
            Error::BadMedia { line: 4 },
        ),
        (
            format!("{head}c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:\r\n"),
            Error::BadRtcp { line: 5 },
        ),
        (
            format!("{head}m=audio 4000 RTP/AVP 0\r\n"),
            Error::NoConnection { media: 0 },
        ),
        (
            format!("{head}C=IN IP4 192.0.2.1\r\n"),
            Error::BadLine { line: 3 },
        ),
        (
            format!("{head}c IN IP4 192.0.2.1\r\n"),
            Error::BadLine { line: 3 },
        ),
        (format!("{head}a=x\rb\r\n"), Error::BadLine { line: 3 }),
        (
            format!("{head}{}", "a=x\r\n".repeat(MAX_LINES)),
            Error::TooManyLines,
        ),
        (
            format!(
                "{head}c=IN IP4 192.0.2.1\r\n{}",
                "m=audio 0 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1)
            ),
            Error::TooManyMedia,
        ),
    ];
    for (sdp, error) in cases {
        assert_eq!(Sdp::parse(sdp.as_bytes()).err(), Some(error), "{sdp:?}");
    }
    // Multicast's TTL and a section's own c= are read.
    let ok = format!("{head}t=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 233.252.0.1/127\r\n");
    let sdp = Sdp::parse(ok.as_bytes()).unwrap();
    assert_eq!(
        sdp.media().next().unwrap().connection,
        Connection::Ip(ip("233.252.0.1"))
    );
}

/// Lines of SDP's shape with fields from small alphabets: reaches the field readers far more
/// often than random bytes do.
fn sdp_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("v=0".to_string()),
        "o=[a-z-]{1,3} [0-9]{1,3} [0-9] IN IP[46] [0-9a-f.:]{0,16}",
        "c=(IN|XX) IP[46x] [0-9a-f.:/]{0,20}",
        "m=(audio|video) [0-9/]{0,7} (RTP/AVP|)( [0-9]{1,3}){0,3}",
        "a=rtcp(:[0-9]{0,6}( IN IP[46] [0-9.:]{0,16})?)?",
        "a=(candidate|ice-ufrag|sendonly|rtcp-mux|rtpmap)(:[ -~]{0,12})?",
        "[a-z=]{0,3}[ -~]{0,8}",
    ];
    (prop::collection::vec(line, 0..24), prop::bool::ANY).prop_map(|(lines, crlf)| {
        let end = if crlf { "\r\n" } else { "\n" };
        lines
            .iter()
            .map(|l| format!("{l}{end}"))
            .collect::<String>()
            .into_bytes()
    })
}

fn total(bytes: &[u8]) {
    let Ok(sdp) = Sdp::parse(bytes) else {
        return;
    };
    let mut out = Vec::new();
    sdp.rewrite(&Rewrite::default(), &mut out);
    assert_eq!(out, bytes, "the default rewrite is the identity");
    let n = sdp.media().count();
    let ports: Vec<Option<u16>> = (0..n).map(|i| Some(40000 + 2 * i as u16)).collect();
    let rtcp: Vec<Option<u16>> = (0..n).map(|i| Some(40001 + 2 * i as u16)).collect();
    for address in [ip("203.0.113.5"), ip("2001:db8::5")] {
        let r = Rewrite {
            address: Some(address),
            origin: Some(address),
            ports: &ports,
            rtcp_ports: &rtcp,
            ice: Ice::Remove,
        };
        sdp.rewrite(&r, &mut out);
        // What the relay wrote reads again, with its ports and no ICE.
        let again = Sdp::parse(&out).expect("a rewritten description reads");
        assert!(!again.has_ice());
        // Every media section is still there (the zip below would stop at the shorter list).
        assert_eq!(again.media().count(), sdp.media().count());
        for (m, (before, port)) in again.media().zip(sdp.media().zip(&ports)) {
            let want = if before.port == 0 {
                0
            } else {
                port.unwrap_or(0)
            };
            assert_eq!(m.port, want);
            assert_eq!(m.connection, Connection::Ip(address));
        }
    }
}

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused_and_what_is_read_rewrites(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        total(&bytes);
    }

    #[test]
    fn sdp_shaped_lines_are_read_or_refused_and_what_is_read_rewrites(bytes in sdp_like()) {
        total(&bytes);
    }
}
