//! A small seeded generator for transaction ids (SplitMix64): deterministic for tests, and
//! unpredictable enough when the shell seeds it from the clock and pid. Transaction ids only
//! need to be unlikely to collide and hard to guess for an off-path attacker (RFC 8489 §5).

use farside_stun::TransactionId;

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn transaction_id(&mut self) -> TransactionId {
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes()[..4]);
        TransactionId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_ids_differ() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let x = a.transaction_id();
        assert_eq!(x, b.transaction_id());
        assert_ne!(x, a.transaction_id());
        assert_ne!(Rng::new(8).transaction_id(), x);
    }
}
