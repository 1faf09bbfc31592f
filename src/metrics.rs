//! Prometheus metrics: counters and histograms kept in atomics, rendered on scrape.
//!
//! Handles are created when a config is compiled and looked up by name, so counters survive
//! reloads. The request path only touches atomics of handles it already holds; the maps
//! here are locked only at reload and scrape time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

    fn render(&self, name: &str, labels: &str, out: &mut String) {
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
#[derive(Default, Debug)]
pub struct RouteMetrics {
    common: [AtomicU64; COMMON_STATUSES.len()],
    other: Mutex<BTreeMap<u16, u64>>,
    pub latency: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => {
                self.common[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if let Ok(mut m) = self.other.lock() {
                    *m.entry(status).or_default() += 1;
                }
            }
        }
        self.latency.observe(elapsed);
    }

    /// Requests answered with a 5xx status, for the migration board's sampler.
    pub fn server_errors(&self) -> u64 {
        self.statuses().range(500..600).map(|(_, n)| n).sum()
    }

    fn statuses(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for (i, s) in COMMON_STATUSES.iter().enumerate() {
            let v = self.common[i].load(Ordering::Relaxed);
            if v > 0 {
                out.insert(*s, v);
            }
        }
        if let Ok(m) = self.other.lock() {
            for (s, v) in m.iter() {
                out.insert(*s, *v);
            }
        }
        out
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
    errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
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
    chosen: [AtomicU64; 3],
    /// Requests placed on this side that went to the route's fallback instead.
    pub fell_back: AtomicU64,
}

/// The ways a split route places a request, as a label.
const SPLIT_CHOICES: [&str; 3] = ["sticky", "random", "override"];

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
    /// Proxied responses cut because the client made no progress reading them.
    pub stalled: AtomicU64,
    /// The most requests that held a slot at once since the last memory release.
    pub high_water: AtomicUsize,
    /// Memory releases after a burst (`src/proxy/release.rs`).
    pub collections: AtomicU64,
}

/// All metrics of the process.
#[derive(Default, Debug)]
pub struct Metrics {
    routes: Mutex<HashMap<(String, String), Arc<RouteMetrics>>>,
    services: Mutex<HashMap<String, Arc<ServiceMetrics>>>,
    /// Sides of split routes, by (route, service).
    split_sides: Mutex<HashMap<(String, String), Arc<SplitSideMetrics>>>,
    /// Override headers a split route ignored (naming no service of its split), by route.
    overrides_ignored: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Only services that have (or had) `client_credentials`.
    credentials: Mutex<HashMap<String, Arc<CredentialMetrics>>>,
    /// Shadowed routes' records and copies in flight, by route.
    pub shadows: crate::shadow::store::ShadowStates,
    /// Requests that matched no route (or failed before routing).
    pub unrouted: Arc<RouteMetrics>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Failed reloads by why they failed (counted by the config watcher).
    pub reload_failures: ReloadFailures,
    pub upstream_load: Arc<UpstreamLoad>,
}

/// The reasons a reload fails (`ConfigError::reason`), as metric labels.
pub const RELOAD_FAILURE_REASONS: [&str; 5] =
    ["io", "invalid", "too_large", "too_many_routes", "internal"];

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

    fn render(&self, out: &mut String) {
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

impl Metrics {
    pub fn route(&self, route: &str, service: &str) -> Arc<RouteMetrics> {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((route.to_string(), service.to_string()))
            .or_default()
            .clone()
    }

    pub fn service(&self, service: &str) -> Arc<ServiceMetrics> {
        let mut m = self.services.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(service.to_string()).or_default().clone()
    }

    pub fn split_side(&self, route: &str, service: &str) -> Arc<SplitSideMetrics> {
        let mut m = self.split_sides.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((route.to_string(), service.to_string()))
            .or_default()
            .clone()
    }

    pub fn override_ignored(&self, route: &str) -> Arc<AtomicU64> {
        let mut m = self
            .overrides_ignored
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.entry(route.to_string()).or_default().clone()
    }

    pub fn client_credentials(&self, service: &str) -> Arc<CredentialMetrics> {
        let mut m = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(service.to_string()).or_default().clone()
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self, inflight: usize) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP ficus_requests_total Requests by route, service and response status.\n# TYPE ficus_requests_total counter\n");
        let routes = sorted(&self.routes);
        let all = routes
            .iter()
            .map(|((r, s), m)| (r.as_str(), s.as_str(), m.as_ref()))
            .chain(std::iter::once(("", "", self.unrouted.as_ref())));
        let all: Vec<_> = all.collect();
        for (r, s, m) in &all {
            for (status, v) in m.statuses() {
                let _ = writeln!(
                    out,
                    "ficus_requests_total{{route=\"{}\",service=\"{}\",status=\"{status}\"}} {v}",
                    LabelValue(r),
                    LabelValue(s)
                );
            }
        }
        out.push_str("# HELP ficus_request_duration_seconds Time from request start to the end of logging.\n# TYPE ficus_request_duration_seconds histogram\n");
        for (r, s, m) in &all {
            let labels = format!("route=\"{}\",service=\"{}\"", LabelValue(r), LabelValue(s));
            m.latency
                .render("ficus_request_duration_seconds", &labels, &mut out);
        }
        out.push_str("# HELP ficus_upstream_errors_total Failed upstream attempts by service and kind.\n# TYPE ficus_upstream_errors_total counter\n");
        let services = sorted(&self.services);
        for (name, m) in &services {
            for (i, kind) in UpstreamErrorKind::ALL.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ficus_upstream_errors_total{{service=\"{}\",kind=\"{}\"}} {}",
                    LabelValue(name),
                    kind.label(),
                    m.errors[i].load(Ordering::Relaxed)
                );
            }
        }
        self.render_splits(&mut out);
        self.shadows.render_metrics(&mut out);
        let credentials = sorted(&self.credentials);
        if !credentials.is_empty() {
            out.push_str("# HELP ficus_client_credentials_fetches_total Token requests for services' client credentials, by result.\n# TYPE ficus_client_credentials_fetches_total counter\n");
        }
        for (name, m) in &credentials {
            for (result, n) in [("ok", &m.ok), ("error", &m.error)] {
                let _ = writeln!(
                    out,
                    "ficus_client_credentials_fetches_total{{service=\"{}\",result=\"{result}\"}} {}",
                    LabelValue(name),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP ficus_config_reloads_total Config reload attempts by result.\n# TYPE ficus_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "ficus_config_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "ficus_config_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        self.reload_failures.render(&mut out);
        out.push_str("# HELP ficus_access_log_dropped_total Access log lines dropped because stdout could not keep up.\n# TYPE ficus_access_log_dropped_total counter\n");
        let _ = writeln!(
            out,
            "ficus_access_log_dropped_total {}",
            crate::access_log::dropped()
        );
        crate::listener::h2_cuts::render(&mut out);
        crate::listener::tls_handshake::render_metrics(&mut out);
        out.push_str("# HELP ficus_requests_in_flight Requests being served now.\n# TYPE ficus_requests_in_flight gauge\n");
        let _ = writeln!(out, "ficus_requests_in_flight {inflight}");
        self.render_upstream_load(&mut out);
        out
    }
}

impl Metrics {
    /// Requests holding an upstream connection, refusals by cap, and stalled responses.
    fn render_upstream_load(&self, out: &mut String) {
        let l = &self.upstream_load;
        out.push_str("# HELP ficus_upstream_requests_in_flight Requests holding an upstream connection now.\n# TYPE ficus_upstream_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "ficus_upstream_requests_in_flight {}",
            l.in_flight.load(Ordering::Relaxed)
        );
        out.push_str("# HELP ficus_upstream_requests_refused_total Requests answered 503 because a cap on requests holding an upstream connection was reached, by cap.\n# TYPE ficus_upstream_requests_refused_total counter\n");
        for (cap, n) in [
            ("gateway", &l.refused_gateway),
            ("connection", &l.refused_connection),
        ] {
            let _ = writeln!(
                out,
                "ficus_upstream_requests_refused_total{{cap=\"{cap}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP ficus_client_stalls_total Proxied responses cut because the client read nothing for client_stall_timeout.\n# TYPE ficus_client_stalls_total counter\n");
        let _ = writeln!(
            out,
            "ficus_client_stalls_total {}",
            l.stalled.load(Ordering::Relaxed)
        );
        out.push_str("# HELP ficus_memory_releases_total Times freed memory was given back to the system after a burst of requests holding upstream connections.\n# TYPE ficus_memory_releases_total counter\n");
        let _ = writeln!(
            out,
            "ficus_memory_releases_total {}",
            l.collections.load(Ordering::Relaxed)
        );
    }

    /// Split routes: where requests were placed, fallbacks from each side, and ignored
    /// overrides. Nothing when no route has (or had) a split.
    fn render_splits(&self, out: &mut String) {
        let sides = sorted(&self.split_sides);
        if sides.is_empty() {
            return;
        }
        out.push_str("# HELP ficus_split_requests_total Requests of split routes by the side they were placed on (before any fallback) and how.\n# TYPE ficus_split_requests_total counter\n");
        for ((r, s), m) in &sides {
            for (i, choice) in SPLIT_CHOICES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ficus_split_requests_total{{route=\"{}\",service=\"{}\",choice=\"{choice}\"}} {}",
                    LabelValue(r),
                    LabelValue(s),
                    m.chosen[i].load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP ficus_split_fallbacks_total Requests of split routes placed on a side that was unavailable and served by the route's fallback.\n# TYPE ficus_split_fallbacks_total counter\n");
        for ((r, s), m) in &sides {
            let _ = writeln!(
                out,
                "ficus_split_fallbacks_total{{route=\"{}\",service=\"{}\"}} {}",
                LabelValue(r),
                LabelValue(s),
                m.fell_back.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP ficus_split_overrides_ignored_total Override headers that named no service of the route's split.\n# TYPE ficus_split_overrides_ignored_total counter\n");
        for (r, n) in &sorted(&self.overrides_ignored) {
            let _ = writeln!(
                out,
                "ficus_split_overrides_ignored_total{{route=\"{}\"}} {}",
                LabelValue(r),
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// `ficus_service_info{service,legacy}`: one series per configured service, `legacy="true"`
/// for the services `[gateway] legacy` names, so that PromQL can tell the legacy's share of
/// `ficus_requests_total` (see docs/migration-board.md).
pub fn render_service_info<'a>(services: impl Iterator<Item = (&'a str, bool)>, out: &mut String) {
    out.push_str("# HELP ficus_service_info Configured services; legacy=\"true\" for those `[gateway] legacy` names.\n# TYPE ficus_service_info gauge\n");
    for (name, legacy) in services {
        let _ = writeln!(
            out,
            "ficus_service_info{{service=\"{}\",legacy=\"{legacy}\"}} 1",
            LabelValue(name)
        );
    }
}

/// Renders plugin samples, one `# HELP`/`# TYPE` block per metric name, in the order
/// names first appear.
pub fn render_samples(samples: &[ficus_plugins::MetricSample], out: &mut String) {
    let mut names: Vec<&'static str> = Vec::new();
    for s in samples {
        if !names.contains(&s.name) {
            names.push(s.name);
        }
    }
    for name in names {
        let mut first = true;
        for s in samples.iter().filter(|s| s.name == name) {
            if first {
                let kind = match s.kind {
                    ficus_plugins::MetricType::Counter => "counter",
                    ficus_plugins::MetricType::Gauge => "gauge",
                };
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", s.help);
                first = false;
            }
            out.push_str(name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", LabelValue(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", s.value);
        }
    }
}

/// The entries of a handle map, sorted by key, so a scrape lists them in a stable order.
fn sorted<K: Clone + Ord, V>(map: &Mutex<HashMap<K, Arc<V>>>) -> Vec<(K, Arc<V>)> {
    let m = map.lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A Prometheus label value, escaped as the text exposition format requires when written:
/// `\` as `\\`, `"` as `\"` and a newline as `\n`. Every label value that is not a
/// fixed literal (service and route names come from routes.toml and the registry API) is
/// written through this, or one odd name makes the whole scrape unparseable.
pub struct LabelValue<'a>(pub &'a str);

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        let r = m.route("orders", "orders");
        r.record(200, Duration::from_millis(3));
        r.record(200, Duration::from_millis(30));
        r.record(418, Duration::from_millis(1));
        m.service("orders")
            .upstream_error(UpstreamErrorKind::ConnectRefused);
        let text = m.render(0);
        assert!(text.contains(
            "ficus_requests_total{route=\"orders\",service=\"orders\",status=\"200\"} 2"
        ));
        assert!(text.contains("status=\"418\"} 1"));
        assert!(text.contains("ficus_request_duration_seconds_bucket{route=\"orders\",service=\"orders\",le=\"0.005\"} 2"));
        assert!(text.contains(
            "ficus_request_duration_seconds_count{route=\"orders\",service=\"orders\"} 3"
        ));
        assert!(text.contains(
            "ficus_upstream_errors_total{service=\"orders\",kind=\"connect_refused\"} 1"
        ));
        // The same name returns the same counters (they survive a reload).
        assert!(Arc::ptr_eq(&r, &m.route("orders", "orders")));
        // Token requests appear only for services with client credentials.
        assert!(!text.contains("ficus_client_credentials_fetches_total"));
        m.client_credentials("orders")
            .ok
            .fetch_add(2, Ordering::Relaxed);
        let text = m.render(0);
        assert!(text.contains(
            "ficus_client_credentials_fetches_total{service=\"orders\",result=\"ok\"} 2\nficus_client_credentials_fetches_total{service=\"orders\",result=\"error\"} 0\n"
        ), "{text}");
    }

    #[test]
    fn service_info_marks_the_legacy() {
        let mut out = String::new();
        render_service_info(
            [("monolith", true), ("or\"ders", false)].into_iter(),
            &mut out,
        );
        assert!(out.contains("# TYPE ficus_service_info gauge\n"), "{out}");
        assert!(
            out.contains("ficus_service_info{service=\"monolith\",legacy=\"true\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("ficus_service_info{service=\"or\\\"ders\",legacy=\"false\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn board_readings() {
        let m = RouteMetrics::default();
        m.record(200, Duration::from_micros(100));
        m.record(502, Duration::from_millis(30));
        m.record(599, Duration::from_millis(30));
        m.record(404, Duration::from_millis(30));
        assert_eq!(m.server_errors(), 2);
        let b = m.latency.bucket_counts();
        assert_eq!(b.iter().sum::<u64>(), 4);
        assert_eq!((b[0], b[6]), (1, 3));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(LabelValue("orders").to_string(), "orders");
        assert_eq!(LabelValue("a\"b\\c\nd é").to_string(), "a\\\"b\\\\c\\nd é");
        let m = Metrics::default();
        m.route("r\"", "s\\\n")
            .record(200, Duration::from_millis(1));
        m.service("s\\\n").upstream_error(UpstreamErrorKind::Tls);
        let text = m.render(0);
        assert!(
            text.contains(
                "ficus_requests_total{route=\"r\\\"\",service=\"s\\\\\\n\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ficus_request_duration_seconds_count{route=\"r\\\"\",service=\"s\\\\\\n\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ficus_upstream_errors_total{service=\"s\\\\\\n\",kind=\"tls\"} 1"),
            "{text}"
        );
        // One sample per line: no raw newline slipped into a label.
        assert!(
            text.lines()
                .all(|l| l.starts_with("ficus_") || l.starts_with('#')),
            "{text}"
        );
    }
}
