//! The few bytes of STUN the load tools need, written by hand so that they measure servers,
//! not our codec: a Binding request whose transaction id carries a sequence number, the check
//! that an answer is a Binding success for one of our requests, and the bare responder's answer.
//!
//! Transaction id layout of the generator's requests: bytes 0..8 the sequence number (big
//! endian), bytes 8..12 a per-run nonce, so an answer maps to its request by index, not by a
//! hash lookup, and answers to another run (or another process) are told apart.

use std::net::SocketAddr;

/// RFC 5389 magic cookie.
pub(crate) const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header; also the size of our requests (no attributes).
pub(crate) const HEADER_LEN: usize = 20;
/// Binding request (method 0x001, class request).
const BINDING_REQUEST: u16 = 0x0001;
/// Binding success response (method 0x001, class success).
const BINDING_SUCCESS: u16 = 0x0101;
/// XOR-MAPPED-ADDRESS attribute type.
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// The two class bits of a message type (C1 = 0x0100, C0 = 0x0010).
const CLASS_MASK: u16 = 0x0110;
/// The class bits of a success response.
const CLASS_SUCCESS: u16 = 0x0100;

/// Writes a 20-byte Binding request for sequence number `seq` into `buf`.
///
/// Returns the length written, or `None` when `buf` is shorter than a header.
pub(crate) fn write_request(buf: &mut [u8], seq: u64, nonce: [u8; 4]) -> Option<usize> {
    let b = buf.get_mut(..HEADER_LEN)?;
    b[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    b[2..4].copy_from_slice(&0u16.to_be_bytes());
    b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    b[16..20].copy_from_slice(&nonce);
    Some(HEADER_LEN)
}

/// The sequence number of the request `bytes` answers, if `bytes` is a Binding success
/// response with the magic cookie, a consistent length and our run's `nonce`.
pub(crate) fn parse_response(bytes: &[u8], nonce: [u8; 4]) -> Option<u64> {
    let header = bytes.get(..HEADER_LEN)?;
    let ty = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if ty != BINDING_SUCCESS
        || header[4..8] != MAGIC_COOKIE.to_be_bytes()
        || len % 4 != 0
        || HEADER_LEN + len > bytes.len()
        || header[16..20] != nonce
    {
        return None;
    }
    let seq: [u8; 8] = header[8..16].try_into().ok()?;
    Some(u64::from_be_bytes(seq))
}

/// The bare responder's answer to `request` from `source`: the request's header with the
/// class flipped to success, plus an XOR-MAPPED-ADDRESS of `source`, so that it is as large as
/// a real server's answer (32 bytes for IPv4, 44 for IPv6). Nothing else is checked: this is
/// the least work a server can do per datagram.
///
/// Returns the length written, or `None` when `request` is shorter than a header or `out` is
/// too small.
pub(crate) fn write_response(request: &[u8], source: SocketAddr, out: &mut [u8]) -> Option<usize> {
    let req = request.get(..HEADER_LEN)?;
    let (family, attr_len) = match source {
        SocketAddr::V4(_) => (1u8, 8usize),
        SocketAddr::V6(_) => (2u8, 20usize),
    };
    let total = HEADER_LEN + 4 + attr_len;
    let out = out.get_mut(..total)?;
    let ty = u16::from_be_bytes([req[0], req[1]]);
    let ty = (ty & 0x3FFF & !CLASS_MASK) | CLASS_SUCCESS;
    out[0..2].copy_from_slice(&ty.to_be_bytes());
    out[2..4].copy_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    out[4..20].copy_from_slice(&req[4..20]);
    out[20..22].copy_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(attr_len as u16).to_be_bytes());
    out[24] = 0;
    out[25] = family;
    let port = source.port() ^ u16::from_be_bytes([req[4], req[5]]);
    out[26..28].copy_from_slice(&port.to_be_bytes());
    match source {
        SocketAddr::V4(a) => {
            for (o, (ip, key)) in out[28..32]
                .iter_mut()
                .zip(a.ip().octets().iter().zip(&req[4..8]))
            {
                *o = ip ^ key;
            }
        }
        SocketAddr::V6(a) => {
            for (o, (ip, key)) in out[28..44]
                .iter_mut()
                .zip(a.ip().octets().iter().zip(&req[4..20]))
            {
                *o = ip ^ key;
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn request_is_a_bare_binding_request() {
        let mut buf = [0u8; 32];
        assert_eq!(
            write_request(&mut buf, 0x0102_0304_0506_0708, NONCE),
            Some(20)
        );
        assert_eq!(
            buf[..20],
            [
                0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 0xde, 0xad,
                0xbe, 0xef
            ]
        );
        assert_eq!(write_request(&mut buf[..19], 1, NONCE), None);
    }

    #[test]
    fn responder_answer_round_trips_through_the_generator_check() {
        let mut req = [0u8; 20];
        write_request(&mut req, 42, NONCE);
        let source: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
        let mut out = [0u8; 64];
        assert_eq!(write_response(&req, source, &mut out), Some(32));
        assert_eq!(parse_response(&out[..32], NONCE), Some(42));
        assert_eq!(
            parse_response(&out[..32], [0; 4]),
            None,
            "another run's answer"
        );
        // RFC 5769 §2.2's address: 192.0.2.1:32853 XORed with the cookie.
        assert_eq!(
            out[20..32],
            [
                0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43
            ]
        );
    }

    #[test]
    fn ipv6_answer_is_44_bytes() {
        let mut req = [0u8; 20];
        write_request(&mut req, 7, NONCE);
        let source: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .expect("addr");
        let mut out = [0u8; 64];
        assert_eq!(write_response(&req, source, &mut out), Some(44));
        assert_eq!(parse_response(&out[..44], NONCE), Some(7));
        // RFC 5769 §2.3's XOR-MAPPED-ADDRESS value bytes for this address and cookie start so.
        assert_eq!(out[24..30], [0x00, 0x02, 0xa1, 0x47, 0x01, 0x13]);
    }

    #[test]
    fn responder_flips_only_the_class() {
        // An Allocate request (0x0003) becomes an Allocate success (0x0103); an indication
        // (0x0011) becomes a success too: the floor does not look at what it answers.
        for (ty, want) in [(0x0003u16, 0x0103u16), (0x0011, 0x0101), (0xC001, 0x0101)] {
            let mut req = [0u8; 20];
            req[0..2].copy_from_slice(&ty.to_be_bytes());
            let mut out = [0u8; 64];
            write_response(&req, "127.0.0.1:1".parse().expect("addr"), &mut out).expect("fits");
            assert_eq!(u16::from_be_bytes([out[0], out[1]]), want);
        }
    }

    #[test]
    fn generator_rejects_what_is_not_our_binding_success() {
        let mut req = [0u8; 20];
        write_request(&mut req, 1, NONCE);
        let mut ok = [0u8; 32];
        write_response(&req, "127.0.0.1:9".parse().expect("addr"), &mut ok).expect("fits");
        assert_eq!(parse_response(&ok, NONCE), Some(1));
        assert_eq!(parse_response(&ok[..19], NONCE), None, "short");
        assert_eq!(
            parse_response(&ok[..31], NONCE),
            None,
            "length past the end"
        );
        let mut error = ok;
        error[1] = 0x11; // error response class
        assert_eq!(parse_response(&error, NONCE), None);
        let mut no_cookie = ok;
        no_cookie[4] = 0;
        assert_eq!(parse_response(&no_cookie, NONCE), None);
        assert_eq!(
            parse_response(&req, NONCE),
            None,
            "a request is not an answer"
        );
        assert_eq!(parse_response(&[], NONCE), None);
    }
}
