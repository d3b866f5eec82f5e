//! Zero-copy STUN wire codec: RFC 8489 (and 5389, 3489), the NAT behaviour discovery
//! attributes of RFC 5780, the TURN attributes of RFC 8656, 6062 and 6156, and ICE's
//! (RFC 8445).
//!
//! - [`Message::parse`] validates a datagram once and gives a view that borrows it; typed
//!   [`attributes`] are decoded on demand with [`Message::attribute`].
//! - [`MessageBuilder`] writes into the caller's buffer, with MESSAGE-INTEGRITY(-SHA256)
//!   and FINGERPRINT computed in place.
//! - [`credentials`] derives short- and long-term keys and USERHASH.
//!
//! Parsing and building never allocate and never panic, whatever the input: every error is a
//! small `Copy` value. Classic RFC 3489 messages (no magic cookie) parse like any other; the
//! caller decides how to answer them.
//!
//! ```
//! use farside_stun::{Message, attributes::XorMappedAddress};
//!
//! // RFC 5769 §2.2, sample IPv4 response.
//! # let bytes = [
//! #     0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
//! #     0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
//! #     0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
//! #     0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
//! #     0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
//! #     0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
//! # ];
//! let m = Message::parse(&bytes)?;
//! m.check_fingerprint()?;
//! m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt")?;
//! let XorMappedAddress(addr) = m.attribute::<XorMappedAddress>().unwrap()?;
//! assert_eq!(addr.to_string(), "192.0.2.1:32853");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod attributes;
pub mod binding;
mod builder;
pub mod credentials;
mod drop_reason;
mod error;
pub mod framing;
mod header;
mod integrity;
mod message;
pub mod partner;

pub use attributes::{Attribute, attr_type};
pub use builder::MessageBuilder;
pub use credentials::{
    long_term_key_md5, long_term_key_md5_rfc5389, long_term_key_sha256, opaque_string, saslprep,
    short_term_key, userhash,
};
pub use error::{AttributeError, BufferTooSmall, IntegrityError, ParseError, PasswordError};
pub use header::{Class, HEADER_LEN, Header, MAGIC_COOKIE, MessageType, Method, TransactionId};
pub use message::{Attributes, Message, RawAttribute};
