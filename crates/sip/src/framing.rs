//! Message boundaries on stream transports (RFC 3261 §18.3: Content-Length is mandatory there)
//! and RFC 5626 §3.5.1 CRLF keep-alives.

use crate::MAX_MESSAGE;
use crate::header::HeaderName;
use crate::scan::{number, trim};

/// What starts a stream's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// A keep-alive ping (CRLF CRLF, answered with one CRLF) of this many bytes.
    Ping(usize),
    /// A keep-alive pong (one CRLF) of this many bytes.
    Pong(usize),
    /// A whole message of this many bytes (to parse with [`crate::Message::parse`]).
    Message(usize),
    /// Not SIP, or too long, or without Content-Length: the connection should close.
    Invalid,
}

/// Finds the first frame in `buf`.
pub fn frame(buf: &[u8]) -> Frame {
    if buf.starts_with(b"\r\n\r\n") {
        return Frame::Ping(4);
    }
    if buf.starts_with(b"\r\n") {
        return Frame::Pong(2);
    }
    if buf == b"\r" {
        return Frame::Incomplete;
    }
    let limit = buf.len().min(MAX_MESSAGE);
    let Some(end) = buf[..limit].windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_MESSAGE {
            Frame::Invalid
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..end + 2];
    let mut length = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if HeaderName::of(trim(&line[..colon])) == HeaderName::ContentLength {
            match (length, number(trim(&line[colon + 1..]), 10)) {
                (None, Some(n)) => length = Some(n),
                _ => return Frame::Invalid, // repeated, or not a number
            }
        }
    }
    let Some(length) = length.and_then(|n| usize::try_from(n).ok()) else {
        return Frame::Invalid;
    };
    let total = end + 4 + length;
    if total > MAX_MESSAGE {
        Frame::Invalid
    } else if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbodyNEXT";
        assert_eq!(frame(msg), Frame::Message(msg.len() - 4));
        assert_eq!(frame(&msg[..20]), Frame::Incomplete);
        assert_eq!(frame(&msg[..msg.len() - 6]), Frame::Incomplete);
        assert_eq!(frame(b"\r\n\r\nOPTIONS"), Frame::Ping(4));
        assert_eq!(frame(b"\r\nOPTIONS"), Frame::Pong(2));
        assert_eq!(frame(b"\r"), Frame::Incomplete);
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nTo: x\r\n\r\n"),
            Frame::Invalid
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nxx"),
            Frame::Invalid
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999\r\n\r\n"),
            Frame::Invalid
        );
        assert_eq!(frame(&vec![b'a'; MAX_MESSAGE]), Frame::Invalid);
    }
}
