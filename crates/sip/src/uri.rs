//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1): `sip:user:password@host:port;params?headers`.
//! Other schemes (tel, and any absolute URI) parse as just a scheme and the rest.

use std::net::IpAddr;

use crate::error::ParseError;
use crate::scan::Params;

/// A URI, viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: &'a [u8],
    user: Option<&'a [u8]>,
    host: &'a [u8],
    port: Option<u16>,
    params: &'a [u8],
    headers: Option<&'a [u8]>,
}

impl<'a> Uri<'a> {
    /// Parses `raw` (nothing around it: no angle brackets, no white space).
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        if raw
            .iter()
            .any(|&b| b <= b' ' || b == 0x7F || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(ParseError::Uri);
        }
        let colon = raw.iter().position(|&b| b == b':').ok_or(ParseError::Uri)?;
        let scheme = &raw[..colon];
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        let rest = &raw[colon + 1..];
        if !scheme_ok || rest.is_empty() {
            return Err(ParseError::Uri);
        }
        let mut uri = Uri {
            raw,
            scheme,
            user: None,
            host: &[],
            port: None,
            params: &[],
            headers: None,
        };
        if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
            return Ok(uri);
        }
        // The user part may hold `;` and `?` (user-unreserved), never a bare `@`.
        let (user, hostpart) = match rest.iter().rposition(|&b| b == b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(u) = user
            && (u.is_empty() || !escapes_ok(u))
        {
            return Err(ParseError::Uri);
        }
        let (hostpart, headers) = match hostpart.iter().position(|&b| b == b'?') {
            Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
            None => (hostpart, None),
        };
        let (hostport, params) = match hostpart.iter().position(|&b| b == b';') {
            Some(semi) => (&hostpart[..semi], &hostpart[semi + 1..]),
            None => (hostpart, &[][..]),
        };
        let (host, port) = split_host_port(hostport).ok_or(ParseError::Uri)?;
        if !params.is_empty() && !Params::new(params).valid_uri() {
            return Err(ParseError::Uri);
        }
        if let Some(h) = headers
            && !escapes_ok(h)
        {
            return Err(ParseError::Uri);
        }
        uri.user = user;
        uri.host = host;
        uri.port = port;
        uri.params = params;
        uri.headers = headers;
        Ok(uri)
    }

    /// The whole URI as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme, as written (`sip`, `SIPS`, `tel`, ...).
    pub fn scheme(&self) -> &'a [u8] {
        self.scheme
    }

    /// Whether it is a `sip:` or `sips:` URI (the only ones with a host, port and parameters
    /// here).
    pub fn is_sip(&self) -> bool {
        !self.host.is_empty()
    }

    /// The userinfo (user and any `:password`), still escaped.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The host: a name, an IPv4 address, or an IPv6 reference in brackets.
    pub fn host(&self) -> &'a [u8] {
        self.host
    }

    /// The port, if one is written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters (`transport`, `lr`, `ob`, ...).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The headers part after `?`, still escaped.
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }
}

/// The address a URI or Via host names, if it is an IP literal (`[...]` for IPv6).
pub(crate) fn ip_literal(host: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(host).ok()?;
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
        .parse()
        .ok()
}

/// `ip` as a URI host: IPv6 in brackets.
pub(crate) fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host[:port]`; the host a name, IPv4 or `[IPv6]`.
pub(crate) fn split_host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']')?;
        let host = &s[..=close];
        let inner = &host[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match &s[close + 1..] {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        match s.iter().position(|&b| b == b':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty()
        || (host[0] != b'['
            && !host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(u16::try_from(crate::scan::number(p, 5)?).ok()?),
    };
    Some((host, port))
}

/// Whether every `%` starts a two-digit hex escape (RFC 3261 §25.1 `escaped`).
fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let ok = s
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u = Uri::parse(b"sip:alice:pw@[2001:db8::1]:5061;transport=tls;lr?subject=hi")
            .expect("parses");
        assert_eq!(u.user(), Some(&b"alice:pw"[..]));
        assert_eq!(u.host(), b"[2001:db8::1]");
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.params().get("transport"), Some(Some(&b"tls"[..])));
        assert!(u.params().has("lr"));
        assert_eq!(u.headers(), Some(&b"subject=hi"[..]));
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").expect("parses");
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host(), b"example.com");
        assert!(Uri::parse(b"tel:+1-201-555-0123").is_ok_and(|u| !u.is_sip()));
        // Linphone's push parameters: `&` and `:` are paramchars.
        let u = Uri::parse(
            b"sip:a@b;pn-prid=TOK:remote&TOK:voip;pn-param=ID.org.linphone.phone.remote&voip",
        )
        .expect("parses");
        assert_eq!(
            u.params().get("pn-param"),
            Some(Some(&b"ID.org.linphone.phone.remote&voip"[..]))
        );
        for bad in [
            &b"sip:"[..],
            b"sip:a b@host",
            b"sip:@host",
            b"sip:host:99999",
            b"sip:host:5x",
            b"sip:[::1",
            b"sip:user%4@host",
            b"1sip:host",
            b"nocolon",
        ] {
            assert!(Uri::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
