//! The board's memory: every (route, service) pair's counters read every sample period and
//! kept in a bounded ring (an hour of readings), from which the windows of the board (the
//! last 5 minutes, the last hour) and the legacy share's sparkline are computed.
//!
//! Only the sampler writes here, and only the admin listener reads: the request path never
//! sees this module. Memory is bounded: [`HOUR`] of request counts per pair and
//! [`RECENT`] of latency histograms (only the 5-minute p99 needs them). Pairs whose route
//! or service left the config are dropped at the next sample.
//!
//! Only pairs that served traffic within the hour keep a ring: a pair that never served a
//! request is one entry of a set, and a ring whose readings stayed the same for the whole
//! hour is replaced by that one reading. So the history's memory grows with the pairs that
//! are busy, not with the routes of the config times the time the process has run (20,000
//! idle routes kept 12 KiB each once the hour was full).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::window::{Delta, Reading, BUCKETS};

/// The long window of the board, and how far back the ring reaches.
pub const HOUR: Duration = Duration::from_secs(3600);
/// The short window (error rates, p99, the headline's "now").
pub const RECENT: Duration = Duration::from_secs(300);
/// The sample period in production.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// A (route, service) pair: requests of `route` served by `service`. The names are shared
/// with the running config (the route's) and with the other pairs of the sample (the
/// service's), so a sample allocates no name.
pub type Pair = (Arc<str>, Arc<str>);

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// How many of the newest readings in a row equal the one before them: once every
    /// reading of a full ring is the same, the ring is replaced by that reading.
    unchanged: usize,
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

    /// Keeps `r` as the newest reading, within `capacity` counts and `recent_capacity`
    /// histograms.
    fn push(&mut self, r: &Reading, capacity: usize, recent_capacity: usize) {
        let counts = Counts {
            requests: r.requests,
            server_errors: r.server_errors,
            fell_back: r.fell_back,
        };
        let same = self.counts.back().is_some_and(|c| *c == counts)
            && self.buckets.back().is_some_and(|b| *b == r.buckets);
        self.unchanged = if same { self.unchanged + 1 } else { 0 };
        self.counts.push_back(counts);
        self.buckets.push_back(r.buckets);
        while self.counts.len() > capacity {
            self.counts.pop_front();
        }
        while self.buckets.len() > recent_capacity {
            self.buckets.pop_front();
        }
    }

    /// Whether the ring covers the whole hour with one and the same reading: nothing
    /// happened in any window, and its newest reading says all the board needs.
    fn flat(&self, capacity: usize) -> bool {
        self.counts.len() >= capacity && self.unchanged + 1 >= self.counts.len()
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
    /// Pairs without a ring whose counters stood still for at least the whole hour, with
    /// the reading they stand at (a pair that served traffic once and then went idle).
    quiet: HashMap<Pair, Reading>,
}

/// Files a pair without a ring under where it stands: the zero set, or the still ones.
fn stand(zero: &mut HashSet<Pair>, quiet: &mut HashMap<Pair, Reading>, pair: Pair, at: Reading) {
    if at == Reading::default() {
        zero.insert(pair);
    } else {
        quiet.insert(pair, at);
    }
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
            quiet: HashMap::new(),
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
        let mut zero = HashSet::with_capacity(self.zero.len());
        let mut quiet = HashMap::with_capacity(self.quiet.len());
        for (pair, r) in readings {
            let mut ring = match self.pairs.remove(&pair) {
                Some(ring) => ring,
                None => {
                    // Where it stood one sample ago without a ring: at zero, or still for
                    // the hour; `None` when it was not read (new to the config).
                    let before = self.standing(&pair);
                    let still = match before {
                        Some(at) => at == r,
                        None => r == Reading::default(),
                    };
                    if still {
                        stand(&mut zero, &mut quiet, pair, r);
                        continue;
                    }
                    // It moved: it starts from where it stood, so its first requests
                    // count. (A pair new to the config counts from its first reading: its
                    // counters may hold an earlier life's requests.)
                    let mut ring = PairRing::default();
                    if let Some(at) = before {
                        ring.push(&at, self.capacity, self.recent_capacity);
                    }
                    ring
                }
            };
            ring.push(&r, self.capacity, self.recent_capacity);
            if ring.flat(self.capacity) {
                stand(&mut zero, &mut quiet, pair, r);
                continue;
            }
            next.insert(pair, ring);
        }
        self.pairs = next;
        self.zero = zero;
        self.quiet = quiet;
    }

    /// Where a pair without a ring stood at the newest sample: zero, or the reading it
    /// stood still at for the whole hour. `None` for a pair not read then.
    fn standing(&self, pair: &Pair) -> Option<Reading> {
        if self.zero.contains(pair) {
            return Some(Reading::default());
        }
        self.quiet.get(pair).copied()
    }

    /// Number of pairs that keep a ring (served traffic within the hour).
    pub fn busy_pairs(&self) -> usize {
        self.pairs.len()
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
                let base = match self.pairs.get(pair) {
                    Some(ring) => ring
                        .counts
                        .len()
                        .checked_sub(1)
                        .and_then(|have| ring.reading(back.unwrap_or(0).min(have))),
                    // Without a ring it stood still since before the window.
                    None => self.standing(pair),
                };
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
                    // Standing still at the newest sample: only the last interval has
                    // requests.
                    None if back_end.is_none() => match self.standing(pair) {
                        Some(at) => (at, *now_reading),
                        None => continue,
                    },
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
        (Arc::from(r), Arc::from(s))
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
    fn a_ring_that_stood_still_for_the_hour_is_dropped_and_its_next_requests_count() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(10));
        let busy = pair("busy", "m");
        let idle = pair("idle", "m");
        // Both serve requests in the first minute; then only `busy` does.
        for i in 0..=6u64 {
            h.record(
                stamp(t0, i * 10),
                vec![(busy.clone(), reading(i)), (idle.clone(), reading(i))],
            );
        }
        let mut at = 60;
        // Just short of an hour of standing still: the ring still holds the first minute.
        while at < 60 + 3590 {
            at += 10;
            h.record(
                stamp(t0, at),
                vec![(busy.clone(), reading(at)), (idle.clone(), reading(6))],
            );
        }
        assert_eq!(h.busy_pairs(), 2);
        // An hour of readings, all 6: the ring goes, the reading stays.
        at += 10;
        h.record(
            stamp(t0, at),
            vec![(busy.clone(), reading(at)), (idle.clone(), reading(6))],
        );
        assert_eq!(h.busy_pairs(), 1);
        assert_eq!(h.quiet.get(&idle).map(|r| r.requests), Some(6));
        // Read now: 3 new requests of `idle` count in both windows and in the last interval.
        let now = stamp(t0, at + 5);
        let current = [(busy.clone(), reading(at + 5)), (idle.clone(), reading(9))];
        for span in [RECENT, HOUR] {
            let w = h.window(now.at, span, &current);
            assert_eq!(w.deltas[&idle].requests, 3);
        }
        let shares = h.intervals(now, &current, |p| p.0 == idle.0);
        assert_eq!(shares.iter().map(|i| i.legacy).sum::<u64>(), 3);
        assert_eq!(shares.last().map(|i| i.legacy), Some(3));
        // At the next sample it keeps a ring again, starting where it stood.
        h.record(stamp(t0, at + 10), current.to_vec());
        assert_eq!(h.busy_pairs(), 2);
        let w = h.window(t0 + Duration::from_secs(at + 12), RECENT, &current);
        assert_eq!(w.deltas[&idle].requests, 3);
        // Back at zero (its counters were reset) and still for an hour: the zero set.
        for k in 1..=361 {
            h.record(
                stamp(t0, at + 10 + k * 10),
                vec![
                    (busy.clone(), reading(at + 10 + k)),
                    (idle.clone(), reading(0)),
                ],
            );
        }
        assert_eq!(h.busy_pairs(), 1);
        assert!(h.zero.contains(&idle) && h.quiet.is_empty());
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
        let points = h.intervals(now, &read(14, 8), |p| &*p.1 == "mono");
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
