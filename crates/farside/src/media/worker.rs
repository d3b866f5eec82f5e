//! A data-plane worker of the RTP relay: one thread, its own epoll over its slice of the port
//! pairs, and the relay core holding the calls whose Call-ID `control::shard` gives it. Each
//! wake-up reads the ready ports in batches, forwards what the core says, runs the timers,
//! and reports what ended.
//!
//! The control thread sets calls up on the same core (under [`Worker::shard`]'s lock, held for
//! one request); the worker holds that lock for one wake-up's packets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use farside_io::{Epoll, RecvBatch, recv_batch};
use farside_media::relay::{CallQuality, Drop, Ended, Event, Relay};
use farside_time::Timestamp;

use super::ports::{PortPool, Ports};
use crate::control::sessions::{CallSummary, EndedCall, SideSummary};
use crate::runtime::clock;
use crate::runtime::lock::lock;
use crate::telemetry::rtp::{JITTER_BUCKETS, LOSS_BUCKETS, RtpCounters};

/// Datagrams taken from one relay port per read (a port with more is read again).
const RELAY_BATCH: usize = 8;
/// Reads of one port per wake-up before the others' turn (a port left with datagrams is read
/// first at the next wake-up).
const PER_TURN: usize = 64;
/// The longest wait, so that shutdown and timers set by the control thread are seen.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// How often the ports' overflow counts are read.
const OVERFLOW_SWEEP: Duration = Duration::from_secs(1);

/// A relay core and its port pairs: one worker's calls.
pub struct Shard {
    /// The calls.
    pub relay: Relay,
    /// The pairs they hold.
    pub pool: PortPool,
    /// The gauges' values this shard last added to the shared ones.
    published: [u64; 3],
    /// The calls that ended here lately, newest last ([`RECENT_CALLS`] at most).
    recent: std::collections::VecDeque<CallSummary>,
}

/// How many ended calls each worker keeps for the operator (the API's `recent_calls`, the
/// dashboard's phone check).
pub const RECENT_CALLS: usize = 200;

/// What the worker thread shares with the control thread.
pub struct Worker {
    /// The calls and their ports.
    pub shard: Mutex<Shard>,
    /// A handle of the worker's epoll, through which the control thread watches the pairs it
    /// binds.
    pub epoll: Epoll,
    /// The control thread waits for [`Worker::shard`]: the worker lets go between ports.
    /// (std's `Mutex` does not queue, so a busy worker would otherwise take it back at once,
    /// and a SIP call's offer could wait past the line's 100 ms.)
    pub control_waiting: AtomicBool,
}

impl Worker {
    /// A worker for `relay`'s calls on `pool`'s pairs, and the epoll its thread waits on.
    pub fn new(relay: Relay, pool: PortPool) -> std::io::Result<(Worker, Epoll)> {
        let epoll = Epoll::new()?;
        let worker = Worker {
            shard: Mutex::new(Shard {
                relay,
                pool,
                published: [0; 3],
                recent: std::collections::VecDeque::new(),
            }),
            epoll: epoll.try_clone()?,
            control_waiting: AtomicBool::new(false),
        };
        Ok((worker, epoll))
    }
}

impl Shard {
    /// Reports the calls that ended and the overflows found, and brings the gauges up to date;
    /// called by whichever thread last changed the shard.
    pub fn settle(&mut self, c: &RtpCounters) {
        while let Some(Event::CallEnded {
            call_id,
            reason,
            forwarded,
            quality,
            created,
            endpoints,
        }) = self.relay.poll_event()
        {
            ended(c, &call_id, reason, forwarded, &quality);
            if self.recent.len() >= RECENT_CALLS {
                self.recent.pop_front();
            }
            self.recent.push_back(CallSummary {
                call_id: String::from_utf8_lossy(&call_id).into_owned(),
                created_unix_ms: created.unix_millis(),
                streams: 0,
                packets: forwarded.iter().sum(),
                bytes: 0,
                errors: 0,
                sides: quality
                    .iter()
                    .zip(endpoints)
                    .map(|(q, endpoint)| SideSummary {
                        endpoint,
                        received: q.expected.saturating_sub(q.lost),
                        lost: i64::try_from(q.lost).unwrap_or(i64::MAX),
                        jitter_ms: q.jitter.as_secs_f64() * 1000.0,
                        rtt_ms: q.round_trip.map(|d| d.as_secs_f64() * 1000.0),
                    })
                    .collect(),
                ended: Some(EndedCall {
                    unix_ms: clock::now().unix_millis(),
                    reason: match reason {
                        Ended::Deleted => "deleted",
                        Ended::NoMedia => "no media",
                        Ended::Silence => "silence",
                        Ended::Final => "final timeout",
                    },
                }),
            });
        }
        let overflowed = self.pool.take_overflowed();
        if overflowed > 0 {
            c.overflow.fetch_add(overflowed, Relaxed);
        }
        let now = [
            self.relay.calls() as u64,
            self.pool.pairs() as u64,
            self.pool.capacity().saturating_sub(self.pool.pairs()) as u64,
        ];
        for ((gauge, last), now) in [&c.calls, &c.port_pairs, &c.port_pairs_free]
            .into_iter()
            .zip(&mut self.published)
            .zip(now)
        {
            // The shared gauge is every shard's sum: each adds its change.
            gauge.fetch_add(now.wrapping_sub(*last), Relaxed);
            *last = now;
        }
    }
}

/// Counts and logs an ended call.
fn ended(
    c: &RtpCounters,
    call_id: &[u8],
    reason: Ended,
    forwarded: [u64; 2],
    quality: &[CallQuality; 2],
) {
    for q in quality {
        if let Some(loss) = q.loss() {
            c.loss.observe(&LOSS_BUCKETS, loss);
            c.jitter.observe(&JITTER_BUCKETS, q.jitter.as_secs_f64());
        }
    }
    let pct = |q: &CallQuality| {
        q.loss()
            .map_or_else(|| "-".to_string(), |l| format!("{:.1} %", l * 100.0))
    };
    c.ended[match reason {
        Ended::Deleted => 0,
        Ended::NoMedia => 1,
        Ended::Silence => 2,
        Ended::Final => 3,
    }]
    .fetch_add(1, Relaxed);
    tracing::debug!(
        "S504 call {} ended ({reason:?}): {} packets relayed from the caller, {} from the callee; lost on the way in {} and {}, jitter {:?} and {:?}",
        String::from_utf8_lossy(call_id),
        forwarded[0],
        forwarded[1],
        pct(&quality[0]),
        pct(&quality[1]),
        quality[0].jitter,
        quality[1].jitter,
    );
}

/// The worker's loop, until `shutdown`.
pub fn run(
    worker: &Worker,
    mut epoll: Epoll,
    c: &RtpCounters,
    published: &Mutex<Vec<CallSummary>>,
    shutdown: &AtomicBool,
) -> std::io::Result<()> {
    let mut rx = RecvBatch::new(RELAY_BATCH, 65_535);
    let mut ready = Vec::with_capacity(256);
    let mut next_timer = None;
    let mut next_sweep = clock::now();
    // Ports left with datagrams queued after their turn: edge-triggered, they are not reported
    // again, so they are read first at the next wake-up, which does not wait.
    let mut unread: Vec<u64> = Vec::new();
    while !shutdown.load(Relaxed) {
        ready.clear();
        let wait = match unread.is_empty() {
            true => next_timer.map_or(MAX_WAIT, |t| clock::until(t).min(MAX_WAIT)),
            false => Duration::ZERO,
        };
        ready.append(&mut unread);
        epoll.wait(wait, |t| ready.push(t))?;
        // A port left unread may also have been reported again.
        ready.sort_unstable();
        ready.dedup();
        let now = clock::now();
        let mut tally = Tally::default();
        let mut guard = lock(&worker.shard);
        for &token in &ready {
            if worker.control_waiting.load(Relaxed) {
                drop(guard);
                while worker.control_waiting.load(Relaxed) {
                    std::thread::yield_now();
                }
                guard = lock(&worker.shard);
            }
            let shard = &mut *guard;
            let Ok(port) = u16::try_from(token) else {
                continue;
            };
            // The port's queue is read empty (at 50 packets a second it rarely holds more than
            // one). Behind an overload it holds no more than its small receive buffer
            // (rtp.receive_buffer) let pile up, a fraction of a second of audio: the kernel
            // dropped the rest, so the relay never forwards seconds-old packets and is current
            // again as soon as the load falls.
            let (mut empty, mut error) = (false, false);
            for _ in 0..PER_TURN {
                let Some(socket) = shard.pool.socket(port) else {
                    empty = true;
                    break;
                };
                match recv_batch(socket, &mut rx) {
                    Ok(got) => {
                        relay_batch(&mut shard.relay, now, port, &rx, &shard.pool, &mut tally);
                        // Fewer than asked for: the queue is empty.
                        if got < RELAY_BATCH {
                            empty = true;
                            break;
                        }
                    }
                    // An error (an ICMP unreachable reported on the socket) comes alone, and
                    // may have cut the batch before it short: the port is read again.
                    Err(_) => error = true,
                }
            }
            if !empty || error {
                unread.push(token);
            }
        }
        tally.add_to(c);
        let shard = &mut *guard;
        if next_sweep <= now {
            shard.pool.sweep();
            let mut calls = summaries(&shard.relay);
            calls.extend(shard.recent.iter().cloned());
            *lock(published) = calls;
            next_sweep = now.checked_add(OVERFLOW_SWEEP).unwrap_or(now);
        }
        if shard.relay.poll_timeout().is_some_and(|t| now >= t) {
            let mut ports = Ports {
                pool: &mut shard.pool,
                epoll: &epoll,
            };
            shard.relay.handle_timeout(now, &mut ports);
        }
        shard.settle(c);
        next_timer = shard.relay.poll_timeout();
    }
    Ok(())
}

/// The calls of `relay` for the dashboard and the API (once a second).
fn summaries(relay: &Relay) -> Vec<CallSummary> {
    relay
        .call_ids()
        .filter_map(|id| {
            let (created, t) = relay.totals(id)?;
            Some(CallSummary {
                call_id: String::from_utf8_lossy(id).into_owned(),
                created_unix_ms: created.unix_millis(),
                streams: relay.streams(id).map_or(0, |s| s.len()),
                packets: t.packets,
                bytes: t.bytes,
                errors: t.errors(),
                sides: relay
                    .streams(id)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|side| SideSummary {
                        endpoint: side.endpoint,
                        received: side.quality.received(),
                        lost: side.quality.lost(),
                        jitter_ms: side.quality.jitter().as_secs_f64() * 1000.0,
                        rtt_ms: side.round_trip.map(|d| d.as_secs_f64() * 1000.0),
                    })
                    .collect(),
                ended: None,
            })
        })
        .collect()
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
            (&c.send_failed, self.send_failed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }
}
