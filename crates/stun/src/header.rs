//! The 20-byte STUN header (RFC 8489 §5, RFC 3489 §11.1): message type, length, magic cookie,
//! transaction id.

/// The magic cookie of RFC 5389/8489 (§5). RFC 3489 clients put random bytes here instead.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN header in bytes.
pub const HEADER_LEN: usize = 20;

/// Byte offsets of the header fields, named once (smoltcp style).
pub(crate) mod field {
    use core::ops::Range;

    pub(crate) const TYPE: Range<usize> = 0..2;
    pub(crate) const LENGTH: Range<usize> = 2..4;
    pub(crate) const COOKIE: Range<usize> = 4..8;
    pub(crate) const TRANSACTION_ID: Range<usize> = 8..20;
}

/// The class of a message: the C1 and C0 bits of the message type (RFC 8489 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 0b00.
    Request,
    /// 0b01.
    Indication,
    /// 0b10.
    SuccessResponse,
    /// 0b11.
    ErrorResponse,
}

impl Class {
    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Self::Request,
            0b01 => Self::Indication,
            0b10 => Self::SuccessResponse,
            _ => Self::ErrorResponse,
        }
    }

    fn bits(self) -> u16 {
        match self {
            Self::Request => 0b00,
            Self::Indication => 0b01,
            Self::SuccessResponse => 0b10,
            Self::ErrorResponse => 0b11,
        }
    }
}

/// A 12-bit STUN method (IANA "STUN Methods" registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Self = Self(0x001);
    /// Shared Secret (RFC 3489 §9); reserved since RFC 5389.
    pub const SHARED_SECRET: Self = Self(0x002);
    /// Allocate (RFC 8656).
    pub const ALLOCATE: Self = Self(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Self = Self(0x004);
    /// Send (RFC 8656).
    pub const SEND: Self = Self(0x006);
    /// Data (RFC 8656).
    pub const DATA: Self = Self(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Self = Self(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Self = Self(0x009);
    /// Connect (RFC 6062).
    pub const CONNECT: Self = Self(0x00A);
    /// ConnectionBind (RFC 6062).
    pub const CONNECTION_BIND: Self = Self(0x00B);
    /// ConnectionAttempt (RFC 6062).
    pub const CONNECTION_ATTEMPT: Self = Self(0x00C);
}

/// Message type: class and method interleaved in 14 bits (RFC 8489 §5, Figure 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageType {
    /// The class (C1, C0).
    pub class: Class,
    /// The method (M11..M0).
    pub method: Method,
}

impl MessageType {
    /// Creates a message type.
    pub const fn new(class: Class, method: Method) -> Self {
        Self { class, method }
    }

    /// Decodes the first two header bytes; `None` if either of the top two bits is set
    /// (not a STUN message, RFC 8489 §5).
    pub fn from_u16(v: u16) -> Option<Self> {
        if v & 0xC000 != 0 {
            return None;
        }
        // Bits: M11..M7 at 13..9, C1 at 8, M6..M4 at 7..5, C0 at 4, M3..M0 at 3..0.
        let method = (v & 0x000F) | ((v >> 1) & 0x0070) | ((v >> 2) & 0x0F80);
        let class = ((v >> 4) & 0b01) | ((v >> 7) & 0b10);
        Some(Self {
            class: Class::from_bits(class),
            method: Method(method),
        })
    }

    /// Encodes to the wire value. Only the low 12 bits of the method are used.
    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c = self.class.bits();
        (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 0b01) << 4)
            | ((c & 0b10) << 7)
    }
}

/// The 96-bit transaction id (RFC 8489 §5).
///
/// For RFC 3489 messages the id is 128 bits: the 4 "cookie" bytes followed by these 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// What attribute codecs need from the header: the XOR attributes mix in the cookie and
/// transaction id (RFC 8489 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Bytes 4..8 of the message: the magic cookie, or random bytes from an RFC 3489 client.
    pub cookie: [u8; 4],
    /// Bytes 8..20 of the message.
    pub transaction_id: TransactionId,
}

impl Header {
    /// A header with the RFC 5389/8489 magic cookie.
    pub const fn new(transaction_id: TransactionId) -> Self {
        Self {
            cookie: MAGIC_COOKIE.to_be_bytes(),
            transaction_id,
        }
    }

    /// Whether `cookie` is the magic cookie; `false` means a classic RFC 3489 peer.
    pub fn has_magic_cookie(&self) -> bool {
        u32::from_be_bytes(self.cookie) == MAGIC_COOKIE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_bits() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011.
        let cases = [
            (0x0001, Class::Request, Method::BINDING),
            (0x0101, Class::SuccessResponse, Method::BINDING),
            (0x0111, Class::ErrorResponse, Method::BINDING),
            (0x0011, Class::Indication, Method::BINDING),
            (0x0003, Class::Request, Method::ALLOCATE),
            (0x0016, Class::Indication, Method::SEND),
            (0x0017, Class::Indication, Method::DATA),
            (0x3EEF, Class::Request, Method(0xFFF)),
        ];
        for (wire, class, method) in cases {
            let ty = MessageType::from_u16(wire).expect("valid type");
            assert_eq!(ty, MessageType::new(class, method), "{wire:#06x}");
            assert_eq!(ty.to_u16(), wire);
        }
    }

    #[test]
    fn message_type_round_trips_all_14_bit_values() {
        for v in 0..0x4000u16 {
            let ty = MessageType::from_u16(v).expect("top bits clear");
            assert_eq!(ty.to_u16(), v);
        }
        assert_eq!(MessageType::from_u16(0x4001), None);
        assert_eq!(MessageType::from_u16(0x8001), None);
    }
}
