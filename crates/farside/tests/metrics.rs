//! The metrics exposition as an operator's Prometheus reads it: with every part running (STUN
//! with RFC 5780, TURN, SIP, the RTP relay) and some traffic through each, `/metrics` passes
//! Prometheus's own `promtool check metrics`, and every family in it is documented in
//! `docs/metrics.md`; the Grafana dashboard in `docs/` queries only metrics and labels that exist.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{LOCALHOST, Server, ServerConfig, free_ports, stun, turn};

#[test]
fn the_exposition_passes_promtool_and_every_family_is_documented() {
    let test = "the_exposition_passes_promtool_and_every_family_is_documented";
    if common::backend() != common::Backend::Farside {
        common::skip(test, "Farside's metrics");
        return;
    }
    if !common::require_tool(test, "promtool") {
        return;
    }
    let [sip, ng] = [0, 1].map(|_| free_ports(&[LOCALHOST], 1));
    let relay_ports = free_ports(&[LOCALHOST], 20);
    let rtp_ports = relay_ports + 10 + (relay_ports & 1);
    let server = Server::start(
        test,
        ServerConfig::default()
            .with_alternate("127.0.0.2".parse().unwrap())
            .with_table(&format!(
                "[turn]\nenabled = true\nauth_secrets = [\"0123456789abcdef0123\"]\nrelay_ports = \"{relay_ports}-{}\"\n\n\
                 [sip]\nenabled = true\nlisten = [\"udp:127.0.0.1:{sip}\", \"tcp:127.0.0.1:{sip}\"]\ndomain = \"example.org\"\n\n\
                 [rtp]\nenabled = true\naddress = [\"127.0.0.1\"]\nports = \"{rtp_ports}-{}\"\nng_listen = [\"udp:127.0.0.1:{ng}\"]\n",
                relay_ports + 9,
                rtp_ports + 7
            )),
    );
    // Traffic for each part: a Binding, an unauthenticated Allocate (401), a SIP REGISTER
    // (401), an ng ping, and a datagram at a relay port no call owns.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let tid = stun::new_tid();
    client
        .send_to(&stun::binding_request(&tid, &[]), server.primary)
        .unwrap();
    client
        .send_to(&turn::allocate_request(1, None), server.primary)
        .unwrap();
    let register = format!(
        "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKm1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=1\r\nTo: <sip:alice@example.org>\r\nCall-ID: metrics-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:{}>\r\nContent-Length: 0\r\n\r\n",
        client.local_addr().unwrap().port(),
        client.local_addr().unwrap().port()
    );
    client
        .send_to(register.as_bytes(), SocketAddr::new(LOCALHOST, sip))
        .unwrap();
    client
        .send_to(b"m1 d7:command4:pinge", SocketAddr::new(LOCALHOST, ng))
        .unwrap();
    client
        .send_to(&[0x80; 172], SocketAddr::new(LOCALHOST, rtp_ports))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut answers = 0;
    while answers < 4 && client.recv(&mut buf).is_ok() {
        answers += 1;
    }
    assert_eq!(
        answers,
        4,
        "Binding, Allocate, REGISTER and ping answered\n{}",
        server.describe()
    );
    let text = server.metrics().expect("metrics");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?} {said}\n{text}",
        out.status.code()
    );

    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let undocumented: Vec<&&str> = families
        .iter()
        .filter(|f| !docs.contains(&format!("| `{f}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    // The Grafana dashboard in docs/ asks only for what is there: each metric it names is in
    // the exposition, with each label it groups by.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .expect("docs/grafana-dashboard.json is JSON");
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            exprs += 1;
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("farside_"));
            for name in names {
                let family = name.strip_suffix("_bucket").unwrap_or(name);
                let samples: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        l.starts_with(&format!("{family}{{"))
                            || l.starts_with(&format!("{family} "))
                            || l.starts_with(&format!("{family}_bucket{{"))
                    })
                    .collect();
                assert!(
                    !samples.is_empty(),
                    "dashboard: {name} is not exposed ({expr})"
                );
                if let Some(by) = expr.split("by (").nth(1).and_then(|r| r.split(')').next()) {
                    for label in by.split(',').map(str::trim) {
                        assert!(
                            samples.iter().any(|l| l.contains(&format!("{label}=\""))),
                            "dashboard: {name} has no label {label} ({expr})"
                        );
                    }
                }
            }
        }
    }
    assert!(exprs > 10, "{exprs} queries in the dashboard");

    // No label value comes from a client: this one's address appears nowhere.
    let me = client.local_addr().unwrap().port().to_string();
    assert!(
        !text.lines().any(|l| l.contains('{') && l.contains(&me)),
        "a client's port in a label"
    );
    common::note(
        test,
        &format!(
            "{} families, promtool check metrics clean, each in docs/metrics.md",
            families.len()
        ),
    );
}
