//! RFC 5780 behaviour discovery against every modelled NAT, through our real Binding server.

mod sim;

use std::time::Duration;

use farside_probe::{Behaviour, ClassicType, ProbeConfig};
use sim::{NatSpec, ServerKind, World, addr, summary};

use Behaviour::{
    AddressAndPortDependent as APD, AddressDependent as AD, EndpointIndependent as EI,
};

const ALL: [Behaviour; 3] = [EI, AD, APD];

fn classic(mapping: Behaviour, filtering: Behaviour) -> ClassicType {
    match (mapping, filtering) {
        (EI, EI) => ClassicType::FullCone,
        (EI, AD) => ClassicType::RestrictedCone,
        (EI, APD) => ClassicType::PortRestrictedCone,
        _ => ClassicType::Symmetric,
    }
}

#[test]
fn every_mapping_filtering_and_hairpinning_combination_is_found() {
    for mapping in ALL {
        for filtering in ALL {
            for hairpin in [false, true] {
                let mut w = World::new(
                    NatSpec::nat(mapping, filtering, hairpin),
                    ServerKind::Rfc5780,
                    ProbeConfig::default(),
                );
                let r = w.run();
                let what = format!(
                    "{}M {}F hairpin {hairpin}",
                    mapping.short(),
                    filtering.short()
                );
                println!(
                    "{what:<28} {:>6.1?} s  {}",
                    w.elapsed().as_secs_f64(),
                    summary(&r)
                );
                assert!(r.reachable && r.rfc5780, "{what}: {r:?}");
                assert_eq!(r.public, Some(addr("203.0.113.1:40000")), "{what}");
                assert_eq!(r.other_address, Some(addr(sim::SERVER_ALT)), "{what}");
                assert_eq!(r.nat, Some(true), "{what}");
                assert_eq!(r.mapping, Some(mapping), "{what}");
                assert_eq!(r.filtering, Some(filtering), "{what}");
                // Destination-dependent mapping with any filtering hides hairpinning from
                // any outside test; the report says "no" and notes why.
                let hidden = mapping != EI && filtering != EI;
                assert_eq!(r.hairpinning, Some(hairpin && !hidden), "{what}");
                assert_eq!(r.notes.len(), usize::from(hidden), "{what}: {:?}", r.notes);
                assert_eq!(r.classic, classic(mapping, filtering), "{what}");
                assert_eq!(r.lifetime, None);
                // Only unanswered filtering or hairpinning requests cost a full timeout.
                assert!(w.elapsed() < Duration::from_secs(41), "{what}");
                if filtering == EI && hairpin {
                    assert!(w.elapsed() < Duration::from_millis(200), "{what}");
                }
            }
        }
    }
}

#[test]
fn a_host_without_nat_or_firewall_is_open_internet() {
    let mut w = World::new(
        NatSpec::firewall(EI),
        ServerKind::Rfc5780,
        ProbeConfig::default(),
    );
    let r = w.run();
    println!("no NAT, no firewall: {}", summary(&r));
    assert_eq!(r.nat, Some(false));
    assert_eq!(r.public, Some(r.local));
    assert_eq!(r.mapping, Some(EI));
    assert_eq!(r.filtering, Some(EI));
    assert_eq!(r.hairpinning, None, "not tested without NAT");
    assert_eq!(r.classic, ClassicType::OpenInternet);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn a_host_behind_a_stateful_firewall_is_a_symmetric_firewall() {
    for filtering in [AD, APD] {
        let mut w = World::new(
            NatSpec::firewall(filtering),
            ServerKind::Rfc5780,
            ProbeConfig::default(),
        );
        let r = w.run();
        println!("no NAT, {}F firewall: {}", filtering.short(), summary(&r));
        assert_eq!(r.nat, Some(false));
        assert_eq!(r.filtering, Some(filtering));
        assert_eq!(r.classic, ClassicType::SymmetricFirewall);
    }
}

#[test]
fn skipped_tests_leave_their_results_empty() {
    let config = ProbeConfig {
        mapping: false,
        hairpinning: false,
        ..ProbeConfig::default()
    };
    let mut w = World::new(NatSpec::nat(EI, AD, true), ServerKind::Rfc5780, config);
    let r = w.run();
    println!("filtering only: {}", summary(&r));
    assert_eq!(r.filtering, Some(AD));
    assert_eq!((r.mapping, r.hairpinning), (None, None));
    assert_eq!(
        r.classic,
        ClassicType::Unknown,
        "a cone or symmetric: cannot tell"
    );

    let config = ProbeConfig {
        filtering: false,
        hairpinning: false,
        ..ProbeConfig::default()
    };
    let mut w = World::new(NatSpec::nat(APD, AD, true), ServerKind::Rfc5780, config);
    let r = w.run();
    println!("mapping only: {}", summary(&r));
    assert_eq!(r.mapping, Some(APD));
    assert_eq!(r.filtering, None);
    assert_eq!(
        r.classic,
        ClassicType::Symmetric,
        "symmetric whatever the filtering"
    );
}
