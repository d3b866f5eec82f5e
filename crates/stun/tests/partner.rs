//! Partner mode, sans-IO: server A (one address) hands change-IP requests to partner B, which
//! answers the client; forged, replayed, stale and excess partner messages are refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::attributes::{
    ChangeRequest, ChangedAddress, OtherAddress, ResponseOrigin, ResponsePort, SourceAddress,
    XorMappedAddress,
};
use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, DropReason, Outcome, Received, Response,
    Transport,
};
use farside_stun::partner::{PartnerBook, PartnerConfig, PartnerMessage, PartnerWorker};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

const P: u16 = 3478;
const Q: u16 = 3479;
const T0: u64 = 1_800_000_000_000;

/// `t` Unix milliseconds as the cores' time.
fn ms(t: u64) -> Timestamp {
    Timestamp::from_unix_millis(t)
}
const SECRET: &[u8] = b"a shared secret of some length";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const A: &str = "192.0.2.1";
const B: &str = "198.51.100.2";
const C: &str = "203.0.113.3";
const CLIENT: &str = "192.0.2.77:40000";

/// A one-address server at `me` with `partners`, and one worker's partner state.
struct Node {
    server: BindingServer,
    worker: PartnerWorker,
    me: IpAddr,
}

fn node_with(me: &str, partners: &[&str], secrets: &[&[u8]], rate_limit: u32) -> Node {
    let me = ip(me);
    let partners: Vec<IpAddr> = partners.iter().map(|p| ip(p)).collect();
    let server = BindingServer::new(BindingConfig {
        alternate: Some(AlternateAddress {
            primary_ip: me,
            primary_port: P,
            alternate_ip: partners[0],
            alternate_port: Q,
        }),
        software: None,
    });
    let book = Arc::new(PartnerBook::new(
        PartnerConfig {
            primary: SocketAddr::new(me, P),
            alternate_port: Q,
            partners,
            secrets: secrets.iter().map(|s| s.to_vec()).collect(),
            max_age: Duration::from_secs(10),
            rate_limit,
            heartbeat: Duration::from_secs(2),
        },
        ms(T0),
    ));
    Node {
        server,
        worker: PartnerWorker::new(book, 7, true),
        me,
    }
}

fn node(me: &str, partners: &[&str]) -> Node {
    node_with(me, partners, &[SECRET], 100)
}

impl Node {
    /// Hands `bytes` from `remote` arriving on `local` to the server at time `now`.
    fn rx(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        now: u64,
    ) -> (Outcome, Vec<u8>) {
        let mut out = vec![0u8; 2048];
        let o = self.server.handle_at(
            Received {
                transport: Transport::Udp,
                local,
                remote,
                bytes,
            },
            Some((&mut self.worker, ms(now))),
            &mut out,
        );
        let len = match o {
            Outcome::Respond(r) => r.len,
            Outcome::Forward(m) => m.len,
            _ => 0,
        };
        out.truncate(len);
        (o, out)
    }

    fn primary(&self) -> SocketAddr {
        SocketAddr::new(self.me, P)
    }

    /// A client request arriving on this server's primary address.
    fn request(&mut self, req: &[u8], now: u64) -> (Outcome, Vec<u8>) {
        self.rx(self.primary(), sa(CLIENT), req, now)
    }

    /// A partner message from `from` delivered to this server's primary address.
    fn deliver(&mut self, from: &Node, bytes: &[u8], now: u64) -> (Outcome, Vec<u8>) {
        self.rx(self.primary(), from.primary(), bytes, now)
    }
}

fn binding(tid: u8, change_ip: bool, change_port: bool, cookie: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let header = Header {
        cookie: if cookie {
            farside_stun::MAGIC_COOKIE.to_be_bytes()
        } else {
            [9, 8, 7, 6]
        },
        transaction_id: TransactionId([tid; 12]),
    };
    let ty = MessageType {
        class: Class::Request,
        method: Method::BINDING,
    };
    let mut b = MessageBuilder::new(&mut buf, ty, header).expect("room");
    if change_ip || change_port {
        b.add(&ChangeRequest {
            change_ip,
            change_port,
        })
        .expect("room");
    }
    let n = b.finish();
    buf.truncate(n);
    buf
}

fn forward(o: &Outcome) -> PartnerMessage {
    match o {
        Outcome::Forward(m) => *m,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn response(o: &Outcome) -> Response {
    match o {
        Outcome::Respond(r) => *r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn attr<'a, T: farside_stun::Attribute<'a>>(m: &Message<'a>) -> T {
    m.attribute::<T>()
        .expect("attribute present")
        .expect("attribute parses")
}

#[test]
fn change_ip_and_port_is_answered_by_the_partner_from_its_alternate_port() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let req = binding(1, true, true, true);
    let (o, fwd) = a.request(&req, T0 + 5);
    let m = forward(&o);
    assert_eq!(m.from, a.primary());
    assert_eq!(m.to, b.primary());

    let (o, resp) = b.deliver(&a, &fwd, T0 + 6);
    let r = response(&o);
    assert_eq!(r.from, SocketAddr::new(ip(B), Q));
    assert_eq!(r.to, sa(CLIENT));
    assert!(r.changed && r.forwarded);
    let msg = Message::parse(&resp).expect("response parses");
    assert_eq!(msg.class(), Class::SuccessResponse);
    assert_eq!(msg.transaction_id(), TransactionId([1; 12]));
    assert_eq!(attr::<XorMappedAddress>(&msg).0, sa(CLIENT));
    assert_eq!(attr::<ResponseOrigin>(&msg).0, SocketAddr::new(ip(B), Q));
    // OTHER-ADDRESS as server A gave it: the partner with the other port.
    assert_eq!(attr::<OtherAddress>(&msg).0, SocketAddr::new(ip(B), Q));
}

#[test]
fn change_ip_only_is_answered_from_the_partners_primary_port_and_honours_response_port() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let mut req = binding(2, true, false, true);
    // Append RESPONSE-PORT by rebuilding the request.
    {
        let mut buf = vec![0u8; 512];
        let m = Message::parse(&req).expect("parses");
        let mut bld = MessageBuilder::new(&mut buf, m.message_type(), m.header()).expect("room");
        bld.add(&ChangeRequest {
            change_ip: true,
            change_port: false,
        })
        .expect("room");
        bld.add(&ResponsePort(50000)).expect("room");
        let n = bld.finish();
        buf.truncate(n);
        req = buf;
    }
    let (o, fwd) = a.request(&req, T0 + 5);
    forward(&o);
    let (o, _) = b.deliver(&a, &fwd, T0 + 6);
    let r = response(&o);
    assert_eq!(r.from, SocketAddr::new(ip(B), P));
    assert_eq!(r.to, sa("192.0.2.77:50000"));
}

#[test]
fn change_port_and_plain_requests_stay_on_the_first_server() {
    let mut a = node(A, &[B]);
    let (o, resp) = a.request(&binding(3, false, true, true), T0);
    let r = response(&o);
    assert_eq!(r.from, SocketAddr::new(ip(A), Q));
    assert!(!r.forwarded);

    let (o, resp2) = a.request(&binding(4, false, false, true), T0);
    assert_eq!(response(&o).from, a.primary());
    for bytes in [&resp, &resp2] {
        let msg = Message::parse(bytes).expect("parses");
        assert_eq!(attr::<OtherAddress>(&msg).0, SocketAddr::new(ip(B), Q));
    }
}

#[test]
fn classic_clients_get_the_partner_as_changed_address() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let (o, resp) = a.request(&binding(5, false, false, false), T0);
    response(&o);
    let msg = Message::parse(&resp).expect("parses");
    assert_eq!(attr::<ChangedAddress>(&msg).0, SocketAddr::new(ip(B), Q));

    let (o, fwd) = a.request(&binding(6, true, true, false), T0);
    forward(&o);
    let (o, resp) = b.deliver(&a, &fwd, T0 + 1);
    let r = response(&o);
    let msg = Message::parse(&resp).expect("parses");
    assert!(!msg.has_magic_cookie());
    assert_eq!(attr::<SourceAddress>(&msg).0, r.from);
    assert_eq!(attr::<ChangedAddress>(&msg).0, SocketAddr::new(ip(B), Q));
}

#[test]
fn a_replayed_forward_is_refused() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let (o, fwd) = a.request(&binding(7, true, true, true), T0);
    forward(&o);
    response(&b.deliver(&a, &fwd, T0 + 1).0);
    let (o, _) = b.deliver(&a, &fwd, T0 + 2);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerReplay));
    // Still refused late in its validity window.
    let (o, _) = b.deliver(&a, &fwd, T0 + 9_999);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerReplay));
}

#[test]
fn forged_forwards_are_refused() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let (o, fwd) = a.request(&binding(8, true, true, true), T0);
    forward(&o);

    // Another key.
    let mut mallory = node_with(A, &[B], &[b"not the shared secret at all"], 100);
    let (o, forged) = mallory.request(&binding(9, true, true, true), T0);
    forward(&o);
    assert_eq!(
        b.deliver(&a, &forged, T0 + 1).0,
        Outcome::Drop(DropReason::PartnerForged)
    );

    // Any changed byte (here the request, inside the signed part).
    for i in [20, 30, fwd.len() - 40, fwd.len() - 1] {
        let mut t = fwd.clone();
        t[i] ^= 0x40;
        let (o, _) = b.deliver(&a, &t, T0 + 1);
        assert!(
            matches!(o, Outcome::Drop(_)) && !matches!(o, Outcome::Drop(DropReason::PartnerReplay)),
            "byte {i}: {o:?}"
        );
    }

    // The right bytes from the wrong place: not a partner, a partner's other port, or to
    // our alternate port.
    let (o, _) = b.rx(b.primary(), sa("192.0.2.66:3478"), &fwd, T0 + 1);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerForged));
    let (o, _) = b.rx(b.primary(), SocketAddr::new(ip(A), Q), &fwd, T0 + 1);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerForged));
    let (o, _) = b.rx(SocketAddr::new(ip(B), Q), a.primary(), &fwd, T0 + 1);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerForged));

    // None of the refusals burnt the nonce: the genuine message still works once.
    response(&b.deliver(&a, &fwd, T0 + 1).0);
}

#[test]
fn stale_and_future_forwards_are_refused() {
    let mut a = node(A, &[B]);
    let mut b = node(B, &[A]);
    let (o, fwd) = a.request(&binding(10, true, true, true), T0 + 1_000);
    forward(&o);
    assert_eq!(
        b.deliver(&a, &fwd, T0 + 11_001).0,
        Outcome::Drop(DropReason::PartnerStale)
    );
    let (o, fwd) = a.request(&binding(11, true, true, true), T0 + 30_000);
    forward(&o);
    assert_eq!(
        b.deliver(&a, &fwd, T0 + 15_000).0,
        Outcome::Drop(DropReason::PartnerStale)
    );
    // Signed before B started: a capture replayed after a restart.
    let (o, fwd) = a.request(&binding(12, true, true, true), T0 - 1);
    forward(&o);
    assert_eq!(
        b.deliver(&a, &fwd, T0 + 1).0,
        Outcome::Drop(DropReason::PartnerStale)
    );
}

#[test]
fn a_rotated_secret_still_verifies() {
    let mut a = node_with(A, &[B], &[b"the old secret, still in use"], 100);
    let mut b = node_with(
        B,
        &[A],
        &[
            b"the new secret, signing now",
            b"the old secret, still in use",
        ],
        100,
    );
    let (o, fwd) = a.request(&binding(13, true, true, true), T0);
    forward(&o);
    response(&b.deliver(&a, &fwd, T0 + 1).0);
}

#[test]
fn forwards_and_answers_are_rate_limited() {
    let mut a = node_with(A, &[B], &[SECRET], 2);
    let mut b = node_with(B, &[A], &[SECRET], 1);
    let mut fwds = Vec::new();
    for tid in 20..22 {
        let (o, f) = a.request(&binding(tid, true, true, true), T0);
        forward(&o);
        fwds.push(f);
    }
    let (o, _) = a.request(&binding(22, true, true, true), T0);
    assert_eq!(o, Outcome::Drop(DropReason::PartnerRateLimited));
    let (o, _) = a.request(&binding(23, true, true, true), T0 + 1_000);
    forward(&o);

    response(&b.deliver(&a, &fwds[0], T0 + 1).0);
    assert_eq!(
        b.deliver(&a, &fwds[1], T0 + 2).0,
        Outcome::Drop(DropReason::PartnerRateLimited)
    );
}

#[test]
fn round_robin_and_a_retransmission_goes_to_the_next_partner() {
    let mut a = node(A, &[B, C]);
    let targets: Vec<IpAddr> = (30..34)
        .map(|tid| {
            forward(&a.request(&binding(tid, true, true, true), T0).0)
                .to
                .ip()
        })
        .collect();
    assert_ne!(targets[0], targets[1]);
    assert_eq!(targets[0], targets[2]);
    assert_eq!(targets[1], targets[3]);

    let req = binding(40, true, true, true);
    let first = forward(&a.request(&req, T0).0).to.ip();
    let again = forward(&a.request(&req, T0 + 500).0).to.ip();
    let third = forward(&a.request(&req, T0 + 1_500).0).to.ip();
    assert_ne!(first, again, "a retransmission must try another partner");
    assert_eq!(first, third);
}

#[test]
fn heartbeats_mark_partners_alive_and_dead_ones_are_skipped() {
    let mut a = node(A, &[B, C]);
    let mut b = node(B, &[A]);
    let mut out = vec![0u8; 2048];

    // B greets its one partner once per heartbeat.
    let hello = b
        .worker
        .poll_hello(ms(T0), &mut out)
        .expect("a hello is due");
    assert_eq!(hello.to, a.primary());
    let hello_bytes = out[..hello.len].to_vec();
    assert!(b.worker.poll_hello(ms(T0 + 1), &mut out).is_none());
    assert!(b.worker.poll_hello(ms(T0 + 2_000), &mut out).is_some());

    let (o, _) = a.deliver(&b, &hello_bytes, T0 + 1);
    assert_eq!(o, Outcome::PartnerHello(ip(B)));
    let book = Arc::clone(a.worker.book());
    assert!(book.is_alive(0, ms(T0 + 1)));
    assert!(!book.is_alive(1, ms(T0 + 1)), "C never greeted");

    // C is dead: every forward, retransmissions included, goes to B.
    let req = binding(50, true, true, true);
    for (tid, now) in [(51u8, T0 + 10), (52, T0 + 20), (53, T0 + 30)] {
        assert_eq!(
            forward(&a.request(&binding(tid, true, true, true), now).0)
                .to
                .ip(),
            ip(B)
        );
    }
    assert_eq!(forward(&a.request(&req, T0 + 40).0).to.ip(), ip(B));
    assert_eq!(forward(&a.request(&req, T0 + 540).0).to.ip(), ip(B));
    // OTHER-ADDRESS names only alive partners.
    for last in 1..=40u8 {
        let client = SocketAddr::new(IpAddr::from([192, 0, 2, last]), 40000);
        assert_eq!(a.worker.other_partner(client, ms(T0 + 50)), ip(B));
    }

    // Three heartbeats of silence and B is dead too; with none alive all are tried again.
    assert!(!book.is_alive(0, ms(T0 + 6_002)));
    let tos: Vec<IpAddr> = (60..62)
        .map(|tid| {
            forward(&a.request(&binding(tid, true, true, true), T0 + 7_000).0)
                .to
                .ip()
        })
        .collect();
    assert_ne!(tos[0], tos[1]);

    // A replayed hello is refused like any partner message.
    assert_eq!(
        a.deliver(&b, &hello_bytes, T0 + 7_001).0,
        Outcome::Drop(DropReason::PartnerReplay)
    );
}

#[test]
fn without_partner_state_partner_messages_are_plain_indications() {
    let mut a = node(A, &[B]);
    let (o, fwd) = a.request(&binding(70, true, true, true), T0);
    forward(&o);
    let plain = node(B, &[A]).server;
    let mut out = vec![0u8; 2048];
    let o = plain.handle(
        Received {
            transport: Transport::Udp,
            local: SocketAddr::new(ip(B), P),
            remote: a.primary(),
            bytes: &fwd,
        },
        &mut out,
    );
    assert_eq!(o, Outcome::Drop(DropReason::Indication));
}
