//! Feeds arbitrary bytes to the SDP reader and rewriter: nothing may panic; what is read must
//! come back unchanged from the default rewrite, and a relay's rewrite (both address families,
//! new ports, ICE removed) must read again with those ports.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sdp_rewrite -- -max_total_time=30` from the repo root.
#![no_main]

use std::net::IpAddr;

use farside_sdp::{Connection, Ice, Rewrite, Sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data) else {
        return;
    };
    let _ = (sdp.has_ice(), sdp.origin_address());
    let mut out = Vec::new();
    sdp.rewrite(&Rewrite::default(), &mut out);
    assert_eq!(out, data);
    let n = sdp.media().count();
    let ports: Vec<Option<u16>> = (0..n).map(|i| u16::try_from(40000 + 2 * i).ok()).collect();
    for address in ["203.0.113.5", "2001:db8::5"] {
        let address: IpAddr = address.parse().expect("literal");
        let r = Rewrite {
            address: Some(address),
            origin: Some(address),
            ports: &ports,
            rtcp_ports: &ports,
            ice: Ice::Remove,
        };
        sdp.rewrite(&r, &mut out);
        let again = Sdp::parse(&out).expect("a rewritten description reads");
        assert!(!again.has_ice());
        for (m, (before, port)) in again.media().zip(sdp.media().zip(&ports)) {
            let want = if before.port == 0 {
                0
            } else {
                port.unwrap_or(before.port)
            };
            assert_eq!(m.port, want);
            assert_eq!(m.connection, Connection::Ip(address));
        }
    }
});
