//! The board's memory: every (route, service) pair's counters read every sample period and
//! kept in a bounded ring (an hour of readings), from which the windows of the board (the
//! last 5 minutes, the last hour) and the legacy share's sparkline are computed.
//!
//! Only the sampler writes here, and only the admin listener reads: the request path never
//! sees this module. Memory is bounded: [`HOUR`] of request counts per pair and
//! [`RECENT`] of latency histograms (only the 5-minute p99 needs them). Pairs whose route
//! or service left the config are dropped at the next sample.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::window::{Delta, Reading, BUCKETS};

/// The long window of the board, and how far back the ring reaches.
pub const HOUR: Duration = Duration::from_secs(3600);
/// The short window (error rates, p99, the headline's "now").
pub const RECENT: Duration = Duration::from_secs(300);
/// The sample period in production.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// A (route, service) pair: requests of `route` served by `service`.
pub type Pair = (String, String);

/// When a sample was taken.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub at: Instant,
    pub unix_ms: u64,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            at: Instant::now(),
            unix_ms: unix_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The counts kept for the whole hour.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    server_errors: u64,
    fell_back: u64,
}

/// One pair's readings, aligned with the history's stamps from the newest end: a pair added
/// by a reload has fewer readings than there are stamps.
#[derive(Debug, Default)]
struct PairRing {
    counts: VecDeque<Counts>,
    buckets: VecDeque<[u64; BUCKETS]>,
}

impl PairRing {
    /// The reading `back` samples before the newest (0 = newest), as far as this pair has
    /// one. Histograms are kept for the short window only: further back, the oldest one
    /// kept stands in (only the short window's p99 reads them).
    fn reading(&self, back: usize) -> Option<Reading> {
        let c = self.counts.get(self.counts.len().checked_sub(back + 1)?)?;
        let buckets = self
            .buckets
            .get(self.buckets.len().saturating_sub(back + 1))
            .copied()
            .unwrap_or([0; BUCKETS]);
        Some(Reading {
            requests: c.requests,
            server_errors: c.server_errors,
            fell_back: c.fell_back,
            buckets,
        })
    }
}

/// The rings of every pair, and when each sample was taken.
#[derive(Debug)]
pub struct History {
    period: Duration,
    /// Readings kept per pair: an hour's worth, plus one for the window's start.
    capacity: usize,
    /// Histograms kept per pair: the short window's worth, plus one.
    recent_capacity: usize,
    stamps: VecDeque<Stamp>,
    pairs: HashMap<Pair, PairRing>,
    /// Pairs read at zero in the newest sample that have no ring: a pair that has never
    /// served a request keeps nothing (a config of 20,000 routes would otherwise hold an
    /// hour of zeros for each, about 12 KiB a route).
    zero: HashSet<Pair>,
}

/// A window's deltas per pair, and how much time it actually covers (less than asked while
/// the process is younger than the window).
#[derive(Debug, Default)]
pub struct Window {
    pub deltas: HashMap<Pair, Delta>,
    pub covered: Duration,
}

/// One point of a share-over-time series: the requests between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The end of the interval.
    pub unix_ms: u64,
    /// Requests served by a legacy service in the interval.
    pub legacy: u64,
    /// Requests counted in the interval.
    pub total: u64,
}

impl History {
    /// A history sampled every `period` (at least 100 ms).
    pub fn new(period: Duration) -> History {
        let period = period.max(Duration::from_millis(100));
        let points = |span: Duration| (span.as_millis() / period.as_millis()) as usize + 1;
        History {
            period,
            capacity: points(HOUR),
            // Two spare: a late tick (see `periodic::every`) must not push the short
            // window's start out of the histograms kept.
            recent_capacity: points(RECENT) + 2,
            stamps: VecDeque::new(),
            pairs: HashMap::new(),
            zero: HashSet::new(),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Number of samples kept.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// Keeps one sample: the readings of every pair of the running config. Pairs not in
    /// `readings` (their route or service is gone) are forgotten.
    pub fn record(&mut self, at: Stamp, readings: Vec<(Pair, Reading)>) {
        self.stamps.push_back(at);
        if self.stamps.len() > self.capacity {
            self.stamps.pop_front();
        }
        let mut next = HashMap::with_capacity(self.pairs.len());
        let mut zero = HashSet::new();
        for (pair, r) in readings {
            let mut ring = match self.pairs.remove(&pair) {
                Some(ring) => ring,
                None if r.requests == 0 && r.server_errors == 0 && r.fell_back == 0 => {
                    zero.insert(pair);
                    continue;
                }
                None => {
                    let mut ring = PairRing::default();
                    // Read at zero one sample ago: it starts from there, so its first
                    // requests count. (A pair new to the config counts from its first
                    // reading: its counters may hold an earlier life's requests.)
                    if self.zero.contains(&pair) {
                        ring.counts.push_back(Counts::default());
                        ring.buckets.push_back([0; BUCKETS]);
                    }
                    ring
                }
            };
            ring.counts.push_back(Counts {
                requests: r.requests,
                server_errors: r.server_errors,
                fell_back: r.fell_back,
            });
            ring.buckets.push_back(r.buckets);
            while ring.counts.len() > self.capacity {
                ring.counts.pop_front();
            }
            while ring.buckets.len() > self.recent_capacity {
                ring.buckets.pop_front();
            }
            next.insert(pair, ring);
        }
        self.pairs = next;
        self.zero = zero;
    }

    /// How many samples back from the newest is the newest sample taken at or before
    /// `start`; the oldest sample's when none is that old.
    fn back_to(&self, start: Option<Instant>) -> Option<usize> {
        let oldest = self.stamps.len().checked_sub(1)?;
        let Some(start) = start else {
            return Some(oldest);
        };
        Some(
            self.stamps
                .iter()
                .rev()
                .position(|s| s.at <= start)
                .unwrap_or(oldest),
        )
    }

    /// What each pair of `current` (read now) did over the last `span`: the difference with
    /// its reading at the start of the window, or with its oldest reading when it has none
    /// that old, or with zero when it was never read (its route was added since the last
    /// sample).
    pub fn window(&self, now: Instant, span: Duration, current: &[(Pair, Reading)]) -> Window {
        let back = self.back_to(now.checked_sub(span));
        let covered = back
            .and_then(|b| self.stamps.get(self.stamps.len() - 1 - b))
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.at));
        let deltas = current
            .iter()
            .map(|(pair, now_reading)| {
                let base = self.pairs.get(pair).and_then(|ring| {
                    let have = ring.counts.len().checked_sub(1)?;
                    ring.reading(back.unwrap_or(0).min(have))
                });
                (pair.clone(), now_reading.since(&base.unwrap_or_default()))
            })
            .collect();
        Window { deltas, covered }
    }

    /// The requests of each sample interval over the last hour, the last one ending at
    /// `now` with `current`, split into legacy or not by `is_legacy`. Pairs count from the
    /// first interval they were read at both ends of.
    pub fn intervals(
        &self,
        now: Stamp,
        current: &[(Pair, Reading)],
        is_legacy: impl Fn(&Pair) -> bool,
    ) -> Vec<Interval> {
        let n = self.stamps.len();
        let mut out = Vec::with_capacity(n);
        // Interval k ends at stamp k (1..n), or at `now` for k == n.
        for k in 1..=n {
            let (end_ms, back_end) = match k {
                k if k == n => (now.unix_ms, None),
                k => (self.stamps[k].unix_ms, Some(n - 1 - k)),
            };
            let back_start = n - k;
            let mut point = Interval {
                unix_ms: end_ms,
                legacy: 0,
                total: 0,
            };
            for (pair, now_reading) in current {
                let (start, end) = match self.pairs.get(pair) {
                    Some(ring) => {
                        let Some(start) = ring.reading(back_start) else {
                            continue;
                        };
                        let end = match back_end {
                            None => *now_reading,
                            Some(b) => match ring.reading(b) {
                                Some(r) => r,
                                None => continue,
                            },
                        };
                        (start, end)
                    }
                    // Read at zero in the newest sample: only the last interval has its
                    // requests.
                    None if back_end.is_none() && self.zero.contains(pair) => {
                        (Reading::default(), *now_reading)
                    }
                    None => continue,
                };
                let d = super::window::increase(start.requests, end.requests);
                point.total += d;
                if is_legacy(pair) {
                    point.legacy += d;
                }
            }
            out.push(point);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(r: &str, s: &str) -> Pair {
        (r.to_string(), s.to_string())
    }

    fn reading(requests: u64) -> Reading {
        let mut r = Reading {
            requests,
            ..Reading::default()
        };
        r.buckets[0] = requests;
        r
    }

    fn stamp(t0: Instant, secs: u64) -> Stamp {
        Stamp {
            at: t0 + Duration::from_secs(secs),
            unix_ms: secs * 1000,
        }
    }

    #[test]
    fn windows_start_at_the_newest_sample_old_enough() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        // A sample every 10 s for 10 minutes: 6 requests a sample.
        for i in 0..=60u64 {
            h.record(stamp(t0, i * 10), vec![(pair("o", "m"), reading(i * 6))]);
        }
        let now = t0 + Duration::from_secs(605);
        let current = [(pair("o", "m"), reading(363))];
        let w = h.window(now, RECENT, &current);
        // The 5 minutes back from 605 s start at the sample of 300 s (reading 180).
        assert_eq!(w.deltas[&pair("o", "m")].requests, 363 - 180);
        assert_eq!(w.covered, Duration::from_secs(305));
        // The process is younger than an hour: the window covers all of it.
        let w = h.window(now, HOUR, &current);
        assert_eq!(w.deltas[&pair("o", "m")].requests, 363);
        assert_eq!(w.covered, Duration::from_secs(605));
    }

    #[test]
    fn the_ring_is_bounded() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        for i in 0..1000u64 {
            h.record(stamp(t0, i * 10), vec![(pair("o", "m"), reading(i))]);
        }
        assert_eq!(h.len(), 361);
        let ring = &h.pairs[&pair("o", "m")];
        assert_eq!(ring.counts.len(), 361);
        assert_eq!(ring.buckets.len(), 33);
        // The hour window reaches back exactly an hour.
        let now = t0 + Duration::from_secs(9990);
        let w = h.window(now, HOUR, &[(pair("o", "m"), reading(999))]);
        assert_eq!(w.deltas[&pair("o", "m")].requests, 360);
    }

    #[test]
    fn routes_gone_after_a_reload_are_dropped_and_new_ones_start_from_zero() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        h.record(
            stamp(t0, 0),
            vec![(pair("old", "m"), reading(5)), (pair("o", "m"), reading(0))],
        );
        h.record(stamp(t0, 10), vec![(pair("o", "m"), reading(4))]);
        assert!(!h.pairs.contains_key(&pair("old", "m")));
        // `new` appeared after the last sample: all its requests are in the window.
        let current = [
            (pair("o", "m"), reading(10)),
            (pair("new", "n"), reading(3)),
        ];
        let w = h.window(t0 + Duration::from_secs(15), RECENT, &current);
        assert_eq!(w.deltas[&pair("o", "m")].requests, 10);
        assert_eq!(w.deltas[&pair("new", "n")].requests, 3);
    }

    #[test]
    fn pairs_without_requests_keep_no_ring_and_their_first_requests_count() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        let idle: Vec<_> = (0..1000)
            .map(|i| (pair(&format!("r{i}"), "m"), reading(0)))
            .collect();
        h.record(stamp(t0, 0), idle.clone());
        h.record(stamp(t0, 10), idle.clone());
        assert!(
            h.pairs.is_empty(),
            "no ring for a pair that never served a request"
        );
        // r7 serves 4 requests before the next sample, 2 more after it.
        let mut next = idle.clone();
        next[7].1 = reading(4);
        h.record(stamp(t0, 20), next.clone());
        assert_eq!(h.pairs.len(), 1);
        // Read now: r7 at 6, and r8 (read at zero in the newest sample) at 3.
        next[7].1 = reading(6);
        next[8].1 = reading(3);
        let w = h.window(t0 + Duration::from_secs(25), RECENT, &next);
        assert_eq!(
            w.deltas[&pair("r7", "m")].requests,
            6,
            "the first 4 count too"
        );
        assert_eq!(w.deltas[&pair("r8", "m")].requests, 3);
        assert_eq!(w.deltas[&pair("r9", "m")].requests, 0);
        let shares = h.intervals(stamp(t0, 25), &next, |_| true);
        assert_eq!(shares.iter().map(|i| i.total).sum::<u64>(), 9);
        assert_eq!(shares.last().map(|i| i.total), Some(5), "r7's 2 and r8's 3");
    }

    #[test]
    fn a_pair_added_later_counts_from_its_first_reading() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        h.record(stamp(t0, 0), vec![(pair("o", "m"), reading(0))]);
        h.record(stamp(t0, 10), vec![(pair("o", "m"), reading(10))]);
        // A route that existed before (counters of 100 from an earlier life) comes back.
        h.record(
            stamp(t0, 20),
            vec![
                (pair("o", "m"), reading(20)),
                (pair("b", "n"), reading(100)),
            ],
        );
        let current = [
            (pair("o", "m"), reading(25)),
            (pair("b", "n"), reading(107)),
        ];
        let w = h.window(t0 + Duration::from_secs(25), RECENT, &current);
        assert_eq!(w.deltas[&pair("o", "m")].requests, 25);
        assert_eq!(w.deltas[&pair("b", "n")].requests, 7);
    }

    #[test]
    fn intervals_split_each_sample_period_into_legacy_and_new() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        let read = |m: u64, n: u64| {
            vec![
                (pair("o", "mono"), reading(m)),
                (pair("o", "new"), reading(n)),
            ]
        };
        h.record(stamp(t0, 0), read(0, 0));
        h.record(stamp(t0, 10), read(9, 1));
        h.record(stamp(t0, 20), read(14, 6));
        let now = stamp(t0, 25);
        let points = h.intervals(now, &read(14, 8), |p| p.1 == "mono");
        assert_eq!(
            points,
            [
                Interval {
                    unix_ms: 10_000,
                    legacy: 9,
                    total: 10
                },
                Interval {
                    unix_ms: 20_000,
                    legacy: 5,
                    total: 10
                },
                Interval {
                    unix_ms: 25_000,
                    legacy: 0,
                    total: 2
                },
            ]
        );
    }
}
