//! What anyone on the internet can make the SIP server do without credentials, driven through
//! the sans-IO server: the answers a forged source can draw are bounded per second, a request
//! that does not parse is answered 400 naming the fault, and an extension the proxy does not
//! support gets 420.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use farside_sip::nat::Transport;
use farside_sip::registrar::Flow;
use farside_sip::server::{Event, SipServer};
use farside_sip::{Message, StartLine};
use farside_time::Timestamp;
use sim::{SERVER, World, addr, config, server};

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
