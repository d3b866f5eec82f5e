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

use std::thread;
use std::time::{Duration, Instant};

use natlab::Lab;

const DOMAIN: &str = "example.org";

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}.xml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_phone_behind_a_symmetric_nat_registers_and_takes_a_call_through_farside() {
    const TEST: &str = "a_phone_behind_a_symmetric_nat_registers_and_takes_a_call_through_farside";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(lab) = Lab::up(TEST) else { return };
    let (primary, _) = lab.server_addrs();
    let dir = lab.scratch_dir("farside-sip");
    let config = dir.join("farside.toml");
    std::fs::write(
        &config,
        format!(
            "[stun]\nlisten = [\"{primary}:3478\"]\n\n[sip]\nenabled = true\nlisten = [\"udp:{primary}:5060\"]\ndomain = \"{DOMAIN}\"\n\n[admin]\nlisten = \"off\"\n\n[log]\nlevel = \"debug\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            dir.join("farside.db").display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let add = lab.exec(
        "peer",
        env!("CARGO_BIN_EXE_farside"),
        &[
            "user",
            "add",
            "alice",
            "--password",
            "wonderland",
            "--realm",
            DOMAIN,
            "--config",
            &config,
        ],
        Duration::from_secs(20),
    );
    assert!(add.success(), "{add}");
    let mut server = lab.spawn(
        "server",
        env!("CARGO_BIN_EXE_farside"),
        &["serve", "--config", &config],
    );
    assert!(
        server.wait_for_output("S400 SIP registrar", Duration::from_secs(15)),
        "{server}"
    );
    let target = format!("{primary}:5060");
    // The phones' own addresses, so that each SIPp run names the same Contact.
    let alice_ip = lab.host("symmetric-lan1").addr().to_string();
    let caller_ip = lab.host("home-lan1").addr().to_string();
    let (register, callee, caller) = (scenario("register"), scenario("callee"), scenario("caller"));

    // Alice behind the symmetric gateway registers from port 5070...
    let reg = lab.exec(
        "symmetric-lan1",
        "sipp",
        &[
            "-sf",
            &register,
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "wonderland",
            "-set",
            "domain",
            DOMAIN,
            "-m",
            "1",
            "-i",
            &alice_ip,
            "-p",
            "5070",
            "-timeout",
            "15",
            "-timeout_error",
            "-nostdin",
            &target,
        ],
        Duration::from_secs(30),
    );
    assert!(reg.success(), "register: {reg}\n{server}");
    // ...and answers there; the caller behind the home gateway calls her through Farside.
    let started = Instant::now();
    let (callee_out, caller_out) = thread::scope(|s| {
        let callee_run = s.spawn(|| {
            lab.exec(
                "symmetric-lan1",
                "sipp",
                &[
                    "-sf",
                    &callee,
                    "-s",
                    "alice",
                    "-m",
                    "1",
                    "-i",
                    &alice_ip,
                    "-p",
                    "5070",
                    "-timeout",
                    "25",
                    "-timeout_error",
                    "-nostdin",
                ],
                Duration::from_secs(40),
            )
        });
        thread::sleep(Duration::from_millis(500));
        let caller_run = lab.exec(
            "home-lan1",
            "sipp",
            &[
                "-sf",
                &caller,
                "-s",
                "alice",
                "-set",
                "domain",
                DOMAIN,
                "-m",
                "1",
                "-i",
                &caller_ip,
                "-p",
                "5080",
                "-timeout",
                "20",
                "-timeout_error",
                "-nostdin",
                &target,
            ],
            Duration::from_secs(40),
        );
        (callee_run.join().unwrap(), caller_run)
    });
    assert!(caller_out.success(), "caller: {caller_out}\n{server}");
    assert!(callee_out.success(), "callee: {callee_out}\n{server}");
    common::note(
        TEST,
        &format!(
            "register, INVITE/180/200/ACK/BYE/200 across the symmetric and home gateways in {:?}",
            started.elapsed()
        ),
    );
}
