//! The RTP relay's control thread: it serves the ng listeners and the SIP server's line
//! (`link.rs`), each request answered by `farside_media::control` on the worker that owns the
//! call, under that worker's lock.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use farside_io::Epoll;
use farside_media::control::{self, Handled, Shards};
use farside_media::relay::{MediaPorts, Relay};

use super::ports::Ports;
use super::worker::Worker;
use crate::runtime::clock;
use crate::runtime::lock::lock;
use crate::telemetry::rtp::RtpCounters;

/// The epoll token of the SIP server's line; the ng listeners' are their index.
const LINK_TOKEN: u64 = u64::MAX;
/// Requests taken from one socket per wake-up before the others' turn.
const PER_TURN: usize = 64;
/// The longest wait, so that shutdown is seen.
const MAX_WAIT: Duration = Duration::from_millis(200);

/// The workers, as the control protocol sees them: one relay each.
struct WorkerShards<'a> {
    workers: &'a [Arc<Worker>],
    counters: &'a RtpCounters,
}

impl Shards for WorkerShards<'_> {
    fn count(&self) -> usize {
        self.workers.len()
    }

    fn calls(&mut self) -> usize {
        // Every shard's count as it last published it (after each request and wake-up),
        // without taking every worker's lock for each offer.
        self.counters.calls.load(Relaxed) as usize
    }

    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut Relay, &mut dyn MediaPorts)) {
        let Some(worker) = self.workers.get(i) else {
            return;
        };
        worker.control_waiting.store(true, Relaxed);
        let mut guard = lock(&worker.shard);
        worker.control_waiting.store(false, Relaxed);
        let shard = &mut *guard;
        let mut ports = Ports {
            pool: &mut shard.pool,
            epoll: &worker.epoll,
        };
        f(&mut shard.relay, &mut ports);
        shard.settle(self.counters);
    }
}

/// The control thread's loop, until `shutdown`.
pub fn run(
    ng: &[UdpSocket],
    link: Option<&UnixDatagram>,
    workers: &[Arc<Worker>],
    c: &RtpCounters,
    shutdown: &AtomicBool,
) -> std::io::Result<()> {
    let mut epoll = Epoll::new()?;
    for (i, s) in ng.iter().enumerate() {
        epoll.add(s.as_raw_fd(), i as u64)?;
    }
    if let Some(link) = link {
        epoll.add(link.as_raw_fd(), LINK_TOKEN)?;
    }
    let mut shards = WorkerShards {
        workers,
        counters: c,
    };
    let mut buf = vec![0u8; 65_536];
    let mut ready = Vec::new();
    while !shutdown.load(Relaxed) {
        ready.clear();
        epoll.wait(MAX_WAIT, |t| ready.push(t))?;
        for &token in &ready {
            if let (LINK_TOKEN, Some(link)) = (token, link) {
                for _ in 0..PER_TURN {
                    let Ok(n) = link.recv(&mut buf) else { break };
                    if let Some(reply) = serve(&mut shards, &buf[..n], c, &"the SIP server") {
                        let _ = link.send(&reply);
                    }
                }
                continue;
            }
            let Some(socket) = usize::try_from(token).ok().and_then(|i| ng.get(i)) else {
                continue;
            };
            for _ in 0..PER_TURN {
                let (n, from) = match socket.recv_from(&mut buf) {
                    Ok(got) => got,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                if let Some(reply) = serve(&mut shards, &buf[..n], c, &from) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        }
    }
    Ok(())
}

/// Answers one ng request from `client`, and counts it.
fn serve(
    shards: &mut WorkerShards<'_>,
    request: &[u8],
    c: &RtpCounters,
    client: &dyn std::fmt::Display,
) -> Option<Vec<u8>> {
    let (reply, handled, unknown) = control::handle(shards, clock::now(), request);
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
