//! Header field names, long and compact (RFC 3261 §7.3.3, §20).

use std::fmt;

/// The header fields Farside reads; every other name is [`HeaderName::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// Via (`v`).
    Via,
    /// From (`f`).
    From,
    /// To (`t`).
    To,
    /// Call-ID (`i`).
    CallId,
    /// CSeq.
    CSeq,
    /// Contact (`m`).
    Contact,
    /// Route.
    Route,
    /// Record-Route.
    RecordRoute,
    /// Path (RFC 3327).
    Path,
    /// Expires.
    Expires,
    /// Max-Forwards.
    MaxForwards,
    /// Authorization.
    Authorization,
    /// Proxy-Authorization.
    ProxyAuthorization,
    /// WWW-Authenticate.
    WwwAuthenticate,
    /// Proxy-Authenticate.
    ProxyAuthenticate,
    /// Supported (`k`).
    Supported,
    /// Require.
    Require,
    /// Proxy-Require.
    ProxyRequire,
    /// Content-Length (`l`).
    ContentLength,
    /// Content-Type (`c`).
    ContentType,
    /// Any other field.
    Other,
}

impl HeaderName {
    /// The name a field line gives, long or compact, in any case.
    pub fn of(name: &[u8]) -> HeaderName {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name {
            [c] => match c.to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'k' => HeaderName::Supported,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                _ => HeaderName::Other,
            },
            _ if is("Via") => HeaderName::Via,
            _ if is("From") => HeaderName::From,
            _ if is("To") => HeaderName::To,
            _ if is("Call-ID") => HeaderName::CallId,
            _ if is("CSeq") => HeaderName::CSeq,
            _ if is("Contact") => HeaderName::Contact,
            _ if is("Route") => HeaderName::Route,
            _ if is("Record-Route") => HeaderName::RecordRoute,
            _ if is("Path") => HeaderName::Path,
            _ if is("Expires") => HeaderName::Expires,
            _ if is("Max-Forwards") => HeaderName::MaxForwards,
            _ if is("Authorization") => HeaderName::Authorization,
            _ if is("Proxy-Authorization") => HeaderName::ProxyAuthorization,
            _ if is("WWW-Authenticate") => HeaderName::WwwAuthenticate,
            _ if is("Proxy-Authenticate") => HeaderName::ProxyAuthenticate,
            _ if is("Supported") => HeaderName::Supported,
            _ if is("Require") => HeaderName::Require,
            _ if is("Proxy-Require") => HeaderName::ProxyRequire,
            _ if is("Content-Length") => HeaderName::ContentLength,
            _ if is("Content-Type") => HeaderName::ContentType,
            _ => HeaderName::Other,
        }
    }

    /// The long form, as Farside writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Path => "Path",
            HeaderName::Expires => "Expires",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Other => "(other)",
        }
    }

    /// Whether the field's value is a comma-separated list that may also be split over
    /// several lines (RFC 3261 §7.3.1); the others' commas belong to their one value.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Path
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_compact_and_case() {
        assert_eq!(HeaderName::of(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::of(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::of(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::of(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::of(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::of(b"X-Foo"), HeaderName::Other);
        assert_eq!(HeaderName::of(b""), HeaderName::Other);
    }
}
