//! The registry's admin API: self-registration writes and the JSON view the dashboard
//! renders.
//!
//! ```text
//! GET    /registry                                        JSON of every service and instance
//! GET    /registry/ui                                     the dashboard page
//! POST   /registry/services/{name}/instances              register {addr, weight?, zone?, version?, metadata?, ttl?}
//! PUT    /registry/services/{name}/instances/{id}/heartbeat   renew the TTL
//! DELETE /registry/services/{name}/instances/{id}         deregister
//! ```
//! Writes need `Authorization: Bearer <token>` when `[registry] token` is set, and a
//! registration needs `Content-Type: application/json` (so a web page cannot send one
//! without a CORS preflight). A wrong method on one of these paths is a `405` with `Allow`.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::duration::{try_parse_duration, DurationError};
use crate::registry::breaker::BreakerState;
use crate::registry::clock::now_ms;
use crate::registry::dns::DnsQuery;
use crate::registry::{Health, NewInstance, Registry, RegistryError, MAX_TTL, MIN_TTL};

/// A registration request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub addr: String,
    pub weight: Option<u32>,
    pub zone: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `"30s"` or a number of seconds.
    pub ttl: Option<Value>,
}

/// An API answer: status and JSON body.
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    /// The methods the path accepts, for a `405`'s `Allow` header.
    pub allow: Option<&'static str>,
}

fn error(status: u16, msg: impl Into<String>) -> ApiResponse {
    ApiResponse {
        status,
        body: json!({ "error": msg.into() }),
        allow: None,
    }
}

fn ok(status: u16, body: Value) -> ApiResponse {
    ApiResponse {
        status,
        body,
        allow: None,
    }
}

/// A registry write as the admin listener received it.
pub struct WriteRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw `Content-Type` value, if any.
    pub content_type: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Whether a `Content-Type` value is `application/json` (parameters such as `charset`
/// allowed). Requiring it is what keeps a web page from registering instances: a cross-site
/// request may only carry `text/plain`, `application/x-www-form-urlencoded` or
/// `multipart/form-data` without a CORS preflight, and ficus never approves one.
fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(v) = content_type else { return false };
    let essence = v.split(|&b| b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
}

/// One registry write endpoint.
enum Endpoint<'p> {
    Register { service: &'p str },
    Heartbeat { service: &'p str, id: &'p str },
    Deregister { service: &'p str, id: &'p str },
}

impl<'p> Endpoint<'p> {
    /// The endpoint at `path` and the one method it accepts.
    fn at(path: &'p str) -> Option<(Endpoint<'p>, &'static str)> {
        let rest = path.strip_prefix("/registry/services/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        Some(match parts.as_slice() {
            [service, "instances"] => (Endpoint::Register { service }, "POST"),
            [service, "instances", id, "heartbeat"] => (Endpoint::Heartbeat { service, id }, "PUT"),
            [service, "instances", id] => (Endpoint::Deregister { service, id }, "DELETE"),
            _ => return None,
        })
    }
}

fn registry_error(e: RegistryError) -> ApiResponse {
    let status = match e {
        RegistryError::UnknownService(_) | RegistryError::UnknownInstance(..) => 404,
        RegistryError::RegistrationDisabled(_) => 403,
        RegistryError::Invalid(_) => 400,
        RegistryError::TooManyRegistrations(..) => 429,
    };
    error(status, e.to_string())
}

/// A registrant's `ttl`: a positive number of seconds or a duration string, clamped to
/// [`MIN_TTL`, `MAX_TTL`]. Zero, negative, not-a-number and malformed values are `None`.
fn parse_ttl(v: &Value) -> Option<Duration> {
    let ttl = match v {
        Value::Number(n) => {
            let secs = n.as_f64().filter(|s| s.is_finite() && *s > 0.0)?;
            // Anything beyond the ceiling is the ceiling, however large.
            Duration::try_from_secs_f64(secs.min(MAX_TTL.as_secs_f64())).ok()?
        }
        Value::String(s) => match try_parse_duration(s) {
            Ok(d) if d.is_zero() => return None,
            Ok(d) => d,
            Err(DurationError::TooLong) => MAX_TTL,
            Err(DurationError::BelowMillisecond) => MIN_TTL,
            Err(DurationError::Syntax) => return None,
        },
        _ => return None,
    };
    Some(ttl.clamp(MIN_TTL, MAX_TTL))
}

/// Handles a write (`POST`/`PUT`/`DELETE` under `/registry/services/`). Returns `None` for
/// paths outside `/registry/services/`.
pub fn write(registry: &Registry, req: &WriteRequest<'_>) -> Option<ApiResponse> {
    req.path.strip_prefix("/registry/services/")?;
    let Some((endpoint, allow)) = Endpoint::at(req.path) else {
        return Some(error(404, "unknown registry endpoint"));
    };
    if req.method != allow {
        return Some(ApiResponse {
            allow: Some(allow),
            ..error(
                405,
                format!("{} {} only accepts {allow}", req.method, req.path),
            )
        });
    }
    Some(match endpoint {
        Endpoint::Register { service } => {
            if !is_json(req.content_type) {
                return Some(error(
                    415,
                    "a registration body must be sent with Content-Type: application/json",
                ));
            }
            register(registry, service, req.body)
        }
        Endpoint::Heartbeat { service, id } => match registry.heartbeat(service, id) {
            Ok(ttl) => ok(200, json!({ "id": id, "ttl_seconds": ttl.as_secs_f64() })),
            Err(e) => registry_error(e),
        },
        Endpoint::Deregister { service, id } => match registry.deregister(service, id) {
            Ok(()) => ok(200, json!({ "id": id, "deregistered": true })),
            Err(e) => registry_error(e),
        },
    })
}

fn register(registry: &Registry, service: &str, body: &[u8]) -> ApiResponse {
    let req: RegisterRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(400, format!("invalid registration body: {e}")),
    };
    let Ok(addr) = req.addr.parse::<SocketAddr>() else {
        return error(400, format!("`{}` is not an ip:port address", req.addr));
    };
    let ttl = match &req.ttl {
        None => None,
        Some(v) => match parse_ttl(v) {
            Some(t) => Some(t),
            None => {
                return error(
                    400,
                    "ttl must be a positive number of seconds or a duration like \"30s\"",
                )
            }
        },
    };
    match registry.register(
        service,
        NewInstance {
            addr,
            weight: req.weight.unwrap_or(1),
            zone: req.zone,
            version: req.version,
            metadata: req.metadata,
            ttl,
        },
    ) {
        Ok((id, ttl)) => ok(
            201,
            json!({ "id": id, "service": service, "addr": addr.to_string(), "ttl_seconds": ttl.as_secs_f64() }),
        ),
        Err(e) => registry_error(e),
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The JSON view of the whole registry.
pub fn snapshot(registry: &Registry) -> Value {
    let now = now_ms();
    let settings = registry.settings();
    let services: Vec<Value> = registry
        .services()
        .iter()
        .map(|svc| {
            let spec = svc.spec();
            let members = svc.members();
            let registrations = svc.registrations();
            let mut healthy = 0;
            let instances: Vec<Value> = members
                .instances
                .iter()
                .map(|m| {
                    let live = &m.live;
                    let health = if spec.health.is_some() {
                        live.health().label()
                    } else {
                        // Without probes an instance counts as healthy unless ejected.
                        "healthy"
                    };
                    let ejected_for = live.ejected_for(now);
                    if health == "healthy" && ejected_for.is_none() {
                        healthy += 1;
                    }
                    let last_probe = live
                        .last_probe
                        .lock()
                        .ok()
                        .and_then(|p| p.clone())
                        .map(|p| {
                            json!({
                                "ok": p.ok,
                                "status": p.status,
                                "latency_ms": (p.latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
                                "error": p.error,
                                "ms_ago": now.saturating_sub(p.at_ms),
                            })
                        });
                    let expires = m
                        .registrations
                        .iter()
                        .filter_map(|id| registrations.get(id))
                        .map(|r| r.expires_at_ms.saturating_sub(now))
                        .max();
                    json!({
                        "id": m.registrations.first().cloned().unwrap_or_else(|| m.addr.to_string()),
                        "addr": m.addr.to_string(),
                        "weight": m.weight,
                        "zone": m.zone,
                        "version": m.version,
                        "metadata": m.metadata,
                        "sources": m.source_names(),
                        "health": health,
                        "ejected": ejected_for.is_some(),
                        "ejected_for_ms": ejected_for.map(ms),
                        "ejections": live.ejections(),
                        "last_probe": last_probe,
                        "inflight": live.inflight(),
                        "expires_in_ms": expires,
                    })
                })
                .collect();
            let mut sources: Vec<&str> = Vec::new();
            if !spec.statics.is_empty() {
                sources.push("static");
            }
            if spec.registration && settings.registration {
                sources.push("registered");
            }
            if spec.dns.is_some() {
                sources.push("dns");
            }
            let breaker = match &spec.breaker {
                Some(b) => json!({
                    "state": match svc.breaker.state() {
                        BreakerState::Closed => "closed",
                        BreakerState::Open => "open",
                        BreakerState::HalfOpen => "half_open",
                    },
                    "open_for_ms": svc.breaker.open_for(b).map(ms),
                    "consecutive_failures": svc.breaker.consecutive_failures(),
                }),
                None => json!({ "state": "disabled", "open_for_ms": null, "consecutive_failures": 0 }),
            };
            let dns = spec.dns.as_ref().map(|d| {
                let st = svc.dns_status.lock().map(|s| s.clone()).unwrap_or_default();
                json!({
                    "query": match &d.query {
                        DnsQuery::Host { name, port } => format!("{name}:{port}"),
                        DnsQuery::Srv { name } => name.clone(),
                    },
                    "last_ok_ms_ago": st.last_ok_ms.map(|t| now.saturating_sub(t)),
                    "last_error": st.last_error,
                    "failures": st.failures,
                    "next_in_ms": st.next_ms.saturating_sub(now),
                })
            });
            json!({
                "name": svc.name,
                "lb": spec.lb.label(),
                "breaker": breaker,
                "inflight": svc.inflight(),
                "max_concurrent": spec.max_concurrent,
                "healthy": healthy,
                "total": members.instances.len(),
                "sources": sources,
                "dns": dns,
                "retries": svc.retries.load(std::sync::atomic::Ordering::Relaxed),
                "ejections_total": svc.ejections_total.load(std::sync::atomic::Ordering::Relaxed),
                "instances": instances,
            })
        })
        .collect();
    json!({
        "generated_at_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "zone": settings.zone,
        "services": services,
    })
}

/// Extra Prometheus lines about services (instance health, breakers, DNS, retries).
pub fn metrics(registry: &Registry, out: &mut String) {
    use crate::metrics::LabelValue;
    use std::fmt::Write;
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
    out.push_str("# HELP ficus_circuit_breaker_open 1 when the service's breaker is open or half-open.\n# TYPE ficus_circuit_breaker_open gauge\n");
    for svc in &services {
        // A service without a breaker has none open (its state was reset when it went).
        let open =
            u8::from(svc.spec().breaker.is_some() && svc.breaker.state() != BreakerState::Closed);
        let _ = writeln!(
            out,
            "ficus_circuit_breaker_open{{service=\"{}\"}} {open}",
            LabelValue(&svc.name)
        );
    }
    out.push_str("# HELP ficus_retries_total Retried upstream attempts.\n# TYPE ficus_retries_total counter\n");
    for svc in &services {
        let _ = writeln!(
            out,
            "ficus_retries_total{{service=\"{}\"}} {}",
            LabelValue(&svc.name),
            svc.retries.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    out.push_str("# HELP ficus_outlier_ejections_total Instances ejected by outlier detection.\n# TYPE ficus_outlier_ejections_total counter\n");
    for svc in &services {
        let _ = writeln!(
            out,
            "ficus_outlier_ejections_total{{service=\"{}\"}} {}",
            LabelValue(&svc.name),
            svc.ejections_total
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    out.push_str("# HELP ficus_dns_failures_total Failed DNS discovery lookups.\n# TYPE ficus_dns_failures_total counter\n");
    for svc in &services {
        if svc.spec().dns.is_some() {
            let failures = svc.dns_status.lock().map(|s| s.failures).unwrap_or(0);
            let _ = writeln!(
                out,
                "ficus_dns_failures_total{{service=\"{}\"}} {failures}",
                LabelValue(&svc.name)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TTLs are clamped to 1 s – 1 h as documented, however far outside they are (a TTL no
    /// `Duration` can hold once panicked the admin handler); only values that are not a
    /// positive duration are refused.
    #[test]
    fn ttls_are_clamped_and_nonsense_is_refused() {
        let s = Duration::from_secs;
        assert_eq!(parse_ttl(&json!(30)), Some(s(30)));
        assert_eq!(parse_ttl(&json!(0.5)), Some(s(1)));
        assert_eq!(parse_ttl(&json!(7200)), Some(s(3600)));
        assert_eq!(parse_ttl(&json!(1e30)), Some(s(3600)));
        assert_eq!(parse_ttl(&json!("500ms")), Some(s(1)));
        assert_eq!(parse_ttl(&json!("0.0001s")), Some(s(1)));
        assert_eq!(parse_ttl(&json!("2h")), Some(s(3600)));
        assert_eq!(parse_ttl(&json!("999999999999999999999h")), Some(s(3600)));
        assert_eq!(parse_ttl(&json!("99999999999999999999s")), Some(s(3600)));
        assert_eq!(parse_ttl(&json!(-1)), None);
        assert_eq!(parse_ttl(&json!(0)), None);
        assert_eq!(parse_ttl(&json!("0s")), None);
        assert_eq!(parse_ttl(&json!("soon")), None);
        assert_eq!(parse_ttl(&json!(true)), None);
    }

    #[test]
    fn only_application_json_counts_as_json() {
        assert!(is_json(Some(b"application/json")));
        assert!(is_json(Some(b"Application/JSON; charset=utf-8")));
        assert!(!is_json(None));
        assert!(!is_json(Some(b"text/plain")));
        assert!(!is_json(Some(b"application/x-www-form-urlencoded")));
        assert!(!is_json(Some(b"application/jsonx")));
    }
}
