//! Calls through the RTP relay, in the simulated network of `sim`: the SIP server hands each
//! relayed call's offer and answer to the relay and passes on the SDP it gets back, so each
//! phone sees only the relay's address; it tells the relay when the call ends. Which calls are
//! relayed is `[rtp] relay`'s rule (`nated` by default).

mod sim;

use std::time::Duration;

use farside_sip::media::RelayPolicy;
use farside_sip::server::{Event, SipServerConfig};
use sim::relay::{Asked, FakeRelay, RELAY};
use sim::{Answer, NatSpec, World, config, server};

const ALICE: &str = "sip:alice@example.org";

fn home_router() -> NatSpec {
    NatSpec {
        lifetime: Duration::from_secs(60),
        alg: false,
    }
}

/// A world whose server relays through a [`FakeRelay`] by `policy`.
fn world(policy: RelayPolicy, seed: u64) -> (World, FakeRelay) {
    let relay = FakeRelay::default();
    let config = SipServerConfig {
        relay: policy,
        mirror_user: farside_sip::mirror::DEFAULT_USER.into(),
        ..config(None)
    };
    let mut s = server(config, seed);
    s.set_media_relay(Box::new(relay.clone()));
    (World::new(s), relay)
}

fn kinds(asked: &[Asked]) -> Vec<&'static str> {
    asked
        .iter()
        .map(|a| match a {
            Asked::Offer(..) => "offer",
            Asked::Answer(..) => "answer",
            Asked::Delete(..) => "delete",
            Asked::Echo(..) => "echo",
        })
        .collect()
}

/// Alice behind a home router takes a call from bob on a public address: bob's offer goes to
/// the relay with bob's address as its source, alice's answer with her router's, and each
/// phone's SDP names only the relay; bob's BYE deletes the call.
#[test]
fn a_call_to_a_phone_behind_nat_is_relayed_and_each_side_sees_only_the_relay() {
    let (mut w, relay) = world(RelayPolicy::Nated, 21);
    let nat = w.add_nat(home_router(), "203.0.113.10");
    let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.phone(alice).answer = Answer::Accept { after_ms: 1_000 };
    w.register(alice);
    w.run_for(Duration::from_secs(1));
    w.call(bob, ALICE, "call-relayed");
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.phone(bob).call_answers, [200]);
    let offer_seen = &w.phone(alice).sdp_seen[0];
    assert!(
        offer_seen.contains(&format!("c=IN IP4 {RELAY}")) && !offer_seen.contains("198.51.100.5"),
        "alice sees the relay, not bob: {offer_seen}"
    );
    let answer_seen = &w.phone(bob).sdp_seen[0];
    assert!(
        answer_seen.contains(&format!("c=IN IP4 {RELAY}")) && !answer_seen.contains("192.168."),
        "bob sees the relay, not alice's private address: {answer_seen}"
    );
    w.hang_up(bob, "call-relayed");
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(alice).byes, 1);
    let asked = relay.asked();
    assert_eq!(kinds(&asked), ["offer", "answer", "delete"], "{asked:?}");
    let bob_ip = w.public_ip_of(bob);
    let alice_public = w.public_ip_of(alice);
    assert!(
        matches!(&asked[0], Asked::Offer(id, _, Some(ip)) if id == "call-relayed" && *ip == bob_ip)
    );
    assert!(matches!(&asked[1], Asked::Answer(_, _, Some(ip)) if *ip == alice_public));
    assert_eq!(w.server.relayed_calls(), 0);
    assert_eq!(w.count(|e| *e == Event::MediaDeleted), 1);
    assert_eq!(
        w.count(|e| matches!(
            e,
            Event::MediaRelayed {
                rewritten: true,
                ..
            }
        )),
        2
    );
}

/// Between two phones on public addresses `nated` leaves the SDP alone and never asks the
/// relay; `always` relays the same call; `never` relays not even a NATed one.
#[test]
fn the_policy_decides_which_calls_are_relayed() {
    for (policy, public_callee, relayed) in [
        (RelayPolicy::Nated, true, false),
        (RelayPolicy::Always, true, true),
        (RelayPolicy::Never, false, false),
    ] {
        let (mut w, relay) = world(policy, 22);
        let nat = w.add_nat(home_router(), "203.0.113.10");
        let alice = if public_callee {
            w.add_phone("alice", "198.51.100.20:5070", None)
        } else {
            w.add_phone("alice", "192.168.1.20:5070", Some(nat))
        };
        let bob = w.add_phone("bob", "198.51.100.5:5060", None);
        w.phone(alice).answer = Answer::Accept { after_ms: 0 };
        w.register(alice);
        w.run_for(Duration::from_secs(1));
        w.call(bob, ALICE, "call-policy");
        w.run_for(Duration::from_secs(2));
        assert_eq!(w.phone(bob).call_answers, [200], "{policy:?}");
        let bob_sdp = w.phone(bob).sdp();
        let seen = w.phone(alice).sdp_seen[0].clone();
        assert_eq!(seen == bob_sdp, !relayed, "{policy:?}: {seen}");
        assert_eq!(relay.asked().is_empty(), !relayed, "{policy:?}");
    }
}

/// Forked to a busy desk phone and a mobile that answers: the desk's 486 does not end the
/// relayed call (the caller never sees it); the BYE does. A call whose only phone is busy is
/// deleted when the 486 goes to the caller.
#[test]
fn a_busy_fork_keeps_the_relayed_call_and_a_refused_call_frees_it() {
    let (mut w, relay) = world(RelayPolicy::Nated, 23);
    let nat = w.add_nat(home_router(), "203.0.113.10");
    let desk = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    let mobile = w.add_phone("alice", "192.168.1.21:5070", Some(nat));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.phone(desk).answer = Answer::Busy;
    w.phone(mobile).answer = Answer::Accept { after_ms: 2_000 };
    w.register(desk);
    w.register(mobile);
    w.run_for(Duration::from_secs(1));
    w.call(bob, ALICE, "call-fork");
    w.run_for(Duration::from_secs(5));
    assert_eq!(w.phone(bob).call_answers, [200]);
    assert_eq!(kinds(&relay.asked()), ["offer", "answer"]);
    assert_eq!(w.server.relayed_calls(), 1);
    w.hang_up(bob, "call-fork");
    w.run_for(Duration::from_secs(1));
    assert_eq!(kinds(&relay.asked()), ["offer", "answer", "delete"]);

    // Now only the busy phone is left.
    w.phone(mobile).answer = Answer::Busy;
    w.call(bob, ALICE, "call-busy");
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.phone(bob).call_answers, [200, 486]);
    let asked = relay.asked();
    assert_eq!(kinds(&asked[3..]), ["offer", "delete"], "{asked:?}");
    assert!(matches!(&asked[4], Asked::Delete(id) if id == "call-busy"));
    assert_eq!(w.server.relayed_calls(), 0);
}

/// A late offer (RFC 3261 §13.2.1): bob calls with an INVITE without SDP, alice behind a NAT
/// offers in her 200, and bob answers in his ACK. The relay gets alice's offer with her tag as
/// the offerer's and bob's answer likewise (as rtpengine expects), and each phone sees only the
/// relay's address.
#[test]
fn a_late_offer_is_relayed_from_the_2xx_and_answered_from_the_ack() {
    let (mut w, relay) = world(RelayPolicy::Nated, 24);
    let nat = w.add_nat(home_router(), "203.0.113.10");
    let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.phone(alice).answer = Answer::Accept { after_ms: 500 };
    w.phone(bob).late_offer = true;
    w.register(alice);
    w.run_for(Duration::from_secs(1));
    w.call(bob, ALICE, "call-late");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.phone(bob).call_answers, [200]);
    assert_eq!(
        w.phone(alice).sdp_seen[0],
        "",
        "the INVITE carried no offer"
    );
    let offer_at_bob = &w.phone(bob).sdp_seen[0];
    assert!(
        offer_at_bob.contains(&format!("c=IN IP4 {RELAY}")),
        "bob gets alice's offer naming the relay: {offer_at_bob}"
    );
    let answer_at_alice = &w.phone(alice).sdp_seen[1];
    assert!(
        answer_at_alice.contains(&format!("c=IN IP4 {RELAY}"))
            && !answer_at_alice.contains("198.51.100.5"),
        "alice gets bob's answer naming the relay: {answer_at_alice}"
    );
    let asked = relay.asked();
    assert_eq!(kinds(&asked), ["offer", "answer"], "{asked:?}");
    let alice_public = w.public_ip_of(alice);
    let bob_ip = w.public_ip_of(bob);
    let (Asked::Offer(_, offerer, Some(from)), Asked::Answer(_, answered, Some(by))) =
        (&asked[0], &asked[1])
    else {
        panic!("{asked:?}")
    };
    assert!(
        offerer.starts_with("aalice"),
        "alice's tag offers: {asked:?}"
    );
    assert_eq!(offerer, answered, "the answer names the offerer's tag");
    assert_eq!((*from, *by), (alice_public, bob_ip));
    w.hang_up(bob, "call-late");
    w.run_for(Duration::from_secs(1));
    assert_eq!(kinds(&relay.asked()), ["offer", "answer", "delete"]);
}

/// A phone behind NAT dials the echo service (`farside-echo`, `farside doctor`'s far end): the
/// server answers 200 itself with the relay's echo SDP (the phone's public address as the
/// media's source), takes the ACK (no 200 sent again), and the BYE ends the relay's call. A
/// server without a relay answers 503.
#[test]
fn the_echo_service_answers_with_the_relays_echo_and_its_bye_ends_it() {
    let (mut w, relay) = world(RelayPolicy::Nated, 23);
    let nat = w.add_nat(home_router(), "203.0.113.10");
    let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    w.call(alice, "sip:farside-echo@example.org", "call-echo");
    w.run_for(Duration::from_secs(10));
    assert_eq!(
        w.phone(alice).call_answers,
        [200],
        "once: the ACK stopped it"
    );
    let answer = &w.phone(alice).sdp_seen[0];
    assert!(answer.contains(&format!("c=IN IP4 {RELAY}")), "{answer}");
    let public = w.public_ip_of(alice);
    assert_eq!(
        relay.asked(),
        [Asked::Echo(
            "call-echo".into(),
            w.phone(alice).tag.clone(),
            Some(public)
        )]
    );
    assert_eq!(w.count(|e| matches!(e, Event::EchoCall)), 1);
    w.hang_up(alice, "call-echo");
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(alice).hung_up, 1);
    assert_eq!(kinds(&relay.asked()), ["echo", "delete"]);

    let mut w = World::new(server(config(None), 24));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.call(bob, "sip:farside-echo@example.org", "call-echo-2");
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(bob).call_answers, [503]);
}
