//! STUN counters: one set per data-plane worker (cache-line aligned, so workers never share a
//! line) and one for STUN over TCP.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use farside_stun::binding::{ClientKind, DropReason, Outcome, ResponseKind, Transport};

const N_REASONS: usize = DropReason::ALL.len();

/// Counters of one worker (or of the TCP listeners, which share one set).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct StunCounters {
    pub(super) requests: [[AtomicU64; 2]; 2],
    pub(super) success: AtomicU64,
    pub(super) changed: AtomicU64,
    pub(super) error_400: AtomicU64,
    pub(super) error_420: AtomicU64,
    pub(super) dropped: [AtomicU64; N_REASONS],
    pub(super) send_failures: AtomicU64,
    pub(super) partner_forwards: AtomicU64,
    pub(super) partner_answers: AtomicU64,
    pub(super) partner_hellos_sent: AtomicU64,
    pub(super) partner_hellos_heard: AtomicU64,
}

impl StunCounters {
    /// Counts one handled message.
    pub fn record(&self, transport: Transport, outcome: &Outcome) {
        match outcome {
            Outcome::Respond(r) => {
                let t = transport as usize;
                let c = match r.client {
                    ClientKind::Rfc5389 => 0,
                    ClientKind::Rfc3489 => 1,
                };
                self.requests[t][c].fetch_add(1, Relaxed);
                let counter = match r.kind {
                    ResponseKind::Success => &self.success,
                    ResponseKind::Error(420) => &self.error_420,
                    ResponseKind::Error(_) => &self.error_400,
                };
                counter.fetch_add(1, Relaxed);
                if r.changed {
                    self.changed.fetch_add(1, Relaxed);
                }
                if r.forwarded {
                    self.partner_answers.fetch_add(1, Relaxed);
                }
            }
            Outcome::Drop(reason) => self.dropped(*reason),
            Outcome::Forward(_) => {
                self.partner_forwards.fetch_add(1, Relaxed);
            }
            Outcome::PartnerHello(_) => {
                self.partner_hellos_heard.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts one heartbeat sent to a partner.
    pub fn partner_hello_sent(&self) {
        self.partner_hellos_sent.fetch_add(1, Relaxed);
    }

    /// Counts one drop.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts responses the kernel would not send.
    pub fn send_failed(&self, n: u64) {
        self.send_failures.fetch_add(n, Relaxed);
    }
}
