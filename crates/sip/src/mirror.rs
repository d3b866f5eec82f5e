//! The mirror service: a request for the reserved user (`sip.mirror_user`, `farside-mirror` by
//! default) is answered with exactly what arrived, so that a client on the phone's network can
//! compare it with what it sent and name every line a SIP ALG (or anything else on the way)
//! changed.
//!
//! The copy travels base64-encoded (`Content-Type: application/x-farside-mirror`): a SIP ALG
//! rewrites addresses wherever it finds a Via, Contact or SDP line in a message, body included,
//! and would undo on the way back the very change the client is looking for.
//!
//! An INVITE (the only request whose SDP ALGs rewrite) gets `488 Mirrored`, so that no dialog
//! begins; its ACK is dropped. Any other request gets `200 Mirrored`. Answers over UDP count
//! against `sip.refusals_per_second` per source, as every answer Farside writes itself does: the
//! copy is 4/3 of the request, plus headers. Requests of more than [`MAX_MIRRORED`] bytes get
//! `513 Message Too Large` (RFC 3261 §21.5.14).

use base64ct::{Base64, Encoding as _};

use crate::message::{Message, Method};

/// The largest request mirrored: its answer (the copy in base64, 4/3 of it, and the headers)
/// stays near 4 KiB, which UDP carries in a few IP fragments.
pub const MAX_MIRRORED: usize = 2_900;

/// The content type of a mirrored copy.
pub const CONTENT_TYPE: &str = "application/x-farside-mirror";

/// The reserved user by default.
pub const DEFAULT_USER: &str = "farside-mirror";

/// What the mirror answers `msg` (which arrived as `msg.as_bytes()`) with, its Via fixed to
/// `top_via`; `None` for an ACK (of a 488 the mirror sent).
pub fn answer(msg: &Message<'_>, method: Method<'_>, top_via: Option<&[u8]>) -> Option<Vec<u8>> {
    if method == Method::ACK {
        return None;
    }
    let arrived = msg.as_bytes();
    if arrived.len() > MAX_MIRRORED {
        return Some(crate::response::response_via(
            msg,
            top_via,
            513,
            "Message Too Large",
            "fsm",
            &[],
        ));
    }
    let (code, reason) = match method == Method::INVITE {
        true => (488, "Mirrored"),
        false => (200, "Mirrored"),
    };
    let copy = Base64::encode_string(arrived);
    Some(crate::response::response_body(
        msg,
        top_via,
        code,
        reason,
        "fsm",
        &[],
        Some((CONTENT_TYPE, copy.as_bytes())),
    ))
}

/// The bytes a mirrored answer carries, decoded: what arrived at the server. `None` when
/// `answer` is not a mirror's answer.
pub fn arrived(answer: &Message<'_>) -> Option<Vec<u8>> {
    let content_type = answer.value(crate::header::HeaderName::ContentType)?;
    if !crate::scan::trim(content_type).eq_ignore_ascii_case(CONTENT_TYPE.as_bytes()) {
        return None;
    }
    let body = std::str::from_utf8(crate::scan::trim(answer.body())).ok()?;
    Base64::decode_vec(body).ok()
}

/// One line a path changed: a header field or an SDP line, as sent and as it arrived (`None`:
/// it was not there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The header field's name as sent (or as it arrived, when added), or the SDP line's type
    /// (`o=`, `c=`, `m=`, ...); the start line is `request line`.
    pub field: String,
    /// The line as sent.
    pub sent: Option<String>,
    /// The line as it arrived.
    pub arrived: Option<String>,
}

/// What changed between the message `sent` and what `arrived` (a mirror's copy): the start
/// line, each header field (the n-th of a name against the n-th of that name, compact forms
/// counted with their full ones), and each SDP line of the body (by position within its type).
/// Empty when the two are the same bytes.
pub fn diff(sent: &[u8], arrived: &[u8]) -> Vec<Change> {
    let mut changes = Vec::new();
    if sent == arrived {
        return changes;
    }
    let (sent_head, sent_body) = split(sent);
    let (arrived_head, arrived_body) = split(arrived);
    let line = |l: &str| Some(l.to_owned());
    if sent_head.first() != arrived_head.first() {
        changes.push(Change {
            field: "request line".into(),
            sent: sent_head.first().and_then(|l| line(l)),
            arrived: arrived_head.first().and_then(|l| line(l)),
        });
    }
    let key = |l: &str| -> String {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "v" => "via",
            "m" => "contact",
            "f" => "from",
            "t" => "to",
            "i" => "call-id",
            "l" => "content-length",
            "c" => "content-type",
            "k" => "supported",
            other => other,
        }
        .to_owned()
    };
    pair(
        sent_head.get(1..).unwrap_or(&[]),
        arrived_head.get(1..).unwrap_or(&[]),
        key,
        |l| l.split(':').next().unwrap_or("").trim().to_owned(),
        &mut changes,
    );
    let sdp_type = |l: &str| l.get(..2).unwrap_or(l).to_owned();
    pair(&sent_body, &arrived_body, sdp_type, sdp_type, &mut changes);
    changes
}

/// The start line and header lines, and the body's lines, of a message's text.
fn split(message: &[u8]) -> (Vec<String>, Vec<String>) {
    let text = String::from_utf8_lossy(message);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let lines = |t: &str| -> Vec<String> {
        t.split('\n')
            .map(|l| l.trim_end_matches('\r').to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    (lines(head), lines(body))
}

/// Pairs the lines of `sent` and `arrived` by `key` and position within it, and records each
/// pair that differs (named by `name`) and each line on one side only.
fn pair(
    sent: &[String],
    arrived: &[String],
    key: impl Fn(&str) -> String,
    name: impl Fn(&str) -> String,
    changes: &mut Vec<Change>,
) {
    let mut used = vec![false; arrived.len()];
    let mut seen: Vec<(String, usize)> = Vec::new();
    for s in sent {
        let k = key(s);
        let n = match seen.iter_mut().find(|(x, _)| *x == k) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((k.clone(), 0));
                0
            }
        };
        let twin = arrived
            .iter()
            .enumerate()
            .filter(|(_, a)| key(a) == k)
            .nth(n);
        match twin {
            Some((i, a)) => {
                used[i] = true;
                if a != s {
                    changes.push(Change {
                        field: name(s),
                        sent: Some(s.clone()),
                        arrived: Some(a.clone()),
                    });
                }
            }
            None => changes.push(Change {
                field: name(s),
                sent: Some(s.clone()),
                arrived: None,
            }),
        }
    }
    for (a, used) in arrived.iter().zip(used) {
        if !used {
            changes.push(Change {
                field: name(a),
                sent: None,
                arrived: Some(a.clone()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:farside-mirror@203.0.113.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.16:5070;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:doctor@example.org>;tag=1\r\nTo: <sip:farside-mirror@203.0.113.10>\r\nCall-ID: m1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:doctor@198.51.100.16:5070>\r\nContent-Type: application/sdp\r\n\
Content-Length: 29\r\n\r\nv=0\r\nc=IN IP4 198.51.100.16\r\n";

    #[test]
    fn what_arrived_comes_back_whole_and_an_invite_starts_no_dialog() {
        let m = Message::parse(INVITE.as_bytes()).expect("parses");
        assert!(m.is_for_user(DEFAULT_USER));
        assert!(!m.is_for_user("alice"));
        assert!(!m.is_for_user(""));
        let answer = answer(&m, Method::INVITE, None).expect("an answer");
        let a = Message::parse(&answer).expect("the answer parses");
        assert!(answer.starts_with(b"SIP/2.0 488 Mirrored\r\n"));
        assert_eq!(arrived(&a).as_deref(), Some(INVITE.as_bytes()));
        // No address of the copy is readable in the answer: nothing on the way can rewrite it.
        assert_eq!(
            String::from_utf8_lossy(a.body())
                .matches("198.51.100.16")
                .count(),
            0
        );
        let options = INVITE.replace("INVITE", "OPTIONS");
        let m = Message::parse(options.as_bytes()).expect("parses");
        let answer = super::answer(&m, Method::OPTIONS, None).expect("an answer");
        assert!(answer.starts_with(b"SIP/2.0 200 Mirrored\r\n"));
        let ack = INVITE.replace("INVITE", "ACK");
        let m = Message::parse(ack.as_bytes()).expect("parses");
        assert_eq!(super::answer(&m, Method::ACK, None), None);
    }

    #[test]
    fn the_diff_names_each_changed_header_and_sdp_line() {
        let sent = INVITE.replace("198.51.100.16", "192.168.6.10");
        assert_eq!(diff(sent.as_bytes(), sent.as_bytes()), []);
        // What netfilter's SIP helper does: Via, Contact and c= rewritten, a header added.
        let arrived = INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nX-Added: 1\r\n");
        let changes = diff(sent.as_bytes(), arrived.as_bytes());
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["Via", "Contact", "X-Added", "c="], "{changes:?}");
        assert_eq!(
            changes[0].arrived.as_deref(),
            Some("Via: SIP/2.0/UDP 198.51.100.16:5070;branch=z9hG4bK1;rport")
        );
        assert_eq!(changes[2].sent, None);
        // A compact form counts as its full name; a line removed is named too.
        let compact = sent
            .replace("Contact:", "m:")
            .replace("c=IN IP4 192.168.6.10\r\n", "");
        let changes = diff(sent.as_bytes(), compact.as_bytes());
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["Contact", "c="], "{changes:?}");
        assert_eq!(changes[1].arrived, None);
        // Arbitrary bytes: no panic.
        let _ = diff(b"\xff\r\n\r\n", b"");
    }

    #[test]
    fn a_request_too_large_to_mirror_gets_513() {
        let big = INVITE.replace(
            "Max-Forwards: 70\r\n",
            &format!(
                "Max-Forwards: 70\r\nX-Pad: {}\r\n",
                "a".repeat(MAX_MIRRORED)
            ),
        );
        let m = Message::parse(big.as_bytes()).expect("parses");
        let answer = answer(&m, Method::INVITE, None).expect("an answer");
        assert!(answer.starts_with(b"SIP/2.0 513 Message Too Large\r\n"));
    }
}
