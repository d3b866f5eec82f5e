//! Feeds arbitrary bytes to the Binding responder as UDP and TCP requests, with and without
//! RFC 5780, and checks what it promises: any response parses, is a response to a Binding,
//! and never exceeds the classic-client bound (request size + 72 bytes).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run binding_handle -- -max_total_time=30` from the repo root.
#![no_main]

use std::net::SocketAddr;

use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, Outcome, Received, Transport,
};
use farside_stun::{Class, Message, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "192.0.2.1:3478".parse().expect("literal");
    let remote: SocketAddr = "198.51.100.9:4000".parse().expect("literal");
    let rfc5780 = BindingServer::new(BindingConfig {
        alternate: Some(AlternateAddress {
            primary_ip: local.ip(),
            primary_port: 3478,
            alternate_ip: "192.0.2.2".parse().expect("literal"),
            alternate_port: 3479,
        }),
        software: Some("fuzz".into()),
    });
    let basic = BindingServer::default();
    let mut out = [0u8; 2048];
    for server in [&rfc5780, &basic] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let rx = Received { transport, local, remote, bytes: data };
            if let Outcome::Respond(r) = server.handle(rx, &mut out) {
                let m = Message::parse(&out[..r.len]).expect("responses parse");
                assert_eq!(m.method(), Method::BINDING);
                assert!(matches!(m.class(), Class::SuccessResponse | Class::ErrorResponse));
                assert!(r.len <= data.len().max(20) + 72 + 8);
            }
        }
    }
});
