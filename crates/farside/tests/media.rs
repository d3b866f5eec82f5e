//! The RTP relay driven by a real rtpengine client: Debian's Kamailio with its rtpengine module
//! pointed at Farside's ng socket (`tests/kamailio/rtpengine.cfg`, the stock config's flags)
//! proxies a call between two SIPp phones on loopback; the caller plays SIPp's G.711 recording,
//! the callee echoes it, and both directions go through Farside's relay ports. Meanwhile an
//! attacker on another address sprays every relay port of the range, before, during and after
//! the call (RTP Bleed and RTP Inject, CVE-2025-53399): it receives nothing, and nothing it
//! sends is relayed.
//!
//! Needs kamailio and sipp (else SKIP, unless `FARSIDE_REQUIRE_PEERS=1`), and root for SIPp's
//! pcap player (raw sockets).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::kamailio::Kamailio;
use common::{LOCALHOST, Server, ServerConfig, free_ports, require_tool, run_tool, spawn_logged};

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The two counts of Farside's S504 line for the ended call: packets relayed from the caller
/// and from the callee.
fn relayed(logs: &str) -> Option<(u64, u64)> {
    let line = logs.lines().find(|l| l.contains("S504 call "))?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

#[test]
fn kamailio_with_its_rtpengine_module_relays_a_call_and_a_port_spraying_attacker_gets_nothing() {
    let test = "kamailio_with_its_rtpengine_module_relays_a_call_and_a_port_spraying_attacker_gets_nothing";
    if common::backend() != common::Backend::Farside {
        common::skip(test, "Farside's RTP relay");
        return;
    }
    if !require_tool(test, "kamailio") || !require_tool(test, "sipp") {
        return;
    }
    if !is_root() {
        common::skip(
            test,
            "SIPp plays its RTP recording through a raw socket: needs root",
        );
        return;
    }
    let ng = SocketAddr::new(LOCALHOST, free_ports(&[LOCALHOST], 1));
    let media = free_ports(&[LOCALHOST], 100);
    let media = media + (media & 1);
    let server = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[rtp]\nenabled = true\naddress = [\"127.0.0.1\"]\nports = \"{media}-{}\"\nng_listen = [\"udp:{ng}\"]\nallowed_peers = [\"127.0.0.0/8\"]\n",
            media + 98
        )),
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .logs()
            .contains("S500 RTP relay")),
        "{}",
        server.describe()
    );
    let callee = SocketAddr::new(LOCALHOST, free_ports(&[LOCALHOST], 1));
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/kamailio/rtpengine.cfg"
    ))
    .unwrap();
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(
        &cfg,
        template
            .replace("@NG@", &format!("udp:{ng}"))
            .replace("@CALLEE@", &callee.to_string()),
    )
    .unwrap();
    let kamailio = Kamailio::start(&cfg, &[]);
    // The module pings the ng socket when it starts and enables the node on the pong.
    assert!(
        kamailio.wait_for_log(
            &format!("rtpengine instance <udp:{ng}> found, support for it enabled"),
            Duration::from_secs(10)
        ),
        "{}\n{}",
        kamailio.log(),
        server.describe()
    );
    // SIPp's uac_pcap, its recordings named by absolute paths.
    let dump = run_tool(
        "sipp",
        &["-sd".into(), "uac_pcap".into()],
        Duration::from_secs(10),
    );
    let scenario = dump
        .stdout
        .replace("pcap/g711a.pcap", "/usr/share/sip-tester/g711a.pcap")
        .replace(
            "pcap/dtmf_2833_1.pcap",
            "/usr/share/sip-tester/dtmf_2833_1.pcap",
        );
    let uac = dir.join("uac_pcap.xml");
    std::fs::write(&uac, scenario).unwrap();
    // The attacker: 127.0.0.2 (no phone is there), every port of the range, every 5 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
            sock.set_nonblocking(true).unwrap();
            let mut probe = vec![0x80u8, 0, 0, 1, 0, 0, 0, 0, 0xba, 0xdb, 0x1e, 0xed];
            probe.extend([0xd5; 160]);
            let (mut sent, mut received) = (0u64, 0u64);
            let mut buf = [0u8; 2048];
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                for port in media..media + 100 {
                    if sock.send_to(&probe, (LOCALHOST, port)).is_ok() {
                        sent += 1;
                    }
                }
                while sock.recv_from(&mut buf).is_ok() {
                    received += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (sent, received)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let echo_port = free_ports(&[LOCALHOST], 2);
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let answering = spawn_logged(
        "sipp",
        &s(&[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &callee.port().to_string(),
            "-mi",
            "127.0.0.1",
            "-rtp_echo",
            "-mp",
            &echo_port.to_string(),
            "-m",
            "1",
            "-nostdin",
        ]),
    );
    std::thread::sleep(Duration::from_millis(500));
    let caller = run_tool(
        "sipp",
        &s(&[
            "-sf",
            uac.to_str().unwrap(),
            "-s",
            "callee",
            "-i",
            "127.0.0.1",
            "-p",
            &free_ports(&[LOCALHOST], 1).to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &(echo_port + 10).to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "40",
            "-timeout_error",
            &kamailio.addr.to_string(),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(
        caller.code(),
        Some(0),
        "the call: {}\ncallee: {}\n{}\n{}",
        caller.describe(),
        answering.output(),
        kamailio.log(),
        server.describe()
    );
    // The BYE deleted the call at Farside, which counted both directions.
    assert!(
        common::wait_until(Duration::from_secs(5), || relayed(&server.logs()).is_some()),
        "{}",
        server.describe()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sprayed, bled) = attacker.join().unwrap();
    let (from_caller, from_callee) = relayed(&server.logs()).unwrap();
    // The recording is 246 packets; the callee echoes each. Anything injected would show as
    // more relayed from one side than the other, or as thousands more.
    assert!(
        from_caller >= 200 && from_callee == from_caller && from_caller < 1000,
        "relayed {from_caller} from the caller, {from_callee} from the callee, while an attacker sprayed {sprayed}\n{}",
        server.describe()
    );
    assert_eq!(bled, 0, "the attacker received media");
    // Kamailio's own query before the delete ($rtpstat): both directions' RTP, summed (a late
    // packet may still pass between the query and the delete).
    let rtpstat = kamailio
        .log()
        .lines()
        .find_map(|l| l.split_once("RTPSTAT ").map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| panic!("no $rtpstat in Kamailio's log\n{}", kamailio.log()));
    let queried: u64 = rtpstat
        .split_once(" packets")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        queried >= from_caller + from_callee - 10,
        "$rtpstat {rtpstat:?}, relayed {from_caller} + {from_callee}"
    );
    // The ended call's quality summaries: both sides, none of their packets lost on the way.
    let sides = common::counter(&server, "farside_rtp_stream_loss_ratio_count", "");
    let lossless = common::counter(&server, "farside_rtp_stream_loss_ratio_bucket", "le=\"0\"");
    assert!(
        sides == 2.0 && lossless == 2.0,
        "loss summaries: {sides} sides, {lossless} lossless\n{}",
        server.metrics().unwrap_or_default()
    );
    let refused = common::counter(&server, "farside_rtp_packets_total", "foreign_source");
    assert!(
        sprayed >= 10_000 && refused >= 1.0,
        "sprayed {sprayed}, refused as foreign {refused}\n{}",
        server.metrics().unwrap_or_default()
    );
    common::note(
        test,
        &format!(
            "Kamailio's rtpengine module drove Farside over ng: {from_caller} RTP packets relayed from the caller, {from_callee} echoed back by the callee; an attacker on 127.0.0.2 sprayed {sprayed} packets at the 100 relay ports, received 0, and {refused} reached a call's port and were refused as foreign; Kamailio's $rtpstat before the BYE: {rtpstat}"
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One call `call_id` over ng on `server`'s relay, its phones on `ip`: side A's and side B's sockets, the
/// relay ports each sends to, and the relay's answer to the offer (the SDP B gets).
fn call_over_ng(
    ng: SocketAddr,
    ip: std::net::IpAddr,
    call_id: &str,
) -> (std::net::UdpSocket, std::net::UdpSocket, u16, u16, String) {
    call_over_ng_between(ng, [ip, ip], call_id)
}

/// As [`call_over_ng`], A's phone on `ips[0]` and B's on `ips[1]`; when their families differ
/// the offer asks for B's (`address family`).
fn call_over_ng_between(
    ng: SocketAddr,
    ips: [std::net::IpAddr; 2],
    call_id: &str,
) -> (std::net::UdpSocket, std::net::UdpSocket, u16, u16, String) {
    use farside_media::ng::bencode::Value;
    let control = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let a = std::net::UdpSocket::bind(SocketAddr::new(ips[0], 0)).unwrap();
    let b = std::net::UdpSocket::bind(SocketAddr::new(ips[1], 0)).unwrap();
    let family = |ip: std::net::IpAddr| if ip.is_ipv6() { "IP6" } else { "IP4" };
    let sdp = |s: &std::net::UdpSocket| {
        let at = s.local_addr().unwrap();
        let (ip, family) = (at.ip(), family(at.ip()));
        format!(
            "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\n",
            at.port()
        )
    };
    let port_in = |reply: &[u8]| -> u16 {
        let text = String::from_utf8_lossy(reply);
        text.split("m=audio ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text}"))
    };
    let mut buf = [0u8; 4096];
    let mut offered = String::new();
    let mut ask = |cookie: &[u8], command: &[u8], side: &std::net::UdpSocket, to_tag: bool| {
        let sdp = sdp(side);
        let mut entries = vec![
            (b"command".as_slice(), Value::Bytes(command)),
            (b"call-id", Value::Bytes(call_id.as_bytes())),
            (b"from-tag", Value::Bytes(b"a")),
            (b"sdp", Value::Bytes(sdp.as_bytes())),
        ];
        if to_tag {
            entries.push((b"to-tag", Value::Bytes(b"b")));
        } else if ips[0].is_ipv6() != ips[1].is_ipv6() {
            entries.push((b"address family", Value::Bytes(family(ips[1]).as_bytes())));
        }
        control
            .send_to(&farside_media::ng::request(cookie, entries), ng)
            .unwrap();
        let n = control.recv(&mut buf).unwrap();
        if !to_tag {
            offered = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        port_in(&buf[..n])
    };
    // The offer as rewritten names where B sends; the answer, where A sends.
    let b_to = ask(b"1", b"offer", &a, false);
    let a_to = ask(b"2", b"answer", &b, true);
    (a, b, a_to, b_to, offered)
}

/// What happens past an overload: a flood at one relay port, far faster than the relay reads,
/// overflows the port's small receive buffer (`rtp.receive_buffer`); the kernel drops the excess,
/// the relay counts it (`result="overflow"`), and the next packets of the stream are relayed at
/// once, not behind a backlog of old ones.
#[test]
fn a_flooded_relay_port_counts_its_overflow_and_relays_current_packets_at_once() {
    let test = "a_flooded_relay_port_counts_its_overflow_and_relays_current_packets_at_once";
    if common::backend() != common::Backend::Farside {
        common::skip(test, "Farside's RTP relay");
        return;
    }
    let (server, ng, _) = relay_server(test, &[LOCALHOST], 4, "", "S500 RTP relay: media");
    let (a, b, a_to, _, _) = call_over_ng(ng, LOCALHOST, "overflow-call");
    let relay = SocketAddr::new(LOCALHOST, a_to);
    let mut packet = vec![0x80u8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    packet.extend([0xd5; 160]);
    // The flood: 50,000 packets in a tight loop (a few tens of milliseconds).
    const FLOOD: u32 = 50_000;
    for seq in 0..FLOOD {
        packet[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        let _ = a.send_to(&packet, relay);
    }
    // What got through arrives within a moment; then the stream goes on at 50 packets a
    // second, and each packet must come out at once.
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut through = 0u32;
    while b.recv(&mut buf).is_ok() {
        through += 1;
    }
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut prompt = 0;
    for seq in 0..25u16 {
        packet[2..4].copy_from_slice(&seq.wrapping_add(60_000).to_be_bytes());
        a.send_to(&packet, relay).unwrap();
        // The packet just sent, not an old one, within the 100 ms.
        if let Ok(n) = b.recv(&mut buf)
            && buf[..n].get(2..4) == Some(&packet[2..4])
        {
            prompt += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Overflows are read from the kernel once a second.
    let overflow = || common::counter(&server, "farside_rtp_packets_total", "overflow");
    common::wait_until(Duration::from_secs(3), || overflow() >= 1.0);
    let overflow = overflow();
    let relayed = common::counter(&server, "farside_rtp_packets_total", "\"relayed\"");
    assert!(
        through < FLOOD && overflow >= 1.0,
        "{through} of {FLOOD} flooded packets read at the other side, {overflow} counted as overflow\n{}",
        server.metrics().unwrap_or_default()
    );
    assert_eq!(prompt, 25, "after the flood each packet is relayed at once");
    common::note(
        test,
        &format!(
            "{FLOOD} packets flooded at one relay port: {relayed} relayed in all, {overflow} counted as dropped at its full buffer, {through} read at the other side (its own buffer full too); the next 25 packets, one each 20 ms, each came out within 100 ms"
        ),
    );
}

/// Starts Farside with the RTP relay on `ips` (one per family), ng on a free port, `pairs`
/// relay port pairs free on each of `ips`, and `extra` TOML lines in `[rtp]`; returns the
/// server, its ng address and the first relay port, once the relay has logged that it runs
/// (`started`, a part of that line).
fn relay_server(
    test: &str,
    ips: &[std::net::IpAddr],
    pairs: u16,
    extra: &str,
    started: &str,
) -> (Server, SocketAddr, u16) {
    let ng = SocketAddr::new(LOCALHOST, free_ports(&[LOCALHOST], 1));
    let media = free_ports(ips, 2 * pairs + 2);
    let media = media + (media & 1);
    let quoted = |list: Vec<String>| list.join(", ");
    let addresses = quoted(ips.iter().map(|ip| format!("\"{ip}\"")).collect());
    let peers = quoted(
        ips.iter()
            .map(|ip| format!("\"{ip}/{}\"", if ip.is_ipv6() { 128 } else { 8 }))
            .collect(),
    );
    let server = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[rtp]\nenabled = true\naddress = [{addresses}]\nports = \"{media}-{}\"\nng_listen = [\"udp:{ng}\"]\nallowed_peers = [{peers}]\n{extra}",
            media + 2 * pairs - 1
        )),
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || server.logs().contains(started)),
        "{}",
        server.describe()
    );
    (server, ng, media)
}

/// Sends `n` RTP packets each way between phone A (to relay port `a_to`) and phone B (to
/// `b_to`), one exchange at a time: how many each received from the relay port it sends to.
fn exchange(
    [a, b]: [&std::net::UdpSocket; 2],
    [a_to, b_to]: [SocketAddr; 2],
    n: u16,
) -> (u16, u16) {
    let mut packet = vec![0x80u8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    packet.extend([0xd5; 160]);
    let mut buf = [0u8; 2048];
    for socket in [a, b] {
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
    }
    let (mut at_b, mut at_a) = (0, 0);
    for seq in 0..n {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        a.send_to(&packet, a_to).unwrap();
        b.send_to(&packet, b_to).unwrap();
        if matches!(b.recv_from(&mut buf), Ok((_, from)) if from == b_to) {
            at_b += 1;
        }
        if matches!(a.recv_from(&mut buf), Ok((_, from)) if from == a_to) {
            at_a += 1;
        }
    }
    (at_b, at_a)
}

/// The relay on 127.0.0.1 and ::1 (server, ng address, ::1), or `None` after saying why the
/// test is skipped (another backend, or no IPv6 loopback).
fn dual_stack_relay(test: &str) -> Option<(Server, SocketAddr, std::net::IpAddr)> {
    if common::backend() != common::Backend::Farside {
        common::skip(test, "Farside's RTP relay");
        return None;
    }
    let six: std::net::IpAddr = "::1".parse().unwrap();
    if std::net::UdpSocket::bind(SocketAddr::new(six, 0)).is_err() {
        common::skip(test, "no IPv6 loopback here");
        return None;
    }
    let (server, ng, _) = relay_server(
        test,
        &[LOCALHOST, six],
        4,
        "",
        "S500 RTP relay: media on 127.0.0.1 and ::1",
    );
    Some((server, ng, six))
}

/// One relay address per family: with `rtp.address` naming 127.0.0.1 and ::1, a call whose
/// offer is IPv6 gets the relay's IPv6 address in its SDP and is relayed over IPv6 both ways.
#[test]
fn a_call_offered_over_ipv6_is_relayed_over_ipv6() {
    let test = "a_call_offered_over_ipv6_is_relayed_over_ipv6";
    let Some((server, ng, six)) = dual_stack_relay(test) else {
        return;
    };
    let (a, b, a_to, b_to, offered) = call_over_ng(ng, six, "ipv6-call");
    assert!(offered.contains("c=IN IP6 ::1"), "{offered}");
    let to = [SocketAddr::new(six, a_to), SocketAddr::new(six, b_to)];
    assert_eq!(
        exchange([&a, &b], to, 10),
        (10, 10),
        "{}",
        server.describe()
    );
    common::note(
        test,
        "an IPv6 offer got the relay's ::1 in its SDP; 10 packets each way relayed over IPv6",
    );
}

/// The data path on several workers (`rtp.workers = 2`): each takes the calls whose Call-ID
/// hashes to it, on its own half of `rtp.ports`; every call is relayed both ways, and `list`
/// and `statistics` gather every worker's calls.
#[test]
fn calls_on_two_workers_are_relayed_from_each_workers_half_of_the_range() {
    use farside_media::ng::bencode::Value;
    let test = "calls_on_two_workers_are_relayed_from_each_workers_half_of_the_range";
    if common::backend() != common::Backend::Farside {
        common::skip(test, "Farside's RTP relay");
        return;
    }
    const CALLS: usize = 8;
    // Two pairs a call; each worker's half of the range has room for all of them.
    let pairs = 4 * CALLS as u16;
    let (server, ng, media) =
        relay_server(test, &[LOCALHOST], pairs, "workers = 2\n", "(2 workers)");
    let (middle, last) = (media + pairs, media + 2 * pairs - 1);
    let mut halves = [0; 2];
    for i in 0..CALLS {
        let call_id = format!("call-{i}@workers");
        let (a, b, a_to, b_to, _) = call_over_ng(ng, LOCALHOST, &call_id);
        let worker = farside_media::control::shard(call_id.as_bytes(), 2);
        for port in [a_to, b_to] {
            assert_eq!(
                usize::from(port >= middle),
                worker,
                "{call_id}: port {port} in the half of worker {worker} ({media}-{last})"
            );
        }
        halves[worker] += 1;
        let to = [a_to, b_to].map(|p| SocketAddr::new(LOCALHOST, p));
        let (at_b, at_a) = exchange([&a, &b], to, 5);
        assert_eq!((at_b, at_a), (5, 5), "{call_id}\n{}", server.describe());
    }
    assert!(
        halves[0] > 0 && halves[1] > 0,
        "both workers hold calls: {halves:?}"
    );
    let control = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut ask = |cookie: &str, command: &str| {
        let request = farside_media::ng::request(
            cookie.as_bytes(),
            vec![(b"command", Value::Bytes(command.as_bytes()))],
        );
        control.send_to(&request, ng).unwrap();
        let n = control.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let stats = ask("s", "statistics");
    let own = Value::parse(stats.strip_prefix("s ").unwrap().as_bytes())
        .ok()
        .and_then(|d| {
            d.get("statistics")?
                .get("currentstatistics")?
                .get("sessionsown")
                .cloned()
        });
    assert_eq!(own, Some(Value::Int(CALLS as i64)), "{stats}");
    let list = ask("l", "list");
    for i in 0..CALLS {
        assert!(list.contains(&format!("call-{i}@workers")), "{list}");
    }
    // Each worker adds its wake-up's tally once it has sent the batch.
    let relayed = || common::counter(&server, "farside_rtp_packets_total", "\"relayed\"");
    common::wait_until(Duration::from_secs(2), || relayed() >= (CALLS * 10) as f64);
    assert_eq!(
        relayed(),
        (CALLS * 10) as f64,
        "{}",
        server.metrics().unwrap_or_default()
    );
    let calls = common::counter(&server, "farside_rtp_calls", "");
    assert_eq!(
        calls,
        CALLS as f64,
        "{}",
        server.metrics().unwrap_or_default()
    );
    // `farside sessions` lists them from both workers (published once a second), with
    // their 10 packets each.
    let mut listed = serde_json::Value::Null;
    let all_listed = common::wait_until(Duration::from_secs(5), || {
        listed = serde_json::from_str(server.cli(&["sessions", "--json"]).stdout.trim()).unwrap();
        listed["calls"].as_array().is_some_and(|c| {
            c.len() == CALLS && c.iter().all(|c| c["packets"] == 10 && c["streams"] == 1)
        })
    });
    assert!(all_listed, "{listed}");
    // Deleted, each goes to the recent calls (`recent_calls`: what the dashboard's phone check
    // shows of a phone's last calls), with where each side's RTP came from and why it ended.
    for i in 0..CALLS {
        let request = farside_media::ng::request(
            format!("d{i}").as_bytes(),
            vec![
                (b"command", Value::Bytes(b"delete")),
                (
                    b"call-id",
                    Value::Bytes(format!("call-{i}@workers").as_bytes()),
                ),
            ],
        );
        control.send_to(&request, ng).unwrap();
        let n = control.recv(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).contains("result2:ok"),
            "delete call-{i}"
        );
    }
    let all_recent = common::wait_until(Duration::from_secs(5), || {
        listed = serde_json::from_str(server.cli(&["sessions", "--json"]).stdout.trim()).unwrap();
        listed["calls"].as_array().is_some_and(Vec::is_empty)
            && listed["recent_calls"].as_array().is_some_and(|c| {
                c.len() == CALLS
                    && c.iter().all(|c| {
                        c["packets"] == 10
                            && c["ended"]["reason"] == "deleted"
                            && c["sides"].as_array().is_some_and(|s| {
                                s.len() == 2
                                    && s.iter().all(|s| {
                                        s["endpoint"]
                                            .as_str()
                                            .is_some_and(|e| e.starts_with("127.0.0.1:"))
                                    })
                            })
                    })
            })
    });
    assert!(all_recent, "{listed}");
    common::note(
        test,
        &format!(
            "{CALLS} calls over ng on 2 workers ({} and {} by Call-ID), each on its worker's half of the range, 5 packets each way relayed in each; statistics, list and farside sessions show all {CALLS}, and once deleted all {CALLS} in recent_calls",
            halves[0], halves[1]
        ),
    );
}

/// An IPv4 phone calls an IPv6 phone over ng with `address family` = `IP6`: each gets the
/// relay's address of its own family, and packets cross between 127.0.0.1 and ::1 both ways.
#[test]
fn an_ipv4_phone_and_an_ipv6_phone_are_bridged_when_the_offer_asks_for_ipv6() {
    let test = "an_ipv4_phone_and_an_ipv6_phone_are_bridged_when_the_offer_asks_for_ipv6";
    let Some((server, ng, six)) = dual_stack_relay(test) else {
        return;
    };
    let (a, b, a_to, b_to, offered) = call_over_ng_between(ng, [LOCALHOST, six], "bridge-call");
    assert!(
        offered.contains("c=IN IP6 ::1"),
        "B is given IPv6: {offered}"
    );
    let to = [SocketAddr::new(LOCALHOST, a_to), SocketAddr::new(six, b_to)];
    assert_eq!(
        exchange([&a, &b], to, 10),
        (10, 10),
        "{}",
        server.describe()
    );
    common::note(
        test,
        "IPv4 phone A and IPv6 phone B over ng (address family IP6): B's SDP named ::1, A's 127.0.0.1; 10 packets each way crossed families, each from the relay port its recipient sends to",
    );
}
