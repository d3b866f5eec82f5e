//! Responses a server writes itself (RFC 3261 §8.2.6): the request's Via fields, From, To (with
//! a tag added if it has none), Call-ID and CSeq, copied as they came, then the server's own
//! fields and an empty body.

use crate::header::HeaderName;
use crate::message::Message;

/// A response to `req` with `code` and `reason`, `to_tag` added to To when it has no tag, and
/// `extra` fields (name, value) before Content-Length.
pub fn response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    response_via(req, None, code, reason, to_tag, extra)
}

/// [`response`], with `top_via` (when given) as the value of the first Via field: the
/// request's with `received` and `rport` added ([`crate::nat::fixed_top_via`]), for a server
/// that answers without rewriting the whole request first.
pub fn response_via(
    req: &Message<'_>,
    top_via: Option<&[u8]>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    response_body(req, top_via, code, reason, to_tag, extra, None)
}

/// [`response_via`] with a body: `(content type, bytes)`.
pub(crate) fn response_body(
    req: &Message<'_>,
    top_via: Option<&[u8]>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"SIP/2.0 ");
    let mut status = crate::scan::Short::new();
    crate::scan::push_number(&mut status, u64::from(code));
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (i, h) in req.fields(HeaderName::Via).enumerate() {
        match top_via {
            Some(v) if i == 0 => push(&mut out, "Via", v),
            _ => push(&mut out, "Via", h.value),
        }
    }
    if let Some(from) = req.value(HeaderName::From) {
        push(&mut out, "From", from);
    }
    if let Some(to) = req.value(HeaderName::To) {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        if !req.to().params().has("tag") && code > 100 {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    push(&mut out, "Call-ID", req.call_id());
    if let Some(cseq) = req.value(HeaderName::CSeq) {
        push(&mut out, "CSeq", cseq);
    }
    for (name, value) in extra {
        push(&mut out, name, value.as_bytes());
    }
    match body {
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        Some((content_type, body)) => {
            push(&mut out, "Content-Type", content_type.as_bytes());
            let mut length = crate::scan::Short::new();
            crate::scan::push_number(&mut length, body.len() as u64);
            push(&mut out, "Content-Length", length.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
    }
    out
}

/// Appends the header field `name: value` and its CRLF.
pub(crate) fn push(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::StartLine;

    #[test]
    fn copies_what_it_must_and_tags_to() {
        let req = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=1.2.3.4;rport=9\r\n\
v: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\nf: <sip:c@d>;tag=x\r\nt: <sip:a@b>\r\ni: abc\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(req).expect("parses");
        let out = response(&m, 200, "OK", "srv1", &[("Allow", "INVITE, ACK")]);
        let r = Message::parse(&out).expect("a valid response");
        assert_eq!(
            r.start_line(),
            StartLine::Response {
                code: 200,
                reason: b"OK"
            }
        );
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.via().rport(), Some(Some(&b"9"[..])));
        assert_eq!(r.to().tag(), Some(&b"srv1"[..]));
        assert_eq!(r.from().tag(), Some(&b"x"[..]));
        assert_eq!((r.call_id(), r.cseq().number), (&b"abc"[..], 7));
        assert_eq!(r.value_of("allow"), Some(&b"INVITE, ACK"[..]));
    }
}
