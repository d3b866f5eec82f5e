//! The Digest replay check (RFC 7616 §3.4, `nc`; RFC 3261 §22.4): a server that accepts a
//! nonce more than once must see each use counted up, or a sniffed `Authorization` could be
//! sent again within the nonce's lifetime. With `qop=auth` the digest covers only the method
//! and the Request-URI, so a replay may carry other Contacts; with the check, it gets a
//! `stale=true` challenge instead.
//!
//! Nonces are stateless (one per second for everyone, see [`crate::digest::Nonces`]), so a use
//! is keyed by nonce, username and `cnonce`: two phones challenged in the same second differ in
//! their `cnonce`s, a replay of one does not. The same count again is accepted only as a
//! retransmission: the same request, byte for byte, from the same source. Credentials without
//! `qop` carry no count: each such nonce is good for one request (and its retransmissions).
//!
//! The table is bounded: uses are recorded only after the credentials proved right (so only
//! users can fill it), forgotten when their nonce expires, and when it is full the oldest goes
//! and every nonce made up to that one's second is judged stale from then on: a client then
//! re-authenticates with a fresh nonce, one round trip, and nothing is ever accepted twice.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::scan::hash64;

/// Uses tracked at once, at most (about 48 bytes each).
pub const MAX_TRACKED: usize = 65_536;

/// Why a use of a nonce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The count did not go up: a replay (or a client's bug).
    Repeated,
    /// The nonce is older than what the table still remembers.
    Forgotten,
}

/// One use of a nonce.
#[derive(Debug, Clone, Copy)]
struct Use {
    /// The highest count seen.
    nc: u32,
    /// The request that used it (its bytes and source).
    request: u64,
}

/// A key that is already a keyed hash ([`hash64`] with a secret) is its own hash: hashing it
/// again would cost a SipHash per REGISTER for nothing.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else is folded in all the same.
        self.0 = hash64(self.0, &[bytes]);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The uses of nonces, by (nonce, username, cnonce).
#[derive(Debug)]
pub struct NonceCounts {
    key: u64,
    uses: HashMap<u64, Use, BuildHasherDefault<Prehashed>>,
    /// Keys in the order they were first seen, with their nonce's second.
    order: VecDeque<(u64, u64)>,
    /// Nonces made at or before this second are stale: the table forgot some of their uses.
    floor: u64,
    max: usize,
}

impl NonceCounts {
    /// An empty table of at most `max` uses; `key` (random) salts its hashes.
    pub fn new(max: usize, key: u64) -> Self {
        NonceCounts {
            key,
            uses: HashMap::default(),
            order: VecDeque::new(),
            floor: 0,
            max: max.max(1),
        }
    }

    /// Uses tracked now.
    pub fn len(&self) -> usize {
        self.uses.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.uses.is_empty()
    }

    /// Records one use of `nonce` (made at Unix second `made`) by `username` with `cnonce` and
    /// count `nc` (`None`: no qop, so no count), for `request` (a hash of its bytes and
    /// source); `Err` if that use is a replay or too old to judge.
    pub fn use_nonce(
        &mut self,
        nonce: &[u8],
        made: u64,
        username: &[u8],
        cnonce: &[u8],
        nc: Option<u32>,
        request: u64,
    ) -> Result<(), Replay> {
        if made <= self.floor {
            return Err(Replay::Forgotten);
        }
        let key = hash64(self.key, &[nonce, username, cnonce]);
        let nc = nc.unwrap_or(0);
        if let Some(u) = self.uses.get_mut(&key) {
            return if nc > u.nc {
                *u = Use { nc, request };
                Ok(())
            } else if nc == u.nc && request == u.request {
                Ok(())
            } else {
                Err(Replay::Repeated)
            };
        }
        if self.uses.len() >= self.max
            && let Some((old, second)) = self.order.pop_front()
        {
            self.uses.remove(&old);
            self.floor = self.floor.max(second);
            if made <= self.floor {
                return Err(Replay::Forgotten);
            }
        }
        self.uses.insert(key, Use { nc, request });
        self.order.push_back((key, made));
        Ok(())
    }

    /// Forgets the uses of nonces made at or before Unix second `expired` (they are stale
    /// anyway).
    pub fn expire(&mut self, expired: u64) {
        while let Some(&(key, second)) = self.order.front() {
            if second > expired {
                break;
            }
            self.order.pop_front();
            self.uses.remove(&key);
        }
    }
}

/// The count of a `nc` field: 8 hex digits (RFC 7616 §3.4).
pub fn parse_nc(nc: &[u8]) -> Option<u32> {
    if nc.len() != 8 || !nc.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(nc).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &[u8] = b"nonce-a";

    #[test]
    fn counts_must_go_up_and_a_retransmission_passes() {
        let mut t = NonceCounts::new(16, 1);
        assert_eq!(t.use_nonce(N, 100, b"alice", b"c1", Some(1), 7), Ok(()));
        assert_eq!(t.use_nonce(N, 100, b"alice", b"c1", Some(1), 7), Ok(()));
        assert_eq!(
            t.use_nonce(N, 100, b"alice", b"c1", Some(1), 8),
            Err(Replay::Repeated),
            "the same count for another request (other Contacts, another source)"
        );
        assert_eq!(t.use_nonce(N, 100, b"alice", b"c1", Some(2), 8), Ok(()));
        assert_eq!(
            t.use_nonce(N, 100, b"alice", b"c1", Some(1), 7),
            Err(Replay::Repeated),
            "an older count"
        );
        // Another phone challenged in the same second has its own cnonce.
        assert_eq!(t.use_nonce(N, 100, b"bob", b"c9", Some(1), 9), Ok(()));
        // Without qop, a nonce serves one request.
        assert_eq!(t.use_nonce(N, 100, b"carol", b"", None, 3), Ok(()));
        assert_eq!(
            t.use_nonce(N, 100, b"carol", b"", None, 4),
            Err(Replay::Repeated)
        );
    }

    #[test]
    fn a_full_table_forgets_the_oldest_and_judges_its_era_stale() {
        let mut t = NonceCounts::new(2, 1);
        assert!(t.use_nonce(b"n1", 100, b"a", b"c", Some(1), 1).is_ok());
        assert!(t.use_nonce(b"n2", 101, b"a", b"c", Some(1), 1).is_ok());
        assert!(t.use_nonce(b"n3", 102, b"a", b"c", Some(1), 1).is_ok());
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.use_nonce(b"n1", 100, b"a", b"c", Some(1), 1),
            Err(Replay::Forgotten),
            "its use was forgotten: it must not pass again"
        );
        assert!(t.use_nonce(b"n3", 102, b"a", b"c", Some(2), 2).is_ok());
        t.expire(101);
        assert_eq!(t.len(), 1);
        t.expire(102);
        assert!(t.is_empty());
    }

    #[test]
    fn nc_is_eight_hex_digits() {
        assert_eq!(parse_nc(b"0000000a"), Some(10));
        assert_eq!(parse_nc(b"1"), None);
        assert_eq!(parse_nc(b"0000000g"), None);
        assert_eq!(parse_nc(b"+0000001"), None);
    }
}
