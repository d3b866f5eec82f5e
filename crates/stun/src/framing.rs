//! Message boundaries on TCP and TLS (RFC 8489 §6.2.2): a STUN message on a stream is its
//! 20-byte header and then the length the header gives, nothing in between.

use crate::HEADER_LEN;

/// What starts a stream's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes to tell yet.
    Incomplete,
    /// A message of this many bytes (it may not all be there yet: check the length).
    Message(usize),
    /// Not this protocol: the connection should close.
    Invalid,
}

/// The frame at the start of `buf`: a STUN message (the first two bits zero, RFC 8489 §5).
pub fn frame(buf: &[u8]) -> Frame {
    match buf {
        [] => Frame::Incomplete,
        [first, ..] if first & 0xC0 != 0 => Frame::Invalid,
        [_, _, a, b, ..] => Frame::Message(HEADER_LEN + usize::from(u16::from_be_bytes([*a, *b]))),
        _ => Frame::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stun_frame_is_its_header_and_its_length() {
        assert_eq!(frame(&[]), Frame::Incomplete);
        assert_eq!(frame(&[0x00, 0x01, 0x00]), Frame::Incomplete);
        assert_eq!(frame(&[0x00, 0x01, 0x00, 0x08]), Frame::Message(28));
        assert_eq!(
            frame(&[0x01, 0x01, 0xff, 0xfc]),
            Frame::Message(20 + 65_532)
        );
        assert_eq!(frame(&[0x40, 0x00]), Frame::Invalid);
        assert_eq!(frame(b"GET / HTTP/1.1\r\n"), Frame::Invalid);
    }
}
