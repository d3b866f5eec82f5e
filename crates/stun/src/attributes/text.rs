//! Text attributes (RFC 8489 §14.3, §14.9, §14.10, §14.14, §14.16) and the RFC 3489 PASSWORD.
//!
//! Decoding accepts up to the byte limits RFC 8489 sets for receivers (763 bytes, for
//! compatibility with RFC 5389's six-byte UTF-8 arithmetic); longer values are `TooLong`.

use super::{Attribute, attr_type, put};
use crate::error::AttributeError;
use crate::header::Header;

/// What a receiver must accept for USERNAME, REALM, NONCE, SOFTWARE (RFC 8489 §14.3 ff.).
const MAX_TEXT: usize = 763;
/// ALTERNATE-DOMAIN holds a DNS name (RFC 8489 §14.16).
const MAX_DOMAIN: usize = 255;

fn decode_text(value: &[u8], max: usize) -> Result<&str, AttributeError> {
    if value.len() > max {
        return Err(AttributeError::TooLong);
    }
    core::str::from_utf8(value).map_err(|_| AttributeError::BadUtf8)
}

macro_rules! text_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name<'a>(pub &'a str);

        impl<'a> Attribute<'a> for $name<'a> {
            const TYPE: u16 = $typ;

            fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
                decode_text(value, $max).map(Self)
            }

            fn encoded_len(&self) -> usize {
                self.0.len()
            }

            fn encode(&self, out: &mut [u8], _: &Header) {
                put(out, 0, self.0.as_bytes());
            }
        }
    };
}

text_attribute!(
    /// USERNAME: who the message-integrity key belongs to (RFC 8489 §14.3).
    Username, attr_type::USERNAME, MAX_TEXT
);
text_attribute!(
    /// REALM: the long-term credential realm (RFC 8489 §14.9).
    Realm, attr_type::REALM, MAX_TEXT
);
text_attribute!(
    /// NONCE: the server's nonce for long-term credentials (RFC 8489 §14.10).
    Nonce, attr_type::NONCE, MAX_TEXT
);
text_attribute!(
    /// SOFTWARE: a description of the agent's software (RFC 8489 §14.14).
    Software, attr_type::SOFTWARE, MAX_TEXT
);
text_attribute!(
    /// ALTERNATE-DOMAIN: the name to validate the ALTERNATE-SERVER's certificate against
    /// (RFC 8489 §14.16).
    AlternateDomain, attr_type::ALTERNATE_DOMAIN, MAX_DOMAIN
);

/// PASSWORD: a shared-secret password handed out by an RFC 3489 Shared Secret response
/// (RFC 3489 §11.2.7). Opaque bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Password<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Password<'a> {
    const TYPE: u16 = attr_type::PASSWORD;

    fn decode(value: &'a [u8], _: &Header) -> Result<Self, AttributeError> {
        Ok(Self(value))
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::{HEADER, round_trip};

    #[test]
    fn text_round_trip() {
        round_trip(&Username("evtj:h6vY"), b"evtj:h6vY");
        round_trip(&Software("STUN test client"), b"STUN test client");
        round_trip(&Realm("example.org"), b"example.org");
        round_trip(&Password(&[0xff, 0]), &[0xff, 0]);
    }

    #[test]
    fn rejects_bad_utf8_and_long_text() {
        assert_eq!(
            Nonce::decode(&[0xff], &HEADER),
            Err(AttributeError::BadUtf8)
        );
        let long = [b'a'; MAX_TEXT + 1];
        assert_eq!(
            Software::decode(&long, &HEADER),
            Err(AttributeError::TooLong)
        );
        assert!(Software::decode(&long[..MAX_TEXT], &HEADER).is_ok());
        assert_eq!(
            AlternateDomain::decode(&long[..256], &HEADER),
            Err(AttributeError::TooLong)
        );
    }
}
