//! The SIP registrar over UDP: SIPp (Debian's sip-tester) registers with Digest
//! authentication against a user added with `farside user add`; a hand-made phone checks what
//! SIPp does not show: `received`/`rport` on the answer's Via, the flow and Contact the binding
//! keeps, STUN and CRLF keep-alives on the SIP port, OPTIONS, 501, and malformed messages
//! counted.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{LOCALHOST, Server, ServerConfig, counter, require_tool, run_tool, sipp};

const DOMAIN: &str = "example.org";

/// Starts Farside with `config` and waits until its log says `listening` (an S400 line).
fn start_sip(test: &str, config: ServerConfig, listening: &str) -> Server {
    let server = Server::start(test, config);
    assert!(
        common::wait_until(Duration::from_secs(5), || server.logs().contains(listening)),
        "{}",
        server.describe()
    );
    server
}

/// A Farside with `[sip]` on a free loopback port; returns it and the SIP address.
fn sip_server(test: &str) -> (Server, SocketAddr) {
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    let server = start_sip(
        test,
        ServerConfig::default().with_table(&format!(
            "[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\n"
        )),
        "S400 SIP registrar",
    );
    (server, sip)
}

/// `farside user add NAME --password PW --realm example.org` against the server's store, and
/// waits until the running server has it.
fn add_user(server: &Server, name: &str, password: &str) {
    server.cli(&[
        "user",
        "add",
        name,
        "--password",
        password,
        "--realm",
        DOMAIN,
    ]);
    server.wait_for_log("S306 store changed");
}

fn sipp(sip: SocketAddr, user: &str, password: &str) -> common::ToolOutput {
    sipp_register_from(sip, user, password, common::free_ports(&[LOCALHOST], 1))
}

/// Adds alice to the store and registers her with SIPp from the first of two free ports (the
/// second is left for a caller); returns the first.
fn alice_registered(server: &Server, sip: SocketAddr) -> u16 {
    add_user(server, "alice", "wonderland");
    let ports = common::free_ports(&[LOCALHOST], 2);
    let reg = sipp_register_from(sip, "alice", "wonderland", ports);
    assert_eq!(
        reg.code(),
        Some(0),
        "{}\n{}",
        reg.describe(),
        server.describe()
    );
    ports
}

/// SIPp's `register.xml` from local port `port`.
fn sipp_register_from(
    sip: SocketAddr,
    user: &str,
    password: &str,
    port: u16,
) -> common::ToolOutput {
    let args = sipp::register(
        user,
        password,
        DOMAIN,
        "127.0.0.1",
        port,
        &sip.to_string(),
        10,
    );
    run_tool("sipp", &args, Duration::from_secs(30))
}

/// RFC 3261 §8.2.2.3 with a real phone: SIPp asks for `Require: path, frobnicate` and gets 420
/// Bad Extension naming `frobnicate` in Unsupported (SIPp checks the header).
#[test]
fn sipp_requiring_an_unknown_extension_gets_420_naming_it() {
    let test = "sipp_requiring_an_unknown_extension_gets_420_naming_it";
    if !require_tool(test, "sipp") {
        return;
    }
    let (server, sip) = sip_server(test);
    let port = common::free_ports(&[LOCALHOST], 1);
    let args = sipp::to_domain(
        "register-require",
        "alice",
        DOMAIN,
        "127.0.0.1",
        port,
        &sip.to_string(),
        10,
    );
    let out = run_tool("sipp", &args, Duration::from_secs(30));
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    common::note(
        test,
        "REGISTER with Require: path, frobnicate -> 420, Unsupported: frobnicate",
    );
}

#[test]
fn sipp_registers_with_digest_authentication() {
    let test = "sipp_registers_with_digest_authentication";
    if !require_tool(test, "sipp") {
        return;
    }
    let (server, sip) = sip_server(test);
    add_user(&server, "alice", "wonderland");
    let ok = sipp(sip, "alice", "wonderland");
    assert_eq!(
        ok.code(),
        Some(0),
        "{}\n{}",
        ok.describe(),
        server.describe()
    );
    assert_eq!(
        counter(&server, "farside_sip_register_total", "\"registered\""),
        1.0
    );
    assert_eq!(
        counter(&server, "farside_sip_register_total", "\"challenged\""),
        1.0
    );
    // The gauge is refreshed once a second.
    assert!(
        common::wait_until(Duration::from_secs(3), || counter(
            &server,
            "farside_sip_bindings",
            ""
        ) >= 1.0),
        "{}",
        server.describe()
    );
    // The wrong password: SIPp gets no 200 and fails; the server counts a failure.
    let wrong = sipp(sip, "alice", "guess");
    assert_ne!(wrong.code(), Some(0), "{}", wrong.describe());
    assert!(counter(&server, "farside_sip_register_total", "\"auth_failed\"") >= 1.0);
    server.assert_alive("after SIPp");
}

/// `stale=true` with a real client (RFC 7616 §3.3): SIPp registers with Digest, waits until
/// its nonce is older than `sip.nonce_lifetime` (2 s), and refreshes with credentials from the
/// old challenge. Farside answers 401 with `stale=true` (the scenario fails without it), and
/// SIPp's retry with the same password on the fresh nonce gets 200: counted as one stale
/// challenge, no failed authentication.
#[test]
fn sipp_whose_nonce_expired_is_told_stale_and_reregisters_with_the_same_password() {
    let test = "sipp_whose_nonce_expired_is_told_stale_and_reregisters_with_the_same_password";
    if !require_tool(test, "sipp") {
        return;
    }
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    let server = start_sip(
        test,
        ServerConfig::default().with_table(&format!(
            "[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\nnonce_lifetime = 2\n"
        )),
        "S400 SIP registrar",
    );
    add_user(&server, "alice", "wonderland");
    // 4 s between the registration and its refresh: the nonce is then 3 s old or more.
    let args = sipp::register_stale(
        "alice",
        "wonderland",
        DOMAIN,
        "127.0.0.1",
        common::free_ports(&[LOCALHOST], 1),
        &sip.to_string(),
        20,
        4000,
    );
    let out = run_tool("sipp", &args, Duration::from_secs(40));
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    let register = |outcome: &str| {
        counter(
            &server,
            "farside_sip_register_total",
            &format!("\"{outcome}\""),
        )
    };
    assert_eq!(register("stale"), 1.0, "{}", server.describe());
    assert_eq!(register("registered"), 2.0);
    assert_eq!(register("auth_failed"), 0.0);
}

/// The call of RFC 3261 §24.2 through Farside: SIPp registers alice (Digest), then answers on
/// the port it registered from; another SIPp calls sip:alice@example.org through Farside,
/// which routes the INVITE to alice's flow with her Contact as Request-URI, Record-Routes, and
/// carries 180, 200, ACK, BYE and 200 both ways.
#[test]
fn sipp_calls_a_registered_phone_through_the_proxy() {
    let test = "sipp_calls_a_registered_phone_through_the_proxy";
    if !require_tool(test, "sipp") {
        return;
    }
    let (server, sip) = sip_server(test);
    let ports = alice_registered(&server, sip);
    let (caller, callee) = call(sip, ports);
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\n{}",
        caller.describe(),
        server.describe()
    );
    assert_eq!(callee.code(), Some(0), "callee: {}", callee.describe());
    // INVITE, ACK and BYE one way; 180, 200 and 200 the other.
    let forwarded = counter(&server, "farside_sip_forwarded_total", "");
    assert!(
        forwarded >= 6.0,
        "forwarded {forwarded}\n{}",
        server.describe()
    );
    // One dialog, counted once however often its 200 was retransmitted, and ended by the BYE.
    let started = counter(&server, "farside_sip_dialogs_total", "event=\"started\"");
    let ended = counter(&server, "farside_sip_dialogs_total", "event=\"ended\"");
    assert_eq!((started, ended), (1.0, 1.0), "{}", server.describe());
    assert_eq!(counter(&server, "farside_sip_dialogs", ""), 0.0);
    server.assert_alive("after the call");
}

/// SIP over TCP: a SIPp phone registers over a TCP connection and takes, on that same
/// connection (its flow), the call a SIPp phone makes over UDP, after Farside's CRLF pings
/// have gone over the connection for a few seconds. Farside record-routes twice (RFC 5658:
/// one URI per transport) and the ACK and BYE find their way.
#[test]
fn a_phone_on_tcp_registers_and_takes_a_call_over_its_connection() {
    let test = "a_phone_on_tcp_registers_and_takes_a_call_over_its_connection";
    if !require_tool(test, "sipp") {
        return;
    }
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    let config = ServerConfig::default().with_table(&format!(
        "[sip]\nenabled = true\nlisten = [\"udp:{sip}\", \"tcp:{sip}\"]\ndomain = \"{DOMAIN}\"\n\n[sip.keepalive]\nmethod = \"CRLF\"\ninterval = \"1s\"\nall_contacts = true\n"
    ));
    let server = start_sip(test, config, "listening on tcp");
    add_user(&server, "alice", "wonderland");
    let ports = common::free_ports(&[LOCALHOST], 2);
    let call_id = format!("tcp-call-{}", std::process::id());
    let callee_args = sipp::register_answer(
        "alice",
        "wonderland",
        DOMAIN,
        "127.0.0.1",
        ports,
        &sip.to_string(),
        "t1",
        &call_id,
        20,
    );
    let callee =
        std::thread::spawn(move || run_tool("sipp", &callee_args, Duration::from_secs(30)));
    // The caller once the phone has registered.
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .logs()
            .contains("registered from tcp")),
        "{}",
        server.describe()
    );
    // A few CRLF CRLF pings over the connection first (RFC 5626 §3.5.1): SIPp takes them.
    std::thread::sleep(Duration::from_millis(3500));
    let mut caller_args = sipp::caller(
        "alice",
        DOMAIN,
        "127.0.0.1",
        ports + 1,
        &sip.to_string(),
        20,
    );
    caller_args.extend(["-cid_str".to_string(), call_id.clone()]);
    let caller = run_tool("sipp", &caller_args, Duration::from_secs(30));
    let callee = callee.join().unwrap();
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\ncallee: {}\n{}",
        caller.describe(),
        callee.describe(),
        server.describe()
    );
    assert_eq!(callee.code(), Some(0), "callee: {}", callee.describe());
    assert!(
        server.logs().contains("registered from tcp 127.0.0.1:"),
        "{}",
        server.describe()
    );
    let pings = counter(&server, "farside_sip_keepalive_total", "event=\"sent\"");
    assert!(
        pings >= 2.0,
        "CRLF pings sent: {pings}\n{}",
        server.describe()
    );
}

/// SIP over TLS with a real phone: baresip 1.0 (Debian) registers with Digest over TLS
/// (`transport=tls`, Farside's self-signed certificate as its CA) and answers, over its TLS
/// connection, the call a SIPp phone makes over UDP. The ACK and BYE reach it through the flow
/// token in Farside's Record-Route (baresip's 200 names its ephemeral port as Contact).
#[test]
fn baresip_over_tls_registers_and_answers_a_call() {
    let test = "baresip_over_tls_registers_and_answers_a_call";
    if !require_tool(test, "sipp")
        || !require_tool(test, "baresip")
        || !require_tool(test, "openssl")
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = common::self_signed_for_loopback(&dir);
    let port = common::free_ports(&[LOCALHOST], 2);
    let (udp, tls) = (
        SocketAddr::new(LOCALHOST, port),
        SocketAddr::new(LOCALHOST, port + 1),
    );
    let config = ServerConfig::default()
        .with_table(&format!(
            "[sip]\nenabled = true\nlisten = [\"udp:{udp}\", \"tls:{tls}\"]\ndomain = \"{DOMAIN}\"\n\n[sip.keepalive]\nmethod = \"CRLF\"\n"
        ))
        .with_table(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    let server = start_sip(test, config, "listening on tls");
    add_user(&server, "alice", "wonderland");
    let phone_port = common::free_ports(&[LOCALHOST], 2);
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/baresip/config"
    ))
    .unwrap();
    let config = template
        .replace("@LISTEN@", &format!("127.0.0.1:{phone_port}"))
        .replace("@DIR@", &dir.display().to_string())
        .replace("sip_trans_def udp", "sip_trans_def tls");
    std::fs::write(
        dir.join("config"),
        format!("{config}sip_cafile {}\n", cert.display()),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:alice@{DOMAIN};transport=tls>;auth_pass=wonderland;outbound=\"sip:{tls};transport=tls\";regint=600;answermode=auto\n"
        ),
    )
    .unwrap();
    let phone = common::spawn_logged(
        "baresip",
        &[
            "-f".to_string(),
            dir.display().to_string(),
            "-t".into(),
            "30".into(),
        ],
    );
    assert!(
        common::wait_until(Duration::from_secs(15), || server
            .logs()
            .contains("registered from tls")),
        "baresip registers over TLS\n{}\n{}",
        phone.output(),
        server.describe()
    );
    call_alice_at(udp, &server, &phone, "Call established", "baresip answered");
}

/// The stateful proxy forks: alice registered two phones; the caller's INVITE gets 100 Trying
/// from Farside and rings both; one is busy (its 486 is acknowledged by Farside and not passed
/// on), the other answers, and the call goes through.
#[test]
fn an_invite_forks_to_every_phone_of_the_user_and_the_one_that_answers_gets_it() {
    let test = "an_invite_forks_to_every_phone_of_the_user_and_the_one_that_answers_gets_it";
    if !require_tool(test, "sipp") {
        return;
    }
    let (server, sip) = sip_server(test);
    add_user(&server, "alice", "wonderland");
    let (desk, soft) = (
        common::free_ports(&[LOCALHOST], 1),
        common::free_ports(&[LOCALHOST], 1),
    );
    for port in [desk, soft] {
        let reg = sipp_register_from(sip, "alice", "wonderland", port);
        assert_eq!(
            reg.code(),
            Some(0),
            "{}\n{}",
            reg.describe(),
            server.describe()
        );
    }
    let answers = std::thread::spawn(move || {
        run_tool(
            "sipp",
            &sipp::callee("alice", "127.0.0.1", desk, 20),
            Duration::from_secs(30),
        )
    });
    let busy = std::thread::spawn(move || {
        run_tool(
            "sipp",
            &sipp::callee_busy("alice", "127.0.0.1", soft, 20),
            Duration::from_secs(30),
        )
    });
    // Both phones listen before the call (a fixed pause lost the race on a loaded machine).
    assert!(common::wait_until_udp_bound(desk) && common::wait_until_udp_bound(soft));
    let caller = call_alice(sip);
    let (answers, busy) = (answers.join().unwrap(), busy.join().unwrap());
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\nanswers: {}\nbusy: {}\n{}",
        caller.describe(),
        answers.describe(),
        busy.describe(),
        server.describe()
    );
    assert_eq!(
        answers.code(),
        Some(0),
        "answering phone: {}",
        answers.describe()
    );
    assert_eq!(
        busy.code(),
        Some(0),
        "busy phone (486, then Farside's ACK): {}",
        busy.describe()
    );
    let trying = caller
        .stdout
        .lines()
        .find(|l| l.contains("100 <----------"))
        .and_then(|l| {
            l.split("<----------")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        });
    assert_eq!(
        trying,
        Some(1),
        "Farside's 100 Trying\n{}",
        caller.describe()
    );
}

/// SIP over WebSocket (RFC 7118): a browser-like phone (`tests/ws_phone.py`, the `websockets`
/// library from PyPI for the WebSocket side) registers with Digest from a `.invalid` Contact
/// and takes the call a SIPp phone makes over UDP: the INVITE, the ACK and the BYE reach it
/// over its WebSocket, the only way to it.
#[test]
fn a_websocket_phone_registers_and_takes_a_call() {
    websocket_phone_call("a_websocket_phone_registers_and_takes_a_call", false);
}

/// The same over secure WebSocket (`wss:`, TLS with Farside's self-signed certificate, which the
/// phone verifies).
#[test]
fn a_secure_websocket_phone_registers_and_takes_a_call() {
    websocket_phone_call("a_secure_websocket_phone_registers_and_takes_a_call", true);
}

fn websocket_phone_call(test: &str, secure: bool) {
    if !require_tool(test, "sipp") || (secure && !require_tool(test, "openssl")) {
        return;
    }
    let Some(python) = common::require_python_module(test, "websockets") else {
        return;
    };
    let port = common::free_ports(&[LOCALHOST], 2);
    let (udp, ws) = (
        SocketAddr::new(LOCALHOST, port),
        SocketAddr::new(LOCALHOST, port + 1),
    );
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scheme = if secure { "wss" } else { "ws" };
    let mut config = ServerConfig::default().with_table(&format!(
        "[sip]\nenabled = true\nlisten = [\"udp:{udp}\", \"{scheme}:{ws}\"]\ndomain = \"{DOMAIN}\"\n"
    ));
    let mut ca = Vec::new();
    if secure {
        let (cert, key) = common::self_signed_for_loopback(&dir);
        config = config.with_table(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
        ca.push(cert.display().to_string());
    }
    let server = start_sip(test, config, &format!("listening on {scheme}"));
    add_user(&server, "alice", "wonderland");
    let mut args = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/ws_phone.py").to_string(),
        format!("{scheme}://{ws}/"),
        "alice".into(),
        "wonderland".into(),
        DOMAIN.into(),
        "20".into(),
    ];
    args.extend(ca);
    let phone = common::spawn_logged(&python, &args);
    // Longer than the phone's own 20 s for each step: a phone that gives up says why here.
    // (Twice in about ten full runs on a loaded machine, the wss phone had printed nothing
    // within 15 s.)
    assert!(
        common::wait_until(Duration::from_secs(30), || phone
            .output()
            .contains("REGISTERED")),
        "the WebSocket phone registers\n{}\n{}",
        phone.output(),
        server.describe()
    );
    call_alice_at(
        udp,
        &server,
        &phone,
        "CALL DONE",
        "INVITE, ACK and BYE over the WebSocket",
    );
    assert!(
        server
            .logs()
            .contains(&format!("registered from {scheme} 127.0.0.1:")),
        "{}",
        server.describe()
    );
    assert!(
        counter(&server, "farside_sip_nat_tests_total", "websocket") >= 1.0,
        "the WebSocket NAT test fired\n{}",
        server.describe()
    );
}

/// A WebSocket handshake from a web page of another site is refused 403 (cross-site
/// WebSocket hijacking: any page a user visits could otherwise register or call from their
/// browser): by default only pages of the host connected to, those `sip.ws_origins` lists, and
/// clients that send no `Origin` (not browsers) get 101.
#[test]
fn websocket_handshakes_from_pages_of_other_sites_are_refused() {
    use std::io::{Read, Write};
    let test = "websocket_handshakes_from_pages_of_other_sites_are_refused";
    let ws = SocketAddr::new(LOCALHOST, common::free_ports(&[LOCALHOST], 1));
    let config = ServerConfig::default().with_table(&format!(
        "[sip]\nenabled = true\nlisten = [\"ws:{ws}\"]\ndomain = \"{DOMAIN}\"\n\
         ws_origins = [\"https://app.example.com\"]\n"
    ));
    let server = start_sip(test, config, "listening on ws");
    let status = |origin: &str| {
        let mut c = std::net::TcpStream::connect(ws).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n\
             Sec-WebSocket-Version: 13\r\n{origin}\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    let cases = [
        ("", "101", "no Origin: not a browser"),
        (
            "Origin: http://127.0.0.1:8080\r\n",
            "101",
            "a page of the same host",
        ),
        (
            "Origin: https://app.example.com\r\n",
            "101",
            "a listed origin",
        ),
        ("Origin: https://evil.example\r\n", "403", "another site"),
        ("Origin: null\r\n", "403", "an opaque origin"),
    ];
    for (origin, want, why) in cases {
        assert_eq!(status(origin), want, "{why}\n{}", server.describe());
        println!("{why}: {want}");
    }
    assert!(
        server
            .logs()
            .contains("its Origin is not allowed (sip.ws_origins)"),
        "{}",
        server.describe()
    );
}

/// Registrations live in the store: Farside killed with SIGKILL between REGISTER and INVITE,
/// started again on the same address and store, still routes the call to the phone.
#[test]
fn a_registration_survives_kill_9() {
    let test = "a_registration_survives_kill_9";
    if !require_tool(test, "sipp") {
        return;
    }
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    let dir = std::env::temp_dir().join(format!("farside-sip-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sip_table =
        format!("[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\n");
    let store_table = format!(
        "[store]\nurl = \"sqlite://{}\"\n",
        dir.join("farside.db").display()
    );
    let start = |name: &str| {
        let server = Server::start(
            name,
            ServerConfig::default()
                .with_table(&sip_table)
                .with_table(&store_table),
        );
        assert!(
            common::wait_until(Duration::from_secs(5), || server
                .logs()
                .contains("S405 SIP registrations restored")),
            "{}",
            server.describe()
        );
        server
    };
    let first = start("a_registration_survives_kill_9-first");
    let ports = alice_registered(&first, sip);
    // The store writer saves within a pass; then the hard kill.
    std::thread::sleep(Duration::from_millis(500));
    let kill = run_tool(
        "kill",
        &["-9".to_string(), first.pid().to_string()],
        Duration::from_secs(5),
    );
    assert_eq!(kill.code(), Some(0), "{}", kill.describe());
    assert!(
        common::wait_until(Duration::from_secs(5), || first.exited().is_some()),
        "not dead"
    );
    let second = start("a_registration_survives_kill_9-second");
    assert!(
        second
            .logs()
            .contains("S405 SIP registrations restored from the store: 1"),
        "{}\n=== the first server:\n{}",
        second.describe(),
        first.logs()
    );
    let (caller, callee) = call(sip, ports);
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\n{}",
        caller.describe(),
        second.describe()
    );
    assert_eq!(callee.code(), Some(0), "callee: {}", callee.describe());
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIPp answers (`callee.xml`) on `port` while another SIPp calls alice through `sip` from
/// `port + 1`; returns (caller, callee).
fn call(sip: SocketAddr, port: u16) -> (common::ToolOutput, common::ToolOutput) {
    let callee_args = sipp::callee("alice", "127.0.0.1", port, 20);
    let callee =
        std::thread::spawn(move || run_tool("sipp", &callee_args, Duration::from_secs(30)));
    assert!(common::wait_until_udp_bound(port), "the callee listens");
    let caller_args = sipp::caller("alice", DOMAIN, "127.0.0.1", port + 1, &sip.to_string(), 20);
    let caller = run_tool("sipp", &caller_args, Duration::from_secs(30));
    (caller, callee.join().unwrap())
}

/// A SIPp phone on a free loopback port calls sip:alice@example.org through `sip`.
fn call_alice(sip: SocketAddr) -> common::ToolOutput {
    let port = common::free_ports(&[LOCALHOST], 1);
    let args = sipp::caller("alice", DOMAIN, "127.0.0.1", port, &sip.to_string(), 20);
    run_tool("sipp", &args, Duration::from_secs(30))
}

/// Calls alice through `sip` and asserts the caller completed the call and that `phone`, the
/// registered phone under test, printed `answered` (what it prints for the call it took).
fn call_alice_at(
    sip: SocketAddr,
    server: &Server,
    phone: &common::Logged,
    answered: &str,
    what: &str,
) {
    let caller = call_alice(sip);
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\nphone: {}\n{}",
        caller.describe(),
        phone.output(),
        server.describe()
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || phone.output().contains(answered)),
        "{what}\n{}",
        phone.output()
    );
}

/// Sends `req` from `phone` and returns the answer.
fn ask(phone: &UdpSocket, sip: SocketAddr, req: &[u8]) -> String {
    phone.send_to(req, sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = phone.recv_from(&mut buf).unwrap();
    assert_eq!(from, sip, "answered from the address asked");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn register(cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=b1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: hand-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:bob@192.168.1.20:5060>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_natted_phone_is_answered_where_its_packets_came_from() {
    let test = "a_natted_phone_is_answered_where_its_packets_came_from";
    let (server, sip) = sip_server(test);
    add_user(&server, "bob", "builder");
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = phone.local_addr().unwrap();

    // The phone says it is at 192.168.1.20:5060 (behind a NAT); the answer comes here all the
    // same, and its Via says where the request really came from (RFC 3581).
    let answer = ask(&phone, sip, &register(1, ""));
    assert!(answer.starts_with("SIP/2.0 401 "), "{answer}");
    assert!(
        answer.contains(&format!(
            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport={};received=127.0.0.1\r\n",
            me.port()
        )),
        "{answer}"
    );
    // MD5 Digest without qop (RFC 2069 style, still accepted).
    let auth = bobs_credentials(&answer);
    let answer = ask(&phone, sip, &register(2, &auth));
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert!(
        answer.contains("Contact: <sip:bob@192.168.1.20:5060>;expires=300\r\n"),
        "the Contact kept as sent: {answer}"
    );
    for test in ["private_contact", "private_via", "via_received", "via_port"] {
        assert!(
            counter(&server, "farside_sip_nat_tests_total", test) >= 2.0,
            "{test}"
        );
    }

    // OPTIONS to the server itself: 200. An INVITE for a user with no binding: 480; for
    // another domain: 403 (no open relay).
    let options = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKo\r\n\
From: <sip:bob@{DOMAIN}>;tag=o\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(ask(&phone, sip, options.as_bytes()).starts_with("SIP/2.0 200 "));
    let invite = options
        .replace("OPTIONS sip:", "INVITE sip:carol@")
        .replace("1 OPTIONS", "1 INVITE");
    assert!(ask(&phone, sip, invite.as_bytes()).starts_with("SIP/2.0 480 "));
    // (A new transaction: the same branch would be the 480's transaction again.)
    let relay = invite
        .replace(&format!("carol@{DOMAIN}"), "carol@elsewhere.example")
        .replace("branch=z9hG4bKo", "branch=z9hG4bKr");
    assert!(ask(&phone, sip, relay.as_bytes()).starts_with("SIP/2.0 403 "));
    // Each refusal counted by its code.
    for code in ["480", "403"] {
        assert_eq!(
            counter(
                &server,
                "farside_sip_refusals_total",
                &format!("code=\"{code}\"")
            ),
            1.0,
            "{code}\n{}",
            server.describe()
        );
    }

    // Keep-alives on the SIP port: a STUN Binding request is answered with the phone's
    // address; CRLF is taken silently.
    let mut stun = [0u8; 20];
    stun[..2].copy_from_slice(&[0, 1]);
    stun[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    stun[8..].copy_from_slice(&[7; 12]);
    phone.send_to(&stun, sip).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = phone.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0x01, 0x01], "a Binding success ({n} bytes)");
    phone.send_to(b"\r\n\r\n", sip).unwrap();
    // Junk is dropped and counted; the server goes on answering.
    phone.send_to(b"INVITE sip:x SIP/2.0\r\n\r\n", sip).unwrap();
    assert!(ask(&phone, sip, options.as_bytes()).starts_with("SIP/2.0 200 "));
    assert_eq!(
        counter(&server, "farside_sip_keepalives_total", "stun"),
        1.0
    );
    assert_eq!(
        counter(&server, "farside_sip_keepalives_total", "crlf"),
        1.0
    );
    assert_eq!(
        counter(&server, "farside_sip_dropped_total", "malformed"),
        1.0
    );
    server.assert_alive("after the phone");
}

/// The Authorization field with which bob (password "builder") answers `challenge`, a 401:
/// MD5 Digest without qop (RFC 2069's form, which RFC 2617 still accepts).
fn bobs_credentials(challenge: &str) -> String {
    common::register_credentials(challenge, "bob", "builder", DOMAIN, None)
}

/// Reads one SIP message (headers and Content-Length's body) from a stream.
fn read_sip(s: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// An attacker on one address opens 300 SIP connections over TCP and sends nothing (a
/// slow-connection attack). Only `max_connections_per_ip` of them are taken; a phone on another
/// address registers over TCP all the same; the silent ones are closed once
/// `first_message_timeout` passes; a client that asked once and fell silent is closed after
/// `idle_timeout`; and the phone's connection, quiet past `idle_timeout`, stays open because
/// its registration rides on it.
#[test]
fn idle_connections_from_one_address_neither_lock_others_out_nor_stay() {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    let test = "idle_connections_from_one_address_neither_lock_others_out_nor_stay";
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    let config = ServerConfig::default().with_table(&format!(
        "[sip]\nenabled = true\nlisten = [\"tcp:{sip}\"]\ndomain = \"{DOMAIN}\"\n\
max_connections_per_ip = 100\nfirst_message_timeout = 2\nidle_timeout = 2\n\n\
[sip.keepalive]\nenabled = false\n"
    ));
    let server = start_sip(test, config, "listening on tcp");
    add_user(&server, "bob", "builder");
    let connect_from = |ip: &str| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.connect(&sip.into()).unwrap();
        TcpStream::from(s)
    };
    let idle: Vec<TcpStream> = (0..300).map(|_| connect_from("127.0.0.1")).collect();
    let open = |server: &Server| counter(server, "farside_sip_connections_open", "");
    assert!(
        common::wait_until(Duration::from_secs(5), || counter(
            &server,
            "farside_sip_connections_total",
            "event=\"per_ip_limit\""
        ) == 200.0),
        "200 of 300 refused at the per-address limit\n{}",
        server.describe()
    );
    assert_eq!(open(&server), 100.0);

    // A phone on another address registers over TCP meanwhile.
    let mut phone = connect_from("127.0.0.2");
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = phone.local_addr().unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKt{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=t1\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: tcp-idle-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:bob@{me};transport=tcp>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    phone.write_all(register(1, "").as_bytes()).unwrap();
    let challenge = read_sip(&mut phone);
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let auth = bobs_credentials(&challenge);
    phone.write_all(register(2, &auth).as_bytes()).unwrap();
    let ok = read_sip(&mut phone);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    // A client on a third address asks OPTIONS once, then says nothing more: no registration
    // rides on its connection, so idle_timeout closes it.
    let mut asker = connect_from("127.0.0.3");
    asker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let at = asker.local_addr().unwrap();
    asker
        .write_all(
            format!(
                "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP {at};branch=z9hG4bKo1\r\n\
Max-Forwards: 70\r\nFrom: <sip:carol@{DOMAIN}>;tag=o1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: tcp-idle-2\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let answer = read_sip(&mut asker);
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");

    // The silent hundred are closed after first_message_timeout (2 s, swept every second),
    // the asker's after idle_timeout (2 s); the phone's connection outlives idle_timeout with
    // its registration on it.
    assert!(
        common::wait_until(Duration::from_secs(8), || counter(
            &server,
            "farside_sip_connections_total",
            "event=\"first_message_closed\""
        ) == 100.0),
        "{}",
        server.describe()
    );
    assert!(
        common::wait_until(Duration::from_secs(8), || counter(
            &server,
            "farside_sip_connections_total",
            "event=\"idle_closed\""
        ) == 1.0),
        "the asker's connection is closed for silence\n{}",
        server.describe()
    );
    let mut buf = [0u8; 16];
    assert!(
        matches!(asker.read(&mut buf), Ok(0) | Err(_)),
        "the asker's connection is closed"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(open(&server), 1.0, "{}", server.describe());
    for mut s in idle.into_iter().take(5) {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "an idle connection is closed"
        );
    }
    let mut buf = [0u8; 16];
    phone
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        matches!(phone.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the registered connection is still open"
    );
    assert_eq!(
        counter(
            &server,
            "farside_sip_connections_total",
            "event=\"idle_closed\""
        ),
        1.0,
        "only the asker's was closed for silence"
    );
}

/// `farside bench sip`, the load tool `bench/sip.sh` points at Farside and at Kamailio, judged
/// by both: a light load (200 registrations/s for a second) registers every phone at each, and
/// the tool's JSON report adds up. Kamailio runs the benchmark's own configuration
/// (`bench/sip/kamailio-register.cfg`: Digest with one password for every user).
#[test]
fn bench_sip_registers_at_farside_and_at_kamailio_alike() {
    let test = "bench_sip_registers_at_farside_and_at_kamailio_alike";
    if !require_tool(test, "kamailio") {
        return;
    }
    // Every phone of the load comes from 127.0.0.1: the per-source budget of answers (against
    // forged sources) is off, as Kamailio has none.
    let sip = SocketAddr::new(LOCALHOST, common::free_ports(&[LOCALHOST], 1));
    let server = start_sip(
        test,
        ServerConfig::default().with_table(&format!(
            "[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\n\
             refusals_per_second = 0\n"
        )),
        "S400 SIP registrar",
    );
    add_user(&server, "user0", "bench-password");
    let report = bench_sip(sip);
    assert_light_load_registered(&report, &server.describe());
    assert!(
        counter(&server, "farside_sip_register_total", "registered")
            >= report["registered"].as_f64().unwrap(),
        "{report}\n{}",
        server.describe()
    );

    let kamailio = kamailio_registrar();
    let report = bench_sip(kamailio.addr);
    assert_light_load_registered(&report, &kamailio.log());
}

/// `farside bench sip` at 200 registrations/s for one second, as user0; its JSON.
fn bench_sip(target: SocketAddr) -> serde_json::Value {
    let args: Vec<String> = [
        "bench",
        "sip",
        &target.to_string(),
        "--rate",
        "200",
        "--duration",
        "1",
        "--users",
        "1",
        "--password",
        "bench-password",
        "--domain",
        DOMAIN,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_tool(
        env!("CARGO_BIN_EXE_farside"),
        &args,
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

fn assert_light_load_registered(report: &serde_json::Value, server: &str) {
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert!(n("started") >= 190, "{report}\n{server}");
    assert_eq!(n("registered"), n("started"), "{report}\n{server}");
    for k in [
        "failed",
        "rejected",
        "timed_out",
        "send_failed",
        "invalid",
        "generator_drops",
    ] {
        assert_eq!(n(k), 0, "{k}: {report}\n{server}");
    }
    assert_eq!(
        report["kept_up"].as_bool(),
        Some(true),
        "{report}\n{server}"
    );
}

/// Kamailio with the benchmark's registrar configuration on a free loopback port, ready once
/// it answers: its configuration refuses all but REGISTER with 405.
fn kamailio_registrar() -> common::kamailio::Kamailio {
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/sip/kamailio-register.cfg"
    );
    let k = common::kamailio::Kamailio::start(
        std::path::Path::new(cfg),
        &[&format!("--alias={DOMAIN}")],
    );
    let addr = k.addr;
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = probe.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKk1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=k1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: kamailio-ready\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 2048];
    let ready = (0..50).any(|_| {
        probe.send_to(options.as_bytes(), addr).unwrap();
        matches!(probe.recv(&mut buf), Ok(n) if buf[..n].starts_with(b"SIP/2.0 405 "))
    });
    assert!(ready, "kamailio did not answer on {addr}:\n{}", k.log());
    k
}

/// A late offer (RFC 3261 §13.2.1) through the RTP relay, with SIPp on both ends: the caller's
/// INVITE has no SDP, the callee offers in its 200 and the caller answers in its ACK
/// (`caller-late.xml`, `callee-late.xml`). With `[rtp] relay = "always"` the offer the caller
/// gets and the answer the callee gets both name a relay port (each scenario fails otherwise).
#[test]
fn a_late_offer_from_sipp_is_relayed_from_the_200_and_answered_from_the_ack() {
    let test = "a_late_offer_from_sipp_is_relayed_from_the_200_and_answered_from_the_ack";
    if !require_tool(test, "sipp") {
        return;
    }
    let port = common::free_ports(&[LOCALHOST], 1);
    let sip = SocketAddr::new(LOCALHOST, port);
    // Ten relay ports whose numbers share all but the last digit, so one pattern names them.
    let free = common::free_ports(&[LOCALHOST], 30);
    let first = free.div_ceil(10) * 10;
    let server = start_sip(
        test,
        ServerConfig::default().with_table(&format!(
            "[sip]\nenabled = true\nlisten = [\"udp:{sip}\"]\ndomain = \"{DOMAIN}\"\n\n[rtp]\nenabled = true\naddress = [\"127.0.0.1\"]\nports = \"{first}-{}\"\nng_listen = []\nrelay = \"always\"\nallowed_peers = [\"127.0.0.0/8\"]\n",
            first + 9
        )),
        "S400 SIP registrar",
    );
    let ports = alice_registered(&server, sip);
    let relay = format!("m=audio {}[0-9] ", first / 10);
    let dir = std::env::temp_dir().join(format!("farside-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = |name: &str| {
        let text = std::fs::read_to_string(sipp::scenario(name)).unwrap();
        let path = dir.join(format!("{name}.xml"));
        std::fs::write(&path, text.replace("@RELAY@", &relay)).unwrap();
        path.display().to_string()
    };
    let (caller_sf, callee_sf) = (scenario("caller-late"), scenario("callee-late"));
    // SIPp binds its media port and the three after it (audio and video, RTP and RTCP).
    let media = common::free_ports(&[LOCALHOST], 8);
    let phone = |sf: &str, local: u16, media: u16, target: Option<String>| {
        let mut args: Vec<String> = [
            "-sf",
            sf,
            "-s",
            "alice",
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &local.to_string(),
            "-mp",
            &media.to_string(),
            "-timeout",
            "20",
            "-timeout_error",
            "-nostdin",
        ]
        .map(String::from)
        .to_vec();
        if let Some(t) = target {
            args.extend(["-set".into(), "domain".into(), DOMAIN.into(), t]);
        }
        args
    };
    let callee_args = phone(&callee_sf, ports, media, None);
    let callee =
        std::thread::spawn(move || run_tool("sipp", &callee_args, Duration::from_secs(30)));
    assert!(common::wait_until_udp_bound(ports), "the callee listens");
    let caller = run_tool(
        "sipp",
        &phone(&caller_sf, ports + 1, media + 4, Some(sip.to_string())),
        Duration::from_secs(30),
    );
    let callee = callee.join().unwrap();
    assert_eq!(
        caller.code(),
        Some(0),
        "caller (the 200's offer must name the relay): {}\n{}",
        caller.describe(),
        server.describe()
    );
    assert_eq!(
        callee.code(),
        Some(0),
        "callee (the ACK's answer must name the relay): {}\n{}",
        callee.describe(),
        server.describe()
    );
    let rewritten = counter(&server, "farside_sip_media_total", "result=\"rewritten\"");
    let deleted = counter(&server, "farside_sip_media_total", "step=\"delete\"");
    assert!(
        rewritten >= 2.0 && deleted == 1.0,
        "rewritten {rewritten}, deleted {deleted}\n{}",
        server.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
    common::note(
        test,
        &format!(
            "SIPp's late offer went through the relay: {rewritten} SDPs rewritten (the 200's offer, the ACK's answer), the BYE deleted the call"
        ),
    );
}
