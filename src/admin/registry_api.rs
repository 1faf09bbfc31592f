//! The registry's admin API: self-registration writes (the read-only view is
//! `registry_view.rs`).
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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{to_json, ErrorBody};
use crate::duration::{try_parse_duration, DurationError};
use crate::registry::{NewInstance, Registry, RegistryError, MAX_TTL, MIN_TTL};

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
    /// The serialized JSON document.
    pub body: String,
    /// The methods the path accepts, for a `405`'s `Allow` header.
    pub allow: Option<&'static str>,
}

/// `201` after a registration.
#[derive(Debug, Serialize)]
struct Registered<'a> {
    id: &'a str,
    service: &'a str,
    addr: String,
    ttl_seconds: f64,
}

/// `200` after a heartbeat.
#[derive(Debug, Serialize)]
struct Renewed<'a> {
    id: &'a str,
    ttl_seconds: f64,
}

/// `200` after a deregistration.
#[derive(Debug, Serialize)]
struct Deregistered<'a> {
    id: &'a str,
    deregistered: bool,
}

fn error(status: u16, msg: impl AsRef<str>) -> ApiResponse {
    ok(
        status,
        &ErrorBody {
            error: msg.as_ref(),
        },
    )
}

fn ok(status: u16, body: &impl Serialize) -> ApiResponse {
    ApiResponse {
        status,
        body: to_json(body),
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
            Ok(ttl) => ok(
                200,
                &Renewed {
                    id,
                    ttl_seconds: ttl.as_secs_f64(),
                },
            ),
            Err(e) => registry_error(e),
        },
        Endpoint::Deregister { service, id } => match registry.deregister(service, id) {
            Ok(()) => ok(
                200,
                &Deregistered {
                    id,
                    deregistered: true,
                },
            ),
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
            &Registered {
                id: &id,
                service,
                addr: addr.to_string(),
                ttl_seconds: ttl.as_secs_f64(),
            },
        ),
        Err(e) => registry_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
