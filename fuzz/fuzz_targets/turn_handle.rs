//! Feeds arbitrary bytes to the TURN core: as a client message on a 5-tuple that has an
//! allocation (with a permission and a channel) and on one that has none, and as peer data on
//! the relayed address. Checks that any answer parses as a STUN response and that relayed
//! data is never larger than what came in plus a Data indication's header. Then the same bytes
//! on the control connection of a TCP allocation (RFC 6062) with a Connect under way and as
//! a would-be data connection, and the answers and notices that follow.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run turn_handle -- -max_total_time=30` from the repo root.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{
    AddressFamily, ChannelNumber, Nonce, Realm, RequestedTransport, Username, XorPeerAddress,
    XorRelayedAddress,
};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};
use farside_turn::{
    Credentials, Handled, Notice, Quotas, RelayError, RelayPorts, TurnConfig, TurnServer,
    TurnTransport, UserKeys,
};
use libfuzzer_sys::fuzz_target;

struct Ports(u16);

impl RelayPorts for Ports {
    fn allocate(&mut self, _: AddressFamily, _: bool) -> Result<SocketAddr, RelayError> {
        self.0 += 1;
        Ok(SocketAddr::from(([192, 0, 2, 1], 50000 + self.0)))
    }
    fn allocate_reserving(
        &mut self,
        f: AddressFamily,
    ) -> Result<(SocketAddr, [u8; 8]), RelayError> {
        Ok((self.allocate(f, true)?, [1; 8]))
    }
    fn claim(&mut self, _: [u8; 8]) -> Option<SocketAddr> {
        None
    }
    fn allocate_tcp(&mut self, f: AddressFamily) -> Result<SocketAddr, RelayError> {
        self.allocate(f, false)
    }
    fn release(&mut self, _: SocketAddr) {}
}

fn request(
    method: Method,
    tid: u8,
    nonce: &str,
    body: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Class::Request, method),
        Header::new(TransactionId([tid; 12])),
    )
    .expect("room");
    body(&mut b);
    b.add(&Username("alice")).expect("room");
    b.add(&Realm("farside")).expect("room");
    b.add(&Nonce(nonce)).expect("room");
    let key = farside_stun::long_term_key_md5("alice", "farside", "pw").expect("key");
    b.add_message_integrity(&key).expect("room");
    let n = b.finish();
    buf.truncate(n);
    buf
}

fuzz_target!(|data: &[u8]| {
    let mut creds = Credentials::new();
    creds.add_user(
        "farside",
        "alice",
        UserKeys {
            md5: farside_stun::long_term_key_md5("alice", "farside", "pw").expect("key"),
            sha256: farside_stun::long_term_key_sha256("alice", "farside", "pw").expect("key"),
        },
    );
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let mut server = TurnServer::new(
        TurnConfig::default(),
        Arc::new(creds),
        Arc::new(Quotas::new(0, 20, 0)),
        [3; 32],
    );
    let mut ports = Ports(0);
    let local: SocketAddr = "192.0.2.1:3478".parse().expect("literal");
    let client: SocketAddr = "198.51.100.7:4000".parse().expect("literal");
    let stranger: SocketAddr = "198.51.100.8:4000".parse().expect("literal");
    let peer: SocketAddr = "203.0.113.9:5000".parse().expect("literal");
    let mut out = vec![0u8; 70_000];
    let mut over = |server: &mut TurnServer, transport, from, bytes: &[u8], out: &mut Vec<u8>| {
        server.handle_client(now, transport, local, from, bytes, &mut ports, out)
    };
    let mut send = |server: &mut TurnServer, from, bytes: &[u8], out: &mut Vec<u8>| {
        over(server, TurnTransport::Udp, from, bytes, out)
    };

    // Set up an allocation with a permission and a channel for `client`.
    let challenge = send(
        &mut server,
        client,
        &request(Method::ALLOCATE, 1, "x", |_| {}),
        &mut out,
    );
    let Handled::Refused(t, _) = challenge else {
        return;
    };
    let Ok(m) = Message::parse(&out[..t.len]) else {
        return;
    };
    let Some(Ok(Nonce(nonce))) = m.attribute::<Nonce>() else {
        return;
    };
    let nonce = nonce.to_owned();
    let h = send(
        &mut server,
        client,
        &request(Method::ALLOCATE, 2, &nonce, |b| {
            b.add(&RequestedTransport(17)).expect("room");
        }),
        &mut out,
    );
    let Handled::Answered(t) = h else { return };
    let relayed = Message::parse(&out[..t.len])
        .ok()
        .and_then(|m| m.attribute::<XorRelayedAddress>()?.ok())
        .map(|a| a.0)
        .expect("relayed address");
    send(
        &mut server,
        client,
        &request(Method::CHANNEL_BIND, 3, &nonce, |b| {
            b.add(&ChannelNumber(0x4000)).expect("room");
            b.add(&XorPeerAddress(peer)).expect("room");
        }),
        &mut out,
    );

    for from in [client, stranger] {
        let h = send(&mut server, from, data, &mut out);
        check(h, &out, data);
    }
    if let Handled::Relayed(t) = server.handle_peer(now, relayed, peer, data, &mut out) {
        // STUN header 20, XOR-PEER-ADDRESS 12 (IPv4), DATA header 4, padding up to 3.
        assert!(t.len <= data.len() + 39);
    }

    // A TCP allocation with a permission for `peer` and a Connect to it under way.
    let tcp = TurnTransport::Tcp;
    let h = over(
        &mut server,
        tcp,
        client,
        &request(Method::ALLOCATE, 4, &nonce, |b| {
            b.add(&RequestedTransport(6)).expect("room");
        }),
        &mut out,
    );
    let Handled::Answered(_) = h else { return };
    over(
        &mut server,
        tcp,
        client,
        &request(Method::CREATE_PERMISSION, 5, &nonce, |b| {
            b.add(&XorPeerAddress(peer)).expect("room");
        }),
        &mut out,
    );
    let connect = request(Method::CONNECT, 6, &nonce, |b| {
        b.add(&XorPeerAddress(peer)).expect("room");
    });
    if let Handled::Connect { id, relayed, .. } = over(&mut server, tcp, client, &connect, &mut out)
    {
        let up = data.first().is_some_and(|b| b & 1 == 1);
        if let Some(h) = server.peer_connected(now, id, up, &mut out) {
            check(h, &out, data);
        }
        if let Ok((_, t)) = server.peer_connection(now, relayed, stranger, &mut out) {
            Message::parse(&out[..t.len]).expect("ConnectionAttempt parses");
        }
    }
    for from in [client, stranger] {
        let h = over(&mut server, tcp, from, data, &mut out);
        check(h, &out, data);
    }
    server.expire(now + Duration::from_secs(31), &mut ports);
    for n in server.take_notices() {
        if let Notice::Send { bytes, .. } = n {
            Message::parse(&bytes).expect("late answers parse");
        }
    }
});

/// Answers parse as responses; relayed data is no larger than what came in.
fn check(h: Handled, out: &[u8], data: &[u8]) {
    match h {
        Handled::Answered(t) | Handled::Refused(t, _) | Handled::Bound(t, _) => {
            let m = Message::parse(&out[..t.len]).expect("answers parse");
            assert!(matches!(
                m.class(),
                Class::SuccessResponse | Class::ErrorResponse
            ));
        }
        Handled::Relayed(t) => assert!(t.len <= data.len()),
        Handled::Dropped(_) | Handled::Connect { .. } => {}
    }
}
