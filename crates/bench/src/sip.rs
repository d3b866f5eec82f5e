//! `farside bench sip`: a batched SIP registration load generator for any registrar.
//!
//! Each registration is what `bench/sip/register-load.xml` has SIPp do: a phone behind a NAT
//! (private Via and Contact) sends REGISTER, gets 401, sends REGISTER with Digest credentials
//! and gets 200. Registrations start open loop at `--rate` per second, whatever the server
//! answers, in batches of at most one millisecond's worth (`sendmmsg`); the second REGISTER
//! leaves as soon as the 401 is read, from the same socket, in the batch of answers to that
//! read. One thread, no allocation per message, so one core drives well over 100 000 requests
//! per second: SIPp, one request at a time, stops near 28 000 on this kind of machine, below
//! Farside's ceiling.
//!
//! Nothing is retransmitted: a request or answer lost is a registration failed after
//! `--timeout-ms`. So the highest rate without failures is the highest rate at which the server
//! drops nothing, the same criterion for every server.

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
use super::sip_wire::{self, Authorization, Phone};
use hdrhistogram::Histogram;

/// Arguments of `farside bench sip`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Only loopback targets are accepted unless --allow-remote is given: \
                        at these rates a load test is indistinguishable from a flood."
)]
pub struct SipArgs {
    /// The registrar to load, as IP:port (e.g. 127.0.0.1:5060).
    pub(crate) target: SocketAddr,
    /// Registrations started per second (each is two REGISTERs and two answers).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    pub(crate) rate: u64,
    /// Seconds to start registrations for (up to 300).
    #[arg(long, default_value_t = 5.0, value_parser = parse_duration)]
    pub(crate) duration: f64,
    /// Users, registered in turn: PREFIX0, PREFIX1, ... (as SIPp's sequential -inf file).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) users: u32,
    /// The users' name prefix.
    #[arg(long, default_value = "user")]
    pub(crate) user_prefix: String,
    /// Every user's password.
    #[arg(long, default_value = "bench-password")]
    pub(crate) password: String,
    /// The domain registered to (Request-URI, From, To; the expected realm).
    #[arg(long, default_value = "example.org")]
    pub(crate) domain: String,
    /// Source sockets (ports) the registrations are spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) sockets: u16,
    /// Requests per sendmmsg call (and answers per recvmmsg call); first REGISTERs at most one
    /// millisecond's worth of the rate.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) batch: u16,
    /// Milliseconds after its first REGISTER by which a registration must have its 200.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) timeout_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub(crate) allow_remote: bool,
}

/// Runs the load described by `args` and prints the report.
pub(crate) fn run(args: SipArgs) -> anyhow::Result<ExitCode> {
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
    let config = LoadConfig {
        target: args.target,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        users: args.users,
        user_prefix: args.user_prefix,
        password: args.password,
        domain: args.domain,
        sockets: usize::from(args.sockets),
        batch: usize::from(args.batch),
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

/// One load run.
#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    /// Where the REGISTERs go.
    pub(crate) target: SocketAddr,
    /// Registrations started per second.
    pub(crate) rate: u64,
    /// How long registrations are started for.
    pub(crate) duration: Duration,
    /// Users, registered in turn.
    pub(crate) users: u32,
    /// Their names' prefix.
    pub(crate) user_prefix: String,
    /// Their password.
    pub(crate) password: String,
    /// The domain.
    pub(crate) domain: String,
    /// Source sockets.
    pub(crate) sockets: usize,
    /// Datagrams per system call.
    pub(crate) batch: usize,
    /// How long a registration may take.
    pub(crate) timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The run's configuration (its batch as used).
    pub(crate) config: LoadConfig,
    /// Registrations the schedule called for.
    pub(crate) planned: u64,
    /// Registrations whose first REGISTER the kernel accepted.
    pub(crate) started: u64,
    /// Registrations that got their 200.
    pub(crate) registered: u64,
    /// Registrations answered with a failure (a final status other than the 401 and 200
    /// expected, or a 401 without a usable challenge).
    pub(crate) rejected: u64,
    /// Registrations without their 200 after the timeout.
    pub(crate) timed_out: u64,
    /// Requests built but refused by `sendmmsg` (their registrations failed).
    pub(crate) send_failed: u64,
    /// Answers for a registration already finished or given up.
    pub(crate) late: u64,
    /// Datagrams that were not an answer to one of this run's requests.
    pub(crate) invalid: u64,
    /// Requests and keep-alives the server sent to the phones' Contact (its NAT pings),
    /// read and left unanswered.
    pub(crate) pings: u64,
    /// Datagrams the kernel dropped in the generator's own receive buffers.
    pub(crate) generator_drops: u64,
    /// The furthest the generator fell behind its schedule, in registrations.
    pub(crate) max_backlog: u64,
    /// Seconds from the first registration started to the last.
    pub(crate) send_secs: f64,
    /// CPU seconds (user + system) the generator itself used, when `/proc/self/stat` says.
    pub(crate) cpu_secs: Option<f64>,
    /// Registration times (first REGISTER sent to 200 read) in microseconds: p50, p99, p99.9,
    /// max.
    pub(crate) latency_us: [f64; 4],
}

impl Report {
    /// Registrations started that did not end registered.
    pub(crate) fn failed(&self) -> u64 {
        self.started.saturating_sub(self.registered)
    }

    /// Failed registrations as a percentage of those started.
    pub(crate) fn failed_pct(&self) -> f64 {
        super::measure::pct(self.failed(), self.started)
    }

    /// Registrations completed per second of sending.
    pub(crate) fn registered_per_sec(&self) -> f64 {
        super::measure::per_sec(self.registered as f64, self.send_secs)
    }

    /// Registrations started per second of sending.
    pub(crate) fn started_per_sec(&self) -> f64 {
        super::measure::per_sec(self.started as f64, self.send_secs)
    }

    /// The generator started (nearly) every registration its schedule called for, on time.
    pub(crate) fn kept_up(&self) -> bool {
        self.send_failed == 0
            && self.started as f64 >= 0.999 * self.planned as f64
            && self.max_backlog <= self.config.rate / 100 + self.config.batch as u64
    }

    /// Human-readable report.
    pub(crate) fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "SIP registration load on {}: {} registrations/s for {:.1} s ({} users, {} sockets, \
             batches of {})",
            c.target,
            c.rate,
            c.duration.as_secs_f64(),
            c.users,
            c.sockets,
            c.batch
        );
        let pace = if self.kept_up() {
            format!(
                "generator kept up; max lag {:.1} ms",
                1e3 * self.max_backlog as f64 / c.rate as f64
            )
        } else {
            format!(
                "generator did NOT keep up: {} of {} planned started, up to {:.1} ms late",
                self.started,
                self.planned,
                1e3 * self.max_backlog as f64 / c.rate as f64
            )
        };
        let _ = writeln!(
            s,
            "  started     {:>10}  ({:.0}/s; {pace})",
            self.started,
            self.started_per_sec()
        );
        let _ = writeln!(
            s,
            "  registered  {:>10}  ({:.0}/s)",
            self.registered,
            self.registered_per_sec()
        );
        let _ = writeln!(
            s,
            "  failed      {:>10}  ({:.3} %: {} rejected, {} timed out after {} ms, {} not sent)",
            self.failed(),
            self.failed_pct(),
            self.rejected,
            self.timed_out,
            c.timeout.as_millis(),
            self.send_failed
        );
        let [p50, p99, p999, max] = self.latency_us;
        let _ = writeln!(
            s,
            "  registration time p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs, max {max:.0} µs"
        );
        super::measure::cpu_line(&mut s, self.cpu_secs, self.send_secs);
        if self.late + self.invalid > 0 {
            let _ = writeln!(
                s,
                "  odd answers: {} late, {} not ours",
                self.late, self.invalid
            );
        }
        if self.pings > 0 {
            let _ = writeln!(s, "  keep-alive pings from the server: {}", self.pings);
        }
        if !self.kept_up() {
            let _ = writeln!(
                s,
                "WARNING: the generator could not hold the requested rate; the figures describe \
                 the rate it reached. Give it a core of its own or larger --batch."
            );
        }
        if self.generator_drops > 0 {
            let _ = writeln!(
                s,
                "WARNING: {} answers were dropped in the generator's own receive buffers: the \
                 generator, not the server, may be the limit.",
                self.generator_drops
            );
        }
        if self.registered == 0 && self.started > 0 {
            let _ = writeln!(
                s,
                "WARNING: no registration at all: is a registrar for {} on {}, with these users?",
                c.domain, c.target
            );
        }
        s
    }

    /// One JSON object (flat; numbers and strings only).
    pub(crate) fn to_json(&self) -> String {
        let c = &self.config;
        let [p50, p99, p999, max] = self.latency_us;
        format!(
            concat!(
                "{{\"target\":\"{}\",\"rate\":{},\"duration_s\":{:.3},\"users\":{},",
                "\"sockets\":{},\"batch\":{},\"send_s\":{:.3},\"planned\":{},\"started\":{},",
                "\"registered\":{},\"failed\":{},\"failed_pct\":{:.4},\"rejected\":{},",
                "\"timed_out\":{},\"send_failed\":{},\"late\":{},\"invalid\":{},\"pings\":{},",
                "\"started_per_s\":{:.0},\"registered_per_s\":{:.0},\"kept_up\":{},",
                "\"max_lag_ms\":{:.2},\"generator_drops\":{},",
                "\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},",
                "\"generator_cpu_s\":{}}}"
            ),
            c.target,
            c.rate,
            c.duration.as_secs_f64(),
            c.users,
            c.sockets,
            c.batch,
            self.send_secs,
            self.planned,
            self.started,
            self.registered,
            self.failed(),
            self.failed_pct(),
            self.rejected,
            self.timed_out,
            self.send_failed,
            self.late,
            self.invalid,
            self.pings,
            self.started_per_sec(),
            self.registered_per_sec(),
            self.kept_up(),
            1e3 * self.max_backlog as f64 / c.rate as f64,
            self.generator_drops,
            p50,
            p99,
            p999,
            max,
            self.cpu_secs
                .map_or_else(|| "null".to_string(), |c| format!("{c:.3}"))
        )
    }
}

/// Registration ring size: 2^20 (16 MiB), four seconds of history at 250 000/s.
const RING_BITS: u32 = 20;
const RING: u64 = 1 << RING_BITS;
const RING_MASK: u64 = RING - 1;

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// First REGISTER sent, 401 awaited.
    Challenged,
    /// Second REGISTER sent, 200 awaited.
    Authorizing,
    /// Over: registered, rejected or given up.
    Over,
}

/// One registration in the ring.
#[derive(Debug, Clone, Copy)]
struct Registration {
    started_ns: u64,
    stage: Stage,
}

/// The users: names, private hosts and HA1s for the expected realm.
struct Users {
    names: Vec<String>,
    ha1: Vec<[u8; 32]>,
    password: String,
    domain: String,
    ha2: [u8; 32],
}

impl Users {
    fn new(c: &LoadConfig) -> Self {
        let names: Vec<String> = (0..c.users)
            .map(|i| format!("{}{i}", c.user_prefix))
            .collect();
        let ha1 = names
            .iter()
            .map(|n| sip_wire::ha1(n, c.domain.as_bytes(), &c.password))
            .collect();
        Users {
            names,
            ha1,
            password: c.password.clone(),
            domain: c.domain.clone(),
            ha2: sip_wire::ha2_register(&c.domain),
        }
    }

    fn phone(&self, seq: u64) -> (usize, Phone<'_>) {
        let i = (seq % self.names.len() as u64) as usize;
        let phone = Phone {
            user: &self.names[i],
            domain: &self.domain,
            private_host: (i % 250 + 2) as u8,
        };
        (i, phone)
    }
}

/// Per-registration bookkeeping and counters.
struct Tracker {
    tag: String,
    ring: Box<[Registration]>,
    next_seq: u64,
    oldest: u64,
    in_flight: u64,
    registered: u64,
    rejected: u64,
    timed_out: u64,
    late: u64,
    invalid: u64,
    pings: u64,
    latency: Histogram<u64>,
}

impl Tracker {
    fn new(nonce: [u8; 4]) -> Self {
        let over = Registration {
            started_ns: 0,
            stage: Stage::Over,
        };
        Tracker {
            tag: format!(
                "fsb{:02x}{:02x}{:02x}{:02x}",
                nonce[0], nonce[1], nonce[2], nonce[3]
            ),
            ring: vec![over; RING as usize].into_boxed_slice(),
            next_seq: 0,
            oldest: 0,
            in_flight: 0,
            registered: 0,
            rejected: 0,
            timed_out: 0,
            late: 0,
            invalid: 0,
            pings: 0,
            latency: super::measure::latency_histogram(),
        }
    }

    fn slot(&mut self, seq: u64) -> &mut Registration {
        &mut self.ring[(seq & RING_MASK) as usize]
    }

    /// Ends registration `seq`.
    fn end(&mut self, seq: u64) {
        self.slot(seq).stage = Stage::Over;
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Ends registration `seq` unregistered, on the server's word.
    fn reject(&mut self, seq: u64) {
        self.end(seq);
        self.rejected += 1;
    }

    /// Gives up registrations older than `timeout_ns`, oldest first (and any about to be
    /// overwritten in the ring).
    fn expire(&mut self, now_ns: u64, timeout_ns: u64) {
        while self.oldest < self.next_seq {
            let overwritten_soon = self.next_seq - self.oldest >= RING - 1;
            let oldest = self.oldest;
            let r = *self.slot(oldest);
            if r.stage != Stage::Over {
                if now_ns.saturating_sub(r.started_ns) < timeout_ns && !overwritten_soon {
                    return;
                }
                self.end(oldest);
                self.timed_out += 1;
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
            tx: SendBatch::new(batch, sip_wire::MAX_REQUEST),
            rx: RecvBatch::new(batch, 4096),
            batch,
            send_failed: 0,
        })
    }

    /// Sends what is queued from socket `i`; what the kernel refuses fails its registrations
    /// (`queued` names them).
    fn flush(&mut self, i: usize, queued: &mut Vec<u64>, tracker: &mut Tracker) -> u64 {
        let sent = send_batch(&self.sockets[i], &mut self.tx);
        // sendmmsg sends a prefix: the rest were refused.
        for &seq in queued.iter().skip(sent) {
            tracker.end(seq);
            self.send_failed += 1;
        }
        queued.clear();
        sent as u64
    }
}

/// At most this many batches of first REGISTERs go out between two looks at the answers.
const MAX_BATCHES_PER_TURN: usize = 8;

/// Runs one load against `config.target` and measures it.
pub(crate) fn run_load(config: &LoadConfig) -> std::io::Result<Report> {
    let batch = config
        .batch
        .min(usize::try_from(config.rate / 1000).unwrap_or(usize::MAX))
        .clamp(1, 1024);
    let users = Users::new(config);
    let mut socks = Sockets::open(config.target, config.sockets, batch)?;
    let mut tracker = Tracker::new(run_nonce());
    let cnonce = tracker.tag.clone();
    let rate = config.rate;
    let duration_ns = u64::try_from(config.duration.as_nanos()).unwrap_or(u64::MAX);
    let timeout_ns = u64::try_from(config.timeout.as_nanos()).unwrap_or(u64::MAX);
    let planned = (rate as f64 * config.duration.as_secs_f64()).round() as u64;
    let mut queued: Vec<u64> = Vec::with_capacity(batch);
    let mut started = 0u64;
    let mut max_backlog = 0u64;
    let mut send_end_ns = duration_ns;
    let mut drain_until: Option<u64> = None;
    let schedule = Schedule {
        rate,
        planned,
        duration_ns,
        batch,
    };
    let cpu_before = own_cpu_secs();
    let clock = Clock::start();
    loop {
        let now = clock.ns();
        tracker.expire(now, timeout_ns);
        if drain_until.is_none() && now >= duration_ns {
            send_end_ns = now;
            drain_until = Some(now.saturating_add(timeout_ns));
        }
        let wait = match drain_until {
            Some(end) => {
                if now >= end || tracker.in_flight == 0 {
                    break;
                }
                Duration::from_nanos(end - now).min(Duration::from_millis(10))
            }
            None => {
                let due = schedule.due(now);
                let mut rounds = 0;
                while tracker.next_seq < due && rounds < MAX_BATCHES_PER_TURN {
                    let owed = (due - tracker.next_seq) as usize;
                    if owed < batch && due < planned {
                        break;
                    }
                    for _ in 0..owed.min(batch) {
                        let seq = tracker.next_seq;
                        let (_, phone) = users.phone(seq);
                        let tag = &tracker.tag;
                        socks.tx.push_connected(|buf| {
                            sip_wire::write_register(buf, &phone, tag, seq, 1, None)
                        });
                        *tracker.slot(seq) = Registration {
                            started_ns: now,
                            stage: Stage::Challenged,
                        };
                        tracker.next_seq += 1;
                        tracker.in_flight += 1;
                        queued.push(seq);
                    }
                    let i = socks.next;
                    socks.next = (socks.next + 1) % socks.sockets.len();
                    started += socks.flush(i, &mut queued, &mut tracker);
                    rounds += 1;
                }
                max_backlog = max_backlog.max(due.saturating_sub(tracker.next_seq));
                schedule.wait(tracker.next_seq, now)
            }
        };
        receive(
            &mut socks,
            &mut tracker,
            &users,
            &cnonce,
            &mut queued,
            wait,
            &clock,
        )?;
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
        started,
        registered: tracker.registered,
        rejected: tracker.rejected,
        timed_out: tracker.timed_out,
        send_failed: socks.send_failed,
        late: tracker.late,
        invalid: tracker.invalid,
        pings: tracker.pings,
        generator_drops,
        max_backlog,
        send_secs: send_end_ns as f64 / 1e9,
        cpu_secs,
        latency_us: percentiles_us(&tracker.latency),
    })
}

/// Waits up to `timeout` for answers, then reads every socket that has some until it is
/// empty, sending the second REGISTERs the 401s call for from the socket they came to.
fn receive(
    socks: &mut Sockets,
    tracker: &mut Tracker,
    users: &Users,
    cnonce: &str,
    queued: &mut Vec<u64>,
    timeout: Duration,
    clock: &Clock,
) -> std::io::Result<()> {
    let ready = wait_readable(&socks.fds, timeout)?;
    for i in 0..socks.sockets.len() {
        if ready & (1 << i) == 0 {
            continue;
        }
        loop {
            let n = recv_batch(&socks.sockets[i], &mut socks.rx)?;
            if n == 0 {
                break;
            }
            let now = clock.ns();
            for d in socks.rx.iter() {
                on_answer(
                    d.payload,
                    now,
                    tracker,
                    users,
                    cnonce,
                    &mut socks.tx,
                    queued,
                );
            }
            if !queued.is_empty() {
                socks.flush(i, queued, tracker);
            }
            if n < socks.batch {
                break;
            }
        }
    }
    Ok(())
}

/// Books one answer; a 401 queues the second REGISTER into `tx`.
fn on_answer(
    payload: &[u8],
    now: u64,
    tracker: &mut Tracker,
    users: &Users,
    cnonce: &str,
    tx: &mut SendBatch,
    queued: &mut Vec<u64>,
) {
    if sip_wire::is_ping(payload) {
        // A registrar that keeps NAT bindings open pings the Contact now and then.
        tracker.pings += 1;
        return;
    }
    let Some((status, seq)) = sip_wire::parse_answer(payload, &tracker.tag) else {
        tracker.invalid += 1;
        return;
    };
    if seq >= tracker.next_seq {
        tracker.invalid += 1;
        return;
    }
    if tracker.next_seq - seq > RING {
        tracker.late += 1;
        return;
    }
    let r = *tracker.slot(seq);
    match (r.stage, status) {
        (_, 100..=199) => {}
        (Stage::Over, _) => tracker.late += 1,
        (Stage::Challenged, 401) => {
            let Some(challenge) = sip_wire::parse_challenge(payload) else {
                tracker.reject(seq);
                return;
            };
            let (i, phone) = users.phone(seq);
            let ha1 = if challenge.realm == users.domain.as_bytes() {
                users.ha1[i]
            } else {
                sip_wire::ha1(phone.user, challenge.realm, &users.password)
            };
            let response = sip_wire::response(&ha1, &challenge, cnonce, &users.ha2);
            let auth = Authorization {
                challenge: &challenge,
                response: &response,
                cnonce,
            };
            let tag = &tracker.tag;
            if !tx.push_connected(|buf| {
                sip_wire::write_register(buf, &phone, tag, seq, 2, Some(auth))
            }) {
                tracker.reject(seq);
                return;
            }
            tracker.slot(seq).stage = Stage::Authorizing;
            queued.push(seq);
        }
        (Stage::Authorizing, 200..=299) => {
            tracker.end(seq);
            tracker.registered += 1;
            tracker
                .latency
                .saturating_record(now.saturating_sub(r.started_ns));
        }
        _ => tracker.reject(seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registrar that answers as a real one would for one password: 401 with a challenge to
    /// every REGISTER without credentials, 200 to one whose response is right, 403 otherwise.
    fn registrar(password: &'static str) -> (SocketAddr, std::thread::JoinHandle<u64>) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let req = std::str::from_utf8(&buf[..n]).expect("utf-8");
                let header = |name: &str| {
                    req.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .to_string()
                };
                let (via, call_id) = (header("Via: "), header("Call-ID: "));
                let user = header("To: <sip:");
                let user = user.split('@').next().unwrap_or_default();
                let auth = header("Authorization: Digest ");
                let status = if auth.is_empty() {
                    "401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"example.org\", \
                     nonce=\"n0nce\", qop=\"auth\""
                        .to_string()
                } else {
                    let field = |k: &str| {
                        auth.split(',')
                            .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                            .map(|v| v.trim_end_matches('"').to_string())
                            .unwrap_or_default()
                    };
                    let c = sip_wire::Challenge {
                        realm: b"example.org",
                        nonce: b"n0nce",
                        opaque: None,
                        qop_auth: true,
                    };
                    let want = sip_wire::response(
                        &sip_wire::ha1(user, b"example.org", password),
                        &c,
                        &field("cnonce"),
                        &sip_wire::ha2_register("example.org"),
                    );
                    if field("response").as_bytes() == want {
                        "200 OK".to_string()
                    } else {
                        "403 Forbidden".to_string()
                    }
                };
                let answer = format!(
                    "SIP/2.0 {status}\r\nVia: {via}\r\nCall-ID: {call_id}\r\nContent-Length: 0\r\n\r\n"
                );
                socket.send_to(answer.as_bytes(), from).expect("send");
                answered += 1;
            }
            answered
        });
        (addr, handle)
    }

    fn config(target: SocketAddr, password: &str) -> LoadConfig {
        LoadConfig {
            target,
            rate: 2_000,
            duration: Duration::from_millis(200),
            users: 7,
            user_prefix: "user".into(),
            password: password.into(),
            domain: "example.org".into(),
            sockets: 2,
            batch: 32,
            timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn every_registration_authenticates_against_a_registrar() {
        let (addr, server) = registrar("secret");
        let report = run_load(&config(addr, "secret")).expect("load");
        let answered = server.join().expect("registrar");
        assert_eq!(report.planned, 400);
        assert_eq!(report.config.batch, 2, "two per millisecond");
        assert!(report.started >= 360, "{report:?}");
        assert_eq!(report.registered, report.started, "{report:?}");
        assert_eq!(answered, 2 * report.started, "two REGISTERs each");
        assert_eq!(report.failed(), 0);
        assert!(report.latency_us[0] > 0.0);
        assert!(
            report
                .to_json()
                .contains(&format!("\"registered\":{}", report.registered))
        );
    }

    #[test]
    fn a_wrong_password_is_rejected_and_a_silent_server_times_out() {
        let (addr, server) = registrar("secret");
        let report = run_load(&config(addr, "wrong")).expect("load");
        server.join().expect("registrar");
        assert_eq!(report.registered, 0);
        assert_eq!(report.rejected, report.started, "{report:?}");
        assert!(report.to_text().contains("no registration at all"));

        let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut c = config(sink.local_addr().expect("addr"), "secret");
        c.timeout = Duration::from_millis(50);
        let report = run_load(&c).expect("load");
        assert_eq!(report.registered, 0);
        assert_eq!(report.timed_out, report.started, "{report:?}");
        assert!((report.failed_pct() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        let args = SipArgs {
            target: "192.0.2.1:5060".parse().expect("addr"),
            rate: 1,
            duration: 0.1,
            users: 1,
            user_prefix: "u".into(),
            password: "p".into(),
            domain: "d".into(),
            sockets: 1,
            batch: 1,
            timeout_ms: 10,
            json: false,
            allow_remote: false,
        };
        let err = run(args).expect_err("refused");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
    }
}
