//! A zero-copy, validated view of a STUN message (RFC 8489 §5, §14; RFC 3489 §11).
//!
//! [`Message::parse`] checks the header and walks every attribute's TLV header once; after
//! that no accessor can panic, and typed values are decoded only when asked for.

use subtle::ConstantTimeEq;

use crate::attributes::{Attribute, MessageIntegritySha256, attr_type, read_u16};
use crate::error::{AttributeError, IntegrityError, ParseError};
use crate::header::{
    Class, HEADER_LEN, Header, MAGIC_COOKIE, MessageType, Method, TransactionId, field,
};
use crate::integrity::{self, Covered, SHA1_LEN};

/// A parsed STUN message borrowing its buffer.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Exactly the message: header plus the length the header gives.
    bytes: &'a [u8],
    message_type: MessageType,
    /// Offsets of the TLV headers of the first MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT that count (see [`Scope`]).
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

impl<'a> Message<'a> {
    /// Validates the header (top two bits zero, length a multiple of 4, `buf.len() >= 20 +
    /// length`) and walks every attribute header (TLV lengths and 4-byte padding within
    /// bounds). Bytes past `20 + length` are not part of the message ([`len`](Self::len) says
    /// how many are).
    ///
    /// Messages without the magic cookie (classic RFC 3489) parse the same way.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        let ty = read_u16(buf, field::TYPE.start).ok_or(ParseError::TooShort)?;
        let message_type = MessageType::from_u16(ty).ok_or(ParseError::NotStun)?;
        let len = read_u16(buf, field::LENGTH.start).ok_or(ParseError::TooShort)?;
        let len = usize::from(len);
        if !len.is_multiple_of(4) {
            return Err(ParseError::BadLength);
        }
        let bytes = buf.get(..HEADER_LEN + len).ok_or(ParseError::BadLength)?;

        let mut message = Self {
            bytes,
            message_type,
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        let mut scope = Scope::default();
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let (typ, _, next) = tlv(bytes, at).ok_or(ParseError::TruncatedAttribute)?;
            if scope.admit(typ) {
                let slot = match typ {
                    attr_type::MESSAGE_INTEGRITY => &mut message.integrity,
                    attr_type::MESSAGE_INTEGRITY_SHA256 => &mut message.integrity_sha256,
                    attr_type::FINGERPRINT => &mut message.fingerprint,
                    _ => {
                        at = next;
                        continue;
                    }
                };
                slot.get_or_insert(at);
            }
            at = next;
        }
        Ok(message)
    }

    /// Length of the message in bytes: 20 plus the header's length field.
    #[allow(clippy::len_without_is_empty, reason = "a message is never empty")]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The message's bytes, exactly [`len`](Self::len) of them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Class and method.
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The class: request, indication or response.
    pub fn class(&self) -> Class {
        self.message_type.class
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.message_type.method
    }

    /// Bytes 4..8: the magic cookie, or part of an RFC 3489 transaction id.
    pub fn cookie(&self) -> [u8; 4] {
        self.bytes
            .get(field::COOKIE)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default()
    }

    /// Whether the cookie is 0x2112A442; `false` means a classic RFC 3489 peer.
    pub fn has_magic_cookie(&self) -> bool {
        u32::from_be_bytes(self.cookie()) == MAGIC_COOKIE
    }

    /// The 96-bit transaction id (bytes 8..20).
    pub fn transaction_id(&self) -> TransactionId {
        TransactionId(
            self.bytes
                .get(field::TRANSACTION_ID)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        )
    }

    /// Cookie and transaction id, as attribute codecs and responses need them.
    pub fn header(&self) -> Header {
        Header {
            cookie: self.cookie(),
            transaction_id: self.transaction_id(),
        }
    }

    /// The attributes in wire order, without those RFC 8489 §14.5 to §14.7 say to ignore:
    /// after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
    /// MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, and nothing after FINGERPRINT.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            at: HEADER_LEN,
            scope: Scope::default(),
        }
    }

    /// The first attribute of type `typ`, as raw bytes.
    pub fn raw_attribute(&self, typ: u16) -> Option<RawAttribute<'a>> {
        self.attributes().find(|a| a.typ == typ)
    }

    /// The first attribute of type `A`, decoded; `None` if absent (RFC 8489 §14: only the
    /// first occurrence needs processing).
    pub fn attribute<A: Attribute<'a>>(&self) -> Option<Result<A, AttributeError>> {
        let raw = self.raw_attribute(A::TYPE)?;
        Some(A::decode(raw.value, &self.header()))
    }

    /// Comprehension-required attribute types (0x0000..=0x7FFF) not in `known`, in wire
    /// order, for a 420 response's UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1). A type repeated in
    /// the message is yielded each time.
    pub fn unknown_comprehension_required<'k>(
        &self,
        known: &'k [u16],
    ) -> impl Iterator<Item = u16> + use<'a, 'k> {
        self.attributes()
            .map(|a| a.typ)
            .filter(move |t| attr_type::is_comprehension_required(*t) && !known.contains(t))
    }

    /// Checks FINGERPRINT (RFC 8489 §14.7).
    pub fn check_fingerprint(&self) -> Result<(), IntegrityError> {
        let (at, value) = self.located(self.fingerprint)?;
        let expected: [u8; 4] = value.try_into().map_err(|_| IntegrityError::Malformed)?;
        let covered = Covered::new(self.bytes, at, 4).ok_or(IntegrityError::Malformed)?;
        if integrity::fingerprint(covered) == u32::from_be_bytes(expected) {
            Ok(())
        } else {
            Err(IntegrityError::Mismatch)
        }
    }

    /// Checks MESSAGE-INTEGRITY, the HMAC-SHA1 keyed with `key` (RFC 8489 §14.5). See
    /// `crate::credentials` for the short- and long-term keys.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), IntegrityError> {
        let (at, value) = self.located(self.integrity)?;
        if value.len() != SHA1_LEN {
            return Err(IntegrityError::Malformed);
        }
        let covered = Covered::new(self.bytes, at, SHA1_LEN).ok_or(IntegrityError::Malformed)?;
        constant_time_eq(&integrity::hmac_sha1(key, covered), value)
    }

    /// Checks MESSAGE-INTEGRITY-SHA256, the HMAC-SHA256 keyed with `key`, which may be
    /// truncated to 16..=32 bytes (RFC 8489 §14.6).
    pub fn verify_integrity_sha256(&self, key: &[u8]) -> Result<(), IntegrityError> {
        let (at, value) = self.located(self.integrity_sha256)?;
        if !MessageIntegritySha256::valid_len(value.len()) {
            return Err(IntegrityError::Malformed);
        }
        let covered = Covered::new(self.bytes, at, value.len()).ok_or(IntegrityError::Malformed)?;
        let mac = integrity::hmac_sha256(key, covered);
        constant_time_eq(mac.get(..value.len()).unwrap_or_default(), value)
    }

    /// Offset and value of an attribute recorded by `parse`.
    fn located(&self, at: Option<usize>) -> Result<(usize, &'a [u8]), IntegrityError> {
        let at = at.ok_or(IntegrityError::Absent)?;
        let (_, value, _) = tlv_value(self.bytes, at).ok_or(IntegrityError::Malformed)?;
        Ok((at, value))
    }
}

/// Compares MACs in constant time, so the time taken leaks nothing about the expected value.
fn constant_time_eq(computed: &[u8], received: &[u8]) -> Result<(), IntegrityError> {
    if computed.len() == received.len() && bool::from(computed.ct_eq(received)) {
        Ok(())
    } else {
        Err(IntegrityError::Mismatch)
    }
}

/// One attribute as it is on the wire, without its padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// Attribute type.
    pub typ: u16,
    /// Value, `length` bytes.
    pub value: &'a [u8],
}

/// Iterator over a message's attributes; see [`Message::attributes`].
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    at: usize,
    scope: Scope,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        loop {
            // `parse` walked these TLVs already, so this only stops at the end.
            let (typ, value, next) = tlv_value(self.bytes, self.at)?;
            self.at = next;
            if self.scope.admit(typ) {
                return Some(RawAttribute { typ, value });
            }
        }
    }
}

/// Which attributes count, given those before them (RFC 8489 §14.5, §14.6, §14.7).
#[derive(Clone, Copy, Debug, Default)]
struct Scope {
    after_integrity: bool,
    after_integrity_sha256: bool,
    after_fingerprint: bool,
}

impl Scope {
    fn admit(&mut self, typ: u16) -> bool {
        if self.after_fingerprint {
            return false;
        }
        match typ {
            attr_type::FINGERPRINT => {
                self.after_fingerprint = true;
                true
            }
            attr_type::MESSAGE_INTEGRITY_SHA256 if !self.after_integrity_sha256 => {
                self.after_integrity_sha256 = true;
                true
            }
            _ if self.after_integrity || self.after_integrity_sha256 => false,
            attr_type::MESSAGE_INTEGRITY => {
                self.after_integrity = true;
                true
            }
            _ => true,
        }
    }
}

/// Offsets inside an attribute's TLV header (RFC 8489 §14, Figure 4).
mod tlv_field {
    pub(super) const TYPE: usize = 0;
    pub(super) const LENGTH: usize = 2;
    pub(super) const VALUE: usize = 4;
}

/// Reads the TLV at `at`: type, value length and where the next TLV starts (after padding).
/// `None` if the TLV and its padding do not fit in `bytes`.
fn tlv(bytes: &[u8], at: usize) -> Option<(u16, usize, usize)> {
    let typ = read_u16(bytes, at + tlv_field::TYPE)?;
    let len = usize::from(read_u16(bytes, at + tlv_field::LENGTH)?);
    // Values are padded to a multiple of 4 bytes (RFC 8489 §14).
    let next = at + tlv_field::VALUE + ((len + 3) & !3);
    (next <= bytes.len()).then_some((typ, len, next))
}

fn tlv_value(bytes: &[u8], at: usize) -> Option<(u16, &[u8], usize)> {
    let (typ, len, next) = tlv(bytes, at)?;
    let start = at + tlv_field::VALUE;
    Some((typ, bytes.get(start..start + len)?, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(attrs: &[u8]) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        m.extend_from_slice(attrs);
        let len = u16::try_from(attrs.len()).expect("small");
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    #[test]
    fn header_errors() {
        assert_eq!(Message::parse(&[0; 19]).err(), Some(ParseError::TooShort));
        let mut m = binding_request(&[]);
        m[0] = 0x80;
        assert_eq!(Message::parse(&m).err(), Some(ParseError::NotStun));
        let mut m = binding_request(&[]);
        m[3] = 2;
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadLength));
        m[3] = 4;
        assert_eq!(Message::parse(&m).err(), Some(ParseError::BadLength));
    }

    #[test]
    fn truncated_attribute() {
        // Length 5 needs 8 bytes with padding; only 4 are there.
        let m = binding_request(&[0x80, 0x22, 0, 5, b'a', b'b', b'c', b'd']);
        assert_eq!(
            Message::parse(&m).err(),
            Some(ParseError::TruncatedAttribute)
        );
    }

    #[test]
    fn trailing_bytes_are_not_the_message() {
        let mut m = binding_request(&[0x80, 0x22, 0, 1, b'a', 0, 0, 0]);
        m.extend_from_slice(&[0xde, 0xad]);
        let msg = Message::parse(&m).expect("valid");
        assert_eq!(msg.len(), 28);
        assert_eq!(msg.as_bytes(), &m[..28]);
        assert_eq!(msg.class(), Class::Request);
        assert_eq!(msg.method(), Method::BINDING);
        assert!(msg.has_magic_cookie());
        assert_eq!(
            msg.transaction_id(),
            TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        );
        let a: Vec<_> = msg.attributes().collect();
        assert_eq!(
            a,
            [RawAttribute {
                typ: 0x8022,
                value: b"a"
            }]
        );
    }

    #[test]
    fn rfc3489_cookie_parses() {
        let mut m = binding_request(&[]);
        m[4..8].copy_from_slice(&[9, 9, 9, 9]);
        let msg = Message::parse(&m).expect("RFC 3489 request");
        assert!(!msg.has_magic_cookie());
        assert_eq!(msg.cookie(), [9, 9, 9, 9]);
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut attrs = vec![0x00, 0x06, 0, 4, b'u', b's', b'e', b'r'];
        attrs.extend_from_slice(&[0x00, 0x08, 0, 20]);
        attrs.extend_from_slice(&[0; 20]);
        attrs.extend_from_slice(&[0x80, 0x22, 0, 4, b'x', b'x', b'x', b'x']); // ignored
        attrs.extend_from_slice(&[0x00, 0x1c, 0, 32]);
        attrs.extend_from_slice(&[0; 32]);
        attrs.extend_from_slice(&[0x00, 0x08, 0, 20]); // ignored: after the SHA-256 one
        attrs.extend_from_slice(&[0; 20]);
        attrs.extend_from_slice(&[0x80, 0x28, 0, 4, 0, 0, 0, 0]);
        attrs.extend_from_slice(&[0x80, 0x22, 0, 4, b'y', b'y', b'y', b'y']); // ignored
        let m = binding_request(&attrs);
        let msg = Message::parse(&m).expect("valid");
        let types: Vec<_> = msg.attributes().map(|a| a.typ).collect();
        assert_eq!(types, [0x0006, 0x0008, 0x001c, 0x8028]);
        assert!(msg.raw_attribute(0x8022).is_none());
        assert_eq!(msg.integrity, Some(28));
        assert_eq!(msg.integrity_sha256, Some(60));
        assert_eq!(msg.fingerprint, Some(120));
    }

    #[test]
    fn unknown_comprehension_required() {
        let m = binding_request(&[
            0x00, 0x24, 0, 4, 1, 2, 3, 4, // PRIORITY
            0x80, 0x22, 0, 0, // SOFTWARE, optional
            0x7f, 0xff, 0, 0, // unknown, required
        ]);
        let msg = Message::parse(&m).expect("valid");
        let unknown: Vec<_> = msg.unknown_comprehension_required(&[0x0024]).collect();
        assert_eq!(unknown, [0x7fff]);
    }

    #[test]
    fn integrity_absent_and_malformed() {
        let msg_bytes = binding_request(&[0x00, 0x08, 0, 4, 0, 0, 0, 0]);
        let msg = Message::parse(&msg_bytes).expect("valid");
        assert_eq!(msg.verify_integrity(b"k"), Err(IntegrityError::Malformed));
        assert_eq!(
            msg.verify_integrity_sha256(b"k"),
            Err(IntegrityError::Absent)
        );
        assert_eq!(msg.check_fingerprint(), Err(IntegrityError::Absent));
    }
}
