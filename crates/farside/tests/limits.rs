//! Limits a production server must hold: one server per address, TCP connection caps, and no
//! way for a client to hold a connection by never reading.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Backend, Server, ServerConfig, run_tool, stun};

fn farside_only(test: &str) -> bool {
    if common::backend() != Backend::Farside {
        common::skip(test, "Farside-specific limits");
        return false;
    }
    true
}

fn metric(server: &Server, name: &str, label: &str) -> f64 {
    let text = server.metrics().expect("metrics");
    common::metric_samples(&text, name)
        .iter()
        .filter(|(l, _)| l.contains(label))
        .map(|(_, v)| v)
        .sum()
}

/// `SO_REUSEPORT` would let a second server join the first one's UDP sockets and take half of
/// its traffic; Farside refuses to start instead.
#[test]
fn a_second_server_on_the_same_udp_address_fails_to_start() {
    let test = "a_second_server_on_the_same_udp_address_fails_to_start";
    if !farside_only(test) {
        return;
    }
    let first = Server::start(test, ServerConfig::default());
    let dir = std::env::temp_dir().join(format!("farside-second-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("second.toml");
    std::fs::write(
        &path,
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"{}\"]\ntcp = false\n[admin]\nlisten = \"off\"\n",
            first.primary
        )),
    )
    .unwrap();
    let out = run_tool(
        env!("CARGO_BIN_EXE_farside"),
        &[
            "serve".into(),
            "--config".into(),
            path.to_str().unwrap().into(),
        ],
        Duration::from_secs(10),
    );
    assert!(
        !out.timed_out(),
        "second server kept running\n{}",
        out.describe()
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr
            .contains(&format!("S102 cannot bind UDP {}", first.primary)),
        "{}",
        out.describe()
    );
    first.assert_alive("after the second server's attempt");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_connections_are_capped_per_client_address() {
    let test = "tcp_connections_are_capped_per_client_address";
    if !farside_only(test) {
        return;
    }
    let server = Server::start(
        test,
        ServerConfig::default().with("tcp_max_connections_per_ip = 3"),
    );
    let refused_before = metric(&server, "farside_stun_tcp_connections_total", "refused");
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.primary).unwrap())
        .collect();
    // Each held connection is served.
    for mut c in held.iter().map(|c| c.try_clone().unwrap()) {
        c.write_all(&stun::binding_request(&stun::new_tid(), &[]))
            .unwrap();
        let m = stun::tcp_read(&mut c, Duration::from_secs(3)).unwrap();
        assert!(m.xor_mapped().is_some());
    }
    // The fourth from the same address is closed at once.
    let mut extra = TcpStream::connect(server.primary).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = extra.write_all(&stun::binding_request(&stun::new_tid(), &[]));
    let mut buf = [0u8; 64];
    assert!(
        matches!(extra.read(&mut buf), Ok(0) | Err(_)),
        "a fourth connection from one address was served\n{}",
        server.describe()
    );
    assert_eq!(
        metric(&server, "farside_stun_tcp_connections_total", "refused") - refused_before,
        1.0
    );
    // Giving one back makes room again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match stun::tcp_binding(server.primary) {
            Ok((m, _)) if m.xor_mapped().is_some() => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!(
                "no room after closing: {:?}\n{}",
                other.err(),
                server.describe()
            ),
        }
    }
}

/// A client that sends requests but never reads the answers fills its own receive window;
/// the server's write then stalls, and after `tcp_idle_timeout` the connection is closed
/// rather than held forever.
#[test]
fn a_tcp_client_that_never_reads_is_closed() {
    let test = "a_tcp_client_that_never_reads_is_closed";
    if !farside_only(test) {
        return;
    }
    let server = Server::start(test, ServerConfig::default().with("tcp_idle_timeout = 2"));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.primary.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_nonblocking(true).unwrap();
    let req = stun::binding_request(&stun::new_tid(), &[]);
    let burst: Vec<u8> = req.iter().copied().cycle().take(req.len() * 512).collect();
    // Write until the server stops taking requests (its answers are stuck in our window).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stuck_since: Option<Instant> = None;
    let mut written = 0usize;
    while Instant::now() < deadline {
        match c.write(&burst) {
            Ok(n) => {
                written += n;
                stuck_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => break, // already closed: also fine, checked below
        }
    }
    assert!(written > 0);
    // Within the idle timeout (2 s) plus slack, the server gives up on the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let closed = metric(&server, "farside_stun_tcp_connections_total", "idle_closed") >= 1.0;
        if closed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a non-reading client still holds its connection after {written} bytes\n{}",
            server.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(&server, "farside_stun_tcp_connections_open", ""),
        0.0,
        "{}",
        server.describe()
    );
    // And new clients are served.
    let (m, local) = stun::tcp_binding(server.primary).unwrap();
    assert_eq!(m.xor_mapped(), Some(local));
}

/// A client may pipeline more requests than the server's output queue (`stun.tcp_max_queued`,
/// 256 KiB) and the kernel's buffers hold answers for, then end its side and only read later: the server stops reading
/// it while its answers wait, goes on once they are read, and answers every request before it
/// closes. (Reading a whole burst at once used to overflow the queue and close it unanswered.)
#[test]
fn a_tcp_client_that_pipelines_past_the_output_queue_gets_every_answer() {
    let test = "a_tcp_client_that_pipelines_past_the_output_queue_gets_every_answer";
    if !farside_only(test) {
        return;
    }
    // 3 MB of requests, 6 MB of answers: more than the kernel's buffers hold, with the
    // client's receive buffer kept small, so the answers wait in the server's queue.
    const REQUESTS: usize = 150_000;
    let server = Server::start(test, ServerConfig::default());
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.primary.into()).unwrap();
    let mut c: TcpStream = sock.into();
    let mut writer = c.try_clone().unwrap();
    let tids: Vec<[u8; 12]> = (0..REQUESTS).map(|_| stun::new_tid()).collect();
    let burst: Vec<u8> = tids
        .iter()
        .flat_map(|t| stun::binding_request(t, &[]))
        .collect();
    let sender = std::thread::spawn(move || {
        writer.write_all(&burst).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    // Nothing is read for a while: the answers pile up at the server.
    std::thread::sleep(Duration::from_millis(500));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (i, tid) in tids.iter().enumerate() {
        let answer = stun::tcp_read_bytes(&mut c)
            .unwrap_or_else(|e| panic!("answer {i} of {REQUESTS}: {e}\n{}", server.describe()));
        assert_eq!(&answer[8..20], tid, "answer {i} is to another request");
    }
    sender.join().unwrap();
    // Then the server closes its side too.
    let mut rest = [0u8; 64];
    assert_eq!(
        c.read(&mut rest).unwrap(),
        0,
        "more than one answer per request"
    );
    assert_eq!(
        metric(
            &server,
            "farside_stun_tcp_connections_total",
            "overflow_closed"
        ),
        0.0
    );
}

/// Connections that never deliver a whole STUN message, over TCP and over TLS (where the
/// handshake itself never finishes), are closed once `stun.tcp_first_message_timeout` and
/// `stun.tls_handshake_timeout` pass, each counted; a client that asks in time is served and
/// then kept until the idle timeout.
#[test]
fn silent_tcp_and_stalled_tls_connections_are_closed_on_time() {
    let test = "silent_tcp_and_stalled_tls_connections_are_closed_on_time";
    if !farside_only(test) || !common::require_tool(test, "openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_for_loopback(&dir);
    let tls_port = common::free_ports(&[common::LOCALHOST], 1);
    let relay = common::free_ports(&[common::LOCALHOST], 20);
    let server = Server::start(
        test,
        ServerConfig::default()
            .with("tcp_first_message_timeout = 1")
            .with("tls_handshake_timeout = 2")
            .with("tcp_idle_timeout = 4")
            .with_table(&format!(
                "[turn]\nenabled = true\nrelay_ports = \"{relay}-{}\"\n\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
                relay + 19,
                cert.display(),
                key.display()
            )),
    );
    let event = |e: &str| {
        metric(
            &server,
            "farside_stun_tcp_connections_total",
            &format!("event=\"{e}\""),
        )
    };
    let silent = TcpStream::connect(server.primary).unwrap();
    // A TLS client that sends half a ClientHello and stops.
    let mut stalled = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // A client that asks at once is answered.
    let (m, _) = stun::tcp_binding(server.primary).unwrap();
    assert!(m.xor_mapped().is_some());
    let mut served = TcpStream::connect(server.primary).unwrap();
    served
        .write_all(&stun::binding_request(&stun::new_tid(), &[]))
        .unwrap();
    assert!(stun::tcp_read(&mut served, Duration::from_secs(3)).is_ok());
    assert!(
        common::wait_until(Duration::from_secs(5), || event("first_message_closed")
            >= 1.0),
        "{}",
        server.describe()
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || event("tls_handshake_closed")
            == 1.0),
        "{}",
        server.describe()
    );
    for mut s in [silent, stalled] {
        // Closed: the end of the stream (after a TLS alert, for the TLS one).
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        let mut ended = false;
        for _ in 0..8 {
            match s.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    ended = e.kind() != ErrorKind::WouldBlock;
                    break;
                }
            }
        }
        assert!(ended, "closed");
    }
    // The served one outlives the first-message timeout, not the idle one.
    served
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(served.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a served connection stays until it idles"
    );
    assert!(
        common::wait_until(Duration::from_secs(8), || event("idle_closed") >= 1.0),
        "{}",
        server.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A part left to the host (no `enabled` key) whose port another program holds is turned off
/// with S011 and the rest runs: here SIP, while STUN answers. The same part turned on by the
/// file (`enabled = true`) fails the start with S401.
#[test]
fn a_part_left_to_the_host_that_cannot_bind_is_off_and_the_rest_runs() {
    let test = "a_part_left_to_the_host_that_cannot_bind_is_off_and_the_rest_runs";
    if common::backend() != Backend::Farside {
        common::skip(test, "Farside's defaults");
        return;
    }
    let localhost = common::LOCALHOST;
    let ports = common::free_ports(&[localhost], 2);
    let (stun_port, sip_port) = (ports, ports + 1);
    // Another program on the SIP port.
    let _holder = std::net::UdpSocket::bind((localhost, sip_port)).unwrap();
    let dir = std::env::temp_dir().join(format!("farside-soft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = |sip_switch: &str| {
        format!(
            "[stun]\nlisten = [\"127.0.0.1:{stun_port}\"]\ntcp = false\n\n[sip]\n{sip_switch}listen = [\"udp:127.0.0.1:{sip_port}\"]\ndomain = \"example.org\"\n\n\
             [turn]\nenabled = false\n\n[rtp]\nenabled = false\n\n[store]\nurl = \"sqlite://{}\"\n\n[admin]\nlisten = \"off\"\n",
            dir.join("f.db").display()
        )
    };
    let left = dir.join("left.toml");
    std::fs::write(&left, config("")).unwrap();
    let server = common::spawn_logged(
        env!("CARGO_BIN_EXE_farside"),
        &[
            "serve".into(),
            "--config".into(),
            left.display().to_string(),
        ],
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .output()
            .contains("S010 running")),
        "{}",
        server.output()
    );
    let log = server.output();
    assert!(
        log.contains("S011 SIP off: S401 cannot bind SIP udp"),
        "{log}"
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let answered = stun::udp_binding_once(
        &sock,
        std::net::SocketAddr::new(localhost, stun_port),
        Duration::from_secs(2),
    );
    assert!(answered.is_some(), "STUN runs on\n{log}");
    drop(server);

    let on = dir.join("on.toml");
    std::fs::write(&on, config("enabled = true\n")).unwrap();
    let out = run_tool(
        env!("CARGO_BIN_EXE_farside"),
        &["serve".into(), "--config".into(), on.display().to_string()],
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("S401 cannot bind SIP udp"),
        "{}",
        out.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        "SIP's port held: left to the host, SIP off (S011) and STUN answering; asked for, the start failed (S401)",
    );
}
