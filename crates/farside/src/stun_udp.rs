//! The STUN data plane over UDP: one thread per worker, each owning an `SO_REUSEPORT` socket
//! on every server address, receiving and sending in batches.
//!
//! The threads make no protocol decisions: they hand each datagram to the sans-IO
//! [`BindingServer`] and send what it says, from the socket it names.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use farside_io::{RecvBatch, SendBatch, SocketOptions, recv_batch, send_batch, wait_readable};
use farside_stun::binding::{BindingServer, DropReason, Outcome, Received, Transport};

use crate::log_once;
use crate::metrics::{Metrics, StunCounters};

/// Largest datagram taken in; anything longer is dropped as oversized. STUN messages are
/// sized for a 576-byte path (RFC 8489 §6.1); 2048 leaves room for RFC 5780 PADDING up to a
/// 1500-byte MTU.
pub const MAX_DATAGRAM: usize = 2048;

/// Largest response the responder ever builds (the biggest is a padded RFC 5780 answer).
const MAX_RESPONSE: usize = MAX_DATAGRAM;

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
    batch: usize,
    metrics: &Metrics,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let server = Arc::clone(&server);
        let counters = metrics.register_worker();
        let shutdown = Arc::clone(&shutdown);
        let h = std::thread::Builder::new()
            .name(format!("stun-udp-{i}"))
            .spawn(move || run_worker(ws, &server, batch, &counters, &shutdown))
            .context("spawn STUN worker thread")?;
        handles.push(h);
    }
    Ok(handles)
}

fn run_worker(
    ws: WorkerSockets,
    server: &BindingServer,
    batch: usize,
    counters: &StunCounters,
    shutdown: &AtomicBool,
) {
    let fds: Vec<RawFd> = ws.sockets.iter().map(|(_, s)| s.as_raw_fd()).collect();
    let mut rx = RecvBatch::new(batch, MAX_DATAGRAM);
    let mut tx: Vec<SendBatch> = ws
        .sockets
        .iter()
        .map(|_| SendBatch::new(batch, MAX_RESPONSE))
        .collect();
    let mut scratch = vec![0u8; MAX_RESPONSE];

    while !shutdown.load(Ordering::Relaxed) {
        let ready = match wait_readable(&fds, POLL_INTERVAL) {
            Ok(mask) => mask,
            Err(e) => {
                tracing::error!("S103 poll failed on STUN sockets: {e}");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        for (i, (local, socket)) in ws.sockets.iter().enumerate() {
            if ready & (1 << i) == 0 {
                continue;
            }
            // Drain this socket, a batch at a time, so one busy socket cannot starve the
            // others for longer than one batch.
            loop {
                let n = match recv_batch(socket, &mut rx) {
                    Ok(n) => n,
                    Err(e) => {
                        // ICMP errors (port unreachable from a client that went away) surface
                        // here; they are not ours to act on.
                        tracing::debug!("receive on {local}: {e}");
                        0
                    }
                };
                for d in rx.iter() {
                    if d.truncated {
                        counters.dropped(DropReason::Oversized);
                        log_once::dropped(DropReason::Oversized, d.source);
                        continue;
                    }
                    let outcome = server.handle(
                        Received {
                            transport: Transport::Udp,
                            local: *local,
                            remote: d.source,
                            bytes: d.payload,
                        },
                        &mut scratch,
                    );
                    counters.record(Transport::Udp, &outcome);
                    match outcome {
                        Outcome::Respond(r) => {
                            let j = ws
                                .sockets
                                .iter()
                                .position(|(a, _)| *a == r.from)
                                .unwrap_or(i);
                            if tx[j].is_full() {
                                flush(&ws.sockets[j].1, &mut tx[j], counters);
                            }
                            let body = &scratch[..r.len];
                            tx[j].push(r.to, |buf| {
                                buf.get_mut(..body.len())?.copy_from_slice(body);
                                Some(body.len())
                            });
                        }
                        Outcome::Drop(reason) => log_once::dropped(reason, d.source),
                    }
                }
                if n < batch {
                    break;
                }
            }
            for (j, b) in tx.iter_mut().enumerate() {
                if !b.is_empty() {
                    flush(&ws.sockets[j].1, b, counters);
                }
            }
        }
    }
}

fn flush(socket: &UdpSocket, batch: &mut SendBatch, counters: &StunCounters) {
    let queued = batch.len();
    let sent = send_batch(socket, batch);
    if sent < queued {
        counters.send_failed((queued - sent) as u64);
    }
}
