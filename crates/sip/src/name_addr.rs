//! `name-addr` and `addr-spec` values with their parameters: From, To, Contact, Route,
//! Record-Route, Path (RFC 3261 §20.10, §25.1).

use crate::error::ParseError;
use crate::scan::{Params, quoted_end, token, trim};
use crate::uri::Uri;

/// One `[display-name] <uri>;params` (or `uri;params`) value, viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    raw: &'a [u8],
    display: Option<&'a [u8]>,
    uri: Uri<'a>,
    params: &'a [u8],
    /// The URI was in angle brackets.
    bracketed: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (one item of a list, white space around it allowed).
    pub fn parse(value: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        let raw = trim(value);
        // A `<` after the first `;` is inside an addr-spec's parameters (say a quoted
        // `+sip.instance="<urn:...>"`), not the start of a bracketed URI.
        let semi = raw.iter().position(|&b| b == b';').unwrap_or(raw.len());
        let open = raw.iter().position(|&b| b == b'<').filter(|&o| o < semi);
        let (display, uri, after, bracketed) = match open {
            Some(open) if !starts_quoted_after(raw, open) => {
                let display = display_name(trim(&raw[..open]))?;
                let close = raw[open..]
                    .iter()
                    .position(|&b| b == b'>')
                    .ok_or(ParseError::Uri)?
                    + open;
                (display, &raw[open + 1..close], &raw[close + 1..], true)
            }
            _ if raw.first() == Some(&b'"') => {
                // A quoted display name, then the bracketed URI.
                let end = quoted_end(raw).ok_or(ParseError::Uri)?;
                let rest = trim(&raw[end..]);
                if rest.first() != Some(&b'<') {
                    return Err(ParseError::Uri);
                }
                let close = rest
                    .iter()
                    .position(|&b| b == b'>')
                    .ok_or(ParseError::Uri)?;
                (Some(&raw[..end]), &rest[1..close], &rest[close + 1..], true)
            }
            _ => {
                // addr-spec: its parameters are the header's, and a URI with a comma or a
                // question mark must be bracketed (RFC 3261 §20.10).
                let semi = raw.iter().position(|&b| b == b';').unwrap_or(raw.len());
                if raw[..semi].iter().any(|&b| b == b'?' || b == b',') {
                    return Err(ParseError::Uri);
                }
                (None, trim(&raw[..semi]), &raw[semi..], false)
            }
        };
        let uri = Uri::parse(uri)?;
        let after = trim(after);
        let params = match after {
            [] => &[][..],
            [b';', rest @ ..] => rest,
            _ => return Err(ParseError::Uri),
        };
        if !Params::new(params).valid() {
            return Err(ParseError::Uri);
        }
        Ok(NameAddr {
            raw,
            display,
            uri,
            params,
            bracketed,
        })
    }

    /// The whole value as written (trimmed).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The display name as written (quoted or not).
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.display
    }

    /// The URI.
    pub fn uri(&self) -> Uri<'a> {
        self.uri
    }

    /// Whether the URI was written in angle brackets.
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// The header parameters after the URI (`tag`, `expires`, `q`, `+sip.instance`, ...).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The `tag` parameter (From, To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params().get("tag").flatten()
    }
}

/// Whether the `<` at `open` is inside a quoted display name (then it is not the URI's).
fn starts_quoted_after(raw: &[u8], open: usize) -> bool {
    raw.first() == Some(&b'"') && quoted_end(raw).is_none_or(|end| end > open)
}

/// A display name: a quoted string, or tokens separated by white space; empty means none.
fn display_name(s: &[u8]) -> Result<Option<&[u8]>, ParseError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.first() == Some(&b'"') {
        return match quoted_end(s) {
            Some(end) if end == s.len() => Ok(Some(s)),
            _ => Err(ParseError::Uri),
        };
    }
    let ok = s
        .split(|&b| b == b' ' || b == b'\t' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty())
        .all(token);
    if ok {
        Ok(Some(s))
    } else {
        Err(ParseError::Uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = NameAddr::parse(b" \"Bob <b>\" <sip:bob@example.com;transport=tcp>;tag=a48s ")
            .expect("parses");
        assert_eq!(n.display_name(), Some(&b"\"Bob <b>\""[..]));
        assert_eq!(n.uri().host(), b"example.com");
        assert_eq!(n.uri().params().get("transport"), Some(Some(&b"tcp"[..])));
        assert_eq!(n.tag(), Some(&b"a48s"[..]));
        let n = NameAddr::parse(b"sip:alice@192.0.2.4;tag=1928301774").expect("parses");
        assert!(!n.is_bracketed());
        assert_eq!(n.uri().as_bytes(), b"sip:alice@192.0.2.4");
        assert_eq!(n.tag(), Some(&b"1928301774"[..]));
        let n = NameAddr::parse(b"Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8").expect("ok");
        assert_eq!(n.display_name(), Some(&b"Anonymous"[..]));
        let n = NameAddr::parse(b"sip:alice@192.0.2.4;+sip.instance=\"<urn:uuid:1>\";reg-id=1")
            .expect("a quoted < in an addr-spec's parameters");
        assert_eq!(n.uri().as_bytes(), b"sip:alice@192.0.2.4");
        assert_eq!(n.params().get("reg-id"), Some(Some(&b"1"[..])));
        let n = NameAddr::parse(b"<sip:p.example.com;lr>").expect("ok");
        assert!(n.uri().params().has("lr"));
        for bad in [
            &b"<sip:a@b"[..],
            b"\"unterminated <sip:a@b>",
            b"<sip:a@b> junk",
            b"Bad@Name <sip:a@b>",
            b"",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
