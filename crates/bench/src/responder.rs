//! `farside bench responder`: the floor the kernel sets for a UDP request/response server.
//!
//! Each thread owns an `SO_REUSEPORT` socket and loops: `recvmmsg` a batch, answer every
//! datagram of at least 20 bytes with its STUN header turned into a success response plus an
//! XOR-MAPPED-ADDRESS of its source (the size of a real Binding answer), `sendmmsg` the batch.
//! No parsing, no validation, no state: whatever a STUN server spends beyond this is its own.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use farside_io::{
    RecvBatch, SendBatch, SocketOptions, bind_udp, recv_batch, send_batch, wait_readable,
};

use super::wire;

/// Arguments of `farside bench responder`.
#[derive(clap::Args, Debug)]
pub struct ResponderArgs {
    /// Address to answer on, as IP:port (loopback for benchmarks, e.g. 127.0.0.1:3478).
    pub(crate) listen: SocketAddr,
    /// Threads, each with its own SO_REUSEPORT socket on LISTEN.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) threads: u16,
    /// Datagrams per recvmmsg/sendmmsg call (32, as Farside's `stun.batch` default).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) batch: u16,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_seconds)]
    pub(crate) duration: Option<f64>,
}

/// Runs the responder until a signal or the duration ends, then prints what it answered.
pub(crate) fn run(args: ResponderArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&stop)).context("installing SIGINT/SIGTERM handlers")?;
    let responder = Responder::start(
        args.listen,
        usize::from(args.threads),
        usize::from(args.batch),
        Arc::clone(&stop),
    )
    .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "bench responder: answering on {} with {} thread(s), batches of {}",
        responder.local_addr(),
        args.threads,
        args.batch
    );
    let started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs_f64(s));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let totals = responder.join()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "bench responder: answered {} datagrams in {:.1} s ({:.0}/s); ignored {} shorter than 20 bytes; {} answers not sent",
        totals.answered,
        secs,
        super::measure::per_sec(totals.answered as f64, secs),
        totals.short,
        totals.unsent
    );
    Ok(ExitCode::SUCCESS)
}

/// What the threads did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Answers the kernel accepted.
    pub(crate) answered: u64,
    /// Datagrams too short to answer.
    pub(crate) short: u64,
    /// Answers built but refused by `sendmmsg` (full send buffer, unreachable source).
    pub(crate) unsent: u64,
}

/// A running responder: its threads and the flag that stops them.
pub(crate) struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<std::io::Result<Totals>>>,
}

impl Responder {
    /// Binds `threads` sockets on `listen` (port 0 picks one port for all) and starts a thread
    /// on each; they stop within 100 ms of `stop` becoming true.
    pub(crate) fn start(
        listen: SocketAddr,
        threads: usize,
        batch: usize,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Responder> {
        let opts = SocketOptions::default();
        let first = bind_udp(listen, opts)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads.max(1) {
            sockets.push(bind_udp(addr, opts)?);
        }
        let mut handles = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("responder-{i}"))
                .spawn(move || serve(&socket, batch, &stop))?;
            handles.push(handle);
        }
        Ok(Responder {
            addr,
            stop,
            threads: handles,
        })
    }

    /// The address the sockets are bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the threads (if the flag is not set yet), waits for them and sums their counts.
    pub(crate) fn join(self) -> anyhow::Result<Totals> {
        self.stop.store(true, Ordering::Relaxed);
        let mut totals = Totals::default();
        for handle in self.threads {
            let t = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a responder thread panicked"))?
                .context("responder thread")?;
            totals.answered += t.answered;
            totals.short += t.short;
            totals.unsent += t.unsent;
        }
        Ok(totals)
    }
}

/// One thread's loop.
fn serve(socket: &UdpSocket, batch: usize, stop: &AtomicBool) -> std::io::Result<Totals> {
    let fd = socket.as_raw_fd();
    let mut rx = RecvBatch::new(batch, 2048);
    let mut tx = SendBatch::new(batch, 64);
    let mut totals = Totals::default();
    while !stop.load(Ordering::Relaxed) {
        let n = recv_batch(socket, &mut rx)?;
        if n == 0 {
            wait_readable(&[fd], Duration::from_millis(100))?;
            continue;
        }
        for d in rx.iter() {
            if d.payload.len() < wire::HEADER_LEN {
                totals.short += 1;
                continue;
            }
            tx.push(d.source, |buf| {
                wire::write_response(d.payload, d.source, buf)
            });
        }
        let queued = tx.len() as u64;
        let sent = send_batch(socket, &mut tx) as u64;
        totals.answered += sent;
        totals.unsent += queued - sent;
    }
    Ok(totals)
}

/// Sets `stop` on SIGINT or SIGTERM, from a thread of its own running a small tokio runtime
/// (the farside crate has no `unsafe`, so no raw `sigaction`). Returns once the handlers are
/// installed.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let streams = signal(SignalKind::interrupt())
                    .and_then(|i| signal(SignalKind::terminate()).map(|t| (i, t)));
                let (mut int, mut term) = match streams {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                stop.store(true, Ordering::Relaxed);
            });
        })?;
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("signal thread exited"))??;
    Ok(())
}

/// Parses a positive number of seconds, at most 24 hours.
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err("expected seconds in (0, 86400]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_binding_requests_and_ignores_runts() {
        let stop = Arc::new(AtomicBool::new(false));
        let r = Responder::start(
            "127.0.0.1:0".parse().expect("addr"),
            2,
            8,
            Arc::clone(&stop),
        )
        .expect("start");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut req = [0u8; 20];
        wire::write_request(&mut req, 99, [1, 2, 3, 4]);
        client
            .send_to(&[0u8; 19], r.local_addr())
            .expect("send runt");
        client.send_to(&req, r.local_addr()).expect("send");
        let mut buf = [0u8; 128];
        let (n, from) = client.recv_from(&mut buf).expect("answer");
        assert_eq!(from, r.local_addr());
        assert_eq!(n, 32);
        assert_eq!(wire::parse_response(&buf[..n], [1, 2, 3, 4]), Some(99));
        let totals = r.join().expect("join");
        assert_eq!(totals.answered, 1);
        assert_eq!(totals.short, 1);
    }
}
