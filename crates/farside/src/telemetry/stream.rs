//! Stream connection counters: one set per service (STUN and TURN, SIP), kept by its
//! [`Pool`](crate::net::stream::Pool).

use std::sync::atomic::AtomicU64;

/// What became of one service's connections.
#[derive(Debug)]
pub struct StreamCounters {
    /// The service, for logs: `STUN` or `SIP`.
    pub service: &'static str,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections Farside opened itself (SIP: to a phone whose own connection is gone).
    pub dialled: AtomicU64,
    /// Of those, TLS connections closed in the handshake: the peer's certificate (or its
    /// TLS) was not accepted.
    pub certificate_refused: AtomicU64,
    /// Connections refused (closed as they came): at the total or the per-address limit.
    pub refused: AtomicU64,
    /// Of those, refused at the per-address limit.
    pub per_ip_limit: AtomicU64,
    /// Closed for silence, or for output stuck at a peer that does not read.
    pub idle_closed: AtomicU64,
    /// Closed without a whole message within the first-message timeout.
    pub first_message_closed: AtomicU64,
    /// Closed with the TLS handshake unfinished in time.
    pub tls_handshake_closed: AtomicU64,
    /// Closed with more output queued than the limit.
    pub overflow_closed: AtomicU64,
    /// Closed because what they sent is not the protocol's framing.
    pub invalid_closed: AtomicU64,
    /// Relayed bytes dropped for a peer whose queue was full.
    pub dropped_bytes: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

impl StreamCounters {
    /// Zeroed counters of `service`.
    pub fn new(service: &'static str) -> Self {
        StreamCounters {
            service,
            accepted: AtomicU64::new(0),
            dialled: AtomicU64::new(0),
            certificate_refused: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            per_ip_limit: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            first_message_closed: AtomicU64::new(0),
            tls_handshake_closed: AtomicU64::new(0),
            overflow_closed: AtomicU64::new(0),
            invalid_closed: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
            open: AtomicU64::new(0),
        }
    }

    /// Every event with its label, for the renderers.
    pub fn events(&self) -> [(&'static str, &AtomicU64); 10] {
        [
            ("accepted", &self.accepted),
            ("dialled", &self.dialled),
            ("certificate_refused", &self.certificate_refused),
            ("refused", &self.refused),
            ("per_ip_limit", &self.per_ip_limit),
            ("idle_closed", &self.idle_closed),
            ("first_message_closed", &self.first_message_closed),
            ("tls_handshake_closed", &self.tls_handshake_closed),
            ("overflow_closed", &self.overflow_closed),
            ("invalid_closed", &self.invalid_closed),
        ]
    }
}
