//! A latency histogram that costs constant memory whatever the number of
//! samples, so that a load generator can keep every packet's latency.

/// Sub-buckets per power of two: values are kept to within 1/32 (~3 %).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values are capped at 2^30 µs (about 18 minutes).
const MAX_EXP: u32 = 30;

/// A log-linear histogram of microseconds (like HdrHistogram, ~3 %
/// precision): mergeable, and subtractable (a measurement window is
/// `later.since(&earlier)`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Grown on demand, so an idle participant costs nothing.
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl LatencyHistogram {
    fn bucket(us: u64) -> usize {
        let v = us.min((1 << MAX_EXP) - 1);
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let sub = (v >> (e - SUB_BITS)) - SUB;
        (SUB + u64::from(e - SUB_BITS) * SUB + sub) as usize
    }

    /// A representative value (the middle) of bucket `b`.
    fn value(b: usize) -> u64 {
        let b = b as u64;
        if b < SUB {
            return b;
        }
        let e = (b - SUB) / SUB + u64::from(SUB_BITS);
        let sub = (b - SUB) % SUB;
        let width = 1u64 << (e - u64::from(SUB_BITS));
        (SUB + sub) * width + width / 2
    }

    pub fn record(&mut self, us: u64) {
        let b = Self::bucket(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest sample ever recorded (not windowed by [`Self::since`]).
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// Adds `other`'s samples to these.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The samples recorded since `earlier` (a clone of this histogram
    /// taken before).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut out = self.clone();
        for (a, b) in out.counts.iter_mut().zip(&earlier.counts) {
            *a = a.saturating_sub(*b);
        }
        out.total = out.counts.iter().sum();
        out
    }

    /// The `q` quantile (0.0–1.0) in microseconds, `None` without samples.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::value(b).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
}

impl std::fmt::Debug for LatencyHistogram {
    // The buckets are noise in a test failure; the summary is what helps.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.total)
            .field("p50_us", &self.quantile_us(0.5))
            .field("p99_us", &self.quantile_us(0.99))
            .field("max_us", &self.max_us)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut h = LatencyHistogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        assert_eq!(h.count(), 10_000);
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.01, 100.0)] {
            let got = h.quantile_us(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile_us(1.0), Some(10_000));
        for us in [0, 1, 31, 32, 33, 63, 64, 1000, 1 << 29, u64::MAX] {
            let b = LatencyHistogram::bucket(us);
            let v = LatencyHistogram::value(b) as f64;
            let u = us.min((1 << MAX_EXP) - 1) as f64;
            assert!(
                (v - u).abs() <= u / 32.0 + 1.0,
                "{us}: bucket {b} value {v}"
            );
        }
    }

    #[test]
    fn windows_and_merges() {
        let mut a = LatencyHistogram::default();
        a.record(100);
        let early = a.clone();
        a.record(2_000);
        a.record(2_000);
        let w = a.since(&early);
        assert_eq!(w.count(), 2);
        assert!(w.quantile_us(0.5).unwrap() > 1_900);
        let mut m = LatencyHistogram::default();
        m.merge(&w);
        m.merge(&early);
        assert_eq!(m.count(), 3);
        assert_eq!(LatencyHistogram::default().quantile_us(0.5), None);
    }
}
