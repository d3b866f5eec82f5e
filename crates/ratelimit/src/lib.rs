//! A per-source budget of answers per second, for the answers anyone can draw without
//! credentials: TURN's 401 and 4xx, SIP's 401, 400, 420 and the like. Over UDP the source
//! address is a claim, not a fact; an attacker who forges a victim's address turns every
//! answer larger than its request into a reflected flood. Capping the answers per source and
//! second bounds what the victim receives, whatever the attacker sends (coturn added the same
//! in 4.14, `--unauthorized-ratelimit-rps`, after operators were flagged by CERTs).
//!
//! The table is a fixed array of buckets, one `AtomicU64` each (the window's second and the
//! answers spent in it), indexed by a keyed hash of the source IP address (its port stripped,
//! so rotating ports gains nothing). Sources whose hashes collide share one budget: a collision
//! can only lower what they get, never raise what a victim receives. It never allocates after
//! creation and takes no lock, so every worker thread can share one.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use farside_time::Timestamp;

/// Buckets in the table (1 MiB of `u64`s would be 131 072; this is 128 KiB).
pub const BUCKETS: usize = 16_384;

/// Answers per second per source address, shared by every thread that answers.
#[derive(Debug)]
pub struct PerSource {
    per_second: AtomicU32,
    key: u64,
    /// `second << 32 | spent`, per bucket.
    buckets: Box<[AtomicU64]>,
}

impl PerSource {
    /// A budget of `per_second` answers per source address and second (0: no limit); `key`
    /// (random) keys the hash so that an attacker cannot aim collisions at a victim.
    pub fn new(per_second: u32, key: u64) -> Self {
        PerSource {
            per_second: AtomicU32::new(per_second),
            key,
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A new budget (a reload); the current second's spending stays counted.
    pub fn set_per_second(&self, per_second: u32) {
        self.per_second.store(per_second, Ordering::Relaxed);
    }

    /// The budget per source and second (0: no limit).
    pub fn per_second(&self) -> u32 {
        self.per_second.load(Ordering::Relaxed)
    }

    /// Spends one answer to `source` in the second of `now`: `true` if it may be sent,
    /// `false` if the source's budget for this second is spent (drop the answer).
    pub fn take(&self, source: IpAddr, now: Timestamp) -> bool {
        let limit = self.per_second();
        if limit == 0 {
            return true;
        }
        let second = (now.unix_secs() & u64::from(u32::MAX)) << 32;
        let bucket = &self.buckets[self.index(source)];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let next = if current & !u64::from(u32::MAX) != second {
                second | 1
            } else if current & u64::from(u32::MAX) >= u64::from(limit) {
                return false;
            } else {
                current + 1
            };
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now_there) => current = now_there,
            }
        }
    }

    /// The bucket of `source`: a keyed FNV-1a of its address (an IPv4-mapped IPv6 address is
    /// its IPv4 one), folded so that every bit of the hash counts.
    fn index(&self, source: IpAddr) -> usize {
        let octets: ([u8; 16], usize) = match source.to_canonical() {
            IpAddr::V4(a) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&a.octets());
                (o, 4)
            }
            IpAddr::V6(a) => (a.octets(), 16),
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ self.key;
        for &b in &octets.0[..octets.1] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        (h as usize) % BUCKETS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VICTIM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn at(secs: u64, millis: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000 + millis)
    }

    #[test]
    fn a_source_gets_its_budget_per_second_and_no_more() {
        let limit = PerSource::new(10, 7);
        let granted = (0..1000)
            .filter(|i| limit.take(VICTIM, at(100, i % 1000)))
            .count();
        assert_eq!(granted, 10);
        // The next second brings a fresh budget.
        assert!(limit.take(VICTIM, at(101, 0)));
    }

    #[test]
    fn another_source_is_served_while_one_is_limited() {
        let limit = PerSource::new(3, 7);
        for _ in 0..100 {
            limit.take(VICTIM, at(5, 0));
        }
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        // Unless the keyed hash put both in one bucket, which this key does not.
        assert_ne!(limit.index(VICTIM), limit.index(other));
        assert!(limit.take(other, at(5, 0)));
    }

    #[test]
    fn the_mapped_form_of_an_address_shares_its_budget() {
        let limit = PerSource::new(1, 7);
        assert!(limit.take(VICTIM, at(5, 0)));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert!(!limit.take(mapped, at(5, 0)));
        assert!(limit.take(IpAddr::V6(Ipv6Addr::LOCALHOST), at(5, 0)));
    }

    #[test]
    fn zero_is_no_limit_and_a_reload_applies_at_once() {
        let limit = PerSource::new(0, 7);
        assert!((0..100_000).all(|_| limit.take(VICTIM, at(5, 0))));
        limit.set_per_second(2);
        let granted = (0..10).filter(|_| limit.take(VICTIM, at(6, 0))).count();
        assert_eq!(granted, 2);
    }

    #[test]
    fn threads_together_get_the_budget_once() {
        let limit = std::sync::Arc::new(PerSource::new(500, 9));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || {
                    (0..10_000).filter(|_| limit.take(VICTIM, at(9, 0))).count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(total, 500);
    }
}
