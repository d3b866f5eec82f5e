//! Whatever arrives, on whatever socket, from wherever: the probe never panics and still
//! finishes.

use std::net::SocketAddr;
use std::time::Duration;

use farside_time::Timestamp;

use farside_probe::{Probe, ProbeConfig, SocketId};
use proptest::prelude::*;

fn probe(now: Timestamp) -> (Probe, Vec<u8>) {
    let config = ProbeConfig {
        server: "192.0.2.1:3478".parse().expect("addr"),
        ..ProbeConfig::default()
    };
    let mut p = Probe::new(config, "10.0.0.2:5000".parse().expect("addr"), now, 7);
    let request = p.poll_transmit().expect("test I").payload;
    (p, request)
}

/// A Binding message with the probe's transaction id, a chosen class and arbitrary
/// attribute bytes: it reaches the attribute decoding behind the id match.
fn with_their_id(request: &[u8], class_bits: u16, body: &[u8]) -> Vec<u8> {
    let ty = 0x0001 | ((class_bits & 1) << 4) | ((class_bits & 2) << 7);
    let body = &body[..body.len() / 4 * 4];
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&ty.to_be_bytes());
    m.extend_from_slice(&u16::try_from(body.len()).expect("small").to_be_bytes());
    m.extend_from_slice(&request[4..20]);
    m.extend_from_slice(body);
    m
}

fn run_to_the_end(p: &mut Probe, mut now: Timestamp) {
    for _ in 0..10_000 {
        while p.poll_transmit().is_some() {}
        while p.poll_event().is_some() {}
        let Some(t) = p.poll_timeout() else { break };
        now = now.max(t);
        p.handle_timeout(now);
    }
    assert!(p.is_done(), "the probe finishes on timeouts alone");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        datagrams in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), 0u32..4, any::<[u8; 4]>(), any::<u16>()),
            0..8,
        ),
    ) {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let (mut p, _) = probe(now);
        for (bytes, socket, ip, port) in datagrams {
            let from = SocketAddr::from((ip, port));
            p.handle_datagram(now, SocketId(socket), from, &bytes);
        }
        run_to_the_end(&mut p, now);
    }

    #[test]
    fn answers_with_our_id_and_arbitrary_attributes_never_panic(
        answers in proptest::collection::vec(
            (0u16..4, proptest::collection::vec(any::<u8>(), 0..120), 0u32..3, any::<bool>()),
            1..6,
        ),
    ) {
        let mut now = Timestamp::from_unix_secs(1_800_000_000);
        let (mut p, request) = probe(now);
        for (class, body, socket, from_server) in answers {
            let from: SocketAddr = if from_server { "192.0.2.1:3478" } else { "192.0.2.2:3479" }
                .parse().expect("addr");
            let msg = with_their_id(&request, class, &body);
            p.handle_datagram(now, SocketId(socket), from, &msg);
            // Later requests have other ids: answer whatever is pending with the same body.
            while let Some(t) = p.poll_transmit() {
                let msg = with_their_id(&t.payload, class, &body);
                p.handle_datagram(now, t.from, from, &msg);
            }
            now += Duration::from_millis(100);
        }
        let report = p.report().clone();
        prop_assert!(report.notes.len() < 16);
        run_to_the_end(&mut p, now);
    }
}
