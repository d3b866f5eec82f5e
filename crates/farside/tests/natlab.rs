//! The NAT lab verifies itself, then judges Farside's STUN server.
//!
//! The lab (`tests/natlab/natlab.sh`, `docs/natlab.md`) is network namespaces with real netfilter NAT gateways.
//! Before anyone trusts it, these tests check that coturn's `turnutils_natdiscovery`, run against coturn's
//! `turnserver` from every LAN host, finds exactly the behaviour each gateway was built for (mapping, filtering,
//! hairpinning, binding lifetime), and that nothing in the lab can route outside it. Then Farside's server,
//! configured with the server host's two addresses, must give natdiscovery the same verdicts as coturn.
//!
//! Needs root and `ip netns`; otherwise each test prints `SKIP <test>: <reason>` and passes, unless
//! `FARSIDE_REQUIRE_NATLAB=1` (CI). The peers (coturn) are required when `FARSIDE_REQUIRE_PEERS=1`.
//! Reproduce by hand: `sudo tests/natlab/natlab.sh up`, then `tests/natlab/natlab.sh exec HOST CMD...`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "natlab/mod.rs"]
mod natlab;
#[path = "../../store/tests/common/postgres.rs"]
mod test_database;

use natlab::{Expected, Filtering, Host, Lab, LabChild, Mapping, Role};
use std::fmt::{self, Write as _};
use std::thread;
use std::time::{Duration, Instant};

/// natdiscovery waits 3 s per unanswered request; a run needs at most a few of them.
const NATDISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// coturn's port when it runs next to Farside (which takes 3478 and 3479) in one lab.
const COTURN_SIDE_PORT: u16 = 3480;

/// Every peer tool is installed: else `SKIP` (or a failure under `FARSIDE_REQUIRE_PEERS=1`), as everywhere.
fn require_tools(test: &str, tools: &[&str]) -> bool {
    tools.iter().all(|tool| common::require_tool(test, tool))
}

// ---------------------------------------------------------------------------------------------------------
// Servers in the lab

/// Waits until a STUN server on the server host's primary address answers a Binding from the public peer.
fn wait_until_answering(lab: &Lab, server: &LabChild, port: u16) {
    let (primary, _) = lab.server_addrs();
    let (port, primary) = (port.to_string(), primary.to_string());
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        // Without -f the client waits forever for an answer: bound each try.
        let out = lab.exec(
            "peer",
            "turnutils_stunclient",
            &["-p", &port, &primary],
            Duration::from_secs(2),
        );
        if out.stdout.contains("UDP reflexive addr") {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the STUN server did not answer on {primary}:{port} within {STARTUP_TIMEOUT:?}\n{server}"
    );
}

/// coturn as an RFC 5780 STUN server on the server host's two addresses, `port` and `port + 1`.
fn start_coturn(lab: &Lab, port: u16) -> LabChild {
    let dir = lab.scratch_dir(&format!("coturn{port}"));
    let (primary, alternate) = lab.server_addrs();
    let args = common::coturn_stun_args(&dir, &[primary.into(), alternate.into()], port, port + 1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = lab.spawn("server", "turnserver", &args);
    wait_until_answering(lab, &server, port);
    server
}

/// Farside's `serve` with `[stun] listen = ["<primary>:3478"]`, `alternate_address = "<alternate>"`.
fn start_farside(lab: &Lab) -> LabChild {
    let (primary, alternate) = lab.server_addrs();
    let server = spawn_farside(
        lab,
        "farside",
        &format!("[stun]\nlisten = [\"{primary}:3478\"]\nalternate_address = \"{alternate}\"\n"),
    );
    wait_until_answering(lab, &server, 3478);
    server
}

/// Two Farside servers with one address each, partners of each other: one on the server host's primary
/// address, one on its alternate, both on ports 3478 and 3479.
fn start_farside_partners(lab: &Lab) -> [LabChild; 2] {
    let (primary, alternate) = lab.server_addrs();
    let config = |me: std::net::IpAddr, partner: std::net::IpAddr| {
        format!(
            "[stun]\nlisten = [\"{me}:3478\"]\nalternate_port = 3479\npartners = [\"{partner}\"]\n\
             partner_secrets = [\"natlab partner secret 0123456789\"]\npartner_heartbeat = 1\n"
        )
    };
    let a = spawn_farside(lab, "farside-a", &config(primary.into(), alternate.into()));
    let b = spawn_farside(lab, "farside-b", &config(alternate.into(), primary.into()));
    wait_until_answering(lab, &a, 3478);
    // Both must have heard each other's heartbeat before a change-IP request can be trusted to the partner.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !(a.output().contains("S110 partner") && b.output().contains("S110 partner")) {
        assert!(
            Instant::now() < deadline,
            "partners never greeted each other\n{a}\n{b}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    [a, b]
}

fn spawn_farside(lab: &Lab, name: &str, stun_table: &str) -> LabChild {
    let config = lab.farside_config(name, |dir| {
        common::only_named_parts(&format!(
            "{stun_table}\n[admin]\nlisten = \"off\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            dir.join("farside.db").display()
        ))
    });
    lab.serve_farside(&config)
}

// ---------------------------------------------------------------------------------------------------------
// natdiscovery verdicts

/// What `turnutils_natdiscovery` concluded; `None` where it printed no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    mapping: Option<Mapping>,
    filtering: Option<Filtering>,
    hairpin: Option<bool>,
}

impl Verdict {
    fn expected(e: &Expected) -> Self {
        Self {
            mapping: Some(e.mapping),
            filtering: Some(e.filtering),
            hairpin: Some(e.hairpin),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mapping.map_or("?".into(), |m| m.to_string());
        let fl = self.filtering.map_or("?".into(), |x| x.to_string());
        let h = match self.hairpin {
            Some(true) => "hairpin",
            Some(false) => "no-hairpin",
            None => "?",
        };
        f.pad(&format!("{m}/{fl}/{h}"))
    }
}

fn parse_mapping(text: &str) -> Option<Mapping> {
    text.lines().find_map(|l| match l.trim() {
        "NAT with Endpoint Independent Mapping!" => Some(Mapping::Eim),
        "NAT with Address Dependent Mapping!" => Some(Mapping::Adm),
        "NAT with Address and Port Dependent Mapping!" => Some(Mapping::Apdm),
        _ => None,
    })
}

fn parse_filtering(text: &str) -> Option<Filtering> {
    text.lines().find_map(|l| match l.trim() {
        "NAT with Endpoint Independent Filtering!" => Some(Filtering::Eif),
        "NAT with Address Dependent Filtering!" => Some(Filtering::Adf),
        "NAT with Address and Port Dependent Filtering!" => Some(Filtering::Apdf),
        _ => None,
    })
}

/// `-H`: the second socket's request reaches the first one through the NAT, or it does not (the first Binding
/// must have been answered for a "no" to mean anything).
fn parse_hairpin(text: &str) -> Option<bool> {
    if text.contains("Received a request (maybe a successful hairpinning)") {
        Some(true)
    } else if text.contains("UDP reflexive addr") {
        Some(false)
    } else {
        None
    }
}

/// Runs natdiscovery's `-m`, `-f` and `-H` (in parallel, each bounded) from `host` against the server host's
/// primary address at `port`. Returns the verdict and the three transcripts.
fn natdiscovery(lab: &Lab, host: &str, port: u16) -> (Verdict, String) {
    let (primary, _) = lab.server_addrs();
    let (primary, port) = (primary.to_string(), port.to_string());
    let outs: Vec<_> = thread::scope(|s| {
        let runs: Vec<_> = ["-m", "-f", "-H"]
            .into_iter()
            .map(|flag| {
                let (primary, port) = (&primary, &port);
                s.spawn(move || {
                    let out = lab.exec(
                        host,
                        "turnutils_natdiscovery",
                        &[flag, "-p", port, primary],
                        NATDISCOVERY_TIMEOUT,
                    );
                    (flag, out)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut transcript = String::new();
    for (flag, out) in &outs {
        let _ = writeln!(
            transcript,
            "=== {host}: turnutils_natdiscovery {flag} -p {port} {primary}: {out}"
        );
    }
    let verdict = Verdict {
        mapping: parse_mapping(&outs[0].1.text()),
        filtering: parse_filtering(&outs[1].1.text()),
        hairpin: parse_hairpin(&outs[2].1.text()),
    };
    (verdict, transcript)
}

/// natdiscovery's lifetime test (`-t -T secs`): one Binding from socket A, `secs` of silence, then socket B asks
/// the server (RESPONSE-PORT) to answer to A's mapped port from the address A talked to. `Some(true)` if A got
/// it (binding still open), `Some(false)` if not, `None` if the first Binding went unanswered.
fn binding_open_after(lab: &Lab, host: &str, port: u16, secs: u64) -> (Option<bool>, String) {
    let (primary, _) = lab.server_addrs();
    let (primary, port_s, secs_s) = (primary.to_string(), port.to_string(), secs.to_string());
    let out = lab.exec(
        host,
        "turnutils_natdiscovery",
        &["-t", "-T", &secs_s, "-p", &port_s, &primary],
        Duration::from_secs(secs) + NATDISCOVERY_TIMEOUT,
    );
    let text = out.text();
    let open = if text.contains("RFC 5780 response 2") {
        Some(true)
    } else if text.contains("RFC 5780 response 1") && text.contains("STUN receive timeout") {
        Some(false)
    } else {
        None
    };
    (
        open,
        format!("=== {host}: natdiscovery -t -T {secs} -p {port}: {out}\n"),
    )
}

/// Runs `f` for every LAN host in parallel; results in the lab's host order.
fn per_lan_host<T: Send>(lab: &Lab, f: impl Fn(&Host) -> T + Sync) -> Vec<(&Host, T)> {
    let f = &f;
    thread::scope(|s| {
        let runs: Vec<_> = lab
            .lan_hosts()
            .map(|h| (h, s.spawn(move || f(h))))
            .collect();
        runs.into_iter()
            .map(|(h, r)| (h, r.join().unwrap()))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------------------
// Tests

/// The description Rust tests rely on (no root needed): seven gateways, each LAN host with its expectations.
#[test]
fn describe_lists_every_gateway_and_lan_host_expectation() {
    let hosts = natlab::describe("fl").unwrap();
    let gateways: Vec<&str> = hosts
        .iter()
        .filter(|h| h.role == Role::Nat)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        gateways,
        [
            "home",
            "symmetric",
            "fullcone",
            "restricted",
            "short",
            "alg",
            "symmetric2"
        ]
    );
    for h in &hosts {
        assert!(h.ns.starts_with("fl-"), "{h:?}");
        for a in &h.addrs {
            let o = a.octets();
            let public = matches!(o, [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]);
            // Private addresses only on LANs; everything else in the RFC 5737 documentation ranges.
            match h.role {
                Role::Lan => assert!(a.is_private(), "{h:?}"),
                Role::Nat => assert!(public || a.is_private(), "{h:?}"),
                _ => assert!(public, "{h:?}"),
            }
        }
    }
    let lan = |n: &str| hosts.iter().find(|h| h.name == n).unwrap();
    let e = |n: &str| lan(n).expect.clone().unwrap();
    assert_eq!(lan("server").addrs.len(), 2);
    assert_eq!(e("home-lan1").mapping, Mapping::Eim);
    assert_eq!(e("home-lan1").filtering, Filtering::Apdf);
    assert_eq!(e("symmetric-lan1").mapping, Mapping::Apdm);
    assert_eq!(e("symmetric-lan1").classic, "symmetric");
    assert_eq!(e("fullcone-lan1").filtering, Filtering::Eif);
    assert!(e("fullcone-lan2").hairpin);
    assert_eq!(e("restricted-lan1").filtering, Filtering::Adf);
    assert_eq!(e("short-lan1").lifetime, Duration::from_secs(20));
    assert!(e("alg-lan1").sip_alg);
    assert_eq!(lan("alg-lan2").public, lan("alg").addrs.first().copied());
}

/// Nothing in the lab routes outside it, nothing is attached to the host's namespace, and `down` leaves nothing.
#[test]
fn lab_is_sealed_comes_up_in_seconds_and_leaves_nothing() {
    const TEST: &str = "lab_is_sealed_comes_up_in_seconds_and_leaves_nothing";
    let Some(lab) = Lab::up(TEST) else { return };
    let prefix = lab.prefix().to_owned();
    common::note(TEST, &format!("natlab.sh up took {:?}", lab.up_time()));
    assert!(
        lab.up_time() < Duration::from_secs(10),
        "{:?}",
        lab.up_time()
    );
    let t = Duration::from_secs(5);

    // The internet router has no default route and no route to any LAN: a route lookup, no packet sent.
    for dst in ["8.8.8.8", "192.168.1.10", "10.0.0.1", "172.16.0.1"] {
        let out = lab.exec("inet", "ip", &["route", "get", dst], t);
        assert!(!out.success(), "inet routes {dst}: {out}");
        assert!(out.text().contains("unreachable"), "{out}");
    }
    let lab_addrs: Vec<String> = lab
        .hosts()
        .iter()
        .flat_map(|h| h.addrs.iter().map(|a| a.to_string()))
        .collect();
    for h in lab.hosts() {
        // Every default route points at a lab router; every veth's other end is in one of this lab's namespaces.
        let out = lab.exec(&h.name, "ip", &["-o", "route", "show", "default"], t);
        assert!(out.success(), "{out}");
        if h.name == "inet" {
            assert_eq!(
                out.stdout.trim(),
                "",
                "the internet router has a default route"
            );
        } else {
            let via = out.stdout.split_whitespace().nth(2).unwrap_or("");
            assert!(lab_addrs.iter().any(|a| a == via), "{}: {out}", h.name);
        }
        let out = lab.exec(
            &h.name,
            "ip",
            &["-o", "-d", "link", "show", "type", "veth"],
            t,
        );
        assert!(out.success(), "{out}");
        assert!(!out.stdout.trim().is_empty(), "{}: no veth", h.name);
        for line in out.stdout.lines() {
            assert!(
                line.contains(&format!("link-netns {prefix}-")),
                "{}: veth not paired inside the lab: {line}",
                h.name
            );
        }
        // No IPv6 on lab interfaces.
        let out = lab.exec(&h.name, "ip", &["-6", "-o", "addr"], t);
        assert_eq!(out.stdout.trim(), "", "{}: IPv6 addresses", h.name);
    }
    // A process left running in a namespace is ended by `down`.
    let sleeper = lab.spawn("peer", "sleep", &["600"]);
    let pid = sleeper.pid();
    std::mem::forget(sleeper);

    let start = Instant::now();
    drop(lab);
    let down = start.elapsed();
    common::note(TEST, &format!("natlab.sh down took {down:?}"));
    let mut ip = std::process::Command::new("ip");
    ip.args(["netns", "list"]);
    let out = natlab::run_bounded(ip, t);
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{prefix}-"))),
        "namespaces left: {out}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the process started in the lab survived `down`"
    );
    // `down` again is a no-op.
    let mut again = std::process::Command::new("bash");
    again
        .arg(natlab::script())
        .arg("down")
        .env("NATLAB_PREFIX", &prefix);
    let out = natlab::run_bounded(again, t);
    assert!(out.success(), "{out}");
}

/// The lab verifies itself: coturn's natdiscovery against coturn finds what each gateway was built to do.
#[test]
fn natdiscovery_against_coturn_finds_what_each_gateway_was_built_to_do() {
    const TEST: &str = "natdiscovery_against_coturn_finds_what_each_gateway_was_built_to_do";
    if !require_tools(
        TEST,
        &[
            "turnserver",
            "turnutils_natdiscovery",
            "turnutils_stunclient",
        ],
    ) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let coturn = start_coturn(&lab, 3478);
    let results = per_lan_host(&lab, |h| natdiscovery(&lab, &h.name, 3478));
    let mut table = String::from("host             expected              coturn\n");
    let mut failures = String::new();
    for (h, (got, transcript)) in &results {
        let want = Verdict::expected(h.expect.as_ref().unwrap());
        let _ = writeln!(table, "{:<16} {want:<21} {got}", h.name);
        if *got != want {
            let _ = writeln!(
                failures,
                "{}: expected {want}, got {got}\n{transcript}",
                h.name
            );
        }
    }
    common::note(TEST, &format!("verdicts:\n{table}"));
    assert!(failures.is_empty(), "{failures}\n{coturn}");
}

/// Binding lifetimes, measured with natdiscovery's lifetime test against coturn: the `short` gateway's bindings
/// live 20 s (open after 15 s of silence, closed after 25 s); a default gateway's live 30 s (open after 25,
/// closed after 35).
#[test]
fn binding_lifetimes_match_the_gateways_conntrack_timeouts() {
    const TEST: &str = "binding_lifetimes_match_the_gateways_conntrack_timeouts";
    if !require_tools(
        TEST,
        &[
            "turnserver",
            "turnutils_natdiscovery",
            "turnutils_stunclient",
        ],
    ) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let coturn = start_coturn(&lab, 3478);
    let short = lab.host("short-lan1").expect.clone().unwrap();
    let home = lab.host("home-lan1").expect.clone().unwrap();
    assert_eq!(short.lifetime, Duration::from_secs(20));
    assert_eq!(home.lifetime, Duration::from_secs(30));
    let probes = [
        ("short-lan1", 15, true),
        ("short-lan1", 25, false),
        ("home-lan1", 25, true),
        ("home-lan1", 35, false),
    ];
    let results: Vec<_> = thread::scope(|s| {
        let runs: Vec<_> = probes
            .iter()
            .map(|&(host, secs, _)| {
                let lab = &lab;
                s.spawn(move || binding_open_after(lab, host, 3478, secs))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut failures = String::new();
    for ((host, secs, want), (got, transcript)) in probes.iter().zip(&results) {
        common::note(
            TEST,
            &format!("{host}: binding open after {secs} s: {got:?}"),
        );
        if *got != Some(*want) {
            let _ = writeln!(
                failures,
                "{host} after {secs} s: expected open={want}, got {got:?}\n{transcript}"
            );
        }
    }
    assert!(failures.is_empty(), "{failures}\n{coturn}");
}

/// Issue 3's first acceptance point for turnutils: natdiscovery against Farside (two addresses, RFC 5780) gives
/// the same verdicts as against coturn, for every LAN host, and both equal what the gateway was built to do.
/// Both servers run in the same lab at once: Farside on 3478/3479, coturn on 3480/3481.
#[test]
fn natdiscovery_against_farside_gives_the_same_verdicts_as_against_coturn() {
    const TEST: &str = "natdiscovery_against_farside_gives_the_same_verdicts_as_against_coturn";
    if !require_tools(
        TEST,
        &[
            "turnserver",
            "turnutils_natdiscovery",
            "turnutils_stunclient",
        ],
    ) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let farside = start_farside(&lab);
    let coturn = start_coturn(&lab, COTURN_SIDE_PORT);
    let results = per_lan_host(&lab, |h| {
        thread::scope(|s| {
            let c = s.spawn(|| natdiscovery(&lab, &h.name, COTURN_SIDE_PORT));
            let f = natdiscovery(&lab, &h.name, 3478);
            (c.join().unwrap(), f)
        })
    });
    // The lifetime test needs RESPONSE-PORT; Farside must show the short gateway's 20 s (coturn's is checked by
    // binding_lifetimes_match_the_gateways_conntrack_timeouts).
    let lifetimes: Vec<_> = thread::scope(|s| {
        let runs: Vec<_> = [(3478, 15, true), (3478, 25, false)]
            .into_iter()
            .map(|(port, secs, want)| {
                let lab = &lab;
                s.spawn(move || {
                    (
                        secs,
                        want,
                        binding_open_after(lab, "short-lan1", port, secs),
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let mut table =
        String::from("host             expected              coturn                farside\n");
    let mut failures = String::new();
    for (h, ((coturn_v, coturn_t), (farside_v, farside_t))) in &results {
        let want = Verdict::expected(h.expect.as_ref().unwrap());
        let _ = writeln!(
            table,
            "{:<16} {want:<21} {coturn_v:<21} {farside_v}",
            h.name
        );
        if *coturn_v != want || *farside_v != want {
            let _ = writeln!(
                failures,
                "{}: expected {want}, coturn {coturn_v}, farside {farside_v}\n{coturn_t}{farside_t}",
                h.name
            );
        }
    }
    for (secs, want, (got, transcript)) in &lifetimes {
        let _ = writeln!(
            table,
            "short-lan1 binding open after {secs} s against farside: {got:?}"
        );
        if *got != Some(*want) {
            let _ = writeln!(
                failures,
                "farside lifetime {secs} s: expected {want}, got {got:?}\n{transcript}"
            );
        }
    }
    common::note(TEST, &format!("verdicts:\n{table}"));
    assert!(failures.is_empty(), "{failures}\n{farside}\n{coturn}");
}

/// The `alg` gateway's SIP ALG rewrites a REGISTER's Via and Contact to its WAN address; the `home` gateway
/// (same masquerade, no helper) leaves the payload alone.
#[test]
fn alg_gateway_rewrites_sip_and_home_gateway_does_not() {
    const TEST: &str = "alg_gateway_rewrites_sip_and_home_gateway_does_not";
    if !require_tools(TEST, &["python3"]) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let peer = lab.host("peer").addr().to_string();
    let listen = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{peer}', 5060))\n\
         s.settimeout(15)\n\
         print('ready', flush=True)\n\
         for _ in range(2):\n\
         \x20   d, a = s.recvfrom(65535)\n\
         \x20   print('FROM %s:%d\\n%sEND' % (a[0], a[1], d.decode()), flush=True)\n"
    );
    let mut listener = lab.spawn("peer", "python3", &["-c", &listen]);
    assert!(
        listener.wait_for_output("ready", STARTUP_TIMEOUT),
        "{listener}"
    );
    let send = format!(
        "import socket, sys\n\
         ip, tag = sys.argv[1], sys.argv[2]\n\
         m = ('REGISTER sip:{peer} SIP/2.0\\r\\n'\n\
         \x20    f'Via: SIP/2.0/UDP {{ip}}:5060;branch=z9hG4bK-{{tag}}\\r\\n'\n\
         \x20    'Max-Forwards: 70\\r\\n'\n\
         \x20    f'From: <sip:100@{peer}>;tag={{tag}}\\r\\n'\n\
         \x20    'To: <sip:100@{peer}>\\r\\n'\n\
         \x20    f'Call-ID: {{tag}}@{{ip}}\\r\\n'\n\
         \x20    'CSeq: 1 REGISTER\\r\\n'\n\
         \x20    f'Contact: <sip:100@{{ip}}:5060>\\r\\n'\n\
         \x20    'Expires: 60\\r\\nContent-Length: 0\\r\\n\\r\\n')\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind((ip, 5060))\n\
         s.sendto(m.encode(), ('{peer}', 5060))\n"
    );
    for (host, tag) in [("alg-lan1", "alg"), ("home-lan1", "home")] {
        let ip = lab.host(host).addr().to_string();
        let out = lab.exec(
            host,
            "python3",
            &["-c", &send, &ip, tag],
            Duration::from_secs(10),
        );
        assert!(out.success(), "{host}: {out}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.output().matches("END").count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let seen = listener.output();
    let block = |from: &str| -> String {
        seen.split("FROM ")
            .find(|b| b.starts_with(from))
            .unwrap_or_else(|| panic!("nothing from {from}: {seen}"))
            .to_owned()
    };
    let alg_wan = lab.host("alg").addrs[0];
    let alg = block(&format!("{alg_wan}:"));
    assert!(
        alg.contains(&format!("Via: SIP/2.0/UDP {alg_wan}:5060;")),
        "{alg}"
    );
    assert!(
        alg.contains(&format!("Contact: <sip:100@{alg_wan}:5060>")),
        "{alg}"
    );
    // The kernel's ALG rewrites addresses in Via and Contact (and SDP), not the Call-ID.
    let alg_lan = lab.host("alg-lan1").addr();
    assert!(alg.contains(&format!("Call-ID: alg@{alg_lan}")), "{alg}");
    let home_wan = lab.host("home").addrs[0];
    let home = block(&format!("{home_wan}:"));
    let home_lan = lab.host("home-lan1").addr();
    assert!(
        home.contains(&format!("Via: SIP/2.0/UDP {home_lan}:5060;")),
        "{home}"
    );
    assert!(
        home.contains(&format!("Contact: <sip:100@{home_lan}:5060>")),
        "{home}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// farside probe

/// What `farside probe --json` concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProbeVerdict {
    verdict: Verdict,
    classic: String,
}

/// `farside probe --json` from `host` against the lab's Farside; short timeouts, since an unanswered filtering
/// test waits for the whole retransmission schedule.
fn farside_probe(lab: &Lab, host: &str, extra: &[&str]) -> (Option<serde_json::Value>, String) {
    let (primary, _) = lab.server_addrs();
    let target = format!("{primary}:3478");
    let mut args = vec![
        "probe",
        &target,
        "--json",
        "--timeout=200",
        "--retransmits=3",
    ];
    args.extend_from_slice(extra);
    let out = lab.exec(
        host,
        env!("CARGO_BIN_EXE_farside"),
        &args,
        Duration::from_secs(600),
    );
    let json = serde_json::from_str(out.stdout.trim()).ok();
    (
        json,
        format!("=== {host}: farside {}: {out}\n", args.join(" ")),
    )
}

fn probe_verdict(json: &serde_json::Value) -> ProbeVerdict {
    let mapping = match json["mapping"].as_str() {
        Some("endpoint-independent") => Some(Mapping::Eim),
        Some("address-dependent") => Some(Mapping::Adm),
        Some("address and port-dependent") => Some(Mapping::Apdm),
        _ => None,
    };
    let filtering = match json["filtering"].as_str() {
        Some("endpoint-independent") => Some(Filtering::Eif),
        Some("address-dependent") => Some(Filtering::Adf),
        Some("address and port-dependent") => Some(Filtering::Apdf),
        _ => None,
    };
    ProbeVerdict {
        verdict: Verdict {
            mapping,
            filtering,
            hairpin: json["hairpinning"].as_bool(),
        },
        // The lab writes "port-restricted-cone"; the probe prints "port restricted cone".
        classic: json["classic"].as_str().unwrap_or("?").replace(' ', "-"),
    }
}

/// Issue 3's acceptance: for every LAN host, what the gateway was built to do, what `farside probe` says, and
/// what `turnutils_natdiscovery` says against Farside's server are equal; the classic name matches too.
#[test]
fn farside_probe_natdiscovery_and_the_gateway_design_agree_for_every_lan_host() {
    const TEST: &str = "farside_probe_natdiscovery_and_the_gateway_design_agree_for_every_lan_host";
    if !require_tools(TEST, &["turnutils_natdiscovery"]) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let farside = start_farside(&lab);
    compare_verdicts(TEST, &lab, &format!("{farside}"));
}

/// The same with Farside as two one-address partner servers (issue 3's partner mode): change-IP requests to the
/// primary server are answered by its partner on the other address.
#[test]
fn farside_probe_and_natdiscovery_agree_with_two_one_address_partner_servers() {
    const TEST: &str = "farside_probe_and_natdiscovery_agree_with_two_one_address_partner_servers";
    if !require_tools(TEST, &["turnutils_natdiscovery"]) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let [a, b] = start_farside_partners(&lab);
    compare_verdicts(TEST, &lab, &format!("{a}\n{b}"));
    assert!(
        a.output().contains("S004 RFC 5780 on in partner mode"),
        "{a}"
    );
}

/// For every LAN host: the gateway's design, `farside probe` and `turnutils_natdiscovery` against the Farside
/// server(s) on the server host must agree, and the classic name and public address must match.
fn compare_verdicts(test: &str, lab: &Lab, servers: &str) {
    let results = per_lan_host(lab, |h| {
        thread::scope(|s| {
            let nd = s.spawn(|| natdiscovery(lab, &h.name, 3478));
            let probe = farside_probe(lab, &h.name, &[]);
            (nd.join().unwrap(), probe)
        })
    });
    let mut table = String::from(
        "host             designed              natdiscovery          farside probe         classic (designed / probe)\n",
    );
    let mut failures = String::new();
    for (h, ((nd, nd_t), (json, probe_t))) in &results {
        let e = h.expect.as_ref().unwrap();
        let want = Verdict::expected(e);
        let Some(json) = json else {
            let _ = writeln!(
                failures,
                "{}: farside probe printed no JSON\n{probe_t}",
                h.name
            );
            continue;
        };
        let got = probe_verdict(json);
        let _ = writeln!(
            table,
            "{:<16} {want:<21} {nd:<21} {:<21} {} / {}",
            h.name, got.verdict, e.classic, got.classic
        );
        let public = json["public"].as_str().unwrap_or("");
        let public_ok = h
            .public
            .is_some_and(|p| public.starts_with(&format!("{p}:")));
        if *nd != want || got.verdict != want || got.classic != e.classic || !public_ok {
            let _ = writeln!(
                failures,
                "{}: designed {want} ({}), natdiscovery {nd}, probe {} ({}), public {public}\n{nd_t}{probe_t}",
                h.name, e.classic, got.verdict, got.classic
            );
        }
    }
    common::note(test, &format!("verdicts:\n{table}"));
    assert!(failures.is_empty(), "{failures}\n{servers}");
}

/// `farside probe --lifetime` measures the `short` gateway's 20 s binding lifetime within ±5 s.
#[test]
fn farside_probe_measures_the_short_gateways_binding_lifetime() {
    const TEST: &str = "farside_probe_measures_the_short_gateways_binding_lifetime";
    let Some(lab) = Lab::up(TEST) else { return };
    let farside = start_farside(&lab);
    let started = Instant::now();
    let (json, transcript) = farside_probe(
        &lab,
        "short-lan1",
        &["--lifetime", "--lifetime-max=60", "--lifetime-resolution=2"],
    );
    let json = json.unwrap_or_else(|| panic!("no JSON\n{transcript}\n{farside}"));
    let at_least = json["lifetime_at_least_s"].as_u64();
    let less_than = json["lifetime_less_than_s"].as_u64();
    common::note(
        TEST,
        &format!(
            "short-lan1 binding lifetime: at least {at_least:?} s, less than {less_than:?} s (gateway: 20 s; took {:?})",
            started.elapsed()
        ),
    );
    let (Some(lo), Some(hi)) = (at_least, less_than) else {
        panic!("no lifetime measured\n{transcript}\n{farside}");
    };
    assert!(
        lo >= 15 && hi <= 25 && lo < hi,
        "lifetime [{lo}, {hi}) s is not within 20 ± 5 s\n{transcript}"
    );
}

/// Issue 4's lab acceptance: two hosts behind two symmetric gateways (address- and port-dependent mapping and
/// filtering) exchange datagrams through a Farside TURN relay on the server host, and the same hosts cannot
/// reach each other at their server-reflexive addresses without it (the control). The TURN client is aioice.
#[test]
fn hosts_behind_two_symmetric_gateways_talk_through_the_relay_and_not_without_it() {
    const TEST: &str =
        "hosts_behind_two_symmetric_gateways_talk_through_the_relay_and_not_without_it";
    const SECRET: &str = "natlab turn secret 0123456789";
    const COUNT: u32 = 20;
    let Some(python) = common::require_python_module(TEST, "aioice") else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let server = spawn_farside(
        &lab,
        "farside-turn",
        &format!(
            "[stun]\nlisten = [\"{primary}:3478\"]\n\n[turn]\nenabled = true\nauth_secrets = [\"{SECRET}\"]\n"
        ),
    );
    wait_until_answering(&lab, &server, 3478);
    let (user, password) = common::turn::rest_credentials(SECRET, "lab");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/relay_pair.py"
    );
    let (primary_s, count) = (primary.to_string(), COUNT.to_string());
    let mut report = String::new();
    for mode in ["--relay", "--direct"] {
        let dir = lab.scratch_dir(&format!("pair{mode}"));
        let dir = dir.display().to_string();
        let run = |host: &str, me: &str, other: &str| {
            let out = lab.exec(
                host,
                &python,
                &[
                    script, mode, &dir, me, other, &primary_s, "3478", &user, &password, &count,
                ],
                Duration::from_secs(60),
            );
            let json: Option<serde_json::Value> = serde_json::from_str(out.stdout.trim()).ok();
            (json, format!("=== {host} {mode}: {out}\n"))
        };
        let ((a, ta), (b, tb)) = thread::scope(|s| {
            let a = s.spawn(|| run("symmetric-lan1", "a", "b"));
            let b = s.spawn(|| run("symmetric2-lan1", "b", "a"));
            (a.join().unwrap(), b.join().unwrap())
        });
        let (Some(a), Some(b)) = (a, b) else {
            panic!("{mode}: a side printed no JSON\n{ta}{tb}{server}");
        };
        let _ = writeln!(report, "{mode}: a {a}\n{mode}: b {b}");
        let received = |j: &serde_json::Value| j["received"].as_u64().unwrap_or(u64::MAX);
        if mode == "--relay" {
            for j in [&a, &b] {
                assert!(
                    j["me"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with(&format!("{primary}:")),
                    "the relayed address is the server's: {j}"
                );
            }
            assert_eq!(
                (received(&a), received(&b)),
                (u64::from(COUNT), u64::from(COUNT)),
                "through the relay every datagram arrives\n{ta}{tb}{server}"
            );
        } else {
            assert_eq!(
                (received(&a), received(&b)),
                (0, 0),
                "without the relay nothing gets through two symmetric NATs (else the control proves nothing)\n{ta}{tb}"
            );
        }
    }
    common::note(TEST, &report);
}

/// A TURN node in the lab's server namespace on `ip:3478`, its store the shared database
/// `url`, its admin API on the namespace's loopback at `admin_port` (for `farside drain`);
/// returns it and its configuration file.
fn spawn_turn_node(
    lab: &Lab,
    node: &str,
    ip: std::net::Ipv4Addr,
    url: &str,
    admin_port: u16,
    peer: &str,
) -> (LabChild, String) {
    let config = lab.farside_config(node, |dir| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"{ip}:3478\"]\n\n[turn]\nenabled = true\nrealm = \"farside\"\n\
             allowed_peers = [\"{peer}/32\"]\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             token_file = \"{}\"\n\n[log]\nlevel = \"debug\"\n\n[store]\nurl = \"{url}\"\nnode = \"{node}\"\n",
            dir.join("admin.token").display()
        ))
    });
    let mut server = lab.serve_farside(&config);
    assert!(
        server.wait_for_output("S010 running", STARTUP_TIMEOUT),
        "{server}"
    );
    (server, config)
}

/// Two TURN nodes in the lab share one PostgreSQL (through its socket). A user added with
/// `farside user add` on node A is in node B's credentials within a second, and coturn's
/// uclient behind the symmetric gateway relays through B with it. Then B drains to A (`farside
/// drain --to`): uclient behind the home gateway asks B, is sent to A with 300 Try Alternate,
/// and relays there (A lists its allocation meanwhile).
#[test]
fn turn_nodes_on_one_database_share_users_and_drain_to_each_other() {
    const TEST: &str = "turn_nodes_on_one_database_share_users_and_drain_to_each_other";
    if !require_tools(TEST, &["turnutils_uclient", "turnutils_peer"]) {
        return;
    }
    let Some(db) = test_database::TestDatabase::new(TEST) else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let url = natlab::postgres_through_the_socket(&db.url);
    let (primary, secondary) = lab.server_addrs();
    let peer_ip = lab.host("peer").addr().to_string();
    let (a, a_config) = spawn_turn_node(&lab, "lab-a", primary, &url, 9481, &peer_ip);
    let (mut b, b_config) = spawn_turn_node(&lab, "lab-b", secondary, &url, 9482, &peer_ip);
    let _peer = lab.spawn("peer", "turnutils_peer", &["-L", &peer_ip, "-p", "3490"]);
    let farside = env!("CARGO_BIN_EXE_farside");
    let added = Instant::now();
    let add = lab.exec(
        "server",
        farside,
        &[
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--config",
            &a_config,
        ],
        Duration::from_secs(20),
    );
    assert!(add.success(), "{add}");
    assert!(
        b.wait_for_output("S306 store changed: 1 users", Duration::from_secs(3)),
        "{b}"
    );
    let seen = added.elapsed();
    assert!(seen < Duration::from_secs(1), "within a second: {seen:?}");
    let uclient = |host: &str, server: std::net::Ipv4Addr, n: &str| {
        let server = server.to_string();
        lab.exec(
            host,
            "turnutils_uclient",
            &[
                "-u", "carol", "-w", "pw", "-e", &peer_ip, "-r", "3490", "-n", n, "-z", "20", "-c",
                &server,
            ],
            Duration::from_secs(40),
        )
    };
    let relayed = |out: &natlab::Output| common::turn::totals(&out.stdout);
    let first = uclient("symmetric-lan1", secondary, "20");
    assert!(
        relayed(&first).is_some_and(|t| t.sent == 20 && t.received == 20),
        "uclient through B: {first}\n{b}"
    );
    let drain = lab.exec(
        "server",
        farside,
        &[
            "drain",
            "--to",
            &format!("{primary}:3478"),
            "--config",
            &b_config,
        ],
        Duration::from_secs(20),
    );
    assert!(drain.success(), "{drain}");
    assert!(
        drain
            .stdout
            .starts_with("draining: new TURN allocations go to"),
        "{drain}"
    );
    let home_public = lab.host("home").addr().to_string();
    let (second, listed_at_a) = thread::scope(|s| {
        let run = s.spawn(|| uclient("home-lan1", secondary, "150"));
        // A lists the allocation while uclient relays there (the list is a second old at most).
        let listed = common::wait_until(Duration::from_secs(6), || {
            lab.exec(
                "server",
                farside,
                &["sessions", "--json", "--config", &a_config],
                Duration::from_secs(10),
            )
            .stdout
            .contains(&home_public)
        });
        (run.join().unwrap(), listed)
    });
    assert!(
        relayed(&second).is_some_and(|t| t.sent == 150 && t.received == 150),
        "uclient sent from B to A: {second}\n{b}\n{a}"
    );
    assert!(listed_at_a, "A held the allocation\n{a}");
    assert!(b.output().contains("S310 TURN draining"), "{b}");
    common::note(
        TEST,
        &format!(
            "a user added on node A was in node B's credentials {seen:?} later; uclient relayed 20/20 through B; B drained to A; uclient asking B relayed 150/150 at A"
        ),
    );
}

/// The shape of a JSON value: the path of every object key, through every array element
/// (`.sip[].transport`).
fn json_shape(v: &serde_json::Value, at: &str, into: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, child) in o {
                let path = format!("{at}.{k}");
                into.push(path.clone());
                json_shape(child, &path, into);
            }
        }
        serde_json::Value::Array(a) => {
            for element in a.iter().filter(|e| e.is_object()) {
                json_shape(element, &format!("{at}[]"), into);
            }
        }
        _ => {}
    }
}

/// Issue 18's acceptance: `farside doctor` from a host behind each lab gateway, against a
/// Farside with RFC 5780 STUN, TURN, and SIP over UDP, TCP and TLS, gives each gateway its
/// verdict:
/// - a SIP ALG only behind the `alg` gateway, with the changed lines named (its Via, Contact
///   and SDP rewritten to the gateway's public address);
/// - a short binding lifetime only behind the 20 s `short` gateway;
/// - "needs TURN" only behind the symmetric gateways (address- and port-dependent mapping);
/// - registration (one challenge, then 200), and audio through the TURN relay, through the RTP
///   relay (a call to the echo service) and straight to the server everywhere, with under 1 %
///   loss;
/// - exit status 3 where a problem was found, 0 elsewhere;
/// - every `--json` report has exactly the shape docs/doctor.md documents.
#[test]
fn farside_doctor_gives_each_gateway_its_verdict() {
    const TEST: &str = "farside_doctor_gives_each_gateway_its_verdict";
    if !require_tools(TEST, &["openssl"]) {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, alternate) = lab.server_addrs();
    let (cert, key) = common::self_signed(&lab.scratch_dir("doctor-cert"), &primary.to_string());
    let config = lab.farside_config("farside-doctor", |dir| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"{primary}:3478\"]\nalternate_address = \"{alternate}\"\n\n\
             [turn]\nenabled = true\nrealm = \"example.org\"\n\n\
             [sip]\nenabled = true\ndomain = \"example.org\"\n\
             listen = [\"udp:{primary}:5060\", \"tcp:{primary}:5060\", \"tls:{primary}:5061\"]\n\n\
             [rtp]\nenabled = true\naddress = [\"{primary}\"]\nports = \"40000-40199\"\nng_listen = []\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[admin]\nlisten = \"off\"\n\n\
             [store]\nurl = \"sqlite://{}\"\n",
            cert.display(),
            key.display(),
            dir.join("farside.db").display()
        ))
    });
    // One user per LAN host, in the realm TURN and SIP share.
    for h in lab.lan_hosts() {
        let add = lab.exec(
            "peer",
            env!("CARGO_BIN_EXE_farside"),
            &[
                "user",
                "add",
                &h.name,
                "--password",
                "pw-lab-phone",
                "--realm",
                "example.org",
                "--config",
                &config,
            ],
            Duration::from_secs(20),
        );
        assert!(add.success(), "{add}");
    }
    let server = lab.serve_farside(&config);
    wait_until_answering(&lab, &server, 3478);
    let documented: serde_json::Value = {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/doctor.md"))
                .expect("docs/doctor.md");
        let block = doc
            .split("```json\n")
            .nth(1)
            .and_then(|b| b.split("\n```").next())
            .expect("a json block in docs/doctor.md");
        serde_json::from_str(block).expect("the documented report is JSON")
    };
    let mut want_shape = Vec::new();
    json_shape(&documented, "", &mut want_shape);
    want_shape.sort();

    let results = per_lan_host(&lab, |h| {
        let command = format!(
            "echo pw-lab-phone | {} doctor sip:{}@example.org --server {primary}:5060 --password-stdin --json",
            env!("CARGO_BIN_EXE_farside"),
            h.name
        );
        lab.exec(&h.name, "sh", &["-c", &command], Duration::from_secs(180))
    });
    let mut failures = String::new();
    let mut table = String::new();
    for (h, out) in &results {
        let e = h.expect.clone().expect("a LAN host's expectations");
        let Ok(report) = serde_json::from_str::<serde_json::Value>(out.stdout.trim()) else {
            let _ = writeln!(failures, "{}: no JSON report\n{out}", h.name);
            continue;
        };
        let mut shape = Vec::new();
        json_shape(&report, "", &mut shape);
        shape.sort();
        shape.dedup();
        // Every documented key is there, and no other; only an empty list of changes leaves
        // its elements' keys out.
        let missing: Vec<&String> = want_shape
            .iter()
            .filter(|p| !shape.contains(p) && !p.starts_with(".sip[].changes[]"))
            .collect();
        let extra: Vec<&String> = shape.iter().filter(|p| !want_shape.contains(p)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let _ = writeln!(
                failures,
                "{}: the report's shape is not the documented one: missing {missing:?}, not documented {extra:?}",
                h.name
            );
        }
        let problems = report["verdict"]["problems"].to_string();
        let advice = report["verdict"]["advice"].to_string();
        let udp = report["sip"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["transport"] == "udp"))
            .cloned()
            .unwrap_or_default();
        let alg_found = udp["alg"] == true;
        let changed: Vec<String> = udp["changes"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["field"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let short = problems.contains("forgets an idle UDP mapping");
        let needs_turn = advice.contains("needs TURN");
        let audio = &report["audio"];
        let (sent, received) = (
            audio["sent"].as_u64().unwrap_or(0),
            audio["received"].as_u64().unwrap_or(0),
        );
        let direct = &report["direct_audio"];
        let (direct_sent, direct_back) = (
            direct["sent"].as_u64().unwrap_or(0),
            direct["received"].as_u64().unwrap_or(0),
        );
        let rtp = &report["rtp_relay_audio"];
        let (rtp_sent, rtp_back) = (
            rtp["sent"].as_u64().unwrap_or(0),
            rtp["received"].as_u64().unwrap_or(0),
        );
        let registered = report["registration"]["registered"] == true
            && report["registration"]["challenges"] == 1;
        let _ = writeln!(
            table,
            "{:16} exit {} alg {alg_found} {changed:?} short {short} needs_turn {needs_turn} registered {registered} audio {received}/{sent} mos {} rtp relay {rtp_back}/{rtp_sent} mos {} direct {direct_back}/{direct_sent} tls {}",
            h.name,
            out.status
                .and_then(|s| s.code())
                .map_or("?".into(), |c| c.to_string()),
            audio["mos"],
            rtp["mos"],
            report["sip"][2]["alg"],
        );
        if report["verdict"]["ok"] != true {
            let _ = writeln!(table, "  problems {problems}\n  advice {advice}");
        }
        let want_alg = e.sip_alg;
        let want_short = e.lifetime <= Duration::from_secs(25);
        let want_turn = e.mapping != Mapping::Eim;
        if alg_found != want_alg {
            let _ = writeln!(
                failures,
                "{}: ALG found {alg_found}, built {want_alg}\n{out}",
                h.name
            );
        }
        if want_alg {
            for field in ["Via", "Contact", "c=", "o="] {
                if !changed.iter().any(|c| c == field) {
                    let _ = writeln!(failures, "{}: {field} not named among {changed:?}", h.name);
                }
            }
            if !(problems.contains("SIP ALG") && advice.contains("disable SIP ALG")) {
                let _ = writeln!(failures, "{}: no ALG verdict: {problems} {advice}", h.name);
            }
        }
        if short != want_short {
            let _ = writeln!(
                failures,
                "{}: short lifetime {short}, built {want_short}\n{out}",
                h.name
            );
        }
        if needs_turn != want_turn {
            let _ = writeln!(
                failures,
                "{}: needs TURN {needs_turn}, built {want_turn}\n{out}",
                h.name
            );
        }
        if !registered {
            let _ = writeln!(
                failures,
                "{}: not registered on the first challenge\n{out}",
                h.name
            );
        }
        if sent == 0 || (sent - received) * 100 >= sent {
            let _ = writeln!(failures, "{}: audio {received} of {sent}\n{out}", h.name);
        }
        if rtp_sent == 0 || (rtp_sent - rtp_back) * 100 >= rtp_sent {
            let _ = writeln!(
                failures,
                "{}: audio through the RTP relay {rtp_back} of {rtp_sent}\n{out}",
                h.name
            );
        }
        if direct_sent == 0 || (direct_sent - direct_back) * 100 >= direct_sent {
            let _ = writeln!(
                failures,
                "{}: direct audio {direct_back} of {direct_sent}\n{out}",
                h.name
            );
        }
        let want_exit = if want_alg || want_short { 3 } else { 0 };
        if out.status.and_then(|s| s.code()) != Some(want_exit) {
            let _ = writeln!(
                failures,
                "{}: exit {:?}, want {want_exit}\n{out}",
                h.name, out.status
            );
        }
    }
    common::note(TEST, &format!("verdicts:\n{table}"));
    assert!(failures.is_empty(), "{failures}\n{table}\n{server}");
}
