//! SIP counters: what the SIP thread saw and did, summed by the Prometheus renderer.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use farside_sip::nat::NatTests;

/// SIP counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Requests received, by [`farside_sip::server::MethodKind`].
    pub requests: [AtomicU64; farside_sip::server::MethodKind::ALL.len()],
    /// REGISTERs answered 200.
    pub registered: AtomicU64,
    /// REGISTERs challenged (401 without a failure).
    pub challenged: AtomicU64,
    /// Of those, challenges with `stale=true`.
    pub stale: AtomicU64,
    /// Failed authentications.
    pub auth_failures: AtomicU64,
    /// REGISTERs dropped: their source failed authentication too often lately.
    pub auth_rate_limited: AtomicU64,
    /// REGISTERs answered 500 instead of 2xx: the store took no writes.
    pub store_refused: AtomicU64,
    /// Other final responses the registrar or the server gave (4xx, 5xx).
    pub refused: AtomicU64,
    /// Error responses Farside itself sent (registrar, proxy, transactions), by status code:
    /// [`REFUSAL_CODES`] in order, the last slot for any other.
    pub refusals: [AtomicU64; REFUSAL_CODES.len() + 1],
    /// NAT tests that fired on requests, by [`NatTests::ALL`] order.
    pub nat: [AtomicU64; NatTests::ALL.len()],
    /// Messages dropped: malformed.
    pub malformed: AtomicU64,
    /// Messages dropped: responses (nothing to forward them to yet).
    pub responses_dropped: AtomicU64,
    /// Answers dropped unsent: their UDP destination's `sip.refusals_per_second` was spent.
    pub refusals_rate_limited: AtomicU64,
    /// UDP messages the kernel refused to send.
    pub send_failures: AtomicU64,
    /// STUN Binding requests answered on SIP ports.
    pub stun: AtomicU64,
    /// Sources whose first request looked rewritten by a SIP ALG (S424).
    pub alg_suspected: AtomicU64,
    /// Calls in which a SIP ALG was suspected on one side (each side once).
    pub alg_calls: AtomicU64,
    /// Requests the mirror service answered with what arrived.
    pub mirrored: AtomicU64,
    /// Calls to the echo service that began.
    pub echo_calls: AtomicU64,
    /// CRLF or 4-byte keep-alives received.
    pub keepalives: AtomicU64,
    /// Live bindings.
    pub bindings: AtomicU64,
    /// Open TCP connections.
    pub connections: AtomicU64,
    /// Dialogs seen established (2xx to INVITE).
    pub dialogs_started: AtomicU64,
    /// Dialogs seen ended (2xx to BYE).
    pub dialogs_ended: AtomicU64,
    /// Dialogs established and not ended now.
    pub dialogs: AtomicU64,
    /// Requests and responses proxied on.
    pub forwarded: AtomicU64,
    /// Keep-alive pings sent.
    pub pings_sent: AtomicU64,
    /// Requests or responses for a connection that is gone (the phone's flow failed).
    pub no_flow: AtomicU64,
    /// SIP keep-alive pings answered.
    pub pings_answered: AtomicU64,
    /// SIP keep-alive pings that went unanswered (failed).
    pub pings_missed: AtomicU64,
    /// Bindings dropped for missing keep-alives.
    pub unreachable: AtomicU64,
    /// SDP handed to the RTP relay: offers and answers rewritten, offers and answers the
    /// relay refused or did not answer in time (passed as they came), calls deleted.
    pub media: [AtomicU64; MEDIA_STEPS.len()],
}

/// The labels of [`SipCounters::media`], in order.
pub const MEDIA_STEPS: [(&str, &str); 5] = [
    ("offer", "rewritten"),
    ("answer", "rewritten"),
    ("offer", "passed"),
    ("answer", "passed"),
    ("delete", "sent"),
];

/// Status codes of refusals counted apart (the reasons a server refuses a SIP request).
pub const REFUSAL_CODES: [u16; 12] = [400, 403, 404, 408, 420, 423, 480, 481, 483, 487, 500, 503];

impl SipCounters {
    /// Counts one refusal with `code`.
    pub fn count_refusal(&self, code: u16) {
        let i = REFUSAL_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(REFUSAL_CODES.len());
        self.refusals[i].fetch_add(1, Relaxed);
    }
}
