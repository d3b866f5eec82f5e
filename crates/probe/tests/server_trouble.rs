//! Servers that cannot do RFC 5780, servers that are down, and a lossy network.

mod sim;

use std::time::Duration;

use farside_probe::{Behaviour, ClassicType, ProbeConfig};
use sim::{Loss, NatSpec, ServerKind, World, addr, summary};

use Behaviour::{
    AddressAndPortDependent as APD, AddressDependent as AD, EndpointIndependent as EI,
};

fn home_router() -> NatSpec {
    NatSpec::nat(EI, APD, false)
}

#[test]
fn a_server_without_rfc_5780_gives_the_public_address_only() {
    let mut w = World::new(home_router(), ServerKind::Basic, ProbeConfig::default());
    let r = w.run();
    println!(
        "server without RFC 5780 ({:?}): {}",
        w.elapsed(),
        summary(&r)
    );
    assert!(r.reachable);
    assert!(!r.rfc5780);
    assert_eq!(r.public, Some(addr("203.0.113.1:40000")));
    assert_eq!(r.nat, Some(true));
    assert_eq!(r.other_address, None);
    assert_eq!((r.mapping, r.filtering, r.hairpinning), (None, None, None));
    assert_eq!(r.classic, ClassicType::Unknown);
    assert!(
        r.notes[0].contains("no RFC 5780 support (no OTHER-ADDRESS)"),
        "{:?}",
        r.notes
    );
    assert_eq!(w.sent, 1, "the probe ends after test I");
    assert!(w.elapsed() < Duration::from_millis(50));
}

#[test]
fn a_420_to_change_request_ends_the_probe_after_test_i() {
    let mut w = World::new(
        home_router(),
        ServerKind::ClaimsButRefuses,
        ProbeConfig::default(),
    );
    let r = w.run();
    println!(
        "server refusing CHANGE-REQUEST ({:?}): {}",
        w.elapsed(),
        summary(&r)
    );
    assert!(r.reachable);
    assert!(!r.rfc5780);
    assert_eq!(r.public, Some(addr("203.0.113.1:40000")));
    assert_eq!((r.mapping, r.filtering, r.hairpinning), (None, None, None));
    assert_eq!(r.classic, ClassicType::Unknown);
    assert!(
        r.notes.iter().any(|n| n.contains("error 420")),
        "{:?}",
        r.notes
    );
    assert!(
        w.elapsed() < Duration::from_millis(100),
        "no waiting for the other tests"
    );
}

#[test]
fn a_dead_server_means_udp_blocked_after_the_rfc_8489_timeout() {
    let mut w = World::new(home_router(), ServerKind::Dead, ProbeConfig::default());
    let r = w.run();
    println!("dead server ({:?}): {}", w.elapsed(), summary(&r));
    assert!(!r.reachable);
    assert!(!r.rfc5780);
    assert_eq!(r.public, None);
    assert_eq!(r.classic, ClassicType::UdpBlocked);
    assert!(
        r.notes[0].contains("no answer from 192.0.2.1:3478"),
        "{:?}",
        r.notes
    );
    assert_eq!(w.sent, 7, "Rc = 7 requests");
    assert_eq!(
        w.elapsed(),
        Duration::from_millis(39_500),
        "Rc, Rm and RTO of RFC 8489"
    );

    let config = ProbeConfig {
        rto: Duration::from_millis(100),
        retransmits: 2,
        ..ProbeConfig::default()
    };
    let mut w = World::new(home_router(), ServerKind::Dead, config);
    let r = w.run();
    println!(
        "dead server, rto 100 ms, 2 retransmits ({:?}): {}",
        w.elapsed(),
        summary(&r)
    );
    assert_eq!(w.sent, 3);
    assert_eq!(w.elapsed(), Duration::from_millis(100 + 200 + 1600));
}

#[test]
fn retransmissions_recover_from_packet_loss() {
    for spec in [
        NatSpec::nat(EI, EI, true),
        NatSpec::nat(EI, AD, false),
        home_router(),
        NatSpec::nat(APD, APD, false),
    ] {
        let clean = World::new(spec, ServerKind::Rfc5780, ProbeConfig::default()).run();
        let mut w = World::with_loss(
            spec,
            ServerKind::Rfc5780,
            ProbeConfig::default(),
            Loss::FirstOfEachFlow(2),
        );
        let r = w.run();
        println!(
            "{}M {}F, first 2 datagrams of each flow lost ({} lost, {} sent, {:.1} s): {}",
            spec.mapping.short(),
            spec.filtering.short(),
            w.lost,
            w.sent,
            w.elapsed().as_secs_f64(),
            summary(&r)
        );
        assert!(w.lost >= 8, "loss happened: {}", w.lost);
        assert_eq!(r, clean);
    }
}
