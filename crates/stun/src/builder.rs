//! Writing a STUN message into the caller's buffer, with no allocation (RFC 8489 §5, §14).
//!
//! The header's length field is kept current after every attribute, so the integrity and
//! fingerprint attributes can be computed over the buffer as it stands.

use crate::attributes::{Attribute, attr_type, put};
use crate::error::BufferTooSmall;
use crate::header::{Class, HEADER_LEN, Header, MessageType, field};
use crate::integrity::{self, Covered, SHA1_LEN, SHA256_LEN};
use crate::message::Message;

/// The header's 16-bit length counts whole 4-byte words of attributes.
const MAX_LEN: usize = HEADER_LEN + 0xFFFC;

/// Builds a message in a caller's buffer.
///
/// ```
/// use farside_stun::{Class, Header, Message, MessageBuilder, MessageType, Method, TransactionId};
/// use farside_stun::attributes::XorMappedAddress;
///
/// let mut buf = [0u8; 64];
/// let ty = MessageType::new(Class::SuccessResponse, Method::BINDING);
/// let mut b = MessageBuilder::new(&mut buf, ty, Header::new(TransactionId([7; 12])))?;
/// b.add(&XorMappedAddress("192.0.2.1:32853".parse().unwrap()))?;
/// b.add_fingerprint()?;
/// let len = b.finish();
/// let m = Message::parse(&buf[..len]).unwrap();
/// assert!(m.check_fingerprint().is_ok());
/// # Ok::<(), farside_stun::BufferTooSmall>(())
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    header: Header,
    padding: u8,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message of type `ty` with `header`'s cookie and transaction id.
    pub fn new(buf: &'b mut [u8], ty: MessageType, header: Header) -> Result<Self, BufferTooSmall> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(BufferTooSmall)?;
        put(h, field::TYPE.start, &ty.to_u16().to_be_bytes());
        put(h, field::LENGTH.start, &[0, 0]);
        put(h, field::COOKIE.start, &header.cookie);
        put(h, field::TRANSACTION_ID.start, &header.transaction_id.0);
        Ok(Self {
            buf,
            len: HEADER_LEN,
            header,
            padding: 0,
        })
    }

    /// Starts a response to `request`: same method, cookie and transaction id (RFC 8489 §6.3;
    /// for an RFC 3489 request the cookie bytes are part of its 128-bit id and are echoed).
    pub fn response_to(
        buf: &'b mut [u8],
        request: &Message<'_>,
        class: Class,
    ) -> Result<Self, BufferTooSmall> {
        Self::new(
            buf,
            MessageType::new(class, request.method()),
            request.header(),
        )
    }

    /// Sets the byte used to pad values to a multiple of 4 from here on. RFC 8489 §14 says
    /// to send zeros, the default; receivers ignore padding, and RFC 3489-era agents (and the
    /// RFC 5769 test vectors) used other bytes, so reproducing their messages needs this.
    pub fn pad_with(&mut self, byte: u8) {
        self.padding = byte;
    }

    /// Appends a typed attribute.
    pub fn add<'v, A: Attribute<'v>>(&mut self, attr: &A) -> Result<(), BufferTooSmall> {
        let header = self.header;
        let value = self.reserve(A::TYPE, attr.encoded_len())?;
        // Zeroed first, so a codec that writes less than it announced leaks no stale bytes.
        value.fill(0);
        attr.encode(value, &header);
        Ok(())
    }

    /// Appends an attribute from its type and value bytes.
    pub fn add_raw(&mut self, typ: u16, value: &[u8]) -> Result<(), BufferTooSmall> {
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY, the HMAC-SHA1 keyed with `key` of everything so far
    /// (RFC 8489 §14.5). Add only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT after it.
    pub fn add_message_integrity(&mut self, key: &[u8]) -> Result<(), BufferTooSmall> {
        let at = self.len;
        self.reserve(attr_type::MESSAGE_INTEGRITY, SHA1_LEN)?;
        let mac = integrity::hmac_sha1(key, self.covered(at, SHA1_LEN)?);
        put(self.buf, at + 4, &mac);
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY-SHA256, the untruncated HMAC-SHA256 keyed with `key` of
    /// everything so far (RFC 8489 §14.6). Add only FINGERPRINT after it.
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) -> Result<(), BufferTooSmall> {
        let at = self.len;
        self.reserve(attr_type::MESSAGE_INTEGRITY_SHA256, SHA256_LEN)?;
        let mac = integrity::hmac_sha256(key, self.covered(at, SHA256_LEN)?);
        put(self.buf, at + 4, &mac);
        Ok(())
    }

    /// Appends FINGERPRINT (RFC 8489 §14.7). It must be the last attribute.
    pub fn add_fingerprint(&mut self) -> Result<(), BufferTooSmall> {
        let at = self.len;
        self.reserve(attr_type::FINGERPRINT, 4)?;
        let crc = integrity::fingerprint(self.covered(at, 4)?);
        put(self.buf, at + 4, &crc.to_be_bytes());
        Ok(())
    }

    /// Bytes written so far: the header and every attribute with its padding.
    #[allow(
        clippy::len_without_is_empty,
        reason = "a message always has its header"
    )]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The message so far; it is complete and parses after every call.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Ends the message; returns its length in bytes.
    pub fn finish(self) -> usize {
        self.len
    }

    /// Writes the TLV header and padding of an attribute with a `len`-byte value, updates the
    /// header's length, and returns the value's bytes to fill.
    fn reserve(&mut self, typ: u16, len: usize) -> Result<&mut [u8], BufferTooSmall> {
        let wire_len = u16::try_from(len).map_err(|_| BufferTooSmall)?;
        let start = self.len + 4;
        let value_end = start + len;
        // Values are padded to a multiple of 4 bytes (RFC 8489 §14).
        let end = (value_end + 3) & !3;
        if end > MAX_LEN {
            return Err(BufferTooSmall);
        }
        let tlv = self.buf.get_mut(self.len..end).ok_or(BufferTooSmall)?;
        put(tlv, 0, &typ.to_be_bytes());
        put(tlv, 2, &wire_len.to_be_bytes());
        if let Some(padding) = tlv.get_mut(4 + len..) {
            padding.fill(self.padding);
        }
        self.len = end;
        // `end <= MAX_LEN`, so the body length fits in 16 bits.
        let body = u16::try_from(end - HEADER_LEN).map_err(|_| BufferTooSmall)?;
        put(self.buf, field::LENGTH.start, &body.to_be_bytes());
        self.buf.get_mut(start..value_end).ok_or(BufferTooSmall)
    }

    /// The input of an integrity attribute just reserved at `at`.
    fn covered(&self, at: usize, value_len: usize) -> Result<Covered<'_>, BufferTooSmall> {
        Covered::new(self.as_bytes(), at, value_len).ok_or(BufferTooSmall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Software, Username};
    use crate::header::{Method, TransactionId};

    const TY: MessageType = MessageType::new(Class::Request, Method::BINDING);
    const HDR: Header = Header::new(TransactionId([1; 12]));

    #[test]
    fn header_and_padding() {
        let mut buf = [0xffu8; 64];
        let mut b = MessageBuilder::new(&mut buf, TY, HDR).expect("fits");
        b.add(&Software("abcde")).expect("fits");
        b.pad_with(b' ');
        b.add(&Username("x")).expect("fits");
        let len = b.finish();
        assert_eq!(len, 20 + 12 + 8);
        assert_eq!(&buf[..4], &[0x00, 0x01, 0x00, 20]);
        assert_eq!(&buf[4..8], &[0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&buf[20..32], b"\x80\x22\x00\x05abcde\0\0\0");
        assert_eq!(&buf[32..40], b"\x00\x06\x00\x01x   ");
    }

    #[test]
    fn too_small() {
        let mut buf = [0u8; 19];
        assert!(MessageBuilder::new(&mut buf, TY, HDR).is_err());
        let mut buf = [0u8; 27];
        let mut b = MessageBuilder::new(&mut buf, TY, HDR).expect("fits");
        assert_eq!(b.add(&Username("abcd")), Err(BufferTooSmall));
        assert_eq!(b.add_fingerprint(), Err(BufferTooSmall));
        assert_eq!(b.len(), 20);
        let mut big = vec![0u8; 70_000];
        let mut b = MessageBuilder::new(&mut big, TY, HDR).expect("fits");
        assert_eq!(b.add_raw(1, &[0; 65_536]), Err(BufferTooSmall));
        assert_eq!(b.add_raw(1, &[0; 65_529]), Err(BufferTooSmall));
        assert_eq!(b.add_raw(1, &[0; 65_528]), Ok(()));
        assert_eq!(b.len(), MAX_LEN);
    }

    #[test]
    fn integrity_then_fingerprint_verify() {
        let mut buf = [0u8; 200];
        let mut b = MessageBuilder::new(&mut buf, TY, HDR).expect("fits");
        b.add(&Username("user")).expect("fits");
        b.add_message_integrity(b"key").expect("fits");
        b.add_message_integrity_sha256(b"key").expect("fits");
        b.add_fingerprint().expect("fits");
        let len = b.finish();
        let m = Message::parse(&buf[..len]).expect("parses");
        assert_eq!(m.verify_integrity(b"key"), Ok(()));
        assert_eq!(m.verify_integrity_sha256(b"key"), Ok(()));
        assert_eq!(m.check_fingerprint(), Ok(()));
        assert!(m.verify_integrity(b"kez").is_err());
        assert!(m.verify_integrity_sha256(b"kez").is_err());
    }
}
