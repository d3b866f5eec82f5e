//! Whole SIP conversations through the sans-IO server in a simulated network (`sim`): phones
//! behind NAT gateways with binding timeouts, Farside's `SipServer`, and a clock stepped to the
//! next wake-up. Each test is a scenario a user would recognise; together they run in a fraction
//! of a second.

mod sim;

use std::time::Duration;

use farside_sip::nat::NatTests;
use farside_sip::registrar::Outcome;
use farside_sip::server::Event;
use sim::{Answer, DOMAIN, NatSpec, World, config, server};

const ALICE: &str = "sip:alice@example.org";

/// A home router: bindings live 20 s after the last packet out; no ALG.
fn short_nat() -> NatSpec {
    NatSpec {
        lifetime: Duration::from_secs(20),
        alg: false,
    }
}

fn registered(w: &World) -> usize {
    w.count(|e| matches!(e, Event::Register(Outcome::Registered { .. })))
}

/// Alice's phone behind a router that forgets a binding after 20 s registers, then nothing is
/// heard from it for 10 minutes: Farside's OPTIONS pings every 15 s (answered by the phone,
/// which is what refreshes the router's binding) keep it reachable, and a call finds it. Without
/// the pings the same call is lost at the router and the caller gets 408.
#[test]
fn a_phone_behind_a_20_second_nat_stays_reachable_through_10_silent_minutes() {
    for pings in [true, false] {
        let cfg = config(pings.then(|| Duration::from_secs(15)));
        let mut w = World::new(server(cfg, 1));
        let nat = w.add_nat(short_nat(), "203.0.113.7");
        let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
        let bob = w.add_phone("bob", "198.51.100.5:5060", None);
        w.register(alice);
        w.run_for(Duration::from_secs(1));
        assert!(w.phone(alice).registered, "registered");
        assert_eq!(w.phone(alice).register_answers, [401, 200]);

        w.run_for(Duration::from_secs(600));
        w.call(bob, ALICE, "call-1");
        w.run_for(Duration::from_secs(40));
        let options = w.phone(alice).options;
        let answers = w.phone(bob).call_answers.clone();
        if pings {
            assert!((38..=42).contains(&options), "one ping per 15 s: {options}");
            assert_eq!(w.phone(alice).invites, ["call-1"]);
            assert_eq!(answers, [200], "the call was answered");
            assert_eq!(w.nats[nat].dropped, 0, "nothing died at the router");
            assert_eq!(w.count(|e| *e == Event::DialogStarted), 1);
            w.hang_up(bob, "call-1");
            w.run_for(Duration::from_secs(1));
            assert_eq!((w.phone(alice).byes, w.phone(bob).hung_up), (1, 1));
            assert_eq!(w.count(|e| *e == Event::DialogEnded), 1);
            assert_eq!(w.count(|e| *e == Event::PingMissed), 0);
        } else {
            assert_eq!(options, 0);
            assert!(w.phone(alice).invites.is_empty(), "the router dropped it");
            assert!(w.nats[nat].dropped >= 1);
            assert_eq!(answers, [408], "Timer B: Farside's own 408");
        }
    }
}

/// Seed 001's router: a SIP ALG rewrites the phone's Via and Contact and gives every new
/// request a new public port, and the phone (confused by it) asks twice before answering with
/// the first nonce it got. Farside's nonces are stateless and good for any source within their
/// lifetime: the third REGISTER is accepted, with no third challenge, and a call then reaches
/// the phone through the ALG at the port of that last REGISTER.
#[test]
fn a_register_an_alg_rewrote_authenticates_with_the_first_challenge() {
    let mut w = World::new(server(config(None), 2));
    let nat = w.add_nat(
        NatSpec {
            lifetime: Duration::from_secs(60),
            alg: true,
        },
        "203.0.113.8",
    );
    let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    w.phone(alice).answer_with_first_nonce_after = Some(2);
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.register(alice);
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(alice).register_answers, [401, 401, 200]);
    let bindings: Vec<_> = w.server.registrar().bindings(ALICE, w.now).collect();
    assert_eq!(bindings.len(), 1);
    let b = bindings[0];
    assert_eq!(
        b.contact, "sip:alice@203.0.113.8:40003",
        "the ALG's rewrite, kept as it came"
    );
    assert_eq!(b.flow.remote.port(), 40003, "the third request's port");
    assert_eq!(
        w.count(|e| matches!(e, Event::Register(Outcome::AuthFailed))),
        0
    );
    // The server saw the ALG: each new public port's first request named that very port in
    // its Via, which nothing had told the phone; the binding carries the verdict.
    assert!(b.nat.any(NatTests::ALG_SUSPECTED), "{:?}", b.nat);
    let suspected: Vec<_> = w
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AlgSuspected { from, suspicion } => Some((from.clone(), suspicion.source)),
            _ => None,
        })
        .collect();
    assert_eq!(suspected.len(), 3, "one per public port: {suspected:?}");
    assert!(
        suspected
            .iter()
            .all(|(from, source)| from == ALICE && source.ip() == w.public_ip_of(alice)),
        "{suspected:?}"
    );
    w.call(bob, ALICE, "call-alg");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.phone(alice).invites, ["call-alg"]);
    assert_eq!(w.phone(bob).call_answers, [200]);
    // The call is reported too: its callee answered through the ALG. (Bob, on a public
    // address without NAT, looks the same as a phone behind an ALG: "suspected" says so.)
    let on_call: Vec<_> = w
        .events
        .iter()
        .filter_map(|e| match e {
            Event::CallAlgSuspected {
                call_id,
                callee,
                suspicion,
            } => Some((call_id.as_str(), *callee, suspicion.source.ip())),
            _ => None,
        })
        .collect();
    assert!(
        on_call.contains(&("call-alg", true, w.public_ip_of(alice))),
        "{on_call:?}"
    );
    assert!(
        on_call
            .iter()
            .all(|(id, callee, ip)| *id == "call-alg"
                && (*callee || ip.to_string() == "198.51.100.5")),
        "{on_call:?}"
    );
}

/// Farside restarts (a crash, an upgrade) while phones are registered: the new server reads the
/// bindings the old one reported to the store and keeps the keys, so a call still reaches the
/// phone, and a REGISTER that answers a challenge from before the restart is accepted as is.
#[test]
fn registrations_and_nonces_survive_a_restart_from_the_stored_state() {
    let mut w = World::new(server(config(Some(Duration::from_secs(15))), 3));
    let nat = w.add_nat(short_nat(), "203.0.113.9");
    let alice = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    let carol = w.add_phone("carol", "198.51.100.6:5060", None);
    w.register(alice);
    w.run_for(Duration::from_secs(1));
    assert_eq!(registered(&w), 1);
    assert_eq!(w.store[ALICE].len(), 1, "the binding went to the store");
    // Carol is challenged just before the restart and answers just after it.
    let req = w.phone(carol).register(None);
    w.send(carol, req);
    w.run_for(Duration::from_millis(30));
    w.restart(config(Some(Duration::from_secs(15))), 4);
    assert_eq!(w.server.registrar().len(), 1, "alice's binding restored");
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(carol).register_answers, [401, 200]);
    w.run_for(Duration::from_secs(60));
    w.call(bob, ALICE, "call-after-restart");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.phone(alice).invites, ["call-after-restart"]);
    assert_eq!(w.phone(bob).call_answers, [200]);
}

/// Alice has two phones: one is busy, the other rings for two seconds and answers. The INVITE
/// forks to both; the busy one's 486 is acknowledged hop by hop and held back, and the caller
/// gets the 200 only.
#[test]
fn an_invite_forks_and_the_caller_gets_the_answer_not_the_busy_phone() {
    let mut w = World::new(server(config(None), 5));
    let nat = w.add_nat(short_nat(), "203.0.113.10");
    let desk = w.add_phone("alice", "192.168.1.20:5070", Some(nat));
    let mobile = w.add_phone("alice", "192.168.1.21:5070", Some(nat));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.phone(desk).answer = Answer::Busy;
    w.phone(mobile).answer = Answer::Accept { after_ms: 2_000 };
    w.register(desk);
    w.register(mobile);
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.server.registrar().bindings(ALICE, w.now).count(), 2);
    w.call(bob, ALICE, "call-fork");
    w.run_for(Duration::from_secs(5));
    assert_eq!(w.phone(desk).invites, ["call-fork"]);
    assert_eq!(w.phone(mobile).invites, ["call-fork"]);
    assert_eq!(
        w.phone(bob).call_answers,
        [200],
        "no 486 reached the caller"
    );
    assert_eq!(w.count(|e| *e == Event::DialogStarted), 1);
    w.hang_up(bob, "call-fork");
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.phone(mobile).byes, 1);
    assert_eq!(w.phone(desk).byes, 0);
}

/// Both phones ring; the first to answer gets the call and the other is cancelled (RFC 3261
/// §16.7 step 10).
#[test]
fn when_one_fork_answers_the_others_are_cancelled() {
    let mut w = World::new(server(config(None), 6));
    let desk = w.add_phone("alice", "198.51.100.20:5070", None);
    let mobile = w.add_phone("alice", "198.51.100.21:5070", None);
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    w.phone(desk).answer = Answer::Accept { after_ms: 1_000 };
    w.phone(mobile).answer = Answer::Accept { after_ms: 5_000 };
    w.register(desk);
    w.register(mobile);
    w.run_for(Duration::from_secs(1));
    w.call(bob, ALICE, "call-race");
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.phone(bob).call_answers, [200]);
    assert_eq!(
        w.phone(mobile).cancels,
        1,
        "the slower phone stopped ringing"
    );
    assert_eq!(w.phone(desk).cancels, 0);
    let _ = DOMAIN;
}
