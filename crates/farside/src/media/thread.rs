//! The media thread: it owns the ng control sockets, the SIP server's line to the relay
//! (`link.rs`) and the relay's port pairs, and moves bytes between them and the relay core.
//! Requests are answered by `farside_media::control`; each packet's fate is
//! `Relay::handle_packet`'s. One thread for now; the per-core data path with
//! batched I/O comes with the rest of issue 14.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use farside_io::{Epoll, RecvBatch, recv_batch};
use farside_media::control::{self, Handled};
use farside_media::relay::{Drop, Ended, Event, Relay, RelayConfig};
use farside_time::Timestamp;

use super::ports::{PortPool, Ports};
use crate::runtime::clock;
use crate::telemetry::rtp::{JITTER_BUCKETS, LOSS_BUCKETS, RtpCounters};

/// Epoll tokens of the ng sockets start here (relay ports are their own tokens, below).
const NG_TOKENS: u64 = 1 << 20;
/// The epoll token of the SIP server's line.
const LINK_TOKEN: u64 = NG_TOKENS - 1;
/// Datagrams taken from one socket per wake-up before the others' turn.
const PER_TURN: usize = 64;
/// Datagrams taken from one relay port per wake-up (a port with more is reported again).
const RELAY_BATCH: usize = 8;
/// The longest wait, so that shutdown is seen.
const MAX_WAIT: Duration = Duration::from_millis(200);

/// What the media thread is started with.
pub struct MediaShell {
    /// The relay's settings (the address it writes into SDP among them).
    pub relay: RelayConfig,
    /// The address the port pairs are bound on.
    pub bind: Vec<IpAddr>,
    /// The port range.
    pub ports: (u16, u16),
    /// The ng listeners.
    pub ng: Vec<SocketAddr>,
    /// The media thread's end of the SIP server's line (`link::pair`), if SIP relays.
    pub link: Option<UnixDatagram>,
    /// Each relay socket's receive buffer (bytes asked of the kernel).
    pub receive_buffer: usize,
}

/// Binds the ng listeners and starts the thread.
pub fn spawn(
    shell: MediaShell,
    counters: Arc<RtpCounters>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut ng = Vec::new();
    for &a in &shell.ng {
        let s = UdpSocket::bind(a)
            .with_context(|| format!("S501 cannot bind rtp.ng_listen udp:{a}"))?;
        s.set_nonblocking(true)?;
        tracing::info!("S500 RTP relay: ng control on udp {a}");
        ng.push(s);
    }
    let list = |a: &[IpAddr]| {
        a.iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    tracing::info!(
        "S500 RTP relay: media on {} ports {}-{}, written into SDP as {}{}",
        list(&shell.bind),
        shell.ports.0,
        shell.ports.1,
        list(&shell.relay.addresses),
        if shell.link.is_some() {
            "; relaying Farside's own calls"
        } else {
            ""
        }
    );
    std::thread::Builder::new()
        .name("media".into())
        .spawn(move || {
            if let Err(e) = run(shell, ng, &counters, &shutdown) {
                tracing::error!("S502 the media thread stopped: {e:#}");
            }
        })
        .context("spawn the media thread")
}

fn run(
    shell: MediaShell,
    ng: Vec<UdpSocket>,
    c: &RtpCounters,
    shutdown: &AtomicBool,
) -> anyhow::Result<()> {
    let one = |n: &std::sync::atomic::AtomicU64| {
        n.fetch_add(1, Relaxed);
    };
    let mut epoll = Epoll::new()?;
    for (i, s) in ng.iter().enumerate() {
        epoll.add(s.as_raw_fd(), NG_TOKENS + i as u64)?;
    }
    if let Some(link) = &shell.link {
        epoll.add(link.as_raw_fd(), LINK_TOKEN)?;
    }
    let mut relay = Relay::new(shell.relay);
    let mut pool = PortPool::new(&shell.bind, shell.ports, shell.receive_buffer);
    let mut buf = vec![0u8; 65_536];
    let mut rx = RecvBatch::new(RELAY_BATCH, 65_535);
    let mut ready = Vec::with_capacity(256);
    while !shutdown.load(Relaxed) {
        ready.clear();
        let mut tally = Tally::default();
        let wait = relay
            .poll_timeout()
            .map_or(MAX_WAIT, |t| clock::until(t).min(MAX_WAIT));
        epoll.wait(wait, |t| ready.push(t))?;
        let now = clock::now();
        for &token in &ready {
            let mut ports = Ports {
                pool: &mut pool,
                epoll: &epoll,
            };
            if let (LINK_TOKEN, Some(link)) = (token, &shell.link) {
                for _ in 0..PER_TURN {
                    let Ok(n) = link.recv(&mut buf) else { break };
                    let reply =
                        serve_ng(&mut relay, now, &buf[..n], &mut ports, c, &"the SIP server");
                    if let Some(reply) = reply {
                        let _ = link.send(&reply);
                    }
                }
                continue;
            }
            if let Some(socket) = token
                .checked_sub(NG_TOKENS)
                .and_then(|i| ng.get(i as usize))
            {
                for _ in 0..PER_TURN {
                    let (n, from) = match socket.recv_from(&mut buf) {
                        Ok(got) => got,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    };
                    let reply = serve_ng(&mut relay, now, &buf[..n], &mut ports, c, &from);
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, from);
                    }
                }
                continue;
            }
            let Ok(port) = u16::try_from(token) else {
                continue;
            };
            // The port's queue is read empty (at 50 packets a second it rarely holds more than
            // one). Behind an overload it holds no more than its small receive buffer
            // (rtp.receive_buffer) let pile up, a fraction of a second of audio: the kernel
            // dropped the rest, so the relay never forwards seconds-old packets and is current
            // again as soon as the load falls. (Level-triggered: a port read only in part is
            // reported again.)
            for _ in 0..PER_TURN {
                let Some(socket) = pool.socket(port) else {
                    break;
                };
                match recv_batch(socket, &mut rx) {
                    Ok(got) => {
                        relay_batch(&mut relay, now, port, &rx, &pool, &mut tally);
                        if let Some(drops) = rx.iter().filter_map(|d| d.drops).last() {
                            tally.overflow += pool.overflowed(port, drops);
                        }
                        if got < RELAY_BATCH {
                            break;
                        }
                    }
                    // An error (an ICMP unreachable reported on the socket) comes alone.
                    Err(_) => continue,
                }
            }
        }
        tally.add_to(c);
        if relay.poll_timeout().is_some_and(|t| now >= t) {
            let mut ports = Ports {
                pool: &mut pool,
                epoll: &epoll,
            };
            relay.handle_timeout(now, &mut ports);
        }
        while let Some(Event::CallEnded {
            call_id,
            reason,
            forwarded,
            quality,
        }) = relay.poll_event()
        {
            for q in &quality {
                if let Some(loss) = q.loss() {
                    c.loss.observe(&LOSS_BUCKETS, loss);
                    c.jitter.observe(&JITTER_BUCKETS, q.jitter.as_secs_f64());
                }
            }
            let pct = |q: &farside_media::relay::CallQuality| {
                q.loss()
                    .map_or_else(|| "-".to_string(), |l| format!("{:.1} %", l * 100.0))
            };
            one(&c.ended[match reason {
                Ended::Deleted => 0,
                Ended::NoMedia => 1,
                Ended::Silence => 2,
                Ended::Final => 3,
            }]);
            tracing::debug!(
                "S504 call {} ended ({reason:?}): {} packets relayed from the caller, {} from the callee; lost on the way in {} and {}, jitter {:?} and {:?}",
                String::from_utf8_lossy(&call_id),
                forwarded[0],
                forwarded[1],
                pct(&quality[0]),
                pct(&quality[1]),
                quality[0].jitter,
                quality[1].jitter,
            );
        }
        c.calls.store(relay.calls() as u64, Relaxed);
        c.port_pairs.store(pool.pairs() as u64, Relaxed);
        c.port_pairs_free
            .store(pool.capacity().saturating_sub(pool.pairs()) as u64, Relaxed);
    }
    Ok(())
}

/// Relays the datagrams `rx` holds, which arrived at relay port `port`.
fn relay_batch(
    relay: &mut Relay,
    now: Timestamp,
    port: u16,
    rx: &RecvBatch,
    pool: &PortPool,
    tally: &mut Tally,
) {
    for d in rx.iter() {
        match relay.handle_packet(now, port, d.source, d.payload) {
            Ok(t) => {
                // Relayed is what the kernel took; a refused send (no route, a full buffer) is
                // counted apart.
                let sent = pool
                    .socket(t.from_port)
                    .is_some_and(|out| out.send_to(d.payload, t.to).is_ok());
                if sent {
                    tally.relayed += 1;
                    tally.bytes += d.payload.len() as u64;
                } else {
                    tally.send_failed += 1;
                }
            }
            Err(Drop::ForeignSource) => tally.foreign_source += 1,
            Err(Drop::NoDestination) => tally.no_destination += 1,
            Err(Drop::NoStream) => tally.no_stream += 1,
            Err(Drop::DeniedPeer) => tally.denied_peer += 1,
        }
    }
}

/// What one wake-up relayed and dropped, added to the shared counters once.
#[derive(Default)]
struct Tally {
    relayed: u64,
    bytes: u64,
    foreign_source: u64,
    no_destination: u64,
    no_stream: u64,
    denied_peer: u64,
    overflow: u64,
    send_failed: u64,
}

impl Tally {
    fn add_to(&self, c: &RtpCounters) {
        for (counter, n) in [
            (&c.relayed, self.relayed),
            (&c.relayed_bytes, self.bytes),
            (&c.foreign_source, self.foreign_source),
            (&c.no_destination, self.no_destination),
            (&c.no_stream, self.no_stream),
            (&c.denied_peer, self.denied_peer),
            (&c.overflow, self.overflow),
            (&c.send_failed, self.send_failed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }
}

/// Answers one ng request from `client`, and counts it.
fn serve_ng(
    relay: &mut Relay,
    now: Timestamp,
    request: &[u8],
    ports: &mut Ports<'_>,
    c: &RtpCounters,
    client: &dyn std::fmt::Display,
) -> Option<Vec<u8>> {
    let (reply, handled, unknown) = control::handle(relay, now, request, ports);
    c.ng_unknown_flags.fetch_add(unknown as u64, Relaxed);
    let slot = match handled {
        Handled::Ok => 0,
        Handled::Refused => 1,
        Handled::Malformed => {
            tracing::debug!("S503 ng request from {client} not understood");
            2
        }
    };
    c.ng[slot].fetch_add(1, Relaxed);
    reply
}
