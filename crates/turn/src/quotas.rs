//! The limits that must hold across the whole server, not per worker: allocations per user,
//! failed authentications per source address, and refusals per source address and second. Every worker's [`TurnServer`](crate::TurnServer)
//! holds the same [`Quotas`], so a user or an attacker spread over source ports (and so over
//! workers, by the kernel's `SO_REUSEPORT` hash) gets the configured limit once, not once per
//! worker.
//!
//! The tables are sharded by key under a mutex each: a worker touches them only on Allocate, on
//! an allocation's end and on a failed authentication, never on the data path, and two workers
//! meet on one lock only for keys that hash to the same shard.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use farside_ratelimit::PerSource;
use farside_time::Timestamp;

/// The window over which failed authentications are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most distinct sources whose failures are tracked at once (beyond, new sources are not
/// counted until old entries age out).
const MAX_TRACKED_FAILURES: usize = 65_536;
/// Shards per table: a power of two well above any worker count.
const SHARDS: usize = 64;

/// Server-wide quotas, shared by every worker (behind an `Arc`).
#[derive(Debug)]
pub struct Quotas {
    max_allocations_per_user: std::sync::atomic::AtomicUsize,
    failures_per_minute: std::sync::atomic::AtomicU32,
    hasher: RandomState,
    /// Live allocations per (realm, username).
    per_user: [Mutex<HashMap<(String, String), usize>>; SHARDS],
    /// Failed authentications per source: (count, when the window began).
    failures: [Mutex<HashMap<IpAddr, (u32, Timestamp)>>; SHARDS],
    /// Answers to unauthenticated requests over UDP (401, 438, 400, 420) per source and
    /// second: a forged source draws no more than this (see `farside_ratelimit`).
    refusals: PerSource,
}

impl Quotas {
    /// At most `max_allocations_per_user` allocations per username (0: no limit), and at most
    /// `failures_per_minute` failed authentications per source address before its requests
    /// are dropped for the rest of the minute, and at most `refusals_per_second` refusals of
    /// unauthenticated requests over UDP per source address and second (0: no limit).
    pub fn new(
        max_allocations_per_user: usize,
        failures_per_minute: u32,
        refusals_per_second: u32,
    ) -> Self {
        let hasher = RandomState::new();
        Quotas {
            refusals: PerSource::new(refusals_per_second, hasher.hash_one(0x5eed_u32)),
            max_allocations_per_user: max_allocations_per_user.into(),
            failures_per_minute: failures_per_minute.into(),
            hasher,
            per_user: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            failures: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// New limits (a reload); allocations held now stay, even above a lowered limit.
    pub fn set_limits(
        &self,
        max_allocations_per_user: usize,
        failures_per_minute: u32,
        refusals_per_second: u32,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.refusals.set_per_second(refusals_per_second);
        self.max_allocations_per_user
            .store(max_allocations_per_user, Relaxed);
        self.failures_per_minute.store(failures_per_minute, Relaxed);
    }

    fn max_per_user(&self) -> usize {
        self.max_allocations_per_user
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `user` may take one more allocation (a check only; see
    /// [`Quotas::take_allocation`]).
    pub fn allocation_allowed(&self, realm: &str, username: &str) -> bool {
        let max = self.max_per_user();
        if max == 0 {
            return true;
        }
        let key = (realm.to_owned(), username.to_owned());
        let held = lock(self.shard(&self.per_user, &key))
            .get(&key)
            .copied()
            .unwrap_or(0);
        held < max
    }

    /// Takes one of `user`'s allocations; `false` (nothing taken) when the user holds the
    /// maximum already. Each `true` must be matched by one [`Quotas::give_back_allocation`].
    pub fn take_allocation(&self, realm: &str, username: &str) -> bool {
        let key = (realm.to_owned(), username.to_owned());
        let mut shard = lock(self.shard(&self.per_user, &key));
        let held = shard.entry(key).or_insert(0);
        let max = self.max_per_user();
        if max > 0 && *held >= max {
            return false;
        }
        *held += 1;
        true
    }

    /// Gives back one allocation of `user` (it ended).
    pub fn give_back_allocation(&self, realm: &str, username: &str) {
        let key = (realm.to_owned(), username.to_owned());
        let mut shard = lock(self.shard(&self.per_user, &key));
        if let Some(n) = shard.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&key);
            }
        }
    }

    /// Whether `source` failed authentication too often in the current window.
    pub fn blocked(&self, source: IpAddr, now: Timestamp) -> bool {
        lock(self.shard(&self.failures, &source))
            .get(&source)
            .is_some_and(|&(n, since)| {
                n >= self
                    .failures_per_minute
                    .load(std::sync::atomic::Ordering::Relaxed)
                    && now.duration_since(since) < FAILURE_WINDOW
            })
    }

    /// Counts a failed authentication from `source`.
    pub fn failed(&self, source: IpAddr, now: Timestamp) {
        let mut shard = lock(self.shard(&self.failures, &source));
        if shard.len() * SHARDS >= MAX_TRACKED_FAILURES && !shard.contains_key(&source) {
            shard.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if shard.len() * SHARDS >= MAX_TRACKED_FAILURES {
                return;
            }
        }
        let e = shard.entry(source).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Spends one refusal to `source` over UDP in the second of `now`; `false`: its budget is
    /// spent, and the refusal is dropped unsent.
    pub fn refusal_allowed(&self, source: IpAddr, now: Timestamp) -> bool {
        self.refusals.take(source, now)
    }

    /// Forgets failures whose window has passed. Any worker may call it, about once a second.
    pub fn expire(&self, now: Timestamp) {
        for shard in &self.failures {
            lock(shard).retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        }
    }

    fn shard<'a, K: Hash, V>(&self, table: &'a [Mutex<V>; SHARDS], key: &K) -> &'a Mutex<V> {
        &table[self.hasher.hash_one(key) as usize % SHARDS]
    }
}

/// Locks a shard even if a worker panicked while holding it: each update is a single insert,
/// change or removal, so a poisoned shard is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_per_user_across_callers() {
        let q = Quotas::new(2, 20, 0);
        assert!(q.take_allocation("r", "alice"));
        assert!(q.take_allocation("r", "alice"));
        assert!(!q.allocation_allowed("r", "alice"));
        assert!(!q.take_allocation("r", "alice"));
        assert!(
            q.take_allocation("r", "bob"),
            "another user has their own count"
        );
        q.give_back_allocation("r", "alice");
        assert!(q.take_allocation("r", "alice"));
        let unlimited = Quotas::new(0, 20, 0);
        assert!((0..1000).all(|_| unlimited.take_allocation("r", "alice")));
    }

    #[test]
    fn failures_block_a_source_for_the_rest_of_its_minute() {
        let q = Quotas::new(0, 3, 0);
        let t0 = Timestamp::from_unix_secs(1_800_000_000);
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        for i in 0..3 {
            assert!(!q.blocked(ip, t0), "{i} failures");
            q.failed(ip, t0 + Duration::from_secs(i));
        }
        assert!(q.blocked(ip, t0 + Duration::from_secs(59)));
        assert!(!q.blocked("203.0.113.10".parse().expect("ip"), t0));
        assert!(!q.blocked(ip, t0 + Duration::from_secs(60)));
        q.expire(t0 + Duration::from_secs(61));
        assert!(!q.blocked(ip, t0 + Duration::from_secs(61)));
    }
}
