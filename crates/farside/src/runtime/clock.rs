//! Farside's clock: the one source of the [`Timestamp`]s the cores are given.
//!
//! The Unix time is read once, at the first call, and then advanced by the monotonic clock: a
//! step of the system clock after start (an NTP correction, an operator's `date -s`) does not
//! move Farside's time, so no timer fires early or late and no registration lapses at once.
//! Slewing (NTP's usual gentle correction) is followed, since the monotonic clock is slewed
//! too. The cost is that a clock stepped after start is only picked up by a restart; partner
//! servers, which compare their clocks (`stun.partner_max_age`), need NTP before they start.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use farside_time::Timestamp;

/// The monotonic instant and the Unix time (µs) read together at the first call.
static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();

/// Now.
pub fn now() -> Timestamp {
    let (at, unix) = *ANCHOR.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        (Instant::now(), unix)
    });
    let since = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
    Timestamp::from_unix_micros(unix.saturating_add(since))
}

/// How long from now until `t` (zero if it has passed): for a sleep or a poll timeout.
pub fn until(t: Timestamp) -> std::time::Duration {
    t - now()
}
