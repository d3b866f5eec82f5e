//! Per-source statistics, as the snom STUN server's table: for each client address, when it
//! was last seen, its Binding requests (answered from where they came, from another IP, from
//! another port) and error answers. The dashboard adds each address's live TURN allocations
//! and their relayed bytes from the allocation board.
//!
//! Not a Prometheus metric: its key is a client's address. Each data-plane worker keeps its
//! own table with no lock and publishes a copy about once a second; a table is bounded
//! (`admin.source_table_size`): when full, the half least recently seen is dropped at once, so
//! a flood of new sources costs a sort per half-table, not a scan per packet.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use farside_stun::binding::{Outcome, ResponseKind};

use crate::runtime::lock::lock;

/// One address's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// Unix milliseconds of its last request.
    pub last_seen_ms: u64,
    /// Binding requests answered.
    pub requests: u64,
    /// Of those, answered from the address and port they came to.
    pub no_change: u64,
    /// Answered from the other IP address (CHANGE-REQUEST change-IP, or a partner).
    pub change_ip: u64,
    /// Answered from the other port.
    pub change_port: u64,
    /// Error answers (400, 420).
    pub errors: u64,
}

impl SourceStats {
    fn add(&mut self, o: &SourceStats) {
        self.last_seen_ms = self.last_seen_ms.max(o.last_seen_ms);
        self.requests += o.requests;
        self.no_change += o.no_change;
        self.change_ip += o.change_ip;
        self.change_port += o.change_port;
        self.errors += o.errors;
    }
}

type Map = HashMap<IpAddr, SourceStats, foldhash::fast::RandomState>;

/// A worker's published copy.
type Published = Arc<Mutex<Vec<(IpAddr, SourceStats)>>>;

/// One worker's table.
#[derive(Debug)]
pub struct SourceTable {
    capacity: Arc<AtomicUsize>,
    map: Map,
    published: Published,
    last_publish_ms: u64,
}

impl SourceTable {
    /// Counts one handled Binding request from `source` that arrived at `local`.
    pub fn record(&mut self, now_ms: u64, source: IpAddr, local: SocketAddr, outcome: &Outcome) {
        let r = match outcome {
            Outcome::Respond(r) => Some(r),
            // Partner mode: a change-IP request answered by a partner.
            Outcome::Forward(_) => None,
            Outcome::Drop(_) | Outcome::PartnerHello(_) => return,
        };
        if self.map.len() >= self.capacity.load(Relaxed) && !self.map.contains_key(&source) {
            self.forget_older_half();
        }
        let s = self.map.entry(source).or_default();
        s.last_seen_ms = now_ms;
        s.requests += 1;
        let Some(r) = r else {
            s.change_ip += 1;
            return;
        };
        match r.kind {
            ResponseKind::Error(_) => s.errors += 1,
            ResponseKind::Success if r.from.ip() != local.ip() => s.change_ip += 1,
            ResponseKind::Success if r.from.port() != local.port() => s.change_port += 1,
            ResponseKind::Success => s.no_change += 1,
        }
    }

    /// Publishes a copy for the dashboard when a second has passed since the last.
    pub fn publish_every_second(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_publish_ms) < 1000 {
            return;
        }
        self.last_publish_ms = now_ms;
        *lock(&self.published) = self.map.iter().map(|(k, v)| (*k, *v)).collect();
    }

    fn forget_older_half(&mut self) {
        let mut seen: Vec<u64> = self.map.values().map(|s| s.last_seen_ms).collect();
        let mid = seen.len() / 2;
        let (_, &mut cut, _) = seen.select_nth_unstable(mid);
        self.map.retain(|_, s| s.last_seen_ms > cut);
    }
}

/// Every worker's published table.
#[derive(Debug)]
pub struct Sources {
    capacity: Arc<AtomicUsize>,
    workers: Mutex<Vec<Published>>,
}

impl Sources {
    /// Tables of at most `capacity` addresses each.
    pub fn new(capacity: usize) -> Sources {
        Sources {
            capacity: Arc::new(AtomicUsize::new(capacity.max(2))),
            workers: Mutex::default(),
        }
    }

    /// Keeps `capacity` addresses per worker from now on (a reload); a table above it drops
    /// its least recently seen half at its next new address.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(2), Relaxed);
    }

    /// A new worker's table.
    pub fn join(&self) -> SourceTable {
        let published = Arc::new(Mutex::new(Vec::new()));
        lock(&self.workers).push(Arc::clone(&published));
        SourceTable {
            capacity: Arc::clone(&self.capacity),
            map: Map::default(),
            published,
            last_publish_ms: 0,
        }
    }

    /// Every address, its figures summed over the workers (a client may reach several).
    pub fn snapshot(&self) -> Vec<(IpAddr, SourceStats)> {
        let mut all: HashMap<IpAddr, SourceStats> = HashMap::new();
        for w in lock(&self.workers).iter() {
            for (ip, s) in lock(w).iter() {
                all.entry(*ip).or_default().add(s);
            }
        }
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farside_stun::binding::{ClientKind, Response};

    fn answer(from: &str, kind: ResponseKind) -> Outcome {
        Outcome::Respond(Response {
            kind,
            len: 0,
            from: from.parse().expect("addr"),
            to: "198.51.100.1:4000".parse().expect("addr"),
            changed: false,
            client: ClientKind::Rfc5389,
            forwarded: false,
        })
    }

    #[test]
    fn requests_are_sorted_by_where_they_were_answered_from_and_the_table_stays_bounded() {
        let sources = Sources::new(4);
        let mut t = sources.join();
        let local: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        t.record(
            1,
            ip,
            local,
            &answer("192.0.2.1:3478", ResponseKind::Success),
        );
        t.record(
            2,
            ip,
            local,
            &answer("192.0.2.2:3479", ResponseKind::Success),
        );
        t.record(
            3,
            ip,
            local,
            &answer("192.0.2.1:3479", ResponseKind::Success),
        );
        t.record(
            4,
            ip,
            local,
            &answer("192.0.2.1:3478", ResponseKind::Error(420)),
        );
        t.publish_every_second(1000);
        let snap = sources.snapshot();
        assert_eq!(
            snap,
            [(
                ip,
                SourceStats {
                    last_seen_ms: 4,
                    requests: 4,
                    no_change: 1,
                    change_ip: 1,
                    change_port: 1,
                    errors: 1
                }
            )]
        );
        for i in 0..100u64 {
            let ip = IpAddr::from([203, 0, 113, i as u8]);
            t.record(
                10 + i,
                ip,
                local,
                &answer("192.0.2.1:3478", ResponseKind::Success),
            );
            assert!(t.map.len() <= 4);
        }
        // The most recent stay.
        assert!(t.map.contains_key(&IpAddr::from([203, 0, 113, 99])));
    }
}
