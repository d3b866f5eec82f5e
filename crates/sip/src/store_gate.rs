//! What a registrar's 2xx waits for: the store. A REGISTER is acknowledged only for what will
//! outlast a restart (RFC 3261 §10.3 step 8 answers 200 once the bindings are updated; a binding
//! the store never took is gone after a crash). Two rules, both of the server's, none of the
//! shell's:
//!
//! - while the store takes no writes, a 2xx becomes 500 with Retry-After (RFC 3261 §21.5.1,
//!   §20.33): the phone tries again; the binding is kept in memory and saved when the store
//!   recovers;
//! - write-through: a 2xx is held until the store says it has every change made before it
//!   (a mark the shell hands the store after the changes, [`crate::server::Event::Persist`]).

use std::collections::VecDeque;

use crate::message::Message;
use crate::transmit::Transmit;

/// Seconds a phone is asked to wait when the store takes no writes.
const RETRY_AFTER: &str = "30";

/// The answers waiting for the store, and whether it takes writes.
#[derive(Debug)]
pub(crate) struct StoreGate {
    /// False while the store refuses writes.
    writable: bool,
    /// Hold 2xx answers until their changes are stored.
    write_through: bool,
    /// Answers held, with the mark that releases them.
    held: VecDeque<(u64, Transmit)>,
    /// The mark of the answers held since the last [`StoreGate::take_mark`].
    due: Option<u64>,
    /// The last mark given out.
    marks: u64,
}

impl StoreGate {
    pub(crate) fn new() -> Self {
        StoreGate {
            writable: true,
            write_through: false,
            held: VecDeque::new(),
            due: None,
            marks: 0,
        }
    }

    pub(crate) fn set_write_through(&mut self, on: bool) {
        self.write_through = on;
    }

    pub(crate) fn set_writable(&mut self, writable: bool) {
        self.writable = writable;
    }

    /// Whether answers wait for the store.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// What becomes of a registrar's 2xx: sent now (`Some`, a 500 instead when the store takes
    /// no writes, with `true`), or held for the store (`None`).
    pub(crate) fn pass(&mut self, t: Transmit) -> Option<(Transmit, bool)> {
        if !self.writable {
            return Some((unsaved(t), true));
        }
        if self.write_through {
            let seq = *self.due.get_or_insert_with(|| {
                self.marks += 1;
                self.marks
            });
            self.held.push_back((seq, t));
            return None;
        }
        Some((t, false))
    }

    /// The mark to hand the store after the changes gathered so far, if answers wait for it.
    pub(crate) fn take_mark(&mut self) -> Option<u64> {
        self.due.take()
    }

    /// The answers released by mark `seq`: as they were if the store has their changes, else
    /// as 500 (with `true`).
    pub(crate) fn release(&mut self, seq: u64, saved: bool) -> Vec<(Transmit, bool)> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, t)) = self.held.pop_front() {
                out.push(if saved {
                    (t, false)
                } else {
                    (unsaved(t), true)
                });
            }
        }
        out
    }
}

/// The answer instead of a 2xx whose change the store did not take: 500 with Retry-After, to
/// the same request (the 2xx's Via, From, To, Call-ID and CSeq).
fn unsaved(t: Transmit) -> Transmit {
    let bytes = match Message::parse(&t.bytes) {
        Ok(m) => crate::response::response(
            &m,
            500,
            "Server Internal Error",
            "fs",
            &[("Retry-After", RETRY_AFTER)],
        ),
        Err(_) => return t,
    };
    Transmit { bytes, ..t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u32) -> Transmit {
        Transmit {
            bytes: format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{n}\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCall-ID: c{n}\r\nCSeq: {n} REGISTER\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            transport: crate::nat::Transport::Udp,
            from: "192.0.2.10:5060".parse().expect("addr"),
            to: "192.0.2.1:5060".parse().expect("addr"),
        }
    }

    fn code(t: &Transmit) -> &[u8] {
        &t.bytes[8..11]
    }

    #[test]
    fn write_through_holds_until_the_mark_and_a_failed_mark_is_500() {
        let mut g = StoreGate::new();
        assert!(
            g.pass(ok(1)).is_some_and(|(t, _)| code(&t) == b"200"),
            "write-behind: at once"
        );
        g.set_write_through(true);
        assert!(g.pass(ok(2)).is_none() && g.pass(ok(3)).is_none());
        let first = g.take_mark().expect("a mark");
        assert!(g.pass(ok(4)).is_none());
        let second = g.take_mark().expect("a mark");
        assert!(g.take_mark().is_none());
        let out = g.release(first, true);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(t, refused)| code(t) == b"200" && !refused));
        let out = g.release(second, false);
        assert_eq!(code(&out[0].0), b"500");
        assert!(String::from_utf8_lossy(&out[0].0.bytes).contains("\r\nRetry-After: 30\r\n"));
        assert!(!g.holding());
    }

    #[test]
    fn a_store_that_takes_no_writes_turns_a_2xx_into_500() {
        let mut g = StoreGate::new();
        g.set_writable(false);
        let (t, refused) = g.pass(ok(1)).expect("answered at once");
        assert!(refused && code(&t) == b"500");
    }
}
