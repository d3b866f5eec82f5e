//! WebRTC in a real browser through Farside's TURN: two peer connections in one headless
//! Chromium page (`tests/python/webrtc_relay.py`, over the DevTools protocol) with
//! `iceTransportPolicy: "relay"`, through TURN over UDP, TCP and TLS. For each, the selected
//! candidate pair is relay/relay over that transport, a data channel echoes, and an audio track
//! arrives at about 50 packets a second (20 ms Opus frames). The same page against coturn, the
//! server a user would pick instead, is the control: both must pass alike.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{LOCALHOST, Server, ServerConfig, require_tool, run_tool};

/// The transports, as the browser names the relay protocol.
const TRANSPORTS: [&str; 3] = ["udp", "tcp", "tls"];

#[test]
fn two_browser_peers_talk_relay_to_relay_through_farside_and_coturn_over_udp_tcp_and_tls() {
    let test =
        "two_browser_peers_talk_relay_to_relay_through_farside_and_coturn_over_udp_tcp_and_tls";
    for tool in ["chromium", "turnserver", "openssl"] {
        if !require_tool(test, tool) {
            return;
        }
    }
    let Some(python) = common::require_python_module(test, "websockets") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("farside-webrtc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_for_loopback(&dir);

    // Farside: TURN on UDP and TCP, TLS on its own port.
    let tls_port = common::free_ports(&[LOCALHOST], 1);
    let farside = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nallowed_peers = [\"127.0.0.0/8\"]\n\n\
             [tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )),
    );
    assert!(common::wait_until(Duration::from_secs(5), || farside
        .logs()
        .contains("S010 running")));
    farside.cli(&["user", "add", "alice", "--password", "wonderland"]);
    farside.wait_for_log("S306 store changed");

    // coturn: the same user, realm and transports.
    let ports = common::free_ports(&[LOCALHOST], 2);
    let (coturn_port, coturn_tls) = (ports, ports + 1);
    let relay_ports = common::free_ports(&[LOCALHOST], 100);
    let coturn_args: Vec<String> = [
        "-n".to_string(),
        "--listening-ip=127.0.0.1".into(),
        "--relay-ip=127.0.0.1".into(),
        format!("--listening-port={coturn_port}"),
        format!("--tls-listening-port={coturn_tls}"),
        format!("--min-port={relay_ports}"),
        format!("--max-port={}", relay_ports + 99),
        format!("--cert={}", cert.display()),
        format!("--pkey={}", key.display()),
        "--lt-cred-mech".into(),
        "--user=alice:wonderland".into(),
        "--realm=farside".into(),
        "--allow-loopback-peers".into(),
        "--no-cli".into(),
        "--no-dtls".into(),
        "--log-file=stdout".into(),
        "--simple-log".into(),
    ]
    .to_vec();
    let coturn = common::spawn_logged("turnserver", &coturn_args);
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", coturn_port)).is_ok()
        }),
        "coturn did not start\n{}",
        coturn.output()
    );

    let server = |name: &str, url: String| serde_json::json!({"name": name, "urls": url, "username": "alice", "credential": "wonderland"});
    let p = farside.primary.port();
    let servers = serde_json::json!([
        server("farside udp", format!("turn:127.0.0.1:{p}?transport=udp")),
        server("farside tcp", format!("turn:127.0.0.1:{p}?transport=tcp")),
        server(
            "farside tls",
            format!("turns:127.0.0.1:{tls_port}?transport=tcp")
        ),
        server(
            "coturn udp",
            format!("turn:127.0.0.1:{coturn_port}?transport=udp")
        ),
        server(
            "coturn tcp",
            format!("turn:127.0.0.1:{coturn_port}?transport=tcp")
        ),
        server(
            "coturn tls",
            format!("turns:127.0.0.1:{coturn_tls}?transport=tcp")
        ),
    ]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/webrtc_relay.py"
    );
    let out = run_tool(
        &python,
        &[script.to_string(), servers.to_string()],
        Duration::from_secs(300),
    );
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        farside.describe()
    );
    let seen: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let mut summary = Vec::new();
    for server in ["coturn", "farside"] {
        for transport in TRANSPORTS {
            let r = &seen[format!("{server} {transport}")];
            let why = format!(
                "{server} {transport}: {r}\n{}",
                if server == "farside" {
                    farside.describe()
                } else {
                    coturn.output()
                }
            );
            assert_eq!(r["local_type"], "relay", "{why}");
            assert_eq!(r["remote_type"], "relay", "{why}");
            assert_eq!(r["relay_protocol"], transport, "{why}");
            assert_eq!(r["echo"], "echo:hello through the relay", "{why}");
            let rate = r["audio_packets_per_s"].as_f64().unwrap_or(0.0);
            assert!(
                (40.0..=60.0).contains(&rate),
                "audio {rate} packets/s: {why}"
            );
            summary.push(format!("{server} {transport} {rate}/s"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        &format!(
            "relay/relay, data channel echoed, audio packets/s: {}",
            summary.join(", ")
        ),
    );
}
