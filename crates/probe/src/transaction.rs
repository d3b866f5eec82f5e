//! Client transactions over UDP (RFC 8489 §6.2.1): a request is sent, then resent after RTO,
//! 2·RTO, 4·RTO, … until `retransmits + 1` sends, and after the last one the client waits
//! Rm·RTO (Rm = 16) before giving up. With the defaults (RTO 500 ms, 7 sends) requests go out
//! at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s and the transaction fails at 39.5 s.
//!
//! Answers are matched by transaction id only; the caller checks where they came from.

use std::net::SocketAddr;
use std::time::Duration;

use farside_time::Timestamp;

use farside_stun::TransactionId;

use crate::{SocketId, Transmit};

/// Rm: the last wait is this many RTOs (RFC 8489 §6.2.1).
const RM: u32 = 16;

/// No single wait is longer than this, however large the settings: timers stay far from
/// the end of time.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// When to resend and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The first retransmission timeout.
    pub rto: Duration,
    /// Sends after the first.
    pub retransmits: u32,
}

impl Schedule {
    /// The wait after send number `n` (0 is the first): RTO·2ⁿ, or Rm·RTO after the last.
    pub fn wait_after(&self, n: u32) -> Duration {
        let wait = if n >= self.retransmits {
            self.rto.saturating_mul(RM)
        } else {
            self.rto
                .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        };
        wait.min(MAX_WAIT)
    }

    /// From the first send until the transaction fails unanswered.
    pub fn total(&self) -> Duration {
        (0..=self.retransmits.min(64))
            .map(|n| self.wait_after(n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// What a transaction is for; the probe dispatches answers and failures on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// RFC 5780 test I from socket 0.
    BindingI,
    /// Filtering test II: change IP and port.
    FilteringII,
    /// Filtering test III: change port.
    FilteringIII,
    /// Test I again, right before mapping test II: the baseline (see `crate::mapping`).
    MappingI,
    /// Mapping test II: to the alternate IP, primary port.
    MappingII,
    /// Mapping test III: to the alternate IP and port.
    MappingIII,
    /// Socket 1 learns its public address.
    HairpinBinding,
    /// A request to the other socket's public address; it should arrive on `answer_on`.
    Hairpin,
    /// A lifetime trial opens a binding on a fresh socket.
    LifetimeOpen,
    /// A lifetime trial checks, with RESPONSE-PORT, whether the binding still works.
    LifetimeCheck,
}

/// One request being sent until answered or given up.
#[derive(Clone, Debug)]
pub(crate) struct Transaction {
    pub(crate) id: TransactionId,
    pub(crate) purpose: Purpose,
    /// The socket it is sent from.
    pub(crate) socket: SocketId,
    /// The socket the answer should arrive on.
    pub(crate) answer_on: SocketId,
    pub(crate) to: SocketAddr,
    /// When the request was last sent.
    pub(crate) last_sent: Timestamp,
    payload: Vec<u8>,
    sends: u32,
    deadline: Timestamp,
}

/// The transactions in flight (a handful at most).
#[derive(Debug)]
pub(crate) struct Transactions {
    schedule: Schedule,
    live: Vec<Transaction>,
}

/// Everything about a new transaction but its timing.
pub(crate) struct Start {
    pub(crate) id: TransactionId,
    pub(crate) purpose: Purpose,
    pub(crate) socket: SocketId,
    pub(crate) answer_on: SocketId,
    pub(crate) to: SocketAddr,
    pub(crate) payload: Vec<u8>,
}

impl Transactions {
    pub(crate) fn new(schedule: Schedule) -> Self {
        Transactions {
            schedule,
            live: Vec::new(),
        }
    }

    /// Sends the first request now.
    pub(crate) fn start(&mut self, now: Timestamp, s: Start, out: &mut Vec<Transmit>) {
        out.push(Transmit {
            from: s.socket,
            to: s.to,
            payload: s.payload.clone(),
        });
        self.live.push(Transaction {
            id: s.id,
            purpose: s.purpose,
            socket: s.socket,
            answer_on: s.answer_on,
            to: s.to,
            last_sent: now,
            payload: s.payload,
            sends: 1,
            deadline: later(now, self.schedule.wait_after(0)),
        });
    }

    /// Removes and returns the transaction `id` if `accept` likes it.
    pub(crate) fn take(
        &mut self,
        id: TransactionId,
        accept: impl Fn(&Transaction) -> bool,
    ) -> Option<Transaction> {
        let i = self.live.iter().position(|t| t.id == id && accept(t))?;
        Some(self.live.swap_remove(i))
    }

    /// Drops every transaction `drop` selects.
    pub(crate) fn cancel(&mut self, drop: impl Fn(&Transaction) -> bool) {
        self.live.retain(|t| !drop(t));
    }

    /// Whether any transaction for `purpose` is in flight.
    pub(crate) fn any(&self, purpose: Purpose) -> bool {
        self.live.iter().any(|t| t.purpose == purpose)
    }

    /// The earliest resend or give-up time.
    pub(crate) fn next_timeout(&self) -> Option<Timestamp> {
        self.live.iter().map(|t| t.deadline).min()
    }

    /// Resends what is due and returns the transactions that failed, in the order they
    /// were started.
    pub(crate) fn expire(&mut self, now: Timestamp, out: &mut Vec<Transmit>) -> Vec<Transaction> {
        let mut failed = Vec::new();
        let mut i = 0;
        while let Some(t) = self.live.get_mut(i) {
            if t.deadline > now {
                i += 1;
                continue;
            }
            if t.sends > self.schedule.retransmits {
                failed.push(self.live.remove(i));
                continue;
            }
            out.push(Transmit {
                from: t.socket,
                to: t.to,
                payload: t.payload.clone(),
            });
            t.deadline = later(now, self.schedule.wait_after(t.sends));
            t.sends += 1;
            t.last_sent = now;
            i += 1;
        }
        failed
    }
}

fn later(now: Timestamp, wait: Duration) -> Timestamp {
    now.checked_add(wait).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            rto: Duration::from_millis(500),
            retransmits: 6,
        }
    }

    #[test]
    fn rfc_8489_default_schedule() {
        let s = schedule();
        let waits: Vec<u128> = (0..7).map(|n| s.wait_after(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 8000]);
        assert_eq!(s.total(), Duration::from_millis(39_500));
        let huge = Schedule {
            rto: Duration::from_secs(u64::MAX / 2),
            retransmits: u32::MAX,
        };
        assert_eq!(huge.wait_after(40), MAX_WAIT);
        assert_eq!(huge.total(), Duration::from_secs(65 * 24 * 3600));
    }

    #[test]
    fn resends_on_schedule_then_fails() {
        let t0 = Timestamp::from_unix_secs(1_800_000_000);
        let mut set = Transactions::new(schedule());
        let mut out = Vec::new();
        set.start(
            t0,
            Start {
                id: TransactionId([1; 12]),
                purpose: Purpose::BindingI,
                socket: SocketId(0),
                answer_on: SocketId(0),
                to: "192.0.2.1:3478".parse().expect("addr"),
                payload: vec![1, 2, 3],
            },
            &mut out,
        );
        let mut sent_at = vec![Duration::ZERO];
        let mut failed_at = None;
        while let Some(next) = set.next_timeout() {
            out.clear();
            let failed = set.expire(next, &mut out);
            if !out.is_empty() {
                sent_at.push(next - t0);
            }
            if !failed.is_empty() {
                failed_at = Some(next - t0);
            }
        }
        let ms: Vec<u128> = sent_at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(failed_at, Some(Duration::from_millis(39_500)));
    }

    #[test]
    fn an_answer_ends_the_transaction() {
        let t0 = Timestamp::from_unix_secs(1_800_000_000);
        let mut set = Transactions::new(schedule());
        let mut out = Vec::new();
        let id = TransactionId([2; 12]);
        set.start(
            t0,
            Start {
                id,
                purpose: Purpose::Hairpin,
                socket: SocketId(1),
                answer_on: SocketId(0),
                to: "203.0.113.1:4000".parse().expect("addr"),
                payload: vec![],
            },
            &mut out,
        );
        assert!(set.take(id, |t| t.purpose != Purpose::Hairpin).is_none());
        assert!(set.take(TransactionId([3; 12]), |_| true).is_none());
        assert!(set.take(id, |_| true).is_some());
        assert_eq!(set.next_timeout(), None);
    }
}
