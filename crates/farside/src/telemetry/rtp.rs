//! RTP relay counters: what the relay's workers relayed and refused, and its control thread answered.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// RTP relay counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct RtpCounters {
    /// Calls open.
    pub calls: AtomicU64,
    /// Port pairs bound.
    pub port_pairs: AtomicU64,
    /// Port pairs of the range not bound (free, or held by another program).
    pub port_pairs_free: AtomicU64,
    /// Packets relayed.
    pub relayed: AtomicU64,
    /// Their bytes.
    pub relayed_bytes: AtomicU64,
    /// Packets refused: from a host the signalling did not name (strict source).
    pub foreign_source: AtomicU64,
    /// Packets dropped: the other side has no address yet.
    pub no_destination: AtomicU64,
    /// Packets dropped: no call owns the port (a late packet of an ended call).
    pub no_stream: AtomicU64,
    /// Packets dropped: the other side's address is refused by `rtp.allowed_peers` /
    /// `rtp.denied_peers` (by default, what is not globally routable).
    pub denied_peer: AtomicU64,
    /// Packets the kernel dropped at a relay port's full receive buffer (the relay fell
    /// behind), as the port's socket reported them.
    pub overflow: AtomicU64,
    /// Packets the relay meant to send but the kernel refused (no route, a full send buffer).
    pub send_failed: AtomicU64,
    /// Calls ended, by reason: deleted, no media, silence, final limit.
    pub ended: [AtomicU64; 4],
    /// ng requests answered with success, with an error, and not understood.
    pub ng: [AtomicU64; 3],
    /// Flags of ng requests the relay does not act on (tolerated).
    pub ng_unknown_flags: AtomicU64,
    /// Each ended call's sides: the share of their RTP lost on the way to the relay.
    pub loss: Histogram<{ LOSS_BUCKETS.len() }>,
    /// Each ended call's sides: their RTP's interarrival jitter at the end, in seconds.
    pub jitter: Histogram<{ JITTER_BUCKETS.len() }>,
}

/// Upper bounds of the loss histogram's buckets (share of packets).
pub const LOSS_BUCKETS: [f64; 6] = [0.0, 0.001, 0.01, 0.03, 0.1, 1.0];
/// Upper bounds of the jitter histogram's buckets, in seconds.
pub const JITTER_BUCKETS: [f64; 7] = [0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];

/// A Prometheus histogram with fixed buckets: the count in each (not cumulative; the renderer
/// sums), the observations beyond the last, and their sum (in millionths).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    /// Observations at most each bound (and above the one before).
    pub buckets: [AtomicU64; N],
    /// Observations above the last bound.
    pub above: AtomicU64,
    /// The sum of all observations, times 1,000,000.
    pub sum_micro: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; N],
            above: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    /// Counts `value` in the first bucket whose bound (`bounds`) it does not exceed.
    pub fn observe(&self, bounds: &[f64; N], value: f64) {
        match bounds.iter().position(|&b| value <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Relaxed),
            None => self.above.fetch_add(1, Relaxed),
        };
        self.sum_micro
            .fetch_add((value.max(0.0) * 1e6) as u64, Relaxed);
    }
}
