//! The wall clock.

/// The wall clock in Unix milliseconds: partner messages carry it, so partners need NTP.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
