//! Which addresses Farside's STUN service answered lately, for the SIP server's SIP ALG check
//! ([`farside_sip::alg::StunSeen`]): a phone that learned its public address here writes it in
//! its Via honestly.
//!
//! Lossy and lock-free: a fixed table of slots, each holding an address's hash and the second
//! it was last answered. A data-plane worker writes one slot per answer (one relaxed store);
//! the SIP thread reads one. Two addresses sharing a slot forget each other: such a phone is
//! then judged by its message alone, as one that used another STUN server is.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use farside_time::Timestamp;

/// Slots in the table (512 KiB).
const SLOTS: usize = 1 << 16;
/// An answer older than this no longer counts (phones refresh their STUN far more often).
const FRESH_SECS: u64 = 600;

/// The table (see the module documentation).
#[derive(Debug)]
pub struct StunSeen {
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for StunSeen {
    fn default() -> Self {
        StunSeen {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }
}

impl StunSeen {
    /// A Binding request from `ip` was answered at `now`.
    pub fn answered_at(&self, ip: IpAddr, now: Timestamp) {
        let (slot, tag) = self.place(ip);
        // The low 32 bits of Unix seconds: enough to tell ten minutes apart until 2106.
        let secs = now.unix_secs() & 0xFFFF_FFFF;
        self.slots[slot].store((u64::from(tag) << 32) | secs, Relaxed);
    }

    fn place(&self, ip: IpAddr) -> (usize, u32) {
        let h = self.hasher.hash_one(ip);
        ((h as usize) & (SLOTS - 1), (h >> 32) as u32)
    }
}

impl farside_sip::alg::StunSeen for StunSeen {
    fn answered(&self, ip: IpAddr, now: Timestamp) -> bool {
        let (slot, tag) = self.place(ip);
        let v = self.slots[slot].load(Relaxed);
        let secs = now.unix_secs() & 0xFFFF_FFFF;
        v != 0
            && (v >> 32) as u32 == tag
            && secs.wrapping_sub(v & 0xFFFF_FFFF) & 0xFFFF_FFFF <= FRESH_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farside_sip::alg::StunSeen as _;

    #[test]
    fn an_answered_address_counts_for_ten_minutes_and_others_do_not() {
        let t = StunSeen::default();
        let ip: IpAddr = "198.51.100.16".parse().expect("ip");
        let other: IpAddr = "198.51.100.17".parse().expect("ip");
        let at = Timestamp::from_unix_secs(1_800_000_000);
        assert!(!t.answered(ip, at));
        t.answered_at(ip, at);
        assert!(t.answered(ip, at));
        assert!(t.answered(ip, Timestamp::from_unix_secs(1_800_000_600)));
        assert!(!t.answered(ip, Timestamp::from_unix_secs(1_800_000_601)));
        assert!(!t.answered(other, at));
    }
}
