//! SIP over WebSocket (RFC 7118) on the server side: the opening handshake (RFC 6455 §4.2,
//! subprotocol `sip`) and the framing (§5). Each WebSocket message carries one SIP message
//! (RFC 7118 §5.2). Client frames must be masked (§5.1); messages are bounded by
//! [`crate::MAX_MESSAGE`], fragmented ones included; control frames are answered (ping → pong,
//! close → close). Sans-IO: bytes in, events and bytes out.
//!
//! A browser sends `Origin` with every handshake (RFC 6455 §10.2): a page on any site could
//! otherwise open a SIP connection to Farside from a visitor's browser (cross-site WebSocket
//! hijacking) and register or call as whoever that browser can reach. [`Origins`] says which
//! pages may; by default only those served from the host the browser connected to. A client
//! that is not a browser sends no `Origin` and is not judged by it (it could send any).

use base64ct::{Base64, Encoding as _};
use sha1::{Digest as _, Sha1};

use crate::MAX_MESSAGE;

/// The largest opening handshake read (a browser's is well under 2 KiB).
const MAX_HANDSHAKE: usize = 8 * 1024;

/// What the start of a connection holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Not all of the request yet.
    Incomplete,
    /// A valid upgrade to `sip`: send `response`, drop `used` bytes, then frames follow.
    Accept {
        /// The 101 response.
        response: Vec<u8>,
        /// Bytes of the request.
        used: usize,
    },
    /// Not a WebSocket upgrade for SIP, or from a page whose origin is not allowed: send
    /// `response` (400, 403 or 426) and close.
    Refuse {
        /// The error response.
        response: Vec<u8>,
        /// Why, for the log.
        reason: &'static str,
    },
}

/// The web pages (by `Origin`, RFC 6454) whose scripts may open SIP connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins {
    /// Any origin at all.
    pub any: bool,
    /// Origins allowed besides the connected host's own, as `scheme://host[:port]`, compared
    /// without regard to case.
    pub allowed: Vec<String>,
}

impl Origins {
    /// Whether a handshake with `origin` (its `Origin` value; `None`: not sent) to `host` (its
    /// `Host` value) may go on.
    pub fn allow(&self, origin: Option<&[u8]>, host: Option<&[u8]>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        if self
            .allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // The same host: the origin's host (scheme and port aside) is the one connected to.
        let origin_host = origin
            .windows(3)
            .position(|w| w == b"://")
            .map(|i| hostname(&origin[i + 3..]));
        match (origin_host, host.map(hostname)) {
            (Some(o), Some(h)) => !o.is_empty() && o.eq_ignore_ascii_case(h),
            _ => false,
        }
    }
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn hostname(hostport: &[u8]) -> &[u8] {
    let hostport = hostport.trim_ascii();
    if hostport.starts_with(b"[") {
        return match hostport.iter().position(|&b| b == b']') {
            Some(end) => &hostport[..=end],
            None => hostport,
        };
    }
    match hostport.iter().rposition(|&b| b == b':') {
        Some(colon) => &hostport[..colon],
        None => hostport,
    }
}

/// Reads the opening handshake at the start of `buf`, from a page of an origin `origins`
/// allows.
pub fn handshake(buf: &[u8], origins: &Origins) -> Handshake {
    let limit = buf.len().min(MAX_HANDSHAKE);
    let Some(end) = buf[..limit].windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HANDSHAKE {
            refuse(400, "Bad Request")
        } else {
            Handshake::Incomplete
        };
    };
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(request) = lines.next() else {
        return refuse(400, "Bad Request");
    };
    if !request.starts_with(b"GET ") || !request.ends_with(b" HTTP/1.1") {
        return refuse(400, "Bad Request");
    }
    let (mut upgrade, mut connection, mut version, mut key, mut sip) =
        (false, false, false, None, false);
    let (mut origin, mut host) = (None, None);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let tokens = || value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name.eq_ignore_ascii_case(b"Upgrade") {
            upgrade = tokens().any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"Connection") {
            connection = tokens().any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case(b"Sec-WebSocket-Version") {
            version = value == b"13";
        } else if name.eq_ignore_ascii_case(b"Sec-WebSocket-Key") {
            key = Some(value);
        } else if name.eq_ignore_ascii_case(b"Sec-WebSocket-Protocol") {
            sip |= tokens().any(|t| t.eq_ignore_ascii_case(b"sip"));
        } else if name.eq_ignore_ascii_case(b"Origin") {
            origin = Some(value);
        } else if name.eq_ignore_ascii_case(b"Host") {
            host = Some(value);
        }
    }
    if !version {
        return Handshake::Refuse {
            response: b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n".to_vec(),
            reason: "not WebSocket version 13",
        };
    }
    // RFC 7118 §4.1: the client must ask for "sip"; the key is 16 bytes in base64 (24 chars).
    let Some(key) = key.filter(|k| k.len() == 24) else {
        return refuse(400, "Bad Request");
    };
    if !(upgrade && connection && sip) {
        return refuse(400, "Bad Request");
    }
    if !origins.allow(origin, host) {
        return Handshake::Refuse {
            response: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
            reason: "its Origin is not allowed (sip.ws_origins)",
        };
    }
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = Base64::encode_string(&sha.finalize());
    Handshake::Accept {
        response: format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
        )
        .into_bytes(),
        used: end + 4,
    }
}

fn refuse(code: u16, reason: &str) -> Handshake {
    Handshake::Refuse {
        response: format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        reason: "not a WebSocket upgrade for SIP",
    }
}

/// What one frame (or the last of a fragmented message) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message: one SIP message (or a CRLF keep-alive).
    Message(Vec<u8>),
    /// Send this back (a pong for a ping, the close for a close).
    Reply(Vec<u8>),
    /// The peer closed; the reply goes out first, then the connection closes.
    Close(Vec<u8>),
}

/// The stream breaks RFC 6455 (an unmasked or reserved frame, a message too long, a control
/// frame fragmented): close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// A frame's result: bytes used and maybe an event.
pub type Step = Result<(usize, Option<Event>), Broken>;

/// The reading side of one WebSocket connection.
#[derive(Debug, Default)]
pub struct Reader {
    /// A fragmented message so far.
    partial: Option<Vec<u8>>,
}

impl Reader {
    /// Reads the frame at the start of `buf`: `Ok((0, None))` when it is not all there yet.
    pub fn step(&mut self, buf: &[u8]) -> Step {
        let [b0, b1, ..] = *buf else {
            return Ok((0, None));
        };
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            return Err(Broken); // extension bits we did not agree to, or an unmasked client frame
        }
        let (len, at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
                None => return Ok((0, None)),
            },
            127 => match buf.get(2..10) {
                Some(l) => (u64::from_be_bytes(l.try_into().map_err(|_| Broken)?), 10),
                None => return Ok((0, None)),
            },
            n => (u64::from(n), 2),
        };
        let control = opcode & 0x08 != 0;
        if (control && (!fin || len > 125)) || len > MAX_MESSAGE as u64 {
            return Err(Broken);
        }
        let len = len as usize;
        let Some(mask) = buf.get(at..at + 4) else {
            return Ok((0, None));
        };
        let Some(data) = buf.get(at + 4..at + 4 + len) else {
            return Ok((0, None));
        };
        let payload: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let used = at + 4 + len;
        let event = match opcode {
            0x0 => {
                let Some(p) = self.partial.as_mut() else {
                    return Err(Broken); // a continuation of nothing
                };
                if p.len() + payload.len() > MAX_MESSAGE {
                    return Err(Broken);
                }
                p.extend_from_slice(&payload);
                if fin {
                    self.partial.take().map(Event::Message)
                } else {
                    None
                }
            }
            0x1 | 0x2 => {
                if self.partial.is_some() {
                    return Err(Broken); // a new message inside a fragmented one
                }
                if fin {
                    Some(Event::Message(payload))
                } else {
                    self.partial = Some(payload);
                    None
                }
            }
            0x8 => Some(Event::Close(frame(0x8, &payload[..payload.len().min(2)]))),
            0x9 => Some(Event::Reply(frame(0xA, &payload))),
            0xA => None,
            _ => return Err(Broken),
        };
        Ok((used, event))
    }
}

/// A server frame (unmasked, §5.1): `opcode` (0x1 text for SIP) and `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6455_example_handshake_is_accepted() {
        // RFC 6455 §1.3's key and accept value.
        let req = b"GET /sip HTTP/1.1\r\nHost: farside.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\nrest";
        let Handshake::Accept { response, used } = handshake(req, &Origins::default()) else {
            panic!("accepted")
        };
        assert_eq!(used, req.len() - 4);
        let text = String::from_utf8(response).expect("text");
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert!(
            text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Protocol: sip\r\n"));
        assert_eq!(
            handshake(&req[..30], &Origins::default()),
            Handshake::Incomplete
        );
        let no_sip = String::from_utf8_lossy(req).replace("Sec-WebSocket-Protocol: sip\r\n", "");
        assert!(matches!(
            handshake(no_sip.as_bytes(), &Origins::default()),
            Handshake::Refuse { .. }
        ));
        let old = String::from_utf8_lossy(req).replace("Version: 13", "Version: 8");
        let Handshake::Refuse { response, .. } = handshake(old.as_bytes(), &Origins::default())
        else {
            panic!("refused")
        };
        assert!(response.starts_with(b"HTTP/1.1 426 "));
        assert!(matches!(
            handshake(&[b'x'; MAX_HANDSHAKE], &Origins::default()),
            Handshake::Refuse { .. }
        ));
    }

    #[test]
    fn only_allowed_origins_may_open_a_connection() {
        let req = |origin: &str| {
            format!(
                "GET /sip HTTP/1.1\r\nHost: sip.example.org:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
            )
        };
        let accepted = |origin: &str, origins: &Origins| {
            matches!(
                handshake(req(origin).as_bytes(), origins),
                Handshake::Accept { .. }
            )
        };
        let same_host = Origins::default();
        assert!(accepted("", &same_host), "no Origin: not a browser");
        assert!(accepted("Origin: https://SIP.example.org\r\n", &same_host));
        assert!(accepted(
            "Origin: https://sip.example.org:443\r\n",
            &same_host
        ));
        assert!(!accepted("Origin: https://evil.example\r\n", &same_host));
        assert!(!accepted("Origin: null\r\n", &same_host));
        assert!(!accepted(
            "Origin: https://sip.example.org.evil.example\r\n",
            &same_host
        ));
        let Handshake::Refuse { response, reason } = handshake(
            req("Origin: https://evil.example\r\n").as_bytes(),
            &same_host,
        ) else {
            panic!("refused")
        };
        assert!(response.starts_with(b"HTTP/1.1 403 "), "{reason}");
        let listed = Origins {
            any: false,
            allowed: vec!["https://app.example.com".into()],
        };
        assert!(accepted("Origin: https://app.example.com\r\n", &listed));
        assert!(!accepted("Origin: http://app.example.com\r\n", &listed));
        let any = Origins {
            any: true,
            allowed: Vec::new(),
        };
        assert!(accepted("Origin: https://evil.example\r\n", &any));
        assert_eq!(hostname(b"[::1]:5066"), b"[::1]");
    }

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn frames_give_messages_and_answers_and_refuse_what_breaks_the_rules() {
        let mut r = Reader::default();
        let msg = vec![b'x'; 300];
        let f = client_frame(true, 1, &msg);
        assert_eq!(r.step(&f[..5]), Ok((0, None)));
        assert_eq!(r.step(&f), Ok((f.len(), Some(Event::Message(msg.clone())))));
        // Fragmented: the message comes with the last piece.
        let (a, b) = (client_frame(false, 1, b"ab"), client_frame(true, 0, b"cd"));
        assert_eq!(r.step(&a), Ok((a.len(), None)));
        assert_eq!(
            r.step(&b),
            Ok((b.len(), Some(Event::Message(b"abcd".to_vec()))))
        );
        let ping = client_frame(true, 9, b"hi");
        assert_eq!(
            r.step(&ping),
            Ok((ping.len(), Some(Event::Reply(frame(0xA, b"hi")))))
        );
        let close = client_frame(true, 8, &[3, 232]);
        assert!(matches!(r.step(&close), Ok((_, Some(Event::Close(_))))));
        // Unmasked, a reserved opcode, a stray continuation, a long control frame, too big.
        assert_eq!(r.step(&frame(1, b"x")), Err(Broken));
        assert_eq!(r.step(&client_frame(true, 3, b"x")), Err(Broken));
        assert_eq!(r.step(&client_frame(true, 0, b"x")), Err(Broken));
        assert_eq!(r.step(&client_frame(false, 9, b"x")), Err(Broken));
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert_eq!(r.step(&huge), Err(Broken));
    }

    #[test]
    fn server_frames_have_the_right_lengths() {
        assert_eq!(frame(1, b"abc"), [0x81, 3, b'a', b'b', b'c']);
        assert_eq!(frame(1, &[0; 300])[..4], [0x81, 126, 1, 44]);
        assert_eq!(Base64::encode_string(b"fo"), "Zm8=");
        assert_eq!(Base64::encode_string(b"foobar"), "Zm9vYmFy");
    }
}
