//! A call through the relay without sockets: alice behind a NAT offers, bob on a public address
//! answers; the SDPs each receives name the relay; media flows once each side is known, never
//! from a stranger; RTCP on its own ports; a re-INVITE from bob moves him; the timers end calls
//! and every port comes back.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use farside_media::relay::{
    Drop, Ended, Event, MediaPorts, Passing, Relay, RelayConfig, RelayError, Transmit,
};
use farside_sdp::{Ice, Sdp};
use farside_time::Timestamp;

/// Port pairs from 30000 up, as the shell would bind them.
#[derive(Default)]
struct Ports {
    next: u16,
    taken: BTreeSet<u16>,
    limit: Option<usize>,
    /// Pairs asked for in the IPv6 family.
    ipv6: usize,
}

impl MediaPorts for Ports {
    fn take_pair(&mut self, ipv6: bool) -> Option<u16> {
        self.ipv6 += usize::from(ipv6);
        if self.limit.is_some_and(|l| self.taken.len() >= l) {
            return None;
        }
        let p = 30_000 + self.next;
        self.next += 2;
        self.taken.insert(p);
        Some(p)
    }
    fn give_back(&mut self, rtp_port: u16) {
        assert!(self.taken.remove(&rtp_port), "{rtp_port} given back twice");
    }
}

const RELAY: &str = "203.0.113.5";
const ALICE_SIP: &str = "198.51.100.7";
const BOB: &str = "192.0.2.20";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn offer_sdp(address: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend([0xd5; 160]);
    p
}

/// The RTP port an SDP names.
fn port_in(sdp: &[u8]) -> u16 {
    Sdp::parse(sdp).unwrap().media().next().unwrap().port
}

/// Sets up alice (NATed, private SDP) calling bob (public); returns the relay, the ports, the
/// relay ports alice and bob send to.
fn call() -> (Relay, Ports, u16, u16) {
    call_with(false)
}

/// [`call`], alice's offer allowing `media-handover` or not.
fn call_with(handover: bool) -> (Relay, Ports, u16, u16) {
    let mut relay = Relay::new(RelayConfig::new(ip(RELAY)));
    let mut ports = Ports::default();
    let to_bob = relay
        .offer(
            at(0),
            &Passing {
                call_id: b"call-1",
                from_tag: b"alice-tag",
                to_tag: None,
                sdp: offer_sdp("192.168.1.20", 4000).as_bytes(),
                source: Some(ip(ALICE_SIP)),
                ice: Ice::Remove,
                handover,
                recipient_ipv6: None,
            },
            &mut ports,
        )
        .unwrap();
    let to_bob = String::from_utf8(to_bob).unwrap();
    assert!(
        to_bob.contains(&format!("c=IN IP4 {RELAY}\r\n")),
        "{to_bob}"
    );
    assert!(
        to_bob.contains(&format!("o=- 1 1 IN IP4 {RELAY}\r\n")),
        "{to_bob}"
    );
    let bob_sends_to = port_in(to_bob.as_bytes());
    let to_alice = relay
        .answer(
            at(1),
            &Passing {
                call_id: b"call-1",
                from_tag: b"alice-tag",
                to_tag: None,
                sdp: offer_sdp(BOB, 5000).as_bytes(),
                source: Some(ip(BOB)),
                ice: Ice::Remove,
                handover: false,
                recipient_ipv6: None,
            },
        )
        .unwrap();
    let alice_sends_to = port_in(&to_alice);
    assert_ne!(alice_sends_to, bob_sends_to);
    assert_eq!(ports.taken.len(), 2, "one pair for each side");
    (relay, ports, alice_sends_to, bob_sends_to)
}

#[test]
fn media_flows_both_ways_once_each_side_is_known_and_never_from_a_stranger() {
    let (mut r, _ports, alice_port, bob_port) = call();
    let alice = sa("198.51.100.7:40001");
    let bob = sa("192.0.2.20:5000");
    // Bob first: alice's NAT address is not known yet, so nothing can go to her.
    assert_eq!(
        r.handle_packet(at(2), bob_port, bob, &rtp(1)),
        Err(Drop::NoDestination)
    );
    // Alice (from the port her NAT picked) goes to bob's SDP address, from the port he sends to.
    assert_eq!(
        r.handle_packet(at(2), alice_port, alice, &rtp(1)),
        Ok(Transmit {
            from_port: bob_port,
            to: bob
        })
    );
    // Now bob reaches her, from the port she sends to.
    assert_eq!(
        r.handle_packet(at(2), bob_port, bob, &rtp(2)),
        Ok(Transmit {
            from_port: alice_port,
            to: alice
        })
    );
    // A stranger at either port (RTP Bleed probe, RTP Inject): refused and counted.
    let stranger = sa("203.0.113.66:6000");
    for port in [alice_port, bob_port, alice_port + 1] {
        assert_eq!(
            r.handle_packet(at(3), port, stranger, &rtp(9)),
            Err(Drop::ForeignSource)
        );
    }
    assert_eq!(
        r.handle_packet(at(3), 31_999, stranger, &rtp(9)),
        Err(Drop::NoStream)
    );
    let a = r.counters(b"call-1", 0, 0).unwrap();
    let b = r.counters(b"call-1", 0, 1).unwrap();
    assert_eq!((a.packets, a.bytes, a.foreign), (1, 172, 2));
    assert_eq!((b.packets, b.no_destination, b.foreign), (1, 1, 1));
    // RTCP on the next ports, learned on its own.
    let alice_rtcp = sa("198.51.100.7:40002");
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
    assert_eq!(
        r.handle_packet(at(4), alice_port + 1, alice_rtcp, &rr),
        Ok(Transmit {
            from_port: bob_port + 1,
            to: sa("192.0.2.20:5001")
        })
    );
    let a = r.counters(b"call-1", 0, 0).unwrap();
    assert_eq!((a.packets, a.rtcp_packets, a.rtcp_bytes), (1, 1, 8));
}

#[test]
fn a_reinvite_from_bob_moves_him_without_a_gap() {
    let (mut r, mut ports, alice_port, bob_port) = call();
    let alice = sa("198.51.100.7:40001");
    let bob = sa("192.0.2.20:5000");
    r.handle_packet(at(2), alice_port, alice, &rtp(1)).unwrap();
    r.handle_packet(at(2), bob_port, bob, &rtp(1)).unwrap();
    // Bob re-INVITEs from his new address: he offers now, alice answers.
    let to_alice = r
        .offer(
            at(10),
            &Passing {
                call_id: b"call-1",
                from_tag: b"bob-tag",
                to_tag: None,
                sdp: offer_sdp("192.0.2.99", 7000).as_bytes(),
                source: Some(ip("192.0.2.99")),
                ice: Ice::Remove,
                handover: false,
                recipient_ipv6: None,
            },
            &mut ports,
        )
        .unwrap();
    assert_eq!(
        port_in(&to_alice),
        alice_port,
        "alice keeps sending where she did"
    );
    let to_bob = r
        .answer(
            at(10),
            &Passing {
                call_id: b"call-1",
                from_tag: b"bob-tag",
                to_tag: None,
                sdp: offer_sdp("192.168.1.20", 4000).as_bytes(),
                source: Some(ip(ALICE_SIP)),
                ice: Ice::Remove,
                handover: false,
                recipient_ipv6: None,
            },
        )
        .unwrap();
    assert_eq!(port_in(&to_bob), bob_port);
    assert_eq!(ports.taken.len(), 2, "no new ports for the same stream");
    // Until bob is heard from his new address, the old one still carries.
    assert_eq!(
        r.handle_packet(at(11), alice_port, alice, &rtp(2))
            .unwrap()
            .to,
        bob
    );
    r.handle_packet(at(11), bob_port, sa("192.0.2.99:7000"), &rtp(2))
        .unwrap();
    assert_eq!(
        r.handle_packet(at(11), alice_port, alice, &rtp(3))
            .unwrap()
            .to,
        sa("192.0.2.99:7000")
    );
    assert_eq!(
        r.handle_packet(at(11), bob_port, bob, &rtp(3)),
        Err(Drop::ForeignSource)
    );
}

#[test]
fn calls_end_by_their_timers_and_by_delete_and_give_every_port_back() {
    // Answered, never a packet: no media after 60 s.
    let (mut r, mut ports, _, _) = call();
    // The timers are looked at once a second.
    assert_eq!(r.poll_timeout(), Some(at(1)));
    r.handle_timeout(at(60), &mut ports);
    assert_eq!(r.poll_timeout(), Some(at(61)));
    assert_eq!(r.calls(), 1);
    r.handle_timeout(at(61), &mut ports);
    assert_eq!(r.calls(), 0);
    assert!(ports.taken.is_empty());
    assert_eq!(
        r.poll_event(),
        Some(Event::CallEnded {
            call_id: b"call-1".to_vec(),
            reason: Ended::NoMedia,
            forwarded: [0, 0],
            quality: Default::default(),
            created: at(0),
            endpoints: [None, None],
        })
    );
    // Media, then silence.
    let (mut r, mut ports, alice_port, _) = call();
    r.handle_packet(at(5), alice_port, sa("198.51.100.7:40001"), &rtp(1))
        .unwrap();
    r.handle_timeout(at(64), &mut ports);
    assert_eq!(r.calls(), 1);
    r.handle_timeout(at(65), &mut ports);
    let alice = sa("198.51.100.7:40001");
    assert!(
        matches!(
            r.poll_event(),
            Some(Event::CallEnded {
                reason: Ended::Silence,
                endpoints: [Some(a), None],
                ..
            }) if a == alice
        ),
        "where alice's RTP came from, for the operator's recent calls"
    );
    // Media all along: the final limit.
    let (mut r, mut ports, alice_port, _) = call();
    let mut t = 0;
    while r.calls() == 1 && t <= 5 * 3600 {
        t += 30;
        let _ = r.handle_packet(at(t), alice_port, sa("198.51.100.7:40001"), &rtp(t as u16));
        r.handle_timeout(at(t), &mut ports);
    }
    assert_eq!(t, 4 * 3600);
    assert!(matches!(
        r.poll_event(),
        Some(Event::CallEnded {
            reason: Ended::Final,
            ..
        })
    ));
    // Deleted.
    let (mut r, mut ports, _, _) = call();
    assert!(r.delete(b"call-1", &mut ports));
    assert!(!r.delete(b"call-1", &mut ports));
    assert!(ports.taken.is_empty());
}

#[test]
fn offers_the_relay_cannot_serve_are_refused() {
    let mut r = Relay::new(RelayConfig {
        max_calls: 1,
        ..RelayConfig::new(ip(RELAY))
    });
    let mut ports = Ports {
        limit: Some(3),
        ..Ports::default()
    };
    let sdp = offer_sdp("192.0.2.1", 4000);
    assert!(
        r.offer(at(0), &common::passing(b"c1", b"t", None, &sdp), &mut ports)
            .is_ok()
    );
    assert_eq!(
        r.offer(at(0), &common::passing(b"c2", b"t", None, &sdp), &mut ports),
        Err(farside_media::relay::RelayError::TooManyCalls)
    );
    assert_eq!(
        r.answer(at(0), &common::passing(b"c9", b"t", None, &sdp)),
        Err(farside_media::relay::RelayError::UnknownCall)
    );
    assert!(matches!(
        r.offer(
            at(0),
            &Passing {
                call_id: b"c1",
                from_tag: b"t",
                to_tag: None,
                sdp: b"not sdp",
                source: None,
                ice: Ice::Keep,
                handover: false,
                recipient_ipv6: None,
            },
            &mut ports
        ),
        Err(farside_media::relay::RelayError::Sdp(_))
    ));
    // A re-offer adding a second stream needs two more pairs; only one is left.
    let two = format!("{sdp}m=video 4002 RTP/AVP 96\r\n");
    assert_eq!(
        r.offer(at(1), &common::passing(b"c1", b"t", None, &two), &mut ports),
        Err(farside_media::relay::RelayError::NoPorts)
    );
    assert_eq!(
        ports.taken.len(),
        2,
        "the pair taken for the failed stream is given back"
    );
    // A new call that gets no ports at all is not kept.
    let mut r = Relay::new(RelayConfig::new(ip(RELAY)));
    let mut none = Ports {
        limit: Some(1),
        ..Ports::default()
    };
    assert_eq!(
        r.offer(at(0), &common::passing(b"c3", b"t", None, &sdp), &mut none),
        Err(farside_media::relay::RelayError::NoPorts)
    );
    assert_eq!((r.calls(), none.taken.len()), (0, 0));
    // An offer never answered, with no media, ends after Timer C's three minutes.
    let mut ports = Ports::default();
    r.offer(at(0), &common::passing(b"c4", b"t", None, &sdp), &mut ports)
        .unwrap();
    r.handle_timeout(at(179), &mut ports);
    assert_eq!(r.calls(), 1);
    r.handle_timeout(at(180), &mut ports);
    assert_eq!((r.calls(), ports.taken.len()), (0, 0));
}

/// An SDP naming an internal address (here 10.0.0.5, with no SIP source to say otherwise) does
/// not make the relay send there: packets for it are dropped and counted (`DeniedPeer`), as
/// TURN refuses such peers, unless the operator allows the range (`rtp.allowed_peers`).
#[test]
fn media_is_never_sent_to_an_address_the_peer_policy_refuses() {
    for allowed in [false, true] {
        let mut config = RelayConfig::new(ip(RELAY));
        if allowed {
            config.peers.allowed = vec!["10.0.0.0/8".parse().unwrap()];
        }
        let mut relay = Relay::new(config);
        let mut ports = Ports::default();
        let passing = |tag: &'static [u8], sdp: &'static str| Passing {
            call_id: b"inside",
            from_tag: tag,
            to_tag: Some(b"b"),
            sdp: sdp.as_bytes(),
            source: None,
            ice: Ice::Keep,
            handover: false,
            recipient_ipv6: None,
        };
        let alice = offer_sdp(ALICE_SIP, 4000).leak();
        let inside = offer_sdp("10.0.0.5", 5000).leak();
        relay
            .offer(at(0), &passing(b"a", alice), &mut ports)
            .unwrap();
        let to_alice = relay.answer(at(0), &passing(b"a", inside)).unwrap();
        let alice_sends_to = port_in(&to_alice);
        let verdict = relay.handle_packet(at(1), alice_sends_to, sa("198.51.100.7:4000"), &rtp(1));
        if allowed {
            assert_eq!(verdict.map(|t| t.to), Ok(sa("10.0.0.5:5000")));
        } else {
            assert_eq!(verdict, Err(Drop::DeniedPeer));
            assert_eq!(relay.totals(b"inside").unwrap().1.denied_peer, 1);
        }
    }
}

/// When a call ends its event carries each side's quality, for the operator's summaries: the
/// packets expected and lost by sequence number, the jitter, the round trip if RTCP gave one.
#[test]
fn an_ended_call_reports_each_sides_loss_and_jitter() {
    let (mut r, mut ports, alice_port, bob_port) = call();
    for seq in 1..=50u16 {
        if seq != 20 && seq != 30 {
            r.handle_packet(at(1), alice_port, sa("198.51.100.7:40001"), &rtp(seq))
                .unwrap();
        }
        r.handle_packet(at(1), bob_port, sa("192.0.2.20:5000"), &rtp(seq))
            .unwrap();
    }
    assert!(r.delete(b"call-1", &mut ports));
    let Some(Event::CallEnded {
        forwarded, quality, ..
    }) = r.poll_event()
    else {
        panic!("no CallEnded")
    };
    assert_eq!(forwarded, [48, 50]);
    assert_eq!((quality[0].lost, quality[1].lost), (2, 0));
    assert!(quality[0].expected >= 48, "{quality:?}");
    let loss = quality[0].loss().unwrap();
    assert!((0.03..0.05).contains(&loss), "{loss}");
    assert_eq!(quality[1].loss(), Some(0.0));
    assert_eq!(quality[0].round_trip, None);
}

/// One relay address per family: a call offered over IPv6 gets the relay's IPv6 address in its
/// SDPs and its ports bound in that family; one over IPv4 the IPv4 address.
#[test]
fn a_call_takes_the_relay_address_of_its_offers_family() {
    let mut config = RelayConfig::new(ip(RELAY));
    config.addresses.push(ip("2001:db8::5"));
    let mut relay = Relay::new(config);
    let mut ports = Ports::default();
    let v6 = "v=0\r\no=- 1 1 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let offer = |call_id: &'static [u8], sdp: &'static str| Passing {
        call_id,
        from_tag: b"a",
        to_tag: None,
        sdp: sdp.as_bytes(),
        source: None,
        ice: Ice::Keep,
        handover: false,
        recipient_ipv6: None,
    };
    let out = relay.offer(at(0), &offer(b"six", v6), &mut ports).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("c=IN IP6 2001:db8::5\r\n"), "{out}");
    assert_eq!(ports.ipv6, 2, "both pairs bound in IPv6");
    let four = offer_sdp(ALICE_SIP, 4000).leak();
    let out = relay
        .offer(at(0), &offer(b"four", four), &mut ports)
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&format!("c=IN IP4 {RELAY}\r\n")), "{out}");
    assert_eq!(ports.ipv6, 2, "no more IPv6 pairs");
}

/// A packet from alice (at the relay port she sends to) reaches bob from his, and back.
fn relays_both_ways(relay: &mut Relay, alice: (u16, SocketAddr), bob: (u16, SocketAddr)) {
    let there = relay.handle_packet(at(2), alice.0, alice.1, &rtp(1));
    assert_eq!(
        there,
        Ok(Transmit {
            from_port: bob.0,
            to: bob.1
        })
    );
    let back = relay.handle_packet(at(2), bob.0, bob.1, &rtp(1));
    assert_eq!(
        back,
        Ok(Transmit {
            from_port: alice.0,
            to: alice.1
        })
    );
}

/// Alice's offer and bob's answer, each passing the relay twice as through Farside's edge (up
/// to the registrar and back along the Path): the second time each SDP is the relay's own and
/// must come back unchanged. The SDPs bob and alice get.
fn offer_and_answer_twice(relay: &mut Relay, alice_sdp: &str, bob_sdp: &str) -> (String, String) {
    let mut ports = Ports::default();
    let offer = |sdp| common::passing(b"loop", b"alice", None, sdp);
    let answer = |sdp| common::passing(b"loop", b"alice", Some(b"bob"), sdp);
    let to_bob =
        String::from_utf8(relay.offer(at(0), &offer(alice_sdp), &mut ports).unwrap()).unwrap();
    let again = relay.offer(at(0), &offer(&to_bob), &mut ports).unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), to_bob);
    let taken = ports.taken.len();
    let to_alice = String::from_utf8(relay.answer(at(1), &answer(bob_sdp)).unwrap()).unwrap();
    let again = relay.answer(at(1), &answer(&to_alice)).unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), to_alice);
    assert_eq!(ports.taken.len(), taken, "no more pairs taken");
    (to_bob, to_alice)
}

/// A call between two phones of Farside's edge passes it twice: the relay passes its own SDPs
/// on unchanged, and the latches keep the phones' addresses.
#[test]
fn an_sdp_the_relay_wrote_passes_unchanged_when_it_comes_back() {
    let mut relay = Relay::new(RelayConfig::new(ip(RELAY)));
    let (to_bob, to_alice) = offer_and_answer_twice(
        &mut relay,
        &offer_sdp(ALICE_SIP, 4000),
        &offer_sdp(BOB, 5000),
    );
    // Media still goes between the phones, not to the relay itself.
    let (alice_port, bob_port) = (port_in(to_alice.as_bytes()), port_in(to_bob.as_bytes()));
    let (alice, bob) = (sa("198.51.100.7:4000"), sa("192.0.2.20:5000"));
    relays_both_ways(&mut relay, (alice_port, alice), (bob_port, bob));
}

/// The same with a rejected stream: alice offers audio and video, bob takes audio only (video
/// at port 0, RFC 3264 §6), which the relay's rewriting keeps at 0. Its own answer coming back
/// is still recognised, and bob is still expected where his SDP said.
#[test]
fn an_sdp_the_relay_wrote_with_a_rejected_stream_passes_unchanged_too() {
    let mut relay = Relay::new(RelayConfig::new(ip(RELAY)));
    let video = |sdp: String, port: u16| format!("{sdp}m=video {port} RTP/AVP 96\r\n");
    let (to_bob, to_alice) = offer_and_answer_twice(
        &mut relay,
        &video(offer_sdp(ALICE_SIP, 4000), 4002),
        &video(offer_sdp(BOB, 5000), 0),
    );
    assert!(to_alice.contains("m=video 0 "), "{to_alice}");
    let (alice_port, bob_port) = (port_in(to_alice.as_bytes()), port_in(to_bob.as_bytes()));
    assert_eq!(
        relay.handle_packet(at(2), bob_port, sa("192.0.2.20:5000"), &rtp(1)),
        Ok(Transmit {
            from_port: alice_port,
            to: sa("198.51.100.7:4000")
        })
    );
}

/// ng's `address-family`: an IPv4 phone's offer to an IPv6 phone. The relay faces each side
/// in its own family: bob's SDP names the relay's IPv6 address and a port bound in IPv6,
/// alice's its IPv4 one, and packets cross between the two.
#[test]
fn a_call_between_an_ipv4_and_an_ipv6_phone_is_bridged_when_the_offer_asks_for_ipv6() {
    let mut config = RelayConfig::new(ip(RELAY));
    config.addresses.push(ip("2001:db8::5"));
    config.peers.allowed.push("2001:db8::/32".parse().unwrap());
    let mut relay = Relay::new(config);
    let mut ports = Ports::default();
    let alice_sdp = offer_sdp(ALICE_SIP, 4000);
    let bob_sdp = "v=0\r\no=- 1 1 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
    let offer = Passing {
        recipient_ipv6: Some(true),
        ..common::passing(b"bridge", b"alice", None, &alice_sdp)
    };
    let to_bob = relay.offer(at(0), &offer, &mut ports).unwrap();
    let to_bob = String::from_utf8(to_bob).unwrap();
    assert!(to_bob.contains("c=IN IP6 2001:db8::5\r\n"), "{to_bob}");
    assert!(
        to_bob.contains("o=- 1 1 IN IP6 2001:db8::5\r\n"),
        "{to_bob}"
    );
    assert_eq!(ports.ipv6, 1, "bob's pair in IPv6, alice's in IPv4");
    let to_alice = relay
        .answer(
            at(1),
            &common::passing(b"bridge", b"alice", Some(b"bob"), bob_sdp),
        )
        .unwrap();
    let to_alice = String::from_utf8(to_alice).unwrap();
    assert!(
        to_alice.contains(&format!("c=IN IP4 {RELAY}\r\n")),
        "{to_alice}"
    );
    let (alice_port, bob_port) = (port_in(to_alice.as_bytes()), port_in(to_bob.as_bytes()));
    let (alice, bob) = (sa("198.51.100.7:4000"), sa("[2001:db8::20]:5000"));
    relays_both_ways(&mut relay, (alice_port, alice), (bob_port, bob));
}

/// ng's `media-handover` reaches the latch: alice's NAT moves her to another port mid-call
/// and, with the flag, her packets from there take over; without it they are refused.
#[test]
fn media_handover_lets_a_new_port_of_the_same_host_take_over() {
    for handover in [false, true] {
        let (mut r, _ports, alice_port, _) = call_with(handover);
        r.handle_packet(at(1), alice_port, sa("198.51.100.7:40001"), &rtp(1))
            .unwrap();
        let moved = r.handle_packet(at(2), alice_port, sa("198.51.100.7:40999"), &rtp(2));
        assert_eq!(moved.is_ok(), handover, "{moved:?}");
    }
}

/// An echo call (the ng flag `echo`, `farside doctor`'s far end): the SDP returned names the
/// port the offerer sends to, and what it sends there comes back to it from that port; a
/// stranger gets nothing, before or after.
#[test]
fn an_echo_call_sends_the_offerers_media_back_to_it_and_nothing_to_a_stranger() {
    let mut relay = Relay::new(RelayConfig::new(ip(RELAY)));
    let mut ports = Ports::default();
    let sdp = offer_sdp("192.168.1.20", 4000);
    let offer = Passing {
        call_id: b"echo-1",
        from_tag: b"doctor",
        to_tag: None,
        sdp: sdp.as_bytes(),
        source: Some(ip(ALICE_SIP)),
        ice: Ice::Remove,
        handover: false,
        recipient_ipv6: None,
    };
    let answer = relay.echo(at(0), &offer, &mut ports).unwrap();
    let text = String::from_utf8(answer.clone()).unwrap();
    assert!(text.contains(&format!("c=IN IP4 {RELAY}\r\n")), "{text}");
    let port = port_in(&answer);
    let stranger = sa("203.0.113.66:6000");
    assert_eq!(
        relay.handle_packet(at(1), port, stranger, &rtp(1)),
        Err(Drop::ForeignSource),
        "before the doctor's first packet"
    );
    // From the port the doctor's NAT picked, back to it, from the port it sent to.
    let doctor = sa("198.51.100.7:40001");
    for seq in 1..=3 {
        assert_eq!(
            relay.handle_packet(at(1), port, doctor, &rtp(seq)),
            Ok(Transmit {
                from_port: port,
                to: doctor
            })
        );
    }
    assert_eq!(
        relay.handle_packet(at(2), port, stranger, &rtp(4)),
        Err(Drop::ForeignSource)
    );
    let c = relay.counters(b"echo-1", 0, 0).unwrap();
    assert_eq!((c.packets, c.foreign), (3, 2));
    // A retransmitted INVITE's echo offer names the same port.
    assert_eq!(
        port_in(&relay.echo(at(2), &offer, &mut ports).unwrap()),
        port
    );
    // Nobody takes the echo over with a plain offer of its Call-ID, and an echo offer takes
    // no other call over.
    assert_eq!(
        relay.offer(at(2), &offer, &mut ports),
        Err(RelayError::CallIdInUse)
    );
    assert!(relay.delete(b"echo-1", &mut ports));
    relay.offer(at(3), &offer, &mut ports).unwrap();
    assert_eq!(
        relay.echo(at(3), &offer, &mut ports),
        Err(RelayError::CallIdInUse)
    );
}
