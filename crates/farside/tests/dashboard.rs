//! The dashboard in a real headless browser (Debian's Chromium, driven over the DevTools
//! protocol by `tests/python/dashboard_browser.py`): a wrong password refused and counted, a
//! login with the first-run password, a SIPp registration and a coturn `turnutils_uclient`
//! allocation on their pages, the log page, and the operator ending the allocation while
//! uclient relays: it disappears from the page and uclient's relayed messages stop coming back.
//! Screenshots of each page go to `target/dashboard-screenshots/` (CI artifacts, not committed).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{require_tool, run_tool};

const DOMAIN: &str = "example.org";

#[test]
fn an_operator_logs_in_sees_the_sessions_and_ends_an_allocation_in_chromium() {
    let test = "an_operator_logs_in_sees_the_sessions_and_ends_an_allocation_in_chromium";
    for tool in [
        "chromium",
        "sipp",
        "turnutils_uclient",
        "turnutils_peer",
        "turnutils_stunclient",
    ] {
        if !require_tool(test, tool) {
            return;
        }
    }
    let Some(python) = common::require_python_module(test, "websockets") else {
        return;
    };
    let (server, _, _) =
        common::alice_on_turn_and_sip(test, "auth_secrets = [\"a-shared-secret-0123456789\"]\n");
    let password_file = server.config_path().with_file_name("dashboard.password");
    let password = std::fs::read_to_string(&password_file).unwrap();

    // uclient relays 1500 messages, 20 ms apart (30 s), to a turnutils_peer.
    let peer = common::turn::Peer::start();
    let uclient = common::turn::uclient_paced(&server, &peer, 1500);
    let mut relayed = String::new();
    let allocated = common::wait_until(Duration::from_secs(10), || {
        let out = server.cli(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        // uclient allocates twice; the one with channels carries its data.
        let carrying = v["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["channels"].as_u64().is_some_and(|c| c > 0));
        if let Some(r) = carrying.and_then(|a| a["relayed"][0].as_str()) {
            relayed = r.to_string();
        }
        !relayed.is_empty()
    });
    assert!(
        allocated,
        "no allocation from uclient\n{}",
        server.describe()
    );
    // Relaying both ways before the operator steps in.
    let relaying = common::wait_until(Duration::from_secs(10), || {
        common::counter(&server, "farside_turn_relayed_packets_total", "to_client") >= 20.0
    });
    assert!(
        relaying,
        "uclient's data is not relayed\n{}",
        server.describe()
    );

    // A STUN client's requests (classic and RFC 5389) for the per-source table.
    let stun = run_tool(
        "turnutils_stunclient",
        &[
            "-p".to_string(),
            server.primary.port().to_string(),
            "127.0.0.1".to_string(),
        ],
        Duration::from_secs(10),
    );
    assert!(
        stun.stdout.contains("UDP reflexive addr"),
        "{}",
        stun.describe()
    );
    // Published once a second.
    std::thread::sleep(Duration::from_millis(1200));

    // The browser.
    let shots = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/dashboard-screenshots"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/dashboard_browser.py"
    );
    let expect = serde_json::json!({"user": "alice", "relayed": relayed}).to_string();
    let out = run_tool(
        &python,
        &[
            script.to_string(),
            format!("http://{}", server.admin),
            password.trim().to_string(),
            shots.to_string(),
            expect,
        ],
        Duration::from_secs(150),
    );
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    let seen: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let text = |k: &str| seen[k].as_str().unwrap_or_default().to_string();
    assert_eq!(text("root_path"), "/login", "{seen}");
    assert!(text("wrong_text").contains("Wrong password."), "{seen}");
    assert_eq!(text("after_login"), "/", "{seen}");
    assert!(
        text("overview_text").contains("SIP registrar for"),
        "{seen}"
    );
    assert!(
        text("registrations_text").contains(&format!("sip:alice@{DOMAIN}")),
        "{seen}"
    );
    assert!(text("registrations_text").contains("answering"), "{seen}");
    // The registration's check: its binding, keep-alive health, NAT tests, no ALG on
    // loopback, no relay here, and nothing to do.
    let check = text("check_text");
    assert!(
        check.contains(&format!("Phone check: sip:alice@{DOMAIN}"))
            && check.contains("answering: the phone answered")
            && check.contains("NAT tests fired")
            && check.contains("not suspected")
            && check.contains("The RTP relay does not run here")
            && check.contains("Nothing to do"),
        "{check}"
    );
    assert!(text("log_text").contains("S010 running"), "{seen}");
    // The per-source row: 127.0.0.1 with its STUN requests and uclient's live allocations.
    let sources = text("sources_text");
    let row = sources
        .lines()
        .find(|l| l.starts_with("127.0.0.1"))
        .unwrap_or_else(|| panic!("no row for 127.0.0.1: {sources}"));
    let cells: Vec<&str> = row.split('\t').collect();
    assert!(cells.len() >= 9, "{row:?}");
    assert!(cells[2].parse::<u64>().unwrap() >= 1, "requests: {row:?}");
    assert!(
        cells[7].parse::<u64>().unwrap() >= 1,
        "allocations: {row:?}"
    );
    assert!(
        cells[8].parse::<u64>().unwrap() > 0,
        "relayed bytes: {row:?}"
    );
    assert!(text("users_text").contains("alice"), "{seen}");
    assert!(text("calls_text").contains("does not run here"), "{seen}");
    assert!(text("config_text").contains("(redacted)"), "{seen}");
    assert!(
        !text("config_text").contains("a-shared-secret"),
        "secrets stay hidden: {seen}"
    );
    assert!(text("allocations_text").contains(&relayed), "{seen}");
    assert_eq!(seen["end_clicked"], true, "{seen}");
    assert!(!text("allocations_after_end").contains(&relayed), "{seen}");
    assert!(
        server.logs().contains("S311 TURN allocation"),
        "{}",
        server.describe()
    );
    assert_eq!(
        common::counter(&server, "farside_admin_login_failures_total", ""),
        1.0,
        "the wrong password is counted"
    );

    // uclient's relay stopped with the allocation: fewer of its messages came back.
    let out = uclient.join().unwrap();
    drop(peer);
    let t =
        common::turn::totals(&out.all()).unwrap_or_else(|| panic!("no totals\n{}", out.describe()));
    let (sent, received) = (t.sent, t.received);
    assert!(received < sent, "{t:?}\n{}", out.describe());
    common::note(
        test,
        &format!(
            "Chromium: login refused then accepted, 8 pages and a phone check read (the sources row of 127.0.0.1 among them), allocation {relayed} ended; uclient got {received} of {sent} back; screenshots in target/dashboard-screenshots"
        ),
    );
}
