//! `farside probe` against a real Farside server on loopback, found through SRV records served by
//! a real DNS server (dnsmasq), as the phones of the users' world find theirs.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::dnsmasq::Dnsmasq;
use common::{ALT_IP, Backend, Server, ServerConfig, require_tool, run_tool};
use std::net::UdpSocket;

const FARSIDE: &str = env!("CARGO_BIN_EXE_farside");

fn probe(args: &[String]) -> (common::ToolOutput, serde_json::Value) {
    let out = run_tool(FARSIDE, args, Duration::from_secs(60));
    assert!(!out.timed_out(), "probe hung\n{}", out.describe());
    let json = serde_json::from_str(out.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn probe_finds_an_rfc5780_server_through_srv_and_reports_no_nat() {
    let test = "probe_finds_an_rfc5780_server_through_srv_and_reports_no_nat";
    if common::backend() != Backend::Farside || !require_tool(test, "dnsmasq") {
        return;
    }
    let server = Server::start(test, ServerConfig::default().with_alternate(ALT_IP));
    let dns = Dnsmasq::start(&[
        format!(
            "--srv-host=_stun._udp.example.test,stun.example.test,{},0,0",
            server.primary.port()
        ),
        s("--host-record=stun.example.test,127.0.0.1"),
    ]);
    let (out, json) = probe(&[
        s("probe"),
        s("example.test"),
        format!("--dns=127.0.0.1:{}", dns.port),
        s("--json"),
        s("--local=127.0.0.1"),
    ]);
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    assert_eq!(json["server"], server.primary.to_string(), "{json}");
    assert!(
        json["server_source"]
            .as_str()
            .unwrap_or("")
            .contains("SRV _stun._udp.example.test"),
        "{json}"
    );
    assert_eq!(json["reachable"], true);
    assert_eq!(json["rfc5780"], true);
    assert_eq!(
        json["other_address"],
        server.alt_addr(true, true).to_string()
    );
    assert_eq!(json["nat"], false, "{json}");
    assert_eq!(json["mapping"], "endpoint-independent", "{json}");
    assert_eq!(json["filtering"], "endpoint-independent", "{json}");
    assert_eq!(json["classic"], "open internet", "{json}");
    let public = json["public"].as_str().unwrap_or("");
    assert!(public.starts_with("127.0.0.1:"), "{json}");
    assert_eq!(json["public"], json["local"], "{json}");

    // The human-readable form says the same.
    let (out, _) = probe(&[
        s("probe"),
        s("example.test"),
        format!("--dns=127.0.0.1:{}", dns.port),
        s("--local=127.0.0.1"),
    ]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    for needle in [
        "mapping            endpoint-independent",
        "classic NAT type   open internet",
        "SRV _stun._udp.example.test",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing\n{}",
            out.describe()
        );
    }
}

#[test]
fn probe_falls_back_to_the_address_record_on_port_3478_without_srv() {
    let test = "probe_falls_back_to_the_address_record_on_port_3478_without_srv";
    if common::backend() != Backend::Farside || !require_tool(test, "dnsmasq") {
        return;
    }
    // Only an A record: the probe goes to port 3478 of it. The test holds that address itself,
    // silently, so the request must arrive there and go unanswered whatever else runs here.
    let silent = match UdpSocket::bind("127.0.0.9:3478") {
        Ok(s) => s,
        Err(e) => {
            common::skip(test, &format!("cannot hold 127.0.0.9:3478: {e}"));
            return;
        }
    };
    let dns = Dnsmasq::start(&[s("--host-record=nosrv.example.test,127.0.0.9")]);
    let (out, json) = probe(&[
        s("probe"),
        s("nosrv.example.test"),
        format!("--dns=127.0.0.1:{}", dns.port),
        s("--json"),
        s("--timeout=50"),
        s("--retransmits=1"),
    ]);
    assert_eq!(json["server"], "127.0.0.9:3478", "{}", out.describe());
    assert!(
        json["server_source"]
            .as_str()
            .unwrap_or("")
            .starts_with("A/AAAA nosrv.example.test"),
        "{json}"
    );
    assert_eq!(json["reachable"], false, "{json}");
    assert_eq!(out.code(), Some(4), "{}", out.describe());
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "the request never reached 127.0.0.9:3478"
    );
}

#[test]
fn probe_without_rfc5780_reports_the_public_address_and_exits_3() {
    let test = "probe_without_rfc5780_reports_the_public_address_and_exits_3";
    if common::backend() != Backend::Farside {
        common::skip(test, "Farside-specific");
        return;
    }
    let server = Server::start(test, ServerConfig::default());
    let (out, json) = probe(&[
        s("probe"),
        server.primary.to_string(),
        s("--json"),
        s("--local=127.0.0.1"),
    ]);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert_eq!(json["reachable"], true);
    assert_eq!(json["rfc5780"], false);
    assert!(
        json["public"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:"),
        "{json}"
    );
    let notes = json["notes"].to_string();
    assert!(notes.contains("RFC 5780"), "a note must say why: {json}");
}

#[test]
fn probe_of_a_silent_address_exits_4_and_bad_targets_exit_2() {
    let (out, json) = probe(&[
        s("probe"),
        s("127.0.0.1:9"),
        s("--json"),
        s("--timeout=50"),
        s("--retransmits=2"),
    ]);
    assert_eq!(out.code(), Some(4), "{}", out.describe());
    assert_eq!(json["reachable"], false);
    assert_eq!(json["classic"], "UDP blocked", "{json}");
    let out = run_tool(
        FARSIDE,
        &[s("probe"), s("not a name!")],
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "{}",
        out.describe()
    );
}

/// RFC 2782 through a real DNS server: the lower priority is tried first; when it does not answer, the next
/// one is; a "." target means the domain has no STUN service.
#[test]
fn probe_tries_srv_targets_in_priority_order_and_honours_no_service() {
    let test = "probe_tries_srv_targets_in_priority_order_and_honours_no_service";
    if common::backend() != Backend::Farside || !require_tool(test, "dnsmasq") {
        return;
    }
    let server = Server::start(test, ServerConfig::default().with_alternate(ALT_IP));
    // Priority 10: an address the test holds silently. Priority 20: the live server.
    let silent = UdpSocket::bind("127.0.0.9:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let dns = Dnsmasq::start(&[
        format!(
            "--srv-host=_stun._udp.example.test,dead.example.test,{},10,0",
            silent.local_addr().unwrap().port()
        ),
        format!(
            "--srv-host=_stun._udp.example.test,live.example.test,{},20,0",
            server.primary.port()
        ),
        s("--host-record=dead.example.test,127.0.0.9"),
        s("--host-record=live.example.test,127.0.0.1"),
        s("--srv-host=_stun._udp.none.example.test"),
    ]);
    let (out, json) = probe(&[
        s("probe"),
        s("example.test"),
        format!("--dns=127.0.0.1:{}", dns.port),
        s("--json"),
        s("--timeout=50"),
        s("--retransmits=2"),
        s("--local=127.0.0.1"),
    ]);
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    assert_eq!(json["server"], server.primary.to_string(), "{json}");
    assert!(
        json["server_source"]
            .as_str()
            .unwrap_or("")
            .contains("live.example.test"),
        "{json}"
    );
    let mut buf = [0u8; 64];
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "the priority-10 target was never tried"
    );

    let (out, _) = probe(&[
        s("probe"),
        s("none.example.test"),
        format!("--dns=127.0.0.1:{}", dns.port),
    ]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("no STUN service"), "{}", out.describe());
}

/// DNS SRV load sharing between two nodes (docs/store.md): `_stun._udp.example.test` names
/// node A with weight 3 and node B with weight 1 at one priority, served by dnsmasq. A hundred
/// runs of `farside probe example.test`, each picking by RFC 2782's weights as phones do, use
/// both nodes, A about three times as often (400 runs gave 312 and 88).
#[test]
fn srv_weights_share_clients_between_two_nodes() {
    let test = "srv_weights_share_clients_between_two_nodes";
    if common::backend() != Backend::Farside || !require_tool(test, "dnsmasq") {
        return;
    }
    let a = Server::start(&format!("{test}-a"), ServerConfig::default());
    let b = Server::start(&format!("{test}-b"), ServerConfig::default());
    let dns = Dnsmasq::start(&[
        format!(
            "--srv-host=_stun._udp.example.test,a.example.test,{},10,3",
            a.primary.port()
        ),
        format!(
            "--srv-host=_stun._udp.example.test,b.example.test,{},10,1",
            b.primary.port()
        ),
        s("--host-record=a.example.test,127.0.0.1"),
        s("--host-record=b.example.test,127.0.0.1"),
    ]);
    let (mut to_a, mut to_b) = (0u32, 0u32);
    for _ in 0..100 {
        let (out, json) = probe(&[
            s("probe"),
            s("example.test"),
            format!("--dns=127.0.0.1:{}", dns.port),
            s("--json"),
            s("--timeout=500"),
            s("--retransmits=2"),
            s("--local=127.0.0.1"),
        ]);
        match json["server"].as_str() {
            Some(x) if x == a.primary.to_string() => to_a += 1,
            Some(x) if x == b.primary.to_string() => to_b += 1,
            _ => panic!("{}\n{json}", out.describe()),
        }
    }
    println!("SRV weights 3:1: node A chosen {to_a} times, node B {to_b} times of 100");
    // Expected 75 and 25 (a standard deviation of 4.3): a run outside these bounds has odds
    // of about one in ten thousand.
    assert!((58..=92).contains(&to_a), "A {to_a}, B {to_b}");
}
