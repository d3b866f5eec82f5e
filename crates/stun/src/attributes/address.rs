//! Transport-address attributes: the MAPPED-ADDRESS format (RFC 8489 §14.1) and its XOR'ed
//! variant (§14.2), shared by RFC 3489, RFC 5780 and TURN.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Attribute, attr_type, put, read_array, read_u16};
use crate::error::AttributeError;
use crate::header::Header;

/// Offsets inside an address value.
mod field {
    pub(super) const FAMILY: usize = 1;
    pub(super) const PORT: usize = 2;
    pub(super) const ADDRESS: usize = 4;
}

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;
const IPV4_LEN: usize = 8;
const IPV6_LEN: usize = 20;

fn decode_plain(value: &[u8]) -> Result<SocketAddr, AttributeError> {
    let family = *value.get(field::FAMILY).ok_or(AttributeError::BadLength)?;
    let port = read_u16(value, field::PORT).ok_or(AttributeError::BadLength)?;
    // The first byte is zero on the wire and ignored on receipt (RFC 8489 §14.1).
    let ip = match (family, value.len()) {
        (FAMILY_IPV4, IPV4_LEN) => {
            let a: [u8; 4] = read_array(value, field::ADDRESS).ok_or(AttributeError::BadLength)?;
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (FAMILY_IPV6, IPV6_LEN) => {
            let a: [u8; 16] = read_array(value, field::ADDRESS).ok_or(AttributeError::BadLength)?;
            IpAddr::V6(Ipv6Addr::from(a))
        }
        (FAMILY_IPV4 | FAMILY_IPV6, _) => return Err(AttributeError::BadLength),
        _ => return Err(AttributeError::BadFamily),
    };
    Ok(SocketAddr::new(ip, port))
}

fn plain_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => IPV4_LEN,
        SocketAddr::V6(_) => IPV6_LEN,
    }
}

fn encode_plain(addr: &SocketAddr, out: &mut [u8]) {
    let family = match addr {
        SocketAddr::V4(_) => FAMILY_IPV4,
        SocketAddr::V6(_) => FAMILY_IPV6,
    };
    put(out, 0, &[0, family]);
    put(out, field::PORT, &addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => put(out, field::ADDRESS, &ip.octets()),
        IpAddr::V6(ip) => put(out, field::ADDRESS, &ip.octets()),
    }
}

/// XOR is its own inverse: the same mask obfuscates and recovers (RFC 8489 §14.2). The port
/// uses the top 16 bits of the cookie, IPv4 the cookie, IPv6 the cookie then the transaction id.
fn xor(addr: SocketAddr, header: &Header) -> SocketAddr {
    let c = header.cookie;
    let port = addr.port() ^ u16::from_be_bytes([c[0], c[1]]);
    let ip = match addr.ip() {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) ^ u32::from_be_bytes(c))),
        IpAddr::V6(ip) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&c);
            mask[4..].copy_from_slice(&header.transaction_id.0);
            IpAddr::V6(Ipv6Addr::from(u128::from(ip) ^ u128::from_be_bytes(mask)))
        }
    };
    SocketAddr::new(ip, port)
}

macro_rules! address_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:expr, plain) => {
        address_attribute!(@def $(#[$doc])* $name, $typ,
            |v, _h| decode_plain(v), |a, _h| a);
    };
    ($(#[$doc:meta])* $name:ident, $typ:expr, xor) => {
        address_attribute!(@def $(#[$doc])* $name, $typ,
            |v, h| decode_plain(v).map(|a| xor(a, h)), |a, h| xor(a, h));
    };
    (@def $(#[$doc:meta])* $name:ident, $typ:expr, $decode:expr, $to_wire:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub SocketAddr);

        impl Attribute<'_> for $name {
            const TYPE: u16 = $typ;

            fn decode(value: &[u8], header: &Header) -> Result<Self, AttributeError> {
                let decode: fn(&[u8], &Header) -> Result<SocketAddr, AttributeError> = $decode;
                decode(value, header).map(Self)
            }

            fn encoded_len(&self) -> usize {
                plain_len(&self.0)
            }

            fn encode(&self, out: &mut [u8], header: &Header) {
                let to_wire: fn(SocketAddr, &Header) -> SocketAddr = $to_wire;
                encode_plain(&to_wire(self.0, header), out);
            }
        }
    };
}

address_attribute!(
    /// MAPPED-ADDRESS: the reflexive address, in clear, for RFC 3489 clients (RFC 8489 §14.1).
    MappedAddress, attr_type::MAPPED_ADDRESS, plain
);
address_attribute!(
    /// XOR-MAPPED-ADDRESS: the reflexive address, XOR'ed so NAT ALGs leave it alone
    /// (RFC 8489 §14.2).
    XorMappedAddress, attr_type::XOR_MAPPED_ADDRESS, xor
);
address_attribute!(
    /// RESPONSE-ADDRESS: where an RFC 3489 client wants the response sent (RFC 3489 §11.2.2).
    ResponseAddress, attr_type::RESPONSE_ADDRESS, plain
);
address_attribute!(
    /// SOURCE-ADDRESS: the address an RFC 3489 server sent the response from (RFC 3489 §11.2.5).
    SourceAddress, attr_type::SOURCE_ADDRESS, plain
);
address_attribute!(
    /// CHANGED-ADDRESS: the RFC 3489 server's alternate address and port (RFC 3489 §11.2.3).
    ChangedAddress, attr_type::CHANGED_ADDRESS, plain
);
address_attribute!(
    /// REFLECTED-FROM: the requester a RESPONSE-ADDRESS response went on behalf of
    /// (RFC 3489 §11.2.11).
    ReflectedFrom, attr_type::REFLECTED_FROM, plain
);
address_attribute!(
    /// RESPONSE-ORIGIN: the address a RFC 5780 response was sent from (RFC 5780 §7.3).
    ResponseOrigin, attr_type::RESPONSE_ORIGIN, plain
);
address_attribute!(
    /// OTHER-ADDRESS: the server's alternate address for RFC 5780 tests (RFC 5780 §7.4).
    OtherAddress, attr_type::OTHER_ADDRESS, plain
);
address_attribute!(
    /// ALTERNATE-SERVER: where a 300 (Try Alternate) sends the client (RFC 8489 §14.15).
    AlternateServer, attr_type::ALTERNATE_SERVER, plain
);
address_attribute!(
    /// XOR-PEER-ADDRESS: the peer's address as the TURN server sees it (RFC 8656 §18.3).
    XorPeerAddress, attr_type::XOR_PEER_ADDRESS, xor
);
address_attribute!(
    /// XOR-RELAYED-ADDRESS: the relayed transport address allocated (RFC 8656 §18.5).
    XorRelayedAddress, attr_type::XOR_RELAYED_ADDRESS, xor
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::{HEADER, round_trip};

    #[test]
    fn xor_mapped_ipv4_rfc5769() {
        // RFC 5769 §2.2: 192.0.2.1:32853.
        let wire = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        let a = XorMappedAddress("192.0.2.1:32853".parse().expect("addr"));
        round_trip(&a, &wire);
    }

    #[test]
    fn xor_mapped_ipv6_rfc5769() {
        // RFC 5769 §2.3: [2001:db8:1234:5678:11:2233:4455:6677]:32853.
        let wire = [
            0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        let a = XorMappedAddress(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .expect("addr"),
        );
        round_trip(&a, &wire);
    }

    #[test]
    fn mapped_address_plain() {
        let wire = [0x00, 0x01, 0x0d, 0x96, 192, 0, 2, 1];
        round_trip(
            &MappedAddress("192.0.2.1:3478".parse().expect("addr")),
            &wire,
        );
    }

    #[test]
    fn bad_family_and_lengths() {
        assert_eq!(
            MappedAddress::decode(&[0, 3, 0, 1, 1, 2, 3, 4], &HEADER),
            Err(AttributeError::BadFamily)
        );
        assert_eq!(
            MappedAddress::decode(&[0, 1, 0, 1, 1, 2, 3], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            MappedAddress::decode(&[0, 2, 0, 1, 1, 2, 3, 4], &HEADER),
            Err(AttributeError::BadLength)
        );
        assert_eq!(
            MappedAddress::decode(&[], &HEADER),
            Err(AttributeError::BadLength)
        );
    }
}
