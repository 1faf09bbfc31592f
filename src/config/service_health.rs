//! A service's health settings: the active `health` probe (`tcp` or `http`), passive
//! `outlier` detection and the circuit `breaker`, compiled into the registry's specs for
//! `services.rs`.

use http::Method;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::{RawBreaker, RawHealth, RawOutlier};
use crate::registry::spec::*;

/// `health`: the active probe; `None` when its type is unknown (reported).
pub(super) fn health_probe(
    c: &mut Compiler<'_>,
    key: &str,
    h: &Spanned<RawHealth>,
) -> Option<HealthSpec> {
    let hspan = span_of(h);
    let h = h.get_ref();
    let hk = format!("{key}.health");
    let kind = match h.kind.as_deref() {
        Some("tcp") => {
            if h.path.is_some() {
                c.d.error(
                    hspan.clone(),
                    format!("{hk}.path"),
                    "a `tcp` probe has no path",
                );
            }
            ProbeKind::Tcp
        }
        Some("http") | None => http_probe(c, &hk, &hspan, h),
        Some(other) => {
            c.d.error_hint(
                hspan.clone(),
                format!("{hk}.type"),
                format!("unknown probe type `{other}`"),
                "use \"http\" or \"tcp\"",
            );
            return None;
        }
    };
    let interval = c
        .duration(&h.interval, &format!("{hk}.interval"))
        .unwrap_or(Duration::from_secs(5));
    let timeout = c
        .positive_duration(
            &h.timeout,
            &format!("{hk}.timeout"),
            "every probe would fail",
        )
        .unwrap_or(Duration::from_secs(1));
    if interval < Duration::from_millis(10) {
        c.d.error(
            h.interval.as_ref().map_or(hspan.clone(), span_of),
            format!("{hk}.interval"),
            "probe interval must be at least 10ms",
        );
    }
    let jitter = h.jitter.unwrap_or(0.1);
    if !(0.0..=1.0).contains(&jitter) {
        c.d.error_hint(
            hspan.clone(),
            format!("{hk}.jitter"),
            format!("jitter {jitter} is outside 0–1"),
            "it is a fraction of `interval`, e.g. 0.1",
        );
    }
    Some(HealthSpec {
        kind,
        interval,
        timeout,
        jitter: jitter.clamp(0.0, 1.0),
        healthy_after: h.healthy_after.unwrap_or(2).max(1),
        unhealthy_after: h.unhealthy_after.unwrap_or(3).max(1),
        start_healthy: h.start_healthy,
    })
}

/// The `http` probe: path, method, expected status and `Host`.
fn http_probe(c: &mut Compiler<'_>, hk: &str, hspan: &Range<usize>, h: &RawHealth) -> ProbeKind {
    let path = h.path.clone().unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') || path.contains([' ', '\r', '\n']) {
        c.d.error(
            hspan.clone(),
            format!("{hk}.path"),
            format!("`{path}` is not a valid probe path"),
        );
    }
    let method = match Method::from_bytes(
        h.method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase()
            .as_bytes(),
    ) {
        Ok(m) => m,
        Err(_) => {
            c.d.error(
                hspan.clone(),
                format!("{hk}.method"),
                "invalid probe method",
            );
            Method::GET
        }
    };
    let status = match h.expect_status.as_deref().map(parse_status_range) {
        None => (200, 399),
        Some(Some(r)) => r,
        Some(None) => {
            c.d.error_hint(
                hspan.clone(),
                format!("{hk}.expect_status"),
                "invalid status range",
                "write \"200\" or \"200-399\"",
            );
            (200, 399)
        }
    };
    // The host goes into the probe's `Host` line as it is: CR/LF would inject
    // headers, and spaces or other controls make a request no server accepts.
    if let Some(host) = h.host.as_deref().filter(|v| {
        v.is_empty()
            || v.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    }) {
        c.d.error_hint(
            hspan.clone(),
            format!("{hk}.host"),
            format!("{host:?} is not a valid probe host"),
            "write a host name or ip[:port], e.g. \"orders.internal\"",
        );
    }
    ProbeKind::Http {
        method,
        path,
        host: h.host.clone(),
        status,
        body_contains: h.body_contains.clone(),
    }
}

/// `outlier`: passive ejection of failing instances; on by default, off with
/// `consecutive_failures = 0`.
pub(super) fn outlier_detection(
    c: &mut Compiler<'_>,
    key: &str,
    span: &Range<usize>,
    raw: Option<&Spanned<RawOutlier>>,
) -> Option<OutlierSpec> {
    let Some(o) = raw else {
        return Some(OutlierSpec::default());
    };
    let d = OutlierSpec::default();
    let o = o.get_ref();
    let pct = o
        .max_ejection_percent
        .as_ref()
        .map_or(d.max_ejection_percent, |p| *p.get_ref());
    if pct > 100 {
        c.d.error(
            o.max_ejection_percent
                .as_ref()
                .map_or(span.clone(), span_of),
            format!("{key}.outlier.max_ejection_percent"),
            "must be between 0 and 100",
        );
    }
    let consecutive = o.consecutive_failures.unwrap_or(d.consecutive_failures);
    (consecutive > 0).then(|| OutlierSpec {
        consecutive_failures: consecutive,
        base_ejection_time: c
            .duration(
                &o.base_ejection_time,
                &format!("{key}.outlier.base_ejection_time"),
            )
            .unwrap_or(d.base_ejection_time),
        max_ejection_time: c
            .duration(
                &o.max_ejection_time,
                &format!("{key}.outlier.max_ejection_time"),
            )
            .unwrap_or(d.max_ejection_time),
        max_ejection_percent: pct.min(100),
    })
}

/// `breaker`: the circuit breaker's thresholds.
pub(super) fn circuit_breaker(
    c: &mut Compiler<'_>,
    key: &str,
    b: &Spanned<RawBreaker>,
) -> BreakerSpec {
    let d = BreakerSpec::default();
    let bspan = span_of(b);
    let b = b.get_ref();
    let rate = b
        .failure_rate
        .as_ref()
        .map_or(d.failure_rate, |r| *r.get_ref());
    if !(0.0..=1.0).contains(&rate) || rate == 0.0 {
        c.d.error(
            b.failure_rate.as_ref().map_or(bspan, span_of),
            format!("{key}.breaker.failure_rate"),
            "failure_rate must be in (0, 1]",
        );
    }
    BreakerSpec {
        consecutive_failures: b
            .consecutive_failures
            .unwrap_or(d.consecutive_failures)
            .max(1),
        failure_rate: rate,
        min_requests: b.min_requests.unwrap_or(d.min_requests),
        window: c
            .positive_duration(
                &b.window,
                &format!("{key}.breaker.window"),
                "the failure rate would be measured over no time at all",
            )
            .unwrap_or(d.window),
        open_for: c
            .duration(&b.open_for, &format!("{key}.breaker.open_for"))
            .unwrap_or(d.open_for),
        half_open_requests: b.half_open_requests.unwrap_or(d.half_open_requests).max(1),
    }
}

/// `"200"` or `"200-399"`.
fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v: u16 = s.trim().parse().ok()?;
            (v, v)
        }
    };
    (100..=599).contains(&lo).then_some(())?;
    (lo <= hi && hi <= 599).then_some((lo, hi))
}
