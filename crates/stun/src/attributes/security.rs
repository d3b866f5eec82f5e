//! Attributes of authentication and integrity (RFC 8489 §14.4 to §14.7, §14.11, §14.12).
//!
//! These types only carry the values; computing and checking them is `integrity.rs`'s job
//! (`MessageBuilder::add_message_integrity`, `Message::verify_integrity`, ...).

use super::{Attribute, attr_type, exact, put, read_u16};
use crate::error::AttributeError;
use crate::header::Header;

/// MESSAGE-INTEGRITY: HMAC-SHA1 of the message up to this attribute (RFC 8489 §14.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageIntegrity(pub [u8; 20]);

impl Attribute<'_> for MessageIntegrity {
    const TYPE: u16 = attr_type::MESSAGE_INTEGRITY;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        exact(value).map(Self)
    }

    fn encoded_len(&self) -> usize {
        20
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &self.0);
    }
}

/// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256 of the message up to this attribute, possibly
/// truncated to 16..=32 bytes in steps of 4 (RFC 8489 §14.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageIntegritySha256<'a>(pub &'a [u8]);

impl MessageIntegritySha256<'_> {
    /// Whether `len` is a length RFC 8489 §14.6 allows.
    pub(crate) fn valid_len(len: usize) -> bool {
        (16..=32).contains(&len) && len.is_multiple_of(4)
    }
}

impl<'a> Attribute<'a> for MessageIntegritySha256<'a> {
    const TYPE: u16 = attr_type::MESSAGE_INTEGRITY_SHA256;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        if !Self::valid_len(value.len()) {
            return Err(AttributeError::BadLength);
        }
        Ok(Self(value))
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, self.0);
    }
}

/// FINGERPRINT: CRC-32 of the message up to this attribute, XOR 0x5354554e (RFC 8489 §14.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u32);

impl Attribute<'_> for Fingerprint {
    const TYPE: u16 = attr_type::FINGERPRINT;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        exact(value).map(|b| Self(u32::from_be_bytes(b)))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &self.0.to_be_bytes());
    }
}

/// USERHASH: SHA-256 of the username and realm, sent instead of USERNAME for anonymity
/// (RFC 8489 §14.4). See [`crate::userhash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Userhash(pub [u8; 32]);

impl Attribute<'_> for Userhash {
    const TYPE: u16 = attr_type::USERHASH;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        exact(value).map(Self)
    }

    fn encoded_len(&self) -> usize {
        32
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &self.0);
    }
}

/// Offsets inside one password-algorithm entry (RFC 8489 §14.11, §14.12).
mod field {
    pub(super) const ALGORITHM: usize = 0;
    pub(super) const PARAMETERS_LENGTH: usize = 2;
    pub(super) const PARAMETERS: usize = 4;
}

const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// PASSWORD-ALGORITHM: the algorithm the client chose for the long-term key
/// (RFC 8489 §14.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PasswordAlgorithm<'a> {
    /// Algorithm number (IANA "STUN Password Algorithms"): [`Self::MD5`] or [`Self::SHA256`].
    pub algorithm: u16,
    /// Algorithm parameters; empty for MD5 and SHA-256.
    pub parameters: &'a [u8],
}

impl PasswordAlgorithm<'_> {
    /// MD5 (RFC 8489 §18.5.1.1).
    pub const MD5: u16 = 0x0001;
    /// SHA-256 (RFC 8489 §18.5.1.2).
    pub const SHA256: u16 = 0x0002;
}

impl<'a> PasswordAlgorithm<'a> {
    /// Reads one entry from the front of `b`; returns it and the bytes it took with padding
    /// (clamped to `b`, as the attribute's own padding may stand in for the last entry's).
    fn read(b: &'a [u8]) -> Result<(Self, usize), AttributeError> {
        let algorithm = read_u16(b, field::ALGORITHM).ok_or(AttributeError::BadLength)?;
        let len = read_u16(b, field::PARAMETERS_LENGTH).ok_or(AttributeError::BadLength)?;
        let len = usize::from(len);
        let parameters = b
            .get(field::PARAMETERS..field::PARAMETERS + len)
            .ok_or(AttributeError::BadLength)?;
        let taken = (field::PARAMETERS + padded(len)).min(b.len());
        Ok((
            Self {
                algorithm,
                parameters,
            },
            taken,
        ))
    }

    fn write(&self, out: &mut [u8], at: usize) {
        put(out, at + field::ALGORITHM, &self.algorithm.to_be_bytes());
        // Parameters longer than 65535 bytes cannot be encoded; the length field saturates.
        let len = u16::try_from(self.parameters.len()).unwrap_or(u16::MAX);
        put(out, at + field::PARAMETERS_LENGTH, &len.to_be_bytes());
        put(out, at + field::PARAMETERS, self.parameters);
    }
}

impl<'a> Attribute<'a> for PasswordAlgorithm<'a> {
    const TYPE: u16 = attr_type::PASSWORD_ALGORITHM;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        let (alg, taken) = Self::read(value)?;
        if taken != value.len() {
            return Err(AttributeError::BadLength);
        }
        Ok(alg)
    }

    fn encoded_len(&self) -> usize {
        field::PARAMETERS + self.parameters.len()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        self.write(out, 0);
    }
}

/// PASSWORD-ALGORITHMS: the algorithms the server supports, in its order of preference
/// (RFC 8489 §14.11).
///
/// Holds either the validated wire bytes or a caller's list, so neither allocates.
#[derive(Clone, Copy, Debug)]
pub struct PasswordAlgorithms<'a>(Repr<'a>);

#[derive(Clone, Copy, Debug)]
enum Repr<'a> {
    Wire(&'a [u8]),
    List(&'a [PasswordAlgorithm<'a>]),
}

impl<'a> PasswordAlgorithms<'a> {
    /// A list to encode.
    pub const fn new(algorithms: &'a [PasswordAlgorithm<'a>]) -> Self {
        Self(Repr::List(algorithms))
    }

    /// The algorithms, in order.
    pub fn iter(&self) -> PasswordAlgorithmsIter<'a> {
        PasswordAlgorithmsIter {
            repr: self.0,
            at: 0,
        }
    }
}

impl PartialEq for PasswordAlgorithms<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PasswordAlgorithms<'_> {}

impl<'a> IntoIterator for &PasswordAlgorithms<'a> {
    type Item = PasswordAlgorithm<'a>;
    type IntoIter = PasswordAlgorithmsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`PasswordAlgorithms`].
#[derive(Clone, Debug)]
pub struct PasswordAlgorithmsIter<'a> {
    repr: Repr<'a>,
    at: usize,
}

impl<'a> Iterator for PasswordAlgorithmsIter<'a> {
    type Item = PasswordAlgorithm<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.repr {
            Repr::Wire(b) => {
                // `decode` walked these bytes already, so `read` only fails at the end.
                let (alg, taken) = PasswordAlgorithm::read(b.get(self.at..)?).ok()?;
                self.at += taken;
                Some(alg)
            }
            Repr::List(l) => {
                let alg = *l.get(self.at)?;
                self.at += 1;
                Some(alg)
            }
        }
    }
}

impl<'a> Attribute<'a> for PasswordAlgorithms<'a> {
    const TYPE: u16 = attr_type::PASSWORD_ALGORITHMS;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        let mut rest = value;
        while !rest.is_empty() {
            let (_, taken) = PasswordAlgorithm::read(rest)?;
            rest = rest.get(taken..).unwrap_or_default();
        }
        Ok(Self(Repr::Wire(value)))
    }

    fn encoded_len(&self) -> usize {
        self.iter()
            .map(|a| field::PARAMETERS + padded(a.parameters.len()))
            .sum()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        let mut at = 0;
        for alg in self.iter() {
            let end = at + field::PARAMETERS + padded(alg.parameters.len());
            // Zero the entry's padding: RFC 8489 §14 wants zero padding bits on sending.
            if let Some(entry) = out.get_mut(at..end) {
                entry.fill(0);
            }
            alg.write(out, at);
            at = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::{HEADER, round_trip};

    #[test]
    fn fixed_sizes() {
        round_trip(&MessageIntegrity([7; 20]), &[7; 20]);
        round_trip(&Userhash([9; 32]), &[9; 32]);
        round_trip(&Fingerprint(0xe57a3bcf), &[0xe5, 0x7a, 0x3b, 0xcf]);
        round_trip(&MessageIntegritySha256(&[1; 16]), &[1; 16]);
        assert_eq!(
            MessageIntegritySha256::decode(&[1; 18], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            MessageIntegritySha256::decode(&[1; 36], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            MessageIntegrity::decode(&[1; 19], &HEADER),
            Err(AttributeError::BadLength)
        );
    }

    #[test]
    fn password_algorithm() {
        round_trip(
            &PasswordAlgorithm {
                algorithm: PasswordAlgorithm::SHA256,
                parameters: &[],
            },
            &[0, 2, 0, 0],
        );
        round_trip(
            &PasswordAlgorithm {
                algorithm: 9,
                parameters: &[1, 2],
            },
            &[0, 9, 0, 2, 1, 2],
        );
        assert_eq!(
            PasswordAlgorithm::decode(&[0, 9, 0, 3, 1, 2], &HEADER),
            Err(AttributeError::BadLength)
        );
    }

    #[test]
    fn password_algorithms() {
        let list = [
            PasswordAlgorithm {
                algorithm: PasswordAlgorithm::SHA256,
                parameters: &[],
            },
            PasswordAlgorithm {
                algorithm: 7,
                parameters: &[0xaa],
            },
            PasswordAlgorithm {
                algorithm: PasswordAlgorithm::MD5,
                parameters: &[],
            },
        ];
        round_trip(
            &PasswordAlgorithms::new(&list),
            &[0, 2, 0, 0, 0, 7, 0, 1, 0xaa, 0, 0, 0, 0, 1, 0, 0],
        );
        // The last entry's padding may be left to the attribute's own padding.
        let d =
            PasswordAlgorithms::decode(&[0, 2, 0, 0, 0, 7, 0, 1, 0xaa], &HEADER).expect("valid");
        assert_eq!(d.iter().count(), 2);
        assert_eq!(
            PasswordAlgorithms::decode(&[0, 2, 0, 4, 0], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            PasswordAlgorithms::decode(&[0, 2, 0], &HEADER),
            Err(AttributeError::BadLength)
        );
    }
}
