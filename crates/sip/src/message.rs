//! A SIP message (RFC 3261 §7): the start line, an index of header fields, the body.

use std::ops::Range;

use crate::error::ParseError;
use crate::header::HeaderName;
use crate::name_addr::NameAddr;
use crate::scan::{number, split_top, token, trim};
use crate::uri::Uri;
use crate::via::Via;
use crate::{MAX_HEADERS, MAX_MESSAGE};

/// A request method (RFC 3261 §7.1: case-sensitive tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method<'a>(pub &'a [u8]);

impl Method<'_> {
    /// INVITE.
    pub const INVITE: Method<'static> = Method(b"INVITE");
    /// ACK.
    pub const ACK: Method<'static> = Method(b"ACK");
    /// CANCEL.
    pub const CANCEL: Method<'static> = Method(b"CANCEL");
    /// BYE.
    pub const BYE: Method<'static> = Method(b"BYE");
    /// REGISTER.
    pub const REGISTER: Method<'static> = Method(b"REGISTER");
    /// OPTIONS.
    pub const OPTIONS: Method<'static> = Method(b"OPTIONS");
    /// UPDATE (RFC 3311).
    pub const UPDATE: Method<'static> = Method(b"UPDATE");
}

/// The first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI.
        uri: Uri<'a>,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// 100 to 699.
        code: u16,
        /// The reason phrase, possibly empty.
        reason: &'a [u8],
    },
}

/// One header field: its name and its value (white space around it trimmed; a folded value
/// keeps its inner line breaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name, if one Farside reads.
    pub name: HeaderName,
    /// The name as written.
    pub raw_name: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// The whole field in the message, from the name to the end of its last line's line
    /// break (for removing or replacing it).
    pub line: Range<usize>,
}

/// CSeq: a sequence number and a method (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Less than 2^31.
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

/// A parsed message, borrowing the bytes it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    headers: Vec<Header<'a>>,
    /// Where the empty line after the headers begins.
    headers_end: usize,
    body: Range<usize>,
    via: Via<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    cseq: CSeq<'a>,
    /// The Contact, when there is exactly one (a phone's usual REGISTER or INVITE): parsed
    /// once, while checking, for every reader after.
    contact: Option<NameAddr<'a>>,
}

impl<'a> Message<'a> {
    /// Parses and checks a whole message (one datagram, or one frame of a stream).
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLong);
        }
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        let mut pos = 0;
        while buf[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let (line, next) = line_at(buf, pos).ok_or(ParseError::StartLine)?;
        let start = start_line(&buf[line.clone()])?;
        pos = next;
        let mut headers: Vec<Header<'a>> = Vec::with_capacity(16);
        let headers_end = loop {
            let (line, next) = line_at(buf, pos).ok_or(ParseError::NoEndOfHeaders)?;
            if line.is_empty() {
                break pos;
            }
            let text = &buf[line.clone()];
            if matches!(text.first(), Some(b' ' | b'\t')) {
                // A folded line continues the previous field's value (RFC 3261 §7.3.1).
                let h = headers.last_mut().ok_or(ParseError::HeaderLine)?;
                let value_start = h.value.as_ptr() as usize - buf.as_ptr() as usize;
                let value_start = if h.value.is_empty() {
                    line.start
                } else {
                    value_start
                };
                h.value = trim(&buf[value_start..line.end]);
                h.line.end = next;
            } else {
                if headers.len() == MAX_HEADERS {
                    return Err(ParseError::TooManyHeaders);
                }
                let colon = memchr::memchr(b':', text).ok_or(ParseError::HeaderLine)?;
                let raw_name = trim(&text[..colon]);
                if !token(raw_name) || text[..colon].first().is_some_and(|&b| b == b' ') {
                    return Err(ParseError::HeaderLine);
                }
                headers.push(Header {
                    name: HeaderName::of(raw_name),
                    raw_name,
                    value: trim(&text[colon + 1..]),
                    line: line.start..next,
                });
            }
            pos = next;
        };
        let (_, body_start) = line_at(buf, headers_end).ok_or(ParseError::NoEndOfHeaders)?;
        let mut body = body_start..buf.len();
        let c = check(&start, &headers, &mut body)?;
        Ok(Message {
            buf,
            start,
            headers,
            headers_end,
            body,
            via: c.via,
            from: c.from,
            to: c.to,
            cseq: c.cseq,
            contact: c.contact,
        })
    }

    /// The bytes it was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'a> {
        self.start
    }

    /// The method of a request; of a response, its CSeq's.
    pub fn method(&self) -> Method<'a> {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self.cseq.method,
        }
    }

    /// Whether it is a request whose Request-URI's user is `user` (not empty), at any host: a
    /// service's reserved user (the mirror, the echo) whether the client found the server by
    /// its name or its address.
    pub fn is_for_user(&self, user: &str) -> bool {
        !user.is_empty()
            && matches!(self.start, StartLine::Request { uri, .. } if uri.user() == Some(user.as_bytes()))
    }

    /// Whether it is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The fields named `name`, in order.
    pub fn fields(&self, name: HeaderName) -> impl Iterator<Item = &Header<'a>> {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The value of the first field named `name`.
    pub fn value(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.fields(name).next().map(|h| h.value)
    }

    /// The first field whose name is `name` (any field, by its name as written; case
    /// insensitive).
    pub fn value_of(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.raw_name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }

    /// Every item of the list fields named `name` (Via, Contact, Route, ...), across lines.
    pub fn items(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.fields(name)
            .flat_map(|h| split_top(h.value, b',').into_iter().flatten())
            .map(trim)
    }

    /// Every Via, top first (checked when parsed).
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        self.items(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
    }

    /// The top Via (every message has one).
    pub fn via(&self) -> Via<'a> {
        self.via
    }

    /// From.
    pub fn from(&self) -> NameAddr<'a> {
        self.from
    }

    /// To.
    pub fn to(&self) -> NameAddr<'a> {
        self.to
    }

    /// Call-ID.
    pub fn call_id(&self) -> &'a [u8] {
        self.value(HeaderName::CallId).unwrap_or_default()
    }

    /// CSeq.
    pub fn cseq(&self) -> CSeq<'a> {
        self.cseq
    }

    /// Contact values (checked when parsed); none for `Contact: *`.
    pub fn contacts(&self) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        // One Contact was kept parsed; several are parsed as they are read.
        let several = self
            .contact
            .is_none()
            .then(|| {
                self.items(HeaderName::Contact)
                    .filter_map(|c| NameAddr::parse(c).ok())
            })
            .into_iter()
            .flatten();
        self.contact.into_iter().chain(several)
    }

    /// How many Contact values there are (`*` counts as one).
    pub fn contact_count(&self) -> usize {
        match self.contact {
            Some(_) => 1,
            None => self.items(HeaderName::Contact).count(),
        }
    }

    /// Whether Contact is `*` (a REGISTER removing every binding).
    pub fn contact_is_star(&self) -> bool {
        self.value(HeaderName::Contact) == Some(b"*")
    }

    /// Route, Record-Route or Path values, in order.
    pub fn routes(&self, name: HeaderName) -> impl Iterator<Item = NameAddr<'a>> + '_ {
        self.items(name).filter_map(|r| NameAddr::parse(r).ok())
    }

    /// Expires, if present and a number (all digits; more than 2^32 - 1 is capped there).
    pub fn expires(&self) -> Option<u32> {
        let v = self.value(HeaderName::Expires)?;
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(number(v, 10).map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Max-Forwards (checked when parsed).
    pub fn max_forwards(&self) -> Option<u8> {
        self.value(HeaderName::MaxForwards)
            .and_then(|v| number(v, 10))
            .and_then(|n| u8::try_from(n).ok())
    }

    /// The option tags of Supported, Require or Proxy-Require.
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.items(name).filter(|t| !t.is_empty())
    }

    /// The body (as long as Content-Length says, or to the end when it is absent).
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body.clone()]
    }

    /// Where the empty line after the headers starts: new header fields go here.
    pub fn headers_end(&self) -> usize {
        self.headers_end
    }

    /// Where `part` (a slice of this message, as accessors return) lies in it.
    pub fn range_of(&self, part: &[u8]) -> Option<Range<usize>> {
        let start = (part.as_ptr() as usize).checked_sub(self.buf.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= self.buf.len()).then_some(start..end)
    }
}

/// What the checks found, kept for the accessors.
struct Checked<'a> {
    via: Via<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    cseq: CSeq<'a>,
    contact: Option<NameAddr<'a>>,
}

/// RFC 3261's syntax on what every proxy relies on (§8.1.1, §16.3, §20); trims the body to
/// Content-Length.
fn check<'a>(
    start: &StartLine<'a>,
    headers: &[Header<'a>],
    body: &mut Range<usize>,
) -> Result<Checked<'a>, ParseError> {
    let fields = |name| headers.iter().filter(move |h: &&Header<'a>| h.name == name);
    let once = |name| -> Result<&'a [u8], ParseError> {
        let mut f = fields(name);
        match (f.next(), f.next()) {
            (Some(h), None) => Ok(h.value),
            _ => Err(ParseError::MissingOrRepeated(name)),
        }
    };
    let at_most_once = |name| -> Result<Option<&'a [u8]>, ParseError> {
        let mut f = fields(name);
        match (f.next(), f.next()) {
            (h, None) => Ok(h.map(|h| h.value)),
            _ => Err(ParseError::MissingOrRepeated(name)),
        }
    };
    let bad = ParseError::BadValue;
    // Every item of a list field must parse as `parse` does.
    let each = |name, parse: &dyn Fn(&'a [u8]) -> bool| -> Result<(), ParseError> {
        for h in fields(name) {
            for item in split_top(h.value, b',').ok_or(bad(name))? {
                if !parse(item) {
                    return Err(bad(name));
                }
            }
        }
        Ok(())
    };
    // Every Via must parse; the top one is kept.
    let mut via = None;
    for h in fields(HeaderName::Via) {
        for item in split_top(h.value, b',').ok_or(bad(HeaderName::Via))? {
            let v = Via::parse(item).map_err(|_| bad(HeaderName::Via))?;
            via.get_or_insert(v);
        }
    }
    let via = via.ok_or(ParseError::MissingOrRepeated(HeaderName::Via))?;
    let from = NameAddr::parse(once(HeaderName::From)?).map_err(|_| bad(HeaderName::From))?;
    let to = NameAddr::parse(once(HeaderName::To)?).map_err(|_| bad(HeaderName::To))?;
    let call_id = once(HeaderName::CallId)?;
    if call_id.is_empty() || !call_id.iter().all(|&b| b > b' ' && b < 0x7F) {
        return Err(bad(HeaderName::CallId));
    }
    let cseq = cseq(once(HeaderName::CSeq)?).ok_or(bad(HeaderName::CSeq))?;
    if let StartLine::Request { method, .. } = start
        && *method != cseq.method
    {
        return Err(ParseError::CSeqMismatch);
    }
    if let Some(mf) = at_most_once(HeaderName::MaxForwards)?
        && number(mf, 10).is_none_or(|n| n > 255)
    {
        return Err(bad(HeaderName::MaxForwards));
    }
    // An odd Expires is not a reason to drop a message: readers treat it as absent, and one
    // too large is capped (RFC 3261 §20.19).
    at_most_once(HeaderName::Expires)?;
    let star = fields(HeaderName::Contact).any(|h| h.value == b"*");
    if star && fields(HeaderName::Contact).count() > 1 {
        return Err(bad(HeaderName::Contact));
    }
    let mut contact = None;
    if !star {
        let mut n = 0;
        for h in fields(HeaderName::Contact) {
            for item in split_top(h.value, b',').ok_or(bad(HeaderName::Contact))? {
                let c = NameAddr::parse(item).map_err(|_| bad(HeaderName::Contact))?;
                n += 1;
                contact = (n == 1).then_some(c);
            }
        }
    }
    for name in [HeaderName::Route, HeaderName::RecordRoute, HeaderName::Path] {
        each(name, &|r| NameAddr::parse(r).is_ok())?;
    }
    // Date is an RFC 1123 date in GMT (RFC 3261 §20.17); Farside reads no other field of it.
    let date = headers
        .iter()
        .filter(|h| h.raw_name.eq_ignore_ascii_case(b"Date"));
    for h in date {
        if !h.value.ends_with(b" GMT") {
            return Err(bad(HeaderName::Other));
        }
    }
    // Content-Length: the body is that long; extra bytes (UDP) are ignored (§18.3).
    if let Some(cl) = at_most_once(HeaderName::ContentLength)? {
        let n = number(cl, 10).ok_or(bad(HeaderName::ContentLength))?;
        let n = usize::try_from(n).map_err(|_| ParseError::BodyTooShort)?;
        if n > body.len() {
            return Err(ParseError::BodyTooShort);
        }
        body.end = body.start + n;
    }
    Ok(Checked {
        via,
        from,
        to,
        cseq,
        contact,
    })
}

/// The line starting at `pos`: its content (without the line break) and where the next line
/// starts. A line ends with CRLF, or a bare LF (accepted, as most stacks do).
fn line_at(buf: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let rest = buf.get(pos..)?;
    let lf = memchr::memchr(b'\n', rest)?;
    let end = if lf > 0 && rest[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some((pos..pos + end, pos + lf + 1))
}

fn start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::StartLine);
    };
    if is_version(a) {
        // Status-Line.
        if a != b"SIP/2.0" && !a.eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::Version);
        }
        let code = number(b, 3)
            .filter(|c| (100..=699).contains(c))
            .ok_or(ParseError::StartLine)?;
        if c.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(ParseError::StartLine);
        }
        return Ok(StartLine::Response {
            code: code as u16,
            reason: c,
        });
    }
    // Request-Line: exactly one space between the three parts.
    if !token(a) || !is_version(c) {
        return Err(ParseError::StartLine);
    }
    if !c.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(ParseError::Version);
    }
    let uri = Uri::parse(b).map_err(|_| ParseError::Uri)?;
    // Headers belong in a URI one sends a request to, not in a Request-URI (RFC 3261 §19.1.5).
    if uri.is_sip() && uri.headers().is_some() {
        return Err(ParseError::Uri);
    }
    Ok(StartLine::Request {
        method: Method(a),
        uri,
    })
}

/// `SIP/1*DIGIT.1*DIGIT`.
fn is_version(s: &[u8]) -> bool {
    let Some(rest) = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .map(|_| &s[4..])
    else {
        return false;
    };
    let mut it = rest.splitn(2, |&b| b == b'.');
    matches!(
        (it.next(), it.next()),
        (Some(maj), Some(min)) if !maj.is_empty() && !min.is_empty()
            && maj.iter().chain(min).all(u8::is_ascii_digit)
    )
}

/// `1*DIGIT LWS Method`, the number below 2^31 (RFC 3261 §8.1.1.5).
fn cseq(v: &[u8]) -> Option<CSeq<'_>> {
    let split = v
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    let n = number(&v[..split], 10).filter(|&n| n < 1 << 31)?;
    let method = trim(&v[split..]);
    token(method).then_some(CSeq {
        number: n as u32,
        method: Method(method),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
v: SIP/2.0/TCP proxy.atlanta.com;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK0\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.168.1.20:5060;ob>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n\
Subject: folded\r\n  across lines\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\nextra";

    #[test]
    fn a_request_and_its_fields() {
        let m = Message::parse(INVITE).expect("parses");
        let StartLine::Request { method, uri } = m.start_line() else {
            panic!("a request")
        };
        assert_eq!(method, Method::INVITE);
        assert_eq!(uri.host(), b"biloxi.com");
        let vias: Vec<_> = m.vias().map(|v| v.host()).collect();
        assert_eq!(
            vias,
            [&b"pc33.atlanta.com"[..], b"proxy.atlanta.com", b"10.0.0.1"]
        );
        assert_eq!(m.via().branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(m.from().tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.to().tag(), None);
        assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.com");
        assert_eq!((m.cseq().number, m.cseq().method), (314159, Method::INVITE));
        assert_eq!(m.max_forwards(), Some(70));
        let c = m.contacts().next().expect("a Contact");
        assert_eq!(c.uri().host(), b"192.168.1.20");
        assert!(c.uri().params().has("ob"));
        assert_eq!(c.params().get("reg-id"), Some(Some(&b"1"[..])));
        assert_eq!(
            m.value_of("subject"),
            Some(&b"folded\r\n  across lines"[..])
        );
        // Content-Length cuts the body; the extra bytes of a datagram are ignored.
        assert_eq!(m.body(), b"v=0\n");
        let from = m.value(HeaderName::From).expect("From");
        let r = m.range_of(from).expect("inside");
        assert_eq!(&INVITE[r], from);
    }

    #[test]
    fn a_response() {
        let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx;received=1.2.3.4;rport=5\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n\
Contact: <sip:a@1.2.3.4:5>;expires=3600\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(r).expect("parses");
        assert_eq!(
            m.start_line(),
            StartLine::Response {
                code: 200,
                reason: b"OK"
            }
        );
        assert_eq!(m.method(), Method::REGISTER);
        assert_eq!(m.via().rport(), Some(Some(&b"5"[..])));
    }

    #[test]
    fn refusals() {
        let good = std::str::from_utf8(INVITE).expect("ascii");
        let cases: &[(&str, &str, ParseError)] = &[
            (
                "CSeq: 314159 INVITE",
                "CSeq: 314159 ACK",
                ParseError::CSeqMismatch,
            ),
            (
                "CSeq: 314159 INVITE",
                "CSeq: 2147483648 INVITE",
                ParseError::BadValue(HeaderName::CSeq),
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: 256",
                ParseError::BadValue(HeaderName::MaxForwards),
            ),
            (
                "Content-Length: 4",
                "Content-Length: 400",
                ParseError::BodyTooShort,
            ),
            (
                "Content-Length: 4",
                "Content-Length: -4",
                ParseError::BadValue(HeaderName::ContentLength),
            ),
            (
                "Call-ID: a84b",
                "i: x\r\nCall-ID: a84b",
                ParseError::MissingOrRepeated(HeaderName::CallId),
            ),
            (
                "To: Bob <sip:bob@biloxi.com>",
                "To: Bob <sip:bob@biloxi.com",
                ParseError::BadValue(HeaderName::To),
            ),
            ("SIP/2.0\r\nVia", "SIP/7.0\r\nVia", ParseError::Version),
            ("INVITE sip:bob", "INVITE  sip:bob", ParseError::StartLine),
            (
                "INVITE sip:bob@biloxi.com",
                "INVITE <sip:bob@biloxi.com>",
                ParseError::Uri,
            ),
            ("Max-Forwards", "Max Forwards", ParseError::HeaderLine),
        ];
        for (from, to, want) in cases {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            assert_eq!(Message::parse(bad.as_bytes()), Err(*want), "{to}");
        }
        let no_via = good.replacen("Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n", "", 1)
            .replacen("v: SIP/2.0/TCP proxy.atlanta.com;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK0\r\n", "", 1);
        assert_eq!(
            Message::parse(no_via.as_bytes()),
            Err(ParseError::MissingOrRepeated(HeaderName::Via))
        );
        assert_eq!(Message::parse(b""), Err(ParseError::StartLine));
        assert_eq!(
            Message::parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x"),
            Err(ParseError::NoEndOfHeaders)
        );
    }
}
