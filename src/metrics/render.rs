//! The Prometheus text exposition of a scrape: [`Metrics::render`] and the blocks it is made
//! of, the service info and plugin samples the admin listener appends, and [`LabelValue`],
//! through which every label value that is not a fixed literal is written.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::handles::SPLIT_CHOICES;
use super::{sorted, Metrics, UpstreamErrorKind};

impl Metrics {
    /// Renders the Prometheus text exposition format.
    pub fn render(&self, inflight: usize) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP ficus_requests_total Requests by route, service and response status.\n# TYPE ficus_requests_total counter\n");
        let routes = sorted(&self.routes);
        let all = routes
            .iter()
            .map(|((r, s), m)| (&**r, &**s, m.as_ref()))
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
            m.render_latency("ficus_request_duration_seconds", &labels, &mut out);
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
        scalar(
            &mut out,
            "ficus_access_log_dropped_total",
            "Access log lines dropped because stdout could not keep up.",
            "counter",
            crate::access_log::dropped(),
        );
        crate::listener::h2_cuts::render(&mut out);
        crate::listener::tls_handshake::render_metrics(&mut out);
        crate::listener::client_conns::render_metrics(&mut out);
        out.push_str("# HELP ficus_requests_in_flight Requests being served now.\n# TYPE ficus_requests_in_flight gauge\n");
        let _ = writeln!(out, "ficus_requests_in_flight {inflight}");
        self.render_upstream_load(&mut out);
        out
    }
}

/// One unlabelled sample with its `HELP` and `TYPE` lines.
fn scalar(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Metrics {
    /// Requests holding an upstream connection, refusals by cap, and stalled responses.
    fn render_upstream_load(&self, out: &mut String) {
        let l = &self.upstream_load;
        scalar(
            out,
            "ficus_upstream_requests_in_flight",
            "Requests holding an upstream connection now.",
            "gauge",
            l.in_flight.load(Ordering::Relaxed),
        );
        scalar(
            out,
            "ficus_upstream_requests_waiting",
            "Requests waiting for a slot of their client connection now.",
            "gauge",
            l.waiting.load(Ordering::Relaxed),
        );
        out.push_str("# HELP ficus_upstream_requests_refused_total Requests answered 503 because a cap on requests holding an upstream connection was reached, by cap.\n# TYPE ficus_upstream_requests_refused_total counter\n");
        for (cap, n) in [
            ("gateway", &l.refused_gateway),
            ("connection", &l.refused_connection),
            ("client", &l.refused_client),
            ("waiting", &l.refused_waiting),
            ("fair_share", &l.refused_fair_share),
            ("reserve", &l.refused_reserve),
        ] {
            let _ = writeln!(
                out,
                "ficus_upstream_requests_refused_total{{cap=\"{cap}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        scalar(
            out,
            "ficus_client_stalls_total",
            "Proxied responses cut because the client read nothing for client_stall_timeout.",
            "counter",
            l.stalled.load(Ordering::Relaxed),
        );
        scalar(
            out,
            "ficus_memory_releases_total",
            "Times freed memory was given back to the system after a burst of requests holding upstream connections.",
            "counter",
            l.collections.load(Ordering::Relaxed),
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
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        let r = m.route(&"orders".into(), &"orders".into());
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
        assert!(Arc::ptr_eq(
            &r,
            &m.route(&"orders".into(), &"orders".into())
        ));
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
    fn label_values_are_escaped() {
        assert_eq!(LabelValue("orders").to_string(), "orders");
        assert_eq!(LabelValue("a\"b\\c\nd é").to_string(), "a\\\"b\\\\c\\nd é");
        let m = Metrics::default();
        m.route(&"r\"".into(), &"s\\\n".into())
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
