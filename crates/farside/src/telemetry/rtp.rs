//! RTP relay counters: what the media thread relayed, refused and answered.

use std::sync::atomic::AtomicU64;

/// RTP relay counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct RtpCounters {
    /// Calls open.
    pub calls: AtomicU64,
    /// Port pairs bound.
    pub port_pairs: AtomicU64,
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
    /// Calls ended, by reason: deleted, no media, silence, final limit.
    pub ended: [AtomicU64; 4],
    /// ng requests answered with success, with an error, and not understood.
    pub ng: [AtomicU64; 3],
    /// Flags of ng requests the relay does not act on (tolerated).
    pub ng_unknown_flags: AtomicU64,
}
