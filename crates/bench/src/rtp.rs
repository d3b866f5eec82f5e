//! `farside bench rtp`: an RTP relay load generator for any relay with rtpengine's ng control
//! protocol (Farside's `rtp.ng_listen`, rtpengine's `--listen-ng`).
//!
//! It sets up `--calls` calls over ng (an offer from side A, the answer from side B, as a SIP
//! proxy would), then sends G.711-sized RTP (172 bytes, `--pps` packets per second per
//! direction) from both sides of the first N calls, phase by phase (`--phases
//! "N:SECONDS,..."`), and counts what the relay delivered to the other side. All calls' A sides
//! send from one socket and their B sides from another, so the generator batches its system
//! calls; the relay still sees a stream per call and direction (its own ports), which is what
//! it is measured on. Per phase it reports packets sent and received, the loss, the streams
//! that received nothing in the phase's second half (broken: the relay stopped serving them),
//! and, given `--server-pid`, the relay's CPU time (all its threads, from `/proc`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use farside_io::{RecvBatch, SendBatch, SocketOptions, bind_udp, recv_batch, send_batch};
use farside_media::ng::bencode::Value;

/// Datagrams per `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;

/// The generator's two sockets: room to ride out its own pauses (what it drops anyway is
/// counted, `generator_drops`, not blamed on the relay).
const SOCKET_OPTIONS: SocketOptions = SocketOptions {
    reuse_port: false,
    recv_buffer: 16 << 20,
    send_buffer: 8 << 20,
    packet_info: false,
};

/// `farside bench rtp` options.
#[derive(clap::Args, Debug)]
pub struct RtpArgs {
    /// The relay's ng control socket, `ip:port` (UDP).
    target: SocketAddr,
    /// Calls set up (each: two streams, one per direction).
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// The load, phase by phase: `CALLS:SECONDS` (calls sending, of those set up), comma
    /// separated, e.g. "1000:5,1200:5,500:5" (a step past a knee and back). Default: all
    /// calls for 5 s.
    #[arg(long)]
    phases: Option<String>,
    /// Packets per second per direction per call (50: 20 ms packets).
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// Bytes per RTP packet (172: 20 ms of G.711 and a 12-byte header).
    #[arg(long, default_value_t = 172)]
    size: usize,
    /// The relay's process id: its CPU time is read for each phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Allow a non-loopback target.
    #[arg(long)]
    allow_remote: bool,
    /// One JSON object per phase instead of text.
    #[arg(long)]
    json: bool,
}

/// One call's relay ports: where side A sends (toward B) and where side B sends.
#[derive(Clone, Copy)]
struct Call {
    a_to: SocketAddr,
    b_to: SocketAddr,
}

pub(crate) fn run(args: RtpArgs) -> anyhow::Result<ExitCode> {
    if !args.target.ip().is_loopback() && !args.allow_remote {
        bail!(
            "{}: not a loopback address (use --allow-remote to load a remote relay)",
            args.target
        );
    }
    if !(1..=20_000).contains(&args.calls) {
        bail!("--calls must be 1..=20000");
    }
    if !(12..=1400).contains(&args.size) {
        bail!("--size must be 12..=1400");
    }
    let phases = parse_phases(args.phases.as_deref(), args.calls)?;
    let local = if args.target.is_ipv4() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    };
    let side_a = bind_udp(SocketAddr::new(local, 0), SOCKET_OPTIONS).context("bind side A")?;
    let side_b = bind_udp(SocketAddr::new(local, 0), SOCKET_OPTIONS).context("bind side B")?;
    let control = UdpSocket::bind(SocketAddr::new(local, 0)).context("bind the ng socket")?;
    control.set_read_timeout(Some(Duration::from_secs(1)))?;
    // rtpengine answers a request whose cookie it has seen with the reply it gave then: each
    // cookie names its run (the process) and its request.
    let nonce = std::process::id();

    let memory_before = args.server_pid.map(memory);
    let started = Instant::now();
    let mut calls = Vec::with_capacity(args.calls);
    for i in 0..args.calls {
        let id = format!("bench-{nonce}-{i}");
        let (from, to) = (format!("a{i}"), format!("b{i}"));
        let sdp = |port: u16| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {local}\r\ns=-\r\nc=IN IP4 {local}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
            )
        };
        // As a SIP proxy asks: the offer from A (its From tag), the answer from B (its To tag).
        let exchange = |command: &'static [u8], to_tag: Option<&str>, port: u16| {
            let sdp = sdp(port);
            let mut entries = vec![
                (b"command".as_slice(), Value::Bytes(command)),
                (b"call-id", Value::Bytes(id.as_bytes())),
                (b"from-tag", Value::Bytes(from.as_bytes())),
                (b"sdp", Value::Bytes(sdp.as_bytes())),
                (
                    b"replace",
                    Value::List(vec![
                        Value::Bytes(b"origin"),
                        Value::Bytes(b"session-connection"),
                    ]),
                ),
            ];
            if let Some(tag) = to_tag {
                entries.push((b"to-tag", Value::Bytes(tag.as_bytes())));
            }
            let cookie = format!("{nonce}-{}{i}", char::from(command[0]));
            ng(&control, args.target, &cookie, entries)
                .with_context(|| format!("{} of call {i}", String::from_utf8_lossy(command)))
        };
        let to_b = exchange(b"offer", None, side_a.local_addr()?.port())?;
        let to_a = exchange(b"answer", Some(&to), side_b.local_addr()?.port())?;
        // The offer as rewritten goes to B: it names where B sends. The answer as rewritten
        // goes to A: where A sends.
        calls.push(Call {
            a_to: media_address(&to_a).with_context(|| format!("the answer of call {i}"))?,
            b_to: media_address(&to_b).with_context(|| format!("the offer of call {i}"))?,
        });
    }
    let setup = started.elapsed();
    // What the calls cost the relay: its resident memory, and the kernel's slab (where its
    // sockets live), both in KiB, before and after the setup.
    let memory_after = args.server_pid.map(memory);
    let per_call = |f: fn(&Memory) -> Option<u64>| -> Option<f64> {
        let before = f(memory_before.as_ref()?)?;
        let after = f(memory_after.as_ref()?)?;
        Some(after.saturating_sub(before) as f64 * 1024.0 / args.calls as f64)
    };
    let (rss_per_call, slab_per_call) = (per_call(|m| m.rss_kib), per_call(|m| m.slab_kib));
    if !args.json
        && let (Some(r), Some(k)) = (rss_per_call, slab_per_call)
    {
        println!(
            "{} calls set up in {:.2} s: the relay's resident memory grew {r:.0} bytes per call, the kernel's slab {k:.0}",
            args.calls,
            setup.as_secs_f64()
        );
    }

    let mut load = Load {
        sockets: [side_a, side_b],
        out: [SendBatch::new(BATCH, 2048), SendBatch::new(BATCH, 2048)],
        rx: RecvBatch::new(BATCH, 2048),
        received: vec![0; 2 * args.calls],
        seq: vec![0; 2 * args.calls],
        send_errors: 0,
    };
    let mut packet = vec![0u8; args.size];
    packet[0] = 0x80;
    packet[1] = 8;
    packet[12..].fill(0xd5);
    for (n, &(active, seconds)) in phases.iter().enumerate() {
        let cpu_before = args.server_pid.and_then(process_cpu_secs);
        let drops_before = generator_drops(&load.sockets);
        let report = load.phase(&calls[..active], args.pps, seconds, &mut packet);
        let cpu = args
            .server_pid
            .and_then(process_cpu_secs)
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let generator_drops = generator_drops(&load.sockets) - drops_before;
        let loss = super::measure::pct(report.sent.saturating_sub(report.received), report.sent);
        let per_cpu_sec = cpu.filter(|c| *c > 0.0).map(|c| report.received as f64 / c);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "phase": n + 1,
                    "calls": active,
                    "pps": args.pps,
                    "seconds": report.seconds,
                    "sent": report.sent,
                    "received": report.received,
                    "loss_pct": loss,
                    "broken_streams": report.broken,
                    "server_cpu_seconds": cpu,
                    "relayed_per_cpu_second": per_cpu_sec,
                    "generator_drops": generator_drops,
                    "send_errors": report.send_errors,
                    "setup_seconds": setup.as_secs_f64(),
                    "calls_set_up": args.calls,
                    "rss_bytes_per_call": rss_per_call,
                    "slab_bytes_per_call": slab_per_call,
                })
            );
        } else {
            let cpu_text = match (cpu, per_cpu_sec) {
                (Some(c), Some(r)) => {
                    format!(", relay CPU {c:.2} s ({r:.0} relayed per CPU-second)")
                }
                _ => String::new(),
            };
            println!(
                "phase {}: {active} calls for {:.1} s: sent {}, received {}, loss {loss:.3} %, {} broken streams, generator drops {generator_drops}{cpu_text}",
                n + 1,
                report.seconds,
                report.sent,
                report.received,
                report.broken,
            );
        }
    }

    // Delete the calls, best effort.
    for i in 0..args.calls {
        let id = format!("bench-{nonce}-{i}");
        let _ = ng(
            &control,
            args.target,
            &format!("{nonce}-d{i}"),
            vec![
                (b"command", Value::Bytes(b"delete")),
                (b"call-id", Value::Bytes(id.as_bytes())),
            ],
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "N:S,N:S" → (calls, seconds) pairs, each N at most `calls`.
fn parse_phases(text: Option<&str>, calls: usize) -> anyhow::Result<Vec<(usize, f64)>> {
    let Some(text) = text else {
        return Ok(vec![(calls, 5.0)]);
    };
    text.split(',')
        .map(|p| {
            let (n, s) = p
                .trim()
                .split_once(':')
                .with_context(|| format!("{p:?}: expected CALLS:SECONDS"))?;
            let n: usize = n.trim().parse().with_context(|| format!("{p:?}: calls"))?;
            let s: f64 = s
                .trim()
                .parse()
                .with_context(|| format!("{p:?}: seconds"))?;
            if n == 0 || n > calls || !(0.5..=600.0).contains(&s) {
                bail!("{p:?}: 1..={calls} calls (--calls), 0.5..=600 seconds");
            }
            Ok((n, s))
        })
        .collect()
}

/// Sends an ng request and returns the reply's `sdp` (an error for `result` other than `ok`).
fn ng(
    socket: &UdpSocket,
    target: SocketAddr,
    cookie: &str,
    entries: Vec<(&[u8], Value<'_>)>,
) -> anyhow::Result<Vec<u8>> {
    let request = farside_media::ng::request(cookie.as_bytes(), entries);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..3 {
        socket.send_to(&request, target)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let Ok(n) = socket.recv(&mut buf) else { break };
            let Some(body) = buf[..n]
                .strip_prefix(cookie.as_bytes())
                .and_then(|b| b.strip_prefix(b" "))
            else {
                continue;
            };
            let reply = Value::parse(body).map_err(|e| anyhow::anyhow!("reply: {e:?}"))?;
            if reply.get("result").and_then(Value::as_bytes) != Some(b"ok".as_slice()) {
                let reason = reply.get("error-reason").and_then(Value::as_bytes);
                bail!(
                    "refused: {}",
                    String::from_utf8_lossy(reason.unwrap_or_default())
                );
            }
            return Ok(reply
                .get("sdp")
                .and_then(Value::as_bytes)
                .unwrap_or_default()
                .to_vec());
        }
    }
    bail!("no answer from {target}")
}

/// The first media section's address and port in `sdp`.
fn media_address(sdp: &[u8]) -> anyhow::Result<SocketAddr> {
    let parsed = farside_sdp::Sdp::parse(sdp).map_err(|e| anyhow::anyhow!("SDP: {e:?}"))?;
    let m = parsed.media().next().context("no media section")?;
    match m.connection {
        farside_sdp::Connection::Ip(ip) => Ok(SocketAddr::new(ip, m.port)),
        farside_sdp::Connection::Other => bail!("no connection address"),
    }
}

/// The CPU time (user and system, all threads) of process `pid`, in seconds.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (which may hold spaces) start after its closing paren;
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// A process's resident memory and the kernel's slab, in KiB.
struct Memory {
    rss_kib: Option<u64>,
    slab_kib: Option<u64>,
}

fn memory(pid: u32) -> Memory {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Memory {
        rss_kib: field(&status, "VmRSS:"),
        slab_kib: field(&meminfo, "Slab:"),
    }
}

/// The unit of `/proc/PID/stat`'s times: USER_HZ, 100 on every Linux architecture.
const USER_HZ: f64 = 100.0;

fn generator_drops(sockets: &[UdpSocket; 2]) -> u64 {
    super::measure::drops(sockets)
}

/// What one phase did.
struct PhaseReport {
    seconds: f64,
    sent: u64,
    received: u64,
    /// Streams of the phase's calls that received nothing in its second half.
    broken: usize,
    send_errors: u64,
}

/// The load loop's sockets and buffers.
struct Load {
    /// Side A's socket, side B's.
    sockets: [UdpSocket; 2],
    out: [SendBatch; 2],
    rx: RecvBatch,
    /// Packets received per stream (call × 2 + the side that sent it).
    received: Vec<u64>,
    /// The next sequence number per stream.
    seq: Vec<u16>,
    send_errors: u64,
}

impl Load {
    /// Sends from both sides of `calls` at `pps` each way for `seconds`, open loop, and counts
    /// what arrives; then waits 300 ms for stragglers.
    fn phase(&mut self, calls: &[Call], pps: u32, seconds: f64, packet: &mut [u8]) -> PhaseReport {
        let streams = 2 * calls.len();
        let rate = streams as f64 * f64::from(pps);
        let before: u64 = self.received[..streams].iter().sum();
        let mut at_half: Option<Vec<u64>> = None;
        let duration = Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let mut sent = 0u64;
        let mut next = 0usize;
        self.send_errors = 0;
        loop {
            let elapsed = start.elapsed();
            if elapsed >= duration {
                break;
            }
            if at_half.is_none() && elapsed >= duration / 2 {
                at_half = Some(self.received[..streams].to_vec());
            }
            let due = (rate * elapsed.as_secs_f64()) as u64;
            while sent < due {
                let stream = next;
                next = (next + 1) % streams;
                let (call, side) = (stream / 2, stream % 2);
                let to = if side == 0 {
                    calls[call].a_to
                } else {
                    calls[call].b_to
                };
                let seq = self.seq[stream];
                self.seq[stream] = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                packet[8..12].copy_from_slice(&(stream as u32).to_be_bytes());
                if self.out[side].is_full() {
                    self.flush(side);
                }
                self.out[side].push(to, |buf| {
                    buf.get_mut(..packet.len())?.copy_from_slice(packet);
                    Some(packet.len())
                });
                sent += 1;
            }
            self.flush(0);
            self.flush(1);
            self.poll();
        }
        let seconds = start.elapsed().as_secs_f64();
        let drain = Instant::now();
        while drain.elapsed() < Duration::from_millis(300) {
            self.poll();
        }
        let half = at_half.unwrap_or_else(|| vec![0; streams]);
        let broken = self.received[..streams]
            .iter()
            .zip(&half)
            .filter(|(now, then)| now == then)
            .count();
        let after: u64 = self.received[..streams].iter().sum();
        PhaseReport {
            seconds,
            sent,
            received: after - before,
            broken,
            send_errors: self.send_errors,
        }
    }

    fn flush(&mut self, side: usize) {
        if self.out[side].is_empty() {
            return;
        }
        let queued = self.out[side].len();
        let sent = send_batch(&self.sockets[side], &mut self.out[side]);
        self.send_errors += (queued - sent) as u64;
    }

    /// Counts what arrived at either side, without waiting.
    fn poll(&mut self) {
        for side in 0..2 {
            while let Ok(k @ 1..) = recv_batch(&self.sockets[side], &mut self.rx) {
                for d in self.rx.iter() {
                    let Some(ssrc) = d.payload.get(8..12) else {
                        continue;
                    };
                    let stream = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                    // What reaches side A was sent by side B, and the reverse.
                    if let Some(n) = self.received.get_mut(stream as usize)
                        && stream as usize % 2 != side
                    {
                        *n += 1;
                    }
                }
                if k < BATCH {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_and_stay_within_the_calls_set_up() {
        assert_eq!(
            parse_phases(Some("100:5, 120:2.5"), 200).ok(),
            Some(vec![(100, 5.0), (120, 2.5)])
        );
        assert_eq!(parse_phases(None, 7).ok(), Some(vec![(7, 5.0)]));
        assert!(parse_phases(Some("300:5"), 200).is_err());
        assert!(parse_phases(Some("100"), 200).is_err());
        assert!(parse_phases(Some("0:5"), 200).is_err());
    }
}
