//! Seeds for the sans-IO cores' generators, and secrets made for operators.

/// 64 bits from the kernel's CSPRNG (`getrandom(2)`), fresh for each use: STUN transaction ids,
/// partner nonces and TURN reservation tokens must not repeat or be guessable (RFC 8489 §6).
pub fn fresh_seed() -> u64 {
    let mut b = [0u8; 8];
    if farside_io::random_bytes(&mut b).is_err() {
        // getrandom(2) fails only on kernels older than 3.17; std's per-process SipHash keys
        // (themselves from the OS) are the fallback.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        return h.finish();
    }
    u64::from_le_bytes(b)
}

/// 32 bytes straight from the kernel's CSPRNG as 64 hex digits: a shared secret, the API
/// token, a session id. An error (no `getrandom(2)`) rather than a weaker fallback: these are
/// long-lived secrets.
pub fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    farside_io::random_bytes(&mut b)?;
    Ok(base16ct::lower::encode_string(&b))
}

/// 32 random bytes: a key to sign TURN and SIP nonces or flow tokens with.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&fresh_seed().to_le_bytes());
    }
    key
}
