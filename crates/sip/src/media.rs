//! The RTP relay as the SIP server sees it: SDP offers and answers (RFC 3264) passing through
//! are handed to a [`MediaRelay`], which returns them rewritten to name its ports, and the calls
//! it relays are deleted when they end. The relay itself lives elsewhere (`farside-media`, on
//! its own thread, or any rtpengine): the server asks it through this trait, as the TURN core
//! asks the shell for sockets through `RelayPorts`, so tests can fake it.
//!
//! Which calls are relayed is [`RelayPolicy`]'s rule, decided on the first INVITE: `nated`
//! relays a call when its caller looks NATed (the INVITE's NAT tests, a private SDP address
//! among them) or its callee registered from behind a NAT (the binding's NAT tests), as
//! Kamailio's stock configuration does with `nat_uac_test` and its registration flag.
//!
//! What is sent to the relay, and when (the ng protocol's commands, as rtpengine's Kamailio
//! module sends them):
//! - `offer`: an INVITE or UPDATE with SDP (a re-INVITE from either side too); for a first
//!   INVITE without SDP (a late offer, RFC 3261 §13.2.1), the 18x or 2xx that carries the
//!   callee's offer;
//! - `answer`: a 18x or 2xx to an offer with SDP; after a late offer, the ACK's SDP;
//! - `delete`: a BYE, a CANCEL of an unanswered call, or a final failure to its first INVITE
//!   leaving Farside (forwarded, a timeout's 408, or Farside's own refusal).
//!
//! A late offer comes from the callee, so its `offer` and the ACK's `answer` name the callee's
//! tag as the offerer's (ng's `from-tag`), as rtpengine expects.
//!
//! A call whose offer carries ICE (`a=ice-ufrag`: a WebRTC phone) is not relayed: its endpoints
//! find their way through NAT themselves (with TURN), and the relay cannot yet take part in ICE
//! or DTLS-SRTP; removing their candidates would break the call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use farside_time::Timestamp;

use crate::header::HeaderName;
use crate::message::{Message, Method, StartLine};

/// When the SIP server relays a call's media (`[rtp] relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayPolicy {
    /// Every call with SDP.
    Always,
    /// Calls whose caller or callee looks NATed (the default).
    #[default]
    Nated,
    /// None: the phones' SDP passes as it came.
    Never,
}

/// One SDP on its way through, as the relay needs it (rtpengine's ng `offer`/`answer` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passing<'a> {
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The From tag of the message: in an answer, the offerer's (ng's `from-tag`).
    pub from_tag: &'a [u8],
    /// The To tag, if the message has one.
    pub to_tag: Option<&'a [u8]>,
    /// The SDP body.
    pub sdp: &'a [u8],
    /// Where the message came from when its sender is the phone itself (ng's
    /// `received-from`, Kamailio's `SIP-source-address`): the relay expects media from that
    /// host when the SDP names a private address. `None` when it came through another proxy.
    pub source: Option<IpAddr>,
}

/// The RTP relay, as the SIP server asks it. A `None` from `offer` or `answer` leaves the SDP as
/// it came (the relay refused or did not answer; the implementation counts and logs why).
pub trait MediaRelay {
    /// An offer: the SDP to pass on in its place, naming the relay's ports.
    fn offer(&mut self, now: Timestamp, sdp: &Passing<'_>) -> Option<Vec<u8>>;
    /// The answer to the last offer in the call.
    fn answer(&mut self, sdp: &Passing<'_>) -> Option<Vec<u8>>;
    /// The call ended: its ports can go.
    fn delete(&mut self, call_id: &[u8]);
    /// An echo call's offer ([`crate::echo`]): the SDP that answers it, naming the relay's
    /// ports the offerer sends to, whose media comes back to it. `None` by default: a relay
    /// without echo, and the echo service answers 503.
    fn echo(&mut self, _now: Timestamp, _offer: &Passing<'_>) -> Option<Vec<u8>> {
        None
    }
}

/// What the relayed calls' bookkeeping holds per call.
#[derive(Debug, Clone, Copy)]
struct Relayed {
    since: Timestamp,
    /// A 2xx to an INVITE was seen: a failure now is a re-INVITE's, not the call's end.
    answered: bool,
    /// The first INVITE had no SDP: the callee's response offers, the ACK answers.
    late: Late,
}

/// Where a call with a late offer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    /// The first INVITE carried its offer.
    No,
    /// No offer yet: the callee's 18x or 2xx with SDP will make it.
    AwaitingOffer,
    /// The callee offered: the caller's ACK answers.
    AwaitingAnswer,
}

/// The calls handed to the relay, by Call-ID: bounded (the oldest is deleted beyond `max`)
/// and aged out after `max_age`, as dialogs are.
#[derive(Debug)]
pub(crate) struct MediaCalls {
    policy: RelayPolicy,
    calls: HashMap<Vec<u8>, Relayed>,
    max: usize,
    max_age: Duration,
}

/// What the relay is asked to do for a message. `reversed`: the offerer is the message's To
/// side (a late offer, made by the callee), so its To tag is the offerer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing.
    None,
    /// Offer its SDP.
    Offer {
        /// The offerer is the To side.
        reversed: bool,
    },
    /// Answer with its SDP.
    Answer {
        /// The offerer is the To side.
        reversed: bool,
    },
    /// Delete the call.
    Delete,
}

/// An offer from the From side.
const OFFER: Step = Step::Offer { reversed: false };

impl MediaCalls {
    pub(crate) fn new(policy: RelayPolicy, max: usize, max_age: Duration) -> Self {
        MediaCalls {
            policy,
            calls: HashMap::new(),
            max,
            max_age,
        }
    }

    /// Calls handed to the relay and not yet ended.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// What a request asks of the relay; `nated` tells (lazily) whether its caller or callee
    /// looks NATed, for a first INVITE under [`RelayPolicy::Nated`].
    pub(crate) fn request(
        &mut self,
        msg: &Message<'_>,
        now: Timestamp,
        nated: impl FnOnce() -> bool,
    ) -> Step {
        let method = msg.method();
        let call_id = msg.call_id();
        if method == Method::INVITE || method == Method::UPDATE {
            let sdp = has_sdp(msg);
            if self.calls.contains_key(call_id) {
                return if sdp { OFFER } else { Step::None };
            }
            let first = method == Method::INVITE && msg.to().tag().is_none();
            let relay = first
                && !(sdp && offers_ice(msg.body()))
                && match self.policy {
                    RelayPolicy::Always => true,
                    RelayPolicy::Nated => nated(),
                    RelayPolicy::Never => false,
                };
            if !relay {
                return Step::None;
            }
            self.make_room();
            self.calls.insert(
                call_id.to_vec(),
                Relayed {
                    since: now,
                    answered: false,
                    late: if sdp { Late::No } else { Late::AwaitingOffer },
                },
            );
            return if sdp { OFFER } else { Step::None };
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return Step::None;
        };
        if method == Method::ACK && call.late == Late::AwaitingAnswer && has_sdp(msg) {
            call.late = Late::No;
            return Step::Answer { reversed: true };
        }
        if method == Method::BYE || (method == Method::CANCEL && !call.answered) {
            self.calls.remove(call_id);
            return Step::Delete;
        }
        Step::None
    }

    /// What a response (arriving, to be forwarded) asks of the relay.
    pub(crate) fn response(&mut self, msg: &Message<'_>) -> Step {
        let StartLine::Response { code, .. } = msg.start_line() else {
            return Step::None;
        };
        let method = msg.cseq().method;
        if method != Method::INVITE && method != Method::UPDATE {
            return Step::None;
        }
        let Some(call) = self.calls.get_mut(msg.call_id()) else {
            return Step::None;
        };
        if method == Method::INVITE && (200..300).contains(&code) {
            call.answered = true;
        }
        if !(180..300).contains(&code) || !has_sdp(msg) {
            return Step::None;
        }
        match call.late {
            // The callee's offer (again, for a retransmitted 2xx: the same SDP comes back).
            Late::AwaitingOffer | Late::AwaitingAnswer => {
                call.late = Late::AwaitingAnswer;
                Step::Offer { reversed: true }
            }
            Late::No => Step::Answer { reversed: false },
        }
    }

    /// A response leaving Farside: a final failure to a call's first INVITE ends the call
    /// (whoever wrote it: the callee, the transaction's timeout, Farside's refusal). Only
    /// responses are looked at, and only while calls are relayed.
    pub(crate) fn leaving(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        if self.calls.is_empty() || !bytes.starts_with(b"SIP/2.0 ") {
            return None;
        }
        let code = bytes.get(8..11)?;
        if code < b"300".as_slice() || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let msg = Message::parse(bytes).ok()?;
        if msg.cseq().method != Method::INVITE {
            return None;
        }
        let call = self.calls.get(msg.call_id())?;
        if call.answered {
            return None;
        }
        self.calls.remove(msg.call_id());
        Some(msg.call_id().to_vec())
    }

    /// Calls older than the age limit, forgotten (the relay's own timers end them too).
    pub(crate) fn expire(&mut self, now: Timestamp) -> Vec<Vec<u8>> {
        let max_age = self.max_age;
        let old: Vec<Vec<u8>> = self
            .calls
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.since) >= max_age)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            self.calls.remove(id);
        }
        old
    }

    /// At most `max` calls: the oldest goes (its relay call stays until the relay's timers).
    fn make_room(&mut self) {
        if self.calls.len() < self.max {
            return;
        }
        if let Some(oldest) = self
            .calls
            .iter()
            .min_by_key(|(_, c)| c.since)
            .map(|(id, _)| id.clone())
        {
            self.calls.remove(&oldest);
        }
    }
}

/// Whether an SDP offer carries ICE (RFC 8839's `a=ice-ufrag`, at session or media level).
fn offers_ice(sdp: &[u8]) -> bool {
    sdp.split(|&b| b == b'\n')
        .any(|line| line.trim_ascii().starts_with(b"a=ice-ufrag:"))
}

/// Whether the message carries an SDP body (RFC 3264 via RFC 3261 §13.2.1).
pub(crate) fn has_sdp(msg: &Message<'_>) -> bool {
    !msg.body().is_empty()
        && msg.value(HeaderName::ContentType).is_some_and(|t| {
            t.trim_ascii()
                .get(..15)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/sdp"))
        })
}

/// What the relay is handed for `msg`'s SDP; `reversed`: the offerer is the To side.
pub(crate) fn passing<'a>(
    msg: &Message<'a>,
    source: Option<IpAddr>,
    reversed: bool,
) -> Passing<'a> {
    let (from, to) = (msg.from().tag(), msg.to().tag());
    let (offerer, other) = if reversed { (to, from) } else { (from, to) };
    Passing {
        call_id: msg.call_id(),
        from_tag: offerer.unwrap_or_default(),
        to_tag: other,
        sdp: msg.body(),
        source,
    }
}

/// `msg` with `body` in place of its own and Content-Length to match (one added if it had
/// none); every other byte is kept.
pub(crate) fn with_body(msg: &Message<'_>, body: &[u8]) -> Vec<u8> {
    let bytes = msg.as_bytes();
    let end = msg.headers_end();
    let mut out = Vec::with_capacity(end + body.len() + 32);
    let length = msg.fields(HeaderName::ContentLength).next();
    match length.and_then(|h| msg.range_of(h.value)) {
        Some(value) => {
            out.extend_from_slice(&bytes[..value.start]);
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(&bytes[value.end..end]);
        }
        None => {
            out.extend_from_slice(&bytes[..end]);
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(call_id: &str, to_tag: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.org>{to_tag}\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_body_is_replaced_and_its_length_follows() {
        let bytes = invite("c1", "", "v=0\r\n");
        let msg = Message::parse(&bytes).expect("parses");
        let out = with_body(&msg, b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
        let again = Message::parse(&out).expect("parses");
        assert_eq!(again.body(), b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
        assert_eq!(
            again.value(HeaderName::ContentLength),
            Some(b"25".as_slice())
        );
        // Everything before the length is the same bytes.
        let cut = bytes
            .windows(15)
            .position(|w| w == b"Content-Length:")
            .expect("a Content-Length");
        assert_eq!(out[..cut], bytes[..cut]);
    }

    #[test]
    fn a_body_without_content_length_gets_one() {
        let bytes =
            b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n";
        let msg = Message::parse(bytes).expect("parses");
        let out = with_body(&msg, b"v=1\r\n");
        let again = Message::parse(&out).expect("parses");
        assert_eq!(again.body(), b"v=1\r\n");
        assert_eq!(
            again.value(HeaderName::ContentLength),
            Some(b"5".as_slice())
        );
    }

    #[test]
    fn only_first_invites_with_sdp_start_a_relayed_call_and_the_policy_decides() {
        let t = Timestamp::EPOCH;
        let day = Duration::from_secs(86_400);
        let first = invite("c1", "", "v=0\r\n");
        let first = Message::parse(&first).expect("parses");
        let mut never = MediaCalls::new(RelayPolicy::Never, 10, day);
        assert_eq!(never.request(&first, t, || true), Step::None);
        let mut nated = MediaCalls::new(RelayPolicy::Nated, 10, day);
        assert_eq!(nated.request(&first, t, || false), Step::None);
        assert_eq!(nated.request(&first, t, || true), OFFER);
        assert_eq!(nated.len(), 1);
        let mut always = MediaCalls::new(RelayPolicy::Always, 10, day);
        assert_eq!(always.request(&first, t, || false), OFFER);
        // A re-INVITE of a call not relayed stays unrelayed; one of a relayed call is an offer.
        let again = invite("c1", ";tag=b1", "v=0\r\n");
        let again = Message::parse(&again).expect("parses");
        assert_eq!(never.request(&again, t, || true), Step::None);
        assert_eq!(always.request(&again, t, || false), OFFER);
        // An offer with ICE (WebRTC) is left to ICE, whatever the policy.
        let webrtc = invite("c1", "", "v=0\r\na=ice-ufrag:Fx1a\r\n");
        let webrtc = Message::parse(&webrtc).expect("parses");
        assert_eq!(
            MediaCalls::new(RelayPolicy::Always, 10, day).request(&webrtc, t, || true),
            Step::None
        );
        // No SDP, no offer.
        let bare = invite("c1", "", "");
        let bare = Message::parse(&bare).expect("parses");
        assert_eq!(
            MediaCalls::new(RelayPolicy::Always, 10, day).request(&bare, t, || true),
            Step::None
        );
    }

    #[test]
    fn a_failure_ends_an_unanswered_call_but_not_an_answered_one() {
        let t = Timestamp::EPOCH;
        let day = Duration::from_secs(86_400);
        let first = invite("c1", "", "v=0\r\n");
        let first = Message::parse(&first).expect("parses");
        let busy = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.org>;tag=b1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut calls = MediaCalls::new(RelayPolicy::Always, 10, day);
        calls.request(&first, t, || true);
        assert_eq!(calls.leaving(busy), Some(b"c1".to_vec()));
        assert_eq!(calls.len(), 0);
        // Answered: a later failure (a refused re-INVITE) leaves the call alone.
        calls.request(&first, t, || true);
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@example.org>;tag=a1\r\nTo: <sip:bob@example.org>;tag=b1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(
            calls.response(&Message::parse(ok).expect("parses")),
            Step::Answer { reversed: false }
        );
        assert_eq!(calls.leaving(busy), None);
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn the_oldest_call_makes_room_and_old_calls_age_out() {
        let t = Timestamp::EPOCH;
        let mut calls = MediaCalls::new(RelayPolicy::Always, 2, Duration::from_secs(60));
        for (i, id) in ["c1", "c2", "c3"].iter().enumerate() {
            let bytes = invite(id, "", "v=0\r\n");
            let msg = Message::parse(&bytes).expect("parses");
            let at = t
                .checked_add(Duration::from_secs(i as u64))
                .expect("in range");
            calls.request(&msg, at, || true);
        }
        assert_eq!(calls.len(), 2);
        let later = t.checked_add(Duration::from_secs(61)).expect("in range");
        assert_eq!(calls.expire(later), vec![b"c2".to_vec()]);
        assert_eq!(calls.len(), 1);
    }
}
