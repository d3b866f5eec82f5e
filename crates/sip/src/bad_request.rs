//! The answer to a request that does not parse (RFC 3261 §8.2.2, §16.3 step 1, §21.4.1): 400
//! with a reason phrase that names the problem, or 505 for another SIP version (§8.2.2.1
//! lists none, §21.5.6 gives the code). It is written from the fields a response must copy
//! (Via, From, To, Call-ID, CSeq), found line by line in what arrived, so that the sender can
//! match it to its transaction; without a Via there is nobody to answer, and an ACK is never
//! answered. What is copied is bounded by what arrived: the answer is never much larger than
//! the request.

use crate::error::ParseError;
use crate::message::Message;
use crate::response::push;

/// Longest value copied into the answer; a longer field is left out.
const MAX_VALUE: usize = 1024;

/// The answer to the request in `bytes` that failed to parse with `error`; `None` when it is
/// not a request, is an ACK, or has no Via to answer along.
pub fn answer(bytes: &[u8], error: ParseError) -> Option<Vec<u8>> {
    let bytes = &bytes[..bytes.len().min(crate::MAX_MESSAGE)];
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let start = lines.next()?;
    let mut parts = start.split(|&b| b == b' ');
    let (method, _uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !crate::scan::token(method)
        || method == b"ACK"
        || !version.starts_with(b"SIP/")
    {
        return None;
    }
    let (code, reason) = match error {
        ParseError::Version => (505, "Version Not Supported".to_owned()),
        e => (400, format!("Bad Request ({e})")),
    };
    let mut vias: Vec<&[u8]> = Vec::new();
    let mut once: [Option<&[u8]>; 4] = [None; 4];
    for line in lines.take(crate::MAX_HEADERS) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty()
            || value.len() > MAX_VALUE
            || value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f)
        {
            continue;
        }
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long.as_bytes())
                || name.eq_ignore_ascii_case(short.as_bytes())
        };
        if is("Via", "v") {
            vias.push(value);
        } else if let Some(i) = ["From", "To", "Call-ID", "CSeq"]
            .iter()
            .zip(["f", "t", "i", "CSeq"])
            .position(|(long, short)| is(long, short))
        {
            once[i].get_or_insert(value);
        }
    }
    if vias.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len().min(4096) + 64);
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
    for v in vias {
        push(&mut out, "Via", v);
    }
    for (name, value) in ["From", "To", "Call-ID", "CSeq"].iter().zip(once) {
        if let Some(v) = value {
            push(&mut out, name, v);
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    // Only an answer that is itself well formed goes out: with a Via, From, To or CSeq that
    // does not parse, the sender could not match it (and a peer's parser would refuse it).
    Message::parse(&out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::StartLine;

    fn status(bytes: &[u8]) -> Option<(u16, String)> {
        let m = Message::parse(bytes).ok()?;
        match m.start_line() {
            StartLine::Response { code, reason } => {
                Some((code, String::from_utf8_lossy(reason).into_owned()))
            }
            StartLine::Request { .. } => None,
        }
    }

    const HEAD: &str = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
f: <sip:a@example.org>;tag=1\r\nTo: <sip:b@example.org>\r\ni: bad-1\r\nCSeq: 3 INVITE\r\n";

    #[test]
    fn a_bad_content_length_gets_400_naming_it_with_the_fields_copied() {
        let req =
            format!("INVITE sip:b@example.org SIP/2.0\r\n{HEAD}Content-Length: 500\r\n\r\nv=0\r\n");
        let err = Message::parse(req.as_bytes()).expect_err("does not parse");
        let out = answer(req.as_bytes(), err).expect("answered");
        let (code, reason) = status(&out).expect("a valid response");
        assert_eq!(code, 400);
        assert!(reason.contains("Content-Length"), "{reason}");
        let m = Message::parse(&out).expect("valid");
        assert_eq!(m.call_id(), b"bad-1");
        assert_eq!(m.cseq().number, 3);
        assert!(out.len() < req.len() + 64, "no larger than needed");
    }

    #[test]
    fn another_version_gets_505() {
        let req = format!("OPTIONS sip:b@example.org SIP/7.0\r\n{HEAD}\r\n");
        let err = Message::parse(req.as_bytes()).expect_err("does not parse");
        assert_eq!(err, ParseError::Version);
        let out = answer(req.as_bytes(), err).expect("answered");
        assert_eq!(status(&out).map(|s| s.0), Some(505));
    }

    #[test]
    fn no_via_no_answer_and_an_ack_is_never_answered() {
        let req = "OPTIONS sip:b@example.org SIP/2.0\r\nCall-ID: x\r\n\r\n";
        assert_eq!(answer(req.as_bytes(), ParseError::HeaderLine), None);
        let ack = format!("ACK sip:b@example.org SIP/2.0\r\n{HEAD}Content-Length: 9\r\n\r\n");
        assert_eq!(answer(ack.as_bytes(), ParseError::BodyTooShort), None);
        let response = format!("SIP/2.0 200 OK\r\n{HEAD}\r\n");
        assert_eq!(answer(response.as_bytes(), ParseError::HeaderLine), None);
        assert_eq!(answer(b"\x16\x03\x01 garbage", ParseError::StartLine), None);
        // A Via that does not parse: an answer copying it would not either.
        let bad_via = HEAD.replace("SIP/2.0/UDP 192.0.2.1:5060", "SIP/2.0/UDP [::1");
        let req = format!("OPTIONS sip:b@example.org SIP/2.0\r\n{bad_via}\r\n");
        let err = Message::parse(req.as_bytes()).expect_err("does not parse");
        assert_eq!(answer(req.as_bytes(), err), None);
    }
}
