//! RFC 5780 §4.6 binding lifetime discovery against NATs with known idle timeouts.

mod sim;

use std::time::Duration;

use farside_probe::{Behaviour, Event, LifetimeConfig, ProbeConfig, Progress};
use sim::{NatSpec, ServerKind, World, summary};

use Behaviour::{AddressAndPortDependent as APD, EndpointIndependent as EI};

fn config(max: u64, resolution: u64) -> ProbeConfig {
    ProbeConfig {
        lifetime: Some(LifetimeConfig {
            max: Duration::from_secs(max),
            resolution: Duration::from_secs(resolution),
        }),
        ..ProbeConfig::default()
    }
}

fn nat_with_lifetime(secs: u64) -> NatSpec {
    NatSpec {
        lifetime: Duration::from_secs(secs),
        ..NatSpec::nat(EI, APD, false)
    }
}

#[test]
fn a_20_s_binding_is_found_within_the_resolution() {
    let mut w = World::new(nat_with_lifetime(20), ServerKind::Rfc5780, config(300, 2));
    let r = w.run();
    println!(
        "NAT lifetime 20 s ({:.0} s simulated): {}",
        w.elapsed().as_secs_f64(),
        summary(&r)
    );
    let l = r.lifetime.expect("measured");
    let hi = l.less_than.expect("bounded");
    assert!(
        l.at_least <= Duration::from_secs(20) && Duration::from_secs(20) <= hi,
        "{l:?}"
    );
    assert!(hi - l.at_least <= Duration::from_secs(2), "{l:?}");
    // The other results are unchanged by the lifetime search.
    assert_eq!(r.mapping, Some(EI));
    assert_eq!(r.filtering, Some(APD));
    let trials: Vec<_> = w
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress(Progress::LifetimeTrial { wait, alive }) => {
                Some((wait.as_secs(), *alive))
            }
            _ => None,
        })
        .collect();
    println!("trials: {trials:?}");
    assert_eq!(
        trials,
        [
            (2, true),
            (4, true),
            (8, true),
            (16, true),
            (32, false),
            (24, false),
            (20, false),
            (18, true)
        ]
    );
}

#[test]
fn a_binding_outliving_the_maximum_is_reported_as_at_least_the_maximum() {
    let mut w = World::new(nat_with_lifetime(1000), ServerKind::Rfc5780, config(60, 5));
    let r = w.run();
    println!("NAT lifetime 1000 s, max 60 s: {}", summary(&r));
    let l = r.lifetime.expect("measured");
    assert_eq!(l.at_least, Duration::from_secs(60));
    assert_eq!(l.less_than, None);
}

#[test]
fn a_binding_shorter_than_the_retransmission_gaps_is_measured_and_does_not_fool_mapping() {
    // Socket 0 is silent toward the server for up to 16 s during the filtering tests: the
    // NAT replaces its binding, which the repeated test I notices.
    let mut w = World::new(nat_with_lifetime(9), ServerKind::Rfc5780, config(30, 1));
    let r = w.run();
    println!("NAT lifetime 9 s, resolution 1 s: {}", summary(&r));
    assert_eq!(r.mapping, Some(EI));
    assert_eq!(r.filtering, Some(APD));
    assert!(
        r.notes.iter().any(|n| n.contains("public address changed")),
        "{:?}",
        r.notes
    );
    let l = r.lifetime.expect("measured");
    assert!(l.at_least < Duration::from_secs(9));
    assert!(l.less_than.is_some_and(|hi| hi >= Duration::from_secs(9)));
    assert!(
        l.less_than
            .is_some_and(|hi| hi - l.at_least <= Duration::from_secs(1))
    );
}

#[test]
fn no_lifetime_without_rfc_5780() {
    let mut w = World::new(nat_with_lifetime(20), ServerKind::Basic, config(300, 2));
    let r = w.run();
    println!("lifetime asked, server without RFC 5780: {}", summary(&r));
    assert_eq!(r.lifetime, None);
    assert!(!r.rfc5780);
}
