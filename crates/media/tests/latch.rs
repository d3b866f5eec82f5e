//! Symmetric latching with strict source: a NATed phone learned from its SIP source's host, a
//! public one from its SDP, strangers refused before and after learning (RTP Bleed / Inject),
//! a re-INVITE to a new host switching without a gap, hold and resume, handover when allowed.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};

use farside_media::latch::{Expect, Latch, Verdict, expect};
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const LEARNED: Verdict = Verdict::Forward { learned: true };
const KEPT: Verdict = Verdict::Forward { learned: false };

#[test]
fn a_phone_behind_nat_is_learned_from_its_sip_sources_host_and_nothing_else() {
    let e = expect(sa("192.168.1.20:4000"), Some(ip("198.51.100.7")));
    assert_eq!(e, Expect::Host(ip("198.51.100.7")));
    let mut l = Latch::new(e);
    assert_eq!(
        l.destination(),
        None,
        "nowhere to send before it is learned"
    );
    // A stranger first (RTP Bleed's probe): refused, and nothing learned from it.
    assert_eq!(l.on_packet(sa("203.0.113.66:5000")), Verdict::ForeignSource);
    assert_eq!(l.destination(), None);
    // The phone, from whatever port its NAT chose.
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), LEARNED);
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), KEPT);
    assert_eq!(l.destination(), Some(sa("198.51.100.7:40001")));
    // Strict source: the stranger (RTP Inject) and another port of the same host are refused.
    assert_eq!(l.on_packet(sa("203.0.113.66:5000")), Verdict::ForeignSource);
    assert_eq!(
        l.on_packet(sa("198.51.100.7:40002")),
        Verdict::ForeignSource
    );
    assert_eq!(l.destination(), Some(sa("198.51.100.7:40001")));
    // Unless handover is allowed: the NAT rebound, the phone's new port takes over.
    l.handover(true);
    assert_eq!(l.on_packet(sa("198.51.100.7:40002")), LEARNED);
    assert_eq!(l.on_packet(sa("203.0.113.66:5000")), Verdict::ForeignSource);
    assert_eq!(l.relearned(), 1);
}

#[test]
fn a_public_phone_is_sent_to_at_its_sdp_address_until_it_is_heard() {
    let e = expect(sa("203.0.113.10:4000"), Some(ip("203.0.113.10")));
    assert_eq!(e, Expect::Address(sa("203.0.113.10:4000")));
    let mut l = Latch::new(e);
    assert_eq!(l.destination(), Some(sa("203.0.113.10:4000")));
    assert_eq!(l.on_packet(sa("203.0.113.10:4000")), LEARNED);
    assert_eq!(l.learned(), Some(sa("203.0.113.10:4000")));
}

#[test]
fn a_reinvite_to_a_new_host_switches_at_its_first_packet_without_a_gap() {
    let mut l = Latch::new(Expect::Host(ip("198.51.100.7")));
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), LEARNED);
    // The phone moved (Wi-Fi to mobile): the re-INVITE names its new host.
    l.expect(expect(sa("10.1.2.3:4000"), Some(ip("192.0.2.200"))));
    // Until the new host is heard, the old address still flows both ways.
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), KEPT);
    assert_eq!(l.destination(), Some(sa("198.51.100.7:40001")));
    assert_eq!(l.on_packet(sa("192.0.2.200:61000")), LEARNED);
    assert_eq!(l.destination(), Some(sa("192.0.2.200:61000")));
    assert_eq!(
        l.on_packet(sa("198.51.100.7:40001")),
        Verdict::ForeignSource
    );
    assert_eq!(l.relearned(), 1);
}

#[test]
fn hold_by_the_unspecified_address_and_resume_keep_what_was_learned() {
    let sip = Some(ip("198.51.100.7"));
    let mut l = Latch::new(expect(sa("192.168.1.20:4000"), sip));
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), LEARNED);
    // RFC 2543 hold: c=0.0.0.0.
    let hold = expect(sa("0.0.0.0:4000"), sip);
    assert_eq!(hold, Expect::Host(ip("198.51.100.7")));
    l.expect(hold);
    assert_eq!(l.destination(), Some(sa("198.51.100.7:40001")));
    l.expect(expect(sa("192.168.1.20:4000"), sip));
    assert_eq!(l.on_packet(sa("198.51.100.7:40001")), KEPT);
    assert_eq!(l.relearned(), 0);
}

#[test]
fn what_cannot_be_the_sender_is_expected_from_the_sip_source() {
    let sip = Some(ip("198.51.100.7"));
    for private in [
        "10.0.0.1:4000",
        "172.16.5.4:4000",
        "192.168.0.9:4000",
        "100.64.1.2:4000",
        "127.0.0.1:4000",
        "169.254.3.3:4000",
        "0.0.0.0:4000",
        "[fd00::1]:4000",
        "[fe80::1]:4000",
        "[::1]:4000",
        "[::]:4000",
    ] {
        assert_eq!(
            expect(sa(private), sip),
            Expect::Host(ip("198.51.100.7")),
            "{private}"
        );
    }
    for public in [
        "203.0.113.10:4000",
        "100.128.0.1:4000",
        "[2001:db8::1]:4000",
    ] {
        assert_eq!(
            expect(sa(public), sip),
            Expect::Address(sa(public)),
            "{public}"
        );
    }
    // No SIP source known (rtpengine without received-from): the SDP is all there is.
    assert_eq!(
        expect(sa("192.168.1.20:4000"), None),
        Expect::Address(sa("192.168.1.20:4000"))
    );
}

proptest! {
    /// RTP Bleed and Inject: whatever the order of packets, re-INVITEs and handover settings,
    /// no packet from a host the signalling never named is forwarded, and media never goes
    /// to such a host.
    #[test]
    fn no_packet_from_a_stranger_is_ever_forwarded(
        steps in prop::collection::vec((0u8..5, 1024u16..1040, any::<bool>()), 0..64)
    ) {
        let phone = ip("198.51.100.7");
        let moved = ip("192.0.2.200");
        let stranger = ip("203.0.113.66");
        let mut l = Latch::new(Expect::Host(phone));
        for (what, port, flag) in steps {
            match what {
                0 | 1 => {
                    let v = l.on_packet(SocketAddr::new(stranger, port));
                    prop_assert_eq!(v, Verdict::ForeignSource);
                }
                2 => {
                    let _ = l.on_packet(SocketAddr::new(if flag { phone } else { moved }, port));
                }
                3 => l.expect(Expect::Host(if flag { phone } else { moved })),
                _ => l.handover(flag),
            }
            if let Some(d) = l.destination() {
                prop_assert_ne!(d.ip(), stranger);
            }
        }
    }
}
