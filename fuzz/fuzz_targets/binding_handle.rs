//! Feeds arbitrary bytes to the Binding responder as UDP and TCP requests, with and without
//! RFC 5780, and in partner mode: from a client, as a partner message, and as the request
//! inside a correctly signed partner forward. Checks what it promises: any response parses,
//! is a response to a Binding, and never exceeds the classic-client bound (request size + 72
//! bytes); any forward parses and verifies.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run binding_handle -- -max_total_time=30` from the repo root.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, Outcome, Received, Transport,
};
use farside_stun::partner::{PartnerBook, PartnerConfig, PartnerWorker, attr};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};
use farside_time::Timestamp;
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
            let rx = Received {
                transport,
                local,
                remote,
                bytes: data,
            };
            if let Outcome::Respond(r) = server.handle(rx, &mut out) {
                let m = Message::parse(&out[..r.len]).expect("responses parse");
                assert_eq!(m.method(), Method::BINDING);
                assert!(matches!(
                    m.class(),
                    Class::SuccessResponse | Class::ErrorResponse
                ));
                assert!(r.len <= data.len().max(20) + 72 + 8);
            }
        }
    }

    // Partner mode: this server (192.0.2.1) and its partner 203.0.113.5.
    const NOW: u64 = 1_800_000_000_000;
    const SECRET: &[u8] = b"fuzzing partner secret";
    let partner: SocketAddr = "203.0.113.5:3478".parse().expect("literal");
    let book = Arc::new(PartnerBook::new(
        PartnerConfig {
            primary: local,
            alternate_port: 3479,
            partners: vec![partner.ip()],
            secrets: vec![SECRET.to_vec()],
            max_age: Duration::from_secs(10),
            rate_limit: 5,
            heartbeat: Duration::from_secs(2),
        },
        Timestamp::from_unix_millis(NOW - 1),
    ));
    let mut worker = PartnerWorker::new(book, 1, true);
    let check = |o: Outcome, out: &[u8], request_len: usize| match o {
        Outcome::Respond(r) => {
            let m = Message::parse(&out[..r.len]).expect("responses parse");
            assert_eq!(m.method(), Method::BINDING);
            assert!(matches!(
                m.class(),
                Class::SuccessResponse | Class::ErrorResponse
            ));
            assert!(r.len <= request_len.max(20) + 72 + 8);
        }
        Outcome::Forward(f) => {
            let m = Message::parse(&out[..f.len]).expect("forwards parse");
            m.verify_integrity_sha256(SECRET)
                .expect("forwards are signed");
            assert_eq!(f.to, partner);
        }
        _ => {}
    };
    for from in [remote, partner] {
        let rx = Received {
            transport: Transport::Udp,
            local,
            remote: from,
            bytes: data,
        };
        let o = rfc5780.handle_at(
            rx,
            Some((&mut worker, Timestamp::from_unix_millis(NOW))),
            &mut out,
        );
        check(o, &out, data.len());
    }
    // The same bytes as the client request inside a genuine forward.
    let mut fwd = [0u8; 2400];
    let header = Header {
        cookie: farside_stun::MAGIC_COOKIE.to_be_bytes(),
        transaction_id: TransactionId([7; 12]),
    };
    let ty = MessageType {
        class: Class::Indication,
        method: Method::BINDING,
    };
    let Ok(mut b) = MessageBuilder::new(&mut fwd, ty, header) else {
        return;
    };
    let xor_client = [
        0,
        1,
        0x21 ^ 0x0f,
        0x12 ^ 0xa0,
        0x21 ^ 198,
        0x12 ^ 51,
        0xa4 ^ 100,
        0x42 ^ 9,
    ];
    if b.add_raw(attr::PARTNER_TIMESTAMP, &NOW.to_be_bytes())
        .is_err()
        || b.add_raw(attr::PARTNER_CLIENT, &xor_client).is_err()
        || b.add_raw(attr::PARTNER_OTHER, &xor_client).is_err()
        || b.add_raw(
            attr::PARTNER_ANSWER_PORT,
            &[0, 0, 0, u8::from(data.len() % 2 == 1)],
        )
        .is_err()
        || b.add_raw(attr::PARTNER_REQUEST, data).is_err()
        || b.add_message_integrity_sha256(SECRET).is_err()
    {
        return;
    }
    let n = b.finish();
    let rx = Received {
        transport: Transport::Udp,
        local,
        remote: partner,
        bytes: &fwd[..n],
    };
    let o = rfc5780.handle_at(
        rx,
        Some((&mut worker, Timestamp::from_unix_millis(NOW))),
        &mut out,
    );
    check(o, &out, data.len());
});
