//! The echo service: an INVITE for the reserved user (`sip.echo_user`, `farside-echo` by
//! default) is answered by the server itself, with the RTP relay's SDP in echo mode (the ng
//! flag `echo`): what the caller sends to the relay's port comes back to it from there. A
//! client on a phone's network (`farside doctor`) so measures the loss, jitter and round trip
//! of its media through the relay, and a user who dials it hears their own voice.
//!
//! The server is the UAS of that dialog (RFC 3261 §13.3): a 200 OK at once, sent again over
//! UDP at T1, doubling up to T2, until the ACK comes (§13.3.1.4), and the call given up after
//! 64·T1 without one; a retransmitted INVITE gets the same 200; BYE is answered 200 (§15.1.2);
//! a CANCEL after the 200 is answered 200 and changes nothing (§9.2); a re-INVITE gets 488 (the
//! echo keeps its first offer). Without an RTP relay an INVITE gets 503, without SDP 488.
//!
//! Bounded: at most `max` echo calls at once (486 Busy Here beyond) and each for at most
//! `max_duration`; then its ports go back to the relay and the media stops (no BYE is sent: a
//! phone hears silence).

use std::collections::HashMap;
use std::time::Duration;

use farside_time::Timestamp;

use crate::transmit::Transmit;

/// The reserved user by default.
pub const DEFAULT_USER: &str = "farside-echo";

/// RFC 3261's T1 and T2 (§17.1.1.1), for the 2xx sent again until its ACK.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// How many echo calls at once, and for how long each, by default.
pub const DEFAULT_MAX_CALLS: usize = 16;
/// See [`DEFAULT_MAX_CALLS`].
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(60);

/// One echo call: its dialog's To tag and the 200 OK that began it.
#[derive(Debug, Clone)]
struct EchoCall {
    to_tag: String,
    answer: Transmit,
    started: Timestamp,
    acked: bool,
    /// When the 200 goes again (UDP, before the ACK).
    again: Timestamp,
    interval: Duration,
}

/// The echo calls up now (see the module documentation).
#[derive(Debug)]
pub(crate) struct EchoCalls {
    calls: HashMap<Vec<u8>, EchoCall>,
    max: usize,
    max_duration: Duration,
}

/// What [`EchoCalls::poll`] found due.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// 200 OKs to send again.
    pub again: Vec<Transmit>,
    /// Calls that ended (no ACK came, or they ran their time): their relay calls go.
    pub ended: Vec<Vec<u8>>,
}

impl EchoCalls {
    /// At most `max` calls at once, each for at most `max_duration`.
    pub(crate) fn new(max: usize, max_duration: Duration) -> Self {
        EchoCalls {
            calls: HashMap::new(),
            max,
            max_duration,
        }
    }

    /// Whether another call may begin.
    pub(crate) fn has_room(&self) -> bool {
        self.calls.len() < self.max
    }

    /// The 200 OK of the call `call_id`, to send again for a retransmitted INVITE.
    pub(crate) fn answer(&self, call_id: &[u8]) -> Option<&Transmit> {
        self.calls.get(call_id).map(|c| &c.answer)
    }

    /// Whether `call_id` is an echo call here, its dialog's To tag `to_tag`.
    pub(crate) fn holds(&self, call_id: &[u8], to_tag: &[u8]) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| to_tag == c.to_tag.as_bytes())
    }

    /// Whether `call_id` is an echo call here (a CANCEL names no To tag).
    pub(crate) fn has(&self, call_id: &[u8]) -> bool {
        self.calls.contains_key(call_id)
    }

    /// A call began at `now` with `answer`, its 200 OK, which names `to_tag`.
    pub(crate) fn begin(
        &mut self,
        now: Timestamp,
        call_id: &[u8],
        to_tag: String,
        answer: Transmit,
    ) {
        let again = now.checked_add(T1).unwrap_or(now);
        self.calls.insert(
            call_id.to_vec(),
            EchoCall {
                to_tag,
                answer,
                started: now,
                acked: false,
                again,
                interval: T1,
            },
        );
    }

    /// The ACK of the call's 200 came: it is not sent again.
    pub(crate) fn acked(&mut self, call_id: &[u8]) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.acked = true;
        }
    }

    /// The call ended (a BYE); whether it was here.
    pub(crate) fn end(&mut self, call_id: &[u8]) -> bool {
        self.calls.remove(call_id).is_some()
    }

    /// The earliest time something is due, if any call is up.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.calls
            .values()
            .filter_map(|c| {
                let end = c.started.checked_add(self.max_duration)?;
                Some(match c.acked {
                    true => end,
                    false => end.min(c.again).min(c.started.checked_add(64 * T1)?),
                })
            })
            .min()
    }

    /// What is due at `now`: 200s sent again (UDP only: a connection carries it once), and
    /// calls ended.
    pub(crate) fn poll(&mut self, now: Timestamp) -> Due {
        let mut due = Due::default();
        let max_duration = self.max_duration;
        self.calls.retain(|id, c| {
            let age = now.saturating_duration_since(c.started);
            if age >= max_duration || (!c.acked && age >= 64 * T1) {
                due.ended.push(id.clone());
                return false;
            }
            if !c.acked && now >= c.again {
                if c.answer.transport == crate::nat::Transport::Udp {
                    due.again.push(c.answer.clone());
                }
                c.interval = (c.interval * 2).min(T2);
                c.again = now.checked_add(c.interval).unwrap_or(now);
            }
            true
        });
        due
    }

    /// Calls up now.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::Transport;

    fn answer() -> Transmit {
        Transmit {
            bytes: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            transport: Transport::Udp,
            from: "192.0.2.1:5060".parse().expect("address"),
            to: "198.51.100.7:5070".parse().expect("address"),
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn the_200_goes_again_at_t1_doubling_to_t2_until_the_ack_then_the_call_runs_its_time() {
        let mut calls = EchoCalls::new(1, Duration::from_secs(60));
        calls.begin(at(0), b"c1", "t1".into(), answer());
        assert!(!calls.has_room());
        assert!(calls.holds(b"c1", b"t1") && !calls.holds(b"c1", b"t2") && calls.has(b"c1"));
        let mut sent = Vec::new();
        let mut now = 0;
        while now < 5_000 {
            now = calls.next().expect("due").unix_millis();
            if !calls.poll(at(now)).again.is_empty() {
                sent.push(now);
            }
        }
        assert_eq!(sent, [500, 1_500, 3_500, 7_500]);
        calls.acked(b"c1");
        assert!(calls.poll(at(11_500)).again.is_empty(), "acked");
        assert_eq!(calls.next(), Some(at(60_000)));
        assert_eq!(calls.poll(at(60_000)).ended, [b"c1".to_vec()]);
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn a_call_never_acked_is_given_up_after_64_t1() {
        let mut calls = EchoCalls::new(4, Duration::from_secs(60));
        calls.begin(at(0), b"c1", "t1".into(), answer());
        for ms in [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
        ] {
            assert_eq!(calls.next(), Some(at(ms)));
            assert_eq!(calls.poll(at(ms)).again.len(), 1);
        }
        assert_eq!(
            calls.next(),
            Some(at(32_000)),
            "the give-up wakes on its own"
        );
        assert!(calls.poll(at(31_999)).ended.is_empty());
        assert_eq!(calls.poll(at(32_000)).ended, [b"c1".to_vec()]);
        assert!(!calls.end(b"c1"));
    }
}
