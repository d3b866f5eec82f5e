//! `farside doctor` on loopback, finding a real Farside the way a phone does (RFC 3263): NAPTR
//! records naming the SIP transports' SRV names, SRV records naming the host and ports, served
//! by a real DNS server (dnsmasq). The NAT lab test (`tests/natlab.rs`) checks its verdicts
//! behind each kind of NAT.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::dnsmasq::Dnsmasq;
use common::{Backend, LOCALHOST, Server, ServerConfig, require_tool};

/// The doctor finds the server through NAPTR and SRV, and on loopback (no NAT, no ALG) finds
/// nothing wrong: SIP over UDP and TCP answered by the mirror, unchanged; alice registers on
/// the first challenge; TURN allocates over UDP and TCP; a second of audio comes back whole
/// through the TURN relay, through the RTP relay (a call to the echo service) and straight
/// from the server; exit 0. Without the password it refuses with 5, and a domain DNS knows
/// nothing of is exit 2.
#[test]
fn doctor_finds_the_server_through_naptr_and_srv_and_finds_nothing_wrong_on_loopback() {
    let test = "doctor_finds_the_server_through_naptr_and_srv_and_finds_nothing_wrong_on_loopback";
    if common::backend() != Backend::Farside || !require_tool(test, "dnsmasq") {
        return;
    }
    let ports = common::free_ports(&[LOCALHOST], 1);
    let media = common::free_ports(&[LOCALHOST], 20);
    let media = media + (media & 1);
    let server = Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nallowed_peers = [\"127.0.0.0/8\"]\n\n\
             [sip]\nenabled = true\nlisten = [\"udp:127.0.0.1:{ports}\", \"tcp:127.0.0.1:{ports}\"]\n\
             domain = \"example.test\"\nrealm = \"farside\"\n\n\
             [rtp]\nenabled = true\naddress = [\"127.0.0.1\"]\nports = \"{media}-{}\"\nng_listen = []\n\
             allowed_peers = [\"127.0.0.0/8\"]\n",
            media + 18
        )),
    );
    common::add_alice_once_running(&server);
    let stun = server.primary.port();
    let dns = Dnsmasq::start(&[
        "--naptr-record=example.test,10,10,s,SIP+D2U,,_sip._udp.example.test".into(),
        "--naptr-record=example.test,20,10,s,SIP+D2T,,_sip._tcp.example.test".into(),
        format!("--srv-host=_sip._udp.example.test,sip.example.test,{ports},0,0"),
        format!("--srv-host=_sip._tcp.example.test,sip.example.test,{ports},0,0"),
        format!("--srv-host=_stun._udp.example.test,sip.example.test,{stun},0,0"),
        "--host-record=sip.example.test,127.0.0.1".into(),
    ]);
    let doctor = |password: &str, target: &str| {
        let command = format!(
            "printf '%s\\n' '{password}' | {} doctor {target} --dns 127.0.0.1:{} --local 127.0.0.1 --password-stdin --audio-seconds 1 --json",
            env!("CARGO_BIN_EXE_farside"),
            dns.port
        );
        common::run_tool("sh", &["-c".to_string(), command], Duration::from_secs(60))
    };
    let out = doctor("wonderland", "sip:alice@example.test");
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.describe(), server.describe()));
    assert_eq!(out.code(), Some(0), "{report:#}\n{}", out.describe());
    let sip = report["sip"].as_array().unwrap();
    let transports: Vec<&str> = sip
        .iter()
        .map(|p| p["transport"].as_str().unwrap())
        .collect();
    assert_eq!(
        transports,
        ["udp", "tcp"],
        "NAPTR offers no TLS: {report:#}"
    );
    for p in sip {
        let how = p["server"].as_str().unwrap();
        assert!(
            how.starts_with(&format!(
                "127.0.0.1:{ports} (NAPTR example.test → SRV _sip._"
            )) && p["reachable"] == true
                && p["alg"] == false
                && p["changes"].as_array().unwrap().is_empty(),
            "{p:#}"
        );
    }
    assert_eq!(report["registration"]["registered"], true, "{report:#}");
    assert_eq!(report["registration"]["challenges"], 1, "{report:#}");
    assert!(
        report["turn"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["allocated"] == true),
        "{report:#}"
    );
    assert_eq!(
        report["audio"]["sent"], report["audio"]["received"],
        "{report:#}"
    );
    // Through the RTP relay: a call to the echo service, its RTP sent back by the relay.
    assert_eq!(report["rtp_relay_audio"]["sent"], 50, "{report:#}");
    assert_eq!(
        report["rtp_relay_audio"]["received"], 50,
        "through the RTP relay: {report:#}"
    );
    assert!(
        server
            .metrics()
            .is_some_and(|m| m.contains("farside_sip_echo_calls_total 1\n")),
        "{}",
        server.describe()
    );
    assert_eq!(report["direct_audio"]["sent"], 50, "{report:#}");
    assert_eq!(
        report["direct_audio"]["received"], 50,
        "straight to the server: {report:#}"
    );
    assert_eq!(report["nat"]["nat"], false, "{report:#}");
    assert!(
        report["nat"]["stun_server"]
            .as_str()
            .unwrap()
            .contains("SRV _stun._udp.example.test"),
        "{report:#}"
    );
    assert_eq!(report["verdict"]["ok"], true, "{report:#}");
    // The doctor left no binding behind.
    assert!(
        server
            .logs()
            .contains("S411 sip:alice@example.test registered"),
        "{}",
        server.describe()
    );
    let sessions = server.cli(&["sessions", "--json"]);
    let v: serde_json::Value = serde_json::from_str(sessions.stdout.trim()).unwrap();
    assert!(v["registrations"].as_array().unwrap().is_empty(), "{v:#}");
    // Its UDP allocation is deleted; the TCP one ended with its connection.
    let gone = common::wait_until(Duration::from_secs(3), || {
        let s = server.cli(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
        v["allocations"].as_array().unwrap().is_empty()
    });
    assert!(gone, "{}", server.describe());

    let wrong = doctor("not-the-password", "sip:alice@example.test");
    assert_eq!(wrong.code(), Some(5), "{}", wrong.describe());
    let nowhere = doctor("x", "sip:alice@nowhere.test");
    assert_eq!(nowhere.code(), Some(2), "{}", nowhere.describe());
    common::note(
        test,
        &format!(
            "found through NAPTR and SRV: {}; audio {} of {} back through TURN, MOS {}; {} of {} through the RTP relay, MOS {}",
            sip[0]["server"],
            report["audio"]["received"],
            report["audio"]["sent"],
            report["audio"]["mos"],
            report["rtp_relay_audio"]["received"],
            report["rtp_relay_audio"]["sent"],
            report["rtp_relay_audio"]["mos"]
        ),
    );
}
