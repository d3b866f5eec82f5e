//! Attacks, each a test with a figure in its output: password guessing on TURN and SIP, a flood
//! of unauthenticated requests, slow connections on SIP's TCP, TLS and WebSocket listeners, and
//! oversized and truncated messages on every listener. The attacker sends from 127.0.0.2; a
//! user on 127.0.0.1 (turnutils_uclient, SIPp, or a plain request) must be served all the while.
//! Partner-mode forgery and replay are `partners.rs`'s
//! `forged_replayed_and_stale_partner_messages_are_refused`; the amplification of what an
//! attacker can draw is `amplification.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::turn::{Peer, allocate_request, nonce_of, rest_credentials};
use common::{ALT_IP, LOCALHOST, Server, ServerConfig, counter, replies, run_tool, sipp};

const SECRET: &str = "attack-test-shared-secret";
const DOMAIN: &str = "example.org";

/// The listeners of the server under attack.
struct Target {
    server: Server,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    ws: SocketAddr,
}

/// A Farside with STUN and TURN on its primary port, SIP over UDP, TCP, TLS and WebSocket,
/// alice (SIP) in its store, and `sip` lines added to `[sip]`.
fn target(test: &str, sip: &str) -> Target {
    let base = common::free_ports(&[LOCALHOST, ALT_IP], 204);
    let at = |n: u16| SocketAddr::new(LOCALHOST, base + n);
    let (udp, tcp, tls, ws) = (at(0), at(1), at(2), at(3));
    let dir = common::fresh_dir(test);
    let (cert, key) = common::self_signed_for_loopback(&dir);
    let server = Server::start(
        test,
        ServerConfig::default()
            .with_table(&format!(
                "[turn]\nenabled = true\nrelay_ports = \"{}-{}\"\nauth_secrets = [\"{SECRET}\"]\n\
                 allowed_peers = [\"127.0.0.0/8\"]\n",
                base + 4,
                base + 203
            ))
            .with_table(&format!(
                "[sip]\nenabled = true\nlisten = [\"udp:{udp}\", \"tcp:{tcp}\", \"tls:{tls}\", \"ws:{ws}\"]\n\
                 domain = \"{DOMAIN}\"\n{sip}\n[sip.keepalive]\nenabled = false\n"
            ))
            .with_table(&format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            )),
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .logs()
            .contains("listening on ws")),
        "{}",
        server.describe()
    );
    let add = server.cli(&[
        "user",
        "add",
        "alice",
        "--password",
        "wonderland",
        "--realm",
        DOMAIN,
    ]);
    assert_eq!(add.code(), Some(0), "{}", add.describe());
    server.wait_for_log("S306 store changed");
    Target {
        server,
        udp,
        tcp,
        tls,
        ws,
    }
}

/// A UDP socket of the attacker's.
fn attacker_udp() -> UdpSocket {
    UdpSocket::bind((ALT_IP, 0)).unwrap()
}

/// SIPp alice registers over UDP from 127.0.0.1; whether she got her 200, and how long it took.
fn alice_registers(t: &Target, port: u16) -> (bool, Duration) {
    let started = Instant::now();
    let out = run_tool(
        "sipp",
        &sipp::register(
            "alice",
            "wonderland",
            DOMAIN,
            "127.0.0.1",
            port,
            &t.udp.to_string(),
            10,
        ),
        Duration::from_secs(20),
    );
    (out.code() == Some(0), started.elapsed())
}

/// uclient relays 20 messages through the server from 127.0.0.1: whether none was lost.
fn uclient_relays(t: &Target, peer: &Peer) -> bool {
    let (user, password) = rest_credentials(SECRET, "legit");
    let args: Vec<String> = [
        "-e",
        "127.0.0.1",
        "-r",
        &peer.port.to_string(),
        "-p",
        &t.server.primary.port().to_string(),
        "-u",
        &user,
        "-w",
        &password,
        "-n",
        "20",
        "-m",
        "1",
        // No RTCP: the 20 messages are the only ones.
        "-c",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_tool("turnutils_uclient", &args, Duration::from_secs(20));
    common::turn::totals(&out.all())
        == Some(common::turn::Totals {
            sent: 20,
            received: 20,
            lost: Some(0),
        })
}

/// A REGISTER for alice from `via` with `auth` (an Authorization line, or nothing).
fn register(via: SocketAddr, cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-g{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=g1\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: guess-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:alice@{via}>\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Digest credentials for alice with `password` against the challenge in `answer`.
fn digest(answer: &[u8], password: &str, nc: u32) -> String {
    common::register_credentials(
        &String::from_utf8_lossy(answer),
        "alice",
        password,
        DOMAIN,
        Some(nc),
    )
}

/// 100 wrong passwords from one address, on TURN and on SIP: at most 20 are even answered
/// (`auth_failures_per_minute`, and the refusal budget per second), the rest are dropped and
/// counted, and then even the right password from that address is not heard for the rest of
/// the minute; a user on another address relays (uclient) and registers (SIPp) meanwhile.
#[test]
fn password_guessing_is_cut_off_per_source_and_users_elsewhere_are_served() {
    let test = "password_guessing_is_cut_off_per_source_and_users_elsewhere_are_served";
    if !common::require_tool(test, "turnutils_uclient") || !common::require_tool(test, "sipp") {
        return;
    }
    let t = target(test, "");
    let peer = Peer::start();
    // TURN.
    let (user, password) = rest_credentials(SECRET, "victim");
    let a = attacker_udp();
    a.send_to(&allocate_request(1, None), t.server.primary)
        .unwrap();
    let nonce = nonce_of(&replies(&a, Duration::from_secs(2))[0]);
    for i in 0..100 {
        a.send_to(
            &allocate_request(10 + i, Some((&user, "guess", &nonce))),
            t.server.primary,
        )
        .unwrap();
    }
    let turn_answered = replies(&a, Duration::from_millis(500)).len();
    a.send_to(
        &allocate_request(500, Some((&user, &password, &nonce))),
        t.server.primary,
    )
    .unwrap();
    let right_heard = !replies(&a, Duration::from_millis(500)).is_empty();
    let relayed = uclient_relays(&t, &peer);
    // SIP.
    let s = attacker_udp();
    let me = s.local_addr().unwrap();
    s.send_to(&register(me, 1, ""), t.udp).unwrap();
    let challenge = replies(&s, Duration::from_secs(2)).remove(0);
    for i in 0..100 {
        s.send_to(
            &register(me, 2 + i, &digest(&challenge, "guess", 1 + i)),
            t.udp,
        )
        .unwrap();
    }
    let sip_answered = replies(&s, Duration::from_millis(500)).len();
    s.send_to(
        &register(me, 200, &digest(&challenge, "wonderland", 200)),
        t.udp,
    )
    .unwrap();
    let sip_right_heard = !replies(&s, Duration::from_millis(500)).is_empty();
    let (registered, took) = alice_registers(&t, common::free_ports(&[LOCALHOST], 1));
    println!(
        "TURN: 100 wrong passwords from 127.0.0.2: {turn_answered} answered, then the right one \
         {}; uclient from 127.0.0.1 relayed 20 of 20: {relayed}",
        if right_heard {
            "was heard"
        } else {
            "was not heard"
        }
    );
    println!(
        "SIP: 100 wrong passwords from 127.0.0.2: {sip_answered} answered, then the right one {}; \
         SIPp from 127.0.0.1 registered: {registered} in {took:?}",
        if sip_right_heard {
            "was heard"
        } else {
            "was not heard"
        }
    );
    let server = t.server.describe();
    assert!(turn_answered <= 20 && !right_heard && relayed, "{server}");
    assert!(
        sip_answered <= 20 && !sip_right_heard && registered,
        "{server}"
    );
    assert!(
        counter(&t.server, "farside_turn_dropped_total", "auth_rate_limited") >= 1.0,
        "{server}"
    );
    assert!(
        counter(&t.server, "farside_sip_register_total", "rate_limited") >= 1.0,
        "{server}"
    );
}

/// 10,000 unauthenticated requests from one address within a few seconds (TURN Allocates,
/// SIP REGISTERs, INVITEs to users who do not exist, OPTIONS): the answers they draw are held
/// to the per-source budgets and the rest counted; meanwhile uclient relays and SIPp registers
/// from another address.
#[test]
fn an_unauthenticated_flood_draws_little_and_users_elsewhere_are_served() {
    let test = "an_unauthenticated_flood_draws_little_and_users_elsewhere_are_served";
    if !common::require_tool(test, "turnutils_uclient") || !common::require_tool(test, "sipp") {
        return;
    }
    let t = target(test, "");
    let peer = Peer::start();
    let flood = attacker_udp();
    let me = flood.local_addr().unwrap();
    let (stun, sip) = (t.server.primary, t.udp);
    let (sent, flood_took, (relayed, (registered, took))) = std::thread::scope(|scope| {
        let users = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            let relayed = uclient_relays(&t, &peer);
            (
                relayed,
                alice_registers(&t, common::free_ports(&[LOCALHOST], 1)),
            )
        });
        let started = Instant::now();
        let mut sent = 0u32;
        for n in 0..10_000u32 {
            let (bytes, to) = match n % 4 {
                0 => (allocate_request(n, None), stun),
                1 => (register(me, n, ""), sip),
                2 => (
                    format!(
                        "INVITE sip:nobody{n}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-f{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@{me}>;tag=f{n}\r\nTo: <sip:nobody{n}@{DOMAIN}>\r\nCall-ID: flood-{n}\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                    sip,
                ),
                _ => (
                    format!(
                        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-o{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@{me}>;tag=o{n}\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: opt-{n}\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                    sip,
                ),
            };
            if flood.send_to(&bytes, to).is_ok() {
                sent += 1;
            }
            if n % 100 == 99 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let took = started.elapsed();
        (sent, took, users.join().unwrap())
    });
    let drawn = replies(&flood, Duration::from_millis(500)).len();
    let turn_limited = counter(
        &t.server,
        "farside_turn_dropped_total",
        "refusal_rate_limited",
    );
    let sip_limited = counter(
        &t.server,
        "farside_sip_dropped_total",
        "refusal_rate_limited",
    );
    println!(
        "{sent} unauthenticated requests from 127.0.0.2 in {flood_took:?}: {drawn} answers came back \
         ({turn_limited} TURN and {sip_limited} SIP refusals held back by the per-source budgets); \
         uclient from 127.0.0.1 relayed 20 of 20: {relayed}; SIPp registered: {registered} in {took:?}"
    );
    let server = t.server.describe();
    assert!(relayed && registered, "{server}");
    // 10 TURN and 50 SIP answers a second at most, over the flood's seconds (and one more).
    let seconds = flood_took.as_secs() + 2;
    assert!(
        drawn as u64 <= 60 * seconds,
        "{drawn} answers in {seconds} s\n{server}"
    );
    assert!(turn_limited > 0.0 && sip_limited > 0.0, "{server}");
}

/// A connection from the attacker that sends a byte every half second (slowloris) on each SIP
/// stream listener, up to the per-address limit: the next is closed at once, a SIPp phone
/// registers over TCP from another address meanwhile, and every slow one is closed when its
/// first message or TLS handshake is late.
#[test]
fn slow_connections_are_capped_and_closed_and_others_are_served() {
    let test = "slow_connections_are_capped_and_closed_and_others_are_served";
    if !common::require_tool(test, "sipp") {
        return;
    }
    let t = target(
        test,
        "max_connections_per_ip = 12\nfirst_message_timeout = 3\ntls_handshake_timeout = 3\n",
    );
    let connect = |to: SocketAddr| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(ALT_IP, 0).into()).unwrap();
        s.connect(&to.into()).unwrap();
        let s = TcpStream::from(s);
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        s
    };
    let mut slow: Vec<(&str, TcpStream)> = Vec::new();
    for (name, to) in [("tcp", t.tcp), ("tls", t.tls), ("ws", t.ws)] {
        for _ in 0..4 {
            slow.push((name, connect(to)));
        }
    }
    let opened = Instant::now();
    let mut extra = connect(t.tcp);
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut one = [0u8; 1];
    let extra_closed = matches!(extra.read(&mut one), Ok(0) | Err(_));
    // A SIPp phone on 127.0.0.1 registers over TCP while the slow ones hold their slots.
    let port = common::free_ports(&[LOCALHOST], 1);
    let started = Instant::now();
    let out = run_tool(
        "sipp",
        &sipp::over_tcp(sipp::register(
            "alice",
            "wonderland",
            DOMAIN,
            "127.0.0.1",
            port,
            &t.tcp.to_string(),
            10,
        )),
        Duration::from_secs(20),
    );
    let registered = (out.code() == Some(0), started.elapsed());
    // The slowloris: a byte every half second, until each is closed (or 8 s pass).
    let mut closed_after: Vec<Option<Duration>> = vec![None; slow.len()];
    let bytes = b"GET / HTTP/1.1\r\nHost: x\r\nREGISTER sip:x SIP/2.0\r\n";
    let mut i = 0;
    while closed_after.iter().any(Option::is_none) && opened.elapsed() < Duration::from_secs(8) {
        for (k, (_, s)) in slow.iter_mut().enumerate() {
            if closed_after[k].is_some() {
                continue;
            }
            let _ = s.write_all(&bytes[i % bytes.len()..][..1]);
            // Whatever the server says before it closes (a TLS alert, a 400) is read whole.
            let mut said = [0u8; 4096];
            match s.read(&mut said) {
                Ok(0) => closed_after[k] = Some(opened.elapsed()),
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    closed_after[k] = Some(opened.elapsed())
                }
                _ => {}
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let last = closed_after.iter().flatten().max().copied();
    for ((name, _), after) in slow.iter().zip(&closed_after) {
        println!("slow {name} connection closed after {after:?}");
    }
    println!(
        "12 slow connections from 127.0.0.2 (4 each on tcp, tls, ws): the 13th closed at once: {extra_closed}; \
         SIPp registered over TCP from 127.0.0.1 meanwhile: {} in {:?}; every slow one closed by {:?} \
         (first_message_timeout = tls_handshake_timeout = 3 s)",
        registered.0, registered.1, last
    );
    let server = t.server.describe();
    assert!(extra_closed, "{server}");
    assert!(registered.0, "{}\n{server}", out.describe());
    assert!(
        closed_after
            .iter()
            .all(|c| c.is_some_and(|d| d < Duration::from_secs(6))),
        "{closed_after:?}\n{server}"
    );
    // Each slow one was closed by the server for what it was, not by this test.
    let closed: f64 = [
        "first_message_closed",
        "tls_handshake_closed",
        "invalid_closed",
    ]
    .iter()
    .map(|e| counter(&t.server, "farside_sip_connections_total", e))
    .sum();
    assert!(closed >= 12.0, "{closed} closed\n{server}");
    assert!(
        counter(&t.server, "farside_sip_connections_total", "per_ip_limit") >= 1.0,
        "{server}"
    );
}

/// Oversized and truncated messages on every listener are dropped (or, over a connection,
/// close it), are counted, and the listener serves the next client.
#[test]
fn oversized_and_truncated_messages_are_dropped_and_every_listener_serves_on() {
    let test = "oversized_and_truncated_messages_are_dropped_and_every_listener_serves_on";
    let t = target(test, "");
    let a = attacker_udp();
    let me = a.local_addr().unwrap();
    let binding = common::stun::binding_request(&common::stun::new_tid(), &[]);
    let options = |n: u32, transport: &str, via: SocketAddr| {
        format!(
            "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK-x{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:x@{via}>;tag=x{n}\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: x-{n}\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut lines = Vec::new();
    // UDP: STUN and TURN on the primary port, SIP on its own.
    let mut truncated = binding.clone();
    truncated[3] = 100; // says 100 bytes of attributes, has none
    let channel_data = [0x40, 0x00, 0x03, 0xe8, 1, 2, 3, 4]; // says 1000 bytes, has 4
    let sip_truncated = options(1, "UDP", me).replace("Content-Length: 0", "Content-Length: 500");
    let mut sip_huge = options(2, "UDP", me).into_bytes();
    sip_huge.truncate(sip_huge.len() - 2);
    sip_huge.extend(std::iter::repeat_n(b'x', 65_000 - sip_huge.len()));
    let udp_cases: [(&str, Vec<u8>, SocketAddr); 5] = [
        ("STUN, 4,000 bytes", vec![0u8; 4000], t.server.primary),
        ("STUN, truncated", truncated, t.server.primary),
        (
            "TURN ChannelData, truncated",
            channel_data.to_vec(),
            t.server.primary,
        ),
        (
            "SIP, Content-Length past the datagram",
            sip_truncated.into_bytes(),
            t.udp,
        ),
        (
            "SIP, 65,000 bytes without an end of headers",
            sip_huge,
            t.udp,
        ),
    ];
    for (what, bytes, to) in udp_cases {
        a.send_to(&bytes, to).unwrap();
        let got = replies(&a, Duration::from_millis(300));
        let answer = got.first().map_or("nothing".to_string(), |r| {
            String::from_utf8_lossy(&r[..r.len().min(40)])
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        });
        lines.push(format!("udp {what}: {answer}"));
        assert!(got.len() <= 1, "{what}");
        if what.starts_with("SIP") {
            // A request with a Via is answered 400 naming its fault, in a few hundred bytes.
            assert!(answer.starts_with("SIP/2.0 400 "), "{what}: {answer}");
            assert!(got[0].len() < 1024, "{what}: {} bytes", got[0].len());
        } else {
            assert!(got.is_empty(), "{what} was answered");
        }
    }
    a.send_to(&binding, t.server.primary).unwrap();
    assert_eq!(
        replies(&a, Duration::from_millis(500)).len(),
        1,
        "STUN serves on"
    );
    a.send_to(options(3, "UDP", me).as_bytes(), t.udp).unwrap();
    assert_eq!(
        replies(&a, Duration::from_millis(500)).len(),
        1,
        "SIP over UDP serves on"
    );
    // Streams: each case on a fresh connection must be closed.
    let big_body = options(4, "TCP", me).replace("Content-Length: 0", "Content-Length: 10000000");
    let endless = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\n{}",
        "X-Pad: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(1500)
    );
    let mut ws_huge = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n",
        t.ws
    )
    .into_bytes();
    ws_huge.extend_from_slice(&[0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    let stream_cases: [(&str, Vec<u8>, SocketAddr); 5] = [
        (
            "sip tcp, Content-Length 10 MB",
            big_body.into_bytes(),
            t.tcp,
        ),
        (
            "sip tcp, 75 KB of headers without an end",
            endless.into_bytes(),
            t.tcp,
        ),
        ("sip ws, a frame of 2^62 bytes", ws_huge, t.ws),
        ("sip tls, 5 KB that are not TLS", vec![0x16; 5000], t.tls),
        // (A STUN or ChannelData header may announce up to 64 KiB, which TURN over TCP needs: one
        // that never comes is a slow connection, closed by stun.tcp_idle_timeout.)
        (
            "stun tcp, bytes that are neither STUN nor ChannelData",
            vec![0xff; 100],
            t.server.primary,
        ),
    ];
    for (what, bytes, to) in stream_cases {
        let mut s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let started = Instant::now();
        let _ = s.write_all(&bytes);
        let mut buf = [0u8; 4096];
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(3) {
            match s.read(&mut buf) {
                Ok(0) => closed = true,
                Err(e) => {
                    closed = !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
                Ok(_) => continue,
            }
            break;
        }
        lines.push(format!("{what}: closed in {:?}", started.elapsed()));
        assert!(closed, "{what} left open\n{}", t.server.describe());
    }
    let mut s = TcpStream::connect(t.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let here = s.local_addr().unwrap();
    s.write_all(options(5, "TCP", here).as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200 "),
        "SIP over TCP serves on"
    );
    for l in &lines {
        println!("{l}");
    }
    t.server
        .assert_alive("after every oversized and truncated message");
}
