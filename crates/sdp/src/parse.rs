//! Reading a session description into its line index (RFC 8866 §5).

use std::net::IpAddr;
use std::ops::Range;

/// Most lines a description may have (a phone's offer has a few dozen; a browser's with many
/// candidates, a few hundred).
pub const MAX_LINES: usize = 1024;
/// Most media sections (`m=` lines).
pub const MAX_MEDIA: usize = 64;

/// Why bytes are not a session description the relay can work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No `v=` line first (RFC 8866 §5.1).
    NoVersion,
    /// More than [`MAX_LINES`] lines.
    TooManyLines,
    /// More than [`MAX_MEDIA`] media sections.
    TooManyMedia,
    /// Line `line` (from 0) is not `<letter>=<value>`, or its value is not text.
    BadLine {
        /// The line's number, from 0.
        line: usize,
    },
    /// The `o=` line is missing or is not six fields (RFC 8866 §5.2).
    BadOrigin,
    /// A `c=` line is not `IN IP4|IP6 <address>` (RFC 8866 §5.7).
    BadConnection {
        /// The line's number, from 0.
        line: usize,
    },
    /// An `m=` line has no port or protocol (RFC 8866 §5.14).
    BadMedia {
        /// The line's number, from 0.
        line: usize,
    },
    /// An `a=rtcp` attribute has no port (RFC 3605 §2.1).
    BadRtcp {
        /// The line's number, from 0.
        line: usize,
    },
    /// Media section `media` (from 0) has no `c=`, and neither has the session (§5.7).
    NoConnection {
        /// The media section's number, from 0.
        media: usize,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoVersion => f.write_str("no v= line first"),
            Error::TooManyLines => write!(f, "more than {MAX_LINES} lines"),
            Error::TooManyMedia => write!(f, "more than {MAX_MEDIA} media sections"),
            Error::BadLine { line } => write!(f, "line {line} is not <type>=<value>"),
            Error::BadOrigin => f.write_str("no o= line of six fields"),
            Error::BadConnection { line } => {
                write!(f, "line {line}: a c= line the relay cannot read")
            }
            Error::BadMedia { line } => {
                write!(f, "line {line}: an m= line without port or protocol")
            }
            Error::BadRtcp { line } => write!(f, "line {line}: an a=rtcp without a port"),
            Error::NoConnection { media } => {
                write!(
                    f,
                    "media section {media} has no c= line, nor has the session"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// One line: its type letter (0 for an empty line), its value and the whole line with its end.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) kind: u8,
    pub(crate) value: Range<usize>,
    pub(crate) whole: Range<usize>,
}

/// Where a line holds a network type, address type and address (`c=`, `o=`, `a=rtcp`).
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// From the address type to the end of the address (`IP4 192.0.2.1`), without `/ttl`.
    pub(crate) typed_address: Range<usize>,
    pub(crate) ip: Option<IpAddr>,
}

/// A media section's index.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub(crate) m_line: usize,
    pub(crate) port: u16,
    pub(crate) port_at: Range<usize>,
    pub(crate) connection: Option<Place>,
    /// `a=rtcp`.
    pub(crate) rtcp: Option<Rtcp>,
    pub(crate) rtcp_mux: bool,
    pub(crate) direction: Option<Direction>,
}

/// An `a=rtcp` attribute (RFC 3605 §2.1): the port's range, the port, and the address if it
/// names one.
#[derive(Debug, Clone)]
pub(crate) struct Rtcp {
    pub(crate) port_at: Range<usize>,
    pub(crate) port: u16,
    pub(crate) place: Option<Place>,
}

/// A media direction attribute (RFC 8866 §6.7, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`.
    SendRecv,
    /// `a=sendonly` (the other side holds, RFC 3264 §8.4).
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// A `c=` address as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// An IP address (`IP4` or `IP6`).
    Ip(IpAddr),
    /// A name or something else the relay does not resolve.
    Other,
}

/// A media section as the relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`, ...
    pub kind: &'a [u8],
    /// The RTP port; 0 for a rejected or disabled stream (RFC 3264 §6).
    pub port: u16,
    /// The transport protocol (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...).
    pub proto: &'a [u8],
    /// Where media goes: the section's `c=`, else the session's.
    pub connection: Connection,
    /// `a=rtcp`'s port (RFC 3605), if given.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// The section's direction attribute, else the session's; `None` if neither has one
    /// (which means sendrecv).
    pub direction: Option<Direction>,
}

/// A session description read into its line index. Every range lies inside the bytes.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) lines: Vec<Line>,
    pub(crate) origin: Place,
    pub(crate) session_connection: Option<Place>,
    pub(crate) session_direction: Option<Direction>,
    pub(crate) sections: Vec<Section>,
}

/// The ICE attributes (RFC 8839 §5) a relay that removes ICE takes out.
pub(crate) const ICE_ATTRIBUTES: [&[u8]; 8] = [
    b"candidate",
    b"ice-ufrag",
    b"ice-pwd",
    b"ice-options",
    b"ice-lite",
    b"ice-mismatch",
    b"remote-candidates",
    b"end-of-candidates",
];

impl<'a> Sdp<'a> {
    /// Reads `bytes` (the body of a SIP message, or an rtpengine `sdp` value).
    pub fn parse(bytes: &'a [u8]) -> Result<Sdp<'a>, Error> {
        let lines = split_lines(bytes)?;
        if lines.first().map(|l| (l.kind, &bytes[l.value.clone()])) != Some((b'v', b"0")) {
            return Err(Error::NoVersion);
        }
        let mut origin = None;
        let mut session_connection = None;
        let mut session_direction = None;
        let mut sections: Vec<Section> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let value = &bytes[l.value.clone()];
            let at = l.value.start;
            match l.kind {
                b'o' if sections.is_empty() && origin.is_none() => {
                    origin = Some(origin_place(value, at).ok_or(Error::BadOrigin)?);
                }
                b'c' => {
                    let place =
                        connection_place(value, at).ok_or(Error::BadConnection { line: i })?;
                    match sections.last_mut() {
                        Some(s) => s.connection = Some(place),
                        None => session_connection = Some(place),
                    }
                }
                b'm' => {
                    if sections.len() == MAX_MEDIA {
                        return Err(Error::TooManyMedia);
                    }
                    let (port, port_at) =
                        media_port(value, at).ok_or(Error::BadMedia { line: i })?;
                    sections.push(Section {
                        m_line: i,
                        port,
                        port_at,
                        connection: None,
                        rtcp: None,
                        rtcp_mux: false,
                        direction: None,
                    });
                }
                b'a' => {
                    let (name, rest) = match memchr::memchr(b':', value) {
                        Some(c) => (&value[..c], Some((&value[c + 1..], at + c + 1))),
                        None => (value, None),
                    };
                    let direction = match name {
                        b"sendrecv" => Some(Direction::SendRecv),
                        b"sendonly" => Some(Direction::SendOnly),
                        b"recvonly" => Some(Direction::RecvOnly),
                        b"inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    match (sections.last_mut(), name) {
                        (None, _) if direction.is_some() => session_direction = direction,
                        (Some(s), _) if direction.is_some() => s.direction = direction,
                        (Some(s), b"rtcp") => {
                            let (rest, rest_at) = rest.ok_or(Error::BadRtcp { line: i })?;
                            s.rtcp = Some(rtcp(rest, rest_at).ok_or(Error::BadRtcp { line: i })?);
                        }
                        (Some(s), b"rtcp-mux") => s.rtcp_mux = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let origin = origin.ok_or(Error::BadOrigin)?;
        if session_connection.is_none()
            && let Some(m) = sections.iter().position(|s| s.connection.is_none())
        {
            return Err(Error::NoConnection { media: m });
        }
        Ok(Sdp {
            bytes,
            lines,
            origin,
            session_connection,
            session_direction,
            sections,
        })
    }

    /// The bytes it was read from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The media sections, in order.
    pub fn media(&self) -> impl Iterator<Item = Media<'a>> + '_ {
        self.sections.iter().map(|s| {
            let m = &self.bytes[self.lines[s.m_line].value.clone()];
            let mut fields = m.split(|&b| b == b' ');
            let kind = fields.next().unwrap_or_default();
            let proto = fields.nth(1).unwrap_or_default();
            let place = s.connection.as_ref().or(self.session_connection.as_ref());
            Media {
                kind,
                port: s.port,
                proto,
                connection: place
                    .and_then(|p| p.ip)
                    .map_or(Connection::Other, Connection::Ip),
                rtcp_port: s.rtcp.as_ref().map(|r| r.port),
                rtcp_mux: s.rtcp_mux,
                direction: s.direction.or(self.session_direction),
            }
        })
    }

    /// The origin's address (`o=`'s last field), if it is an IP address.
    pub fn origin_address(&self) -> Option<IpAddr> {
        self.origin.ip
    }

    /// Whether any ICE attribute is present (RFC 8839).
    pub fn has_ice(&self) -> bool {
        self.lines.iter().any(|l| self.is_ice(l))
    }

    pub(crate) fn is_ice(&self, l: &Line) -> bool {
        if l.kind != b'a' {
            return false;
        }
        let value = &self.bytes[l.value.clone()];
        let name = memchr::memchr(b':', value).map_or(value, |c| &value[..c]);
        ICE_ATTRIBUTES.contains(&name)
    }
}

/// Splits into lines ending in LF or CRLF (RFC 8866 §5 asks CRLF; LF alone is read too, as
/// the SIP stacks a relay meets send it). An empty line is kept as kind 0.
fn split_lines(bytes: &[u8]) -> Result<Vec<Line>, Error> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if lines.len() == MAX_LINES {
            return Err(Error::TooManyLines);
        }
        let rest = &bytes[at..];
        let (end, next) = match memchr::memchr(b'\n', rest) {
            Some(lf) if lf > 0 && rest[lf - 1] == b'\r' => (at + lf - 1, at + lf + 1),
            Some(lf) => (at + lf, at + lf + 1),
            None => (bytes.len(), bytes.len()),
        };
        let text = &bytes[at..end];
        let i = lines.len();
        let line = match text {
            [] => Line {
                kind: 0,
                value: at..at,
                whole: at..next,
            },
            [k, b'=', value @ ..]
                if k.is_ascii_lowercase()
                    && value.iter().all(|&b| b != b'\r' && b != 0)
                    && std::str::from_utf8(value).is_ok() =>
            {
                Line {
                    kind: *k,
                    value: at + 2..end,
                    whole: at..next,
                }
            }
            _ => return Err(Error::BadLine { line: i }),
        };
        lines.push(line);
        at = next;
    }
    Ok(lines)
}

/// `<nettype> <addrtype> <address>` starting at field `first` of `value` (whose first byte is
/// at `at`): the range from the address type to the end of the address (before any `/ttl`).
fn typed_address(value: &[u8], at: usize, first: usize) -> Option<Place> {
    let mut fields = Vec::with_capacity(8);
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if b == b' ' {
            fields.push(start..i);
            start = i + 1;
        }
        if fields.len() > first + 3 {
            return None;
        }
    }
    fields.push(start..value.len());
    if fields.len() != first + 3 {
        return None;
    }
    let (net, kind, addr) = (&fields[first], &fields[first + 1], &fields[first + 2]);
    if &value[net.clone()] != b"IN" {
        return None;
    }
    let kind_text = &value[kind.clone()];
    let address = &value[addr.clone()];
    let address = memchr::memchr(b'/', address).map_or(address, |s| &address[..s]);
    if address.is_empty() {
        return None;
    }
    let ip = std::str::from_utf8(address)
        .ok()
        .and_then(|a| a.parse::<IpAddr>().ok());
    match (kind_text, ip) {
        (b"IP4", Some(IpAddr::V6(_))) | (b"IP6", Some(IpAddr::V4(_))) => return None,
        (b"IP4" | b"IP6", _) => {}
        _ => return None,
    }
    Some(Place {
        typed_address: at + kind.start..at + addr.start + address.len(),
        ip,
    })
}

/// `o=<username> <sess-id> <sess-version> IN <addrtype> <address>`.
fn origin_place(value: &[u8], at: usize) -> Option<Place> {
    typed_address(value, at, 3)
}

/// `c=IN <addrtype> <address>[/ttl[/n]]`.
fn connection_place(value: &[u8], at: usize) -> Option<Place> {
    typed_address(value, at, 0)
}

/// `m=<media> <port>[/<n>] <proto> <fmt> ...`: the port and its range.
fn media_port(value: &[u8], at: usize) -> Option<(u16, Range<usize>)> {
    let mut fields = value.splitn(4, |&b| b == b' ');
    let media = fields.next()?;
    let port = fields.next()?;
    let proto = fields.next()?;
    if media.is_empty() || proto.is_empty() {
        return None;
    }
    let start = media.len() + 1;
    let digits = memchr::memchr(b'/', port).map_or(port, |s| &port[..s]);
    Some((number(digits)?, at + start..at + start + digits.len()))
}

/// `a=rtcp:<port> [IN <addrtype> <address>]` after the colon (RFC 3605 §2.1).
fn rtcp(rest: &[u8], at: usize) -> Option<Rtcp> {
    let (port, address) = match memchr::memchr(b' ', rest) {
        Some(sp) => (&rest[..sp], Some(sp + 1)),
        None => (rest, None),
    };
    let n = number(port)?;
    let place = match address {
        Some(a) => Some(typed_address(&rest[a..], at + a, 0)?),
        None => None,
    };
    Some(Rtcp {
        port_at: at..at + port.len(),
        port: n,
        place,
    })
}

/// A port: 1 to 5 digits, at most 65535.
fn number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}
