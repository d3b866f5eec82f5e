//! `farside bench stun`: a batched STUN Binding load generator for any STUN server.
//!
//! One thread does everything: it sends batches of Binding requests with `sendmmsg` from
//! several source ports (so `SO_REUSEPORT` servers spread them over their workers) and reads the
//! answers with `recvmmsg`, polling all its sockets at once. Two ways to drive the server:
//!
//! - open loop (`--rate`): batches leave on a schedule computed from a monotonic clock, whatever
//!   the server does, which is how real clients behave and how loss is found. When the next
//!   batch is due in under 2 ms the thread busy-polls its core rather than sleep, so the
//!   schedule holds at hundreds of thousands of requests per second; if it still falls behind it
//!   says so.
//! - closed loop (`--window`): a fixed number of requests is kept outstanding; a request with no
//!   answer after `--timeout-ms` is given up, so lost datagrams do not shrink the window.
//!
//! Each request's transaction id carries its sequence number; send times live in a ring indexed
//! by it, so matching an answer is an array access and a latency goes into a fixed-size
//! histogram: no allocation per datagram. Answers that come during a short drain after the run
//! still count (as late).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use farside_io::{RecvBatch, SendBatch, recv_batch, send_batch, wait_readable};

use super::measure::{
    Clock, Schedule, connected_sockets, drops, own_cpu_secs, parse_duration, percentiles_us,
    run_nonce,
};
use super::wire;
use hdrhistogram::Histogram;

/// Arguments of `farside bench stun`.
#[derive(clap::Args, Debug)]
#[command(
    group(clap::ArgGroup::new("mode").args(["rate", "window"])),
    after_help = "Only loopback targets are accepted unless --allow-remote is given: at these rates \
                  a load test is indistinguishable from a flood, so point it only at servers you \
                  run (the environment this tool was written in allows loopback traffic only)."
)]
pub struct StunArgs {
    /// The STUN server to load, as IP:port (e.g. 127.0.0.1:3478).
    pub(crate) target: SocketAddr,
    /// Open loop: send this many requests per second, whatever the server answers.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    pub(crate) rate: Option<u64>,
    /// Closed loop: keep this many requests outstanding [default mode, with a window of 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) window: Option<u64>,
    /// Seconds to send for (up to 300).
    #[arg(long, default_value_t = 5.0, value_parser = parse_duration)]
    pub(crate) duration: f64,
    /// Source sockets (ports) the requests are spread over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) sockets: u16,
    /// Requests per sendmmsg call (and answers per recvmmsg call); in open loop at most one
    /// millisecond's worth of the rate.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) batch: u16,
    /// Milliseconds to keep collecting late answers after the last request.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) drain_ms: u64,
    /// Closed loop: milliseconds after which an unanswered request is given up.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) timeout_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub(crate) allow_remote: bool,
}

/// Runs the load described by `args` and prints the report.
pub(crate) fn run(args: StunArgs) -> anyhow::Result<ExitCode> {
    if !args.target.ip().is_loopback() && !args.allow_remote {
        bail!(
            "{} is not a loopback address: pass --allow-remote to load a server on another host \
             (only servers you run; this is flood-level traffic)",
            args.target
        );
    }
    if args.target.port() == 0 {
        bail!("the target needs a port");
    }
    let mode = match (args.rate, args.window) {
        (Some(rate), _) => Mode::Open { rate },
        (None, Some(window)) => Mode::Closed { window },
        (None, None) => Mode::Closed { window: 64 },
    };
    let config = LoadConfig {
        target: args.target,
        mode,
        duration: Duration::from_secs_f64(args.duration),
        sockets: usize::from(args.sockets),
        batch: usize::from(args.batch),
        drain: Duration::from_millis(args.drain_ms),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let report = run_load(&config).context("running the load")?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A fixed number of requests per second.
    Open {
        /// Requests per second.
        rate: u64,
    },
    /// A fixed number of requests outstanding.
    Closed {
        /// Outstanding requests.
        window: u64,
    },
}

/// One load run.
#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    /// Where requests go.
    pub(crate) target: SocketAddr,
    /// Pacing.
    pub(crate) mode: Mode,
    /// How long requests are sent for.
    pub(crate) duration: Duration,
    /// Source sockets.
    pub(crate) sockets: usize,
    /// Datagrams per system call.
    pub(crate) batch: usize,
    /// How long late answers are still collected after the last request.
    pub(crate) drain: Duration,
    /// Closed loop: when an unanswered request is given up.
    pub(crate) timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The run's configuration.
    pub(crate) config: LoadConfig,
    /// Open loop: requests the schedule called for over the whole duration.
    pub(crate) planned: u64,
    /// Requests the kernel accepted.
    pub(crate) sent: u64,
    /// Requests built but refused by `sendmmsg`.
    pub(crate) send_failed: u64,
    /// Distinct requests answered with a Binding success (including late ones).
    pub(crate) answered: u64,
    /// Answers that arrived during the drain.
    pub(crate) late: u64,
    /// Second and later answers to one request.
    pub(crate) duplicates: u64,
    /// Datagrams that were not a Binding success for one of this run's requests.
    pub(crate) invalid: u64,
    /// Answers so late their send time had been overwritten (counted as lost).
    pub(crate) stale: u64,
    /// Closed loop: requests given up after the timeout (some may have been answered later).
    pub(crate) expired: u64,
    /// Datagrams the kernel dropped in the generator's own receive buffers.
    pub(crate) generator_drops: u64,
    /// Open loop: the furthest the generator fell behind its schedule, in requests.
    pub(crate) max_backlog: u64,
    /// Seconds from the first request to the end of sending.
    pub(crate) send_secs: f64,
    /// CPU seconds (user + system) the generator itself used, when `/proc/self/stat` says.
    pub(crate) cpu_secs: Option<f64>,
    /// Latency percentiles in microseconds: p50, p99, p99.9, max.
    pub(crate) latency_us: [f64; 4],
}

impl Report {
    /// Requests that got no answer.
    pub(crate) fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.answered)
    }

    /// Lost requests as a percentage of those sent.
    pub(crate) fn loss_pct(&self) -> f64 {
        super::measure::pct(self.lost(), self.sent)
    }

    /// Answers per second of sending.
    pub(crate) fn answered_per_sec(&self) -> f64 {
        super::measure::per_sec(self.answered as f64, self.send_secs)
    }

    /// Requests sent per second of sending.
    pub(crate) fn sent_per_sec(&self) -> f64 {
        super::measure::per_sec(self.sent as f64, self.send_secs)
    }

    /// Open loop: the generator sent (nearly) everything its schedule called for, on time. A
    /// closed loop always "keeps up" by definition.
    pub(crate) fn kept_up(&self) -> bool {
        match self.config.mode {
            Mode::Closed { .. } => true,
            Mode::Open { .. } => {
                self.send_failed == 0 && self.sent as f64 >= 0.999 * self.planned as f64
            }
        }
    }

    /// Open loop: the largest lag behind the schedule, in milliseconds.
    fn max_lag_ms(&self) -> f64 {
        match self.config.mode {
            Mode::Open { rate } => 1e3 * self.max_backlog as f64 / rate as f64,
            Mode::Closed { .. } => 0.0,
        }
    }

    /// Human-readable report.
    pub(crate) fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.config;
        let mut s = String::new();
        let mode = match c.mode {
            Mode::Open { rate } => format!("open loop at {rate} requests/s"),
            Mode::Closed { window } => format!("closed loop, {window} outstanding"),
        };
        let _ = writeln!(
            s,
            "STUN Binding load on {}: {mode} for {:.1} s ({} sockets, batches of {})",
            c.target,
            c.duration.as_secs_f64(),
            c.sockets,
            c.batch
        );
        let pace = match c.mode {
            Mode::Open { rate } if self.kept_up() => format!(
                "generator kept up with {rate}/s; max lag {:.1} ms",
                self.max_lag_ms()
            ),
            Mode::Open { rate } => format!(
                "generator did NOT keep up with {rate}/s: {} of {} planned sent",
                self.sent, self.planned
            ),
            Mode::Closed { .. } => "closed loop".to_string(),
        };
        let _ = writeln!(
            s,
            "  sent      {:>10}  ({:.0}/s; {pace})",
            self.sent,
            self.sent_per_sec()
        );
        let _ = writeln!(
            s,
            "  answered  {:>10}  ({:.0}/s; {} during the {} ms drain)",
            self.answered,
            self.answered_per_sec(),
            self.late,
            c.drain.as_millis()
        );
        let _ = writeln!(
            s,
            "  lost      {:>10}  ({:.3} %)",
            self.lost(),
            self.loss_pct()
        );
        let [p50, p99, p999, max] = self.latency_us;
        let _ = writeln!(
            s,
            "  latency   p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs, max {max:.0} µs"
        );
        super::measure::cpu_line(&mut s, self.cpu_secs, self.send_secs);
        if self.send_failed > 0 {
            let _ = writeln!(s, "  send refused by the kernel: {}", self.send_failed);
        }
        if self.duplicates + self.invalid + self.stale > 0 {
            let _ = writeln!(
                s,
                "  odd answers: {} duplicate, {} not ours or not a Binding success, {} too late to match",
                self.duplicates, self.invalid, self.stale
            );
        }
        if self.expired > 0 {
            let _ = writeln!(
                s,
                "  given up after {} ms: {}",
                c.timeout.as_millis(),
                self.expired
            );
        }
        if !self.kept_up() {
            let _ = writeln!(
                s,
                "WARNING: the generator could not hold the requested rate ({:.0}/s sent); the \
                 figures describe the rate it reached. Give it a core of its own, larger \
                 --batch, or more generators.",
                self.sent_per_sec()
            );
        }
        if self.generator_drops > 0 {
            let _ = writeln!(
                s,
                "WARNING: {} answers were dropped in the generator's own receive buffers and \
                 count as lost: the generator, not the server, may be the limit.",
                self.generator_drops
            );
        }
        if self.answered == 0 && self.sent > 0 {
            let _ = writeln!(
                s,
                "WARNING: no answers at all: is a STUN server on {}?",
                c.target
            );
        }
        s
    }

    /// One JSON object (flat; numbers and strings only).
    pub(crate) fn to_json(&self) -> String {
        let c = &self.config;
        let (mode, rate, window) = match c.mode {
            Mode::Open { rate } => ("open", rate.to_string(), "null".to_string()),
            Mode::Closed { window } => ("closed", "null".to_string(), window.to_string()),
        };
        let [p50, p99, p999, max] = self.latency_us;
        format!(
            concat!(
                "{{\"target\":\"{}\",\"mode\":\"{}\",\"rate\":{},\"window\":{},",
                "\"duration_s\":{:.3},\"sockets\":{},\"batch\":{},\"send_s\":{:.3},",
                "\"planned\":{},\"sent\":{},\"send_failed\":{},\"answered\":{},\"late\":{},",
                "\"lost\":{},\"loss_pct\":{:.4},\"sent_per_s\":{:.0},\"answered_per_s\":{:.0},",
                "\"kept_up\":{},\"max_lag_ms\":{:.2},\"generator_drops\":{},",
                "\"duplicates\":{},\"invalid\":{},\"stale\":{},\"expired\":{},",
                "\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},",
                "\"generator_cpu_s\":{}}}"
            ),
            c.target,
            mode,
            rate,
            window,
            c.duration.as_secs_f64(),
            c.sockets,
            c.batch,
            self.send_secs,
            self.planned,
            self.sent,
            self.send_failed,
            self.answered,
            self.late,
            self.lost(),
            self.loss_pct(),
            self.sent_per_sec(),
            self.answered_per_sec(),
            self.kept_up(),
            self.max_lag_ms(),
            self.generator_drops,
            self.duplicates,
            self.invalid,
            self.stale,
            self.expired,
            p50,
            p99,
            p999,
            max,
            self.cpu_secs
                .map_or_else(|| "null".to_string(), |c| format!("{c:.3}"))
        )
    }
}

/// Send-time ring size: 2^20 requests (8 MiB), over a second of history at 600 k/s.
const RING_BITS: u32 = 20;
const RING: u64 = 1 << RING_BITS;
const RING_MASK: u64 = RING - 1;
/// Ring value of an answered request.
const ANSWERED: u64 = u64::MAX;
/// Flag on a ring value (a send time in ns) of a request given up in closed loop.
const EXPIRED: u64 = 1 << 63;

/// Per-request bookkeeping: send times by sequence number, counters, latencies.
struct Tracker {
    nonce: [u8; 4],
    sent_at: Box<[u64]>,
    next_seq: u64,
    oldest: u64,
    in_flight: u64,
    answered: u64,
    late: u64,
    duplicates: u64,
    invalid: u64,
    stale: u64,
    expired: u64,
    draining: bool,
    latency: Histogram<u64>,
}

impl Tracker {
    fn new(nonce: [u8; 4]) -> Self {
        Tracker {
            nonce,
            sent_at: vec![ANSWERED; RING as usize].into_boxed_slice(),
            next_seq: 0,
            oldest: 0,
            in_flight: 0,
            answered: 0,
            late: 0,
            duplicates: 0,
            invalid: 0,
            stale: 0,
            expired: 0,
            draining: false,
            latency: super::measure::latency_histogram(),
        }
    }

    /// Takes the next sequence number, sent at `now_ns`.
    fn take_seq(&mut self, now_ns: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(slot) = self.sent_at.get_mut((seq & RING_MASK) as usize) {
            *slot = now_ns;
        }
        seq
    }

    /// Books one received datagram.
    fn on_datagram(&mut self, payload: &[u8], now_ns: u64) {
        let Some(seq) = wire::parse_response(payload, self.nonce) else {
            self.invalid += 1;
            return;
        };
        if seq >= self.next_seq {
            self.invalid += 1;
            return;
        }
        if self.next_seq - seq > RING {
            self.stale += 1;
            return;
        }
        let Some(slot) = self.sent_at.get_mut((seq & RING_MASK) as usize) else {
            return;
        };
        let sent = *slot;
        if sent == ANSWERED {
            self.duplicates += 1;
            return;
        }
        *slot = ANSWERED;
        if sent & EXPIRED == 0 {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        self.latency
            .saturating_record(now_ns.saturating_sub(sent & !EXPIRED));
        self.answered += 1;
        if self.draining {
            self.late += 1;
        }
    }

    /// Closed loop: gives up requests older than `timeout_ns`, oldest first.
    fn expire(&mut self, now_ns: u64, timeout_ns: u64) {
        while self.oldest < self.next_seq {
            let Some(slot) = self.sent_at.get_mut((self.oldest & RING_MASK) as usize) else {
                return;
            };
            let sent = *slot;
            if sent != ANSWERED && sent & EXPIRED == 0 {
                let overwritten_soon = self.next_seq - self.oldest >= RING - 1;
                if now_ns.saturating_sub(sent) < timeout_ns && !overwritten_soon {
                    return;
                }
                *slot = sent | EXPIRED;
                self.in_flight = self.in_flight.saturating_sub(1);
                self.expired += 1;
            }
            self.oldest += 1;
        }
    }
}

/// Source sockets and batches.
struct Sockets {
    sockets: Vec<UdpSocket>,
    fds: Vec<RawFd>,
    next: usize,
    tx: SendBatch,
    rx: RecvBatch,
    batch: usize,
    sent: u64,
    send_failed: u64,
}

impl Sockets {
    fn open(target: SocketAddr, count: usize, batch: usize) -> std::io::Result<Self> {
        let sockets = connected_sockets(target, count)?;
        let fds = sockets.iter().map(|s| s.as_raw_fd()).collect();
        Ok(Sockets {
            sockets,
            fds,
            next: 0,
            tx: SendBatch::new(batch, wire::HEADER_LEN),
            rx: RecvBatch::new(batch, 2048),
            batch,
            sent: 0,
            send_failed: 0,
        })
    }

    /// Sends `n` (at most one batch) new requests from the next socket in turn.
    fn send(&mut self, tracker: &mut Tracker, n: usize, now_ns: u64) {
        for _ in 0..n {
            if self.tx.is_full() {
                break;
            }
            let seq = tracker.take_seq(now_ns);
            let nonce = tracker.nonce;
            self.tx
                .push_connected(|buf| wire::write_request(buf, seq, nonce));
        }
        let queued = self.tx.len() as u64;
        let socket = &self.sockets[self.next];
        self.next = (self.next + 1) % self.sockets.len();
        let sent = send_batch(socket, &mut self.tx) as u64;
        self.sent += sent;
        self.send_failed += queued - sent;
        tracker.in_flight += sent;
    }

    /// Waits up to `timeout` for answers, then reads every socket that has some until it is
    /// empty. Returns how many datagrams were read.
    fn receive(
        &mut self,
        tracker: &mut Tracker,
        timeout: Duration,
        clock: &Clock,
    ) -> std::io::Result<usize> {
        let ready = wait_readable(&self.fds, timeout)?;
        let mut total = 0;
        if ready == 0 {
            return Ok(0);
        }
        for (i, socket) in self.sockets.iter().enumerate() {
            if ready & (1 << i) == 0 {
                continue;
            }
            loop {
                let n = recv_batch(socket, &mut self.rx)?;
                if n == 0 {
                    break;
                }
                let now = clock.ns();
                for d in self.rx.iter() {
                    tracker.on_datagram(d.payload, now);
                }
                total += n;
                if n < self.batch {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// Open loop: at most this many batches go out between two looks at the answers, so that a
/// generator catching up on its schedule does not leave its receive buffers to overflow.
const MAX_BATCHES_PER_TURN: usize = 8;

/// Runs one load against `config.target` and measures it.
pub(crate) fn run_load(config: &LoadConfig) -> std::io::Result<Report> {
    // Open loop: a batch never spans more than 1 ms of the schedule, so low rates are paced
    // rather than sent in a few bursts.
    let batch = match config.mode {
        Mode::Open { rate } => config
            .batch
            .min(usize::try_from(rate / 1000).unwrap_or(usize::MAX)),
        Mode::Closed { .. } => config.batch,
    }
    .clamp(1, 1024);
    let mut socks = Sockets::open(config.target, config.sockets, batch)?;
    let mut tracker = Tracker::new(run_nonce());
    let duration_ns = u64::try_from(config.duration.as_nanos()).unwrap_or(u64::MAX);
    let drain_ns = u64::try_from(config.drain.as_nanos()).unwrap_or(u64::MAX);
    let timeout_ns = u64::try_from(config.timeout.as_nanos()).unwrap_or(u64::MAX);
    let planned = match config.mode {
        Mode::Open { rate } => (rate as f64 * config.duration.as_secs_f64()).round() as u64,
        Mode::Closed { .. } => 0,
    };
    let mut max_backlog = 0u64;
    let mut send_end_ns = duration_ns;
    let mut drain_until: Option<u64> = None;
    let cpu_before = own_cpu_secs();
    let clock = Clock::start();
    loop {
        let now = clock.ns();
        if drain_until.is_none() && now >= duration_ns {
            tracker.draining = true;
            send_end_ns = now;
            drain_until = Some(now.saturating_add(drain_ns));
        }
        let wait = match drain_until {
            Some(end) => {
                if now >= end || tracker.in_flight == 0 {
                    break;
                }
                Duration::from_nanos(end - now)
            }
            None => match config.mode {
                Mode::Open { rate } => {
                    let schedule = Schedule {
                        rate,
                        planned,
                        duration_ns,
                        batch,
                    };
                    let due = schedule.due(now);
                    let mut rounds = 0;
                    while tracker.next_seq < due && rounds < MAX_BATCHES_PER_TURN {
                        let owed = (due - tracker.next_seq) as usize;
                        if owed < batch && due < planned {
                            break;
                        }
                        socks.send(&mut tracker, owed.min(batch), now);
                        rounds += 1;
                    }
                    max_backlog = max_backlog.max(due.saturating_sub(tracker.next_seq));
                    schedule.wait(tracker.next_seq, now)
                }
                Mode::Closed { window } => {
                    tracker.expire(now, timeout_ns);
                    while tracker.in_flight < window {
                        let room = (window - tracker.in_flight) as usize;
                        let failed_before = socks.send_failed;
                        socks.send(&mut tracker, room.min(batch), now);
                        if socks.send_failed > failed_before {
                            break; // the kernel refused some: read answers, then try again
                        }
                    }
                    if tracker.in_flight >= window {
                        Duration::from_nanos(duration_ns.saturating_sub(now))
                            .min(Duration::from_millis(10))
                    } else {
                        Duration::ZERO
                    }
                }
            },
        };
        socks.receive(&mut tracker, wait, &clock)?;
    }
    let cpu_secs = own_cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let generator_drops = drops(&socks.sockets);
    Ok(Report {
        config: LoadConfig {
            batch,
            ..config.clone()
        },
        planned,
        sent: socks.sent,
        send_failed: socks.send_failed,
        answered: tracker.answered,
        late: tracker.late,
        duplicates: tracker.duplicates,
        invalid: tracker.invalid,
        stale: tracker.stale,
        expired: tracker.expired,
        generator_drops,
        max_backlog,
        send_secs: send_end_ns as f64 / 1e9,
        cpu_secs,
        latency_us: percentiles_us(&tracker.latency),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::Responder;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn responder() -> Responder {
        Responder::start(
            "127.0.0.1:0".parse().expect("addr"),
            1,
            32,
            Arc::new(AtomicBool::new(false)),
        )
        .expect("responder")
    }

    fn config(target: SocketAddr, mode: Mode) -> LoadConfig {
        LoadConfig {
            target,
            mode,
            duration: Duration::from_millis(300),
            sockets: 3,
            batch: 16,
            drain: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn closed_loop_against_the_responder_loses_nothing() {
        let r = responder();
        let report = run_load(&config(r.local_addr(), Mode::Closed { window: 40 })).expect("load");
        r.join().expect("join");
        assert!(report.sent > 100, "{report:?}");
        assert_eq!(report.answered, report.sent, "{report:?}");
        assert_eq!(report.invalid + report.duplicates + report.stale, 0);
        assert!(report.latency_us[0] > 0.0 && report.latency_us[0] <= report.latency_us[3]);
        assert!(
            report
                .to_json()
                .contains(&format!("\"answered\":{}", report.answered))
        );
    }

    #[test]
    fn open_loop_sends_what_the_schedule_says() {
        let r = responder();
        let report = run_load(&config(r.local_addr(), Mode::Open { rate: 20_000 })).expect("load");
        r.join().expect("join");
        assert_eq!(report.planned, 6_000);
        assert_eq!(
            report.config.batch, 16,
            "20 per ms, so the configured 16 stands"
        );
        // On a loaded machine the generator may fall a little behind; it must then say so.
        assert!((5_400..=6_000).contains(&report.sent), "{report:?}");
        assert_eq!(report.answered, report.sent, "{report:?}");
        if report.kept_up() {
            assert!(report.sent >= 5_994, "{report:?}");
            assert!(report.to_text().contains("generator kept up"));
        } else {
            assert!(report.to_text().contains("did NOT keep up"), "{report:?}");
        }
    }

    #[test]
    fn a_silent_server_is_all_loss_and_the_window_keeps_moving() {
        // A socket nobody reads: requests vanish.
        let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = sink.local_addr().expect("addr");
        let report = run_load(&config(target, Mode::Closed { window: 8 })).expect("load");
        assert_eq!(report.answered, 0);
        assert!(report.expired > 8, "timeouts refill the window: {report:?}");
        assert!((report.loss_pct() - 100.0).abs() < 1e-9);
        let report = run_load(&config(target, Mode::Open { rate: 1_000 })).expect("load");
        assert_eq!(report.config.batch, 1, "one request per ms");
        assert!((270..=300).contains(&report.sent), "{report:?}");
        assert_eq!(report.lost(), report.sent);
        assert!(report.to_text().contains("no answers at all"));
    }

    #[test]
    fn tracker_matches_by_sequence_number() {
        let nonce = [9, 9, 9, 9];
        let mut t = Tracker::new(nonce);
        let s0 = t.take_seq(1_000);
        let s1 = t.take_seq(1_000);
        let answer = |seq: u64, nonce: [u8; 4]| {
            let mut req = [0u8; 20];
            wire::write_request(&mut req, seq, nonce);
            let mut out = [0u8; 64];
            let n = wire::write_response(&req, "127.0.0.1:1".parse().expect("addr"), &mut out)
                .expect("fits");
            out[..n].to_vec()
        };
        t.in_flight = 2;
        t.on_datagram(&answer(s1, nonce), 5_000);
        t.on_datagram(&answer(s1, nonce), 6_000);
        t.on_datagram(&answer(s0, [0; 4]), 6_000);
        t.on_datagram(&answer(7, nonce), 6_000);
        assert_eq!(
            (t.answered, t.duplicates, t.invalid, t.in_flight),
            (1, 1, 2, 1)
        );
        assert!(
            t.latency.equivalent(t.latency.max(), 4_000),
            "{}",
            t.latency.max()
        );
        // Given up, then answered late: counted, the window not freed twice.
        t.expire(2_000_000, 1_000);
        assert_eq!((t.expired, t.in_flight), (1, 0));
        t.on_datagram(&answer(s0, nonce), 3_000_000);
        assert_eq!((t.answered, t.in_flight), (2, 0));
    }

    #[test]
    fn answers_older_than_the_ring_are_stale() {
        let nonce = [1, 2, 3, 4];
        let mut t = Tracker::new(nonce);
        t.next_seq = RING + 5;
        let mut req = [0u8; 20];
        wire::write_request(&mut req, 4, nonce);
        let mut out = [0u8; 64];
        let n = wire::write_response(&req, "127.0.0.1:1".parse().expect("addr"), &mut out)
            .expect("fits");
        t.on_datagram(&out[..n], 1);
        assert_eq!((t.stale, t.answered), (1, 0));
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        let args = StunArgs {
            target: "192.0.2.1:3478".parse().expect("addr"),
            rate: None,
            window: Some(1),
            duration: 0.1,
            sockets: 1,
            batch: 1,
            drain_ms: 0,
            timeout_ms: 10,
            json: false,
            allow_remote: false,
        };
        let err = run(args).expect_err("refused");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
    }
}
