//! Edge-proxy conversations without sockets: a NATed phone registers through the edge to an
//! upstream registrar (Path with its flow token), the upstream sends a call back along the
//! Path and the edge puts it on the phone's flow, and the dialog's later requests follow the
//! Record-Route each way. Forged tokens are refused.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;

use farside_sip::edge::Edge;
use farside_sip::flow_token::FlowTokens;
use farside_sip::nat::Transport;
use farside_sip::proxy::Action;
use farside_sip::registrar::Flow;
use farside_sip::{HeaderName, Message, NameAddr};
use farside_time::Timestamp;

const ME: &str = "192.0.2.10:5060";
const UPSTREAM: &str = "127.0.0.1:5090";

fn edge() -> Edge {
    Edge::new(
        ME.parse().unwrap(),
        UPSTREAM.parse().unwrap(),
        FlowTokens::new([9; 32]),
        42,
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A flow from `remote` to the edge's UDP port.
fn flow(remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(ME),
        remote: addr(remote),
    }
}

fn forwarded(a: Action) -> (Vec<u8>, SocketAddr, SocketAddr) {
    match a {
        Action::Forward {
            bytes, from, to, ..
        } => (bytes, from, to),
        other => panic!("not forwarded: {other:?}"),
    }
}

fn code(a: &Action) -> u16 {
    let (Action::Respond(b) | Action::Answer(b)) = a else {
        panic!("no response: {a:?}")
    };
    std::str::from_utf8(&b[8..11]).unwrap().parse().unwrap()
}

fn header(bytes: &[u8], name: HeaderName) -> Option<String> {
    let m = Message::parse(bytes).unwrap();
    m.value(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

const REGISTER: &str = "REGISTER sip:example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKreg1;received=198.51.100.7;rport=40001\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.org>;tag=a1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: reg-1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.168.1.20:5070>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn a_register_goes_upstream_with_a_path_naming_the_phones_flow() {
    let e = edge();
    let phone = flow("198.51.100.7:40001");
    let (bytes, from, to) =
        forwarded(e.request(&Message::parse(REGISTER.as_bytes()).unwrap(), phone));
    assert_eq!((from, to), (addr(ME), addr(UPSTREAM)));
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(
            "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK"
        ),
        "{text}"
    );
    assert!(text.contains("Max-Forwards: 69\r\n"), "{text}");
    let path = header(&bytes, HeaderName::Path).unwrap();
    let path = NameAddr::parse(path.as_bytes()).unwrap();
    let uri = path.uri();
    assert_eq!(uri.host(), b"192.0.2.10");
    assert!(
        uri.params().get("lr").is_some() && uri.params().get("ob").is_some(),
        "{path:?}"
    );
    let token = uri.user().unwrap();
    assert_eq!(FlowTokens::new([9; 32]).flow(token), Some(phone));
    // Everything else the phone wrote is as it wrote it.
    assert!(text.ends_with(&REGISTER[REGISTER.find("Max-Forwards: 70").unwrap() + 18..]));

    // The registrar's 200 comes back to the phone's flow with our Via gone.
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\nVia: SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKreg1;received=198.51.100.7;rport=40001\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:alice@example.org>;tag=r1\r\nCall-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
        text.lines().nth(1).unwrap()
    );
    let (back, from, to) = forwarded(e.response(&Message::parse(ok.as_bytes()).unwrap()));
    assert_eq!((from, to), (addr(ME), addr("198.51.100.7:40001")));
    assert!(!String::from_utf8(back).unwrap().contains("192.0.2.10"));
}

#[test]
fn a_call_along_the_path_leaves_over_the_flow_and_the_dialog_follows_the_record_route() {
    let e = edge();
    let tokens = FlowTokens::new([9; 32]);
    let alice = flow("198.51.100.7:40001");
    let upstream = flow(UPSTREAM);
    let token = tokens.token(&alice);
    // The registrar routes the INVITE to alice's Contact along the Path it stored.
    let invite = format!(
        "INVITE sip:alice@192.168.1.20:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk1\r\n\
Via: SIP/2.0/UDP 198.51.100.8:5080;branch=z9hG4bKc1;received=198.51.100.8;rport=5080\r\n\
Record-Route: <sip:127.0.0.1:5090;lr>\r\n\
Route: <sip:{token}@192.0.2.10:5060;lr;ob>\r\n\
Max-Forwards: 68\r\n\
From: <sip:bob@example.org>;tag=b1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: call-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    );
    let (bytes, from, to) =
        forwarded(e.request(&Message::parse(invite.as_bytes()).unwrap(), upstream));
    assert_eq!((from, to), (addr(ME), alice.remote));
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("\r\nRoute:"), "our Route is gone: {text}");
    assert!(
        text.contains(&format!(
            "Record-Route: <sip:{token}@192.0.2.10:5060;lr>\r\n"
        )),
        "{text}"
    );
    assert!(text.starts_with("INVITE sip:alice@192.168.1.20:5070 SIP/2.0\r\n"));

    // Alice's BYE carries the route set [edge(token), registrar]: the edge sends it upstream.
    let bye = format!(
        "BYE sip:bob@198.51.100.8:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKa2;received=198.51.100.7;rport=40001\r\n\
Route: <sip:{token}@192.0.2.10:5060;lr>, <sip:127.0.0.1:5090;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.org>;tag=a9\r\n\
To: <sip:bob@example.org>;tag=b1\r\n\
Call-ID: call-1\r\n\
CSeq: 1 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    let (bytes, _, to) = forwarded(e.request(&Message::parse(bye.as_bytes()).unwrap(), alice));
    assert_eq!(to, addr(UPSTREAM));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("Route: <sip:127.0.0.1:5090;lr>\r\n"),
        "{text}"
    );
    assert!(!text.contains(&token), "our Route is gone: {text}");
    assert!(
        !text.contains("Record-Route"),
        "in-dialog requests are not record-routed"
    );

    // The same token from the upstream (its BYE to alice) goes out over alice's flow.
    let bye_in = bye
        .replace(
            "Via: SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKa2;received=198.51.100.7;rport=40001",
            "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk2",
        )
        .replace(
            &format!("<sip:{token}@192.0.2.10:5060;lr>, <sip:127.0.0.1:5090;lr>"),
            &format!("<sip:{token}@192.0.2.10:5060;lr>"),
        );
    let (_, from, to) = forwarded(e.request(&Message::parse(bye_in.as_bytes()).unwrap(), upstream));
    assert_eq!((from, to), (alice.local, alice.remote));
}

#[test]
fn forged_tokens_unknown_targets_and_loops_are_refused() {
    let e = edge();
    let upstream = flow(UPSTREAM);
    let forged = FlowTokens::new([1; 32]).token(&flow("192.0.2.99:5060"));
    let req = |route: &str, mf: u8| {
        format!(
            "MESSAGE sip:alice@192.168.1.20:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk9\r\n\
{route}Max-Forwards: {mf}\r\n\
From: <sip:bob@example.org>;tag=b1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: m-1\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let forged_route = format!("Route: <sip:{forged}@192.0.2.10:5060;lr>\r\n");
    for (msg, want) in [
        (req(&forged_route, 70), 403),
        // The upstream sending a request with no Route: the edge is no open relay.
        (req("", 70), 404),
        (req(&forged_route, 0), 483),
    ] {
        let a = e.request(&Message::parse(msg.as_bytes()).unwrap(), upstream);
        assert_eq!(code(&a), want, "{msg}");
    }
    // OPTIONS for the edge itself: 200.
    let options = "OPTIONS sip:192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:1;branch=z9hG4bKo\r\nMax-Forwards: 70\r\nFrom: <sip:mon@example.org>;tag=1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let a = e.request(
        &Message::parse(options.as_bytes()).unwrap(),
        flow("198.51.100.7:1"),
    );
    assert_eq!(code(&a), 200);
}

#[test]
fn the_upstreams_2xx_gives_the_bindings_of_the_phones_own_contacts() {
    use farside_sip::edge::EdgeRegistrations;
    let mut regs = EdgeRegistrations::default();
    let phone = flow("198.51.100.7:40001");
    regs.forwarded(
        &Message::parse(REGISTER.as_bytes()).unwrap(),
        phone,
        Timestamp::from_unix_secs(1000),
    );
    // The 200 lists alice's other device too; only the contact this REGISTER sent is hers here.
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKreg1;received=198.51.100.7;rport=40001\r\n\
From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:alice@example.org>;tag=r1\r\nCall-ID: reg-1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.168.1.20:5070>;expires=300, <sip:alice@10.0.0.9:5060>;expires=3000\r\nContent-Length: 0\r\n\r\n";
    let (aor, bindings) = regs
        .response(
            &Message::parse(ok.as_bytes()).unwrap(),
            Timestamp::from_unix_secs(1001),
        )
        .expect("a 2xx to a REGISTER we forwarded");
    assert_eq!(aor, "sip:alice@example.org");
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].contact, "sip:alice@192.168.1.20:5070");
    assert_eq!(bindings[0].flow, phone);
    assert_eq!(bindings[0].expires_at, Timestamp::from_unix_secs(1301));
    assert!(bindings[0].nat.natted());
    // Answered once: a retransmitted 200 or someone else's gives nothing.
    assert!(
        regs.response(
            &Message::parse(ok.as_bytes()).unwrap(),
            Timestamp::from_unix_secs(1002)
        )
        .is_none()
    );
}

#[test]
fn for_an_upstream_without_path_the_contact_is_aliased_and_requests_follow_the_alias() {
    use farside_sip::edge::ContactFix;
    let e = edge().with_contact_fix(ContactFix::Alias);
    let phone = flow("198.51.100.7:40001");
    let (bytes, _, to) = forwarded(e.request(&Message::parse(REGISTER.as_bytes()).unwrap(), phone));
    assert_eq!(to, addr(UPSTREAM));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("Contact: <sip:alice@192.168.1.20:5070;alias=198.51.100.7~40001~1>;reg-id=1"),
        "{text}"
    );
    // The upstream calls the aliased Contact: the edge sends it to the alias, alias removed.
    let invite = "INVITE sip:alice@192.168.1.20:5070;alias=198.51.100.7~40001~1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk7\r\nMax-Forwards: 69\r\nFrom: <sip:bob@example.org>;tag=b\r\n\
To: <sip:alice@example.org>\r\nCall-ID: c7\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let (bytes, _, to) =
        forwarded(e.request(&Message::parse(invite.as_bytes()).unwrap(), flow(UPSTREAM)));
    assert_eq!(to, phone.remote);
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .starts_with("INVITE sip:alice@192.168.1.20:5070 SIP/2.0\r\n"),
        "alias removed"
    );
    // Rewrite instead: the Contact names the NAT's public side.
    let e = edge().with_contact_fix(ContactFix::Rewrite);
    let (bytes, _, _) = forwarded(e.request(&Message::parse(REGISTER.as_bytes()).unwrap(), phone));
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .contains("Contact: <sip:alice@198.51.100.7:40001>")
    );
    // Without a fix, an upstream request with no Route of ours is refused (no open relay).
    let a = edge().request(&Message::parse(invite.as_bytes()).unwrap(), flow(UPSTREAM));
    assert_eq!(code(&a), 404);
}

/// An upstream without Path calls a Contact the edge fixed: the edge Record-Routes the INVITE
/// with the phone's flow token, so the dialog's later requests (here the upstream's BYE, whose
/// Request-URI is the phone's private Contact from its 200) come back to the edge and go out
/// over the flow. Without the Record-Route they went straight to the private address (seen
/// with Kamailio in the NAT lab: its ACK and BYE failed with 477).
#[test]
fn an_upstream_without_path_keeps_the_edge_in_the_dialogs_it_calls_through() {
    use farside_sip::edge::ContactFix;
    let phone = flow("198.51.100.7:40001");
    for (fix, request_uri) in [
        (ContactFix::Rewrite, "sip:alice@198.51.100.7:40001"),
        (
            ContactFix::Alias,
            "sip:alice@192.168.1.20:5070;alias=198.51.100.7~40001~1",
        ),
    ] {
        let e = edge().with_contact_fix(fix);
        let invite = format!(
            "INVITE {request_uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk8\r\nMax-Forwards: 69\r\nFrom: <sip:bob@example.org>;tag=b\r\n\
To: <sip:alice@example.org>\r\nCall-ID: c8\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let (bytes, _, to) =
            forwarded(e.request(&Message::parse(invite.as_bytes()).unwrap(), flow(UPSTREAM)));
        assert_eq!(to, phone.remote, "{fix:?}");
        let rr = header(&bytes, HeaderName::RecordRoute).unwrap_or_else(|| {
            panic!(
                "{fix:?}: no Record-Route\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let rr_uri = NameAddr::parse(rr.as_bytes()).unwrap().uri();
        assert_eq!(rr_uri.host(), b"192.0.2.10", "{fix:?}: {rr}");
        assert!(rr_uri.user().is_some(), "{fix:?}: the flow's token: {rr}");
        // The upstream's BYE along that route, to the phone's private Contact.
        let bye = format!(
            "BYE sip:alice@192.168.1.20:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKk9\r\nMax-Forwards: 69\r\nRoute: {rr}\r\n\
From: <sip:bob@example.org>;tag=b\r\nTo: <sip:alice@example.org>;tag=a\r\nCall-ID: c8\r\n\
CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let (_, _, to) =
            forwarded(e.request(&Message::parse(bye.as_bytes()).unwrap(), flow(UPSTREAM)));
        assert_eq!(to, phone.remote, "{fix:?}: the BYE goes out over the flow");
    }
}
