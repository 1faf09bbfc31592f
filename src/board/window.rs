//! The arithmetic of time windows over counter readings: deltas between two readings of
//! the same counters (a counter that went down was reset, as Prometheus treats it), the
//! 99th percentile from histogram bucket deltas, and shares.
//!
//! Pure functions on plain numbers: no clock, no locks, nothing from the rest of the crate
//! but the latency bucket bounds.

use crate::metrics::LATENCY_BUCKETS;

/// Latency buckets, the last one `+Inf` (non-cumulative counts, as `Histogram` keeps them).
pub const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// One reading of a (route, service) pair's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Requests answered (every request is observed once by the latency histogram).
    pub requests: u64,
    /// Of which answered with a 5xx status.
    pub server_errors: u64,
    /// Requests of a split route placed on this side and served by the fallback instead.
    pub fell_back: u64,
    /// Latency histogram, non-cumulative.
    pub buckets: [u64; BUCKETS],
}

/// What happened between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub requests: u64,
    pub server_errors: u64,
    pub fell_back: u64,
    pub buckets: [u64; BUCKETS],
}

/// The increase of one counter from `before` to `now`. A counter below its earlier value
/// was reset (its handle was created anew), and everything it holds now happened since.
pub fn increase(before: u64, now: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

impl Reading {
    /// What happened since `before`, counter by counter. The histogram is one unit: if any
    /// bucket went down it was reset as a whole, and all its buckets count from zero.
    pub fn since(&self, before: &Reading) -> Delta {
        let reset = self
            .buckets
            .iter()
            .zip(before.buckets.iter())
            .any(|(n, b)| n < b);
        let mut buckets = [0; BUCKETS];
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot = if reset {
                self.buckets[i]
            } else {
                self.buckets[i] - before.buckets[i]
            };
        }
        Delta {
            requests: increase(before.requests, self.requests),
            server_errors: increase(before.server_errors, self.server_errors),
            fell_back: increase(before.fell_back, self.fell_back),
            buckets,
        }
    }
}

impl Delta {
    /// Adds another pair's delta (to sum a side or the whole gateway).
    pub fn add(&mut self, other: &Delta) {
        self.requests += other.requests;
        self.server_errors += other.server_errors;
        self.fell_back += other.fell_back;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }

    /// Share of the requests answered with a 5xx; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        share(self.server_errors, self.requests)
    }

    /// The 99th percentile latency in seconds; `None` without observations.
    pub fn p99_seconds(&self) -> Option<f64> {
        quantile(0.99, &self.buckets)
    }
}

/// `part / whole`, `None` when `whole` is zero (no traffic is not 0 %).
pub fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The `q` quantile of non-cumulative bucket counts, in seconds, the way Prometheus's
/// `histogram_quantile` computes it (so the board and a Grafana panel agree): find the
/// bucket holding the rank `q * count` and interpolate linearly inside it, the first
/// bucket starting at zero; a rank in the `+Inf` bucket gives the highest finite bound.
pub fn quantile(q: f64, buckets: &[u64; BUCKETS]) -> Option<f64> {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        let upto = below + n;
        if n > 0 && upto as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let into = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * into);
        }
        below = upto;
    }
    LATENCY_BUCKETS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(requests: u64, server_errors: u64, buckets: &[(usize, u64)]) -> Reading {
        let mut r = Reading {
            requests,
            server_errors,
            ..Reading::default()
        };
        for &(i, n) in buckets {
            r.buckets[i] = n;
        }
        r
    }

    #[test]
    fn deltas_count_what_happened_between_two_readings() {
        let before = reading(100, 3, &[(2, 90), (7, 10)]);
        let now = reading(150, 5, &[(2, 130), (7, 20)]);
        let d = now.since(&before);
        assert_eq!(d.requests, 50);
        assert_eq!(d.server_errors, 2);
        assert_eq!(d.buckets[2], 40);
        assert_eq!(d.buckets[7], 10);
        assert_eq!(d.error_rate(), Some(0.04));
    }

    #[test]
    fn a_counter_that_went_down_was_reset() {
        // A route removed on reload and added again gets new counters: 7 since the reset.
        assert_eq!(increase(1000, 7), 7);
        assert_eq!(increase(7, 7), 0);
        let before = reading(1000, 10, &[(3, 1000)]);
        let now = reading(7, 1, &[(3, 5), (4, 2)]);
        let d = now.since(&before);
        assert_eq!((d.requests, d.server_errors), (7, 1));
        // The whole histogram restarted: bucket 4 (which went up) is not 2 - 0 of an old base
        // mixed with bucket 3's reset, both count from zero.
        assert_eq!(d.buckets[3], 5);
        assert_eq!(d.buckets[4], 2);
        assert_eq!(d.buckets.iter().sum::<u64>(), 7);
    }

    #[test]
    fn no_traffic_is_no_rate_not_zero() {
        let d = Delta::default();
        assert_eq!(d.error_rate(), None);
        assert_eq!(d.p99_seconds(), None);
        assert_eq!(share(0, 0), None);
        assert_eq!(share(0, 4), Some(0.0));
    }

    #[test]
    fn p99_interpolates_inside_the_bucket_like_prometheus() {
        // 100 requests: 98 at <= 5 ms (bucket 3: 2.5..5 ms), 2 at <= 100 ms (bucket 7:
        // 50..100 ms). Rank 99 is the first of the two in bucket 7: half way into it.
        let mut b = [0; BUCKETS];
        b[3] = 98;
        b[7] = 2;
        let p99 = quantile(0.99, &b).unwrap();
        assert!((p99 - 0.075).abs() < 1e-9, "{p99}");
        // All in one bucket: 99 % of the way through it.
        let mut b = [0; BUCKETS];
        b[0] = 100;
        let p99 = quantile(0.99, &b).unwrap();
        assert!((p99 - 0.0005 * 0.99).abs() < 1e-12, "{p99}");
        // Ranks in +Inf give the highest finite bound.
        let mut b = [0; BUCKETS];
        b[BUCKETS - 1] = 3;
        assert_eq!(quantile(0.99, &b), Some(10.0));
    }

    #[test]
    fn p99_of_a_window_uses_only_the_window_s_requests() {
        // Slow requests long ago, fast ones in the window: the window's p99 is fast.
        let before = reading(1000, 0, &[(10, 1000)]); // 250..500 ms
        let now = reading(1100, 0, &[(1, 100), (10, 1000)]); // + 100 at 0.5..1 ms
        let p99 = now.since(&before).p99_seconds().unwrap();
        assert!(p99 <= 0.001, "{p99}");
    }

    #[test]
    fn deltas_add_up() {
        let mut total = Delta::default();
        total.add(&reading(10, 1, &[(0, 10)]).since(&Reading::default()));
        total.add(&reading(30, 0, &[(5, 30)]).since(&Reading::default()));
        assert_eq!(total.requests, 40);
        assert_eq!(total.error_rate(), Some(1.0 / 40.0));
        assert_eq!(total.buckets[0] + total.buckets[5], 40);
    }
}
