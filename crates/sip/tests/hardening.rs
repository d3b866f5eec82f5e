//! What anyone on the internet can make the SIP server do without credentials, driven through
//! the sans-IO server: the answers a forged source can draw are bounded per second, a request
//! that does not parse is answered 400 naming the fault, and an extension the proxy does not
//! support gets 420. And what becomes of a call to a phone whose connection is gone.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use farside_sip::nat::Transport;
use farside_sip::registrar::Flow;
use farside_sip::server::{Event, SipServer};
use farside_sip::{Message, StartLine};
use farside_time::Timestamp;
use sim::{DOMAIN, SERVER, World, addr, config, md5_hex, server};

const T0: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn flow(remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(SERVER),
        remote: addr(remote),
    }
}

/// Everything the server sends now, as (destination, status code).
fn sent(s: &mut SipServer) -> Vec<(SocketAddr, u16)> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| {
            let code = match Message::parse(&t.bytes).map(|m| m.start_line()) {
                Ok(StartLine::Response { code, .. }) => code,
                _ => 0,
            };
            (t.to, code)
        })
        .collect()
}

fn events(s: &mut SipServer) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn register(n: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-f{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=f{n}\r\nTo: <sip:alice@example.org>\r\n\
Call-ID: flood-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@198.51.100.9>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// 1,000 REGISTERs in one second from one (forged) source draw 50 challenges, not 1,000; the
/// rest are counted as rate-limited. Another source is answered all the while, and the next
/// second brings the forged source a fresh budget.
#[test]
fn a_flood_from_one_source_draws_fifty_answers_a_second_and_others_are_served() {
    let mut s = server(config(None), 1);
    let mut answered = 0;
    let mut limited = 0;
    for n in 0..1000 {
        let at = T0 + Duration::from_micros(u64::from(n) * 900);
        s.handle_input(at, flow("198.51.100.9:5060"), &register(n, ""));
        answered += sent(&mut s).len();
        limited += events(&mut s)
            .iter()
            .filter(|e| **e == Event::RefusalRateLimited)
            .count();
        if n % 100 == 0 {
            s.handle_input(at, flow("192.0.2.44:5060"), &register(10_000 + n, ""));
            assert_eq!(
                sent(&mut s),
                [(addr("192.0.2.44:5060"), 401)],
                "another source is challenged"
            );
        }
    }
    println!("1000 REGISTERs from one source in 0.9 s: {answered} answered, {limited} dropped");
    assert_eq!((answered, limited), (50, 950));
    s.handle_input(
        T0 + Duration::from_secs(1),
        flow("198.51.100.9:5060"),
        &register(5000, ""),
    );
    assert_eq!(sent(&mut s).len(), 1, "a fresh second, a fresh budget");
}

/// Answers over a connection are not limited: its peer completed a handshake, so its address
/// is not forged.
#[test]
fn answers_over_a_connection_are_not_limited() {
    let mut s = server(config(None), 1);
    let tcp = Flow {
        transport: Transport::Tcp,
        ..flow("198.51.100.9:40000")
    };
    for n in 0..50 {
        s.handle_input(T0, tcp, &register(n, ""));
    }
    assert_eq!(sent(&mut s).len(), 50);
}

/// A request that does not parse but carries a Via is answered 400 with the fault named in
/// the reason phrase (RFC 3261 §21.4.1), and counted as malformed and refused.
#[test]
fn a_malformed_request_is_answered_400_naming_the_fault() {
    let mut s = server(config(None), 1);
    let bad = String::from_utf8(register(1, ""))
        .unwrap_or_default()
        .replace("Content-Length: 0", "Content-Length: 99");
    s.handle_input(T0, flow("198.51.100.9:5060"), bad.as_bytes());
    let t = s.poll_transmit().expect("answered");
    let text = String::from_utf8_lossy(&t.bytes);
    assert!(
        text.starts_with("SIP/2.0 400 Bad Request (body shorter than Content-Length)\r\n"),
        "{text}"
    );
    let e = events(&mut s);
    assert!(e.iter().any(|e| matches!(e, Event::Malformed { .. })));
    assert!(e.contains(&Event::Refused(400)));
}

/// An INVITE whose Proxy-Require names an extension Farside's proxy does not support is
/// refused 420 with Unsupported naming it (RFC 3261 §16.3 step 4), before anything is routed.
#[test]
fn an_unsupported_proxy_require_gets_420() {
    let mut w = World::new(server(config(None), 1));
    let bob = w.add_phone("bob", "198.51.100.5:5060", None);
    let invite = String::from_utf8(w.phone(bob).invite("sip:alice@example.org", "call-pr"))
        .unwrap_or_default()
        .replacen(
            "Max-Forwards",
            "Proxy-Require: sec-agree\r\nMax-Forwards",
            1,
        );
    w.server
        .handle_input(T0, flow("198.51.100.5:5060"), invite.as_bytes());
    let t = w.server.poll_transmit().expect("answered");
    let text = String::from_utf8_lossy(&t.bytes);
    assert!(text.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{text}");
    assert!(text.contains("\r\nUnsupported: sec-agree\r\n"), "{text}");
    assert!(w.server.poll_transmit().is_none(), "nothing forwarded");
}

/// alice registers `contact` over `flow` (challenge, then credentials with `extra` headers).
fn register_alice(s: &mut SipServer, flow: Flow, contact: &str, extra: &str) {
    let via = flow.transport.via_name();
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{via} 10.0.0.5:5070;branch=z9hG4bK-r{cseq}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=r1\r\nTo: <sip:alice@{DOMAIN}>\r\n\
Call-ID: reg-alice\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}{auth}Content-Length: 0\r\n\r\n"
        )
    };
    s.handle_input(T0, flow, request(1, "").as_bytes());
    let challenge = s.poll_transmit().expect("a challenge");
    let text = String::from_utf8_lossy(&challenge.bytes).into_owned();
    let nonce = text
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce")
        .to_owned();
    let ha1 = md5_hex(&format!("alice:{DOMAIN}:secret-alice"));
    let ha2 = md5_hex(&format!("REGISTER:sip:{DOMAIN}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c1:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"alice\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
uri=\"sip:{DOMAIN}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c1\"\r\n"
    );
    s.handle_input(T0, flow, request(2, &auth).as_bytes());
    let ok = s.poll_transmit().expect("an answer");
    assert!(
        ok.bytes.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&ok.bytes)
    );
    events(s);
}

/// The server with TCP listeners beside the UDP one.
fn server_with_tcp() -> SipServer {
    let mut cfg = config(None);
    cfg.listeners.push((addr(SERVER), Transport::Tcp));
    server(cfg, 1)
}

const BOB: &str = "198.51.100.5:5060";

/// bob calls alice over UDP; the INVITE the server forwards to alice's flow.
fn call_alice(s: &mut SipServer) -> farside_sip::Transmit {
    let mut w = World::new(server(config(None), 9));
    let b = w.add_phone("bob", BOB, None);
    let invite = w
        .phone(b)
        .invite(&format!("sip:alice@{DOMAIN}"), "call-dead-flow");
    s.handle_input(T0, flow(BOB), &invite);
    let out: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(
        out[0].bytes.starts_with(b"SIP/2.0 100 "),
        "100 Trying first"
    );
    out.into_iter()
        .find(|t| t.bytes.starts_with(b"INVITE "))
        .expect("the INVITE goes to alice")
}

/// What bob hears now, by status code.
fn bob_hears(s: &mut SipServer) -> Vec<u16> {
    sent(s)
        .into_iter()
        .filter(|(to, _)| *to == addr(BOB))
        .map(|(_, code)| code)
        .collect()
}

/// A phone registered over TCP (no outbound) whose connection a NAT closed: the INVITE cannot
/// go over its flow, so the server dials the Contact (RFC 3261 §18.1.1); when that dial fails
/// too, the caller gets 480.
#[test]
fn a_call_to_a_phone_whose_tcp_connection_closed_dials_its_contact_then_480() {
    let mut s = server_with_tcp();
    let alice = Flow {
        transport: Transport::Tcp,
        local: addr(SERVER),
        remote: addr("203.0.113.9:41000"),
    };
    register_alice(
        &mut s,
        alice,
        "<sip:alice@203.0.113.9:5070;transport=tcp>",
        "",
    );
    let invite = call_alice(&mut s);
    assert_eq!(
        (invite.transport, invite.to),
        (Transport::Tcp, alice.remote)
    );
    // The shell finds no connection for it.
    s.flow_failed(T0, invite);
    let dial = events(&mut s)
        .into_iter()
        .find_map(|e| match e {
            Event::Dial(t) => Some(t),
            _ => None,
        })
        .expect("the Contact is dialled");
    assert_eq!(
        (dial.transport, dial.from, dial.to),
        (Transport::Tcp, addr(SERVER), addr("203.0.113.9:5070"))
    );
    assert!(
        dial.bytes
            .starts_with(b"INVITE sip:alice@203.0.113.9:5070;transport=tcp ")
    );
    assert!(bob_hears(&mut s).is_empty(), "nothing final yet");
    // The dial fails (refused, or closed before the phone said anything).
    s.dial_failed(T0, dial);
    assert_eq!(bob_hears(&mut s), [480]);
}

/// The ACK of a call answered over a dialled connection: the dialog's route still names the
/// phone's old flow, so the ACK fails there too, and follows the INVITE to the Contact (the
/// shell finds the connection it dialled); without that the phone never hears it (an ACK
/// gets no answer, so nobody would notice). When it cannot be dialled it is dropped, unanswered;
/// the ACK the proxy itself writes for a refusal is never dialled.
#[test]
fn an_ack_for_a_phone_whose_connection_closed_follows_the_dial() {
    let mut s = server_with_tcp();
    let alice = Flow {
        transport: Transport::Tcp,
        local: addr(SERVER),
        remote: addr("203.0.113.9:41003"),
    };
    register_alice(
        &mut s,
        alice,
        "<sip:alice@203.0.113.9:5070;transport=tcp>",
        "",
    );
    // Forwarded from bob's 2xx ACK: our Via over his.
    let ack = ack_to(
        alice,
        &format!(
            "Via: SIP/2.0/TCP {SERVER};branch=z9hG4bKack1\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKbob1"
        ),
        "ack-dead-flow",
    );
    s.flow_failed(T0, ack);
    let dial = events(&mut s)
        .into_iter()
        .find_map(|e| match e {
            Event::Dial(t) => Some(t),
            _ => None,
        })
        .expect("the ACK is dialled");
    assert_eq!(dial.to, addr("203.0.113.9:5070"));
    assert!(dial.bytes.starts_with(b"ACK "));
    s.dial_failed(T0, dial);
    assert!(bob_hears(&mut s).is_empty(), "an ACK is never answered");
    // The ACK the proxy writes itself for a non-2xx answer (one Via, ours) is not dialled.
    let own = ack_to(
        alice,
        &format!("Via: SIP/2.0/TCP {SERVER};branch=z9hG4bKinvite1"),
        "ack-dead-flow-2",
    );
    s.flow_failed(T0, own);
    assert!(
        !events(&mut s).iter().any(|e| matches!(e, Event::Dial(_))),
        "the proxy's own ACK of a refusal is not dialled"
    );
    assert!(bob_hears(&mut s).is_empty());
}

/// An ACK for alice's Contact with `vias` (header lines), sent over her flow `alice`.
fn ack_to(alice: Flow, vias: &str, call_id: &str) -> farside_sip::Transmit {
    farside_sip::Transmit {
        bytes: format!(
            "ACK sip:alice@203.0.113.9:5070;transport=tcp SIP/2.0\r\n{vias}\r\nMax-Forwards: 69\r\n\
             From: <sip:bob@{DOMAIN}>;tag=b1\r\nTo: <sip:alice@{DOMAIN}>;tag=a1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        transport: Transport::Tcp,
        from: alice.local,
        to: alice.remote,
    }
}

/// The same phone with RFC 5626 outbound (`+sip.instance` and `reg-id`): its flow is the only
/// way to it the server may use, so the caller gets 430 Flow Failed at once (RFC 5626 §5.3)
/// and nothing is dialled; the phone will register a new flow.
#[test]
fn a_call_over_a_failed_outbound_flow_gets_430() {
    let mut s = server_with_tcp();
    let alice = Flow {
        transport: Transport::Tcp,
        local: addr(SERVER),
        remote: addr("203.0.113.9:41001"),
    };
    register_alice(
        &mut s,
        alice,
        "<sip:alice@203.0.113.9:5070;transport=tcp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1",
        "Supported: outbound, path\r\n",
    );
    let invite = call_alice(&mut s);
    s.flow_failed(T0, invite);
    assert!(
        !events(&mut s).iter().any(|e| matches!(e, Event::Dial(_))),
        "an outbound flow is not dialled"
    );
    assert_eq!(bob_hears(&mut s), [430]);
}

/// A browser registered over WebSocket whose connection closed cannot be dialled: 480.
#[test]
fn a_call_to_a_websocket_phone_whose_connection_closed_gets_480() {
    let mut cfg = config(None);
    cfg.listeners.push((addr(SERVER), Transport::Ws));
    let mut s = server(cfg, 1);
    let alice = Flow {
        transport: Transport::Ws,
        local: addr(SERVER),
        remote: addr("203.0.113.9:41002"),
    };
    register_alice(
        &mut s,
        alice,
        "<sip:alice@df7jal23ls0d.invalid;transport=ws>",
        "",
    );
    let invite = call_alice(&mut s);
    s.flow_failed(T0, invite);
    assert_eq!(bob_hears(&mut s), [480]);
}

/// 12,000 INVITEs to users who do not exist (more than the 10,000 transactions the server
/// holds) are refused without a trace of state: the call that follows still gets through.
/// Refused requests once lingered 32 s in the transaction table, so ~300 spoofed INVITEs a
/// second kept every real call at 503.
#[test]
fn a_flood_of_refused_invites_leaves_no_state_and_calls_get_through() {
    let mut s = server_with_tcp();
    let alice = flow("203.0.113.9:5070");
    register_alice(&mut s, alice, "<sip:alice@203.0.113.9:5070>", "");
    for n in 0..12_000u32 {
        let source = format!("198.18.{}.{}:5060", n / 250, n % 250 + 1);
        let invite = format!(
            "INVITE sip:nobody{n}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK-i{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@198.18.0.1>;tag=i{n}\r\nTo: <sip:nobody{n}@{DOMAIN}>\r\n\
Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        s.handle_input(T0, flow(&source), invite.as_bytes());
        while s.poll_transmit().is_some() {}
        events(&mut s);
    }
    let invite = call_alice(&mut s);
    assert_eq!(
        invite.to, alice.remote,
        "the call is forwarded, not refused 503"
    );
}
