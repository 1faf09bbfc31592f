//! `[services.NAME]` and `[registry]`: compiles each service's instances, discovery, TLS,
//! health probe, outlier detection, breaker, load balancing and limits into a
//! [`ServiceSpec`], and the registry section into [`RegistrySettings`].
//!
//! A service is compiled on its own: which routes use it is `routes.rs`'s business.

use http::{HeaderName, Method};
use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::credentials;
use super::diag::did_you_mean;
use super::raw::{
    RawBreaker, RawDns, RawHealth, RawInstance, RawOutlier, RawRegistry, RawService, RawUpstreamTls,
};
use crate::registry::dns::DnsQuery;
use crate::registry::spec::*;
use crate::upstream::UpstreamTls;

/// Compiles `[registry]`; `zone` is the gateway's own zone, `own_addrs` its listener and
/// admin addresses (never a registered instance's).
pub(super) fn compile_registry(
    c: &mut Compiler<'_>,
    r: &RawRegistry,
    zone: Option<String>,
    own_addrs: Vec<std::net::SocketAddr>,
) -> RegistrySettings {
    let d = RegistrySettings::default();
    let mut token = r.token.as_ref().map(|t| t.get_ref().clone());
    if let Some(env) = &r.token_env {
        token = c.secret_from_env(env, "registry.token_env", "bearer token", "use `token`");
    }
    // A token of blanks could never be presented (`Authorization: Bearer   ` carries none).
    if token.as_deref().is_some_and(|t| t.trim().is_empty()) && r.token_env.is_none() {
        let at = r.token.as_ref().map_or(0..0, span_of);
        c.d.error(at, "registry.token", "the registry token is empty");
        token = None;
    }
    let dns_resolver = r
        .dns_resolver
        .as_ref()
        .and_then(|a| c.socket_addr(a.get_ref(), span_of(a), "registry.dns_resolver"));
    RegistrySettings {
        registration: r.registration.unwrap_or(d.registration),
        token,
        dns_resolver,
        default_ttl: c
            .positive_duration(
                &r.default_ttl,
                "registry.default_ttl",
                "registrations would expire as soon as they are made",
            )
            .unwrap_or(d.default_ttl),
        zone,
        allow_link_local: r.allow_link_local.unwrap_or(d.allow_link_local),
        own_addrs,
    }
}

/// Compiles one `[services.NAME]` table (`span` is its name's position).
pub(super) fn compile_service(
    c: &mut Compiler<'_>,
    name: &str,
    span: &Range<usize>,
    raw: &RawService,
    registry: &RegistrySettings,
) -> ServiceSpec {
    let key = format!("services.{name}");
    let statics = static_instances(c, &key, raw);
    let registration = raw.registration.unwrap_or(registry.registration);
    if raw.instances.is_empty() && raw.dns.is_none() && !registration {
        c.d.warning(span.clone(), key.clone(), format!("service `{name}` has no instances, no DNS discovery and no registration; its routes answer 503"), None);
    }
    let tls = raw.tls.as_ref().map(|t| upstream_tls(c, &key, span, t));
    let timeouts = c.timeouts(&raw.timeouts, &format!("{key}.timeouts"));
    let dns = raw.dns.as_ref().and_then(|d| dns_discovery(c, &key, d));
    let health = raw.health.as_ref().and_then(|h| health_probe(c, &key, h));
    if let (Some(h), Some(_)) = (&health, &tls) {
        if matches!(h.kind, ProbeKind::Http { .. }) {
            c.d.warning(
                span.clone(),
                format!("{key}.health"),
                "health probes speak plain HTTP, but this service uses TLS: the probe will fail",
                Some("use `type = \"tcp\"` for TLS services".into()),
            );
        }
    }
    let outlier = outlier_detection(c, &key, span, raw.outlier.as_ref());
    let breaker = raw.breaker.as_ref().map(|b| circuit_breaker(c, &key, b));
    let lb = lb_policy(c, &key, raw);
    check_zone_and_capacity(c, &key, span, raw, registry);
    let max_concurrent = raw.max_concurrent.as_ref().map(|m| *m.get_ref());
    let retry_budget = retry_budget(raw);
    let client_credentials = raw
        .client_credentials
        .as_ref()
        .and_then(|cc| credentials::compile(c, &key, cc));
    ServiceSpec {
        name: name.to_string(),
        statics,
        dns,
        registration,
        tls,
        timeouts,
        health,
        outlier,
        breaker,
        max_concurrent,
        lb,
        prefer_zone: raw.prefer_zone,
        panic_threshold: raw.panic_threshold.as_ref().map(|t| *t.get_ref()),
        retry_budget,
        pool_idle_timeout: c.positive_duration(
            &raw.pool_idle_timeout,
            &format!("{key}.pool_idle_timeout"),
            "no pooled connection would ever be reused",
        ),
        client_credentials,
    }
}

/// The `instances` list: each address once; weight 0 is allowed but warned about.
fn static_instances(c: &mut Compiler<'_>, key: &str, raw: &RawService) -> Vec<StaticInstance> {
    let mut statics = Vec::new();
    let mut seen = HashSet::new();
    for inst in &raw.instances {
        let ispan = span_of(inst);
        let (addr, weight, zone) = match inst.get_ref() {
            RawInstance::Addr(a) => (a.as_str(), 1, None),
            RawInstance::Table(t) => (t.addr.as_str(), t.weight.unwrap_or(1), t.zone.clone()),
        };
        if let Some(a) = c.socket_addr(addr, ispan.clone(), &format!("{key}.instances")) {
            if !seen.insert(a) {
                c.d.error(
                    ispan.clone(),
                    format!("{key}.instances"),
                    format!("instance {a} is listed twice"),
                );
            }
            if weight == 0 {
                c.d.warning(
                    ispan,
                    format!("{key}.instances"),
                    format!("instance {a} has weight 0 and gets no traffic"),
                    None,
                );
            }
            statics.push(StaticInstance {
                addr: a,
                weight,
                zone,
            });
        }
    }
    statics
}

/// `tls`: the upstream's SNI, verification and CA file.
fn upstream_tls(
    c: &mut Compiler<'_>,
    key: &str,
    span: &Range<usize>,
    t: &RawUpstreamTls,
) -> UpstreamTls {
    let ca = t
        .ca_file
        .as_ref()
        .and_then(|f| c.ca_certs(f, span.clone(), &format!("{key}.tls.ca_file")));
    let sni = t.sni.clone().unwrap_or_default();
    let verify = t.verify.unwrap_or(true);
    if verify && sni.is_empty() {
        c.d.error_hint(span.clone(), format!("{key}.tls.sni"), "upstream TLS with verification needs `sni`", "set `sni` to the name on the upstream's certificate, or `verify = false` (not recommended)");
    }
    UpstreamTls { sni, verify, ca }
}

/// `dns`: A/AAAA (`name` and `port`) or SRV discovery, and the TTL bounds.
fn dns_discovery(c: &mut Compiler<'_>, key: &str, d: &Spanned<RawDns>) -> Option<DnsSpec> {
    let dspan = span_of(d);
    let d = d.get_ref();
    let query = match (&d.name, d.port, &d.srv) {
        (Some(n), Some(port), None) => Some(DnsQuery::Host {
            name: n.clone(),
            port,
        }),
        (None, None, Some(srv)) => Some(DnsQuery::Srv { name: srv.clone() }),
        (Some(_), None, None) => {
            c.d.error_hint(dspan.clone(), format!("{key}.dns.port"), "A/AAAA discovery needs a `port`", "add `port = 8080`, or use `srv = \"_http._tcp.NAME\"` to take ports from SRV records");
            None
        }
        _ => {
            c.d.error_hint(
                dspan.clone(),
                format!("{key}.dns"),
                "set either `name` and `port` (A/AAAA records) or `srv` (SRV records)",
                "e.g. dns = { name = \"orders.internal\", port = 8080 }",
            );
            None
        }
    }?;
    let min_ttl = c
        .duration(&d.min_ttl, &format!("{key}.dns.min_ttl"))
        .unwrap_or(Duration::from_secs(1));
    let max_ttl = c
        .positive_duration(
            &d.max_ttl,
            &format!("{key}.dns.max_ttl"),
            "the service would be looked up again without pause",
        )
        .unwrap_or(Duration::from_secs(300));
    if min_ttl > max_ttl {
        c.d.error(
            dspan.clone(),
            format!("{key}.dns"),
            "`min_ttl` is larger than `max_ttl`",
        );
    }
    let resolver = d
        .resolver
        .as_ref()
        .and_then(|a| c.socket_addr(a.get_ref(), span_of(a), &format!("{key}.dns.resolver")));
    Some(DnsSpec {
        query,
        min_ttl,
        max_ttl,
        resolver,
    })
}

/// `health`: the active probe; `None` when its type is unknown (reported).
fn health_probe(c: &mut Compiler<'_>, key: &str, h: &Spanned<RawHealth>) -> Option<HealthSpec> {
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
fn outlier_detection(
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
fn circuit_breaker(c: &mut Compiler<'_>, key: &str, b: &Spanned<RawBreaker>) -> BreakerSpec {
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

/// `lb` and `hash_on`; an unknown policy is reported and round robin used.
fn lb_policy(c: &mut Compiler<'_>, key: &str, raw: &RawService) -> LbPolicy {
    let lb = match raw.lb.as_ref().map(|l| (l.get_ref().as_str(), span_of(l))) {
        None | Some(("round_robin", _)) => LbPolicy::RoundRobin,
        Some(("least_request", _)) => LbPolicy::LeastRequest,
        Some(("hash", lspan)) => {
            let on = raw.hash_on.as_ref().map(|h| h.get_ref().as_str());
            match on {
                Some("client_ip") => LbPolicy::Hash(HashKey::ClientIp),
                Some(h) if h.starts_with("header:") => {
                    match HeaderName::from_bytes(h["header:".len()..].trim().as_bytes()) {
                        Ok(n) => LbPolicy::Hash(HashKey::Header(n)),
                        Err(_) => {
                            c.d.error(lspan, format!("{key}.hash_on"), "invalid header name");
                            LbPolicy::RoundRobin
                        }
                    }
                }
                Some(h) if h.starts_with("cookie:") && h.len() > "cookie:".len() => {
                    LbPolicy::Hash(HashKey::Cookie(h["cookie:".len()..].trim().to_string()))
                }
                _ => {
                    c.d.error_hint(
                        lspan,
                        format!("{key}.hash_on"),
                        "`lb = \"hash\"` needs `hash_on`",
                        "use \"header:NAME\", \"cookie:NAME\" or \"client_ip\"",
                    );
                    LbPolicy::RoundRobin
                }
            }
        }
        Some((other, lspan)) => {
            let opts = ["round_robin", "least_request", "hash"];
            let hint = did_you_mean(other, opts.into_iter()).map_or_else(
                || format!("use one of: {}", opts.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            c.d.error_hint(
                lspan,
                format!("{key}.lb"),
                format!("unknown load-balancing policy `{other}`"),
                hint,
            );
            LbPolicy::RoundRobin
        }
    };
    if raw.hash_on.is_some() && !matches!(lb, LbPolicy::Hash(_)) {
        if let Some(h) = &raw.hash_on {
            c.d.warning(
                span_of(h),
                format!("{key}.hash_on"),
                "`hash_on` only applies with `lb = \"hash\"`",
                None,
            );
        }
    }
    lb
}

/// `prefer_zone` needs the gateway's zone; `panic_threshold` and `max_concurrent` ranges.
fn check_zone_and_capacity(
    c: &mut Compiler<'_>,
    key: &str,
    span: &Range<usize>,
    raw: &RawService,
    registry: &RegistrySettings,
) {
    if raw.prefer_zone && registry.zone.is_none() {
        c.d.warning(
            span.clone(),
            format!("{key}.prefer_zone"),
            "`prefer_zone` needs `[gateway] zone`",
            Some("set the gateway's own zone, e.g. zone = \"eu-1\"".into()),
        );
    }
    if let Some(t) = &raw.panic_threshold {
        if !(0.0..=1.0).contains(t.get_ref()) {
            c.d.error(
                span_of(t),
                format!("{key}.panic_threshold"),
                "panic_threshold must be between 0 and 1",
            );
        }
    }
    if let Some(m) = raw.max_concurrent.as_ref().filter(|m| *m.get_ref() == 0) {
        c.d.error(
            span_of(m),
            format!("{key}.max_concurrent"),
            "max_concurrent must be at least 1",
        );
    }
}

fn retry_budget(raw: &RawService) -> RetryBudgetSpec {
    raw.retry_budget
        .as_ref()
        .map_or_else(RetryBudgetSpec::default, |b| {
            let d = RetryBudgetSpec::default();
            RetryBudgetSpec {
                ratio: b.ratio.unwrap_or(d.ratio).clamp(0.0, 10.0),
                min_retries: b.min_retries.unwrap_or(d.min_retries),
            }
        })
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

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{errors, BASE, ROUTE};
    use std::path::Path;

    /// Instances are strings or tables; a typo inside a table is named with a suggestion at
    /// its own position, a wrong type says what is expected, and both forms still compile.
    #[test]
    fn a_blank_registry_token_is_an_error() {
        let d = errors(&format!("[registry]\ntoken = \"   \"\n{BASE}"));
        assert!(
            d.iter()
                .any(|d| d.message.contains("the registry token is empty")),
            "{d:?}"
        );
    }

    #[test]
    fn instance_entries_report_their_own_errors() {
        let src = format!("{}{ROUTE}", BASE.replace("weight = 2", "wieght = 2"));
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(
            (d[0].line, d[0].column, d[0].key.as_str()),
            (3, 59, "services.orders.instances[1].wieght"),
            "{d:#?}"
        );
        assert!(d[0].message.contains("unknown field `wieght`"), "{d:?}");
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or_default()
                .contains("did you mean `weight`?"),
            "{d:?}"
        );
        let d = errors(&format!("[services.orders]\ninstances = [8082]\n{ROUTE}"));
        assert!(d[0].message.contains("an address string"), "{d:?}");
        let cfg = compile(Path::new("routes.toml"), &format!("{BASE}{ROUTE}")).unwrap();
        let statics = &cfg.services[0].statics;
        assert_eq!(
            statics.iter().map(|s| s.weight).collect::<Vec<_>>(),
            [1, 2],
            "{statics:?}"
        );
    }

    #[test]
    fn range_errors_point_at_their_key() {
        let src = format!(
            "[gateway]\nthreads = 0\n{BASE}max_concurrent = 0\npanic_threshold = 2.0\nbreaker = {{ failure_rate = 0.0 }}\noutlier = {{ max_ejection_percent = 101 }}\n{ROUTE}retries = {{ attempts = 11 }}\n"
        );
        let at: Vec<(usize, usize, String)> = errors(&src)
            .into_iter()
            .map(|d| (d.line, d.column, d.key))
            .collect();
        let want = [
            (2, 11, "gateway.threads"),
            (6, 18, "services.orders.max_concurrent"),
            (7, 19, "services.orders.panic_threshold"),
            (8, 28, "services.orders.breaker.failure_rate"),
            (9, 36, "services.orders.outlier.max_ejection_percent"),
            (14, 24, "routes[0].retries.attempts"),
        ];
        let want: Vec<(usize, usize, String)> = want
            .iter()
            .map(|(l, c, k)| (*l, *c, k.to_string()))
            .collect();
        assert_eq!(at, want);
    }
}
