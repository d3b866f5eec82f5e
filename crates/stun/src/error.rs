//! Error types: small `Copy` values, so that a hostile peer costs no allocation.

/// Why bytes are not a well-formed STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer than 20 bytes.
    #[error("shorter than the 20-byte STUN header")]
    TooShort,
    /// One of the top two bits is set (RFC 8489 §5): another protocol on the same port.
    #[error("top two bits set: not STUN")]
    NotStun,
    /// The header length is not a multiple of 4, or runs past the end of the buffer.
    #[error("header length not a multiple of 4 or larger than the datagram")]
    BadLength,
    /// An attribute (with its padding) runs past the end given by the header length.
    #[error("attribute runs past the end of the message")]
    TruncatedAttribute,
}

/// Why an attribute value could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// The value length is not the one the attribute's format requires.
    #[error("attribute value has the wrong length")]
    BadLength,
    /// An address family other than IPv4 (0x01) or IPv6 (0x02).
    #[error("unknown address family")]
    BadFamily,
    /// Text that is not UTF-8.
    #[error("text is not UTF-8")]
    BadUtf8,
    /// Text longer than the attribute allows.
    #[error("value longer than the attribute allows")]
    TooLong,
    /// A field holds a value its format forbids (e.g. an error number above 99).
    #[error("field value out of range")]
    BadValue,
}

/// Outcome of checking MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The attribute is not in the message.
    #[error("attribute absent")]
    Absent,
    /// The attribute is present but its value does not match.
    #[error("value does not match")]
    Mismatch,
    /// The attribute is present but has an impossible length.
    #[error("attribute malformed")]
    Malformed,
}

/// The caller's buffer cannot hold what was asked; also returned when a value or the whole
/// message would not fit the 16-bit length fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("buffer too small for the STUN message")]
pub struct BufferTooSmall;

/// Why a password, username or realm was refused by OpaqueString or SASLprep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The string is empty (after preparation).
    #[error("empty string")]
    Empty,
    /// The string holds a code point the profile disallows.
    #[error("string contains a disallowed code point")]
    Disallowed,
}
