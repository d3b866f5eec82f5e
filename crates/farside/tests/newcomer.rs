//! A newcomer's first steps, as the README gives them, with no other step: a host with one
//! address, a fresh data directory, `farside serve` with no configuration file, `farside user
//! add alice` (no realm); then coturn's `turnutils_uclient` relays through TURN and SIPp
//! registers and is called, both from another host. The two hosts are network namespaces
//! joined by a veth pair (root, as the NAT lab: skipped otherwise, and a failure when
//! `FARSIDE_REQUIRE_NATLAB=1`), so the fixed default ports (3478, 5060, 9478) are the
//! test's own.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "natlab/mod.rs"]
mod natlab;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require_tool, run_tool};

const SERVER: &str = "198.51.100.1";
const CLIENT: &str = "198.51.100.2";

/// Two namespaces, `srv` (the server host, one address) and `cli` (the users' host), removed
/// when dropped.
struct Hosts {
    srv: String,
    cli: String,
}

impl Hosts {
    fn up() -> Hosts {
        let id = std::process::id();
        let hosts = Hosts {
            srv: format!("fsnew{id}-srv"),
            cli: format!("fsnew{id}-cli"),
        };
        let (vs, vc) = (format!("fsn{id}s"), format!("fsn{id}c"));
        for args in [
            vec!["netns", "add", &hosts.srv],
            vec!["netns", "add", &hosts.cli],
            vec!["link", "add", &vs, "type", "veth", "peer", "name", &vc],
            vec!["link", "set", &vs, "netns", &hosts.srv],
            vec!["link", "set", &vc, "netns", &hosts.cli],
        ] {
            ip(&args);
        }
        for (ns, dev, addr) in [(&hosts.srv, &vs, SERVER), (&hosts.cli, &vc, CLIENT)] {
            let prefix = format!("{addr}/24");
            for args in [
                vec!["-n", ns, "link", "set", "lo", "up"],
                vec!["-n", ns, "addr", "add", &prefix, "dev", dev],
                vec!["-n", ns, "link", "set", dev, "up"],
            ] {
                ip(&args);
            }
        }
        hosts
    }

    /// `program args` run in `ns`, bounded by `limit`.
    fn run(
        &self,
        ns: &str,
        env: &[(&str, &str)],
        program: &str,
        args: &[&str],
        limit: Duration,
    ) -> common::ToolOutput {
        let mut all: Vec<String> = ["netns", "exec", ns, "env"].map(String::from).to_vec();
        all.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        all.push(program.to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        run_tool("ip", &all, limit)
    }

    /// `program args` started in `ns`, its output in `log`.
    fn spawn(
        &self,
        ns: &str,
        env: &[(&str, &str)],
        program: &str,
        args: &[&str],
        log: &PathBuf,
    ) -> Running {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "env"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Running {
            child,
            log: log.clone(),
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.srv, &self.cli] {
            // Processes left in a namespace would keep it; the test's own are killed first.
            let _ = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_with_no_file_then_user_add_relays_uclient_and_rings_a_sipp_phone() {
    let test = "serve_with_no_file_then_user_add_relays_uclient_and_rings_a_sipp_phone";
    if let Some(why) = natlab::unavailable() {
        natlab::skip_or_panic(test, &why);
        return;
    }
    for tool in ["turnutils_uclient", "turnutils_peer", "sipp"] {
        if !require_tool(test, tool) {
            return;
        }
    }
    let hosts = Hosts::up();
    let dir = std::env::temp_dir().join(format!("farside-newcomer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let state_dir = state.display().to_string();
    let env = [("STATE_DIRECTORY", state_dir.as_str())];
    let farside = env!("CARGO_BIN_EXE_farside");

    // 1. farside serve, no file.
    let server = hosts.spawn(
        &hosts.srv,
        &env,
        farside,
        &["serve"],
        &dir.join("server.log"),
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .output()
            .contains("S010 running")),
        "{}",
        server.output()
    );
    let log = server.output();
    for runs in [
        format!("TURN relaying from {SERVER}"),
        format!("SIP registrar for \"{SERVER}\" on udp 127.0.0.1:5060, udp {SERVER}:5060"),
        format!("RTP relay on {SERVER}"),
        "dashboard http://127.0.0.1:9478/".to_string(),
    ] {
        assert!(log.contains(&runs), "{runs:?} runs\n{log}");
    }

    // 2. farside user add alice, no realm, no file.
    let add = hosts.run(
        &hosts.srv,
        &env,
        farside,
        &["user", "add", "alice", "--password", "wonderland"],
        Duration::from_secs(20),
    );
    assert_eq!(add.code(), Some(0), "{}", add.describe());
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .output()
            .contains("S306 store changed")),
        "{}",
        server.output()
    );

    // 3. uclient (long-term credentials) relays to a peer on the users' host.
    let _peer = hosts.spawn(
        &hosts.cli,
        &[],
        "turnutils_peer",
        &["-L", CLIENT, "-p", "3480"],
        &dir.join("peer.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let uclient = hosts.run(
        &hosts.cli,
        &[],
        "turnutils_uclient",
        &[
            "-u",
            "alice",
            "-w",
            "wonderland",
            "-e",
            CLIENT,
            "-r",
            "3480",
            "-n",
            "20",
            "-m",
            "1",
            "-y",
            SERVER,
        ],
        Duration::from_secs(30),
    );
    let t = common::turn::totals(&uclient.all())
        .unwrap_or_else(|| panic!("no totals\n{}\n{}", uclient.describe(), server.output()));
    let (sent, received) = (t.sent, t.received);
    assert!(
        sent >= 20 && received == sent && t.lost == Some(0),
        "{t:?}\n{}\n{}",
        uclient.describe(),
        server.output()
    );
    // 4. SIPp registers alice@SERVER (the domain the server took from the host) with the
    //    same password, and answers a call from another SIPp.
    let target = format!("{SERVER}:5060");
    let register = hosts.run(
        &hosts.cli,
        &[],
        "sipp",
        &common::sipp::strs(&common::sipp::register(
            "alice",
            "wonderland",
            SERVER,
            CLIENT,
            5070,
            &target,
            10,
        )),
        Duration::from_secs(30),
    );
    assert_eq!(
        register.code(),
        Some(0),
        "{}\n{}",
        register.describe(),
        server.output()
    );
    let callee_args = common::sipp::callee("alice", CLIENT, 5070, 20);
    let callee = {
        let args: Vec<String> = ["netns", "exec", &hosts.cli, "sipp"]
            .map(String::from)
            .into_iter()
            .chain(callee_args)
            .collect();
        std::thread::spawn(move || run_tool("ip", &args, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(500));
    let caller = hosts.run(
        &hosts.cli,
        &[],
        "sipp",
        &common::sipp::strs(&common::sipp::caller(
            "alice", SERVER, CLIENT, 5072, &target, 15,
        )),
        Duration::from_secs(30),
    );
    let callee = callee.join().unwrap();
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\n{}",
        caller.describe(),
        server.output()
    );
    assert_eq!(callee.code(), Some(0), "callee: {}", callee.describe());

    // 5. farside status, no file, answers from the server's own API (its gauges are brought
    //    up to date once a second).
    let status = || {
        hosts.run(
            &hosts.srv,
            &env,
            farside,
            &["status"],
            Duration::from_secs(20),
        )
    };
    let shown = common::wait_until(Duration::from_secs(5), || {
        status().stdout.contains("SIP registered contacts: 1")
    });
    let last = status();
    assert_eq!(last.code(), Some(0), "{}", last.describe());
    assert!(shown, "{}", last.describe());

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        &format!(
            "no file: TURN on {SERVER} relayed {received}/{sent} for uclient, alice@{SERVER} registered with SIPp and answered a call, status answered"
        ),
    );
}
