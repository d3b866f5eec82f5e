//! Dialogs seen through the proxy, for counting (RFC 3261 §12): a 2xx to an INVITE starts one,
//! a 2xx to its BYE ends it. A stateless proxy sees responses more than once (retransmitted
//! 200s), so dialogs are kept by their id (Call-ID and the two tags) to count each once. The
//! table is bounded: a dialog whose BYE was never seen is forgotten after `max_age`, and the
//! oldest goes when `max` are held.

use std::time::Duration;

use farside_time::Timestamp;

use std::collections::{HashMap, VecDeque};

use crate::message::{Message, Method, StartLine};

/// What a response did to the dialog table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogEvent {
    /// A new dialog (first 2xx to an INVITE).
    Started,
    /// A dialog ended (2xx to a BYE of a dialog we held).
    Ended,
}

/// The dialogs a proxy has seen established and not yet ended.
#[derive(Debug)]
pub struct Dialogs {
    live: HashMap<u64, Timestamp>,
    order: VecDeque<(u64, Timestamp)>,
    max: usize,
    max_age: Duration,
    key: u64,
}

impl Dialogs {
    /// At most `max` dialogs, each forgotten `max_age` after it began; `key` (random) salts the
    /// ids.
    pub fn new(max: usize, max_age: Duration, key: u64) -> Self {
        Dialogs {
            live: HashMap::new(),
            order: VecDeque::new(),
            max,
            max_age,
            key,
        }
    }

    /// Dialogs held now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Looks at a response the proxy forwards, at `now`.
    pub fn response(&mut self, msg: &Message<'_>, now: Timestamp) -> Option<DialogEvent> {
        let StartLine::Response { code, .. } = msg.start_line() else {
            return None;
        };
        if !(200..300).contains(&code) {
            return None;
        }
        let method = msg.cseq().method;
        let id = self.id(msg)?;
        self.expire(now);
        if method == Method::INVITE {
            if self.live.contains_key(&id) {
                return None;
            }
            if self.live.len() >= self.max
                && let Some((old, _)) = self.order.pop_front()
            {
                self.live.remove(&old);
            }
            self.live.insert(id, now);
            self.order.push_back((id, now));
            Some(DialogEvent::Started)
        } else if method == Method::BYE {
            self.live.remove(&id).map(|_| DialogEvent::Ended)
        } else {
            None
        }
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some(&(id, at)) = self.order.front() {
            let gone = self.live.get(&id) != Some(&at);
            if !gone && now.duration_since(at) < self.max_age {
                break;
            }
            self.order.pop_front();
            if !gone {
                self.live.remove(&id);
            }
        }
    }

    /// The dialog id, the same whichever side sent the request (tags taken in order).
    fn id(&self, msg: &Message<'_>) -> Option<u64> {
        let call_id = msg.call_id();
        let (a, b) = (msg.from().tag()?, msg.to().tag()?);
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        Some(crate::scan::hash64(self.key, &[call_id, a, b]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(cseq: &str, from_tag: &str, to_tag: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n\
From: <sip:a@example.org>;tag={from_tag}\r\nTo: <sip:b@example.org>;tag={to_tag}\r\n\
Call-ID: c1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_dialog_counts_once_and_ends_with_its_bye_from_either_side() {
        let mut d = Dialogs::new(10, Duration::from_secs(3600), 1);
        let r = |d: &mut Dialogs, b: &[u8], now| {
            d.response(
                &Message::parse(b).expect("ok"),
                Timestamp::from_unix_secs(now),
            )
        };
        assert_eq!(
            r(&mut d, &ok("1 INVITE", "a", "b"), 0),
            Some(DialogEvent::Started)
        );
        assert_eq!(
            r(&mut d, &ok("1 INVITE", "a", "b"), 1),
            None,
            "a retransmitted 200"
        );
        assert_eq!(d.len(), 1);
        // The callee's BYE: its From tag is the dialog's To tag.
        assert_eq!(
            r(&mut d, &ok("1 BYE", "b", "a"), 5),
            Some(DialogEvent::Ended)
        );
        assert_eq!(r(&mut d, &ok("1 BYE", "b", "a"), 5), None);
        assert!(d.is_empty());
    }

    #[test]
    fn the_table_is_bounded_in_size_and_age() {
        let mut d = Dialogs::new(2, Duration::from_secs(100), 1);
        for (i, tag) in ["x", "y", "z"].into_iter().enumerate() {
            let b = ok("1 INVITE", "a", tag);
            d.response(
                &Message::parse(&b).expect("ok"),
                Timestamp::from_unix_secs(i as u64),
            );
        }
        assert_eq!(d.len(), 2, "the oldest went");
        let b = ok("1 INVITE", "a", "w");
        d.response(
            &Message::parse(&b).expect("ok"),
            Timestamp::from_unix_secs(500),
        );
        assert_eq!(d.len(), 1, "the others aged out");
    }
}
