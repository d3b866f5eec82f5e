//! Typed attribute values, one file per family. Each borrows from the message where it holds
//! bytes or text, so decoding copies nothing.

mod address;
mod error_code;
mod ice;
mod nat_behavior;
mod security;
mod text;
mod turn;

pub use address::{
    AlternateServer, ChangedAddress, MappedAddress, OtherAddress, ReflectedFrom, ResponseAddress,
    ResponseOrigin, SourceAddress, XorMappedAddress, XorPeerAddress, XorRelayedAddress,
};
pub use error_code::{AddressErrorCode, ErrorCode, UnknownAttributes, UnknownAttributesIter};
pub use ice::{IceControlled, IceControlling, Priority, UseCandidate};
pub use nat_behavior::{ChangeRequest, Padding, ResponsePort};
pub use security::{
    Fingerprint, MessageIntegrity, MessageIntegritySha256, PasswordAlgorithm, PasswordAlgorithms,
    PasswordAlgorithmsIter, Userhash,
};
pub use text::{AlternateDomain, Nonce, Password, Realm, Software, Username};
pub use turn::{
    AdditionalAddressFamily, AddressFamily, ChannelNumber, ConnectionId, Data, DontFragment,
    EvenPort, Icmp, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
};

use crate::error::AttributeError;
use crate::header::Header;

/// A typed attribute: how its value is read from and written to the wire.
///
/// `decode` gets the value without the 4-byte TLV header and without padding; `encode` writes
/// exactly `encoded_len()` bytes, and the builder adds the padding.
pub trait Attribute<'a>: Sized {
    /// The attribute type code (see [`attr_type`]).
    const TYPE: u16;

    /// Decodes a value. `header` gives the cookie and transaction id the XOR attributes need.
    fn decode(value: &'a [u8], header: &Header) -> Result<Self, AttributeError>;

    /// Length of the encoded value, without padding.
    fn encoded_len(&self) -> usize;

    /// Writes the value into `out`, whose length is `encoded_len()`. Never panics: a shorter
    /// `out` is left partly written.
    fn encode(&self, out: &mut [u8], header: &Header);
}

/// Attribute type codes (IANA "STUN Attributes" registry), in the RFCs' names.
pub mod attr_type {
    // Comprehension-required range, 0x0000..=0x7FFF.
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// RESPONSE-ADDRESS (RFC 3489 §11.2.2).
    pub const RESPONSE_ADDRESS: u16 = 0x0002;
    /// CHANGE-REQUEST (RFC 3489 §11.2.4, RFC 5780 §7.2).
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// SOURCE-ADDRESS (RFC 3489 §11.2.5).
    pub const SOURCE_ADDRESS: u16 = 0x0004;
    /// CHANGED-ADDRESS (RFC 3489 §11.2.3).
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: u16 = 0x0006;
    /// PASSWORD (RFC 3489 §11.2.7).
    pub const PASSWORD: u16 = 0x0007;
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REFLECTED-FROM (RFC 3489 §11.2.11).
    pub const REFLECTED_FROM: u16 = 0x000B;
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME (RFC 8656 §18.2).
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA (RFC 8656 §18.4).
    pub const DATA: u16 = 0x0013;
    /// REALM (RFC 8489 §14.9).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6, RFC 6156).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT (RFC 8656 §18.7).
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT (RFC 8656 §18.9).
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12).
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH (RFC 8489 §14.4).
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN (RFC 8656 §18.10).
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// PRIORITY (RFC 8445 §16.1).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// PADDING (RFC 5780 §7.6).
    pub const PADDING: u16 = 0x0026;
    /// RESPONSE-PORT (RFC 5780 §7.5).
    pub const RESPONSE_PORT: u16 = 0x0027;
    /// CONNECTION-ID (RFC 6062 §6.2.1).
    pub const CONNECTION_ID: u16 = 0x002A;

    // Comprehension-optional range, 0x8000..=0xFFFF.
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12).
    pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// ICMP (RFC 8656 §18.13).
    pub const ICMP: u16 = 0x8004;
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445 §16.1).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445 §16.1).
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// RESPONSE-ORIGIN (RFC 5780 §7.3).
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// OTHER-ADDRESS (RFC 5780 §7.4).
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// Whether an agent must understand `typ` to process the message (RFC 8489 §14).
    pub const fn is_comprehension_required(typ: u16) -> bool {
        typ < 0x8000
    }
}

// Small total helpers shared by the attribute files: reads return `None` when out of range,
// writes skip what does not fit, so no codec can panic on a short slice.

pub(crate) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn read_array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

pub(crate) fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = at
        .checked_add(bytes.len())
        .and_then(|end| out.get_mut(at..end))
    {
        dst.copy_from_slice(bytes);
    }
}

/// Value of exactly `N` bytes, else `BadLength`.
pub(crate) fn exact<const N: usize>(value: &[u8]) -> Result<[u8; N], AttributeError> {
    value.try_into().map_err(|_| AttributeError::BadLength)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Attribute;
    use crate::header::{Header, TransactionId};

    pub(crate) const HEADER: Header = Header::new(TransactionId([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]));

    /// Encodes `attr`, checks the bytes, decodes them back and checks the value.
    pub(crate) fn round_trip<'a, A>(attr: &A, wire: &'a [u8])
    where
        A: Attribute<'a> + PartialEq + core::fmt::Debug,
    {
        assert_eq!(attr.encoded_len(), wire.len());
        let mut out = vec![0u8; wire.len()];
        attr.encode(&mut out, &HEADER);
        assert_eq!(out, wire);
        assert_eq!(&A::decode(wire, &HEADER).expect("decodes"), attr);
    }
}
