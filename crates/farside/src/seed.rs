//! Seeds for the sans-IO cores' generators.

/// 64 bits from the OS's random source (std's per-process SipHash keys), fresh for each use:
/// STUN transaction ids and partner nonces must not repeat or be guessable (RFC 8489 §6).
pub fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
