//! What every load run shares: its clock, the generator's own CPU time, a per-run nonce that
//! tells this run's answers from another's, and the `--duration` argument.

use hdrhistogram::Histogram;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

/// Nanoseconds since the start of a run, on the monotonic clock.
pub(crate) struct Clock(Instant);

impl Clock {
    /// A clock that reads 0 now.
    pub(crate) fn start() -> Self {
        Clock(Instant::now())
    }

    /// Nanoseconds since [`Clock::start`].
    pub(crate) fn ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// User + system CPU seconds this process has used, from `/proc/self/stat` (fields 14 and
/// 15, in USER_HZ = 100 ticks, the value on every Linux architecture).
pub(crate) fn own_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// A per-run nonce, so that answers to an earlier run (or another generator) are not taken
/// for this one's.
pub(crate) fn run_nonce() -> [u8; 4] {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    (h.finish() as u32).to_be_bytes()
}

/// Parses a duration in seconds: positive, at most 300.
pub(crate) fn parse_duration(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 300.0 {
        Ok(v)
    } else {
        Err("expected seconds in (0, 300]".into())
    }
}

/// An open-loop schedule: `planned` items (requests, registrations) at `rate` per second over
/// `duration_ns`, sent in batches of `batch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Items per second.
    pub(crate) rate: u64,
    /// Items in the whole run.
    pub(crate) planned: u64,
    /// Length of the run.
    pub(crate) duration_ns: u64,
    /// Items per batch.
    pub(crate) batch: usize,
}

impl Schedule {
    /// How many items should have left by `now_ns`, counting the batch about to leave: batch
    /// k is due once k * batch items are.
    pub(crate) fn due(&self, now_ns: u64) -> u64 {
        let due = (u128::from(now_ns) * u128::from(self.rate) / 1_000_000_000) as u64;
        due.saturating_add(self.batch as u64).min(self.planned)
    }

    /// How long to wait in `poll` after item `next` is the next to leave: until its time less
    /// a millisecond (poll counts whole milliseconds), so that when the next batch is due in
    /// under 2 ms the caller spins, polling without blocking, and the schedule holds at
    /// hundreds of thousands of items per second.
    pub(crate) fn wait(&self, next: u64, now_ns: u64) -> std::time::Duration {
        let next_due_ns = if next >= self.planned {
            self.duration_ns
        } else {
            (u128::from(next) * 1_000_000_000 / u128::from(self.rate.max(1))) as u64
        };
        std::time::Duration::from_nanos(next_due_ns.min(self.duration_ns).saturating_sub(now_ns))
            .saturating_sub(std::time::Duration::from_millis(1))
    }
}

/// `count` UDP sockets (at least one, at most what one `poll` watches) connected to `target`,
/// with large buffers: a connected socket costs the kernel no route lookup per datagram and
/// receives only the target's answers.
pub(crate) fn connected_sockets(
    target: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let local: IpAddr = match target.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let opts = farside_io::SocketOptions {
        reuse_port: false,
        recv_buffer: 16 << 20,
        send_buffer: 4 << 20,
        packet_info: false,
    };
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.clamp(1, farside_io::MAX_FDS) {
        let s = farside_io::bind_udp(SocketAddr::new(local, 0), opts)?;
        s.connect(target)?;
        sockets.push(s);
    }
    Ok(sockets)
}

/// Datagrams the kernel dropped at `sockets` (their receive buffers were full).
pub(crate) fn drops(sockets: &[std::net::UdpSocket]) -> u64 {
    sockets
        .iter()
        .map(|s| farside_io::socket_stats(s).map(|st| st.drops).unwrap_or(0))
        .sum()
}

/// A histogram of latencies in nanoseconds, 1 ns to 60 s at 3 significant digits (0.1 %),
/// allocated once: a benchmark records every answer without allocating. Values beyond 60 s
/// are counted as 60 s.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// p50, p99, p99.9 and the maximum of `h` (nanoseconds), in microseconds.
pub(crate) fn percentiles_us(h: &Histogram<u64>) -> [f64; 4] {
    let us = |ns: u64| ns as f64 / 1e3;
    [
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
    ]
}

/// `n` per second over `secs` (0 for no time at all).
pub(crate) fn per_sec(n: f64, secs: f64) -> f64 {
    n / secs.max(1e-9)
}

/// `part` as a percentage of `whole` (0 of nothing).
pub(crate) fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Appends the generator's own CPU line to a report: its seconds and its share of one core.
pub(crate) fn cpu_line(s: &mut String, cpu_secs: Option<f64>, send_secs: f64) {
    if let Some(cpu) = cpu_secs {
        let _ = std::fmt::Write::write_fmt(
            s,
            format_args!(
                "  generator CPU {cpu:.2} s ({:.0} % of one core)\n",
                100.0 * per_sec(cpu, send_secs)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_paces_batches_and_waits_for_the_next() {
        let s = Schedule {
            rate: 1_000,
            planned: 1_000,
            duration_ns: 1_000_000_000,
            batch: 1,
        };
        assert_eq!(s.due(0), 1, "the first batch is due at once");
        assert_eq!(s.due(500_000_000), 501);
        assert_eq!(s.due(2_000_000_000), 1_000, "never more than planned");
        // Item 10 leaves at 10 ms: wait 9 ms less a millisecond of margin.
        assert_eq!(s.wait(10, 1_000_000), std::time::Duration::from_millis(8));
        assert_eq!(s.wait(10, 9_500_000), std::time::Duration::ZERO, "spin");
        assert_eq!(
            s.wait(1_000, 0),
            std::time::Duration::from_millis(999),
            "all sent: wait for the end"
        );
    }
}
