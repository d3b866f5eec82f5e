//! NAT behaviour discovery attributes of RFC 3489 and RFC 5780 (§7.2, §7.5, §7.6). Their
//! addresses (CHANGED-ADDRESS, OTHER-ADDRESS, ...) are in `address.rs`.

use super::turn::int_attribute;
use super::{Attribute, attr_type, exact, put};
use crate::error::AttributeError;
use crate::header::Header;

/// Bits of the CHANGE-REQUEST value's last byte (RFC 5780 §7.2, RFC 3489 §11.2.4).
mod flag {
    pub(super) const CHANGE_IP: u8 = 0x04;
    pub(super) const CHANGE_PORT: u8 = 0x02;
}

/// CHANGE-REQUEST: answer from the other IP and/or port (RFC 5780 §7.2, RFC 3489 §11.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ChangeRequest {
    /// The "A" flag: send the response from a different IP address.
    pub change_ip: bool,
    /// The "B" flag: send the response from a different port.
    pub change_port: bool,
}

impl Attribute<'_> for ChangeRequest {
    const TYPE: u16 = attr_type::CHANGE_REQUEST;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        let [_, _, _, flags] = exact::<4>(value)?;
        Ok(Self {
            change_ip: flags & flag::CHANGE_IP != 0,
            change_port: flags & flag::CHANGE_PORT != 0,
        })
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        let mut flags = 0;
        if self.change_ip {
            flags |= flag::CHANGE_IP;
        }
        if self.change_port {
            flags |= flag::CHANGE_PORT;
        }
        put(out, 0, &[0, 0, 0, flags]);
    }
}

int_attribute!(
    /// RESPONSE-PORT: the port to send the response to, then two padding bytes
    /// (RFC 5780 §7.5).
    ResponsePort(u16), attr_type::RESPONSE_PORT, 4
);

/// PADDING: bytes that make the response larger, to probe fragmentation (RFC 5780 §7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Padding<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Padding<'a> {
    const TYPE: u16 = attr_type::PADDING;

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
    fn round_trips() {
        round_trip(
            &ChangeRequest {
                change_ip: true,
                change_port: true,
            },
            &[0, 0, 0, 6],
        );
        round_trip(
            &ChangeRequest {
                change_ip: false,
                change_port: true,
            },
            &[0, 0, 0, 2],
        );
        round_trip(&ResponsePort(3479), &[0x0d, 0x97, 0, 0]);
        round_trip(&Padding(&[0; 12]), &[0; 12]);
        assert_eq!(
            ChangeRequest::decode(&[0, 6], &HEADER),
            Err(AttributeError::BadLength)
        );
    }
}
