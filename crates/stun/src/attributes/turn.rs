//! TURN attributes (RFC 8656 §18, RFC 6062 §6.2, RFC 6156). The XOR'ed addresses are in
//! `address.rs`, ADDRESS-ERROR-CODE in `error_code.rs`.

use super::{Attribute, attr_type, exact, put};
use crate::error::AttributeError;
use crate::header::Header;

/// An IP address family as TURN encodes it (RFC 8656 §18.6): 0x01 IPv4, 0x02 IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 (0x01).
    V4,
    /// IPv6 (0x02).
    V6,
}

impl AddressFamily {
    pub(crate) fn from_u8(v: u8) -> Result<Self, AttributeError> {
        match v {
            0x01 => Ok(Self::V4),
            0x02 => Ok(Self::V6),
            _ => Err(AttributeError::BadFamily),
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::V4 => 0x01,
            Self::V6 => 0x02,
        }
    }
}

/// Defines an attribute whose value is one big-endian integer, padded with zero RFFU bytes
/// to `$len` (RFC 8656 §18.1, §18.2; RFC 6062 §6.2.1; RFC 8445 §16.1).
macro_rules! int_attribute {
    ($(#[$doc:meta])* $name:ident($int:ty), $typ:expr, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub $int);

        impl Attribute<'_> for $name {
            const TYPE: u16 = $typ;

            fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
                const N: usize = core::mem::size_of::<$int>();
                let v: [u8; $len] = exact(value)?;
                let int: [u8; N] = v[..N].try_into().map_err(|_| AttributeError::BadLength)?;
                Ok(Self(<$int>::from_be_bytes(int)))
            }

            fn encoded_len(&self) -> usize {
                $len
            }

            fn encode(&self, out: &mut [u8], _: &Header) {
                let mut v = [0u8; $len];
                let int = self.0.to_be_bytes();
                v[..int.len()].copy_from_slice(&int);
                put(out, 0, &v);
            }
        }
    };
}
pub(crate) use int_attribute;

int_attribute!(
    /// CHANNEL-NUMBER: the channel in 0x4000..=0x4FFF, then two RFFU bytes (RFC 8656 §18.1).
    ChannelNumber(u16), attr_type::CHANNEL_NUMBER, 4
);
int_attribute!(
    /// LIFETIME: seconds until the allocation expires (RFC 8656 §18.2).
    Lifetime(u32), attr_type::LIFETIME, 4
);
int_attribute!(
    /// CONNECTION-ID: identifies a TCP peer connection (RFC 6062 §6.2.1).
    ConnectionId(u32), attr_type::CONNECTION_ID, 4
);

/// Defines an attribute holding one address family and three RFFU bytes (RFC 8656 §18.6,
/// §18.11).
macro_rules! family_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub AddressFamily);

        impl Attribute<'_> for $name {
            const TYPE: u16 = $typ;

            fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
                let [family, ..] = exact::<4>(value)?;
                AddressFamily::from_u8(family).map(Self)
            }

            fn encoded_len(&self) -> usize {
                4
            }

            fn encode(&self, out: &mut [u8], _: &Header) {
                put(out, 0, &[self.0.to_u8(), 0, 0, 0]);
            }
        }
    };
}

family_attribute!(
    /// REQUESTED-ADDRESS-FAMILY: the family of relayed address wanted (RFC 8656 §18.6,
    /// RFC 6156). An unknown family decodes as `BadFamily`, which the server answers with 440.
    RequestedAddressFamily, attr_type::REQUESTED_ADDRESS_FAMILY
);
family_attribute!(
    /// ADDITIONAL-ADDRESS-FAMILY: ask for an IPv6 relayed address as well (RFC 8656 §18.11).
    AdditionalAddressFamily, attr_type::ADDITIONAL_ADDRESS_FAMILY
);

/// DATA: the application data of a Send or Data indication (RFC 8656 §18.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Data<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Data<'a> {
    const TYPE: u16 = attr_type::DATA;

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

/// EVEN-PORT: ask for an even relayed port, and optionally reserve the next one
/// (RFC 8656 §18.7). One byte: the R bit, then seven RFFU bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EvenPort {
    /// The R bit: reserve the next-higher port too.
    pub reserve: bool,
}

impl Attribute<'_> for EvenPort {
    const TYPE: u16 = attr_type::EVEN_PORT;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        let [flags] = exact::<1>(value)?;
        Ok(Self {
            reserve: flags & 0x80 != 0,
        })
    }

    fn encoded_len(&self) -> usize {
        1
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &[if self.reserve { 0x80 } else { 0 }]);
    }
}

/// REQUESTED-TRANSPORT: the IP protocol for the relayed address, then three RFFU bytes
/// (RFC 8656 §18.8; TCP from RFC 6062).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestedTransport(pub u8);

impl RequestedTransport {
    /// TCP, IANA protocol 6 (RFC 6062).
    pub const TCP: Self = Self(6);
    /// UDP, IANA protocol 17.
    pub const UDP: Self = Self(17);
}

impl Attribute<'_> for RequestedTransport {
    const TYPE: u16 = attr_type::REQUESTED_TRANSPORT;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        let [protocol, ..] = exact::<4>(value)?;
        Ok(Self(protocol))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &[self.0, 0, 0, 0]);
    }
}

/// Defines an attribute with an empty value whose presence is the information.
macro_rules! flag_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name;

        impl Attribute<'_> for $name {
            const TYPE: u16 = $typ;

            fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
                exact::<0>(value).map(|_| Self)
            }

            fn encoded_len(&self) -> usize {
                0
            }

            fn encode(&self, _: &mut [u8], _: &Header) {}
        }
    };
}
pub(crate) use flag_attribute;

flag_attribute!(
    /// DONT-FRAGMENT: set the DF bit on packets to the peer (RFC 8656 §18.9).
    DontFragment, attr_type::DONT_FRAGMENT
);

/// RESERVATION-TOKEN: names a port reserved by EVEN-PORT (RFC 8656 §18.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservationToken(pub [u8; 8]);

impl Attribute<'_> for ReservationToken {
    const TYPE: u16 = attr_type::RESERVATION_TOKEN;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        exact(value).map(Self)
    }

    fn encoded_len(&self) -> usize {
        8
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        put(out, 0, &self.0);
    }
}

/// ICMP: an ICMP error received from the peer, relayed in a Data indication (RFC 8656 §18.13).
/// Two reserved bytes, type, code, then four bytes of error data (the MTU for
/// "packet too big").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Icmp {
    /// ICMP (or ICMPv6) type.
    pub icmp_type: u8,
    /// ICMP (or ICMPv6) code.
    pub icmp_code: u8,
    /// Error data.
    pub error_data: u32,
}

impl Attribute<'_> for Icmp {
    const TYPE: u16 = attr_type::ICMP;

    fn decode(value: &[u8], _: &Header) -> Result<Self, AttributeError> {
        let [_, _, icmp_type, icmp_code, d0, d1, d2, d3] = exact::<8>(value)?;
        Ok(Self {
            icmp_type,
            icmp_code,
            error_data: u32::from_be_bytes([d0, d1, d2, d3]),
        })
    }

    fn encoded_len(&self) -> usize {
        8
    }

    fn encode(&self, out: &mut [u8], _: &Header) {
        let d = self.error_data.to_be_bytes();
        put(
            out,
            0,
            &[0, 0, self.icmp_type, self.icmp_code, d[0], d[1], d[2], d[3]],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::{HEADER, round_trip};

    #[test]
    fn round_trips() {
        round_trip(&ChannelNumber(0x4001), &[0x40, 0x01, 0, 0]);
        round_trip(&Lifetime(600), &[0, 0, 0x02, 0x58]);
        round_trip(&ConnectionId(0xdeadbeef), &[0xde, 0xad, 0xbe, 0xef]);
        round_trip(&RequestedAddressFamily(AddressFamily::V6), &[2, 0, 0, 0]);
        round_trip(&AdditionalAddressFamily(AddressFamily::V6), &[2, 0, 0, 0]);
        round_trip(&EvenPort { reserve: true }, &[0x80]);
        round_trip(&RequestedTransport::UDP, &[17, 0, 0, 0]);
        round_trip(&DontFragment, &[]);
        round_trip(
            &ReservationToken([1, 2, 3, 4, 5, 6, 7, 8]),
            &[1, 2, 3, 4, 5, 6, 7, 8],
        );
        round_trip(&Data(b"hello"), b"hello");
        round_trip(
            &Icmp {
                icmp_type: 3,
                icmp_code: 4,
                error_data: 1400,
            },
            &[0, 0, 3, 4, 0, 0, 0x05, 0x78],
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(
            ChannelNumber::decode(&[0x40, 0x01], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            RequestedAddressFamily::decode(&[3, 0, 0, 0], &HEADER),
            Err(AttributeError::BadFamily)
        );
        assert_eq!(
            DontFragment::decode(&[0], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            EvenPort::decode(&[], &HEADER),
            Err(AttributeError::BadLength)
        );
    }
}
