//! `[services.NAME]` and `[registry]`: compiles each service's instances, discovery, TLS,
//! health probe, outlier detection, breaker, load balancing and limits into a
//! [`ServiceSpec`], and the registry section into [`RegistrySettings`].
//!
//! A service is compiled on its own: which routes use it is `routes.rs`'s business. Its health
//! probe, outlier detection and breaker are compiled in `service_health.rs`.

use http::HeaderName;
use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::credentials;
use super::diag::did_you_mean;
use super::raw::{RawDns, RawInstance, RawRegistry, RawService, RawUpstreamTls};
use super::service_health::{circuit_breaker, health_probe, outlier_detection};
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
