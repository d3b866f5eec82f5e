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

/// Whether `msg` is for the mirror: its Request-URI's user is `user` (any host: a client that
/// found the server by its name or its address is mirrored all the same).
pub fn is_for(msg: &Message<'_>, user: &str) -> bool {
    !user.is_empty()
        && match msg.start_line() {
            crate::message::StartLine::Request { uri, .. } => uri.user() == Some(user.as_bytes()),
            _ => false,
        }
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
        assert!(is_for(&m, DEFAULT_USER));
        assert!(!is_for(&m, "alice"));
        assert!(!is_for(&m, ""));
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
