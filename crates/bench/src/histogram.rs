//! A fixed-size log-linear histogram of latencies in nanoseconds (HdrHistogram's layout with
//! 32 sub-buckets per power of two: at most ~3 % relative error, 15 KiB, no allocation after
//! construction).

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Values below `2 * SUB` get a bucket each; above, each power of two gets `SUB` buckets, up to
/// the largest `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of values by bucket, with the exact minimum and maximum.
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Adds one value.
    pub(crate) fn record(&mut self, value: u64) {
        if let Some(c) = self.counts.get_mut(index(value)) {
            *c += 1;
        }
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// The largest value recorded (0 when empty).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value below or at which a fraction `q` (0..=1) of the values lie: the upper bound of
    /// the bucket holding that rank, never more than the exact maximum. 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < 2 * SUB as u64 {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BITS + 1
    let shift = exponent - SUB_BITS; // >= 1
    shift as usize * SUB + (value >> shift) as usize
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let mantissa = (i % SUB + SUB) as u64;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for v in 0..10_000u64 {
            let i = index(v);
            assert!(upper_bound(i) >= v, "{v} above its bucket {i}");
            if i > 0 {
                assert!(upper_bound(i - 1) < v, "{v} belongs to an earlier bucket");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn relative_error_is_bounded() {
        for v in [100u64, 1_000, 12_345, 1_000_000, 987_654_321, 1 << 50] {
            let ub = upper_bound(index(v));
            assert!(
                (ub - v) as f64 / v as f64 <= 1.0 / SUB as f64,
                "{v} -> {ub}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        assert_eq!(h.count, 10_000);
        assert_eq!(h.max(), 10_000_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.04, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.04, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.quantile(0.0), upper_bound(index(1_000)));
    }
}
