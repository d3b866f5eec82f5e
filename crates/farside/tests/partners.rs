//! Partner mode on loopback: two Farside servers with one address each (127.0.0.1 and
//! 127.0.0.2, same two ports) answer RFC 5780 together. Checked with real clients (coturn's
//! `turnutils_natdiscovery`, the classic `stun` client, `farside probe`), with raw requests
//! (which socket answers), and with partner messages forged, replayed, stale or sent from the
//! wrong place, which a running server must refuse and count.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    ALT_IP, LOCALHOST, Server, ServerConfig, counter, metric_samples, require_tool, run_tool, stun,
};
use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, Outcome, Received, Transport,
};
use farside_stun::partner::{PartnerBook, PartnerConfig, PartnerWorker};
use farside_time::Timestamp;

const SECRET: &str = "loopback partner secret 0123456789";
const THIRD_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const FOURTH_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A partner-mode server on `ip`, `port` (alternate `port + 1`), with these partners.
fn partner_server(test: &str, ip: IpAddr, port: u16, admin: u16, partners: &[IpAddr]) -> Server {
    let list: Vec<String> = partners.iter().map(|p| format!("\"{p}\"")).collect();
    Server::start(
        &format!("{test}-{ip}"),
        ServerConfig::default()
            .listen_on(&[ip])
            .on_ports(port, admin)
            .with(&format!("alternate_port = {}", port + 1))
            .with(&format!("partners = [{}]", list.join(", ")))
            .with(&format!("partner_secrets = [\"{SECRET}\"]"))
            .with("partner_heartbeat = 1"),
    )
}

/// Free (port, port + 1) on every IP used here, and `admins` free admin ports.
fn ports(admins: u16) -> (u16, u16) {
    let stun = common::free_ports(&[LOCALHOST, ALT_IP, THIRD_IP, FOURTH_IP], 2);
    let admin = common::free_ports(&[LOCALHOST], admins);
    (stun, admin)
}

fn partner_up(server: &Server, partner: IpAddr) -> bool {
    let m = server.metrics().unwrap_or_default();
    metric_samples(&m, "farside_stun_partner_up")
        .iter()
        .any(|(labels, v)| labels.contains(&format!("\"{partner}\"")) && *v == 1.0)
}

/// Waits (bounded) until `server` has heard `partner`'s heartbeat.
fn wait_partner_up(server: &Server, partner: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !partner_up(server, partner) {
        assert!(
            Instant::now() < deadline,
            "partner {partner} never came up\n{}",
            server.describe()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A started pair, each the other's partner.
fn pair(test: &str) -> (Server, Server, u16) {
    let (port, admin) = ports(2);
    let a = partner_server(test, LOCALHOST, port, admin, &[ALT_IP]);
    let b = partner_server(test, ALT_IP, port, admin + 1, &[LOCALHOST]);
    wait_partner_up(&a, ALT_IP);
    wait_partner_up(&b, LOCALHOST);
    (a, b, port)
}

#[test]
fn change_ip_requests_are_answered_by_the_partner_from_its_own_address() {
    let test = "change_ip_requests_are_answered_by_the_partner_from_its_own_address";
    let (a, b, port) = pair(test);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    for (flags, from) in [
        (0, SocketAddr::new(LOCALHOST, port)),
        (stun::CHANGE_PORT, SocketAddr::new(LOCALHOST, port + 1)),
        (stun::CHANGE_IP, SocketAddr::new(ALT_IP, port)),
        (
            stun::CHANGE_IP | stun::CHANGE_PORT,
            SocketAddr::new(ALT_IP, port + 1),
        ),
    ] {
        let (msg, came_from) = stun::udp_binding(&sock, a.primary, &[stun::change_request(flags)])
            .unwrap_or_else(|| {
                panic!(
                    "flags {flags:#x}: no answer\n{}\n{}",
                    a.describe(),
                    b.describe()
                )
            });
        assert_eq!(
            came_from, from,
            "flags {flags:#x}: answered from the wrong socket"
        );
        assert_eq!(msg.xor_mapped(), Some(me), "flags {flags:#x}");
        assert_eq!(
            msg.addr(stun::RESPONSE_ORIGIN),
            Some(from),
            "flags {flags:#x}"
        );
        assert_eq!(
            msg.addr(stun::OTHER_ADDRESS),
            Some(SocketAddr::new(ALT_IP, port + 1)),
            "flags {flags:#x}: OTHER-ADDRESS names the partner"
        );
    }
    assert!(counter(&a, "farside_stun_partner_messages_total", "forwarded") >= 2.0);
    assert!(counter(&b, "farside_stun_partner_messages_total", "answered") >= 2.0);
    assert!(counter(&a, "farside_stun_partner_messages_total", "hello_heard") >= 1.0);
    a.assert_alive("after the change requests");
    b.assert_alive("after the change requests");
}

#[test]
fn natdiscovery_and_farside_probe_find_rfc5780_through_partners() {
    let test = "natdiscovery_and_farside_probe_find_rfc5780_through_partners";
    if !require_tool(test, "turnutils_natdiscovery") {
        return;
    }
    let (a, b, port) = pair(test);
    let p = port.to_string();
    for flag in ["-m", "-f"] {
        let out = run_tool(
            "turnutils_natdiscovery",
            &args(&[flag, "-L", "127.0.0.1", "-p", &p, "127.0.0.1"]),
            Duration::from_secs(60),
        );
        let text = out.all();
        assert!(!text.contains("STUN receive timeout"), "{}", out.describe());
        let want = if flag == "-m" {
            "No NAT! (Endpoint Independent Mapping)"
        } else {
            "NAT with Endpoint Independent Filtering!"
        };
        assert!(
            text.contains(want),
            "natdiscovery {flag}: wanted {want:?}\n{}\n{}\n{}",
            out.describe(),
            a.describe(),
            b.describe()
        );
    }

    let out = run_tool(
        env!("CARGO_BIN_EXE_farside"),
        &args(&[
            "probe",
            &a.primary.to_string(),
            "--json",
            "--local",
            "127.0.0.1",
        ]),
        Duration::from_secs(60),
    );
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("probe JSON: {e}\n{}", out.describe()));
    assert_eq!(json["rfc5780"], serde_json::Value::Bool(true), "{json}");
    assert_eq!(json["filtering"], "endpoint-independent", "{json}");
    assert_eq!(json["mapping"], "endpoint-independent", "{json}");
    assert_eq!(
        json["other_address"],
        format!("{ALT_IP}:{}", port + 1),
        "{json}"
    );
}

#[test]
fn classic_stun_client_sees_open_internet_through_partners() {
    let test = "classic_stun_client_sees_open_internet_through_partners";
    if !require_tool(test, "stun") {
        return;
    }
    let (a, b, port) = pair(test);
    let cport = common::free_ports(&[LOCALHOST], 2);
    let out = run_tool(
        "stun",
        &args(&[&a.primary.to_string(), "-v", "-p", &cport.to_string()]),
        Duration::from_secs(60),
    );
    let text = out.all();
    for line in [
        "test I = 1",
        "test II = 1",
        "test III = 1",
        "test I(2) = 1",
        "Primary: Open",
    ] {
        assert!(
            text.contains(line),
            "stun: wanted {line:?}\n{}\n{}\n{}",
            out.describe(),
            a.describe(),
            b.describe()
        );
    }
    assert!(
        text.contains(&format!("ChangedAddress = {ALT_IP}:{}", port + 1)),
        "{}",
        out.describe()
    );
}

/// A retransmission of a request lost with a dead partner reaches a live one; once the dead
/// one misses three heartbeats, first tries are answered too.
#[test]
fn a_dead_partner_is_skipped() {
    let test = "a_dead_partner_is_skipped";
    let (port, admin) = ports(3);
    let a = partner_server(test, LOCALHOST, port, admin, &[ALT_IP, THIRD_IP]);
    let b = partner_server(test, ALT_IP, port, admin + 1, &[LOCALHOST]);
    let c = partner_server(test, THIRD_IP, port, admin + 2, &[LOCALHOST]);
    wait_partner_up(&a, ALT_IP);
    wait_partner_up(&a, THIRD_IP);
    drop(c);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let change = [stun::change_request(stun::CHANGE_IP | stun::CHANGE_PORT)];
    // Right after the death: each request gets at most two tries, 300 ms apart.
    let mut first_try = 0;
    for _ in 0..6 {
        let req = stun::binding_request(&stun::new_tid(), &change);
        let answer = (0..2).find_map(|i| {
            stun::udp_exchange(&sock, a.primary, &req, Duration::from_millis(300)).map(|r| (i, r))
        });
        let Some((i, (_, from))) = answer else {
            panic!("no answer in two tries\n{}\n{}", a.describe(), b.describe());
        };
        assert_eq!(from, SocketAddr::new(ALT_IP, port + 1));
        first_try += usize::from(i == 0);
    }
    assert!(
        first_try < 6,
        "no request was sent to the dead partner: the test proves nothing"
    );

    // Three 1 s heartbeats later it is down, and first tries all go to the live partner.
    let deadline = Instant::now() + Duration::from_secs(10);
    while partner_up(&a, THIRD_IP) {
        assert!(Instant::now() < deadline, "partner 127.0.0.3 still up");
        thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..6 {
        let req = stun::binding_request(&stun::new_tid(), &change);
        let (_, from) = stun::udp_exchange(&sock, a.primary, &req, Duration::from_millis(1000))
            .unwrap_or_else(|| panic!("a first try was lost\n{}", a.describe()));
        assert_eq!(from, SocketAddr::new(ALT_IP, port + 1));
    }
    // The control plane notices within a second and says so once.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.logs().contains("S111 partner 127.0.0.3 stopped greeting") {
        assert!(Instant::now() < deadline, "no S111 line\n{}", a.describe());
        thread::sleep(Duration::from_millis(100));
    }
}

/// Builds partner forwards as a partner at 127.0.0.3 would, with any secret and clock.
struct FakePartner {
    server: BindingServer,
    worker: PartnerWorker,
    me: SocketAddr,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl FakePartner {
    fn new(port: u16, target: IpAddr, secret: &str) -> Self {
        let me = SocketAddr::new(THIRD_IP, port);
        let server = BindingServer::new(BindingConfig {
            alternate: Some(AlternateAddress {
                primary_ip: THIRD_IP,
                primary_port: port,
                alternate_ip: target,
                alternate_port: port + 1,
            }),
            software: None,
        });
        let book = Arc::new(PartnerBook::new(
            PartnerConfig {
                primary: me,
                alternate_port: port + 1,
                partners: vec![target],
                secrets: vec![secret.as_bytes().to_vec()],
                max_age: Duration::from_secs(10),
                rate_limit: 100,
                heartbeat: Duration::from_secs(1),
            },
            Timestamp::EPOCH,
        ));
        FakePartner {
            server,
            worker: PartnerWorker::new(book, unix_ms(), false),
            me,
        }
    }

    /// A signed forward asking the target to answer `client`'s change-IP request.
    fn forward(&mut self, client: SocketAddr, at_ms: u64) -> Vec<u8> {
        let req = stun::binding_request(
            &stun::new_tid(),
            &[stun::change_request(stun::CHANGE_IP | stun::CHANGE_PORT)],
        );
        let mut out = vec![0u8; 2048];
        let o = self.server.handle_at(
            Received {
                transport: Transport::Udp,
                local: self.me,
                remote: client,
                bytes: &req,
            },
            Some((&mut self.worker, Timestamp::from_unix_millis(at_ms))),
            &mut out,
        );
        let Outcome::Forward(m) = o else {
            panic!("not a forward: {o:?}")
        };
        out.truncate(m.len);
        out
    }
}

/// Waits up to `wait` for any datagram on `sock`.
fn heard(sock: &UdpSocket, wait: Duration) -> Option<SocketAddr> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf).ok().map(|(_, from)| from)
}

#[test]
fn forged_replayed_and_stale_partner_messages_are_refused() {
    let test = "forged_replayed_and_stale_partner_messages_are_refused";
    let (port, admin) = ports(1);
    // The server under test trusts 127.0.0.3 (played by this test) as a partner.
    let b = partner_server(test, ALT_IP, port, admin, &[THIRD_IP]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client_addr = client.local_addr().unwrap();
    let target = SocketAddr::new(ALT_IP, port);
    let mut genuine = FakePartner::new(port, ALT_IP, SECRET);
    let partner = UdpSocket::bind(SocketAddr::new(THIRD_IP, port)).unwrap();

    // A genuine forward is answered, from the target's alternate port, to the client.
    let fwd = genuine.forward(client_addr, unix_ms());
    partner.send_to(&fwd, target).unwrap();
    assert_eq!(
        heard(&client, Duration::from_secs(2)),
        Some(SocketAddr::new(ALT_IP, port + 1)),
        "the genuine forward was not answered\n{}",
        b.describe()
    );

    // The same bytes again: a replay.
    partner.send_to(&fwd, target).unwrap();
    // Signed with another secret: forged.
    let mut mallory = FakePartner::new(port, ALT_IP, "not the shared secret, wrong");
    let forged = mallory.forward(client_addr, unix_ms());
    partner.send_to(&forged, target).unwrap();
    // A genuine message from a host that is not a partner (127.0.0.4) and from a partner's
    // alternate port: forged as well.
    let fresh = genuine.forward(client_addr, unix_ms());
    UdpSocket::bind(SocketAddr::new(FOURTH_IP, port))
        .unwrap()
        .send_to(&fresh, target)
        .unwrap();
    UdpSocket::bind(SocketAddr::new(THIRD_IP, port + 1))
        .unwrap()
        .send_to(&fresh, target)
        .unwrap();
    // Signed a minute ago: stale.
    let old = genuine.forward(client_addr, unix_ms() - 60_000);
    partner.send_to(&old, target).unwrap();

    assert_eq!(
        heard(&client, Duration::from_secs(2)),
        None,
        "a refused partner message was answered\n{}",
        b.describe()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = [
        ("partner_replay", 1.0),
        ("partner_forged", 3.0),
        ("partner_stale", 1.0),
    ];
    loop {
        let got: Vec<f64> = want
            .iter()
            .map(|(r, _)| counter(&b, "farside_stun_dropped_total", &format!("\"{r}\"")))
            .collect();
        if want.iter().zip(&got).all(|((_, w), g)| g == w) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped counters {got:?}, want {want:?}\n{}",
            b.describe()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Each kind is logged once, with the key to check.
    let logs = b.logs();
    assert!(logs.contains("partner message replayed"), "{logs}");
    assert!(logs.contains("stun.partner_secrets"), "{logs}");

    // The fresh message, from the right place, still works: nothing above burnt its nonce.
    partner.send_to(&fresh, target).unwrap();
    assert!(
        heard(&client, Duration::from_secs(2)).is_some(),
        "{}",
        b.describe()
    );
    b.assert_alive("after forged partner messages");
}
