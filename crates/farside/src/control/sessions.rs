//! What the admin API and dashboard see of TURN allocations, and how an operator ends one or
//! removes a SIP registration.
//!
//! Allocations live in each data-plane worker's core, which no other thread may touch. So each
//! worker publishes a snapshot of its allocations here about once a second (with its expiry
//! pass) and takes the operator's end requests from here at the same moment: a listing is at
//! most a second old, and an ended allocation is gone within a second. The hot path never
//! looks at this board.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use farside_turn::{AllocationSummary, FiveTuple};

use crate::runtime::lock::lock;

/// Every worker's board.
#[derive(Debug, Default)]
pub struct TurnBoard {
    workers: Mutex<Vec<Arc<WorkerBoard>>>,
}

/// One worker's snapshot and the end requests waiting for it.
#[derive(Debug, Default)]
pub struct WorkerBoard {
    allocations: Mutex<Vec<AllocationSummary>>,
    to_end: Mutex<Vec<FiveTuple>>,
}

impl TurnBoard {
    /// A new worker's board.
    pub fn join(&self) -> Arc<WorkerBoard> {
        let b = Arc::new(WorkerBoard::default());
        lock(&self.workers).push(Arc::clone(&b));
        b
    }

    /// Every allocation, as last published.
    pub fn allocations(&self) -> Vec<AllocationSummary> {
        lock(&self.workers)
            .iter()
            .flat_map(|w| lock(&w.allocations).clone())
            .collect()
    }

    /// Asks the worker holding the allocation relayed at `relayed` to end it; whether one
    /// was found.
    pub fn end(&self, relayed: SocketAddr) -> bool {
        for w in lock(&self.workers).iter() {
            let five = lock(&w.allocations)
                .iter()
                .find(|a| a.relayed.contains(&relayed))
                .map(|a| a.five);
            if let Some(five) = five {
                lock(&w.to_end).push(five);
                return true;
            }
        }
        false
    }
}

/// One call on the RTP relay, as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallSummary {
    /// Its Call-ID.
    pub call_id: String,
    /// Unix milliseconds of its first offer.
    pub created_unix_ms: u64,
    /// Media streams (m= lines).
    pub streams: usize,
    /// RTP packets relayed, both sides.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// RTP packets not relayed (a foreign source, nowhere to send, a refused peer).
    pub errors: u64,
    /// Each side of each stream: where its media comes from and how it arrives (of an ended
    /// call, each side over all its streams: `received` is what arrived of what was expected).
    pub sides: Vec<SideSummary>,
    /// When and why it ended; `None` while it runs.
    pub ended: Option<EndedCall>,
}

/// When and why a call on the relay ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndedCall {
    /// Unix milliseconds.
    pub unix_ms: u64,
    /// `deleted` (BYE, CANCEL, ng delete), `no media`, `silence`, `final timeout`.
    pub reason: &'static str,
}

/// One side of a relayed stream, as the relay saw its RTP arrive.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SideSummary {
    /// Where its RTP comes from, once latched.
    pub endpoint: Option<SocketAddr>,
    /// RTP packets received from it.
    pub received: u64,
    /// Of those expected, lost (RFC 3550 §6.4.1; negative with duplicates).
    pub lost: i64,
    /// Interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// The last round trip between the relay and it (RTCP), in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// Every RTP relay worker's calls, published once a second.
#[derive(Debug, Default)]
pub struct CallBoard {
    workers: Mutex<Vec<Arc<Mutex<Vec<CallSummary>>>>>,
}

impl CallBoard {
    /// A new worker's slot.
    pub fn join(&self) -> Arc<Mutex<Vec<CallSummary>>> {
        let slot = Arc::new(Mutex::new(Vec::new()));
        lock(&self.workers).push(Arc::clone(&slot));
        slot
    }

    /// Every call on the relay now, as last published.
    pub fn calls(&self) -> Vec<CallSummary> {
        self.published(|c| c.ended.is_none())
    }

    /// The calls that ended lately (each RTP relay worker keeps its last ones), newest first.
    pub fn recent(&self) -> Vec<CallSummary> {
        let mut calls = self.published(|c| c.ended.is_some());
        calls.sort_by_key(|c| std::cmp::Reverse(c.ended.as_ref().map_or(0, |e| e.unix_ms)));
        calls
    }

    fn published(&self, keep: impl Fn(&CallSummary) -> bool) -> Vec<CallSummary> {
        lock(&self.workers)
            .iter()
            .flat_map(|w| {
                lock(w)
                    .iter()
                    .filter(|c| keep(c))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// How many calls with a SIP ALG suspected the board keeps (the newest).
pub const ALG_CALLS_KEPT: usize = 1000;

/// A call in which a SIP ALG is suspected on one side, as the API and dashboard report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlgCall {
    /// The call's Call-ID.
    pub call_id: String,
    /// `caller` or `callee`.
    pub side: &'static str,
    /// The side's source address (the ALG's public side).
    pub source: SocketAddr,
    /// Why, in words.
    pub evidence: String,
    /// Unix milliseconds when it was first seen in this call.
    pub seen_unix_ms: u64,
}

/// What the SIP thread tells the API and dashboard, and what they ask of it: registrations an
/// operator asked to remove (taken between messages), and the calls in which a SIP ALG was
/// suspected.
#[derive(Debug, Default)]
pub struct SipBoard {
    to_remove: Mutex<Vec<(String, String)>>,
    alg_calls: Mutex<std::collections::VecDeque<AlgCall>>,
}

impl SipBoard {
    /// Notes a call's side with an ALG suspected (the SIP thread); whether it is new here (a
    /// retransmission or a second provisional answer is not). The newest
    /// [`ALG_CALLS_KEPT`] are kept.
    pub fn alg_call(&self, call: AlgCall) -> bool {
        let mut calls = lock(&self.alg_calls);
        if listed(&calls, &call.call_id, call.side) {
            return false;
        }
        if calls.len() >= ALG_CALLS_KEPT {
            calls.pop_front();
        }
        calls.push_back(call);
        true
    }

    /// Whether the side `side` of the call `call_id` is listed already.
    pub fn has_alg_call(&self, call_id: &str, side: &str) -> bool {
        listed(&lock(&self.alg_calls), call_id, side)
    }

    /// The calls with a SIP ALG suspected, newest first.
    pub fn alg_calls(&self) -> Vec<AlgCall> {
        lock(&self.alg_calls).iter().rev().cloned().collect()
    }

    /// Asks the SIP thread to remove `contact`'s binding of `aor`.
    pub fn remove(&self, aor: String, contact: String) {
        let mut q = lock(&self.to_remove);
        // Bounded: an operator's clicks, not traffic; beyond this they wait for the next.
        if q.len() < 1024 {
            q.push((aor, contact));
        }
    }

    /// The removals asked for since the last call.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *lock(&self.to_remove))
    }
}

/// Whether `calls` lists the side `side` of the call `call_id` (the newest first: a call's
/// answers come soon after its INVITE).
fn listed(calls: &std::collections::VecDeque<AlgCall>, call_id: &str, side: &str) -> bool {
    calls
        .iter()
        .rev()
        .any(|c| c.call_id == call_id && c.side == side)
}

impl WorkerBoard {
    /// The worker's allocations now; the end requests that came since the last call.
    pub fn publish(&self, allocations: Vec<AllocationSummary>) -> Vec<FiveTuple> {
        *lock(&self.allocations) = allocations;
        std::mem::take(&mut *lock(&self.to_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: usize, side: &'static str) -> AlgCall {
        AlgCall {
            call_id: format!("c{id}"),
            side,
            source: SocketAddr::from(([198, 51, 100, 16], 5070)),
            evidence: "the top Via names it".into(),
            seen_unix_ms: id as u64,
        }
    }

    #[test]
    fn each_side_of_a_call_is_listed_once_and_the_newest_are_kept() {
        let board = SipBoard::default();
        assert!(board.alg_call(call(0, "callee")));
        assert!(!board.alg_call(call(0, "callee")), "a second 200 OK");
        assert!(board.alg_call(call(0, "caller")));
        for id in 1..=ALG_CALLS_KEPT {
            assert!(board.alg_call(call(id, "caller")));
        }
        let listed = board.alg_calls();
        assert_eq!(listed.len(), ALG_CALLS_KEPT);
        assert_eq!(
            listed[0].call_id,
            format!("c{ALG_CALLS_KEPT}"),
            "newest first"
        );
        assert!(
            !listed
                .iter()
                .any(|c| c.call_id == "c0" && c.side == "callee"),
            "the oldest went"
        );
    }
}
