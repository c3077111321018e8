//! A latency histogram with fixed memory: log-linear buckets (exact below
//! 128 µs, then 64 buckets per power of two, so any reported percentile
//! is within 1.6% of the true value) and the exact maximum. Each
//! subscriber keeps its own and they are merged at the end, so recording
//! costs an increment and nothing is shared while the run goes.

/// Values below this are their own bucket.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR`.
const SUB: u64 = 64;
/// Enough buckets for values up to 2^40 µs (12 days).
const BUCKETS: usize = (LINEAR + 34 * SUB) as usize;

/// Recorded values, in microseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as u64; // >= 7
    let shift = msb - 6;
    let i = LINEAR + (shift - 1) * SUB + ((v >> shift) - SUB);
    (i as usize).min(BUCKETS - 1)
}

/// The smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let sub = (i - LINEAR) % SUB;
    (SUB + sub) << shift
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Adds `other`'s values to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the lower bound of the bucket
    /// that holds it, or the exact maximum when that is smaller.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return lower_bound(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 127, 128, 129, 255, 256, 1000, 65_535, 1 << 30] {
            let i = index(v);
            assert!(i >= last, "index({v}) = {i} < {last}");
            last = i;
            let lo = lower_bound(i);
            assert!(lo <= v, "bucket of {v} starts at {lo}");
            // Within 1/64 of the value.
            assert!((v - lo) * 64 <= v.max(1), "{v} in bucket from {lo}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let mut other = Histogram::default();
        other.record(50_000);
        h.merge(&other);
        assert_eq!(h.len(), 1001);
        assert_eq!(h.max(), 50_000);
        let p50 = h.quantile(0.5);
        assert!((490..=501).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((975..=991).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 50_000u64.min(lower_bound(index(50_000))));
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
