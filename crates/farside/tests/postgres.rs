//! Farside on PostgreSQL, through the real binary: two nodes sharing one database see the same
//! users and secrets and take each other's TURN nonces, with coturn's uclient as the client.
//! The database is one of the test's own on the server `FARSIDE_TEST_POSTGRES` names (see
//! `scripts/start-postgres`); without it the tests are skipped with the reason.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../store/tests/common/postgres.rs"]
mod test_database;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Server, ServerConfig};
use test_database::TestDatabase;

/// Node `node` on the database `url` with `tables` (TOML), started and running.
fn start_node(name: &str, url: &str, node: &str, tables: &str) -> Server {
    let server = Server::start(
        name,
        ServerConfig::default()
            .with_table(tables)
            .with_table(&format!("[store]\nurl = \"{url}\"\nnode = \"{node}\"\n")),
    );
    server.wait_for_log("S010 running");
    server
}

/// A node with TURN (realm `farside`, loopback peers allowed) on the database `url`.
fn turn_node(name: &str, url: &str) -> Server {
    start_node(
        name,
        url,
        name,
        "[turn]\nenabled = true\nrealm = \"farside\"\nallowed_peers = [\"127.0.0.0/8\"]\n",
    )
}

/// A node with SIP for example.org on UDP 127.0.0.1:`port` on the database `url`;
/// `keepalive`, the lines of `[sip.keepalive]`.
fn sip_node(name: &str, url: &str, node: &str, port: u16, keepalive: &str) -> Server {
    start_node(
        name,
        url,
        node,
        &format!(
            "[sip]\nenabled = true\nlisten = [\"udp:127.0.0.1:{port}\"]\ndomain = \"example.org\"\n\
             [sip.keepalive]\n{keepalive}\n[rtp]\nenabled = false\n"
        ),
    )
}

/// Adds `user` (password `password`) through `on`'s command line and waits until each of
/// `nodes` has reread its credentials; how long that took from the command's start.
fn add_user(on: &Server, user: &str, password: &str, nodes: &[&Server]) -> Duration {
    let before: Vec<usize> = nodes
        .iter()
        .map(|n| n.logs().matches("S306 store changed").count())
        .collect();
    let started = Instant::now();
    let out = on.cli(&["user", "add", user, "--password", password]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    // The user is added to each realm in turn (TURN's, SIP's): each node has it when its last
    // S306 counts every user the store lists.
    let users = on.cli(&["user", "list"]).stdout.lines().count();
    let whole = format!("S306 store changed: {users} users");
    for (n, before) in nodes.iter().zip(before) {
        assert!(
            common::wait_until(Duration::from_secs(3), || {
                let logs = n.logs();
                logs.matches("S306 store changed").count() > before
                    && logs
                        .lines()
                        .rfind(|l| l.contains("S306 store changed"))
                        .is_some_and(|l| l.contains(&whole))
            }),
            "{}",
            n.describe()
        );
    }
    started.elapsed()
}

/// SIPp `user` registering with Digest from 127.0.0.1:`port` at 127.0.0.1:`target`.
fn sipp_register(user: &str, password: &str, port: u16, target: u16) -> common::ToolOutput {
    common::run_tool(
        "sipp",
        &common::sipp::register(
            user,
            password,
            "example.org",
            "127.0.0.1",
            port,
            &format!("127.0.0.1:{target}"),
            10,
        ),
        Duration::from_secs(30),
    )
}

/// An Allocate of alice's (password `wonderland`) from `socket`, challenged at `challenge_at`
/// and sent with credentials to `at`: the answer's message type and the nonce.
fn allocate(
    socket: &UdpSocket,
    challenge_at: std::net::SocketAddr,
    at: std::net::SocketAddr,
    tid: u32,
) -> (u16, String) {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    socket
        .send_to(&common::turn::allocate_request(tid, None), challenge_at)
        .unwrap();
    let n = socket.recv(&mut buf).unwrap();
    let nonce = common::turn::nonce_of(&buf[..n]);
    socket
        .send_to(
            &common::turn::allocate_request(tid + 1, Some(("alice", "wonderland", &nonce))),
            at,
        )
        .unwrap();
    socket.recv(&mut buf).unwrap();
    (u16::from_be_bytes([buf[0], buf[1]]), nonce)
}

/// Two nodes on one database: a user added through node A's command line relays through node B
/// (uclient); B's store watcher, woken by the write's NOTIFY, has it within a second of the
/// command's start (the command's own start and connection included); a shared
/// secret added on B is listed by A; and a TURN nonce node A gave out is good on node B (their
/// nonce key is the store's).
#[test]
fn two_nodes_on_one_database_share_users_secrets_and_nonces() {
    const TEST: &str = "two_nodes_on_one_database_share_users_secrets_and_nonces";
    if !common::require_tool(TEST, "turnutils_uclient") {
        return;
    }
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    let a = turn_node("pg-node-a", &db.url);
    let b = turn_node("pg-node-b", &db.url);
    assert!(
        !a.logs().contains("farside_test:farside_test@") && !b.logs().contains(":farside_test@"),
        "the URL's password is never logged\n{}",
        a.describe()
    );
    let seen_after = add_user(&a, "alice", "wonderland", &[&b]);
    assert!(
        seen_after < Duration::from_secs(1),
        "within a second: {seen_after:?}\n{}",
        b.describe()
    );
    let peer = common::turn::Peer::start();
    let relayed = common::turn::uclient_paced(&b, &peer, 20).join().unwrap();
    let totals = common::turn::totals(&relayed.all());
    assert!(
        totals
            .as_ref()
            .is_some_and(|t| t.sent == 20 && t.received == 20),
        "uclient through node B: {totals:?}\n{}\n{}",
        relayed.describe(),
        b.describe()
    );

    let secret = b.cli(&["secret", "add", "0123456789abcdef0123"]);
    assert_eq!(secret.code(), Some(0), "{}", secret.describe());
    let listed = a.cli(&["secret", "list"]);
    assert!(listed.stdout.contains("0123…"), "{}", listed.describe());

    // A nonce from A, used on B: an Allocate success (0x0103), not 438.
    let (answer, _) = allocate(
        &UdpSocket::bind("127.0.0.1:0").unwrap(),
        a.primary,
        b.primary,
        1,
    );
    assert_eq!(
        answer,
        0x0103,
        "node B accepts node A's nonce\n{}",
        b.describe()
    );
    common::note(
        TEST,
        &format!(
            "a user added on node A was in node B's credentials {seen_after:?} later and relayed 20/20 through B; a secret added on B was listed on A; B took A's nonce"
        ),
    );
}

/// `farside drain --to B` on node A: coturn's uclient asks A for an allocation, gets 300 Try
/// Alternate naming B (after authenticating), allocates at B and relays there; an allocation
/// made at A before the drain is left to run. `farside drain --stop` makes A allocate again.
#[test]
fn a_draining_node_sends_uclient_to_the_other_node_which_relays() {
    const TEST: &str = "a_draining_node_sends_uclient_to_the_other_node_which_relays";
    if !common::require_tool(TEST, "turnutils_uclient") {
        return;
    }
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    let a = turn_node("drain-node-a", &db.url);
    let b = turn_node("drain-node-b", &db.url);
    add_user(&a, "alice", "wonderland", &[&a, &b]);
    // An allocation at A before the drain, left running.
    let before = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (answer, nonce) = allocate(&before, a.primary, a.primary, 1);
    assert_eq!(answer, 0x0103, "allocated at A");
    // The workers publish their allocations to the API about once a second.
    assert!(
        common::wait_until(Duration::from_secs(3), || a
            .cli(&["drain"])
            .stdout
            .contains("made here; 1 now")),
        "{}",
        a.cli(&["drain"]).describe()
    );
    let to = b.primary.to_string();
    let drain = a.cli(&["drain", "--to", &to]);
    assert_eq!(drain.code(), Some(0), "{}", drain.describe());
    assert_eq!(
        drain.stdout.trim(),
        format!("draining: new TURN allocations go to {to}; 1 allocations left here")
    );
    let peer = common::turn::Peer::start();
    let relayed = common::turn::uclient_paced(&a, &peer, 20).join().unwrap();
    let totals = common::turn::totals(&relayed.all());
    let redirected = common::counter(&a, "farside_turn_responses_total", "try_alternate");
    let at_b = common::counter(&b, "farside_turn_responses_total", "result=\"success\"");
    assert!(
        totals
            .as_ref()
            .is_some_and(|t| t.sent == 20 && t.received == 20),
        "uclient sent to A relays at B: {totals:?}\n{}\n{}\n{}",
        relayed.describe(),
        a.describe(),
        b.describe()
    );
    assert!(redirected >= 1.0, "A answered 300: {redirected}");
    assert!(at_b >= 1.0, "B allocated: {at_b}");
    // The allocation made at A before the drain goes on: a Refresh is answered.
    let refresh = common::turn::request(
        farside_stun::Method::REFRESH,
        3,
        Some(("alice", "wonderland", &nonce)),
        |_| {},
    );
    before.send_to(&refresh, a.primary).unwrap();
    let mut buf = [0u8; 1500];
    let n = before.recv(&mut buf).unwrap();
    assert_eq!(
        u16::from_be_bytes([buf[0], buf[1]]),
        0x0104,
        "a Refresh success at A: {:02x?}",
        &buf[..n]
    );
    let shown = a.cli(&["drain"]);
    assert!(
        shown.stdout.starts_with("draining: "),
        "{}",
        shown.describe()
    );
    let stop = a.cli(&["drain", "--stop"]);
    assert!(
        stop.stdout.starts_with("not draining: "),
        "{}",
        stop.describe()
    );
    let again = common::turn::uclient_paced(&a, &peer, 5).join().unwrap();
    assert_eq!(
        common::counter(&a, "farside_turn_responses_total", "try_alternate"),
        redirected,
        "no 300 once stopped\n{}",
        again.describe()
    );
    assert!(
        common::turn::totals(&again.all()).is_some_and(|t| t.received == 5),
        "relayed at A again\n{}",
        again.describe()
    );
    common::note(
        TEST,
        &format!(
            "node A draining to B: uclient got {redirected} 300 Try Alternate from A and relayed {:?} at B; the allocation made at A before stayed; after --stop, A allocated again",
            totals.map(|t| (t.sent, t.received))
        ),
    );
}

/// Nodes A and B with SIP on one database: alice registers through each (two contacts), and
/// each registration is stored under the node holding its flow. Every node lists both, with
/// their nodes (`farside sessions`); B, killed with `kill -9` and started again, restores its
/// own binding only (A's phone is A's to serve and ping), and A's writes never replaced it.
#[test]
fn each_node_restores_the_registrations_it_holds_and_lists_all() {
    const TEST: &str = "each_node_restores_the_registrations_it_holds_and_lists_all";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    // Two SIP ports and two phones', in a row of free ones.
    let base = common::free_ports(&[common::LOCALHOST], 4);
    let (sip_a, sip_b) = (base, base + 1);
    let off = "enabled = false";
    let a = sip_node("sip-node-a", &db.url, "node-a", sip_a, off);
    let b = sip_node("sip-node-b", &db.url, "node-b", sip_b, off);
    add_user(&a, "alice", "wonderland", &[&a, &b]);
    for (target, phone_port) in [(sip_a, base + 2), (sip_b, base + 3)] {
        let reg = sipp_register("alice", "wonderland", phone_port, target);
        assert_eq!(reg.code(), Some(0), "{}", reg.describe());
    }
    let nodes_listed = |server: &Server| -> Vec<(String, String)> {
        let out = server.cli(&["sessions", "--json"]);
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
        let mut listed: Vec<(String, String)> = json["registrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["node"].as_str().unwrap_or("?").to_owned(),
                    r["contact"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        listed.sort();
        listed
    };
    // Each registration reaches the store within the write-behind batch.
    assert!(
        common::wait_until(Duration::from_secs(3), || nodes_listed(&a).len() == 2),
        "{:?}",
        nodes_listed(&a)
    );
    let listed = nodes_listed(&a);
    assert_eq!(
        listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b"],
        "{listed:?}"
    );
    let kill = common::run_tool(
        "kill",
        &["-9".to_string(), b.pid().to_string()],
        Duration::from_secs(5),
    );
    assert_eq!(kill.code(), Some(0));
    assert!(common::wait_until(Duration::from_secs(5), || b
        .exited()
        .is_some()));
    let b2 = sip_node("sip-node-b-again", &db.url, "node-b", sip_b, off);
    assert!(
        common::wait_until(Duration::from_secs(5), || b2
            .logs()
            .contains("S405 SIP registrations restored from the store: 1")),
        "B restores its own binding only\n{}",
        b2.describe()
    );
    assert_eq!(nodes_listed(&b2), listed, "nothing lost, nothing replaced");
    common::note(
        TEST,
        &format!(
            "listed on both nodes: {listed:?}; node B after kill -9 restored 1 binding, its own"
        ),
    );
}

/// A call across nodes: alice (SIPp) registers through node A; bob (SIPp) calls her through
/// node B. B reads A's binding from the shared store, sends the INVITE to A with a Route
/// naming A and alice's flow token, and A sends it down alice's flow: INVITE, 180, 200, ACK,
/// BYE, 200 between the two SIPp phones. Only A, which holds her flow, pings her.
#[test]
fn a_call_through_node_b_reaches_a_phone_registered_through_node_a() {
    const TEST: &str = "a_call_through_node_b_reaches_a_phone_registered_through_node_a";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    let base = common::free_ports(&[common::LOCALHOST], 4);
    let (sip_a, sip_b, alice_port, bob_port) = (base, base + 1, base + 2, base + 3);
    let pings = "interval = \"1s\"\nmethod = \"CRLF\"\nall_contacts = true";
    let a = sip_node("call-node-a", &db.url, "node-a", sip_a, pings);
    let b = sip_node("call-node-b", &db.url, "node-b", sip_b, pings);
    add_user(&a, "alice", "wonderland", &[&a]);
    let reg = sipp_register("alice", "wonderland", alice_port, sip_a);
    assert_eq!(reg.code(), Some(0), "{}", reg.describe());
    // Node B reads the other nodes' bindings about once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    let (callee, caller) = std::thread::scope(|s| {
        let callee = s.spawn(|| {
            common::run_tool(
                "sipp",
                &common::sipp::callee("alice", "127.0.0.1", alice_port, 20),
                Duration::from_secs(30),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let caller = common::run_tool(
            "sipp",
            &common::sipp::caller(
                "alice",
                "example.org",
                "127.0.0.1",
                bob_port,
                &format!("127.0.0.1:{sip_b}"),
                20,
            ),
            Duration::from_secs(30),
        );
        (callee.join().unwrap(), caller)
    });
    assert_eq!(
        caller.code(),
        Some(0),
        "caller: {}\n{}\n{}",
        caller.describe(),
        b.describe(),
        a.describe()
    );
    assert_eq!(callee.code(), Some(0), "callee: {}", callee.describe());
    assert!(
        b.logs()
            .contains(&format!("forwarded to 127.0.0.1:{sip_a}")),
        "B sent the INVITE to A\n{}",
        b.describe()
    );
    // Only the node holding alice's flow pings it (every second here): A, never B.
    let sent = |n: &Server| common::counter(n, "farside_sip_keepalive_total", "event=\"sent\"");
    let (by_a, by_b) = (sent(&a), sent(&b));
    assert!(by_a >= 2.0 && by_b == 0.0, "pings sent: A {by_a}, B {by_b}");
    common::note(
        TEST,
        &format!(
            "bob called alice through node B; B sent it to node A, which sent it down alice's flow: INVITE/180/200/ACK/BYE/200 in {:?}; keep-alives sent to her by A {by_a}, by B {by_b}",
            started.elapsed()
        ),
    );
}

/// The database connections drop under a running node (PostgreSQL restarted, a network
/// failure: here every connection to the node's database is terminated). The node goes on
/// serving from memory: another phone registers at once; the registration writer's failed
/// write is logged once (S407), kept and written once it has connected again (S420); the
/// credential watcher connects again too, so a user added afterwards is served.
#[test]
fn a_node_rides_out_lost_database_connections() {
    const TEST: &str = "a_node_rides_out_lost_database_connections";
    if !common::require_tool(TEST, "sipp") {
        return;
    }
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    let base = common::free_ports(&[common::LOCALHOST], 4);
    let node = sip_node("lost-connections", &db.url, "n1", base, "enabled = false");
    add_user(&node, "alice", "wonderland", &[&node]);
    let register =
        |user: &str, password: &str, port: u16| sipp_register(user, password, port, base);
    let first = register("alice", "wonderland", base + 1);
    assert_eq!(first.code(), Some(0), "{}", first.describe());
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert!(
        cut >= 2,
        "the writer's and the watcher's connections: {cut}"
    );
    // Served from memory: a second phone of alice's is answered, and its binding (a new one,
    // written at once) reaches the store once the writer has connected again.
    let again = register("alice", "wonderland", base + 2);
    assert_eq!(again.code(), Some(0), "{}", again.describe());
    assert!(
        common::wait_until(Duration::from_secs(5), || node
            .logs()
            .contains("S420 the store takes writes again")),
        "{}",
        node.describe()
    );
    let logs = node.logs();
    assert_eq!(logs.matches("S407 ").count(), 1, "logged once\n{logs}");
    // The watcher connected again: a user added now is served.
    add_user(&node, "bob", "builder", &[&node]);
    let bob = register("bob", "builder", base + 3);
    assert_eq!(bob.code(), Some(0), "{}", bob.describe());
    common::note(
        TEST,
        &format!(
            "{cut} connections cut: alice's second phone answered from memory, its write failed once (S407) and went in on reconnecting (S420); bob, added afterwards, registered"
        ),
    );
}

/// A Digest nonce node A gave out is good on node B (their nonce key is the store's): a
/// REGISTER challenged by A and answered to B is accepted.
#[test]
fn a_digest_nonce_from_node_a_is_good_on_node_b() {
    const TEST: &str = "a_digest_nonce_from_node_a_is_good_on_node_b";
    let Some(db) = TestDatabase::new(TEST) else {
        return;
    };
    let base = common::free_ports(&[common::LOCALHOST], 2);
    let a = sip_node("nonce-node-a", &db.url, "node-a", base, "enabled = false");
    let b = sip_node(
        "nonce-node-b",
        &db.url,
        "node-b",
        base + 1,
        "enabled = false",
    );
    add_user(&a, "bob", "builder", &[&b]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:example.org SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-n{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@example.org>;tag=n1\r\nTo: <sip:bob@example.org>\r\n\
             Call-ID: nonce-across-nodes\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:bob@{me}>\r\n{auth}\
             Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 4096];
    socket
        .send_to(register(1, "").as_bytes(), ("127.0.0.1", base))
        .unwrap();
    let n = socket.recv(&mut buf).unwrap();
    let challenge = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let auth = common::register_credentials(&challenge, "bob", "builder", "example.org", Some(1));
    socket
        .send_to(register(2, &auth).as_bytes(), ("127.0.0.1", base + 1))
        .unwrap();
    let n = socket.recv(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        answer.starts_with("SIP/2.0 200 "),
        "node B takes node A's nonce: {answer}\n{}",
        b.describe()
    );
}
