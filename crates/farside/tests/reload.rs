//! `SIGHUP` (`kill -HUP`, `systemctl reload`): the configuration file is read again while the
//! server runs. A new `log.level` applies at once; other changed sections are named as taking
//! effect at the next restart; an invalid file is refused with its line and the server keeps
//! running on what it had.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LOCALHOST, free_ports, stun};

#[test]
fn sighup_applies_the_log_level_names_the_rest_and_refuses_an_invalid_file() {
    let test = "sighup_applies_the_log_level_names_the_rest_and_refuses_an_invalid_file";
    if !common::require_tool(test, "kill") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("farside-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_ports(&[LOCALHOST], 2);
    let path = dir.join("farside.toml");
    let config = |level: &str, workers: u32| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"127.0.0.1:{port}\"]\ntcp = false\nworkers = {workers}\n\n[admin]\nlisten = \"off\"\n\n[log]\nlevel = \"{level}\"\n\n[store]\nurl = \"sqlite://{}/f.db\"\n",
            dir.display()
        ))
    };
    std::fs::write(&path, config("info", 2)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_farside"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let has = |text: &str| log.lock().unwrap().contains(text);
    let seen = |text: &str| common::wait_until(Duration::from_secs(5), || has(text));
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    assert!(seen("S001 STUN listening"), "{}", log.lock().unwrap());

    // The same file: nothing changed.
    hup();
    assert!(seen("nothing changed"), "{}", log.lock().unwrap());
    // A new level applies at once (the debug line shows only under it); the workers wait.
    std::fs::write(&path, config("debug", 1)).unwrap();
    hup();
    assert!(
        seen("applied log.level; [stun] changed, applies at the next restart"),
        "{}",
        log.lock().unwrap()
    );
    assert!(seen("S006 log level now debug"), "{}", log.lock().unwrap());
    // An invalid file is refused with its line; the server runs on.
    std::fs::write(&path, "[stun]\nlisten = []\n").unwrap();
    hup();
    assert!(
        seen("S007 reload refused, the running configuration stays"),
        "{}",
        log.lock().unwrap()
    );
    assert!(
        has("farside.toml:2: stun.listen"),
        "{}",
        log.lock().unwrap()
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answered = stun::udp_binding(&client, SocketAddr::new(LOCALHOST, port), &[]).is_some();
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        alive && answered,
        "the server stopped answering after a refused reload"
    );
    common::note(
        test,
        "SIGHUP: same file 'nothing changed'; log.level applied live (a debug line appeared) and [stun] named for the next restart; an invalid file refused with its line while STUN kept answering",
    );
}

/// `farside reload` while coturn's `turnutils_uclient` relays and a SIPp phone is registered:
/// a user's password changes (in the store) and a TURN limit and the keep-alive interval
/// change (in the file). uclient's relay carries on to the end, the registration stays, the
/// old password is refused and the new one accepted at the next authentication, and the new
/// per-user limit answers 486 to one more allocation. An invalid file is then refused with its
/// line and the limit stays.
#[test]
fn a_reload_changes_a_password_and_limits_while_uclient_relays_and_sipp_stays_registered() {
    let test =
        "a_reload_changes_a_password_and_limits_while_uclient_relays_and_sipp_stays_registered";
    for tool in ["sipp", "turnutils_uclient", "turnutils_peer"] {
        if !common::require_tool(test, tool) {
            return;
        }
    }
    let (server, _, _) = common::alice_on_turn_and_sip(test, "");

    // uclient: 600 messages 20 ms apart (12 s), through two allocations of alice's.
    let peer = common::turn::Peer::start();
    let uclient = common::turn::uclient_paced(&server, &peer, 600);
    assert!(common::wait_until(Duration::from_secs(10), || {
        common::counter(&server, "farside_turn_relayed_packets_total", "to_client") >= 20.0
    }));

    // The password (store) and two limits (file) change while it relays.
    server.cli(&["user", "passwd", "alice", "--password", "new-password"]);
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .logs()
            .matches("S306 store changed")
            .count()
            >= 2),
        "{}",
        server.describe()
    );
    let path = server.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace(
        "[turn]\nenabled = true\n",
        "[turn]\nenabled = true\nmax_allocations_per_user = 2\n",
    ) + "\n[sip.keepalive]\ninterval = \"40s\"\n";
    std::fs::write(&path, &changed).unwrap();
    let out = server.cli(&["reload"]);
    assert!(
        out.stdout.contains("turn.max_allocations_per_user")
            && out.stdout.contains("sip.keepalive"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("next restart"), "{}", out.describe());

    // The next authentication: the old password is refused, the new one accepted, and
    // alice, holding uclient's two allocations, is at the new limit: 486.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let exchange = |msg: &[u8]| {
        client.send_to(msg, server.primary).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = client.recv_from(&mut buf).expect("an answer");
        stun::parse(&buf[..n]).expect("STUN")
    };
    let challenge = exchange(&common::turn::allocate_request(1, None));
    let nonce = String::from_utf8(challenge.attr(0x0015).expect("NONCE").to_vec()).unwrap();
    let old = exchange(&common::turn::allocate_request(
        2,
        Some(("alice", "wonderland", &nonce)),
    ));
    assert_eq!(
        old.error_code(),
        Some(401),
        "the old password: {:?}",
        old.attr_types()
    );
    let new = exchange(&common::turn::allocate_request(
        3,
        Some(("alice", "new-password", &nonce)),
    ));
    assert_eq!(new.error_code(), Some(486), "{}", server.describe());

    // An invalid file: refused with its line; the limit stays.
    std::fs::write(&path, format!("{changed}\nmax_aors = \"many\"\n")).unwrap();
    let bad = common::run_tool(
        env!("CARGO_BIN_EXE_farside"),
        &[
            "reload".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        Duration::from_secs(20),
    );
    let line = changed.lines().count() + 2;
    assert_ne!(bad.code(), Some(0), "{}", bad.describe());
    assert!(
        bad.stderr
            .contains(&format!(":{line}: sip.keepalive.max_aors")),
        "{}",
        bad.describe()
    );
    std::fs::write(&path, &changed).unwrap();
    let again = exchange(&common::turn::allocate_request(
        4,
        Some(("alice", "new-password", &nonce)),
    ));
    assert_eq!(again.error_code(), Some(486));

    // uclient relayed to the end; the registration is still there.
    let out = uclient.join().unwrap();
    drop(peer);
    assert_eq!(
        common::turn::totals(&out.all()),
        Some(common::turn::Totals {
            sent: 600,
            received: 600,
            lost: Some(0)
        }),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    let sessions = server.cli(&["sessions"]).stdout;
    assert!(sessions.contains("SIP registrations: 1"), "{sessions}");
    common::note(
        test,
        "uclient 600/600 across the reload; old password 401, new one at the new per-user limit 486; registration kept",
    );
}
