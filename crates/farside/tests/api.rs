//! The admin API (`/api/v1/`) and its commands `farside status`, `farside sessions` and
//! `farside reload`: a TURN allocation and a SIPp registration appear, an operator ends the
//! allocation and the client's next Refresh is refused, a wrong token is refused and counted,
//! and a reload through the API reports what applied.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{LOCALHOST, require_tool, run_tool, turn};

const DOMAIN: &str = "example.org";

#[test]
fn the_api_lists_and_ends_sessions_and_manages_users_and_secrets() {
    let test = "the_api_lists_and_ends_sessions_and_manages_users_and_secrets";
    if !require_tool(test, "sipp") {
        return;
    }
    // One user for both, without a realm: TURN's and the registrar's are one here.
    let (server, _, port) = common::alice_on_turn_and_sip(test, "");

    // No token, or a wrong one: 401, counted.
    let (code, _) =
        common::http_request(server.admin, "GET", "/api/v1/status", None).expect("http");
    assert_eq!(code, 401);
    let (code, _) =
        common::http_request(server.admin, "GET", "/api/v1/status", Some(&"0".repeat(64)))
            .expect("http");
    assert_eq!(code, 401);
    assert_eq!(
        common::counter(&server, "farside_admin_refused_total", ""),
        2.0
    );

    // A TURN allocation (long-term credentials) and a SIPp registration.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let challenge = exchange(&client, server.primary, &turn::allocate_request(1, None))
        .expect("a 401 to the first Allocate");
    let nonce = turn::nonce_of(&challenge);
    let auth = Some(("alice", "wonderland", nonce.as_str()));
    let answer = exchange(&client, server.primary, &turn::allocate_request(2, auth))
        .expect("an Allocate answer");
    assert_eq!(
        class_of(&answer),
        0x0103,
        "Allocate success\n{}",
        server.describe()
    );
    // Both appear (allocations are published once a second).
    let mut sessions = serde_json::Value::Null;
    let listed = common::wait_until(Duration::from_secs(5), || {
        let out = server.cli(&["sessions", "--json"]);
        sessions = serde_json::from_str(out.stdout.trim()).expect("JSON");
        sessions["allocations"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
            && sessions["registrations"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
    });
    assert!(listed, "{sessions}\n{}", server.describe());
    let a = &sessions["allocations"][0];
    assert_eq!(a["username"], "alice");
    assert_eq!(a["client"], client.local_addr().unwrap().to_string());
    let relayed = a["relayed"][0].as_str().expect("relayed").to_string();
    let r = &sessions["registrations"][0];
    assert_eq!(r["aor"], format!("sip:alice@{DOMAIN}"));
    assert_eq!(r["remote"], format!("127.0.0.1:{port}"));
    assert!(r["nat_tests"].is_string(), "{r}");
    let text = server.cli(&["sessions"]).stdout;
    assert!(
        text.contains("TURN allocations: 1") && text.contains("SIP registrations: 1"),
        "{text}"
    );
    assert!(text.contains(&relayed), "{text}");

    // Status names what runs and the live gauges.
    let status = server.cli(&["status", "--json"]).stdout;
    let status: serde_json::Value = serde_json::from_str(status.trim()).expect("JSON");
    assert_eq!(status["live"]["allocations"], 1, "{status}");
    assert!(
        status["running"]
            .as_array()
            .expect("running")
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.starts_with("SIP registrar"))),
        "{status}"
    );

    // The operator ends the allocation: gone within a second or so, and the client's next
    // Refresh gets 437 Allocation Mismatch (RFC 8656 §7.3).
    let token = std::fs::read_to_string(server.config_path().with_file_name("admin.token"))
        .expect("token file");
    let (code, body) = common::http_request(
        server.admin,
        "DELETE",
        &format!("/api/v1/allocations/{relayed}"),
        Some(token.trim()),
    )
    .expect("http");
    assert_eq!(code, 202, "{body}");
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .logs()
            .contains("S311 TURN allocation")),
        "{}",
        server.describe()
    );
    let refresh = |tid| {
        turn::request(farside_stun::Method::REFRESH, tid, auth, |b| {
            b.add(&farside_stun::attributes::Lifetime(600)).unwrap();
        })
    };
    let answer = exchange(&client, server.primary, &refresh(3)).expect("Refresh answer");
    assert_eq!(class_of(&answer), 0x0114, "Refresh error");
    assert_eq!(error_code(&answer), Some(437), "{}", server.describe());
    let (code, _) = common::http_request(
        server.admin,
        "DELETE",
        &format!("/api/v1/allocations/{relayed}"),
        Some(token.trim()),
    )
    .expect("http");
    // Published again within a second: then it is not found.
    assert!(code == 404 || code == 202);

    // Users and secrets through the API; the server takes them from the store.
    let t = token.trim();
    let (code, body) = common::http_json(
        server.admin,
        "POST",
        "/api/v1/users",
        t,
        r#"{"name":"bob","password":"builder"}"#,
    )
    .expect("http");
    assert_eq!(code, 201, "{body}");
    let (_, body) =
        common::http_request(server.admin, "GET", "/api/v1/users", Some(t)).expect("http");
    assert!(body.contains("\"bob\""), "{body}");
    let (code, _) =
        common::http_request(server.admin, "DELETE", "/api/v1/users/bob", Some(t)).expect("http");
    assert_eq!(code, 200);
    let (code, body) =
        common::http_json(server.admin, "POST", "/api/v1/secrets", t, "{}").expect("http");
    assert_eq!(code, 201, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    let secret = made["secret"]
        .as_str()
        .expect("a secret made here, shown once");
    assert_eq!(secret.len(), 64);
    let (_, body) =
        common::http_request(server.admin, "GET", "/api/v1/secrets", Some(t)).expect("http");
    assert!(
        body.contains(&secret[..4]) && !body.contains(secret),
        "masked: {body}"
    );
    let (code, _) = common::http_request(
        server.admin,
        "DELETE",
        &format!("/api/v1/secrets/{}", made["id"]),
        Some(t),
    )
    .expect("http");
    assert_eq!(code, 200);

    // The operator removes alice's registration: gone from the store within a second.
    let contact = sessions["registrations"][0]["contact"]
        .as_str()
        .unwrap()
        .to_string();
    let query = format!(
        "/api/v1/registrations?aor=sip:alice@{DOMAIN}&contact={}",
        contact.replace(':', "%3A").replace('@', "%40")
    );
    let (code, body) = common::http_request(server.admin, "DELETE", &query, Some(t)).expect("http");
    assert_eq!(code, 202, "{body}");
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .cli(&["sessions", "--json"])
            .stdout
            .contains("\"registrations\":[]")),
        "{}",
        server.describe()
    );
    assert!(
        server.logs().contains("S417 sip:alice@example.org"),
        "{}",
        server.describe()
    );

    // A reload through the API: a changed log level applies; an invalid file is refused with
    // its line, and the server runs on.
    let path = server.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("level = \"debug\"", "level = \"info\"")).unwrap();
    let out = server.cli(&["reload"]);
    assert!(
        out.stdout.contains("applied log.level"),
        "{}",
        out.describe()
    );
    let lines = text.lines().count();
    std::fs::write(&path, format!("{text}\nbogus = 1\n")).unwrap();
    let (code, body) =
        common::http_request(server.admin, "POST", "/api/v1/reload", Some(token.trim()))
            .expect("http");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(&format!(":{}: ", lines + 2)),
        "the line is named: {body}"
    );
    std::fs::write(&path, &text).unwrap();
    assert!(
        server
            .cli(&["status"])
            .stdout
            .contains("TURN allocations: 0")
    );
    common::note(
        test,
        &format!(
            "allocation relayed at {relayed} and alice's registration listed; ended; Refresh got 437"
        ),
    );
}

/// Sends `msg` to `to` and returns the first datagram that comes back within 2 s.
fn exchange(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(msg, to).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = vec![0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn class_of(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[0], msg[1]])
}

fn error_code(msg: &[u8]) -> Option<u16> {
    let m = farside_stun::Message::parse(msg).ok()?;
    let e = m
        .attribute::<farside_stun::attributes::ErrorCode<'_>>()?
        .ok()?;
    Some(e.code)
}

/// `[admin] tls = true`: the dashboard, the API and `/metrics` over HTTPS with the `[tls]`
/// certificate; `farside status` pins that certificate and gets its answer; plain HTTP gets
/// none; and with another certificate configured the client refuses the server.
#[test]
fn the_admin_endpoint_over_https_answers_farside_status_with_a_pinned_certificate() {
    let test = "the_admin_endpoint_over_https_answers_farside_status_with_a_pinned_certificate";
    if !require_tool(test, "openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("farside-admin-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_for_loopback(&dir);
    let ports = common::free_ports(&[LOCALHOST], 2);
    let admin = SocketAddr::new(LOCALHOST, ports + 1);
    let config = |cert: &std::path::Path| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"127.0.0.1:{ports}\"]\ntcp = false\n\n[admin]\nlisten = \"{admin}\"\ntls = true\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            cert.display(),
            key.display(),
            dir.join("f.db").display()
        ))
    };
    let path = dir.join("farside.toml");
    std::fs::write(&path, config(&cert)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_farside"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = |config: &std::path::Path| {
        run_tool(
            env!("CARGO_BIN_EXE_farside"),
            &[
                "status".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            Duration::from_secs(20),
        )
    };
    let answered = common::wait_until(Duration::from_secs(10), || status(&path).code() == Some(0));
    let out = status(&path);
    // Plain HTTP on the HTTPS port: no HTTP answer.
    let plain = common::http_get(admin, "/health")
        .map(|(code, _)| code)
        .unwrap_or(0);
    // Another certificate in the client's configuration: refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_cert, _) = common::self_signed_for_loopback(&other);
    let other_config = dir.join("other.toml");
    std::fs::write(&other_config, config(&other_cert)).unwrap();
    let refused = status(&other_config);
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "{}", out.describe());
    assert!(
        out.stdout.contains("dashboard https://"),
        "{}",
        out.describe()
    );
    assert_ne!(plain, 200, "plain HTTP must not be served");
    assert_ne!(refused.code(), Some(0), "{}", refused.describe());
    assert!(refused.stderr.contains("TLS"), "{}", refused.describe());
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        "farside status over HTTPS with the pinned certificate; plain HTTP and another certificate refused",
    );
}
