//! Routing a request head: one pure function, [`route_request`], that the proxy and
//! `ficus explain` both call, so the explanation of a decision can never disagree with the
//! decision.

use http::Method;
use pingora_http::RequestHeader;
use std::borrow::Cow;

use super::error::GatewayError;
use super::headers;
use crate::config::Config;
use crate::router::normalize::{self, NormalizedPath};
use crate::router::pattern::canonical_ip_literal;
use crate::router::RequestView;

/// The routing decision for a request.
#[derive(Debug)]
pub struct Routed {
    /// Index of the route in the snapshot's router.
    pub index: usize,
    /// The normalized path the route was chosen on.
    pub path: String,
    /// The wire-form target (path and query) for the upstream when it differs from the
    /// incoming one.
    pub target: Option<String>,
    /// A CORS preflight, routed as the method it asks about.
    pub preflight: bool,
}

/// What routing looks at, taken from a request head.
pub struct RoutingInput<'h> {
    /// The method routes are matched on: the request's, or for a CORS preflight the one
    /// its `Access-Control-Request-Method` asks about.
    pub method: Method,
    pub preflight: bool,
    /// The host without port; an IPv6 literal in its canonical spelling.
    pub host: Option<Cow<'h, str>>,
    /// The target's path as received (origin form), and its query.
    pub raw_path: &'h [u8],
    pub query: Option<&'h [u8]>,
    pub normalized: NormalizedPath,
    /// The target arrived in absolute form (`GET http://host/path`).
    pub absolute: bool,
}

impl<'h> RoutingInput<'h> {
    /// Reads and normalizes what routing needs; a path that cannot be normalized is a 400.
    pub fn from_head(req: &'h RequestHeader) -> Result<RoutingInput<'h>, GatewayError> {
        let raw = req.raw_path();
        // Absolute form (`GET http://host/path`, RFC 9112 §3.2.2): routed on its path and
        // sent upstream in origin form.
        // (pingora keeps the whole target as the raw path and only its path in the URI.)
        let absolute = !raw.starts_with(b"/") && raw.windows(3).any(|w| w == b"://");
        let raw = if absolute {
            req.uri
                .path_and_query()
                .map_or(&b"/"[..], |pq| pq.as_str().as_bytes())
        } else {
            raw
        };
        let (raw_path, query) = normalize::split_target(raw);
        let raw_path: &[u8] = if raw_path.is_empty() { b"/" } else { raw_path };
        let normalized = normalize::normalize(raw_path).map_err(GatewayError::BadPath)?;
        let (method, preflight) = match preflight_method(req) {
            Some(m) => (m, true),
            None => (req.method.clone(), false),
        };
        Ok(RoutingInput {
            method,
            preflight,
            host: routing_host(req).map(|h| match canonical_ip_literal(h) {
                Some(canonical) if canonical != h => Cow::Owned(canonical),
                _ => Cow::Borrowed(h),
            }),
            raw_path,
            query,
            normalized,
            absolute,
        })
    }

    /// The view the router matches on.
    pub fn view<'a>(&'a self, req: &'a RequestHeader) -> RequestView<'a> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.normalized.path,
            headers: &req.headers,
        }
    }
}

/// The host routes are matched on: an absolute-form target's authority (RFC 9112 §3.2.2:
/// it wins over `Host`; pingora keeps it only in the raw target of an HTTP/1.0 request),
/// else the URI's or the `Host` header's, always without the port.
fn routing_host(req: &RequestHeader) -> Option<&str> {
    let target = req.raw_path();
    if target.first() != Some(&b'/') {
        if let Some(a) = headers::absolute_authority(target) {
            // `absolute_authority` only returns a sound `host[:port]`, which is ASCII.
            let a = std::str::from_utf8(a).ok()?;
            return Some(match a.rfind(':') {
                Some(i) if !a.ends_with(']') && a[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                    &a[..i]
                }
                _ => a,
            });
        }
    }
    headers::request_host(req)
}

/// A CORS preflight (`OPTIONS` with `Origin` and a valid `Access-Control-Request-Method`,
/// Fetch standard §3.2.2): the method it asks about. Routes are matched as if the request
/// were that method, so a route for `GET` also receives the preflight that asks about it.
pub fn preflight_method(req: &RequestHeader) -> Option<Method> {
    if req.method != Method::OPTIONS || !req.headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let asked = req
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes().trim_ascii()).ok()
}

/// Why a request was not routed, and the route it matched when a rule of that route
/// refused it (its response edits and its policies' response hooks still apply to the
/// answer).
#[derive(Debug)]
pub struct Refusal {
    pub error: GatewayError,
    pub route: Option<Routed>,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Refusal {
        Refusal { error, route: None }
    }
}

/// Routes a request head: the route, the normalized path and the upstream target, or the
/// error the gateway answers with (400 for a bad path, 404, 405 for TRACE).
pub fn route_request(req: &RequestHeader, config: &Config) -> Result<Routed, Refusal> {
    let input = RoutingInput::from_head(req)?;
    let router = &config.router;
    let index = router.find(&input.view(req)).ok_or(GatewayError::NoRoute)?;
    let route = router.route(index);
    // TRACE echoes the request, credentials included (cross-site tracing): only routes
    // that list it get it.
    let refused = if is_trace(&input.method) && !route.methods.contains(&input.method) {
        Some(GatewayError::TraceNotAllowed)
    } else if !input.normalized.flags.without(route.allow).is_empty() {
        Some(GatewayError::PathNotAllowed)
    } else {
        None
    };
    let path = input.normalized.path;
    if let Some(error) = refused {
        let route = Routed {
            index,
            path,
            target: None,
            preflight: input.preflight,
        };
        return Err(Refusal {
            error,
            route: Some(route),
        });
    }
    // The target sent upstream: only rebuilt when it differs from what arrived.
    let target = (input.absolute || route.changes_target(&path, input.raw_path)).then(|| {
        let query = input.query.map(String::from_utf8_lossy);
        route.upstream_target(&path, query.as_deref())
    });
    Ok(Routed {
        index,
        path,
        target,
        preflight: input.preflight,
    })
}

/// `TRACE`, and IIS's `TRACK`, which does the same.
fn is_trace(m: &Method) -> bool {
    *m == Method::TRACE || m.as_str() == "TRACK"
}
