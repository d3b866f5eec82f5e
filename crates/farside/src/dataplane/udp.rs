//! The STUN data plane over UDP: one thread per worker, each owning an `SO_REUSEPORT` socket
//! on every server address, receiving and sending in batches.
//!
//! The threads make no protocol decisions: they hand each datagram to the sans-IO
//! [`BindingServer`] and send what it says, from the socket it names.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use farside_io::{Epoll, RecvBatch, SendBatch, SocketOptions, recv_batch};
use farside_stun::binding::{BindingServer, DropReason, Outcome, Received, Transport};
use farside_stun::partner::{PartnerBook, PartnerWorker};
use farside_turn::TurnServer;

use crate::dataplane::relay_ports::RELAY_TOKEN_BASE;
use crate::dataplane::turn::{TURN_OUT, TurnShared, TurnWorker};

use crate::runtime::log_once;
use crate::telemetry::Metrics;
use crate::telemetry::stun::StunCounters;

/// Largest datagram taken in; anything longer is dropped as oversized. STUN messages are
/// sized for a 576-byte path (RFC 8489 §6.1); 2048 leaves room for RFC 5780 PADDING up to a
/// 1500-byte MTU.
pub const MAX_DATAGRAM: usize = 2048;

/// Largest response the responder ever builds (the biggest is a padded RFC 5780 answer).
const MAX_RESPONSE: usize = MAX_DATAGRAM;

/// Batches a client-facing socket may take per pass while it has more.
const CLIENT_ROUNDS: usize = 8;

/// How long a worker sleeps in `poll` before checking for shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The sockets of one worker, one per server address.
pub struct WorkerSockets {
    sockets: Vec<(SocketAddr, UdpSocket)>,
}

/// Binds `workers` sockets on each of `addresses`. Done up front, on the caller's thread, so
/// that a bad address fails the start with a clear error instead of killing a thread.
pub fn bind_all(
    addresses: &[SocketAddr],
    workers: usize,
    opts: SocketOptions,
    metrics: &Metrics,
) -> anyhow::Result<Vec<WorkerSockets>> {
    // SO_REUSEPORT would let us join a group some other process (a second farside, say)
    // already holds, silently splitting its traffic with it. A plain bind first proves the
    // address is free.
    for &addr in addresses {
        let probe = SocketOptions {
            reuse_port: false,
            recv_buffer: 0,
            send_buffer: 0,
            packet_info: false,
        };
        drop(
            farside_io::bind_udp(addr, probe)
                .with_context(|| format!("S102 cannot bind UDP {addr}"))?,
        );
    }
    let mut all = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut sockets = Vec::with_capacity(addresses.len());
        for &addr in addresses {
            let s = farside_io::bind_udp(addr, opts)
                .with_context(|| format!("S102 cannot bind UDP {addr}"))?;
            metrics.register_socket(addr, s.try_clone().context("dup UDP socket")?);
            sockets.push((addr, s));
        }
        all.push(WorkerSockets { sockets });
    }
    Ok(all)
}

/// Starts one thread per [`WorkerSockets`].
pub fn spawn_workers(
    sockets: Vec<WorkerSockets>,
    server: Arc<BindingServer>,
    partners: Option<Arc<PartnerBook>>,
    turn: Option<Arc<TurnShared>>,
    batch: usize,
    metrics: &Metrics,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let server = Arc::clone(&server);
        let counters = metrics.register_worker();
        let shutdown = Arc::clone(&shutdown);
        // One worker greets the partners; every worker forwards and answers.
        let partners = partners
            .as_ref()
            .map(|b| PartnerWorker::new(Arc::clone(b), crate::runtime::seed::fresh_seed(), i == 0));
        let turn = turn.as_ref().map(|t| TurnWorker::new(t));
        let sources = metrics.sources.join();
        let stun_seen = Arc::clone(&metrics.stun_seen);
        let h = std::thread::Builder::new()
            .name(format!("stun-udp-{i}"))
            .spawn(move || {
                let w = Worker {
                    ws,
                    server: &server,
                    partners,
                    turn,
                    batch,
                    counters: &counters,
                    sources,
                    stun_seen,
                };
                w.run(&shutdown);
            })
            .context("spawn STUN worker thread")?;
        handles.push(h);
    }
    Ok(handles)
}

struct Worker<'a> {
    ws: WorkerSockets,
    server: &'a BindingServer,
    partners: Option<PartnerWorker>,
    turn: Option<TurnWorker>,
    batch: usize,
    counters: &'a StunCounters,
    sources: crate::telemetry::sources::SourceTable,
    stun_seen: Arc<crate::telemetry::stun_seen::StunSeen>,
}

impl Worker<'_> {
    fn run(mut self, shutdown: &AtomicBool) {
        let mut epoll = match Epoll::new() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("S103 cannot create epoll for a data-plane worker: {e}");
                return;
            }
        };
        for (i, (addr, s)) in self.ws.sockets.iter().enumerate() {
            if let Err(e) = epoll.add(s.as_raw_fd(), i as u64) {
                tracing::error!("S103 cannot watch udp {addr}: {e}");
                return;
            }
        }
        let mut rx = RecvBatch::new(self.batch, MAX_DATAGRAM);
        let mut tx: Vec<SendBatch> = self
            .ws
            .sockets
            .iter()
            .map(|_| {
                // Relayed data can be as large as UDP allows; plain STUN answers are small.
                let slot = if self.turn.is_some() {
                    TURN_OUT
                } else {
                    MAX_RESPONSE
                };
                let b = SendBatch::new(self.batch, slot);
                // Relayed runs for one client go out as segmented sends (see SendBatch).
                if self.turn.is_some() {
                    b.with_segmentation()
                } else {
                    b
                }
            })
            .collect();
        let mut scratch = vec![0u8; MAX_RESPONSE];
        let mut ready: Vec<u64> = Vec::with_capacity(256);

        while !shutdown.load(Ordering::Relaxed) {
            ready.clear();
            if let Err(e) = epoll.wait(POLL_INTERVAL, |t| ready.push(t)) {
                tracing::error!("S103 poll failed on STUN sockets: {e}");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            let now = crate::runtime::clock::now();
            if let Some(p) = self.partners.as_mut() {
                while let Some(m) = p.poll_hello(now, &mut scratch) {
                    self.counters.partner_hello_sent();
                    queue(
                        &self.ws.sockets,
                        &mut tx,
                        self.counters,
                        m.from,
                        m.to,
                        &scratch[..m.len],
                    );
                }
            }
            if let Some(t) = self.turn.as_mut() {
                t.tick(now);
            }
            self.sources.publish_every_second(now.unix_millis());
            // A bounded share per ready socket per pass (one batch, a few for client-facing
            // sockets): a flood on one socket cannot starve the others, and shutdown is seen
            // within one pass (epoll is level-triggered, so what is left is reported again).
            for &token in &ready {
                if token >= RELAY_TOKEN_BASE {
                    if let Some(t) = self.turn.as_mut() {
                        let sockets = &self.ws.sockets;
                        let counters = self.counters;
                        let tx = &mut tx;
                        t.peer_readable(now, token, |m, body| {
                            queue(sockets, tx, counters, m.from, m.to, body);
                        });
                    }
                    continue;
                }
                let i = token as usize;
                let Some((bound, socket)) = self.ws.sockets.get(i) else {
                    continue;
                };
                // A client-facing socket carries every client's traffic (a relay socket only
                // one allocation's): it may take up to CLIENT_ROUNDS batches per pass while
                // it has more, so that under load it is not starved by the relay sockets.
                for _ in 0..CLIENT_ROUNDS {
                    if let Err(e) = recv_batch(socket, &mut rx) {
                        // ICMP errors (port unreachable from a client that went away) surface
                        // here; they are not ours to act on.
                        tracing::debug!("receive on {bound}: {e}");
                        break;
                    }
                    for d in rx.iter() {
                        if d.truncated {
                            self.counters.dropped(DropReason::Oversized);
                            log_once::dropped(DropReason::Oversized, d.source);
                            continue;
                        }
                        // A wildcard socket tells each datagram's real destination (IP_PKTINFO).
                        let local = match d.destination {
                            Some(ip) if bound.ip().is_unspecified() => {
                                SocketAddr::new(ip, bound.port())
                            }
                            _ => *bound,
                        };
                        if let Some(t) = self.turn.as_mut()
                            && TurnServer::wants(d.payload)
                        {
                            if let Some(m) = t.client(
                                now,
                                farside_turn::TurnTransport::Udp,
                                local,
                                d.source,
                                d.payload,
                            ) {
                                queue(
                                    &self.ws.sockets,
                                    &mut tx,
                                    self.counters,
                                    m.from,
                                    m.to,
                                    &t.out[..m.len],
                                );
                            }
                            for (fd, token) in t.take_fresh() {
                                if let Err(e) = epoll.add(fd, token) {
                                    tracing::warn!("S104 cannot watch a relay socket: {e}");
                                }
                            }
                            continue;
                        }
                        let outcome = self.server.handle_at(
                            Received {
                                transport: Transport::Udp,
                                local,
                                remote: d.source,
                                bytes: d.payload,
                            },
                            self.partners.as_mut().map(|p| (p, now)),
                            &mut scratch,
                        );
                        self.counters.record(Transport::Udp, &outcome);
                        self.sources
                            .record(now.unix_millis(), d.source.ip(), local, &outcome);
                        if let Outcome::Respond(r) = &outcome
                            && r.kind == farside_stun::binding::ResponseKind::Success
                        {
                            self.stun_seen.answered_at(d.source.ip(), now);
                        }
                        let (len, from, to) = match outcome {
                            Outcome::Respond(r) => (r.len, r.from, r.to),
                            Outcome::Forward(m) => (m.len, m.from, m.to),
                            Outcome::PartnerHello(_) => continue,
                            Outcome::Drop(reason) => {
                                log_once::dropped(reason, d.source);
                                continue;
                            }
                        };
                        queue(
                            &self.ws.sockets,
                            &mut tx,
                            self.counters,
                            from,
                            to,
                            &scratch[..len],
                        );
                    }
                    if let Some(t) = self.turn.as_mut() {
                        t.flush_to_peers();
                    }
                    if rx.len() < self.batch {
                        break;
                    }
                }
            }
            flush_all(&self.ws.sockets, &mut tx, self.counters);
        }
    }
}

/// Queues `body` for `to` on the socket that sends from `from`.
fn queue(
    sockets: &[(SocketAddr, UdpSocket)],
    tx: &mut [SendBatch],
    counters: &StunCounters,
    from: SocketAddr,
    to: SocketAddr,
    body: &[u8],
) {
    let Some((j, source)) = socket_for(sockets, from) else {
        // The responder named an address this worker has no socket for: a bug. Answering
        // from another would contradict the response's own RESPONSE-ORIGIN, so send nothing.
        debug_assert!(false, "no socket for {from}");
        counters.send_failed(1);
        return;
    };
    if tx[j].is_full() {
        flush(&sockets[j].1, &mut tx[j], counters);
    }
    let fill = |buf: &mut [u8]| {
        buf.get_mut(..body.len())?.copy_from_slice(body);
        Some(body.len())
    };
    match source {
        Some(ip) => tx[j].push_from(ip, to, fill),
        None => tx[j].push(to, fill),
    };
}

fn flush_all(sockets: &[(SocketAddr, UdpSocket)], tx: &mut [SendBatch], counters: &StunCounters) {
    for (j, b) in tx.iter_mut().enumerate() {
        if !b.is_empty() {
            flush(&sockets[j].1, b, counters);
        }
    }
}
/// The socket to send from `from` on: the one bound to exactly that address, or a wildcard
/// socket of that port, which then needs the source address set per datagram.
fn socket_for(
    sockets: &[(SocketAddr, UdpSocket)],
    from: SocketAddr,
) -> Option<(usize, Option<std::net::IpAddr>)> {
    if let Some(j) = sockets.iter().position(|(a, _)| *a == from) {
        return Some((j, None));
    }
    sockets
        .iter()
        .position(|(a, _)| {
            a.ip().is_unspecified() && a.port() == from.port() && a.is_ipv4() == from.is_ipv4()
        })
        .map(|j| (j, Some(from.ip())))
}

fn flush(socket: &UdpSocket, batch: &mut SendBatch, counters: &StunCounters) {
    let refused = crate::net::udp::send_refused(socket, batch);
    if refused > 0 {
        counters.send_failed(refused);
    }
}
