//! The registry as the admin listener shows it: the JSON view of its services and one page
//! of each one's instances (`GET /registry`, and `/registry/summary`, which the dashboard
//! renders) and the registry's Prometheus lines.
//!
//! Read-only: writes are `registry_api.rs`, which page a read asks for is
//! `registry_pages.rs`. The JSON view is a set of `Serialize` structs, so its shape is
//! declared once, here, and every string in it is escaped by serde. Only the instances on
//! the page are turned into views: the counts are taken from the members directly.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::registry_pages::Page;
use crate::metrics::LabelValue;
use crate::registry::breaker::BreakerState;
use crate::registry::clock::now_ms;
use crate::registry::dns::DnsQuery;
use crate::registry::{Health, Member, Registration, Registry, ServiceState};

/// `GET /registry`.
#[derive(Debug, Serialize)]
pub struct RegistryView {
    pub generated_at_ms: u64,
    pub zone: Option<String>,
    pub services: Vec<ServiceView>,
}

/// One service: its settings, counters and instances.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub lb: String,
    pub breaker: BreakerView,
    pub inflight: usize,
    pub max_concurrent: Option<usize>,
    /// Instances that are healthy and not ejected.
    pub healthy: usize,
    pub total: usize,
    /// Where instances may come from: "static", "registered", "dns".
    pub sources: Vec<&'static str>,
    pub dns: Option<DnsView>,
    pub retries: u64,
    pub ejections_total: u64,
    /// Instances `offset..offset + limit` (see `registry_pages.rs`), in registry order.
    pub instances: Vec<InstanceView>,
    /// The position of the first of `instances` among all `total`.
    pub offset: usize,
    /// The link to the next page of instances, or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BreakerView {
    /// "closed", "open", "half_open", or "disabled" when the service has no breaker.
    pub state: &'static str,
    pub open_for_ms: Option<u64>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Serialize)]
pub struct DnsView {
    /// `name:port` for A/AAAA discovery, the SRV name otherwise.
    pub query: String,
    pub last_ok_ms_ago: Option<u64>,
    pub last_error: Option<String>,
    pub failures: u64,
    pub next_in_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    /// The first registration id, or the address for instances nobody registered.
    pub id: String,
    pub addr: String,
    pub weight: u32,
    pub zone: Option<String>,
    pub version: Option<String>,
    /// Empty in `/registry/summary`, which leaves metadata out.
    pub metadata: BTreeMap<String, String>,
    pub sources: Vec<&'static str>,
    pub health: &'static str,
    pub ejected: bool,
    pub ejected_for_ms: Option<u64>,
    pub ejections: u32,
    pub last_probe: Option<ProbeView>,
    pub inflight: usize,
    /// Time left on the longest registration of this address.
    pub expires_in_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ProbeView {
    pub ok: bool,
    pub status: Option<u16>,
    /// Rounded to hundredths of a millisecond.
    pub latency_ms: f64,
    pub error: Option<String>,
    pub ms_ago: u64,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The JSON view of the registry's services, each with the instances of `page` while its
/// budget lasts; `None` when the page names a service the registry does not have.
pub fn snapshot(registry: &Registry, page: &Page) -> Option<RegistryView> {
    let now = now_ms();
    let settings = registry.settings();
    let mut budget = page.budget;
    let services: Vec<ServiceView> = registry
        .services()
        .iter()
        .filter(|svc| page.service.as_ref().is_none_or(|name| *name == svc.name))
        .map(|svc| {
            let view = service_view(svc, settings.registration, now, page, budget);
            budget = budget.saturating_sub(view.instances.len());
            view
        })
        .collect();
    if page.service.is_some() && services.is_empty() {
        return None;
    }
    Some(RegistryView {
        generated_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        zone: settings.zone.clone(),
        services,
    })
}

/// Whether an instance counts as healthy: probed healthy (or not probed) and not ejected.
fn is_healthy(m: &Member, probed: bool, now: u64) -> bool {
    (!probed || m.live.health() == Health::Healthy) && m.live.ejected_for(now).is_none()
}

/// One service with the instances of `page`, at most `budget` of them; `registration` is
/// the registry-wide switch.
fn service_view(
    svc: &ServiceState,
    registration: bool,
    now: u64,
    page: &Page,
    budget: usize,
) -> ServiceView {
    let spec = svc.spec();
    let members = svc.members();
    let registrations = svc.registrations();
    let probed = spec.health.is_some();
    let total = members.instances.len();
    let instances: Vec<InstanceView> = members
        .instances
        .iter()
        .skip(page.offset)
        .take(page.limit.min(budget))
        .map(|m| instance_view(m, probed, &registrations, now, page.metadata))
        .collect();
    let healthy = members
        .instances
        .iter()
        .filter(|m| is_healthy(m, probed, now))
        .count();
    let mut sources = Vec::new();
    if !spec.statics.is_empty() {
        sources.push("static");
    }
    if spec.registration && registration {
        sources.push("registered");
    }
    if spec.dns.is_some() {
        sources.push("dns");
    }
    let breaker = match &spec.breaker {
        Some(b) => BreakerView {
            state: match svc.breaker.state() {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            },
            open_for_ms: svc.breaker.open_for(b).map(ms),
            consecutive_failures: svc.breaker.consecutive_failures(),
        },
        None => BreakerView {
            state: "disabled",
            open_for_ms: None,
            consecutive_failures: 0,
        },
    };
    let dns = spec.dns.as_ref().map(|d| {
        let st = svc.dns_status.lock().map(|s| s.clone()).unwrap_or_default();
        DnsView {
            query: match &d.query {
                DnsQuery::Host { name, port } => format!("{name}:{port}"),
                DnsQuery::Srv { name } => name.clone(),
            },
            last_ok_ms_ago: st.last_ok_ms.map(|t| now.saturating_sub(t)),
            last_error: st.last_error,
            failures: st.failures,
            next_in_ms: st.next_ms.saturating_sub(now),
        }
    });
    let instances_len = instances.len();
    ServiceView {
        name: svc.name.clone(),
        lb: spec.lb.label(),
        breaker,
        inflight: svc.inflight(),
        max_concurrent: spec.max_concurrent,
        healthy,
        total,
        sources,
        dns,
        retries: svc.retries.load(Ordering::Relaxed),
        ejections_total: svc.ejections_total.load(Ordering::Relaxed),
        instances,
        offset: page.offset,
        next: page.next_link(&svc.name, instances_len, total),
    }
}

/// Bytes of a zone or version the summary shows; longer ones end with `…`.
const SUMMARY_TEXT: usize = 64;

/// `text` as it is, or cut to [`SUMMARY_TEXT`] bytes (at a character boundary) for the
/// summary.
fn shown(text: &str, whole: bool) -> String {
    if whole || text.len() <= SUMMARY_TEXT {
        return text.to_string();
    }
    let mut end = SUMMARY_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One instance; `probed` is whether the service has health checks.
fn instance_view(
    m: &Member,
    probed: bool,
    registrations: &BTreeMap<String, Registration>,
    now: u64,
    with_metadata: bool,
) -> InstanceView {
    let live = &m.live;
    let health = if probed {
        live.health().label()
    } else {
        // Without probes an instance counts as healthy unless ejected.
        "healthy"
    };
    let ejected_for = live.ejected_for(now);
    let last_probe = live
        .last_probe
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .map(|p| ProbeView {
            ok: p.ok,
            status: p.status,
            latency_ms: (p.latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
            error: p.error,
            ms_ago: now.saturating_sub(p.at_ms),
        });
    let expires_in_ms = m
        .registrations
        .iter()
        .filter_map(|id| registrations.get(id))
        .map(|r| r.expires_at_ms.saturating_sub(now))
        .max();
    InstanceView {
        id: m
            .registrations
            .first()
            .cloned()
            .unwrap_or_else(|| m.addr.to_string()),
        addr: m.addr.to_string(),
        weight: m.weight,
        // The summary (no metadata) shows zone and version cut short: they are a
        // registrant's text (up to 4 KiB with the metadata), and the summary of every
        // service is what the dashboard polls.
        zone: m.zone.as_deref().map(|z| shown(z, with_metadata)),
        version: m.version.as_deref().map(|v| shown(v, with_metadata)),
        metadata: if with_metadata {
            m.metadata.clone()
        } else {
            BTreeMap::new()
        },
        sources: m.source_names(),
        health,
        ejected: ejected_for.is_some(),
        ejected_for_ms: ejected_for.map(ms),
        ejections: live.ejections(),
        last_probe,
        inflight: live.inflight(),
        expires_in_ms,
    }
}

/// Extra Prometheus lines about services (instance health, breakers, DNS, retries).
pub fn metrics(registry: &Registry, out: &mut String) {
    let now = now_ms();
    out.push_str("# HELP ficus_service_instances Instances by service and state.\n# TYPE ficus_service_instances gauge\n");
    let services = registry.services();
    for svc in &services {
        let spec = svc.spec();
        let (mut healthy, mut unhealthy, mut ejected) = (0, 0, 0);
        for m in svc.members().instances.iter() {
            if m.live.ejected_for(now).is_some() {
                ejected += 1;
            } else if spec.health.is_none() || m.live.health() == Health::Healthy {
                healthy += 1;
            } else {
                unhealthy += 1;
            }
        }
        for (state, n) in [
            ("healthy", healthy),
            ("unhealthy", unhealthy),
            ("ejected", ejected),
        ] {
            let _ = writeln!(
                out,
                "ficus_service_instances{{service=\"{}\",state=\"{state}\"}} {n}",
                LabelValue(&svc.name)
            );
        }
    }
    per_service(
        out,
        "ficus_circuit_breaker_open",
        "gauge",
        "1 when the service's breaker is open or half-open.",
        &services,
        // A service without a breaker has none open (its state was reset when it went).
        |svc| {
            let open = svc.spec().breaker.is_some() && svc.breaker.state() != BreakerState::Closed;
            Some(u64::from(open))
        },
    );
    per_service(
        out,
        "ficus_retries_total",
        "counter",
        "Retried upstream attempts.",
        &services,
        |svc| Some(svc.retries.load(Ordering::Relaxed)),
    );
    per_service(
        out,
        "ficus_outlier_ejections_total",
        "counter",
        "Instances ejected by outlier detection.",
        &services,
        |svc| Some(svc.ejections_total.load(Ordering::Relaxed)),
    );
    per_service(
        out,
        "ficus_dns_failures_total",
        "counter",
        "Failed DNS discovery lookups.",
        &services,
        |svc| {
            svc.spec()
                .dns
                .is_some()
                .then(|| svc.dns_status.lock().map(|s| s.failures).unwrap_or(0))
        },
    );
}

/// One metric family with a `service` label: its HELP and TYPE lines, then a sample for
/// each service that `value` gives one for.
fn per_service(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    services: &[Arc<ServiceState>],
    value: impl Fn(&ServiceState) -> Option<u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for svc in services {
        if let Some(v) = value(svc) {
            let _ = writeln!(out, "{name}{{service=\"{}\"}} {v}", LabelValue(&svc.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::spec::{RegistrySettings, ServiceSpec};
    use crate::registry::NewInstance;
    use std::net::SocketAddr;

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    /// The dashboard and scripts read these fields: the view keeps every one of them.
    #[test]
    fn the_registry_view_has_the_documented_fields() {
        let r = Registry::default();
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        r.apply(
            &[ServiceSpec::with_instances("orders", &[(addr(1), 1)])],
            RegistrySettings::default(),
        );
        r.register("orders", NewInstance::new(addr(2), None))
            .expect("registers");
        let v = serde_json::to_value(snapshot(&r, &Page::first())).expect("serializes");
        assert_eq!(keys(&v), ["generated_at_ms", "services", "zone"]);
        let svc = &v["services"][0];
        assert_eq!(
            keys(svc),
            [
                "breaker",
                "dns",
                "ejections_total",
                "healthy",
                "inflight",
                "instances",
                "lb",
                "max_concurrent",
                "name",
                "next",
                "offset",
                "retries",
                "sources",
                "total"
            ]
        );
        assert_eq!(
            keys(&svc["breaker"]),
            ["consecutive_failures", "open_for_ms", "state"]
        );
        assert_eq!(svc["breaker"]["state"], "disabled");
        assert_eq!(svc["healthy"], 2);
        let registered = &svc["instances"][1];
        assert_eq!(
            keys(registered),
            [
                "addr",
                "ejected",
                "ejected_for_ms",
                "ejections",
                "expires_in_ms",
                "health",
                "id",
                "inflight",
                "last_probe",
                "metadata",
                "sources",
                "version",
                "weight",
                "zone"
            ]
        );
        assert_eq!(registered["sources"], serde_json::json!(["registered"]));
        assert!(
            registered["expires_in_ms"].as_u64().is_some(),
            "{registered}"
        );
    }

    /// A read shows one page of each service's instances, with a link to the next, and
    /// counts every instance; the summary leaves metadata out.
    #[test]
    fn reads_are_paged() {
        let r = Registry::default();
        let addrs: Vec<(SocketAddr, u32)> = (1..=5)
            .map(|p| (SocketAddr::from(([127, 0, 0, 1], p)), 1))
            .collect();
        r.apply(
            &[
                ServiceSpec::with_instances("orders", &addrs),
                ServiceSpec::with_instances("users", &addrs[..1]),
            ],
            RegistrySettings::default(),
        );
        let mut described = NewInstance::new(SocketAddr::from(([127, 0, 0, 1], 9)), None);
        described.metadata.insert("k".into(), "v".into());
        described.version = Some("é".repeat(1000));
        r.register("orders", described).expect("registers");
        let page = |q: &str| {
            let p = Page::from_query(Some(q)).expect("a valid query");
            serde_json::to_value(snapshot(&r, &p)).expect("serializes")
        };
        let v = page("service=orders&offset=2&limit=2");
        assert_eq!(v["services"].as_array().map(Vec::len), Some(1));
        let svc = &v["services"][0];
        assert_eq!(svc["total"], 6);
        assert_eq!(svc["healthy"], 6);
        assert_eq!(svc["offset"], 2);
        let addrs: Vec<&str> = svc["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .filter_map(|i| i["addr"].as_str())
            .collect();
        assert_eq!(addrs, ["127.0.0.1:3", "127.0.0.1:4"]);
        assert_eq!(svc["next"], "/registry?service=orders&offset=4&limit=2");
        let last = page("service=orders&offset=4&limit=2");
        assert_eq!(last["services"][0]["instances"][1]["metadata"]["k"], "v");
        assert!(last["services"][0]["next"].is_null());
        // Every service, each from the same offset.
        assert_eq!(
            page("limit=1")["services"].as_array().map(Vec::len),
            Some(2)
        );
        assert!(snapshot(&r, &Page::from_query(Some("service=nope")).unwrap()).is_none());
        let summary = serde_json::to_value(snapshot(&r, &Page::summary())).expect("serializes");
        let registered = &summary["services"][0]["instances"][5];
        assert_eq!(
            registered["metadata"],
            serde_json::json!({}),
            "{registered}"
        );
        // A registrant's long version is cut short in the summary (at a character
        // boundary), and shown whole in a page of the registry.
        let cut = registered["version"].as_str().expect("a version");
        assert!(
            cut.len() <= SUMMARY_TEXT + '…'.len_utf8() && cut.ends_with('…'),
            "{cut}"
        );
        assert_eq!(
            last["services"][0]["instances"][1]["version"]
                .as_str()
                .map(str::len),
            Some(2000)
        );
    }

    /// A read of every service shows at most its budget of instances in all; the services
    /// past it show their counts, and their `next` links say where each one continues.
    #[test]
    fn a_read_of_every_service_is_bounded_as_a_whole() {
        let r = Registry::default();
        let addrs: Vec<(SocketAddr, u32)> = (1..=4)
            .map(|p| (SocketAddr::from(([127, 0, 0, 1], p)), 1))
            .collect();
        let specs: Vec<ServiceSpec> = ["a", "b", "c"]
            .iter()
            .map(|name| ServiceSpec::with_instances(name, &addrs))
            .collect();
        r.apply(&specs, RegistrySettings::default());
        let mut page = Page::from_query(Some("limit=3")).expect("a valid query");
        page.budget = 5;
        let v = serde_json::to_value(snapshot(&r, &page)).expect("serializes");
        let shown: Vec<(usize, u64, &str)> = v["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| {
                (
                    s["instances"].as_array().map_or(0, Vec::len),
                    s["total"].as_u64().unwrap_or(0),
                    s["next"].as_str().unwrap_or("null"),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (3, 4, "/registry?service=a&offset=3&limit=3"),
                (2, 4, "/registry?service=b&offset=2&limit=3"),
                (0, 4, "/registry?service=c&offset=0&limit=3"),
            ]
        );
        // A named service is one page, whatever the budget of a read of every service.
        let one = Page::from_query(Some("service=c&limit=3")).expect("a valid query");
        let v = serde_json::to_value(snapshot(&r, &one)).expect("serializes");
        assert_eq!(
            v["services"][0]["instances"].as_array().map(Vec::len),
            Some(3)
        );
    }
}
