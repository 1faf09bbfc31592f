//! The metric handles: counters and histograms in atomics that the request path, the
//! registry and the config watcher update. A handle knows how to count; the scrape's text is
//! `render.rs`'s, except for the few lines a handle renders of itself.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Status codes counted without a lock; anything else goes to a locked overflow map.
const COMMON_STATUSES: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 414, 429,
    431, 500, 502, 503, 504,
];

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram (non-cumulative buckets; made cumulative at render time).
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The count of each bucket (non-cumulative, the last one `+Inf`), for the migration
    /// board's sampler.
    pub fn bucket_counts(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    pub(super) fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Counters of one route (label pair route + service).
///
/// A config may hold 100,000 routes of which most never see a request, so the handle is
/// small (32 bytes with its `Arc`) until the route's first request allocates its counters
/// (about 350 bytes). Until then it reads as zero everywhere: a scrape still shows the
/// route's latency series at zero from start, as before, so a `rate()` alert sees the
/// series before the first request.
#[derive(Default, Debug)]
pub struct RouteMetrics {
    counts: OnceLock<Box<RouteCounts>>,
}

/// The counters of a route that has served a request.
#[derive(Default, Debug)]
struct RouteCounts {
    common: [AtomicU64; COMMON_STATUSES.len()],
    other: Mutex<BTreeMap<u16, u64>>,
    latency: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        // One atomic load once the counters exist; the first request allocates them.
        let c = self.counts.get_or_init(Box::default);
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => {
                c.common[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if let Ok(mut m) = c.other.lock() {
                    *m.entry(status).or_default() += 1;
                }
            }
        }
        c.latency.observe(elapsed);
    }

    /// Whether the route has served a request (its counters exist).
    pub fn used(&self) -> bool {
        self.counts.get().is_some()
    }

    /// Requests answered with a 5xx status, for the migration board's sampler.
    pub fn server_errors(&self) -> u64 {
        self.statuses().range(500..600).map(|(_, n)| n).sum()
    }

    /// The count of each latency bucket (non-cumulative, the last one `+Inf`), for the
    /// migration board's sampler.
    pub fn bucket_counts(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        self.counts
            .get()
            .map_or([0; LATENCY_BUCKETS.len() + 1], |c| {
                c.latency.bucket_counts()
            })
    }

    pub(super) fn statuses(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        let Some(c) = self.counts.get() else {
            return out;
        };
        for (i, s) in COMMON_STATUSES.iter().enumerate() {
            let v = c.common[i].load(Ordering::Relaxed);
            if v > 0 {
                out.insert(*s, v);
            }
        }
        if let Ok(m) = c.other.lock() {
            for (s, v) in m.iter() {
                out.insert(*s, *v);
            }
        }
        out
    }

    /// The latency histogram's lines (all zero before the first request).
    pub(super) fn render_latency(&self, name: &str, labels: &str, out: &mut String) {
        match self.counts.get() {
            Some(c) => c.latency.render(name, labels, out),
            None => Histogram::default().render(name, labels, out),
        }
    }
}

/// Kinds of upstream failure, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    ConnectRefused,
    ConnectTimeout,
    ReadTimeout,
    Closed,
    Tls,
    NoInstance,
    CircuitOpen,
    AtCapacity,
    Other,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 9] = [
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::ReadTimeout,
        Self::Closed,
        Self::Tls,
        Self::NoInstance,
        Self::CircuitOpen,
        Self::AtCapacity,
        Self::Other,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::ReadTimeout => "read_timeout",
            Self::Closed => "closed",
            Self::Tls => "tls",
            Self::NoInstance => "no_instance",
            Self::CircuitOpen => "circuit_open",
            Self::AtCapacity => "at_capacity",
            Self::Other => "other",
        }
    }
}

/// Counters of one service.
#[derive(Default, Debug)]
pub struct ServiceMetrics {
    pub(super) errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
}

impl ServiceMetrics {
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        let i = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// How a split route's requests were placed on one of its sides (before any fallback).
#[derive(Default, Debug)]
pub struct SplitSideMetrics {
    /// By choice: sticky key, random, override.
    pub(super) chosen: [AtomicU64; 3],
    /// Requests placed on this side that went to the route's fallback instead.
    pub fell_back: AtomicU64,
}

/// The ways a split route places a request, as a label.
pub(super) const SPLIT_CHOICES: [&str; 3] = ["sticky", "random", "override"];

impl SplitSideMetrics {
    /// Counts a request placed on this side; `choice` is 0 for sticky, 1 for random, 2 for
    /// override (the order of the `choice` labels).
    pub fn chosen(&self, choice: usize) {
        if let Some(c) = self.chosen.get(choice) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Token requests for one service's client credentials, by result.
#[derive(Default, Debug)]
pub struct CredentialMetrics {
    pub ok: AtomicU64,
    pub error: AtomicU64,
}

/// Requests holding an upstream connection, and those the in-flight caps and the stall
/// limit stopped (`src/proxy/in_flight.rs`).
#[derive(Default, Debug)]
pub struct UpstreamLoad {
    /// Requests holding (or opening) an upstream connection now: the gateway-wide cap's count.
    pub in_flight: AtomicUsize,
    /// Refused because the gateway-wide cap was reached.
    pub refused_gateway: AtomicU64,
    /// Refused after waiting for a slot of their own client connection.
    pub refused_connection: AtomicU64,
    /// Refused because their client address held its share of slots.
    pub refused_client: AtomicU64,
    /// Refused at once because too many requests were waiting for a slot already.
    pub refused_waiting: AtomicU64,
    /// Refused because the gateway was contended and their address held its fair share.
    pub refused_fair_share: AtomicU64,
    /// Refused because only the reserve was left and their address held too many slots
    /// for it (`src/proxy/fair_share.rs`).
    pub refused_reserve: AtomicU64,
    /// Requests waiting for a slot of their client connection now.
    pub waiting: AtomicUsize,
    /// Proxied responses cut because the client made no progress reading them.
    pub stalled: AtomicU64,
    /// The most requests that held a slot at once since the last memory release.
    pub high_water: AtomicUsize,
    /// Memory releases after a burst (`src/proxy/release.rs`).
    pub collections: AtomicU64,
}

/// The reasons a reload fails (`ConfigError::reason`), as metric labels.
pub const RELOAD_FAILURE_REASONS: [&str; 7] = [
    "io",
    "invalid",
    "too_large",
    "too_many_routes",
    "internal",
    "not_a_file",
    "too_many_values",
];

/// Failed reloads, one counter per [`RELOAD_FAILURE_REASONS`] entry.
#[derive(Default, Debug)]
pub struct ReloadFailures([AtomicU64; RELOAD_FAILURE_REASONS.len()]);

impl ReloadFailures {
    /// Counts a failure; an unknown reason counts as `invalid`.
    pub fn count(&self, reason: &str) {
        let i = RELOAD_FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut String) {
        out.push_str("# HELP ficus_config_reload_failures_total Failed config reloads by reason.\n# TYPE ficus_config_reload_failures_total counter\n");
        for (reason, n) in RELOAD_FAILURE_REASONS.iter().zip(&self.0) {
            let _ = writeln!(
                out,
                "ficus_config_reload_failures_total{{reason=\"{reason}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_route_s_handle_is_small_and_reads_as_zero() {
        let m = RouteMetrics::default();
        assert!(std::mem::size_of::<RouteMetrics>() <= 16);
        assert!(!m.used());
        assert_eq!(m.bucket_counts(), [0; LATENCY_BUCKETS.len() + 1]);
        assert!(m.statuses().is_empty());
        let mut idle = String::new();
        m.render_latency("x", "route=\"r\"", &mut idle);
        let mut zero = String::new();
        Histogram::default().render("x", "route=\"r\"", &mut zero);
        assert_eq!(idle, zero);
        m.record(200, Duration::from_micros(100));
        assert!(m.used());
        assert_eq!(m.statuses().get(&200), Some(&1));
    }

    #[test]
    fn board_readings() {
        let m = RouteMetrics::default();
        m.record(200, Duration::from_micros(100));
        m.record(502, Duration::from_millis(30));
        m.record(599, Duration::from_millis(30));
        m.record(404, Duration::from_millis(30));
        assert_eq!(m.server_errors(), 2);
        let b = m.bucket_counts();
        assert_eq!(b.iter().sum::<u64>(), 4);
        assert_eq!((b[0], b[6]), (1, 3));
    }
}
