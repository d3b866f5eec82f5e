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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use farside_io::{
    Epoll, RecvBatch, SendBatch, SocketOptions, bind_udp, recv_batch, send_batch, socket_stats,
};

use crate::turn_client::{AllocationMismatch, Creds, delete, setup};

/// Room for one run of datagrams for one destination, sent as one segmented send.
const RUN_BYTES: usize = 16 * 1024;

/// Datagrams per `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;

/// The channel every client binds to its peer.
const CHANNEL: u16 = 0x4000;

/// The generator's sockets: room to ride out its own pauses, so that what it drops while it
/// cannot keep up is rare, and counted (`generator_drops`) rather than blamed on the server.
const SOCKET_OPTIONS: SocketOptions = SocketOptions {
    reuse_port: false,
    recv_buffer: 4 << 20,
    send_buffer: 4 << 20,
    packet_info: false,
};

/// `farside bench turn` options.
#[derive(clap::Args, Debug)]
pub struct TurnArgs {
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

/// One allocation: its socket and the credentials it was made with (an ephemeral username
/// names its expiry, so a later one would be another user: 441).
struct Client {
    socket: UdpSocket,
    creds: Creds,
}

pub(crate) fn run(args: TurnArgs) -> anyhow::Result<ExitCode> {
    if !args.target.ip().is_loopback() && !args.allow_remote {
        bail!(
            "{}: not a loopback address (use --allow-remote to load a remote server)",
            args.target
        );
    }
    // Each client is a socket here and a relay socket at the server: the open-file limit
    // binds first (bench/soak.sh holds as many as it allows).
    if !(1..=100_000).contains(&args.clients) {
        bail!("--clients must be 1..=100000");
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
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    };
    let peers: Vec<UdpSocket> = (0..args.clients.min(64))
        .map(|_| bind_udp(SocketAddr::new(args.peer, 0), SOCKET_OPTIONS))
        .collect::<Result<_, _>>()
        .context("bind the echo peers")?;
    let peer_addrs: Vec<SocketAddr> = peers
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let mut clients = Vec::with_capacity(args.clients);
    let started = Instant::now();
    for i in 0..args.clients {
        let c = creds(i)?;
        let peer = peer_addrs[i % peer_addrs.len()];
        // A 437 means the kernel gave this socket the port of an earlier run's client whose
        // allocation still lives: another port will do.
        let mut tries = 0;
        let socket = loop {
            let socket = bind_udp(SocketAddr::new(bind_ip, 0), SOCKET_OPTIONS)
                .context("bind a client socket")?;
            socket.set_nonblocking(false)?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            match setup(&socket, args.target, &c, CHANNEL, peer) {
                Ok(_) => break socket,
                Err(e) if e.is::<AllocationMismatch>() && tries < 3 => tries += 1,
                Err(e) => return Err(e.context(format!("client {i}"))),
            }
        };
        socket.set_nonblocking(true)?;
        clients.push(Client { socket, creds: c });
    }
    let setup_time = started.elapsed();

    // Load: open loop, round robin over the clients, from one thread that also echoes as the
    // peers and counts what comes back, busy-polling its own core with batched system calls
    // (`sendmmsg` per client socket, `recvmmsg` and `sendmmsg` per peer socket): a generator
    // that costs less per message than the server it loads.
    let mut message = vec![0u8; 4 + args.size];
    message[..2].copy_from_slice(&CHANNEL.to_be_bytes());
    message[2..4].copy_from_slice(&(args.size as u16).to_be_bytes());
    let mut load = Load::new(&clients, &peers, message.len())?;
    let load_start = Instant::now();
    let duration = Duration::from_secs_f64(args.seconds);
    let mut next = 0usize;
    let mut sent = 0u64;
    loop {
        let elapsed = load_start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (args.rate as f64 * elapsed.as_secs_f64()) as u64;
        while sent < due {
            let i = next;
            next = (next + 1) % clients.len();
            if let Some(seq) = message.get_mut(4..12) {
                seq.copy_from_slice(&sent.to_be_bytes());
            }
            load.queue(&clients, i, args.target, &message);
            sent += 1;
        }
        load.flush(&clients);
        load.poll(&clients, &peers);
    }
    let load_time = load_start.elapsed();
    // Stragglers still in flight.
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_millis(500) {
        load.poll(&clients, &peers);
    }
    let (got, echoed, send_errors) = (load.received, load.echoed, load.send_errors);
    // What the kernel dropped at the generator's own sockets (it did not read them in time):
    // that loss is the generator's, not the server's.
    let generator_drops: u64 = clients
        .iter()
        .map(|c| &c.socket)
        .chain(&peers)
        .map(|s| socket_stats(s).map(|st| st.drops).unwrap_or(0))
        .sum();

    // Delete the allocations (LIFETIME 0), best effort.
    for c in &clients {
        let _ = c.socket.set_nonblocking(false);
        let _ = delete(&c.socket, args.target, &c.creds);
    }

    let loss = super::measure::pct(sent.saturating_sub(got), sent);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "clients": args.clients,
                "rate": args.rate,
                "seconds": load_time.as_secs_f64(),
                "size": args.size,
                "sent": sent,
                "peer_echoed": echoed,
                "received": got,
                "loss_pct": loss,
                "send_errors": send_errors,
                "generator_drops": generator_drops,
                "setup_seconds": setup_time.as_secs_f64(),
            })
        );
    } else {
        println!(
            "{} clients, {:.1} s at {}/s: sent {sent}, peer echoed {}, received {got}, loss {loss:.3} %, generator drops {generator_drops} (setup {:.2} s)",
            args.clients,
            load_time.as_secs_f64(),
            args.rate,
            echoed,
            setup_time.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The load loop's sockets and buffers.
struct Load {
    epoll: Epoll,
    /// Per client socket: ChannelData waiting to go.
    out: Vec<SendBatch>,
    rx: RecvBatch,
    echo: SendBatch,
    received: u64,
    echoed: u64,
    send_errors: u64,
}

impl Load {
    /// Client sockets are tokens `0..clients`, peer sockets follow.
    fn new(clients: &[Client], peers: &[UdpSocket], size: usize) -> anyhow::Result<Load> {
        let epoll = Epoll::new()?;
        for (i, c) in clients.iter().enumerate() {
            epoll.add(c.socket.as_raw_fd(), i as u64)?;
        }
        for (i, p) in peers.iter().enumerate() {
            p.set_nonblocking(true)?;
            epoll.add(p.as_raw_fd(), (clients.len() + i) as u64)?;
        }
        Ok(Load {
            epoll,
            // Runs for one destination leave as segmented sends (as Farside's relay sends
            // them): the server still receives one datagram per message, and the generator
            // spends less of its core per message than a server it measures.
            out: (0..clients.len())
                .map(|_| SendBatch::new(BATCH, RUN_BYTES.max(size)).with_segmentation())
                .collect(),
            rx: RecvBatch::new(BATCH, 2048),
            echo: SendBatch::new(BATCH, RUN_BYTES).with_segmentation(),
            received: 0,
            echoed: 0,
            send_errors: 0,
        })
    }

    fn queue(&mut self, clients: &[Client], i: usize, to: SocketAddr, message: &[u8]) {
        if self.out[i].is_full() {
            self.send(clients, i);
        }
        self.out[i].push(to, |buf| {
            buf.get_mut(..message.len())?.copy_from_slice(message);
            Some(message.len())
        });
    }

    fn flush(&mut self, clients: &[Client]) {
        for i in 0..self.out.len() {
            if !self.out[i].is_empty() {
                self.send(clients, i);
            }
        }
    }

    fn send(&mut self, clients: &[Client], i: usize) {
        let queued = self.out[i].len();
        let sent = send_batch(&clients[i].socket, &mut self.out[i]);
        self.send_errors += (queued - sent) as u64;
    }

    /// Takes what arrived without waiting: echoes at the peers, counts at the clients.
    fn poll(&mut self, clients: &[Client], peers: &[UdpSocket]) {
        let mut ready = [0u64; 64];
        let mut n = 0;
        let _ = self.epoll.wait(Duration::ZERO, |t| {
            if n < ready.len() {
                ready[n] = t;
                n += 1;
            }
        });
        for &t in &ready[..n] {
            let t = t as usize;
            if let Some(c) = clients.get(t) {
                if matches!(recv_batch(&c.socket, &mut self.rx), Ok(k) if k > 0) {
                    self.received += self
                        .rx
                        .iter()
                        .filter(|d| {
                            d.payload.len() >= 4
                                && u16::from_be_bytes([d.payload[0], d.payload[1]]) == CHANNEL
                        })
                        .count() as u64;
                }
            } else if let Some(p) = peers.get(t - clients.len())
                && matches!(recv_batch(p, &mut self.rx), Ok(k) if k > 0)
            {
                for d in self.rx.iter() {
                    self.echo.push(d.source, |buf| {
                        buf.get_mut(..d.payload.len())?.copy_from_slice(d.payload);
                        Some(d.payload.len())
                    });
                }
                self.echoed += send_batch(p, &mut self.echo) as u64;
            }
        }
    }
}
