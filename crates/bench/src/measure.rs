//! What every load run shares: its clock, the generator's own CPU time, a per-run nonce that
//! tells this run's answers from another's, and the `--duration` argument.

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
