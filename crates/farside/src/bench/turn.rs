//! `farside bench turn`: a TURN relay load generator usable against any TURN server.
//!
//! It allocates `--clients` UDP allocations (ephemeral credentials from `--secret`, or one
//! long-term `--user`), binds a channel on each to its own echo peer, then sends RTP-sized
//! ChannelData open loop at `--rate` round trips per second; the peer echoes every datagram
//! back through the relay. It reports what was sent, what came back, and the loss. Each round
//! trip is two relayed messages (client → peer, peer → client).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use farside_io::Epoll;
use farside_stun::attributes::{
    ChannelNumber, ErrorCode, Lifetime, Nonce, Realm, RequestedTransport, Username, XorPeerAddress,
    XorRelayedAddress,
};
use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};

/// The channel every client binds to its peer.
const CHANNEL: u16 = 0x4000;

/// `farside bench turn` options.
#[derive(clap::Args, Debug)]
pub(crate) struct TurnArgs {
    /// The TURN server, `ip:port` (UDP).
    target: SocketAddr,
    /// Shared secret for ephemeral (REST) credentials, one username per client.
    #[arg(long, conflicts_with = "user")]
    secret: Option<String>,
    /// Long-term username (with --password), shared by all clients.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Long-term password.
    #[arg(long)]
    password: Option<String>,
    /// Allocations (each with its own client socket and channel).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Round trips per second, all clients together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Payload bytes per ChannelData message (172: an RTP packet of 20 ms of G.711).
    #[arg(long, default_value_t = 172)]
    size: usize,
    /// Address the echo peer binds (it must be one the server relays to).
    #[arg(long, default_value = "127.0.0.1")]
    peer: IpAddr,
    /// Allow a non-loopback target (the load is real traffic).
    #[arg(long)]
    allow_remote: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// A client's credentials.
struct Creds {
    user: String,
    password: String,
}

/// One allocation: its socket and the key for its requests.
struct Client {
    socket: UdpSocket,
}

pub(crate) fn run(args: TurnArgs) -> anyhow::Result<ExitCode> {
    if !args.target.ip().is_loopback() && !args.allow_remote {
        bail!(
            "{}: not a loopback address (use --allow-remote to load a remote server)",
            args.target
        );
    }
    if !(1..=10_000).contains(&args.clients) {
        bail!("--clients must be 1..=10000");
    }
    if !(1..=1400).contains(&args.size) {
        bail!("--size must be 1..=1400");
    }
    let creds = |i: usize| -> anyhow::Result<Creds> {
        match (&args.secret, &args.user, &args.password) {
            (Some(secret), _, _) => {
                let expiry = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
                let user = format!("{expiry}:bench{i}");
                Ok(Creds {
                    password: farside_turn::rest_password(secret.as_bytes(), &user),
                    user,
                })
            }
            (None, Some(u), Some(p)) => Ok(Creds {
                user: u.clone(),
                password: p.clone(),
            }),
            _ => bail!("give --secret, or --user and --password"),
        }
    };

    // The echo peers: one socket each, so every client's channel has a peer of its own.
    let bind_ip = if args.target.is_ipv4() {
        "127.0.0.1"
    } else {
        "::1"
    };
    let stop = Arc::new(AtomicBool::new(false));
    let peers: Vec<UdpSocket> = (0..args.clients.min(64))
        .map(|_| UdpSocket::bind(SocketAddr::new(args.peer, 0)))
        .collect::<Result<_, _>>()
        .context("bind the echo peers")?;
    let peer_addrs: Vec<SocketAddr> = peers
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let echoed = Arc::new(AtomicU64::new(0));
    let echo = {
        let (stop, echoed) = (Arc::clone(&stop), Arc::clone(&echoed));
        std::thread::Builder::new()
            .name("bench-peer".into())
            .spawn(move || echo_peers(peers, &stop, &echoed))?
    };

    let mut clients = Vec::with_capacity(args.clients);
    let started = Instant::now();
    for i in 0..args.clients {
        let socket = UdpSocket::bind((bind_ip, 0)).context("bind a client socket")?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let c = creds(i)?;
        let peer = peer_addrs[i % peer_addrs.len()];
        setup(&socket, args.target, &c, peer).with_context(|| format!("client {i}"))?;
        socket.set_nonblocking(true)?;
        clients.push(Client { socket });
    }
    let setup_time = started.elapsed();

    // Load: open loop, round robin over the clients; a receiver thread counts the echoes.
    let received = Arc::new(AtomicU64::new(0));
    let receiver = {
        let fds: Vec<_> = clients
            .iter()
            .map(|c| c.socket.try_clone())
            .collect::<Result<_, _>>()?;
        let (stop, received) = (Arc::new(AtomicBool::new(false)), Arc::clone(&received));
        let stop2 = Arc::clone(&stop);
        let h = std::thread::Builder::new()
            .name("bench-recv".into())
            .spawn(move || receive(fds, &stop2, &received))?;
        (h, stop)
    };
    let mut message = vec![0u8; 4 + args.size];
    message[..2].copy_from_slice(&CHANNEL.to_be_bytes());
    message[2..4].copy_from_slice(&(args.size as u16).to_be_bytes());
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let load_start = Instant::now();
    let duration = Duration::from_secs_f64(args.seconds);
    let mut next = 0usize;
    loop {
        let elapsed = load_start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (args.rate as f64 * elapsed.as_secs_f64()) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        while sent < due {
            let c = &clients[next];
            next = (next + 1) % clients.len();
            if let Some(seq) = message.get_mut(4..12) {
                seq.copy_from_slice(&sent.to_be_bytes());
            }
            if c.socket.send_to(&message, args.target).is_err() {
                send_errors += 1;
            }
            sent += 1;
        }
    }
    let load_time = load_start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    receiver.1.store(true, Relaxed);
    let _ = receiver.0.join();
    stop.store(true, Relaxed);
    let _ = echo.join();

    // Delete the allocations (LIFETIME 0), best effort.
    for (i, c) in clients.iter().enumerate() {
        let _ = c.socket.set_nonblocking(false);
        if let Ok(cr) = creds(i) {
            let _ = delete(&c.socket, args.target, &cr);
        }
    }

    let got = received.load(Relaxed);
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent.saturating_sub(got)) as f64 / sent as f64
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "clients": args.clients,
                "rate": args.rate,
                "seconds": load_time.as_secs_f64(),
                "size": args.size,
                "sent": sent,
                "peer_echoed": echoed.load(Relaxed),
                "received": got,
                "loss_pct": loss,
                "send_errors": send_errors,
                "setup_seconds": setup_time.as_secs_f64(),
            })
        );
    } else {
        println!(
            "{} clients, {:.1} s at {}/s: sent {sent}, peer echoed {}, received {got}, loss {loss:.3} % (setup {:.2} s)",
            args.clients,
            load_time.as_secs_f64(),
            args.rate,
            echoed.load(Relaxed),
            setup_time.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn echo_peers(peers: Vec<UdpSocket>, stop: &AtomicBool, echoed: &AtomicU64) {
    let Ok(mut ep) = Epoll::new() else { return };
    for (i, p) in peers.iter().enumerate() {
        let _ = p.set_nonblocking(true);
        let _ = ep.add(p.as_raw_fd(), i as u64);
    }
    let mut buf = [0u8; 2048];
    let mut ready = Vec::new();
    while !stop.load(Relaxed) {
        ready.clear();
        let _ = ep.wait(Duration::from_millis(100), |t| ready.push(t as usize));
        for &i in &ready {
            let Some(p) = peers.get(i) else { continue };
            while let Ok((n, from)) = p.recv_from(&mut buf) {
                if p.send_to(&buf[..n], from).is_ok() {
                    echoed.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

fn receive(sockets: Vec<UdpSocket>, stop: &AtomicBool, received: &AtomicU64) {
    let Ok(mut ep) = Epoll::new() else { return };
    for (i, s) in sockets.iter().enumerate() {
        let _ = s.set_nonblocking(true);
        let _ = ep.add(s.as_raw_fd(), i as u64);
    }
    let mut buf = [0u8; 2048];
    let mut ready = Vec::new();
    while !stop.load(Relaxed) {
        ready.clear();
        let _ = ep.wait(Duration::from_millis(50), |t| ready.push(t as usize));
        for &i in &ready {
            let Some(s) = sockets.get(i) else { continue };
            while let Ok(n) = s.recv(&mut buf) {
                if n >= 4 && u16::from_be_bytes([buf[0], buf[1]]) == CHANNEL {
                    received.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Sends `req` and waits for the response with its transaction id.
fn exchange(socket: &UdpSocket, to: SocketAddr, req: &[u8]) -> anyhow::Result<Vec<u8>> {
    let tid = req.get(8..20).context("short request")?.to_vec();
    for _ in 0..3 {
        socket.send_to(req, to)?;
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) if buf.get(8..20) == Some(&tid[..]) => return Ok(buf[..n].to_vec()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    bail!("no answer from {to}")
}

fn tid() -> TransactionId {
    let a = crate::seed::fresh_seed().to_le_bytes();
    let b = crate::seed::fresh_seed().to_le_bytes();
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&a);
    t[8..].copy_from_slice(&b[..4]);
    TransactionId(t)
}

/// A request; with `auth` = (creds, realm, nonce) it carries long-term integrity.
fn request(
    method: Method,
    auth: Option<(&Creds, &str, &str)>,
    body: impl FnOnce(&mut MessageBuilder<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 512];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Class::Request, method),
        Header::new(tid()),
    )
    .map_err(|_| anyhow::anyhow!("buffer"))?;
    body(&mut b)?;
    if let Some((c, realm, nonce)) = auth {
        b.add(&Username(&c.user))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        b.add(&Realm(realm))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        b.add(&Nonce(nonce))
            .map_err(|_| anyhow::anyhow!("buffer"))?;
        let key = farside_stun::long_term_key_md5(&c.user, realm, &c.password)
            .map_err(|e| anyhow::anyhow!("password: {e}"))?;
        b.add_message_integrity(&key)
            .map_err(|_| anyhow::anyhow!("buffer"))?;
    }
    let n = b.finish();
    buf.truncate(n);
    Ok(buf)
}

fn error_code(m: &Message<'_>) -> Option<u16> {
    m.attribute::<ErrorCode>()
        .and_then(Result::ok)
        .map(|e| e.code)
}

/// Allocate (through the 401 challenge) and bind the channel to `peer`.
fn setup(
    socket: &UdpSocket,
    server: SocketAddr,
    c: &Creds,
    peer: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let transport = |b: &mut MessageBuilder<'_>| {
        b.add(&RequestedTransport(17))
            .map_err(|_| anyhow::anyhow!("buffer"))
    };
    let challenge = exchange(socket, server, &request(Method::ALLOCATE, None, transport)?)?;
    let m = Message::parse(&challenge).map_err(|_| anyhow::anyhow!("bad answer"))?;
    let realm = m
        .attribute::<Realm>()
        .and_then(Result::ok)
        .context("no REALM in the challenge")?
        .0
        .to_owned();
    let nonce = m
        .attribute::<Nonce>()
        .and_then(Result::ok)
        .context("no NONCE in the challenge")?
        .0
        .to_owned();
    let ok = exchange(
        socket,
        server,
        &request(Method::ALLOCATE, Some((c, &realm, &nonce)), transport)?,
    )?;
    let m = Message::parse(&ok).map_err(|_| anyhow::anyhow!("bad answer"))?;
    if m.class() != Class::SuccessResponse {
        bail!("Allocate refused: {:?}", error_code(&m));
    }
    let relayed = m
        .attribute::<XorRelayedAddress>()
        .and_then(Result::ok)
        .context("no XOR-RELAYED-ADDRESS")?
        .0;
    let bind = exchange(
        socket,
        server,
        &request(Method::CHANNEL_BIND, Some((c, &realm, &nonce)), |b| {
            b.add(&ChannelNumber(CHANNEL))
                .map_err(|_| anyhow::anyhow!("buffer"))?;
            b.add(&XorPeerAddress(peer))
                .map_err(|_| anyhow::anyhow!("buffer"))
        })?,
    )?;
    let m = Message::parse(&bind).map_err(|_| anyhow::anyhow!("bad answer"))?;
    if m.class() != Class::SuccessResponse {
        bail!(
            "ChannelBind refused: {:?} (does the server relay to {}?)",
            error_code(&m),
            peer
        );
    }
    Ok(relayed)
}

fn delete(socket: &UdpSocket, server: SocketAddr, c: &Creds) -> anyhow::Result<()> {
    let lifetime =
        |b: &mut MessageBuilder<'_>| b.add(&Lifetime(0)).map_err(|_| anyhow::anyhow!("buffer"));
    let first = exchange(socket, server, &request(Method::REFRESH, None, lifetime)?)?;
    let m = Message::parse(&first).map_err(|_| anyhow::anyhow!("bad answer"))?;
    let (Some(Ok(Realm(realm))), Some(Ok(Nonce(nonce)))) =
        (m.attribute::<Realm>(), m.attribute::<Nonce>())
    else {
        return Ok(());
    };
    let _ = exchange(
        socket,
        server,
        &request(Method::REFRESH, Some((c, realm, nonce)), lifetime)?,
    )?;
    Ok(())
}
