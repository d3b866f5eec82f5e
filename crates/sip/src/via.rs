//! One Via value (RFC 3261 §20.42, §18.2.1; RFC 3581 `rport`):
//! `SIP/2.0/UDP host:port;branch=z9hG4bK...;received=...;rport=...`.

use crate::error::ParseError;
use crate::header::HeaderName;
use crate::scan::{Params, token, trim};
use crate::uri::split_host_port;

/// A Via value, viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    raw: &'a [u8],
    transport: &'a [u8],
    host: &'a [u8],
    port: Option<u16>,
    params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parses one value (one item of a Via list).
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>, ParseError> {
        let bad = ParseError::BadValue(HeaderName::Via);
        let raw = trim(value);
        let (sent, params) = match raw.iter().position(|&b| b == b';') {
            Some(semi) => (&raw[..semi], &raw[semi + 1..]),
            None => (raw, &[][..]),
        };
        // sent-protocol: name / version / transport, white space allowed around the slashes.
        let mut parts = sent.splitn(3, |&b| b == b'/');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad);
        };
        if !trim(name).eq_ignore_ascii_case(b"SIP") || trim(version) != b"2.0" {
            return Err(bad);
        }
        // transport, white space, sent-by.
        let rest = trim(rest);
        let split = rest
            .iter()
            .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .ok_or(bad)?;
        let transport = &rest[..split];
        if !token(transport) {
            return Err(bad);
        }
        // sent-by: host [ ":" port ], white space allowed around the colon.
        let sent_by = trim(&rest[split..]);
        let (host, port) = host_port_lws(sent_by).ok_or(bad)?;
        if !Params::new(params).valid() {
            return Err(bad);
        }
        Ok(Via {
            raw,
            transport,
            host,
            port,
            params,
        })
    }

    /// The whole value as written (trimmed).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The transport (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, ...), as written.
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// The sent-by host.
    pub fn host(&self) -> &'a [u8] {
        self.host
    }

    /// The sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The parameters (`branch`, `received`, `rport`, `maddr`, `ttl`, ...).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params().get("branch").flatten()
    }

    /// `rport` (RFC 3581): `Some(None)` when asked for without a value.
    pub fn rport(&self) -> Option<Option<&'a [u8]>> {
        self.params().get("rport")
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params().get("received").flatten()
    }
}

/// `host [LWS] [":" [LWS] port]`.
fn host_port_lws(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if s.iter().any(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        // Only around the colon.
        let colon = s.iter().rposition(|&b| b == b':')?;
        let host = trim(&s[..colon]);
        let port = trim(&s[colon + 1..]);
        if host.iter().chain(port).any(|&b| b == b' ' || b == b'\t') {
            return None;
        }
        let (h, none) = split_host_port(host)?;
        if none.is_some() {
            return None;
        }
        let port = u16::try_from(crate::scan::number(port, 5)?).ok()?;
        return Some((h, Some(port)));
    }
    split_host_port(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776;rport").expect("ok");
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), b"192.0.2.4");
        assert_eq!(v.port(), Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776"[..]));
        assert_eq!(v.rport(), Some(None));
        let v =
            Via::parse(b" SIP / 2.0 / TCP  [2001:db8::9] : 5061 ;received=192.0.2.9").expect("ok");
        assert_eq!(v.transport(), b"TCP");
        assert_eq!(v.host(), b"[2001:db8::9]");
        assert_eq!(v.port(), Some(5061));
        assert_eq!(v.received(), Some(&b"192.0.2.9"[..]));
        let v = Via::parse(b"SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf").expect("ok");
        assert_eq!((v.transport(), v.port()), (&b"WSS"[..], None));
        for bad in [
            &b"SIP/2.0 192.0.2.4"[..],
            b"SIP/3.0/UDP host",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP host:port",
            b"SIP/2.0/UDP ho st",
            b"SIP/2.0/U@P host",
        ] {
            assert!(Via::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
