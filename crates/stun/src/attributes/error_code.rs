//! ERROR-CODE and UNKNOWN-ATTRIBUTES (RFC 8489 §14.8, §14.9) and TURN's ADDRESS-ERROR-CODE
//! (RFC 8656 §18.12).

use super::turn::AddressFamily;
use super::{Attribute, attr_type, put, read_u16};
use crate::error::AttributeError;
use crate::header::Header;

/// Reason phrases: fewer than 128 characters, up to 763 bytes when decoding (RFC 8489 §14.8).
const MAX_REASON: usize = 763;

/// Offsets shared by ERROR-CODE and ADDRESS-ERROR-CODE: the class (hundreds digit) and the
/// number are kept apart to ease processing (RFC 8489 §14.8).
mod field {
    pub(super) const FAMILY: usize = 0;
    pub(super) const CLASS: usize = 2;
    pub(super) const NUMBER: usize = 3;
    pub(super) const REASON: usize = 4;
}

fn decode_code(value: &[u8]) -> Result<(u16, &str), AttributeError> {
    let (Some(&class), Some(&number)) = (value.get(field::CLASS), value.get(field::NUMBER)) else {
        return Err(AttributeError::BadLength);
    };
    // Reserved bits are ignored on receipt; a number above 99 cannot be a code's last two digits.
    if number > 99 {
        return Err(AttributeError::BadValue);
    }
    let reason = value.get(field::REASON..).unwrap_or_default();
    if reason.len() > MAX_REASON {
        return Err(AttributeError::TooLong);
    }
    let reason = core::str::from_utf8(reason).map_err(|_| AttributeError::BadUtf8)?;
    Ok((u16::from(class & 0x07) * 100 + u16::from(number), reason))
}

fn encode_code(code: u16, reason: &str, out: &mut [u8]) {
    // The class field has 3 bits: codes are 300..=699 (RFC 8489 §14.8).
    let class = ((code / 100) & 0x07) as u8;
    let number = (code % 100) as u8;
    put(out, field::CLASS, &[class, number]);
    put(out, field::REASON, reason.as_bytes());
}

/// ERROR-CODE: a code in 300..=699 and a reason phrase (RFC 8489 §14.8).
///
/// Codes outside 0..=799 cannot be encoded; the class is reduced to its 3 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode<'a> {
    /// The numeric code, e.g. 401.
    pub code: u16,
    /// Diagnostic text.
    pub reason: &'a str,
}

impl ErrorCode<'_> {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 403 Forbidden (RFC 8656).
    pub const FORBIDDEN: u16 = 403;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437 Allocation Mismatch (RFC 8656).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438 Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// 440 Address Family not Supported (RFC 8656).
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
    /// 441 Wrong Credentials (RFC 8656).
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442 Unsupported Transport Protocol (RFC 8656).
    pub const UNSUPPORTED_TRANSPORT_PROTOCOL: u16 = 442;
    /// 443 Peer Address Family Mismatch (RFC 8656).
    pub const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;
    /// 446 Connection Already Exists (RFC 6062).
    pub const CONNECTION_ALREADY_EXISTS: u16 = 446;
    /// 447 Connection Timeout or Failure (RFC 6062).
    pub const CONNECTION_TIMEOUT_OR_FAILURE: u16 = 447;
    /// 486 Allocation Quota Reached (RFC 8656).
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 487 Role Conflict (RFC 8445).
    pub const ROLE_CONFLICT: u16 = 487;
    /// 500 Server Error.
    pub const SERVER_ERROR: u16 = 500;
    /// 508 Insufficient Capacity (RFC 8656).
    pub const INSUFFICIENT_CAPACITY: u16 = 508;
}

impl<'a> Attribute<'a> for ErrorCode<'a> {
    const TYPE: u16 = attr_type::ERROR_CODE;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        let (code, reason) = decode_code(value)?;
        Ok(Self { code, reason })
    }

    fn encoded_len(&self) -> usize {
        field::REASON + self.reason.len()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &[0, 0]);
        encode_code(self.code, self.reason, out);
    }
}

/// ADDRESS-ERROR-CODE: why an allocation of one address family failed (RFC 8656 §18.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressErrorCode<'a> {
    /// The family the error is about.
    pub family: AddressFamily,
    /// The numeric code, e.g. 440.
    pub code: u16,
    /// Diagnostic text.
    pub reason: &'a str,
}

impl<'a> Attribute<'a> for AddressErrorCode<'a> {
    const TYPE: u16 = attr_type::ADDRESS_ERROR_CODE;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        let family = value.get(field::FAMILY).ok_or(AttributeError::BadLength)?;
        let family = AddressFamily::from_u8(*family)?;
        let (code, reason) = decode_code(value)?;
        Ok(Self {
            family,
            code,
            reason,
        })
    }

    fn encoded_len(&self) -> usize {
        field::REASON + self.reason.len()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, field::FAMILY, &[self.family.to_u8(), 0]);
        encode_code(self.code, self.reason, out);
    }
}

/// UNKNOWN-ATTRIBUTES: the comprehension-required types a 420 response did not understand
/// (RFC 8489 §14.9).
///
/// Holds either the wire bytes (decoded) or a caller's list (to build), so neither allocates.
#[derive(Clone, Copy, Debug)]
pub struct UnknownAttributes<'a>(Repr<'a>);

#[derive(Clone, Copy, Debug)]
enum Repr<'a> {
    Wire(&'a [u8]),
    List(&'a [u16]),
}

impl<'a> UnknownAttributes<'a> {
    /// A list to encode.
    pub const fn new(types: &'a [u16]) -> Self {
        Self(Repr::List(types))
    }

    /// The attribute types, in order.
    pub fn iter(&self) -> UnknownAttributesIter<'a> {
        UnknownAttributesIter {
            repr: self.0,
            at: 0,
        }
    }

    /// How many types are listed.
    pub fn len(&self) -> usize {
        match self.0 {
            Repr::Wire(b) => b.len() / 2,
            Repr::List(l) => l.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for UnknownAttributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnknownAttributes<'_> {}

impl<'a> IntoIterator for &UnknownAttributes<'a> {
    type Item = u16;
    type IntoIter = UnknownAttributesIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the types of an [`UnknownAttributes`].
#[derive(Clone, Debug)]
pub struct UnknownAttributesIter<'a> {
    repr: Repr<'a>,
    at: usize,
}

impl Iterator for UnknownAttributesIter<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        let v = match self.repr {
            Repr::Wire(b) => read_u16(b, self.at * 2)?,
            Repr::List(l) => *l.get(self.at)?,
        };
        self.at += 1;
        Some(v)
    }
}

impl<'a> Attribute<'a> for UnknownAttributes<'a> {
    const TYPE: u16 = attr_type::UNKNOWN_ATTRIBUTES;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        if !value.len().is_multiple_of(2) {
            return Err(AttributeError::BadLength);
        }
        Ok(Self(Repr::Wire(value)))
    }

    fn encoded_len(&self) -> usize {
        self.len() * 2
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        for (i, t) in self.iter().enumerate() {
            put(out, i * 2, &t.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::{HEADER, round_trip};

    #[test]
    fn error_code_round_trip() {
        let mut wire = vec![0, 0, 4, 20];
        wire.extend_from_slice(b"Unknown Attribute");
        round_trip(
            &ErrorCode {
                code: 420,
                reason: "Unknown Attribute",
            },
            &wire,
        );
        round_trip(
            &ErrorCode {
                code: 300,
                reason: "",
            },
            &[0, 0, 3, 0],
        );
    }

    #[test]
    fn error_code_rejects() {
        assert_eq!(
            ErrorCode::decode(&[0, 0, 4], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            ErrorCode::decode(&[0, 0, 4, 100], &HEADER),
            Err(AttributeError::BadValue)
        );
        assert_eq!(
            ErrorCode::decode(&[0, 0, 4, 1, 0xc3], &HEADER),
            Err(AttributeError::BadUtf8)
        );
    }

    #[test]
    fn address_error_code_round_trip() {
        let mut wire = vec![2, 0, 4, 40];
        wire.extend_from_slice(b"nope");
        round_trip(
            &AddressErrorCode {
                family: AddressFamily::V6,
                code: 440,
                reason: "nope",
            },
            &wire,
        );
    }

    #[test]
    fn unknown_attributes() {
        let list = [0x0024, 0x0006, 0x0008];
        round_trip(
            &UnknownAttributes::new(&list),
            &[0x00, 0x24, 0x00, 0x06, 0x00, 0x08],
        );
        assert_eq!(
            UnknownAttributes::decode(&[0, 1, 2], &HEADER),
            Err(AttributeError::BadLength)
        );
        let d = UnknownAttributes::decode(&[0, 1, 0x80, 0x22], &HEADER).expect("even");
        assert_eq!(d.iter().collect::<Vec<_>>(), [0x0001, 0x8022]);
        assert_eq!(d.len(), 2);
    }
}
