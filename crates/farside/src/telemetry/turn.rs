//! TURN counters: one set per worker, on cache lines of its own, summed when scraped.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use farside_turn::{Dropped, Refusal};

/// Every worker's TURN counters, summed when scraped.
#[derive(Debug, Default)]
pub struct TurnMetrics {
    /// One set per worker.
    pub workers: Mutex<Vec<Arc<TurnCounters>>>,
}

/// One worker's TURN counters: its own cache lines, so relaying never writes a line another
/// core writes.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct TurnCounters {
    /// Successful responses.
    pub answered: AtomicU64,
    /// Error responses, by [`Refusal`].
    pub refused: [AtomicU64; Refusal::ALL.len()],
    /// Messages dropped, by [`Dropped`].
    pub dropped: [AtomicU64; Dropped::ALL.len()],
    /// Datagrams relayed client → peer.
    pub to_peer: AtomicU64,
    /// Bytes relayed client → peer.
    pub to_peer_bytes: AtomicU64,
    /// Datagrams relayed peer → client.
    pub to_client: AtomicU64,
    /// Bytes relayed peer → client (payload).
    pub to_client_bytes: AtomicU64,
    /// Datagrams the kernel would not send.
    pub send_failures: AtomicU64,
    /// Live allocations of this worker.
    pub allocations: AtomicUsize,
}
