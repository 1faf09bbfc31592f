//! The migration board as data: what `GET /migration.json` answers, the page draws and
//! `ficus status` prints. One set of `Serialize`/`Deserialize` structs, so the shape is
//! declared once, here; `build` fills it from the running config, the board's history and
//! the shadow records.
//!
//! Shares are fractions (0 to 1), `null` when there was no traffic (no traffic is not
//! 0 %) or when `[gateway] legacy` is not set (nothing tells legacy from new).

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::history::{History, Interval, Pair, Stamp, HOUR, RECENT};
use super::window::{share, Delta, Reading};
use crate::runtime::Runtime;
use crate::shadow::store::ShadowStates;

/// Mismatching fields shown per shadowed route.
pub const TOP_FIELDS: usize = 5;

/// `GET /migration.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationBoard {
    pub generated_at_unix_ms: u64,
    /// Seconds between two samples of the counters.
    pub sample_period_seconds: f64,
    /// The services configured as the legacy (`[gateway] legacy`); empty when unset.
    pub legacy: Vec<String>,
    /// Set when the board cannot say something it should (no `legacy` configured).
    pub notice: Option<String>,
    pub total: Totals,
    /// The legacy share of all routed traffic per sample interval over the last hour,
    /// oldest first.
    pub legacy_share_series: Vec<SeriesPoint>,
    /// Every route, in priority order.
    pub routes: Vec<RouteBoard>,
}

/// The figures of the whole gateway (requests that matched a route).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Seconds actually covered by the 5-minute and 1-hour windows (less while the process
    /// is younger).
    pub window_5m_seconds: f64,
    pub window_1h_seconds: f64,
    pub requests_5m: u64,
    pub requests_1h: u64,
    /// The headline: the share of all traffic the legacy still serves.
    pub legacy_share_5m: Option<f64>,
    pub legacy_share_1h: Option<f64>,
    pub legacy: SideFacts,
    pub new: SideFacts,
    pub fallbacks_5m: u64,
    pub fallbacks_1h: u64,
}

/// One point of the sparkline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The end of the sample interval.
    pub at_unix_ms: u64,
    pub requests: u64,
    /// `null` for an interval without requests (or without `legacy` configured).
    pub legacy_share: Option<f64>,
}

/// One side (the legacy services, or the new ones) over the last 5 minutes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideFacts {
    pub requests: u64,
    /// Requests answered with a 5xx.
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// 99th percentile latency in milliseconds, from the latency histogram.
    pub p99_ms: Option<f64>,
}

/// Where a route's traffic goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// All of it to a legacy service.
    Legacy,
    /// All of it to a new service.
    New,
    /// Shared by weight between services (`split = [...]`).
    Split,
    /// One service, and `[gateway] legacy` is not set.
    Unknown,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Legacy => "legacy",
            Target::New => "new",
            Target::Split => "split",
            Target::Unknown => "unknown",
        }
    }
}

/// One service a route sends traffic to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceShare {
    pub service: String,
    /// Its share by configuration, in percent (100 for a route's only service).
    pub weight_percent: f64,
    /// `null` when `legacy` is not configured.
    pub legacy: Option<bool>,
}

/// One route of the board.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteBoard {
    pub name: String,
    pub path: String,
    pub target: Target,
    pub services: Vec<ServiceShare>,
    pub fallback: Option<String>,
    pub requests_5m: u64,
    pub requests_1h: u64,
    /// Share of the route's requests served by new (non-legacy) services.
    pub new_share_5m: Option<f64>,
    pub new_share_1h: Option<f64>,
    pub legacy: SideFacts,
    pub new: SideFacts,
    /// Requests served by the route's fallback because their service was unavailable.
    pub fallbacks_5m: u64,
    pub fallbacks_1h: u64,
    pub shadow: Option<ShadowFacts>,
}

/// A shadowed route's comparison record (since the shadow was configured as it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowFacts {
    pub service: String,
    pub compared: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub match_rate: Option<f64>,
    /// The fields that differed most often (not counting learned noise), with how many
    /// mismatches each was part of.
    pub top_fields: Vec<FieldFacts>,
    /// Fields learned as noise (differing between two answers of the primary itself).
    pub noise_fields: Vec<String>,
    pub shadow_errors: u64,
    pub shadow_timeouts: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldFacts {
    pub field: String,
    pub count: u64,
}

/// Reads every (route, service) pair's counters from the running config's metric handles:
/// each route with its own service, the other sides of its split and its fallback.
pub fn read(rt: &Runtime) -> Vec<(Pair, Reading)> {
    let services = &rt.service_names;
    let mut out = Vec::with_capacity(rt.route_metrics.len());
    for (i, route) in rt.config.router.routes().iter().enumerate() {
        let own = std::iter::once((route.service, &rt.route_metrics[i]));
        let others = rt.route_other_metrics[i].iter().map(|(s, m)| (*s, m));
        for (service, m) in own.chain(others) {
            let fell_back = match (&route.split, &rt.split_metrics[i]) {
                (Some(split), Some(sm)) => split
                    .sides
                    .iter()
                    .zip(sm.sides.iter())
                    .filter(|(side, _)| side.service == service)
                    .map(|(_, c)| c.fell_back.load(std::sync::atomic::Ordering::Relaxed))
                    .sum(),
                _ => 0,
            };
            let buckets = m.bucket_counts();
            out.push((
                (route.name.clone(), services[service].clone()),
                Reading {
                    requests: buckets.iter().sum(),
                    server_errors: m.server_errors(),
                    fell_back,
                    buckets,
                },
            ));
        }
    }
    out
}

/// The board now: `current` is [`read`] of `rt` at `now`.
pub fn build(
    rt: &Runtime,
    history: &History,
    shadows: &ShadowStates,
    now: Stamp,
    current: &[(Pair, Reading)],
) -> MigrationBoard {
    let legacy_names = &rt.config.gateway.legacy;
    let configured = !legacy_names.is_empty();
    let legacy: HashSet<&str> = legacy_names.iter().map(String::as_str).collect();
    let is_legacy = |service: &str| legacy.contains(service);
    let recent = history.window(now.at, RECENT, current);
    let hour = history.window(now.at, HOUR, current);
    let zero = Delta::default();

    let mut total = Totals {
        window_5m_seconds: recent.covered.as_secs_f64(),
        window_1h_seconds: hour.covered.as_secs_f64(),
        requests_5m: 0,
        requests_1h: 0,
        legacy_share_5m: None,
        legacy_share_1h: None,
        legacy: SideFacts::default(),
        new: SideFacts::default(),
        fallbacks_5m: 0,
        fallbacks_1h: 0,
    };
    let (mut all_legacy, mut all_new) = (Delta::default(), Delta::default());
    let (mut legacy_1h, mut requests_1h) = (0u64, 0u64);
    let mut routes = Vec::new();
    let service_arcs = &rt.service_names;
    for route in rt.config.router.routes() {
        let service_name = |s: usize| rt.config.services[s].name.clone();
        let pair_of = |s: usize| (route.name.clone(), service_arcs[s].clone());
        let mut services: Vec<usize> = match &route.split {
            Some(split) => split.sides.iter().map(|d| d.service).collect(),
            None => vec![route.service],
        };
        services.extend(route.fallback);
        services.sort_unstable();
        services.dedup();
        let (mut l5, mut n5) = (Delta::default(), Delta::default());
        let (mut l60, mut n60) = (0u64, 0u64);
        let (mut fell_back_5m, mut fell_back_1h) = (0u64, 0u64);
        for &s in &services {
            let pair = pair_of(s);
            let d5 = recent.deltas.get(&pair).unwrap_or(&zero);
            let d60 = hour.deltas.get(&pair).unwrap_or(&zero);
            if is_legacy(&pair.1) {
                l5.add(d5);
                l60 += d60.requests;
            } else {
                n5.add(d5);
                n60 += d60.requests;
            }
            fell_back_5m += d5.fell_back;
            fell_back_1h += d60.fell_back;
        }
        // A split counts its fallbacks per side; a plain route's fallback service serves
        // only fallbacks.
        let (fallbacks_5m, fallbacks_1h) = match (&route.split, route.fallback) {
            (Some(_), _) => (fell_back_5m, fell_back_1h),
            (None, Some(f)) if f != route.service => {
                let pair = pair_of(f);
                (
                    recent.deltas.get(&pair).map_or(0, |d| d.requests),
                    hour.deltas.get(&pair).map_or(0, |d| d.requests),
                )
            }
            (None, _) => (0, 0),
        };
        let requests_5m = l5.requests + n5.requests;
        let route_1h = l60 + n60;
        let target = match (&route.split, configured) {
            (Some(_), _) => Target::Split,
            (None, false) => Target::Unknown,
            (None, true) if is_legacy(&rt.config.services[route.service].name) => Target::Legacy,
            (None, true) => Target::New,
        };
        let shares = match &route.split {
            Some(split) => split
                .sides
                .iter()
                .enumerate()
                .map(|(i, d)| (d.service, split.percent(i)))
                .collect(),
            None => vec![(route.service, 100.0)],
        };
        let services = shares
            .into_iter()
            .map(|(s, weight_percent)| {
                let service = service_name(s);
                ServiceShare {
                    legacy: configured.then(|| is_legacy(&service)),
                    service,
                    weight_percent,
                }
            })
            .collect();
        let shadow = route.shadow.as_ref().map(|sh| {
            shadow_facts(
                service_name(sh.service),
                shadows.get(&route.name).map(|s| s.record.report()),
            )
        });
        routes.push(RouteBoard {
            path: route.pattern.source.clone(),
            target,
            services,
            fallback: route.fallback.map(service_name),
            requests_5m,
            requests_1h: route_1h,
            new_share_5m: configured
                .then(|| share(n5.requests, requests_5m))
                .flatten(),
            new_share_1h: configured.then(|| share(n60, route_1h)).flatten(),
            legacy: side_facts(&l5),
            new: side_facts(&n5),
            fallbacks_5m,
            fallbacks_1h,
            shadow,
            name: route.name.to_string(),
        });
        all_legacy.add(&l5);
        all_new.add(&n5);
        legacy_1h += l60;
        requests_1h += route_1h;
        total.fallbacks_5m += fallbacks_5m;
        total.fallbacks_1h += fallbacks_1h;
    }
    total.requests_5m = all_legacy.requests + all_new.requests;
    total.requests_1h = requests_1h;
    if configured {
        total.legacy_share_5m = share(all_legacy.requests, total.requests_5m);
        total.legacy_share_1h = share(legacy_1h, requests_1h);
    }
    total.legacy = side_facts(&all_legacy);
    total.new = side_facts(&all_new);
    let series = history
        .intervals(now, current, |p| is_legacy(&p.1))
        .into_iter()
        .map(
            |Interval {
                 unix_ms,
                 legacy,
                 total,
             }| SeriesPoint {
                at_unix_ms: unix_ms,
                requests: total,
                legacy_share: configured.then(|| share(legacy, total)).flatten(),
            },
        )
        .collect();
    MigrationBoard {
        generated_at_unix_ms: now.unix_ms,
        sample_period_seconds: history.period().as_secs_f64(),
        legacy: legacy_names.clone(),
        notice: (!configured).then(|| {
            "`[gateway] legacy` is not set in routes.toml: the board cannot tell the legacy \
             services from the new ones, so no shares are shown. Add e.g. \
             `legacy = \"monolith\"` to `[gateway]`."
                .to_string()
        }),
        total,
        legacy_share_series: series,
        routes,
    }
}

fn side_facts(d: &Delta) -> SideFacts {
    SideFacts {
        requests: d.requests,
        errors: d.server_errors,
        error_rate: d.error_rate(),
        p99_ms: d.p99_seconds().map(|s| s * 1000.0),
    }
}

/// A shadowed route's facts; before its first copy (or while shadowing is not wired to
/// the route) the record is empty.
fn shadow_facts(service: String, report: Option<crate::shadow::ShadowReport>) -> ShadowFacts {
    let Some(r) = report else {
        return ShadowFacts {
            service,
            compared: 0,
            matched: 0,
            mismatched: 0,
            match_rate: None,
            top_fields: Vec::new(),
            noise_fields: Vec::new(),
            shadow_errors: 0,
            shadow_timeouts: 0,
            dropped: 0,
        };
    };
    let mut fields: Vec<_> = r.fields.iter().filter(|f| !f.noise).collect();
    fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.field.cmp(&b.field)));
    ShadowFacts {
        service,
        compared: r.compared,
        matched: r.matched,
        mismatched: r.mismatched,
        match_rate: r.match_rate,
        top_fields: fields
            .into_iter()
            .take(TOP_FIELDS)
            .map(|f| FieldFacts {
                field: f.field.clone(),
                count: f.count,
            })
            .collect(),
        noise_fields: r
            .noise
            .fields
            .iter()
            .filter(|f| f.noise)
            .map(|f| f.field.clone())
            .collect(),
        shadow_errors: r.shadow_errors,
        shadow_timeouts: r.shadow_timeouts,
        dropped: r.dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::registry::Registry;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// `monolith` is the legacy; `orders` splits 80/20 with `monolith` as fallback;
    /// `search` goes to `search` with `monolith` as fallback; `catalog` is new-only.
    const CONFIG: &str = r#"
[gateway]
legacy = ["monolith"]

[services.monolith]
instances = ["127.0.0.1:1"]
[services.orders]
instances = ["127.0.0.1:2"]
[services.search]
instances = ["127.0.0.1:3"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
split = [{ service = "monolith", weight = 80 }, { service = "orders", weight = 20 }]
fallback = "monolith"

[[routes]]
name = "search"
match = { path = "/search/**" }
service = "search"
fallback = "monolith"

[[routes]]
name = "catalog"
match = { path = "/catalog/**" }
service = "orders"
"#;

    fn runtime(metrics: &Metrics, text: &str) -> Runtime {
        let cfg = crate::config::compile(std::path::Path::new("routes.toml"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        Runtime::new(cfg, metrics, &Registry::default(), 1, None)
    }

    fn served(rt: &Runtime, route: &str, service: &str, n: usize, status: u16, ms: u64) {
        let r = rt
            .config
            .router
            .routes()
            .iter()
            .position(|r| &*r.name == route)
            .unwrap();
        let s = rt.config.service_index(service).unwrap();
        for _ in 0..n {
            rt.route_metrics_for(r, s)
                .record(status, Duration::from_millis(ms));
        }
    }

    fn board(rt: &Runtime, history: &History) -> MigrationBoard {
        let now = Stamp::now();
        build(rt, history, &ShadowStates::default(), now, &read(rt))
    }

    fn route<'a>(b: &'a MigrationBoard, name: &str) -> &'a RouteBoard {
        b.routes.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn shares_sides_and_fallbacks() {
        let metrics = Metrics::default();
        let rt = runtime(&metrics, CONFIG);
        let mut history = History::new(Duration::from_secs(10));
        history.record(Stamp::now(), read(&rt));
        // orders: 6 to the monolith (2 of them fallbacks from the new side), 4 to orders.
        served(&rt, "orders", "monolith", 6, 200, 2);
        served(&rt, "orders", "orders", 3, 200, 40);
        served(&rt, "orders", "orders", 1, 503, 40);
        rt.split_metrics[0].as_ref().unwrap().sides[1]
            .fell_back
            .fetch_add(2, Ordering::Relaxed);
        // search: 5 served by search, 3 by the fallback.
        served(&rt, "search", "search", 5, 200, 1);
        served(&rt, "search", "monolith", 3, 200, 1);
        // catalog: 2 new.
        served(&rt, "catalog", "orders", 2, 200, 1);

        let b = board(&rt, &history);
        assert!(b.notice.is_none());
        // Legacy: 6 + 3 of 20.
        assert_eq!(b.total.requests_5m, 20);
        assert_eq!(b.total.legacy_share_5m, Some(9.0 / 20.0));
        assert_eq!(b.total.legacy_share_1h, Some(9.0 / 20.0));
        assert_eq!(b.total.fallbacks_5m, 5);
        assert_eq!(b.total.new.errors, 1);
        assert_eq!(b.total.new.error_rate, Some(1.0 / 11.0));

        let orders = route(&b, "orders");
        assert_eq!(orders.target, Target::Split);
        assert_eq!(orders.services.len(), 2);
        assert_eq!(orders.services[0].weight_percent, 80.0);
        assert_eq!(orders.services[1].legacy, Some(false));
        assert_eq!(orders.new_share_5m, Some(0.4));
        assert_eq!(orders.fallbacks_5m, 2);
        assert_eq!(orders.fallback.as_deref(), Some("monolith"));
        assert_eq!(orders.legacy.error_rate, Some(0.0));
        assert_eq!(orders.new.error_rate, Some(0.25));
        // p99 per side from the histograms: the bucket (1, 2.5] ms holds the legacy's 2 ms
        // requests, (25, 50] ms the new side's 40 ms ones.
        let legacy_p99 = orders.legacy.p99_ms.unwrap();
        let new_p99 = orders.new.p99_ms.unwrap();
        assert!(legacy_p99 > 1.0 && legacy_p99 <= 2.5, "{legacy_p99}");
        assert!(new_p99 > 25.0 && new_p99 <= 50.0, "{new_p99}");

        let search = route(&b, "search");
        assert_eq!(search.target, Target::New);
        assert_eq!(search.fallbacks_5m, 3);
        assert_eq!(search.new_share_5m, Some(5.0 / 8.0));

        let catalog = route(&b, "catalog");
        assert_eq!(catalog.target, Target::New);
        assert_eq!(catalog.new_share_5m, Some(1.0));
        assert_eq!(catalog.legacy.requests, 0);
        assert_eq!(catalog.legacy.error_rate, None);

        // The series: one interval, from the sample to now.
        assert_eq!(b.legacy_share_series.len(), 1);
        assert_eq!(b.legacy_share_series[0].requests, 20);
        assert_eq!(b.legacy_share_series[0].legacy_share, Some(9.0 / 20.0));
    }

    #[test]
    fn windows_exclude_what_happened_before_their_start() {
        let metrics = Metrics::default();
        let rt = runtime(&metrics, CONFIG);
        // 6 minutes ago the counters were at zero; a second later 10 requests had been
        // served: older than the short window, inside the hour.
        let now = Stamp::now();
        let ago = |secs: u64| Stamp {
            at: now
                .at
                .checked_sub(Duration::from_secs(secs))
                .unwrap_or(now.at),
            unix_ms: now.unix_ms - secs * 1000,
        };
        let mut history = History::new(Duration::from_secs(10));
        history.record(ago(361), read(&rt));
        served(&rt, "catalog", "orders", 10, 200, 1);
        history.record(ago(360), read(&rt));
        served(&rt, "orders", "monolith", 5, 200, 1);
        let b = board(&rt, &history);
        assert_eq!(b.total.requests_5m, 5);
        assert_eq!(b.total.legacy_share_5m, Some(1.0));
        assert_eq!(b.total.requests_1h, 15);
        assert_eq!(b.total.legacy_share_1h, Some(5.0 / 15.0));
        assert!(
            b.total.window_5m_seconds >= 359.0,
            "{}",
            b.total.window_5m_seconds
        );
    }

    #[test]
    fn without_legacy_no_share_is_guessed() {
        let metrics = Metrics::default();
        let text = CONFIG.replace("legacy = [\"monolith\"]", "");
        let rt = runtime(&metrics, &text);
        let history = History::new(Duration::from_secs(10));
        served(&rt, "orders", "monolith", 3, 200, 1);
        let b = board(&rt, &history);
        assert!(b.notice.as_deref().unwrap().contains("[gateway] legacy"));
        assert!(b.legacy.is_empty());
        assert_eq!(b.total.requests_5m, 3);
        assert_eq!(b.total.legacy_share_5m, None);
        assert_eq!(route(&b, "search").target, Target::Unknown);
        assert_eq!(route(&b, "orders").target, Target::Split);
        assert_eq!(route(&b, "orders").new_share_5m, None);
        assert_eq!(route(&b, "orders").services[0].legacy, None);
    }
}
