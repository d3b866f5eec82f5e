//! Stateless NONCEs (RFC 8489 §9.2.4): the server remembers nothing per client. A nonce is
//! the RFC 8489 nonce cookie with the security feature bits, the time it was made, and an
//! HMAC over both under a key drawn at start; it is valid for `nonce_lifetime`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// "obMatJos2" (RFC 8489 §9.2), then the 24 feature bits in base64: bit 0 = password
/// algorithms, bit 1 = username anonymity (USERHASH). Both supported: 0x000003 → "AAAD".
pub(crate) const NONCE_PREFIX: &str = "obMatJos2AAAD";

/// Makes and checks nonces.
#[derive(Clone)]
pub(crate) struct Nonces {
    key: [u8; 32],
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces(..)")
    }
}

/// Hex digits of the stamp (the Unix second, 32 bits: good until 2106).
const STAMP: usize = 8;
/// Hex digits of the MAC: 96 bits, far beyond guessing within a nonce's lifetime. Kept short
/// because every 401 carries a nonce, and a 401 is what a forged source can draw.
const MAC: usize = 24;

/// A nonce's bytes (fixed length, so no allocation): 45, which a NONCE attribute pads to 48.
pub(crate) type NonceText = [u8; NONCE_PREFIX.len() + STAMP + MAC];

impl Nonces {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Nonces { key }
    }

    /// A nonce made at `secs` (Unix seconds).
    pub(crate) fn make(&self, secs: u64) -> NonceText {
        let secs = secs as u32;
        let mut out = [0u8; NONCE_PREFIX.len() + STAMP + MAC];
        out[..NONCE_PREFIX.len()].copy_from_slice(NONCE_PREFIX.as_bytes());
        hex(&secs.to_be_bytes(), &mut out[NONCE_PREFIX.len()..][..STAMP]);
        let mac = self.mac(secs);
        hex(&mac, &mut out[NONCE_PREFIX.len() + STAMP..]);
        out
    }

    /// When `nonce` was made, if it is one of ours.
    pub(crate) fn made_at(&self, nonce: &[u8]) -> Option<u64> {
        let rest = nonce.strip_prefix(NONCE_PREFIX.as_bytes())?;
        if rest.len() != STAMP + MAC {
            return None;
        }
        let mut stamp = [0u8; STAMP / 2];
        unhex(&rest[..STAMP], &mut stamp)?;
        let secs = u32::from_be_bytes(stamp);
        let mut mac = [0u8; MAC / 2];
        unhex(&rest[STAMP..], &mut mac)?;
        bool::from(self.mac(secs).ct_eq(&mac)).then_some(u64::from(secs))
    }

    fn mac(&self, secs: u32) -> [u8; MAC / 2] {
        let mut out = [0u8; MAC / 2];
        if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            mac.update(&secs.to_be_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes()[..MAC / 2]);
        }
        out
    }
}

/// Lowercase hex of `bytes` into `out` (twice their length).
fn hex(bytes: &[u8], out: &mut [u8]) {
    let _ = base16ct::lower::encode(bytes, out);
}

/// The bytes of lowercase hex `text`, which must fill `out` exactly.
fn unhex(text: &[u8], out: &mut [u8]) -> Option<()> {
    let len = out.len();
    (base16ct::lower::decode(text, out).ok()?.len() == len && text.len() == 2 * len).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_round_trip_and_resist_tampering() {
        let n = Nonces::new([7; 32]);
        let nonce = n.make(12345);
        assert_eq!(n.made_at(&nonce), Some(12345));
        let mut bad = nonce;
        bad[NONCE_PREFIX.len() + 15] ^= 1;
        assert_eq!(n.made_at(&bad), None);
        assert_eq!(Nonces::new([8; 32]).made_at(&nonce), None);
        assert_eq!(n.made_at(b"obMatJos2AAAD"), None);
        assert_eq!(n.made_at(b""), None);
    }
}
