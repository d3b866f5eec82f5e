//! TCP allocations (RFC 6062) byte for byte: a client made of the codec's builder speaks to
//! a running Farside over real kernel TCP, with the test's own TCP peers. uclient `-T` in
//! `turn.rs` is the third-party check; this one asserts what uclient cannot see: the exact
//! bytes both ways (a megabyte each, more than the relay queues, so backpressure is
//! exercised), bytes a peer sends before the bind, the 446 and 447 refusals, the relayed
//! address as the connection's source, and closes passed on.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::turn::{REALM, nonce_of, request, rest_credentials};
use common::{LOCALHOST, Server, ServerConfig};
use farside_stun::attributes::{
    ConnectionId, ErrorCode, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use farside_stun::{Class, Message, Method};

const SECRET: &str = "tcp relay test secret 0123456789";
const MEGABYTE: usize = 1 << 20;

fn server(test: &str, turn: &str) -> Server {
    let ports = common::free_ports(&[LOCALHOST], 100);
    Server::start(
        test,
        ServerConfig::default().with_table(&format!(
            "[turn]\nenabled = true\nrealm = \"{REALM}\"\nrelay_ports = \"{}-{}\"\nauth_secrets = [\"{SECRET}\"]\nallowed_peers = [\"127.0.0.0/8\"]\n{turn}",
            ports,
            ports + 99
        )),
    )
}

/// A TCP connection to the server that speaks STUN frames.
struct Control {
    stream: TcpStream,
    user: String,
    password: String,
    nonce: String,
    tid: u32,
}

impl Control {
    fn connect(server: &Server) -> Control {
        let stream = TcpStream::connect(server.primary).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (user, password) = rest_credentials(SECRET, "alice");
        Control {
            stream,
            user,
            password,
            nonce: String::new(),
            tid: 0,
        }
    }

    /// Sends a `method` request (authenticated once a nonce is known) and reads the answer.
    fn ask(
        &mut self,
        method: Method,
        attrs: impl Fn(&mut farside_stun::MessageBuilder<'_>),
    ) -> Vec<u8> {
        loop {
            self.tid += 1;
            let auth = (!self.nonce.is_empty()).then_some((
                self.user.as_str(),
                self.password.as_str(),
                self.nonce.as_str(),
            ));
            let req = request(method, self.tid, auth, &attrs);
            self.stream.write_all(&req).unwrap();
            let reply = self.read_message();
            let code = error_code(&reply);
            if code == Some(401) && self.nonce.is_empty() {
                self.nonce = nonce_of(&reply);
                continue;
            }
            return reply;
        }
    }

    /// One STUN message from the stream.
    fn read_message(&mut self) -> Vec<u8> {
        let mut head = [0u8; 20];
        self.stream.read_exact(&mut head).unwrap();
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let mut msg = head.to_vec();
        msg.resize(20 + len, 0);
        self.stream.read_exact(&mut msg[20..]).unwrap();
        msg
    }
}

fn error_code(msg: &[u8]) -> Option<u16> {
    Message::parse(msg)
        .unwrap()
        .attribute::<ErrorCode>()
        .and_then(Result::ok)
        .map(|e| e.code)
}

fn tcp_allocation(c: &mut Control) -> Vec<u8> {
    c.ask(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(6)).unwrap();
        b.add(&Lifetime(600)).unwrap();
    })
}

/// Connect (RFC 6062 §5.2) to the test's listener `peer`: the CONNECTION-ID, the peer's end
/// of the connection, and where it came from.
fn connect(control: &mut Control, peer: &TcpListener) -> (ConnectionId, TcpStream, SocketAddr) {
    let peer_addr = peer.local_addr().unwrap();
    let reply = control.ask(Method::CONNECT, |b| {
        b.add(&XorPeerAddress(peer_addr)).unwrap()
    });
    let id = Message::parse(&reply)
        .unwrap()
        .attribute::<ConnectionId>()
        .expect("CONNECTION-ID")
        .unwrap();
    let (peer_side, from) = peer.accept().unwrap();
    (id, peer_side, from)
}

/// A fresh data connection bound to `id` with ConnectionBind (RFC 6062 §5.4).
fn bind(server: &Server, control: &Control, id: ConnectionId) -> TcpStream {
    let mut data = Control::connect(server);
    data.user = control.user.clone();
    data.password = control.password.clone();
    data.nonce = control.nonce.clone();
    let reply = data.ask(Method::CONNECTION_BIND, |b| b.add(&id).unwrap());
    let m = Message::parse(&reply).unwrap();
    assert_eq!(
        (m.class(), m.method()),
        (Class::SuccessResponse, Method::CONNECTION_BIND),
        "{:?}",
        error_code(&reply)
    );
    data.stream
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..MEGABYTE)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8)
        .collect()
}

/// Sends `out` on `a` while reading as many bytes back from it, in two threads.
fn exchange(mut a: TcpStream, out: Vec<u8>) -> (TcpStream, Vec<u8>) {
    let mut writer = a.try_clone().unwrap();
    let t = std::thread::spawn(move || writer.write_all(&out).unwrap());
    let mut got = vec![0u8; MEGABYTE];
    a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    a.read_exact(&mut got).unwrap();
    t.join().unwrap();
    (a, got)
}

#[test]
fn connect_bind_and_splice_exact_bytes_both_ways() {
    let test = "connect_bind_and_splice_exact_bytes_both_ways";
    let server = server(test, "");
    let mut control = Control::connect(&server);
    let reply = tcp_allocation(&mut control);
    let relayed = Message::parse(&reply)
        .unwrap()
        .attribute::<XorRelayedAddress>()
        .expect("XOR-RELAYED-ADDRESS")
        .unwrap()
        .0;

    // Connect needs no permission, but a closed port is a 447 (RFC 6062 §5.2).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let reply = control.ask(Method::CONNECT, |b| b.add(&XorPeerAddress(closed)).unwrap());
    assert_eq!(error_code(&reply), Some(447));

    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let (id, peer_side, from) = connect(&mut control, &peer);
    assert_eq!(
        from, relayed,
        "the connection comes from the relayed address"
    );
    let again = control.ask(Method::CONNECT, |b| {
        b.add(&XorPeerAddress(peer_addr)).unwrap()
    });
    assert_eq!(error_code(&again), Some(446));

    // A megabyte each way at once: more than the relay queues (256 KiB), so each side is
    // held back while the other catches up, and nothing is lost or reordered.
    let data = bind(&server, &control, id);
    let (to_peer, to_client) = (pattern(1), pattern(2));
    let expect_at_peer = to_peer.clone();
    let at_peer = std::thread::spawn(move || exchange(peer_side, to_client));
    let (data, at_client) = exchange(data, to_peer);
    assert!(
        at_client == pattern(2),
        "the client got the peer's bytes exactly"
    );
    let (mut peer_side, got) = at_peer.join().unwrap();
    assert!(
        got == expect_at_peer,
        "the peer got the client's bytes exactly"
    );
    // The client data connection closes: so does the peer's.
    drop(data);
    let mut rest = Vec::new();
    assert!(
        matches!(peer_side.read_to_end(&mut rest), Ok(0)),
        "{rest:?}"
    );

    // Over UDP a TCP allocation is a 400 (RFC 6062 §5.1).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (user, password) = rest_credentials(SECRET, "bob");
    let attrs = |b: &mut farside_stun::MessageBuilder<'_>| b.add(&RequestedTransport(6)).unwrap();
    udp.send_to(&request(Method::ALLOCATE, 1, None, attrs), server.primary)
        .unwrap();
    let mut buf = [0u8; 1500];
    let n = udp.recv(&mut buf).unwrap();
    let nonce = nonce_of(&buf[..n]);
    let req = request(Method::ALLOCATE, 2, Some((&user, &password, &nonce)), attrs);
    udp.send_to(&req, server.primary).unwrap();
    let n = udp.recv(&mut buf).unwrap();
    assert_eq!(error_code(&buf[..n]), Some(400));
    server.assert_alive("after the splice");
}

#[test]
fn a_peer_connecting_in_is_announced_and_its_early_bytes_kept() {
    let test = "a_peer_connecting_in_is_announced_and_its_early_bytes_kept";
    let server = server(test, "");
    let mut control = Control::connect(&server);
    let reply = tcp_allocation(&mut control);
    let relayed = Message::parse(&reply)
        .unwrap()
        .attribute::<XorRelayedAddress>()
        .unwrap()
        .unwrap()
        .0;
    // Without a permission the relay closes the peer's connection at once (RFC 6062 §5.3).
    let mut refused = TcpStream::connect(relayed).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(refused.read(&mut byte), Ok(0) | Err(_)),
        "closed without a permission"
    );
    let reply = control.ask(Method::CREATE_PERMISSION, |b| {
        b.add(&XorPeerAddress(SocketAddr::new(LOCALHOST, 1)))
            .unwrap()
    });
    assert_eq!(
        Message::parse(&reply).unwrap().class(),
        Class::SuccessResponse
    );

    let mut peer = TcpStream::connect(relayed).unwrap();
    peer.write_all(b"early bytes").unwrap();
    let attempt = control.read_message();
    let m = Message::parse(&attempt).unwrap();
    assert_eq!(
        (m.class(), m.method()),
        (Class::Indication, Method::CONNECTION_ATTEMPT)
    );
    assert_eq!(
        m.attribute::<XorPeerAddress>().unwrap().unwrap().0,
        peer.local_addr().unwrap()
    );
    let id = m.attribute::<ConnectionId>().unwrap().unwrap();
    let mut data = bind(&server, &control, id);
    data.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 11];
    data.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"early bytes", "kept until the bind, then delivered");
    data.write_all(b"hello peer").unwrap();
    let mut got = [0u8; 10];
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello peer");

    // The peer closes: the client's data connection closes too.
    drop(peer);
    let mut rest = Vec::new();
    assert!(matches!(data.read_to_end(&mut rest), Ok(0)), "{rest:?}");

    // The control connection closes: the allocation, its listener and connections go.
    drop(control);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect_timeout(&relayed, Duration::from_secs(2)).is_err(),
        "the relayed address no longer listens"
    );
    server.assert_alive("after the closes");
}

/// A Connect to a fresh listener of the test's, whose connections get a receive buffer of
/// `rcvbuf` bytes if given (a slow peer); returns the client's data connection and the peer's
/// end.
fn spliced(
    server: &Server,
    control: &mut Control,
    rcvbuf: Option<usize>,
) -> (TcpStream, TcpStream) {
    let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        peer.set_recv_buffer_size(n).unwrap();
    }
    peer.bind(&SocketAddr::new(LOCALHOST, 0).into()).unwrap();
    peer.listen(4).unwrap();
    let peer: TcpListener = peer.into();
    let (id, peer_side, _) = connect(control, &peer);
    peer_side
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let data = bind(server, control, id);
    data.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (data, peer_side)
}

#[test]
fn a_side_that_closes_hands_over_everything_first() {
    let test = "a_side_that_closes_hands_over_everything_first";
    let server = server(test, "");
    let mut control = Control::connect(&server);
    tcp_allocation(&mut control);

    // The client sends a mebibyte and closes at once; the peer reads slowly through a small
    // window, so the relay holds the client back on the way. The peer reads all of it, then
    // the end.
    let (mut data, mut peer_side) = spliced(&server, &mut control, Some(4096));
    let sending = std::thread::spawn(move || {
        data.write_all(&pattern(3)).unwrap();
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match peer_side.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sending.join().unwrap();
    assert!(
        got == pattern(3),
        "the peer got {} of {MEGABYTE} bytes",
        got.len()
    );

    // The peer does the same the other way.
    let (mut data, mut peer_side) = spliced(&server, &mut control, None);
    let sending = std::thread::spawn(move || {
        peer_side.write_all(&pattern(4)).unwrap();
    });
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    sending.join().unwrap();
    assert!(
        got == pattern(4),
        "the client got {} of {MEGABYTE} bytes",
        got.len()
    );
    server.assert_alive("after the closes");
}

/// CPU time the process used so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_reset_while_held_back_leaves_the_server_idle() {
    let test = "a_reset_while_held_back_leaves_the_server_idle";
    let server = server(test, "");
    let mut control = Control::connect(&server);
    tcp_allocation(&mut control);
    // The peer never reads: the client's bytes pile up until the relay stops reading it.
    let (data, _peer_side) = spliced(&server, &mut control, None);
    data.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut sent = 0usize;
    while std::time::Instant::now() < until {
        match (&data).write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(sent > 256 * 1024, "only {sent} bytes went out");
    // Then the client resets its connection: nobody reads the relay's side of it any more,
    // and that must not wake the relay's loop again and again.
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(server.pid()) - before;
    assert!(used < 50, "{used} ticks of CPU in 2 s of silence");
    server.assert_alive("after the reset");
}

#[test]
fn tcp_relay_off_answers_442() {
    let server = server("tcp_relay_off_answers_442", "tcp_relay = false\n");
    let mut control = Control::connect(&server);
    assert_eq!(error_code(&tcp_allocation(&mut control)), Some(442));
}
