//! The SIP registrar and proxy across real netfilter NATs (the lab of `tests/natlab/`): a SIPp
//! phone behind the symmetric gateway registers with Digest and is called by a SIPp phone behind
//! the home gateway; the INVITE reaches the callee only because Farside sends it over the flow
//! the REGISTER came from (the symmetric NAT drops anything else), and 180, 200, ACK, BYE and
//! 200 find their way through both NATs.
//!
//! Needs root and `ip netns` (else SKIP, unless `FARSIDE_REQUIRE_NATLAB=1`) and SIPp.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "natlab/mod.rs"]
mod natlab;
#[path = "../../store/tests/common/postgres.rs"]
mod test_database;

use std::thread;
use std::time::{Duration, Instant};

use common::sipp;
use natlab::{Lab, LabChild};

const DOMAIN: &str = "example.org";

/// A Farside on the server host's primary address: SIP on `port` (STUN on `port + 1000`),
/// `[sip.keepalive]` lines `keepalive`, and alice and bob added to its store; returns once it
/// listens.
fn start_farside(lab: &Lab, name: &str, port: u16, keepalive: &str) -> LabChild {
    start_farside_with(lab, name, port, "", keepalive, "")
}

/// As [`start_farside`], with more `[sip]` lines (a `listen` among them replaces UDP and TCP
/// on `port`) and more tables.
fn start_farside_with(
    lab: &Lab,
    name: &str,
    port: u16,
    sip: &str,
    keepalive: &str,
    tables: &str,
) -> LabChild {
    let (primary, _) = lab.server_addrs();
    // UDP and TCP on `port`, unless `sip` says where.
    let listen = match sip.contains("listen =") {
        true => String::new(),
        false => format!("listen = [\"udp:{primary}:{port}\", \"tcp:{primary}:{port}\"]\n"),
    };
    let config = lab.farside_config(name, |dir| {
        // A store of its own, unless `tables` names one (nodes sharing PostgreSQL).
        let store = match tables.contains("[store]") {
            true => String::new(),
            false => format!(
                "[store]\nurl = \"sqlite://{}\"\n",
                dir.join("farside.db").display()
            ),
        };
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"{primary}:{}\"]\n\n[sip]\nenabled = true\n{listen}domain = \"{DOMAIN}\"\n{sip}\n\n[sip.keepalive]\n{keepalive}\n\n[admin]\nlisten = \"off\"\n\n[log]\nlevel = \"debug\"\n\n{store}\n{tables}\n",
            port + 1000,
        ))
    });
    for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
        let add = lab.exec(
            "peer",
            env!("CARGO_BIN_EXE_farside"),
            &[
                "user",
                "add",
                user,
                "--password",
                password,
                "--realm",
                DOMAIN,
                "--config",
                &config,
            ],
            Duration::from_secs(20),
        );
        // A shared store may have them from another node already.
        assert!(
            add.success() || add.to_string().contains("already exists"),
            "{add}"
        );
    }
    let mut server = lab.serve_farside(&config);
    assert!(
        server.wait_for_output("S400 SIP ", Duration::from_secs(15)),
        "{server}"
    );
    server
}

/// SIPp alice registers with Digest from `ip:5070` on `host` at `target`.
fn register_alice(lab: &Lab, host: &str, ip: &str, target: &str) -> natlab::Output {
    lab.exec(
        host,
        "sipp",
        &sipp::strs(&sipp::register(
            "alice",
            "wonderland",
            DOMAIN,
            ip,
            5070,
            target,
            15,
        )),
        Duration::from_secs(30),
    )
}

/// SIPp alice answers one call on `ip:5070` on `host` while `meanwhile` runs (half a second
/// after she starts listening); her run's output and what `meanwhile` gave.
fn while_alice_waits<T: Send>(
    lab: &Lab,
    host: &str,
    ip: &str,
    meanwhile: impl FnOnce() -> T + Send,
) -> (natlab::Output, T) {
    thread::scope(|s| {
        let callee = s.spawn(|| {
            lab.exec(
                host,
                "sipp",
                &sipp::strs(&sipp::callee("alice", ip, 5070, 25)),
                Duration::from_secs(40),
            )
        });
        thread::sleep(Duration::from_millis(500));
        let other = meanwhile();
        (callee.join().unwrap(), other)
    })
}

/// A SIPp phone on `host` (`ip:5080`) calls sip:alice@example.org through `target`.
fn call_alice(lab: &Lab, host: &str, ip: &str, target: &str) -> natlab::Output {
    lab.exec(
        host,
        "sipp",
        &sipp::strs(&sipp::caller("alice", DOMAIN, ip, 5080, target, 20)),
        Duration::from_secs(40),
    )
}

/// How many times a SIPp scenario step ran, from its final statistics screen: `step` is the
/// arrow and message as SIPp prints them ("----------> INVITE" for a request received,
/// "401 <----------" for a response received; in a scenario that starts by sending, a request
/// received is "INVITE <----------").
fn sipp_count(stdout: &str, step: &str) -> Option<u64> {
    let line = stdout.lines().rev().find(|l| l.contains(step))?;
    line.split(step)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kamailio on the server host, listening on `addr` only, with configuration file `cfg`, its
/// run files in `run_dir` and `example.org` as its domain; returns once it listens (and a
/// second more, for its children).
fn start_kamailio(lab: &Lab, cfg: &str, addr: &str, run_dir: &str) -> LabChild {
    start_kamailio_with(lab, cfg, addr, run_dir, &[])
}

/// As [`start_kamailio`], with `-A` defines (`WITH_NAT`, ...).
fn start_kamailio_with(
    lab: &Lab,
    cfg: &str,
    addr: &str,
    run_dir: &str,
    defines: &[&str],
) -> LabChild {
    let listen = format!("udp:{addr}");
    let alias = format!("--alias={DOMAIN}");
    let mut args = vec![
        "-f", cfg, "-DD", "-E", "-Y", run_dir, "-l", &listen, &alias, "-T", "-n", "2", "-m", "64",
        "-M", "8",
    ];
    for d in defines {
        args.extend(["-A", d]);
    }
    let mut kamailio = lab.spawn("server", "kamailio", &args);
    assert!(
        kamailio.wait_for_output("Listening on", Duration::from_secs(10)),
        "{kamailio}"
    );
    thread::sleep(Duration::from_secs(1));
    kamailio
}

#[test]
fn a_phone_behind_a_symmetric_nat_registers_and_takes_a_call_through_farside() {
    const TEST: &str = "a_phone_behind_a_symmetric_nat_registers_and_takes_a_call_through_farside";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    // SIPp answers no OPTIONS outside its scenario: CRLF pings leave it alone.
    let mut server = start_farside(&lab, "farside-sip", 5060, "method = \"CRLF\"");
    let target = format!("{primary}:5060");
    // The phones' own addresses, so that each SIPp run names the same Contact.
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();

    // Alice behind the symmetric gateway registers from port 5070...
    let reg = register_alice(&lab, "symmetric-lan1", &alice_ip, &target);
    assert!(reg.success(), "register: {reg}\n{server}");
    // ...and answers there; the caller behind the home gateway calls her through Farside.
    // Her NAT's public address and port, as Farside saw the REGISTER come from.
    assert!(
        server.wait_for_output(
            "S411 sip:alice@example.org registered",
            Duration::from_secs(5)
        ),
        "{server}"
    );
    let logs = server.output();
    let mapped: String = logs
        .lines()
        .find_map(|l| l.split("registered from udp ").nth(1))
        .and_then(|rest| rest.split(':').take(2).collect::<Vec<_>>().try_into().ok())
        .map(|[ip, port]: [&str; 2]| {
            let port: String = port.chars().take_while(char::is_ascii_digit).collect();
            format!("{ip}:{port}")
        })
        .unwrap();
    let started = Instant::now();
    let (callee_out, (control, caller_out)) =
        while_alice_waits(&lab, "symmetric-lan1", &alice_ip, || {
            // The control: the same INVITE sent straight to her NAT mapping from the server host,
            // but not from Farside's socket. The symmetric NAT lets only Farside's address and port
            // in, so it never reaches her (had it, she would have answered it and the run below
            // would find no phone waiting).
            let control = lab.exec(
                "server",
                "sipp",
                &sipp::strs(&sipp::caller(
                    "alice",
                    DOMAIN,
                    &primary.to_string(),
                    5099,
                    &mapped,
                    4,
                )),
                Duration::from_secs(20),
            );
            (control, call_alice(&lab, "home-lan1", &caller_ip, &target))
        });
    assert!(
        !control.success() && sipp_count(&control.stdout, "180 <----------") == Some(0),
        "the INVITE sent to her NAT mapping from elsewhere must not reach her\n{control}"
    );
    assert!(caller_out.success(), "caller: {caller_out}\n{server}");
    assert!(callee_out.success(), "callee: {callee_out}\n{server}");
    assert_eq!(
        sipp_count(&callee_out.stdout, "----------> INVITE"),
        Some(1),
        "{callee_out}"
    );
    common::note(
        TEST,
        &format!(
            "register, INVITE/180/200/ACK/BYE/200 across the symmetric and home gateways in {:?}; the same INVITE straight to her mapping {mapped} from another port got nothing",
            started.elapsed()
        ),
    );
}

/// Seed 001's failure must not happen: behind the gateway with a SIP ALG (netfilter's SIP
/// helper rewrites Via, Contact and SDP to its WAN address), a phone registers on the first
/// challenge, and a call from a second phone behind the same ALG rings, is answered and hung
/// up.
#[test]
fn a_phone_behind_a_sip_alg_authenticates_on_the_first_challenge_and_takes_a_call() {
    const TEST: &str =
        "a_phone_behind_a_sip_alg_authenticates_on_the_first_challenge_and_takes_a_call";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    // The lab's ALG helper watches port 5060 only.
    let mut server = start_farside(&lab, "farside-alg", 5060, "method = \"CRLF\"");
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("alg-lan1").addr().to_string();
    let caller_ip = lab.host("alg-lan2").addr().to_string();
    let reg = register_alice(&lab, "alg-lan1", &alice_ip, &target);
    assert!(reg.success(), "register: {reg}\n{server}");
    assert_eq!(
        sipp_count(&reg.stdout, "401 <----------"),
        Some(1),
        "one challenge, then 200 (no stale-nonce loop)\n{reg}"
    );
    // The ALG was in the path: the Contact Farside saw names the gateway, not the phone's
    // private address (behind a plain NAT, private_contact fires).
    assert!(
        server.wait_for_output(
            "S411 sip:alice@example.org registered",
            Duration::from_secs(5)
        ),
        "{server}"
    );
    let logs = server.output();
    let line = logs
        .lines()
        .find(|l| l.contains("S411 sip:alice@example.org registered"))
        .unwrap();
    assert!(
        !line.contains("private_contact") && line.contains("NAT tests fired"),
        "the ALG rewrote the Contact: {line}"
    );
    let (callee_out, caller_out) = while_alice_waits(&lab, "alg-lan1", &alice_ip, || {
        call_alice(&lab, "alg-lan2", &caller_ip, &target)
    });
    assert!(caller_out.success(), "caller: {caller_out}\n{server}");
    assert!(callee_out.success(), "callee: {callee_out}\n{server}");
    common::note(
        TEST,
        &format!("behind the SIP ALG: one 401 then 200; INVITE/180/200/ACK/BYE/200 ({line})"),
    );
}

/// The server sees the SIP ALG ([`farside_sip::alg`]): behind the ALG gateway, a SIPp phone
/// and baresip register and each is reported once (S424, with the evidence: the Via names the
/// packet's source though nothing had told the phone; SIPp's Call-ID still names its private
/// address), and their bindings carry `alg_suspected`. Behind the other gateways none is: a
/// SIPp phone behind the home gateway, baresip behind the symmetric one (both write private
/// addresses, then are told by `rport`), and a phone behind the full-cone gateway that fills
/// its Via and Contact from Farside's STUN answer (`tests/stun_phone.py`, its Call-ID naming
/// its private address as Yealink phones' do).
#[test]
fn the_server_suspects_a_sip_alg_behind_the_alg_gateway_and_nowhere_else() {
    const TEST: &str = "the_server_suspects_a_sip_alg_behind_the_alg_gateway_and_nowhere_else";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "baresip") {
        return;
    }
    let Some(python) = common::require_python_module(TEST, "socket") else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    // The lab's ALG helper watches port 5060 only; STUN listens on 6060.
    let server = start_farside(&lab, "farside-alg-seen", 5060, "method = \"CRLF\"");
    let target = format!("{primary}:5060");
    let ip = |host: &str| lab.host(host).addr().to_string();
    let wan = |gateway: &str| lab.host(gateway).addrs[0].to_string();
    let baresip = |host: &str| {
        let dir = baresip_dir(
            &lab,
            &ip(host),
            &format!("<sip:bob@{DOMAIN}>;auth_pass=builder;outbound=\"sip:{target}\";regint=600"),
        );
        let mut phone = lab.spawn(
            host,
            "baresip",
            &["-f", &dir.display().to_string(), "-t", "20"],
        );
        assert!(
            phone.wait_for_output("200 OK", Duration::from_secs(15)),
            "baresip behind {host} registers\n{phone}\n{server}"
        );
        phone
    };
    let reg = register_alice(&lab, "alg-lan1", &ip("alg-lan1"), &target);
    assert!(reg.success(), "SIPp behind the ALG: {reg}\n{server}");
    let _bob_alg = baresip("alg-lan2");
    let reg = register_alice(&lab, "home-lan1", &ip("home-lan1"), &target);
    assert!(reg.success(), "SIPp behind home: {reg}\n{server}");
    let _bob_symmetric = baresip("symmetric-lan1");
    let stun_phone = lab.exec(
        "fullcone-lan1",
        &python,
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/stun_phone.py"),
            &format!("{}:5070", ip("fullcone-lan1")),
            &target,
            &format!("{primary}:6060"),
            "alice",
            "wonderland",
            DOMAIN,
        ],
        Duration::from_secs(20),
    );
    let mapped = format!("MAPPED {}:", wan("fullcone"));
    assert!(
        stun_phone.success()
            && stun_phone.stdout.contains(&mapped)
            && stun_phone.stdout.contains("REGISTERED"),
        "the STUN phone: {stun_phone}\n{server}"
    );
    // Five registrations, each logged (S411) with the tests that fired.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.output().matches("S411 ").count() < 5 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let logs = server.output();
    let lines = |code: &str, from: &str| -> Vec<String> {
        logs.lines()
            .filter(|l| l.contains(code) && l.contains(&format!(" {from}:")))
            .map(str::to_owned)
            .collect()
    };
    let alg = wan("alg");
    let suspected = lines("S424 ", &alg);
    assert_eq!(
        suspected.len(),
        2,
        "one S424 per phone behind the ALG:\n{logs}"
    );
    let sipp = suspected
        .iter()
        .find(|l| l.contains("S424 SIP ALG suspected for sip:alice@example.org"))
        .unwrap_or_else(|| panic!("SIPp's S424: {logs}"));
    assert!(
        sipp.contains(&format!("the top Via names {alg}:5070"))
            && sipp.contains(&format!("private {} left in the Call-ID", ip("alg-lan1"))),
        "{sipp}"
    );
    assert!(
        suspected
            .iter()
            .any(|l| l.contains("S424 SIP ALG suspected for sip:bob@example.org")),
        "baresip's S424: {logs}"
    );
    let registered = lines("S411 ", &alg);
    assert!(
        registered.len() >= 2 && registered.iter().all(|l| l.contains("alg_suspected")),
        "bindings behind the ALG carry alg_suspected: {registered:?}"
    );
    for gateway in ["home", "symmetric", "fullcone"] {
        let from = wan(gateway);
        assert!(
            lines("S424 ", &from).is_empty(),
            "no ALG behind {gateway}:\n{logs}"
        );
        let registered = lines("S411 ", &from);
        assert!(
            !registered.is_empty() && registered.iter().all(|l| !l.contains("alg_suspected")),
            "behind {gateway}: {registered:?}\n{logs}"
        );
    }
    common::note(
        TEST,
        &format!(
            "suspected behind the ALG gateway only:\n{}\nthe STUN phone: {}",
            suspected.join("\n"),
            lines("S411 ", &wan("fullcone")).join("\n")
        ),
    );
}

/// Edge mode in front of a real registrar: Kamailio with Debian's default configuration on the
/// server host's loopback. Alice behind the symmetric gateway registers through Farside, which
/// adds a Path with her flow token; Kamailio keeps it, and routes the call from a phone behind
/// the home gateway along it, so the INVITE comes back through Farside and out over alice's
/// flow (the symmetric NAT lets nothing else in). ACK and BYE follow the Record-Routes.
#[test]
fn edge_mode_in_front_of_kamailio_delivers_calls_along_the_path() {
    const TEST: &str = "edge_mode_in_front_of_kamailio_delivers_calls_along_the_path";
    const KAMAILIO: &str = "127.0.0.1:5090";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "kamailio") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let run_dir = lab.scratch_dir("kamailio");
    let run_dir = run_dir.display().to_string();
    // Debian's /etc/kamailio/kamailio.cfg as shipped: no authentication, usrloc in memory,
    // use_path on. Only the listen address and the domain alias come from the command line.
    let kamailio = start_kamailio(&lab, "/etc/kamailio/kamailio.cfg", KAMAILIO, &run_dir);
    let server = start_farside_with(
        &lab,
        "farside-edge",
        5060,
        &format!("mode = \"edge\"\nupstream = \"sip:{KAMAILIO}\""),
        "interval = \"2s\"\nmethod = \"CRLF\"",
        "",
    );
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let reg = lab.exec(
        "symmetric-lan1",
        "sipp",
        &sipp::strs(&sipp::register_open(
            "alice", DOMAIN, &alice_ip, 5070, &target, 15,
        )),
        Duration::from_secs(30),
    );
    assert!(reg.success(), "register: {reg}\n{server}\n{kamailio}");
    let (callee_out, caller_out) = while_alice_waits(&lab, "symmetric-lan1", &alice_ip, || {
        call_alice(&lab, "home-lan1", &caller_ip, &target)
    });
    assert!(
        caller_out.success(),
        "caller: {caller_out}\n{server}\n{kamailio}"
    );
    assert!(
        callee_out.success(),
        "callee: {callee_out}\n{server}\n{kamailio}"
    );
    // The INVITE came from Kamailio to the edge (along the Path) and left to alice's NAT.
    let gateway = lab.host("symmetric-lan1").public.unwrap().to_string();
    let logs = server.output();
    let along_path = logs.lines().find(|l| {
        l.contains("S404 INVITE sip:alice@")
            && l.contains(&format!("from {KAMAILIO} forwarded to {gateway}:"))
    });
    assert!(along_path.is_some(), "INVITE along the Path\n{logs}");
    // Kamailio's 200 told the edge which binding to keep alive (and to keep in its store).
    assert!(
        logs.contains("S408 saved the registrations of 1 addresses of record (1 bindings)"),
        "the edge keeps alice's binding\n{logs}"
    );
    common::note(
        TEST,
        "Kamailio (Debian default config) stored the Path with alice's flow token; INVITE/180/200/ACK/BYE/200 came back through the edge and over her symmetric-NAT flow",
    );
}

/// The relay in edge mode: Farside is the NAT edge of Debian's stock Kamailio and relays the
/// media of the calls it carries. A phone behind the symmetric gateway calls alice behind the
/// SIP-ALG gateway, both registered through the edge; the INVITE passes the edge twice (up to
/// Kamailio, back along the Path) and so does the answer. The relay takes each SDP once, from
/// the phone, and passes its own rewriting on unchanged the second time; both phones hear at
/// least 99 % of the other's recording, through hold and resume.
#[test]
fn edge_mode_relays_a_call_between_two_of_its_phones_with_audio_both_ways() {
    const TEST: &str = "edge_mode_relays_a_call_between_two_of_its_phones_with_audio_both_ways";
    const KAMAILIO: &str = "127.0.0.1:5090";
    if !common::require_tool(TEST, "sipp")
        || !common::require_tool(TEST, "kamailio")
        || !common::require_tool(TEST, "tcpdump")
    {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let run_dir = lab.scratch_dir("kamailio");
    let kamailio = start_kamailio(
        &lab,
        "/etc/kamailio/kamailio.cfg",
        KAMAILIO,
        &run_dir.display().to_string(),
    );
    let mut server = start_farside_with(
        &lab,
        "farside-edge-rtp",
        5060,
        &format!("mode = \"edge\"\nupstream = \"sip:{KAMAILIO}\""),
        "method = \"CRLF\"",
        &format!(
            "[rtp]\nenabled = true\naddress = [\"{primary}\"]\nports = \"40000-40099\"\nng_listen = []\n"
        ),
    );
    assert!(
        server.wait_for_output("S500 RTP relay: media", Duration::from_secs(5)),
        "{server}"
    );
    let call = call_with_audio(&lab, &format!("{primary}:5060"), true);
    assert!(
        call.caller.success(),
        "caller: {}\n{server}\n{kamailio}",
        call.caller
    );
    assert!(
        call.callee.success(),
        "callee: {}\n{server}\n{kamailio}",
        call.callee
    );
    let (at_caller, at_callee) = (pcap_times(&call.at_caller), pcap_times(&call.at_callee));
    let figures = format!(
        "the caller received {}/{RECORDING_PACKETS}, the callee {}/{RECORDING_PACKETS}; longest gaps {:.0} ms and {:.0} ms",
        at_caller.len(),
        at_callee.len(),
        longest_gap_ms(&at_caller),
        longest_gap_ms(&at_callee)
    );
    let enough = RECORDING_PACKETS * 99 / 100;
    assert!(
        at_caller.len() >= enough && at_callee.len() >= enough,
        "{figures}\n{server}\n{kamailio}"
    );
    assert!(
        longest_gap_ms(&at_caller) <= 100.0 && longest_gap_ms(&at_callee) <= 100.0,
        "hold and resume must leave no gap over 100 ms: {figures}"
    );
    assert!(
        server.wait_for_output("S504 call ", Duration::from_secs(5)),
        "{server}"
    );
    common::note(
        TEST,
        &format!("Farside as the edge of Kamailio, relaying: {figures}"),
    );
}

/// `contact_fix` in front of a registrar that keeps no Path: Debian's Kamailio configuration
/// with `use_path` off, told (as such a registrar must be) to send requests for its users
/// through the edge (`$du` after `lookup`). For `"rewrite"` and for `"alias"`, alice behind the
/// symmetric gateway registers through Farside; Kamailio stores her Contact as Farside fixed
/// it (her NAT's address, or `;alias=`), and the call from behind the home gateway comes back
/// from Kamailio to the edge, which sends it where that Contact says, over her flow; 180, 200,
/// ACK, BYE and 200 pass at both phones.
#[test]
fn contact_fix_rewrite_and_alias_deliver_calls_from_a_kamailio_without_path() {
    const TEST: &str = "contact_fix_rewrite_and_alias_deliver_calls_from_a_kamailio_without_path";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "kamailio") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let shipped = std::fs::read_to_string("/etc/kamailio/kamailio.cfg").unwrap();
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let gateway = lab.host("symmetric-lan1").public.unwrap().to_string();
    for (i, fix) in ["rewrite", "alias"].into_iter().enumerate() {
        let edge_port = 5060 + 2 * i as u16;
        let kamailio_addr = format!("127.0.0.1:{}", 5090 + 2 * i as u16);
        let edge = format!("{primary}:{edge_port}");
        let path_off = "modparam(\"registrar\", \"use_path\", 1)";
        let relay_anchor = "\t# when routing via usrloc, log the missed calls also";
        assert!(
            shipped.contains(path_off) && shipped.contains(relay_anchor),
            "Debian's kamailio.cfg changed: the test's edits no longer apply"
        );
        let cfg = shipped
            .replace(path_off, "modparam(\"registrar\", \"use_path\", 0)")
            .replace(
                relay_anchor,
                &format!("\t$du = \"sip:{edge}\";\n{relay_anchor}"),
            );
        let dir = lab.scratch_dir(&format!("kamailio-{fix}"));
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let cfg_path = cfg_path.display().to_string();
        let run_dir = dir.display().to_string();
        let kamailio = start_kamailio(&lab, &cfg_path, &kamailio_addr, &run_dir);
        let server = start_farside_with(
            &lab,
            &format!("farside-edge-{fix}"),
            edge_port,
            &format!(
                "mode = \"edge\"\nupstream = \"sip:{kamailio_addr}\"\ncontact_fix = \"{fix}\""
            ),
            "interval = \"2s\"\nmethod = \"CRLF\"",
            "",
        );
        let reg = lab.exec(
            "symmetric-lan1",
            "sipp",
            &sipp::strs(&sipp::register_open(
                "alice", DOMAIN, &alice_ip, 5070, &edge, 15,
            )),
            Duration::from_secs(30),
        );
        assert!(
            reg.success(),
            "{fix}: register: {reg}\n{server}\n{kamailio}"
        );
        let (callee_out, caller_out) = while_alice_waits(&lab, "symmetric-lan1", &alice_ip, || {
            call_alice(&lab, "home-lan1", &caller_ip, &edge)
        });
        assert!(
            caller_out.success() && callee_out.success(),
            "{fix}: caller: {caller_out}\ncallee: {callee_out}\n{server}\n{kamailio}"
        );
        // The INVITE came back from Kamailio with no Route to the edge (no Path kept) and left
        // to alice's NAT.
        let logs = server.output();
        let delivered = logs.lines().find(|l| {
            l.contains("S404 INVITE sip:alice@")
                && l.contains(&format!("from {kamailio_addr} forwarded to {gateway}:"))
        });
        assert!(
            delivered.is_some(),
            "{fix}: INVITE from Kamailio to alice's NAT\n{logs}"
        );
        let invite = delivered.unwrap().to_string();
        match fix {
            "rewrite" => assert!(
                invite.contains(&format!("sip:alice@{gateway}:")),
                "{invite}"
            ),
            _ => assert!(
                invite.contains(&format!("sip:alice@{alice_ip}:")),
                "{invite}"
            ),
        }
        common::note(TEST, &format!("{fix}: {invite}"));
    }
}

/// baresip's configuration directory for a phone listening on `ip:5070` with one account
/// line (`tests/baresip/config`, and `accounts`).
fn baresip_dir(lab: &Lab, ip: &str, account: &str) -> std::path::PathBuf {
    let dir = lab.scratch_dir("baresip");
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/baresip/config"
    ))
    .unwrap();
    std::fs::write(
        dir.join("config"),
        template
            .replace("@LISTEN@", &format!("{ip}:5070"))
            .replace("@DIR@", &dir.display().to_string()),
    )
    .unwrap();
    std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
    dir
}

/// A real phone: baresip 1.0 from Debian, behind the symmetric gateway, registers with Digest
/// through Farside (its outbound proxy) and answers by itself the call a SIPp phone behind the
/// home gateway makes: 200 with its SDP answer, ACK, the caller's BYE.
#[test]
fn baresip_behind_a_symmetric_nat_registers_and_answers_a_call() {
    const TEST: &str = "baresip_behind_a_symmetric_nat_registers_and_answers_a_call";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "baresip") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let mut server = start_farside(&lab, "farside-baresip", 5060, "method = \"CRLF\"");
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let dir = baresip_dir(
        &lab,
        &alice_ip,
        &format!(
            "<sip:alice@{DOMAIN}>;auth_pass=wonderland;outbound=\"sip:{target}\";regint=600;answermode=auto"
        ),
    );
    let dir_arg = dir.display().to_string();
    let mut phone = lab.spawn("symmetric-lan1", "baresip", &["-f", &dir_arg, "-t", "40"]);
    assert!(
        phone.wait_for_output("200 OK", Duration::from_secs(15)),
        "baresip registers\n{phone}\n{server}"
    );
    assert!(
        server.wait_for_output(
            "S411 sip:alice@example.org registered",
            Duration::from_secs(5)
        ),
        "{server}"
    );
    let caller = call_alice(&lab, "home-lan1", &caller_ip, &target);
    assert!(caller.success(), "caller: {caller}\n{phone}\n{server}");
    assert!(
        phone.wait_for_output("Call established", Duration::from_secs(5)),
        "baresip answered\n{phone}"
    );
    let logs = server.output();
    let registered = logs
        .lines()
        .find(|l| l.contains("S411 sip:alice@example.org registered"))
        .unwrap();
    assert!(registered.contains("private_contact"), "{registered}");
    common::note(
        TEST,
        &format!(
            "baresip registered ({registered}) and answered; INVITE/180/200/ACK/BYE/200 at the caller"
        ),
    );
}

/// Keep-alives by SIP request, in the NAT lab: with `method = "OPTIONS"` and with `"NOTIFY"`
/// (every 2 s, `max_failures = 2`), alice behind the home gateway answers every ping (SIPp)
/// and stays: the call from a phone behind the symmetric gateway reaches her. Bob, behind the
/// other home gateway, registers and then answers nothing: after two missed pings his binding
/// is removed (S409) and a call to him gets 480.
#[test]
fn sip_pings_keep_answering_phones_and_remove_silent_ones() {
    const TEST: &str = "sip_pings_keep_answering_phones_and_remove_silent_ones";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let phone = |host: &str| lab.host(host).addr().to_string();
    let (alice_ip, bob_ip, caller_ip) = (
        phone("home-lan1"),
        phone("home-lan2"),
        phone("symmetric-lan1"),
    );
    for (method, port) in [("OPTIONS", 5060), ("NOTIFY", 5062)] {
        let mut server = start_farside(
            &lab,
            &format!("farside-{method}"),
            port,
            &format!("interval = \"2s\"\nmethod = \"{method}\"\nmax_failures = 2"),
        );
        let target = format!("{primary}:{port}");
        let alice = register_alice(&lab, "home-lan1", &alice_ip, &target);
        assert!(alice.success(), "{method}: alice registers: {alice}");
        let bob = lab.exec(
            "home-lan2",
            "sipp",
            &sipp::strs(&sipp::register(
                "bob", "builder", DOMAIN, &bob_ip, 5070, &target, 15,
            )),
            Duration::from_secs(30),
        );
        assert!(bob.success(), "{method}: bob registers: {bob}");
        let (alice, (to_alice, to_bob)) = thread::scope(|s| {
            let alice = s.spawn(|| {
                lab.exec(
                    "home-lan1",
                    "sipp",
                    &sipp::strs(&sipp::callee_pinged("alice", &alice_ip, 5070, 40)),
                    Duration::from_secs(50),
                )
            });
            // Long enough for alice to answer three pings and for bob to miss two.
            thread::sleep(Duration::from_secs(8));
            let to_bob = lab.exec(
                "symmetric-lan1",
                "sipp",
                &sipp::strs(&sipp::caller_480(
                    "bob", DOMAIN, &caller_ip, 5082, &target, 15,
                )),
                Duration::from_secs(30),
            );
            let to_alice = call_alice(&lab, "symmetric-lan1", &caller_ip, &target);
            (alice.join().unwrap(), (to_alice, to_bob))
        });
        assert!(
            to_alice.success() && alice.success(),
            "{method}: alice answered her pings and the call\ncaller: {to_alice}\nalice: {alice}\n{server}"
        );
        let answered = sipp_count(&alice.stdout, &format!("----------> {method}")).unwrap_or(0);
        assert!(
            answered >= 3,
            "{method}: alice answered {answered} pings\n{alice}"
        );
        assert!(
            to_bob.success(),
            "{method}: the call to silent bob gets 480\n{to_bob}\n{server}"
        );
        assert!(
            server.wait_for_output("S409 sip:bob@example.org", Duration::from_secs(1)),
            "{method}: bob's binding removed\n{server}"
        );
        assert!(
            !server.output().contains("S409 sip:alice@"),
            "{method}: alice kept\n{server}"
        );
        common::note(
            TEST,
            &format!(
                "{method}: alice answered {answered} pings and took the call; bob removed after 2 missed, his call got 480"
            ),
        );
    }
}

/// Seed 004's failure and its cure: behind the gateway whose NAT forgets a UDP binding or an
/// idle TCP connection after 20 s, phones register (three over UDP, two over TCP) and stay
/// silent for 90 s. With keep-alives (CRLF every 10 s over each flow: a datagram, or CRLF CRLF
/// on the connection; and, from a third Farside, the 4-byte UDP ping every 10 s) the calls
/// then reach them; the control, the same phones against a Farside with keep-alives off, never
/// see the INVITE.
#[test]
fn keepalives_keep_a_silent_phone_reachable_behind_a_20_second_nat() {
    const TEST: &str = "keepalives_keep_a_silent_phone_reachable_behind_a_20_second_nat";
    const SILENCE: Duration = Duration::from_secs(90);
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    // Farside A pings, Farside B (the control) does not.
    let pinging = start_farside(
        &lab,
        "farside-keepalive",
        5060,
        "interval = \"10s\"\nmethod = \"CRLF\"",
    );
    let control = start_farside(&lab, "farside-no-keepalive", 5062, "enabled = false");
    let udp4 = start_farside(
        &lab,
        "farside-udp4",
        5064,
        "interval = \"10s\"\nmethod = \"UDP4\"",
    );
    let phone = |host: &str| lab.host(host).addr().to_string();
    // All phones sit behind the short gateway (it has one LAN host): a port each, a binding each.
    let ip = phone("short-lan1");
    let (c1_ip, c2_ip) = (phone("home-lan1"), phone("home-lan2"));
    let (target_a, target_b) = (format!("{primary}:5060"), format!("{primary}:5062"));
    let target_c = format!("{primary}:5064");
    for (target, port) in [(&target_a, 5070), (&target_b, 5072), (&target_c, 5078)] {
        let reg = lab.exec(
            "short-lan1",
            "sipp",
            &sipp::strs(&sipp::register(
                "alice",
                "wonderland",
                DOMAIN,
                &ip,
                port,
                target,
                15,
            )),
            Duration::from_secs(30),
        );
        assert!(reg.success(), "register over UDP to {target}: {reg}");
    }
    let started = Instant::now();
    let tcp_call = |which: &str| format!("tcp-{which}-{}", std::process::id());
    let (a, b, c, ta, tb, call_a, call_b, call_c, call_ta, call_tb) = thread::scope(|s| {
        let answer = |ip: String, port: u16| {
            let lab = &lab;
            s.spawn(move || {
                lab.exec(
                    "short-lan1",
                    "sipp",
                    &sipp::strs(&sipp::callee("alice", &ip, port, 110)),
                    Duration::from_secs(130),
                )
            })
        };
        // Over TCP the phone registers and answers in one run: the connection is its flow.
        let answer_tcp = |ip: String, port: u16, target: String, call_id: String| {
            let lab = &lab;
            s.spawn(move || {
                lab.exec(
                    "short-lan1",
                    "sipp",
                    &sipp::strs(&sipp::register_answer(
                        "bob", "builder", DOMAIN, &ip, port, &target, "t1", &call_id, 125,
                    )),
                    Duration::from_secs(140),
                )
            })
        };
        let a = answer(ip.clone(), 5070);
        let b = answer(ip.clone(), 5072);
        let c = answer(ip.clone(), 5078);
        let ta = answer_tcp(ip.clone(), 5074, target_a.clone(), tcp_call("a"));
        let tb = answer_tcp(ip.clone(), 5076, target_b.clone(), tcp_call("b"));
        thread::sleep(Duration::from_secs(3)); // the TCP phones register
        // Silence: nothing from the phones for longer than the NAT keeps a binding.
        thread::sleep(SILENCE);
        let call = |host: &'static str,
                    ip: String,
                    port: u16,
                    user: &'static str,
                    target: String,
                    call_id: Option<String>| {
            let lab = &lab;
            s.spawn(move || {
                let mut args = sipp::caller(user, DOMAIN, &ip, port, &target, 15);
                if let Some(id) = call_id {
                    args.extend(["-cid_str".to_string(), id]);
                }
                lab.exec(host, "sipp", &sipp::strs(&args), Duration::from_secs(30))
            })
        };
        let call_a = call(
            "home-lan1",
            c1_ip.clone(),
            5080,
            "alice",
            target_a.clone(),
            None,
        );
        let call_b = call(
            "home-lan2",
            c2_ip.clone(),
            5080,
            "alice",
            target_b.clone(),
            None,
        );
        let call_c = call(
            "home-lan1",
            c1_ip.clone(),
            5084,
            "alice",
            target_c.clone(),
            None,
        );
        let call_ta = call(
            "home-lan1",
            c1_ip.clone(),
            5082,
            "bob",
            target_a.clone(),
            Some(tcp_call("a")),
        );
        let call_tb = call(
            "home-lan2",
            c2_ip.clone(),
            5082,
            "bob",
            target_b.clone(),
            Some(tcp_call("b")),
        );
        (
            a.join().unwrap(),
            b.join().unwrap(),
            c.join().unwrap(),
            ta.join().unwrap(),
            tb.join().unwrap(),
            call_a.join().unwrap(),
            call_b.join().unwrap(),
            call_c.join().unwrap(),
            call_ta.join().unwrap(),
            call_tb.join().unwrap(),
        )
    });
    assert!(
        call_a.success() && a.success(),
        "UDP: with keep-alives the call reaches the phone after {SILENCE:?} of silence\ncaller: {call_a}\ncallee: {a}\n{pinging}"
    );
    assert!(
        !b.success() && sipp_count(&b.stdout, "----------> INVITE") == Some(0),
        "UDP: without keep-alives the NAT forgot the binding: no INVITE may arrive (else the control proves nothing)\ncallee: {b}\n{control}"
    );
    assert!(!call_b.success(), "the control's UDP call fails\n{call_b}");
    assert!(
        call_c.success() && c.success(),
        "UDP: with 4-byte pings the call reaches the phone after {SILENCE:?} of silence\ncaller: {call_c}\ncallee: {c}\n{udp4}"
    );
    assert!(
        call_ta.success() && ta.success(),
        "TCP: with CRLF CRLF pings on the connection the call reaches the phone after {SILENCE:?}\ncaller: {call_ta}\ncallee: {ta}\n{pinging}"
    );
    assert!(
        sipp_count(&ta.stdout, "401 <----------") == Some(1),
        "TCP: the phone registered over its connection\n{ta}"
    );
    assert!(
        // (register-answer starts as a client: SIPp draws a received INVITE the other way.)
        !tb.success() && sipp_count(&tb.stdout, "INVITE <----------") == Some(0),
        "TCP: without keep-alives the NAT forgot the connection: no INVITE may arrive\ncallee: {tb}\n{control}"
    );
    assert!(
        sipp_count(&tb.stdout, "200 <----------") == Some(1),
        "TCP control: the phone did register\n{tb}"
    );
    assert!(
        !call_tb.success(),
        "the control's TCP call fails\n{call_tb}"
    );
    common::note(
        TEST,
        &format!(
            "{SILENCE:?} of silence behind the 20 s NAT: with CRLF keep-alives every 10 s the UDP and the TCP call arrived, with 4-byte UDP pings the UDP call too, without none did ({:?} in all)",
            started.elapsed()
        ),
    );
}

/// RTP arriving at a phone's media port, captured by tcpdump in the phone's namespace.
struct Capture {
    tcpdump: LabChild,
    file: std::path::PathBuf,
}

/// Starts capturing UDP to `ip:port` on `host`; returns once tcpdump listens.
fn capture(lab: &Lab, host: &str, ip: &str, port: u16) -> Capture {
    let filter = format!("udp and dst host {ip} and dst port {port}");
    capture_filtered(lab, host, &filter, &format!("{ip}-{port}"))
}

/// Starts capturing what `filter` (tcpdump's) matches on `host`, into a file named by `what`.
fn capture_filtered(lab: &Lab, host: &str, filter: &str, what: &str) -> Capture {
    let file = lab.scratch_dir(&format!("capture-{what}")).join("rtp.pcap");
    let path = file.display().to_string();
    let mut tcpdump = lab.spawn(
        host,
        "tcpdump",
        &["-i", "any", "-n", "-U", "-w", &path, filter],
    );
    assert!(
        tcpdump.wait_for_output("listening on", Duration::from_secs(10)),
        "{tcpdump}"
    );
    Capture { tcpdump, file }
}

impl Capture {
    /// Stops the capture: the pcap file's bytes.
    fn stop(mut self) -> Vec<u8> {
        self.tcpdump.interrupt(Duration::from_secs(5));
        std::fs::read(&self.file).unwrap_or_default()
    }
}

/// The timestamps of a pcap file's records (microsecond or nanosecond format, either byte
/// order); a truncated last record is left out.
fn pcap_times(b: &[u8]) -> Vec<f64> {
    let Some(magic) = b.get(..4) else {
        return Vec::new();
    };
    let (le, scale) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, 1e-6),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, 1e-6),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, 1e-9),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, 1e-9),
        _ => return Vec::new(),
    };
    let word = |at: usize| -> Option<u32> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let mut times = Vec::new();
    let mut at = 24;
    while let (Some(secs), Some(frac), Some(len)) = (word(at), word(at + 4), word(at + 8)) {
        let end = at + 16 + len as usize;
        if end > b.len() {
            break;
        }
        times.push(f64::from(secs) + f64::from(frac) * scale);
        at = end;
    }
    times
}

/// The longest time between two packets in a row, in milliseconds.
fn longest_gap_ms(times: &[f64]) -> f64 {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max)
}

/// RTP packets in SIPp's recording (`/usr/share/sip-tester/g711a.pcap`), which each phone plays.
const RECORDING_PACKETS: usize = 236;

/// What one call with audio showed: each SIPp run, and what reached each phone's media port
/// (pcap files).
struct AudioCall {
    caller: natlab::Output,
    callee: natlab::Output,
    at_caller: Vec<u8>,
    at_callee: Vec<u8>,
}

/// Alice behind the SIP-ALG gateway registers (with Digest, or with `open`, without) and
/// answers; a phone behind the symmetric gateway calls her; each plays the recording and
/// captures what reaches its media port (6000).
fn call_with_audio(lab: &Lab, target: &str, open: bool) -> AudioCall {
    let alice_ip = lab.host("alg-lan1").addr().to_string();
    let caller_ip = lab.host("symmetric-lan1").addr().to_string();
    let reg = if open {
        lab.exec(
            "alg-lan1",
            "sipp",
            &sipp::strs(&sipp::register_open(
                "alice", DOMAIN, &alice_ip, 5070, target, 15,
            )),
            Duration::from_secs(30),
        )
    } else {
        register_alice(lab, "alg-lan1", &alice_ip, target)
    };
    assert!(reg.success(), "register: {reg}");
    let at_callee = capture(lab, "alg-lan1", &alice_ip, 6000);
    let at_caller = capture(lab, "symmetric-lan1", &caller_ip, 6000);
    let (callee, caller) = thread::scope(|s| {
        let callee = s.spawn(|| {
            lab.exec(
                "alg-lan1",
                "sipp",
                &sipp::strs(&sipp::callee_with_audio(
                    "callee-media",
                    ("alice", &alice_ip, 5070),
                    6000,
                    30,
                )),
                Duration::from_secs(40),
            )
        });
        thread::sleep(Duration::from_millis(500));
        let caller = lab.exec(
            "symmetric-lan1",
            "sipp",
            &sipp::strs(&sipp::caller_media(
                ("alice", DOMAIN),
                &caller_ip,
                5080,
                6000,
                target,
                30,
            )),
            Duration::from_secs(40),
        );
        (callee.join().unwrap(), caller)
    });
    AudioCall {
        caller,
        callee,
        at_caller: at_caller.stop(),
        at_callee: at_callee.stop(),
    }
}

/// Issue 14's acceptance: a phone behind the symmetric gateway calls one behind the SIP-ALG
/// gateway through Farside, each playing SIPp's G.711 recording. With the relay (`[rtp]`, the
/// default `relay = "nated"`) both hear at least 99 % of it, and the caller's hold and resume
/// (re-INVITEs while the audio plays) leave no gap over 100 ms at either phone. The control,
/// the same call with `relay = "never"`, shows why: the phones' SDP names private addresses (or
/// what the ALG made of them), and at least one direction gets nothing.
///
/// Meanwhile an attacker on the public peer host sprays marked RTP at every relay port, from
/// before the call until after it (RTP Bleed and RTP Inject, CVE-2025-53399): it receives
/// nothing, and no marked packet reaches either phone.
#[test]
fn a_call_between_a_symmetric_nat_and_a_sip_alg_has_audio_both_ways_through_hold_and_resume() {
    const TEST: &str =
        "a_call_between_a_symmetric_nat_and_a_sip_alg_has_audio_both_ways_through_hold_and_resume";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "tcpdump") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let target = format!("{primary}:5060");
    let Some(python) = common::require_python_module(TEST, "socket") else {
        return;
    };
    let spray = format!(
        "{}/../../tests/python/rtp_spray.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut figures = Vec::new();
    for relay in ["nated", "never"] {
        let mut server = start_farside_with(
            &lab,
            &format!("farside-rtp-{relay}"),
            5060,
            "",
            "method = \"CRLF\"",
            &format!(
                "[rtp]\nenabled = true\naddress = [\"{primary}\"]\nports = \"40000-40099\"\nng_listen = []\nrelay = \"{relay}\"\n"
            ),
        );
        assert!(
            server.wait_for_output("S500 RTP relay: media", Duration::from_secs(5)),
            "{server}"
        );
        let (call, attack) = thread::scope(|s| {
            let attacker = (relay == "nated").then(|| {
                s.spawn(|| {
                    lab.exec(
                        "peer",
                        &python,
                        &[&spray, &primary.to_string(), "40000", "40099", "17", "20"],
                        Duration::from_secs(30),
                    )
                })
            });
            thread::sleep(Duration::from_secs(1));
            let call = call_with_audio(&lab, &target, false);
            (call, attacker.map(|a| a.join().unwrap()))
        });
        assert!(call.caller.success(), "caller: {}\n{server}", call.caller);
        assert!(call.callee.success(), "callee: {}\n{server}", call.callee);
        let (at_caller, at_callee) = (pcap_times(&call.at_caller), pcap_times(&call.at_callee));
        let (to_caller, to_callee) = (at_caller.len(), at_callee.len());
        let gaps = (longest_gap_ms(&at_caller), longest_gap_ms(&at_callee));
        figures.push(format!(
            "relay = {relay}: the caller received {to_caller}/{RECORDING_PACKETS}, the callee {to_callee}/{RECORDING_PACKETS}; longest gaps {:.0} ms and {:.0} ms",
            gaps.0, gaps.1
        ));
        if relay == "nated" {
            let enough = RECORDING_PACKETS * 99 / 100;
            assert!(
                to_caller >= enough && to_callee >= enough,
                "{}\n{server}",
                figures.join("\n")
            );
            assert!(
                gaps.0 <= 100.0 && gaps.1 <= 100.0,
                "hold and resume must leave no gap over 100 ms: {}",
                figures.join("\n")
            );
            // Farside relayed it: the offer and the two re-INVITEs' offers, and each answer,
            // rewritten; the call deleted by the BYE.
            assert!(
                server.wait_for_output("S504 call ", Duration::from_secs(5)),
                "{server}"
            );
            let logs = server.output();
            let handed = |what: &str| {
                logs.lines()
                    .filter(|l| l.contains("S415") && l.contains(what))
                    .count()
            };
            // (A retransmission is handed again, and gets the same SDP.)
            assert!(
                handed("SDP offer from 198.51.100.12") >= 3
                    && handed("SDP answer from 198.51.100.16") >= 3,
                "{server}"
            );
            assert_eq!(handed("passed as it came"), 0, "{server}");
            // The call is reported with the ALG at its callee's side only (S425, the API's
            // `alg_calls`): the caller is behind the symmetric NAT, without ALG.
            let on_call: Vec<&str> = logs.lines().filter(|l| l.contains("S425 call ")).collect();
            assert!(
                on_call.len() == 1
                    && on_call[0].contains("SIP ALG suspected at the callee 198.51.100.16:"),
                "{on_call:?}\n{server}"
            );
            figures.push(format!("reported per call: {}", on_call[0]));
            let attack = attack.unwrap();
            assert!(attack.success(), "attacker: {attack}");
            let json = attack.stdout.trim();
            let report: serde_json::Value = serde_json::from_str(json).unwrap();
            let count = |key: &str| report[key].as_u64().unwrap();
            let injected = |pcap: &[u8]| pcap.windows(15).any(|w| w == b"RTP-BLEED-PROBE");
            assert!(
                count("sent") > 10_000 && count("received") == 0,
                "the attacker got media: {json}"
            );
            assert!(
                !injected(&call.at_caller) && !injected(&call.at_callee),
                "an attacker's packet reached a phone"
            );
            figures.push(format!(
                "the attacker sent {} packets to the relay ports before, during and after the call and received {}; none reached a phone",
                count("sent"),
                count("received")
            ));
        } else {
            assert!(!server.output().contains("S415"), "{server}");
            assert!(
                to_caller < RECORDING_PACKETS / 2 || to_callee < RECORDING_PACKETS / 2,
                "without the relay one direction at least must fail: {}",
                figures.join("\n")
            );
        }
        drop(server);
    }
    common::note(TEST, &figures.join("; "));
}

/// A real phone calls with audio: baresip behind the symmetric gateway (a 440 Hz tone as its
/// microphone, G.711) dials a SIPp phone behind the home gateway through Farside, which relays
/// the call; the SIPp phone answers, plays its recording and hangs up. Each side hears the
/// other: at least 99 % of what baresip sent reaches the SIPp phone, and of the recording
/// baresip gets at least 99 %.
#[test]
fn baresip_behind_a_symmetric_nat_calls_a_sipp_phone_with_audio_both_ways() {
    const TEST: &str = "baresip_behind_a_symmetric_nat_calls_a_sipp_phone_with_audio_both_ways";
    if !common::require_tool(TEST, "sipp")
        || !common::require_tool(TEST, "baresip")
        || !common::require_tool(TEST, "tcpdump")
    {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let server = start_farside_with(
        &lab,
        "farside-baresip-audio",
        5060,
        "",
        "method = \"CRLF\"",
        &format!(
            "[rtp]\nenabled = true\naddress = [\"{primary}\"]\nports = \"40000-40099\"\nng_listen = []\n"
        ),
    );
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("home-lan1").addr().to_string();
    let bob_ip = lab.host("symmetric-lan1").addr().to_string();
    let reg = register_alice(&lab, "home-lan1", &alice_ip, &target);
    assert!(reg.success(), "register: {reg}\n{server}");

    // bob's baresip, which dials alice as soon as it starts.
    let dir = baresip_dir(
        &lab,
        &bob_ip,
        &format!("<sip:bob@{DOMAIN}>;auth_pass=builder;outbound=\"sip:{target}\";regint=600"),
    );
    let at_alice = capture(&lab, "home-lan1", &alice_ip, 6000);
    // What baresip sends (PCMA, 20 ms: 180-byte UDP datagrams) and what reaches it.
    let sent_by_bob = capture_filtered(
        &lab,
        "symmetric-lan1",
        &format!("udp and src host {bob_ip} and udp[4:2] = 180"),
        "bob-sent",
    );
    let at_bob = capture_filtered(
        &lab,
        "symmetric-lan1",
        &format!("udp and dst host {bob_ip} and not port 5070"),
        "bob-heard",
    );
    let (alice, mut phone) = thread::scope(|s| {
        let alice = s.spawn(|| {
            lab.exec(
                "home-lan1",
                "sipp",
                &sipp::strs(&sipp::callee_with_audio(
                    "callee-hangs-up",
                    ("alice", &alice_ip, 5070),
                    6000,
                    30,
                )),
                Duration::from_secs(40),
            )
        });
        thread::sleep(Duration::from_millis(500));
        let dir_arg = dir.display().to_string();
        let dial = format!("/dial sip:alice@{DOMAIN}");
        let phone = lab.spawn(
            "symmetric-lan1",
            "baresip",
            &["-f", &dir_arg, "-e", &dial, "-t", "30"],
        );
        (alice.join().unwrap(), phone)
    });
    assert!(alice.success(), "alice: {alice}\n{phone}\n{server}");
    assert!(
        phone.wait_for_output("Call established", Duration::from_secs(1)),
        "baresip's call\n{phone}"
    );
    thread::sleep(Duration::from_millis(500));
    let heard_by_alice = pcap_times(&at_alice.stop()).len();
    let sent = pcap_times(&sent_by_bob.stop()).len();
    let heard_by_bob = pcap_times(&at_bob.stop()).len();
    phone.interrupt(Duration::from_secs(2));
    let figures = format!(
        "baresip sent {sent} RTP packets and SIPp received {heard_by_alice}; SIPp played {RECORDING_PACKETS} and baresip received {heard_by_bob}"
    );
    assert!(
        sent > 300 && heard_by_alice * 100 >= sent * 99,
        "{figures}\n{phone}\n{server}"
    );
    assert!(
        heard_by_bob * 100 >= RECORDING_PACKETS * 99,
        "{figures}\n{phone}\n{server}"
    );
    assert!(
        server.output().contains("S415"),
        "Farside relayed the call\n{server}"
    );
    common::note(TEST, &figures);
}

/// Farside as the rtpengine of a stock Kamailio: Debian's `/etc/kamailio/kamailio.cfg` as
/// shipped, run with `WITH_NAT` and `WITH_RTPENGINE` (nathelper, and `rtpengine_manage` with the
/// stock flags on Farside's default ng socket, `udp:127.0.0.1:2223`). The same call as above,
/// symmetric NAT to SIP ALG with hold and resume, has audio both ways, and an ng `query` in the
/// middle of the call shows both parties' streams counting.
#[test]
fn a_stock_kamailio_with_its_rtpengine_module_relays_the_lab_call_through_farside() {
    const TEST: &str =
        "a_stock_kamailio_with_its_rtpengine_module_relays_the_lab_call_through_farside";
    for tool in ["sipp", "kamailio", "tcpdump"] {
        if !common::require_tool(TEST, tool) {
            return;
        }
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    // Farside: the relay only (Kamailio holds the SIP port), ng on its default socket.
    let config = lab.farside_config("farside-rtpengine", |dir| {
        common::only_named_parts(&format!(
            "[stun]\nlisten = [\"{primary}:3478\"]\n\n[sip]\nenabled = false\n\n[rtp]\nenabled = true\naddress = [\"{primary}\"]\nports = \"40000-40099\"\n\n[admin]\nlisten = \"off\"\n\n[log]\nlevel = \"debug\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            dir.join("farside.db").display()
        ))
    });
    let mut server = lab.serve_farside(&config);
    assert!(
        server.wait_for_output(
            "S500 RTP relay: ng control on udp 127.0.0.1:2223",
            Duration::from_secs(15)
        ),
        "{server}"
    );
    let run_dir = lab.scratch_dir("kamailio").display().to_string();
    let mut kamailio = start_kamailio_with(
        &lab,
        "/etc/kamailio/kamailio.cfg",
        &format!("{primary}:5060"),
        &run_dir,
        &["WITH_NAT", "WITH_RTPENGINE"],
    );
    assert!(
        kamailio.wait_for_output(
            "rtpengine instance <udp:127.0.0.1:2223> found, support for it enabled",
            Duration::from_secs(10)
        ),
        "{kamailio}"
    );
    let Some(python) = common::require_python_module(TEST, "socket") else {
        return;
    };
    let script = format!(
        "{}/../../tests/python/ng_query.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let target = format!("{primary}:5060");
    let (call, query) = thread::scope(|s| {
        // Seven seconds in: alice has registered, and the call is up and playing.
        let query = s.spawn(|| {
            lab.exec(
                "server",
                &python,
                &[&script, "127.0.0.1", "2223", "7"],
                Duration::from_secs(20),
            )
        });
        let call = call_with_audio(&lab, &target, true);
        (call, query.join().unwrap())
    });
    assert!(
        call.caller.success(),
        "caller: {}\n{kamailio}\n{server}",
        call.caller
    );
    assert!(
        call.callee.success(),
        "callee: {}\n{kamailio}\n{server}",
        call.callee
    );
    let (to_caller, to_callee) = (
        pcap_times(&call.at_caller).len(),
        pcap_times(&call.at_callee).len(),
    );
    let enough = RECORDING_PACKETS * 99 / 100;
    assert!(
        to_caller >= enough && to_callee >= enough,
        "the caller received {to_caller}, the callee {to_callee} of {RECORDING_PACKETS}\n{kamailio}\n{server}"
    );
    assert!(query.success(), "query: {query}\n{server}");
    // {"calls": {"<call-id>": {"<tag>": [[rtp, rtcp]], "<tag>": [[rtp, rtcp]]}}}: two parties,
    // each with RTP counted.
    let json = query.stdout.trim().to_string();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Each party's first stream's RTP packets.
    let rtp_counts: Vec<u64> = report["calls"]
        .as_object()
        .into_iter()
        .flat_map(|calls| calls.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|parties| parties.values())
        .filter_map(|streams| streams[0][0].as_u64())
        .collect();
    assert!(
        rtp_counts.len() == 2 && rtp_counts.iter().all(|&n| n > 50),
        "query mid-call: {json}\n{server}"
    );
    common::note(
        TEST,
        &format!(
            "the caller received {to_caller}/{RECORDING_PACKETS}, the callee {to_callee}/{RECORDING_PACKETS}; ng query mid-call: {json}"
        ),
    );
}

/// SIPp alice on `host` registers over TCP from `ip:5070` at `target` with Contact `contact`,
/// and `server` logs it.
fn register_alice_over_tcp(
    lab: &Lab,
    server: &mut LabChild,
    host: &str,
    (ip, target): (&str, &str),
    contact: &str,
) {
    let reg = lab.exec(
        host,
        "sipp",
        &sipp::strs(&sipp::over_tcp(sipp::register_contact(
            "alice",
            "wonderland",
            DOMAIN,
            ip,
            5070,
            target,
            contact,
            15,
        ))),
        Duration::from_secs(30),
    );
    assert!(reg.success(), "register over TCP: {reg}\n{server}");
    assert!(
        server.wait_for_output("registered from tcp", Duration::from_secs(5)),
        "{server}"
    );
}

/// A port forward on `router`: TCP `port` on its public address to `to_ip`, the same port (as
/// offices set up for a phone or a PBX).
fn forward_tcp(lab: &Lab, router: &str, port: u16, to_ip: &str) {
    let chain = format!("forward{port}");
    let add_chain = [
        "add",
        "chain",
        "ip",
        "natlab",
        &chain,
        "{ type nat hook prerouting priority dstnat; policy accept; }",
    ];
    let added = lab.exec(router, "nft", &add_chain, Duration::from_secs(5));
    assert!(added.success(), "{added}");
    let (port, to) = (port.to_string(), format!("{to_ip}:{port}"));
    let rule = [
        "add", "rule", "ip", "natlab", &chain, "iifname", "wan", "tcp", "dport", &port, "dnat",
        "ip", "to", &to,
    ];
    let added = lab.exec(router, "nft", &rule, Duration::from_secs(5));
    assert!(added.success(), "{added}");
}

/// Alice behind the home gateway, whose router forwards TCP port 5070 to her phone (as offices
/// do for a phone or PBX), registers over TCP with that public address in her Contact, and her
/// connection closes (SIPp exits, as a NAT's timeout or a phone's restart would close it). A
/// call for her cannot go over her flow, so Farside dials her Contact (RFC 3261 §18.1.1), and
/// the call goes through over the new connection: INVITE, 180, 200, ACK, BYE, 200.
#[test]
fn a_tcp_phone_whose_connection_closed_is_dialled_at_its_contact() {
    const TEST: &str = "a_tcp_phone_whose_connection_closed_is_dialled_at_its_contact";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let mut server = start_farside(&lab, "farside-dial", 5060, "enabled = false");
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("home-lan1").addr().to_string();
    let public = lab.host("home").addr().to_string();
    let caller_ip = lab.host("symmetric-lan1").addr().to_string();
    forward_tcp(&lab, "home", 5070, &alice_ip);
    let contact = format!("<sip:alice@{public}:5070;transport=tcp>");
    register_alice_over_tcp(
        &lab,
        &mut server,
        "home-lan1",
        (&alice_ip, &target),
        &contact,
    );
    let (callee, caller) = thread::scope(|s| {
        let callee = s.spawn(|| {
            lab.exec(
                "home-lan1",
                "sipp",
                &sipp::strs(&sipp::over_tcp(sipp::callee("alice", &alice_ip, 5070, 25))),
                Duration::from_secs(40),
            )
        });
        thread::sleep(Duration::from_millis(500));
        let caller = call_alice(&lab, "symmetric-lan1", &caller_ip, &target);
        (callee.join().unwrap(), caller)
    });
    assert!(caller.success(), "caller: {caller}\n{server}");
    assert!(callee.success(), "callee: {callee}\n{server}");
    let logs = server.output();
    assert!(
        logs.contains(&format!(
            "dialling its Contact sip:alice@{public}:5070;transport=tcp"
        )),
        "{server}"
    );
    assert!(
        logs.contains(&format!("S419 SIP tcp connection to {public}:5070 opened")),
        "{server}"
    );
    common::note(
        TEST,
        &format!(
            "registered over TCP, connection closed; Farside dialled {public}:5070 (the port forward) and INVITE/180/200/ACK/BYE/200 passed"
        ),
    );
}

/// Alice behind the home gateway, whose router forwards TCP port 5071 to her phone, registers
/// over TLS (an OpenSSL phone, `tests/tls_phone.py`) with that public address in a TLS Contact,
/// and her connection closes. A call for her is dialled over TLS (RFC 3261 §18.1.1) and her
/// certificate checked as `sip.tls_verify` (on by default) and `sip.tls_ca` say:
/// - a certificate from the lab's CA (`tls_ca`) naming the router's public address is
///   accepted, and the call completes: INVITE, 180, 200, ACK, BYE, 200;
/// - one from another CA, and one from the lab's CA for another address, are refused in the
///   handshake (S421: `UnknownIssuer`, `not valid for name`) and the caller gets 480;
/// - with `tls_verify = false` (a second server) the other CA's is taken and the call
///   completes.
#[test]
fn a_tls_phone_whose_connection_closed_is_dialled_and_its_certificate_checked() {
    const TEST: &str = "a_tls_phone_whose_connection_closed_is_dialled_and_its_certificate_checked";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "openssl") {
        return;
    }
    let Some(python) = common::require_python_module(TEST, "ssl") else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let alice_ip = lab.host("home-lan1").addr().to_string();
    let public = lab.host("home").addr().to_string();
    let caller_ip = lab.host("symmetric-lan1").addr().to_string();
    forward_tcp(&lab, "home", 5071, &alice_ip);
    // Farside's own certificate (the phone checks it), the lab's CA and alice's certificate
    // from it, and a self-signed one for the same address.
    let (server_cert, server_key) =
        common::self_signed(&lab.scratch_dir("server-cert"), &primary.to_string());
    let lab_ca = lab.scratch_dir("lab-ca");
    let (ca, signed_cert, signed_key) = common::ca_signed(&lab_ca, &public);
    // Not accepted: alice's address from another CA, and the lab CA's for another address.
    let (_, rogue_cert, rogue_key) = common::ca_signed(&lab.scratch_dir("rogue-ca"), &public);
    let (_, elsewhere_cert, elsewhere_key) = common::ca_signed(&lab_ca, "192.0.2.99");
    let tables = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        server_cert.display(),
        server_key.display()
    );
    let start = |name: &str, port: u16, verify: &str| {
        start_farside_with(
            &lab,
            name,
            port,
            &format!(
                "listen = [\"udp:{primary}:{port}\", \"tls:{primary}:{}\"]\ntls_ca = \"{}\"\n{verify}",
                port + 1,
                ca.display()
            ),
            "enabled = false",
            &tables,
        )
    };
    // alice's phone: registers at `port + 1` over TLS, closes, and serves `cert` on 5071.
    let phone = |port: u16, cert: &std::path::Path, key: &std::path::Path| {
        let mut phone = lab.spawn(
            "home-lan1",
            &python,
            &[
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/tls_phone.py"),
                &format!("{primary}:{}", port + 1),
                "alice",
                "wonderland",
                DOMAIN,
                &format!("{public}:5071"),
                &format!("{alice_ip}:5071"),
                &cert.display().to_string(),
                &key.display().to_string(),
                &server_cert.display().to_string(),
                "30",
            ],
        );
        assert!(
            phone.wait_for_output("LISTENING", Duration::from_secs(15)),
            "the phone registers over TLS\n{phone}"
        );
        phone
    };

    let mut server = start("farside-tls-dial", 5060, "");
    let target = format!("{primary}:5060");
    let mut trusted = phone(5060, &signed_cert, &signed_key);
    let call = call_alice(&lab, "symmetric-lan1", &caller_ip, &target);
    assert!(call.success(), "caller: {call}\n{trusted}\n{server}");
    assert!(
        trusted.wait_for_output("CALL DONE", Duration::from_secs(10)),
        "{trusted}\n{server}"
    );
    assert!(
        server.wait_for_output(
            &format!("S419 SIP tls connection to {public}:5071 opened"),
            Duration::from_secs(1)
        ),
        "{server}"
    );
    drop(trusted);

    // Refused in the handshake, each for its reason; the caller gets 480.
    let mut refusals = Vec::new();
    for (cert, key, reason) in [
        (&rogue_cert, &rogue_key, "UnknownIssuer"),
        (&elsewhere_cert, &elsewhere_key, "not valid for name"),
    ] {
        let untrusted = phone(5060, cert, key);
        let refused = lab.exec(
            "symmetric-lan1",
            "sipp",
            &sipp::strs(&sipp::caller_480(
                "alice", DOMAIN, &caller_ip, 5080, &target, 20,
            )),
            Duration::from_secs(40),
        );
        assert!(
            refused.success(),
            "caller expecting 480 ({reason}): {refused}\n{untrusted}\n{server}"
        );
        let logged = format!("S421 SIP tls connection to {public}:5071 failed its handshake");
        let line = server
            .output()
            .lines()
            .rev()
            .find(|l| l.contains(&logged))
            .unwrap_or_default()
            .to_string();
        assert!(line.contains(reason), "{reason}\n{server}");
        refusals.push(
            line.split("handshake: ")
                .nth(1)
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }

    let lenient = start("farside-tls-dial-any", 5160, "tls_verify = false");
    let mut taken = phone(5160, &rogue_cert, &rogue_key);
    let call = call_alice(
        &lab,
        "symmetric-lan1",
        &caller_ip,
        &format!("{primary}:5160"),
    );
    assert!(call.success(), "caller: {call}\n{taken}\n{lenient}");
    assert!(
        taken.wait_for_output("CALL DONE", Duration::from_secs(10)),
        "{taken}\n{lenient}"
    );
    common::note(
        TEST,
        &format!(
            "dialled {public}:5071 over TLS: the lab CA's certificate accepted and the call completed; another CA's and one for another address refused ({refusals:?}) and the caller got 480 each time; with tls_verify = false another CA's was taken and the call completed"
        ),
    );
}

/// Alice behind the symmetric gateway registers an RFC 5626 outbound flow over TCP
/// (`+sip.instance`, `reg-id`, `;ob`), confirmed with `Require: outbound`; then the flow
/// closes. A call for her gets 430 Flow Failed at once (RFC 5626 §5.3): her flow is the only
/// way to her, and nothing is dialled; she is to register a new one.
#[test]
fn a_call_over_an_outbound_flow_that_closed_gets_430() {
    const TEST: &str = "a_call_over_an_outbound_flow_that_closed_gets_430";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let mut server = start_farside(&lab, "farside-430", 5060, "enabled = false");
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let contact = format!(
        "<sip:alice@{alice_ip}:5070;transport=tcp;ob>;+sip.instance=\"<urn:uuid:8c7d0d4e-98a5-4b43-9d2f-3c1c8c2a5e01>\";reg-id=1"
    );
    register_alice_over_tcp(
        &lab,
        &mut server,
        "symmetric-lan1",
        (&alice_ip, &target),
        &contact,
    );
    let started = Instant::now();
    let caller = lab.exec(
        "home-lan1",
        "sipp",
        &sipp::strs(&sipp::caller_430(
            "alice", DOMAIN, &caller_ip, 5080, &target, 20,
        )),
        Duration::from_secs(30),
    );
    assert!(caller.success(), "caller: {caller}\n{server}");
    assert!(
        !server.output().contains("dialling its Contact"),
        "an outbound flow is not dialled\n{server}"
    );
    common::note(
        TEST,
        &format!(
            "outbound flow over TCP closed; the caller got 430 Flow Failed in {:?}",
            started.elapsed()
        ),
    );
}

/// A real RFC 5626 client: baresip with an `outbound` account over TCP, behind the short
/// gateway (whose netfilter forgets an idle TCP connection after 20 s). Farside pings nobody
/// (`[sip.keepalive] enabled = false`) and tells the phone `Flow-Timer: 10` with `Require:
/// outbound`; after 45 s of silence a call still reaches the phone, so the phone's own CRLF
/// keep-alives kept its flow. Then the gateway loses the flow (every packet of that connection
/// vanishes, as when a NAT reboots): the phone's keep-alives go unanswered, it registers a new
/// flow (RFC 5626 §4.4.1), and the next call reaches it over that one.
#[test]
fn baresip_outbound_over_tcp_keeps_its_flow_and_registers_a_new_one_when_the_nat_loses_it() {
    baresip_outbound_keeps_its_flow(
        "baresip_outbound_over_tcp_keeps_its_flow_and_registers_a_new_one_when_the_nat_loses_it",
        "tcp",
    );
}

/// The same over TLS: baresip checks Farside's certificate, its CRLF keep-alives and the
/// new flow after the loss run inside TLS.
#[test]
fn baresip_outbound_over_tls_keeps_its_flow_and_registers_a_new_one_when_the_nat_loses_it() {
    baresip_outbound_keeps_its_flow(
        "baresip_outbound_over_tls_keeps_its_flow_and_registers_a_new_one_when_the_nat_loses_it",
        "tls",
    );
}

/// The outbound scenario above over `transport` (`"tcp"` or `"tls"`).
fn baresip_outbound_keeps_its_flow(test: &str, transport: &str) {
    if !common::require_tool(test, "sipp") || !common::require_tool(test, "baresip") {
        return;
    }
    let Some(lab) = Lab::up(test) else { return };
    let (primary, _) = lab.server_addrs();
    let certs = lab.scratch_dir("certs");
    let (cert, key) = common::self_signed(&certs, &primary.to_string());
    // The phone's transport on 5061, UDP on 5060 for the caller.
    let mut server = start_farside_with(
        &lab,
        "farside-outbound",
        5060,
        &format!("listen = [\"udp:{primary}:5060\", \"{transport}:{primary}:5061\"]"),
        "enabled = false\ninterval = \"10s\"",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let target = format!("{primary}:5060");
    let alice_ip = lab.host("short-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let dir = baresip_dir(
        &lab,
        &alice_ip,
        &format!(
            "<sip:alice@{DOMAIN};transport={transport}>;auth_pass=wonderland;outbound=\"sip:{primary}:5061;transport={transport}\";sipnat=outbound;regint=600;answermode=auto"
        ),
    );
    if transport == "tls" {
        // baresip checks Farside's certificate.
        let config = std::fs::read_to_string(dir.join("config")).unwrap();
        std::fs::write(
            dir.join("config"),
            format!(
                "{}sip_cafile {}\n",
                config.replace("sip_trans_def udp", "sip_trans_def tls"),
                cert.display()
            ),
        )
        .unwrap();
    }
    let dir_arg = dir.display().to_string();
    let phone = lab.spawn("short-lan1", "baresip", &["-f", &dir_arg, "-t", "260"]);
    let from = format!("registered from {transport} ");
    assert!(
        server.wait_for_output(&from, Duration::from_secs(15)),
        "baresip registers over {transport}\n{phone}\n{server}"
    );
    let registered = server
        .output()
        .lines()
        .find(|l| l.contains("S411 sip:alice@example.org registered"))
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_secs(45));
    let first = call_alice(&lab, "home-lan1", &caller_ip, &target);
    assert!(
        first.success(),
        "a call after 45 s of silence: {first}\n{phone}\n{server}"
    );
    // The NAT loses the flow: every packet of that connection (its mapping's public port, as
    // Farside saw it) vanishes from now on, as when a NAT reboots or reuses the binding; new
    // connections pass.
    let old_port: String = registered
        .split(&from)
        .nth(1)
        .and_then(|r| r.split(':').nth(1))
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let rule = [
        "insert",
        "rule",
        "ip",
        "natlab",
        "forward",
        "meta",
        "l4proto",
        "tcp",
        "ct",
        "reply",
        "proto-dst",
        &old_port,
        "drop",
    ];
    let added = lab.exec("short", "nft", &rule, Duration::from_secs(5));
    assert!(added.success(), "{added}");
    let dropped = Instant::now();
    // A registration of a new flow: another public port, a binding.
    let new_flow = |server: &LabChild| {
        server.output().lines().any(|l| {
            l.contains(&format!("S411 sip:alice@example.org {from}"))
                && !l.contains(&format!(":{old_port}: "))
                && l.contains(": 1 bindings")
        })
    };
    assert!(
        common::wait_until(Duration::from_secs(150), || new_flow(&server)),
        "baresip registers a new flow\n{phone}\n{server}"
    );
    let took = dropped.elapsed();
    let second = call_alice(&lab, "home-lan1", &caller_ip, &target);
    assert!(
        second.success(),
        "a call over the new flow: {second}\n{phone}\n{server}"
    );
    common::note(
        test,
        &format!(
            "{registered}; a call after 45 s of silence reached it; the NAT lost its flow and it registered a new one {took:?} later; the next call reached it"
        ),
    );
}

/// Keep-alives over TLS and WebSocket, across the short gateway (its netfilter forgets an idle
/// connection after 20 s): baresip registered over TLS and a browser-like phone
/// (`tests/ws_phone.py`, which answers CRLF CRLF with CRLF) over WebSocket, both silent for 45
/// s while Farside sends CRLF CRLF over their connections every 10 s; then each is called and
/// answers, over the connection it registered on.
#[test]
fn keepalives_over_tls_and_websocket_keep_phones_reachable_behind_a_20_second_nat() {
    const TEST: &str =
        "keepalives_over_tls_and_websocket_keep_phones_reachable_behind_a_20_second_nat";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "baresip") {
        return;
    }
    let Some(python) = common::require_python_module(TEST, "websockets") else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let certs = lab.scratch_dir("certs");
    let (cert, key) = common::self_signed(&certs, &primary.to_string());
    let mut server = start_farside_with(
        &lab,
        "farside-tls-ws",
        5060,
        &format!(
            "listen = [\"udp:{primary}:5060\", \"tls:{primary}:5061\", \"ws:{primary}:5062\"]"
        ),
        "interval = \"10s\"\nmethod = \"CRLF\"",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let target = format!("{primary}:5060");
    let phone_ip = lab.host("short-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    // alice: baresip over TLS, verifying Farside's certificate.
    let dir = baresip_dir(
        &lab,
        &phone_ip,
        &format!(
            "<sip:alice@{DOMAIN};transport=tls>;auth_pass=wonderland;outbound=\"sip:{primary}:5061;transport=tls\";regint=600;answermode=auto"
        ),
    );
    let config = std::fs::read_to_string(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "{}sip_cafile {}\n",
            config.replace("sip_trans_def udp", "sip_trans_def tls"),
            cert.display()
        ),
    )
    .unwrap();
    let dir_arg = dir.display().to_string();
    let alice = lab.spawn("short-lan1", "baresip", &["-f", &dir_arg, "-t", "120"]);
    // bob: a browser-like phone over WebSocket.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/ws_phone.py");
    let ws_uri = format!("ws://{primary}:5062/");
    let mut bob = lab.spawn(
        "short-lan1",
        &python,
        &[script, &ws_uri, "bob", "builder", DOMAIN, "100"],
    );
    assert!(
        server.wait_for_output("registered from tls", Duration::from_secs(15)),
        "alice registers over TLS\n{alice}\n{server}"
    );
    assert!(
        bob.wait_for_output("REGISTERED", Duration::from_secs(15)),
        "bob registers over WebSocket\n{bob}\n{server}"
    );
    let silent = Instant::now();
    std::thread::sleep(Duration::from_secs(45));
    let to_alice = call_alice(&lab, "home-lan1", &caller_ip, &target);
    let to_bob = lab.exec(
        "home-lan1",
        "sipp",
        &sipp::strs(&sipp::caller("bob", DOMAIN, &caller_ip, 5082, &target, 20)),
        Duration::from_secs(40),
    );
    assert!(
        to_alice.success(),
        "the call to alice over TLS: {to_alice}\n{alice}\n{server}"
    );
    assert!(
        to_bob.success(),
        "the call to bob over WebSocket: {to_bob}\n{bob}\n{server}"
    );
    assert!(
        bob.wait_for_output("CALL DONE", Duration::from_secs(10)),
        "{bob}"
    );
    common::note(
        TEST,
        &format!(
            "after {:?} of silence behind the 20 s gateway, with CRLF keep-alives every 10 s, calls reached alice over TLS and bob over WebSocket",
            silent.elapsed()
        ),
    );
}

/// Node `node` on `ip:5060` (UDP and TCP) in the lab's server namespace, its store the shared
/// database `url`; its STUN on `stun_port` of the primary address.
fn start_node(
    lab: &Lab,
    node: &str,
    ip: std::net::Ipv4Addr,
    stun_port: u16,
    url: &str,
) -> LabChild {
    start_farside_with(
        lab,
        &format!("farside-{node}"),
        stun_port - 1000,
        &format!("listen = [\"udp:{ip}:5060\", \"tcp:{ip}:5060\"]"),
        "interval = \"10s\"\nmethod = \"CRLF\"",
        &format!("[store]\nurl = \"{url}\"\nnode = \"{node}\"\n\n[rtp]\nenabled = false\n"),
    )
}

/// Two Farside nodes in the lab share one PostgreSQL (through its socket): alice's SIPp phone
/// behind the home gateway registers through node A; a phone behind the symmetric gateway
/// calls her through node B, which sends the INVITE to A, and A down alice's NAT binding:
/// INVITE, 180, 200, ACK, BYE, 200. Node A is then killed (SIGKILL) and started again: it
/// restores her binding from the store and the next call through B reaches her.
#[test]
fn a_phone_behind_a_nat_registered_through_node_a_is_called_through_node_b() {
    const TEST: &str = "a_phone_behind_a_nat_registered_through_node_a_is_called_through_node_b";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(db) = test_database::TestDatabase::new(TEST) else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let url = natlab::postgres_through_the_socket(&db.url);
    let (primary, secondary) = lab.server_addrs();
    let a = start_node(&lab, "lab-a", primary, 6060, &url);
    let b = start_node(&lab, "lab-b", secondary, 6160, &url);
    let alice_ip = lab.host("home-lan1").addr().to_string();
    let caller_ip = lab.host("symmetric-lan1").addr().to_string();
    let reg = register_alice(&lab, "home-lan1", &alice_ip, &format!("{primary}:5060"));
    assert!(reg.success(), "register through A: {reg}\n{a}");
    // B reads the other nodes' bindings about once a second.
    thread::sleep(Duration::from_millis(2500));
    let (callee, caller) = while_alice_waits(&lab, "home-lan1", &alice_ip, || {
        call_alice(
            &lab,
            "symmetric-lan1",
            &caller_ip,
            &format!("{secondary}:5060"),
        )
    });
    assert!(caller.success(), "caller through B: {caller}\n{b}\n{a}");
    assert!(callee.success(), "alice: {callee}\n{a}");
    assert!(
        b.output().contains(&format!("forwarded to {primary}:5060")),
        "B sent it to A\n{b}"
    );
    // Node A killed (SIGKILL) and started again: it restores alice's binding from the
    // store, and the next call through B reaches her through A again.
    drop(a);
    let mut a = start_node(&lab, "lab-a", primary, 6060, &url);
    assert!(
        a.wait_for_output(
            "S405 SIP registrations restored from the store: 1",
            Duration::from_secs(10)
        ),
        "{a}"
    );
    let (callee, caller) = while_alice_waits(&lab, "home-lan1", &alice_ip, || {
        call_alice(
            &lab,
            "symmetric-lan1",
            &caller_ip,
            &format!("{secondary}:5060"),
        )
    });
    assert!(caller.success(), "after A's restart: {caller}\n{b}\n{a}");
    assert!(callee.success(), "alice: {callee}\n{a}");
    common::note(
        TEST,
        "alice registered through node A from behind the home NAT; a call through node B reached her through A: INVITE/180/200/ACK/BYE/200; A killed with SIGKILL and started again restored her binding, and the next call through B reached her",
    );
}

/// A real RFC 5626 client with a flow to each node: baresip behind the home gateway with two
/// outbound proxies (`outbound` node A, `outbound2` node B, `sipnat=outbound`) registers one
/// flow through each (`reg-id` 1 and 2, one instance, each stored under its node). A call
/// through node B goes over B's own flow, not through A; node A is killed (`kill -9`) and a
/// call through node B still reaches the phone.
#[test]
fn an_outbound_phone_with_a_flow_to_each_node_is_reached_when_one_node_is_killed() {
    const TEST: &str =
        "an_outbound_phone_with_a_flow_to_each_node_is_reached_when_one_node_is_killed";
    if !common::require_tool(TEST, "sipp") || !common::require_tool(TEST, "baresip") {
        return;
    }
    let Some(db) = test_database::TestDatabase::new(TEST) else {
        return;
    };
    let Some(lab) = Lab::up(TEST) else { return };
    let url = natlab::postgres_through_the_socket(&db.url);
    let (primary, secondary) = lab.server_addrs();
    let mut a = start_node(&lab, "lab-a", primary, 6060, &url);
    let mut b = start_node(&lab, "lab-b", secondary, 6160, &url);
    let alice_ip = lab.host("home-lan1").addr().to_string();
    let caller_ip = lab.host("symmetric-lan1").addr().to_string();
    let dir = baresip_dir(
        &lab,
        &alice_ip,
        &format!(
            "<sip:alice@{DOMAIN};transport=tcp>;auth_pass=wonderland;outbound=\"sip:{primary}:5060;transport=tcp\";outbound2=\"sip:{secondary}:5060;transport=tcp\";sipnat=outbound;regint=600;answermode=auto"
        ),
    );
    let dir_arg = dir.display().to_string();
    let phone = lab.spawn("home-lan1", "baresip", &["-f", &dir_arg, "-t", "60"]);
    for (node, server) in [("A", &mut a), ("B", &mut b)] {
        assert!(
            server.wait_for_output("registered from tcp", Duration::from_secs(15)),
            "baresip registers a flow through node {node}\n{phone}\n{server}"
        );
    }
    // One instance, a flow through each node, each stored under its node.
    let mut store = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let flows = |store: &mut postgres::Client| -> Vec<(String, Option<i64>)> {
        store
            .query("SELECT node, reg_id FROM registrations ORDER BY node", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert!(
        common::wait_until(Duration::from_secs(3), || flows(&mut store)
            == [
                ("lab-a".to_string(), Some(1)),
                ("lab-b".to_string(), Some(2))
            ]),
        "two flows, reg-id 1 through A and 2 through B: {:?}",
        flows(&mut store)
    );
    // B has a flow of the phone's own: it calls over that, not through A.
    thread::sleep(Duration::from_millis(2500));
    let first = call_alice(
        &lab,
        "symmetric-lan1",
        &caller_ip,
        &format!("{secondary}:5060"),
    );
    assert!(first.success(), "{first}\n{phone}\n{b}");
    assert!(
        !b.output().contains(&format!("forwarded to {primary}:5060")),
        "not through A\n{b}"
    );
    drop(a); // SIGKILL
    let call = call_alice(
        &lab,
        "symmetric-lan1",
        &caller_ip,
        &format!("{secondary}:5060"),
    );
    assert!(
        call.success(),
        "a call through B with A dead: {call}\n{phone}\n{b}"
    );
    common::note(
        TEST,
        "baresip registered a flow through each node (stored: lab-a reg-id 1, lab-b reg-id 2); a call through B went over B's own flow; node A was killed; the next call through B reached it too",
    );
}
