//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT computations
//! (RFC 8489 §14.5, §14.6, §14.7).
//!
//! Each covers the message up to the attribute, with the header length field set as if the
//! message ended right after the attribute. The message view cannot rewrite its borrowed
//! bytes, so the input is fed in three parts: type, the adjusted length, and the rest.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// FINGERPRINT is the CRC-32 XOR'ed with this, so an application protocol's own CRC-32 is
/// never taken for a STUN fingerprint (RFC 8489 §14.7).
pub(crate) const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Length of a MESSAGE-INTEGRITY value.
pub(crate) const SHA1_LEN: usize = 20;
/// Length of an untruncated MESSAGE-INTEGRITY-SHA256 value.
pub(crate) const SHA256_LEN: usize = 32;

/// The message as the HMAC or CRC sees it: `bytes[..at]` with the length field replaced.
#[derive(Clone, Copy)]
pub(crate) struct Covered<'a> {
    /// Message type (bytes 0..2).
    pub(crate) message_type: &'a [u8],
    /// The adjusted header length.
    pub(crate) length: [u8; 2],
    /// Cookie, transaction id and the attributes before the covered attribute.
    pub(crate) rest: &'a [u8],
}

impl<'a> Covered<'a> {
    /// `bytes` is a message (at least 20 bytes); the covered attribute starts at `at` and its
    /// value is `value_len` long. Returns `None` if the offsets do not fit the 16-bit field.
    pub(crate) fn new(bytes: &'a [u8], at: usize, value_len: usize) -> Option<Self> {
        let length = u16::try_from(at.checked_add(4 + value_len)?.checked_sub(20)?).ok()?;
        Some(Self {
            message_type: bytes.get(..2)?,
            length: length.to_be_bytes(),
            rest: bytes.get(4..at)?,
        })
    }

    fn parts(&self) -> [&[u8]; 3] {
        [self.message_type, &self.length, self.rest]
    }
}

pub(crate) fn hmac_sha1(key: &[u8], covered: Covered<'_>) -> [u8; SHA1_LEN] {
    // HMAC accepts keys of any length (RFC 2104 §2: long keys are hashed first).
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in covered.parts() {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn hmac_sha256(key: &[u8], covered: Covered<'_>) -> [u8; SHA256_LEN] {
    // HMAC accepts keys of any length (RFC 2104 §2: long keys are hashed first).
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in covered.parts() {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn fingerprint(covered: Covered<'_>) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    for part in covered.parts() {
        crc.update(part);
    }
    crc.finalize() ^ FINGERPRINT_XOR
}
