//! The TURN relay against coturn's own client tools: `turnutils_uclient` allocates through
//! Farside and exchanges messages with `turnutils_peer`; the tests read uclient's printed
//! totals and Farside's counters.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use std::process::{Child, Command, Stdio};

use common::turn::{Peer, Totals, totals};
use common::{LOCALHOST, Server, ServerConfig, counter, require_tool, run_tool};

const SECRET: &str = "turn test secret 0123456789";
const UCLIENT_LIMIT: Duration = Duration::from_secs(90);
/// A refused uclient keeps retrying; this is long enough for its first rounds.
const FAILING_LIMIT: Duration = Duration::from_secs(5);

/// A TURN-enabled Farside on 127.0.0.1, relaying from 127.0.0.1; `turn` adds `[turn]` lines.
fn turn_server(test: &str, turn: &str) -> Server {
    let ports = common::free_ports(&[LOCALHOST], 200);
    Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nrelay_ports = \"{}-{}\"\nauth_secrets = [\"{SECRET}\"]\n{turn}",
            ports,
            ports + 199
        )),
    )
}

/// Runs uclient against `server` and `peer`; `limit` bounds it (it retries forever on some errors).
fn uclient(server: &Server, peer: &Peer, extra: &[&str], limit: Duration) -> common::ToolOutput {
    uclient_to(server, peer, "127.0.0.1", extra, limit)
}

fn uclient_to(
    server: &Server,
    peer: &Peer,
    peer_ip: &str,
    extra: &[&str],
    limit: Duration,
) -> common::ToolOutput {
    let mut args: Vec<String> = [
        "-e",
        peer_ip,
        "-r",
        &peer.port.to_string(),
        "-p",
        &server.primary.port().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    run_tool("turnutils_uclient", &args, limit)
}

/// uclient sent `n` messages and got all `n` back, with no loss.
fn assert_all_relayed(out: &common::ToolOutput, server: &Server, n: u64) {
    assert_eq!(
        totals(&out.all()),
        Some(Totals {
            sent: n,
            received: n,
            lost: Some(0)
        }),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
}

fn require(test: &str) -> bool {
    require_tool(test, "turnutils_uclient") && require_tool(test, "turnutils_peer")
}

/// Zero loss at light load, with channels and RTCP (EVEN-PORT reservations) and with Send
/// indications, over UDP, with ephemeral (REST) credentials.
#[test]
fn uclient_relays_through_farside_with_a_rest_secret() {
    let test = "uclient_relays_through_farside_with_a_rest_secret";
    if !require(test) {
        return;
    }
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let peer = Peer::start();
    for (mode, extra) in [
        (
            "channels",
            &["-W", SECRET, "-u", "alice", "-n", "50", "-m", "4"][..],
        ),
        (
            "send indications",
            &["-W", SECRET, "-u", "bob", "-n", "50", "-m", "4", "-s", "-c"][..],
        ),
    ] {
        let out = uclient(&server, &peer, extra, UCLIENT_LIMIT);
        let t = totals(&out.all());
        assert_eq!(
            t,
            Some(Totals {
                sent: 200,
                received: 200,
                lost: Some(0)
            }),
            "{mode}\n{}\n{}",
            out.describe(),
            server.describe()
        );
    }
    assert!(counter(&server, "farside_turn_relayed_packets_total", "to_peer") >= 400.0);
    assert!(counter(&server, "farside_turn_relayed_packets_total", "to_client") >= 400.0);
    assert!(counter(&server, "farside_turn_responses_total", "challenge") >= 1.0);
    server.assert_alive("after uclient");
}

/// Without `allowed_peers`, a loopback peer is refused with 403 and nothing is relayed.
#[test]
fn loopback_peers_are_refused_by_default() {
    let test = "loopback_peers_are_refused_by_default";
    if !require(test) {
        return;
    }
    let server = turn_server(test, "");
    let peer = Peer::start();
    let out = uclient(
        &server,
        &peer,
        &["-W", SECRET, "-u", "alice", "-n", "5", "-c"],
        FAILING_LIMIT,
    );
    assert!(
        totals(&out.all()).is_none_or(|t| t.received == 0),
        "{}",
        out.describe()
    );
    assert!(
        counter(&server, "farside_turn_responses_total", "peer_forbidden") >= 1.0,
        "{}",
        server.describe()
    );
    assert_eq!(
        counter(&server, "farside_turn_relayed_packets_total", "to_peer"),
        0.0
    );
}

/// A wrong REST secret gets 401s and no allocation.
#[test]
fn a_wrong_secret_is_refused() {
    let test = "a_wrong_secret_is_refused";
    if !require(test) {
        return;
    }
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let peer = Peer::start();
    let out = uclient(
        &server,
        &peer,
        &[
            "-W",
            "not the secret at all!!",
            "-u",
            "alice",
            "-n",
            "5",
            "-c",
        ],
        FAILING_LIMIT,
    );
    assert!(
        totals(&out.all()).is_none_or(|t| t.received == 0),
        "{}",
        out.describe()
    );
    assert!(counter(&server, "farside_turn_responses_total", "wrong_password") >= 1.0);
    assert_eq!(counter(&server, "farside_turn_allocations", ""), 0.0);
}

/// uclient with `args` relays nothing, and the server counts one more refusal for wrong
/// credentials (401) than before.
fn assert_refused_for_credentials(server: &Server, peer: &Peer, args: &[&str]) {
    let before = counter(server, "farside_turn_responses_total", "wrong_password");
    let out = uclient(server, peer, args, FAILING_LIMIT);
    assert!(
        totals(&out.all()).is_none_or(|t| t.received == 0),
        "{}",
        out.describe()
    );
    assert!(
        counter(server, "farside_turn_responses_total", "wrong_password") > before,
        "{}",
        server.describe()
    );
}

/// A second, independent client: Python's aioice gathers a relay candidate from Farside and
/// exchanges datagrams with a peer through it (the peer sees them come from the relayed
/// address, and echoes them back the same way).
#[test]
fn aioice_gathers_a_relay_candidate_and_exchanges_data() {
    let test = "aioice_gathers_a_relay_candidate_and_exchanges_data";
    let Some(python) = common::require_python_module(test, "aioice") else {
        return;
    };
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let echoer = std::thread::spawn(move || {
        let mut sources = std::collections::BTreeSet::new();
        let mut buf = [0u8; 2048];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            if let Ok((n, from)) = echo.recv_from(&mut buf) {
                sources.insert(from);
                let _ = echo.send_to(&buf[..n], from);
            }
        }
        sources
    });
    let (user, password) = common::turn::rest_credentials(SECRET, "carol");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/turn_client.py"
    );
    let out = run_tool(
        &python,
        &[
            script.to_string(),
            "127.0.0.1".into(),
            server.primary.port().to_string(),
            user,
            password,
            "127.0.0.1".into(),
            echo_addr.port().to_string(),
            "20".into(),
        ],
        Duration::from_secs(60),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sources = echoer.join().unwrap();
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "aioice client printed no JSON ({e})\n{}\n{}",
            out.describe(),
            server.describe()
        )
    });
    let relayed = json["relayed"].as_str().unwrap_or("");
    assert!(relayed.starts_with("127.0.0.1:"), "{json}");
    assert_eq!(json["sent"], 20, "{json}");
    assert_eq!(json["echoed"], 20, "{json}\n{}", server.describe());
    let relayed: std::net::SocketAddr = relayed.parse().unwrap();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![relayed],
        "the peer heard only the relayed address"
    );
}

/// Long-term credentials from the store, added with `farside user add` while the server runs
/// (it picks them up without a restart); uclient authenticates with them, not with a wrong
/// password. Removed with `farside user remove` while the server runs, the user is refused
/// again.
#[test]
fn uclient_with_a_long_term_user_added_and_removed_while_the_server_runs() {
    let test = "uclient_with_a_long_term_user_added_and_removed_while_the_server_runs";
    if !require(test) {
        return;
    }
    // Every refusal here must be one for credentials, not the per-source limit on failures.
    let server = turn_server(
        test,
        "allowed_peers = [\"127.0.0.0/8\"]\nauth_failures_per_minute = 1000\n",
    );
    let peer = Peer::start();
    let add = server.cli(&["user", "add", "dave", "--password", "secret-pw"]);
    assert!(
        add.stdout.contains("added user dave in realm farside"),
        "{}",
        add.describe()
    );
    server.wait_for_log("S306 store changed: 1 users");
    let dave = ["-u", "dave", "-w", "secret-pw", "-n", "20", "-m", "2"];
    let out = uclient(&server, &peer, &dave, UCLIENT_LIMIT);
    assert_all_relayed(&out, &server, 40);
    let wrong = uclient(
        &server,
        &peer,
        &["-u", "dave", "-w", "not-it", "-n", "5", "-c"],
        FAILING_LIMIT,
    );
    assert!(totals(&wrong.all()).is_none_or(|t| t.received == 0));
    assert!(counter(&server, "farside_turn_responses_total", "wrong_password") >= 1.0);

    server.cli(&["user", "remove", "dave"]);
    server.wait_for_log("S306 store changed: 0 users");
    assert_refused_for_credentials(&server, &peer, &dave);
}

/// Shared secrets of ephemeral credentials kept in the store: one added with `farside secret
/// add` while the server runs is used by uclient (`-W`); removed with `farside secret remove`,
/// its credentials are refused, while the secret of the config file still works.
#[test]
fn uclient_with_a_shared_secret_added_and_removed_while_the_server_runs() {
    let test = "uclient_with_a_shared_secret_added_and_removed_while_the_server_runs";
    if !require(test) {
        return;
    }
    const STORED: &str = "a-secret-added-by-the-cli-0123";
    // Every refusal here must be one for credentials, not the per-source limit on failures.
    let server = turn_server(
        test,
        "allowed_peers = [\"127.0.0.0/8\"]\nauth_failures_per_minute = 1000\n",
    );
    let peer = Peer::start();
    let with = |secret: &'static str| ["-W", secret, "-u", "erin", "-n", "20", "-m", "2"];
    // Unknown yet: refused.
    assert_refused_for_credentials(&server, &peer, &with(STORED));

    let add = server.cli(&["secret", "add", STORED]);
    let id = add
        .stdout
        .trim()
        .strip_prefix("added secret ")
        .unwrap_or_else(|| panic!("{}", add.describe()))
        .to_string();
    server.wait_for_log("S306 store changed: 0 users, 1 shared secrets");
    let out = uclient(&server, &peer, &with(STORED), UCLIENT_LIMIT);
    assert_all_relayed(&out, &server, 40);

    server.cli(&["secret", "remove", &id]);
    server.wait_for_log("S306 store changed: 0 users, 0 shared secrets");
    assert_refused_for_credentials(&server, &peer, &with(STORED));
    let still = uclient(&server, &peer, &with(SECRET), UCLIENT_LIMIT);
    assert_all_relayed(&still, &server, 40);
}

/// RFC 6156: an IPv4 client asks for an IPv6 relayed address (uclient `-x`) and relays to an
/// IPv6 peer through it.
#[test]
fn uclient_gets_an_ipv6_relayed_address() {
    let test = "uclient_gets_an_ipv6_relayed_address";
    if !require(test) {
        return;
    }
    if !common::ipv6_loopback_available() {
        common::skip(test, "no IPv6 loopback here");
        return;
    }
    let server = turn_server(
        test,
        "relay_address = [\"127.0.0.1\", \"::1\"]\nallowed_peers = [\"127.0.0.0/8\", \"::1\"]\n",
    );
    let peer = Peer::start_on("::1");
    let out = uclient_to(
        &server,
        &peer,
        "::1",
        &[
            "-v", "-x", "-W", SECRET, "-u", "alice", "-n", "20", "-m", "2",
        ],
        UCLIENT_LIMIT,
    );
    assert!(
        out.all().contains("IPv6. Received relay addr: ::1:"),
        "{}",
        out.describe()
    );
    assert_all_relayed(&out, &server, 40);
}

/// TURN over TCP (RFC 8656 §3.1): uclient `-t` with channels and with Send indications; STUN
/// Binding still answered on the same TCP port.
#[test]
fn uclient_over_tcp() {
    let test = "uclient_over_tcp";
    if !require(test) {
        return;
    }
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let peer = Peer::start();
    for (mode, extra) in [
        (
            "channels",
            &["-t", "-W", SECRET, "-u", "alice", "-n", "50", "-m", "4"][..],
        ),
        (
            "send indications",
            &[
                "-t", "-s", "-c", "-W", SECRET, "-u", "bob", "-n", "50", "-m", "4",
            ][..],
        ),
    ] {
        let out = uclient(&server, &peer, extra, UCLIENT_LIMIT);
        assert_eq!(
            totals(&out.all()),
            Some(Totals {
                sent: 200,
                received: 200,
                lost: Some(0)
            }),
            "{mode}\n{}\n{}",
            out.describe(),
            server.describe()
        );
    }
    let (msg, _) = common::stun::tcp_binding(server.primary).unwrap();
    assert!(msg.xor_mapped().is_some(), "Binding over TCP with TURN on");
}

/// Closing the TCP connection ends its allocation (RFC 8656 §2.1).
#[test]
fn an_allocation_ends_with_its_tcp_connection() {
    use common::turn::{allocate_request, nonce_of, rest_credentials};
    use farside_stun::{Class, Message};
    use std::io::Write;

    let test = "an_allocation_ends_with_its_tcp_connection";
    let server = turn_server(test, "");
    let (user, password) = rest_credentials(SECRET, "tcp");
    let request = |tid: u32, nonce: Option<&str>| {
        allocate_request(tid, nonce.map(|n| (user.as_str(), password.as_str(), n)))
    };
    let read_msg = |s: &mut std::net::TcpStream| common::stun::tcp_read_bytes(s).unwrap();
    let mut s = std::net::TcpStream::connect(server.primary).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&request(1, None)).unwrap();
    let challenge = read_msg(&mut s);
    let nonce = nonce_of(&challenge);
    s.write_all(&request(2, Some(&nonce))).unwrap();
    let ok = read_msg(&mut s);
    assert_eq!(Message::parse(&ok).unwrap().class(), Class::SuccessResponse);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter(&server, "farside_turn_allocations", "") != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counter(&server, "farside_turn_allocations", "") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the allocation outlived its connection\n{}",
            server.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A throwaway self-signed certificate and key for 127.0.0.1, in a fresh directory.
fn self_signed(name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("farside-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_for_loopback(&dir);
    (dir, cert, key)
}

/// TURN over TLS (`[tls]`, rustls): uclient `-t -S` with a throwaway self-signed certificate.
#[test]
fn uclient_over_tls() {
    let test = "uclient_over_tls";
    if !require(test) || !require_tool(test, "openssl") {
        return;
    }
    let (dir, cert, key) = self_signed("tls");
    let tls_port = common::free_ports(&[LOCALHOST], 1);
    let server = turn_server(
        test,
        &format!(
            "allowed_peers = [\"127.0.0.0/8\"]\n\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let peer = Peer::start();
    let mut args: Vec<String> = [
        "-t",
        "-S",
        "-W",
        SECRET,
        "-u",
        "alice",
        "-n",
        "50",
        "-m",
        "4",
        "-e",
        "127.0.0.1",
        "-r",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        peer.port.to_string(),
        "-p".into(),
        tls_port.to_string(),
        "127.0.0.1".into(),
    ]);
    let out = run_tool("turnutils_uclient", &args, UCLIENT_LIMIT);
    assert_all_relayed(&out, &server, 200);
    assert!(
        server
            .logs()
            .contains(&format!("listening on tls 127.0.0.1:{tls_port}"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The certificate `openssl s_client` is served on 127.0.0.1:`port`: its subject line.
fn served_subject(port: u16) -> String {
    let args: Vec<String> = [
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-brief",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_tool("openssl", &args, Duration::from_secs(10));
    out.all()
        .lines()
        .find(|l| l.contains("Peer certificate:"))
        .unwrap_or_default()
        .to_owned()
}

/// A renewed certificate (new files in place of the old) is served to new connections within
/// seconds, without a restart; TURN over TLS goes on working.
#[test]
fn a_renewed_tls_certificate_is_served_without_a_restart() {
    let test = "a_renewed_tls_certificate_is_served_without_a_restart";
    if !require(test) || !require_tool(test, "openssl") {
        return;
    }
    let (dir, cert, key) = self_signed("tls-reload");
    let tls_port = common::free_ports(&[LOCALHOST], 1);
    let server = turn_server(
        test,
        &format!(
            "allowed_peers = [\"127.0.0.0/8\"]\n\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let before = served_subject(tls_port);
    assert!(
        before.contains("CN = 127.0.0.1") || before.contains("CN=127.0.0.1"),
        "{before}"
    );
    // A renewal: a new key and certificate, moved over the old files.
    let renewed = dir.join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    common::self_signed(&renewed, "renewed.farside.test");
    std::fs::rename(renewed.join("key.pem"), &key).unwrap();
    std::fs::rename(renewed.join("cert.pem"), &cert).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut after = String::new();
    while std::time::Instant::now() < deadline {
        after = served_subject(tls_port);
        if after.contains("renewed.farside.test") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        after.contains("renewed.farside.test"),
        "still {after}\n{}",
        server.describe()
    );
    assert!(server.logs().contains("S309"), "{}", server.describe());
    // TURN over TLS with the new certificate.
    let peer = Peer::start();
    let args: Vec<String> = [
        "-t",
        "-S",
        "-W",
        SECRET,
        "-u",
        "alice",
        "-n",
        "20",
        "-m",
        "2",
        "-e",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-r".into(),
        peer.port.to_string(),
        "-p".into(),
        tls_port.to_string(),
        "127.0.0.1".into(),
    ])
    .collect();
    let out = run_tool("turnutils_uclient", &args, UCLIENT_LIMIT);
    assert_all_relayed(&out, &server, 40);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 6062 TCP allocations with uclient `-T`: two clients each get a TCP allocation; one
/// Connects to the other's relayed address, which accepts it and announces it with a
/// ConnectionAttempt; both bind data connections and exchange messages. Over TCP, then TLS.
#[test]
fn uclient_relays_through_tcp_allocations() {
    let test = "uclient_relays_through_tcp_allocations";
    if !require(test) || !require_tool(test, "openssl") {
        return;
    }
    let (dir, cert, key) = self_signed("tcp-relay");
    let tls_port = common::free_ports(&[LOCALHOST], 1);
    let server = turn_server(
        test,
        &format!(
            "allowed_peers = [\"127.0.0.0/8\"]\n\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let tcp_port = server.primary.port().to_string();
    let tls_port = tls_port.to_string();
    for (transport, port, extra) in [("tcp", &tcp_port, &[][..]), ("tls", &tls_port, &["-S"][..])] {
        let mut args: Vec<&str> = vec!["-T"];
        args.extend(extra);
        args.extend([
            "-W",
            SECRET,
            "-u",
            "alice",
            "-n",
            "100",
            "-m",
            "1",
            "-l",
            "170",
            "-z",
            "5",
            "-p",
            port,
            "127.0.0.1",
        ]);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run_tool("turnutils_uclient", &args, UCLIENT_LIMIT);
        assert!(
            out.all().contains("connections are completed"),
            "{transport}: {}",
            out.describe()
        );
        // Two clients, 100 messages each.
        assert_all_relayed(&out, &server, 200);
    }
    // Both runs spliced 200 messages of 170 bytes each way.
    for direction in ["to_peer", "to_client"] {
        let bytes = counter(&server, "farside_turn_relayed_bytes_total", direction);
        assert!(bytes >= 2.0 * 200.0 * 170.0, "{direction}: {bytes}");
    }
    assert_eq!(counter(&server, "farside_turn_responses_total", "447"), 0.0);
    server.assert_alive("after uclient -T");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dual allocations (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2; uclient `-Z`, whose Refreshes
/// ask for one family or the other at random): each Allocate is granted an IPv4 and an IPv6
/// relayed address, both used: an IPv4 client's data reaches an IPv4 peer and an IPv6 peer
/// (which only the IPv6 relayed address can reach) and comes back, no refusal, nothing lost.
#[test]
fn uclient_with_dual_allocations_gets_and_uses_both_families() {
    let test = "uclient_with_dual_allocations_gets_and_uses_both_families";
    if !require(test) {
        return;
    }
    if !common::ipv6_loopback_available() {
        common::skip(test, "no IPv6 loopback here");
        return;
    }
    let server = turn_server(
        test,
        "relay_address = [\"127.0.0.1\", \"::1\"]\nallowed_peers = [\"127.0.0.0/8\", \"::1\"]\n",
    );
    let v4 = Peer::start();
    let v6 = Peer::start_on("::1");
    for (peer, peer_ip) in [(&v4, "127.0.0.1"), (&v6, "::1"), (&v4, "127.0.0.1")] {
        let out = uclient_to(
            &server,
            peer,
            peer_ip,
            &[
                "-v", "-Z", "-W", SECRET, "-u", "alice", "-n", "20", "-m", "2",
            ],
            UCLIENT_LIMIT,
        );
        assert!(!out.all().contains("error 4"), "{}", out.describe());
        // uclient -v names the relayed address of the peer's family; with an IPv6 peer, both
        // of each allocation.
        // Each allocation's pair is printed together.
        let granted = |line: &str| out.all().matches(line).count();
        let v4_granted = granted("IPv4. Received relay addr: 127.0.0.1:");
        assert!(v4_granted >= 2, "{}", out.describe());
        if peer_ip == "::1" {
            assert_eq!(
                granted("IPv6. Received relay addr: ::1:"),
                v4_granted,
                "{}",
                out.describe()
            );
        }
        assert_all_relayed(&out, &server, 40);
    }
    assert_eq!(
        counter(
            &server,
            "farside_turn_responses_total",
            "peer_address_family_mismatch"
        ),
        0.0
    );
}

/// DONT-FRAGMENT (uclient `-g`, in Allocate and in every Send indication): honoured, so nothing
/// is refused and every message is relayed.
#[test]
fn uclient_with_dont_fragment() {
    let test = "uclient_with_dont_fragment";
    if !require(test) {
        return;
    }
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let peer = Peer::start();
    for extra in [
        &["-g", "-W", SECRET, "-u", "alice", "-n", "20", "-m", "2"][..],
        &[
            "-g", "-s", "-c", "-W", SECRET, "-u", "alice", "-n", "20", "-m", "2",
        ][..],
    ] {
        let out = uclient(&server, &peer, extra, UCLIENT_LIMIT);
        assert_all_relayed(&out, &server, 40);
    }
    assert_eq!(
        counter(&server, "farside_turn_responses_total", "unknown_attribute"),
        0.0
    );
}

/// A flood of wrong passwords from one address is answered 401 up to
/// `turn.auth_failures_per_minute`, then dropped unanswered and counted; another address is
/// still served.
#[test]
fn a_flood_of_bad_passwords_is_rate_limited() {
    use common::turn::{allocate_request, nonce_of, rest_credentials};
    use farside_stun::{Class, Message};

    let test = "a_flood_of_bad_passwords_is_rate_limited";
    let server = turn_server(test, "auth_failures_per_minute = 5\n");
    let allocate = |tid: u32, user: &str, password: &str, nonce: Option<&str>| {
        allocate_request(tid, nonce.map(|n| (user, password, n)))
    };
    let ask = |sock: &std::net::UdpSocket, req: &[u8]| -> Option<Vec<u8>> {
        sock.send_to(req, server.primary).unwrap();
        let mut buf = [0u8; 2048];
        sock.recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec())
    };
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let challenge = ask(&attacker, &allocate(1, "", "", None)).expect("a challenge");
    let nonce = nonce_of(&challenge);
    let mut answered = 0;
    for tid in 2..22u32 {
        if ask(&attacker, &allocate(tid, "mallory", "guess", Some(&nonce))).is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 5, "401s up to the limit, then silence");
    assert!(counter(&server, "farside_turn_dropped_total", "auth_rate_limited") >= 15.0);
    // Someone else, from another address, with the right credentials, is unaffected.
    let (user, password) = rest_credentials(SECRET, "alice");
    let honest = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    honest
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ok = ask(&honest, &allocate(30, &user, &password, Some(&nonce))).expect("an answer");
    assert_eq!(Message::parse(&ok).unwrap().class(), Class::SuccessResponse);
}

/// One user allocating from 16 UDP source ports (which the kernel's `SO_REUSEPORT` hash spreads
/// over the two data-plane workers) and over two TCP connections (the TCP thread's own TURN
/// core) gets exactly `max_allocations_per_user`, not that many per worker.
#[test]
fn one_user_from_many_source_ports_gets_exactly_its_quota_across_workers() {
    use common::turn::{allocate_request, nonce_of, rest_credentials};
    use farside_stun::attributes::ErrorCode;
    use farside_stun::{Class, Message};
    use std::io::Write;

    let test = "one_user_from_many_source_ports_gets_exactly_its_quota_across_workers";
    // 18 clients from one address draw 18 challenges at once: more than the per-source
    // budget of refusals (against forged sources), which this test is not about.
    let server = turn_server(
        test,
        "max_allocations_per_user = 3\nrefusals_per_second = 0\n",
    );
    let (user, password) = rest_credentials(SECRET, "quota");
    let allocate = |tid: u32, nonce: Option<&str>| {
        allocate_request(tid, nonce.map(|n| (user.as_str(), password.as_str(), n)))
    };
    // The final answer to an Allocate: the code of its error, or 0 for success.
    let code = |answer: &[u8]| -> u16 {
        let m = Message::parse(answer).unwrap();
        match m.class() {
            Class::SuccessResponse => 0,
            _ => m.attribute::<ErrorCode>().unwrap().unwrap().code,
        }
    };
    let mut codes = Vec::new();
    for i in 0..16u32 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        sock.send_to(&allocate(100 + 2 * i, None), server.primary)
            .unwrap();
        let n = sock.recv(&mut buf).unwrap();
        let nonce = nonce_of(&buf[..n]);
        sock.send_to(&allocate(101 + 2 * i, Some(&nonce)), server.primary)
            .unwrap();
        let n = sock.recv(&mut buf).unwrap();
        codes.push(code(&buf[..n]));
        // Kept open (and so allocated) until the test ends.
        std::mem::forget(sock);
    }
    let read_msg = |s: &mut std::net::TcpStream| common::stun::tcp_read_bytes(s).unwrap();
    let mut held = Vec::new();
    for i in 0..2u32 {
        let mut s = std::net::TcpStream::connect(server.primary).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&allocate(200 + 2 * i, None)).unwrap();
        let nonce = nonce_of(&read_msg(&mut s));
        s.write_all(&allocate(201 + 2 * i, Some(&nonce))).unwrap();
        codes.push(code(&read_msg(&mut s)));
        held.push(s);
    }
    let granted = codes.iter().filter(|&&c| c == 0).count();
    assert_eq!(granted, 3, "answers {codes:?}\n{}", server.describe());
    assert!(
        codes.iter().all(|&c| c == 0 || c == 486),
        "the others are 486 Allocation Quota Reached: {codes:?}"
    );
    assert_eq!(counter(&server, "farside_turn_allocations", ""), 3.0);
}

/// Wrong passwords from one address spread over 16 source ports (so over the workers) are
/// answered up to `auth_failures_per_minute` in all, then dropped: the limit is per source
/// address, server-wide.
#[test]
fn bad_passwords_from_many_source_ports_of_one_address_share_one_limit() {
    use common::turn::{allocate_request, nonce_of};

    let test = "bad_passwords_from_many_source_ports_of_one_address_share_one_limit";
    let server = turn_server(test, "auth_failures_per_minute = 5\n");
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    probe
        .send_to(&allocate_request(1, None), server.primary)
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = probe.recv(&mut buf).unwrap();
    let nonce = nonce_of(&buf[..n]);
    let mut answered = 0;
    for i in 0..16u32 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let req = allocate_request(10 + i, Some(("mallory", "guess", &nonce)));
        sock.send_to(&req, server.primary).unwrap();
        if sock.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(
        answered,
        5,
        "401s up to the limit in all, then silence\n{}",
        server.describe()
    );
    assert_eq!(
        counter(&server, "farside_turn_dropped_total", "auth_rate_limited"),
        11.0
    );
}

/// `farside bench turn`, the load tool users point at any TURN server, against Farside and
/// against coturn: a light load is relayed whole both ways, and its JSON report adds up.
#[test]
fn bench_turn_loads_farside_and_coturn_alike() {
    let test = "bench_turn_loads_farside_and_coturn_alike";
    if !require_tool(test, "turnserver") {
        return;
    }
    let server = turn_server(test, "allowed_peers = [\"127.0.0.0/8\"]\n");
    let report = bench_turn(server.primary);
    assert_light_load_relayed(&report, &server.describe());
    // Each client's channel carried its share, seen from the relay's side too.
    let sent = report["sent"].as_f64().unwrap();
    assert!(counter(&server, "farside_turn_relayed_packets_total", "to_peer") >= sent);
    assert!(counter(&server, "farside_turn_relayed_packets_total", "to_client") >= sent);

    let coturn = Coturn::start();
    let report = bench_turn(coturn.addr);
    assert_light_load_relayed(&report, "coturn");
}

/// `farside bench turn` at 2000 round trips/s for one second over 8 allocations; its JSON.
fn bench_turn(target: std::net::SocketAddr) -> serde_json::Value {
    let args: Vec<String> = [
        "bench",
        "turn",
        &target.to_string(),
        "--secret",
        SECRET,
        "--clients",
        "8",
        "--rate",
        "2000",
        "--seconds",
        "1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_tool(env!("CARGO_BIN_EXE_farside"), &args, UCLIENT_LIMIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

fn assert_light_load_relayed(report: &serde_json::Value, server: &str) {
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert!(n("sent") >= 1900, "{report}\n{server}");
    assert_eq!(n("peer_echoed"), n("sent"), "{report}\n{server}");
    assert_eq!(n("received"), n("sent"), "{report}\n{server}");
    assert_eq!(n("generator_drops"), 0, "{report}\n{server}");
    assert_eq!(n("send_errors"), 0, "{report}\n{server}");
    assert_eq!(report["loss_pct"].as_f64(), Some(0.0), "{report}\n{server}");
}

/// coturn's `turnserver` with the same shared secret, relaying to loopback peers; killed on drop.
struct Coturn {
    child: Child,
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl Coturn {
    fn start() -> Coturn {
        let ports = common::free_ports(&[common::LOCALHOST], 101);
        let dir =
            std::env::temp_dir().join(format!("farside-coturn-{}-{ports}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .arg(format!("--listening-port={ports}"))
            .arg(format!("--min-port={}", ports + 1))
            .arg(format!("--max-port={}", ports + 100))
            .args(["--use-auth-secret", "--static-auth-secret", SECRET])
            .args(["--realm", "farside", "--allow-loopback-peers"])
            .arg(format!(
                "--pidfile={}",
                dir.join("turnserver.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.join("turnserver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let addr = std::net::SocketAddr::new(common::LOCALHOST, ports);
        // Ready when it answers a Binding request.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ready = (0..50).any(|_| {
            common::stun::udp_binding_once(&probe, addr, Duration::from_millis(200)).is_some()
        });
        assert!(ready, "turnserver did not answer on {addr}");
        Coturn { child, addr, dir }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
