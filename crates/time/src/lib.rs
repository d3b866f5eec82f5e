//! The one time type of Farside's protocol cores.
//!
//! Every sans-IO core (STUN partners, TURN, SIP, the NAT probe) takes the time as a [`Timestamp`]
//! argument and never reads a clock. A timestamp is a count of microseconds since the Unix
//! epoch, so one value serves both needs a core has: timers (a transaction's retransmission, an
//! allocation's lifetime) and wall-clock facts that outlive the process or cross hosts (a
//! registration's expiry written to the store, a nonce's birth inside the nonce, a partner
//! message's timestamp, an ephemeral TURN username's expiry).
//!
//! The I/O shell decides where the values come from (Farside's reads the wall clock once at start
//! and advances it by the monotonic clock, so its timers never jump); tests start anywhere and
//! step it as they like. Arithmetic saturates rather than panics: time from the network (a
//! stored expiry, a partner's stamp) is never trusted to be in range.

#![forbid(unsafe_code)]

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time: microseconds since the Unix epoch (1970-01-01T00:00:00Z).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// `micros` microseconds after the epoch.
    pub const fn from_unix_micros(micros: u64) -> Timestamp {
        Timestamp(micros)
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_unix_millis(millis: u64) -> Timestamp {
        Timestamp(millis.saturating_mul(1_000))
    }

    /// `secs` seconds after the epoch.
    pub const fn from_unix_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn unix_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole seconds since the epoch.
    pub const fn unix_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later (as `std`'s `Instant`).
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// The time from `earlier` to `self`, `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_micros)
    }

    /// `self + d`, `None` past the last representable time.
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_add(micros(d)?).map(Timestamp)
    }

    /// `self - d`, `None` before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_sub(micros(d)?).map(Timestamp)
    }
}

/// A duration in whole microseconds, `None` if it does not fit 64 bits.
fn micros(d: Duration) -> Option<u64> {
    u64::try_from(d.as_micros()).ok()
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the last representable time.
    fn add(self, d: Duration) -> Timestamp {
        self.checked_add(d).unwrap_or(Timestamp(u64::MAX))
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the epoch.
    fn sub(self, d: Duration) -> Timestamp {
        self.checked_sub(d).unwrap_or(Timestamp::EPOCH)
    }
}

impl Sub for Timestamp {
    type Output = Duration;

    /// Zero if `earlier` is later, as [`Timestamp::saturating_duration_since`].
    fn sub(self, earlier: Timestamp) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_and_arithmetic_saturates() {
        let t = Timestamp::from_unix_secs(1_800_000_000);
        assert_eq!(t.unix_millis(), 1_800_000_000_000);
        assert_eq!(Timestamp::from_unix_millis(1_500).unix_secs(), 1);
        let later = t + Duration::from_millis(1_250);
        assert_eq!(later - t, Duration::from_millis(1_250));
        assert_eq!(t - later, Duration::ZERO);
        assert_eq!(t.checked_duration_since(later), None);
        assert_eq!(Timestamp::EPOCH - Duration::from_secs(1), Timestamp::EPOCH);
        assert_eq!(
            Timestamp::from_unix_micros(u64::MAX) + Duration::from_secs(1),
            Timestamp::from_unix_micros(u64::MAX)
        );
        assert_eq!(Timestamp::from_unix_secs(u64::MAX).unix_micros(), u64::MAX);
        assert_eq!(format!("{:?}", later), "1800000001.250000");
    }
}
