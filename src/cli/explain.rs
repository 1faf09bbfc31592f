//! `ficus explain`: which route a request would take and why, with everything the route
//! would do to it (policies, split, shadow, services), from the same compiler and router
//! as `run`.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::fmt::Write;
use std::path::Path;

use super::{cors, split};
use crate::config::{self, ConfigError};
use crate::http_syntax::host;
use crate::proxy::admission;
use crate::proxy::error::GatewayError;
use crate::proxy::route::{route_request, RoutingInput};

/// Why `explain` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("invalid method `{0}`")]
    Method(String),
    #[error("invalid header `{0}`: write it as 'Name: value'")]
    Header(String),
    #[error("invalid URL `{0}`: {1}")]
    Url(String, &'static str),
}

/// The request `explain` describes, built as the gateway receives it: pingora's own
/// request header, so target parsing and authority checks are the gateway's.
struct ExplainRequest {
    header: pingora_http::RequestHeader,
    /// The request target's path and query as the router sees it.
    target: String,
    /// Why pingora refuses the request before ficus sees it, if it does.
    refused: Option<String>,
}

/// Parses `url` (an `http://` or `https://` URL, or a path) and the `-H` headers. A client
/// sends the URL's authority as `Host` unless told otherwise, so explain does too.
fn explain_request(
    method: &Method,
    url: &str,
    mut headers: HeaderMap,
) -> Result<ExplainRequest, ExplainError> {
    let bad = |why| ExplainError::Url(url.to_string(), why);
    let absolute = !url.starts_with('/');
    if absolute {
        let uri: http::Uri = url.parse().map_err(|_| {
            bad("write a path such as /orders/1 or a URL such as http://host/orders/1")
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("the gateway speaks http:// and https:// only"));
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("the URL has no host"));
        };
        if !headers.contains_key(http::header::HOST) {
            let host = HeaderValue::from_str(authority.as_str())
                .map_err(|_| bad("the host is not a valid Host header"))?;
            headers.insert(http::header::HOST, host);
        }
    }
    let mut header =
        pingora_http::RequestHeader::build_no_case(method.clone(), url.as_bytes(), None)
            .map_err(|_| bad("not a valid request target"))?;
    for (n, v) in &headers {
        // Cannot fail: the name and value are already a valid HeaderName and HeaderValue.
        let _ = header.append_header(n.clone(), v.clone());
    }
    // A bare path without `-H 'Host: ...'` asks about routing by path alone: described as
    // an HTTP/1.0 request, which the gateway accepts without a Host.
    if !headers.contains_key(http::header::HOST) {
        header.set_version(http::Version::HTTP_10);
    }
    // As the gateway does (proxy::request_filter): an absolute-form target is routed on
    // its path and query, which pingora keeps in the Uri.
    let target = if absolute {
        header
            .uri
            .path_and_query()
            .map_or("/".to_string(), |pq| pq.as_str().to_string())
    } else {
        url.to_string()
    };
    let refused = pingora_core::protocols::http::authority::validate_request_authority(&header)
        .err()
        .map(|e| {
            e.context
                .as_ref()
                .map_or_else(|| e.etype.as_str().to_string(), |c| c.as_str().to_string())
        })
        .or_else(|| {
            let host = header.headers.get(http::header::HOST)?;
            (!host::host_value_is_sound(host.as_bytes()))
                .then(|| "the Host header is not a plain host[:port]".to_string())
        });
    Ok(ExplainRequest {
        header,
        target,
        refused,
    })
}

/// `ficus explain METHOD URL [-H 'Name: value']...`: which route matches and why.
pub fn explain(
    path: &Path,
    method: &str,
    url: &str,
    headers: &[String],
) -> Result<String, ExplainError> {
    let cfg = config::load(path)?;
    // Methods are case-sensitive (RFC 9110 §9.1), in the gateway as here: `post` is not
    // `POST`, and route methods are always upper case.
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ExplainError::Method(method.to_string()))?;
    let mut map = HeaderMap::new();
    for h in headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| ExplainError::Header(h.clone()))?;
        let n = HeaderName::from_bytes(n.trim().as_bytes())
            .map_err(|_| ExplainError::Header(h.clone()))?;
        let v = HeaderValue::from_str(v.trim()).map_err(|_| ExplainError::Header(h.clone()))?;
        map.append(n, v);
    }
    // `OPTIONS *` asks about the server as a whole; the gateway answers it itself.
    if method == Method::OPTIONS && url == "*" {
        return Ok(format!(
            "request: OPTIONS *\nresult: 200, answered by the gateway itself (Allow: {}); no route is consulted\n",
            crate::proxy::respond::METHODS_PROXIED
        ));
    }
    let req = explain_request(&method, url, map)?;
    let mut out = String::new();
    let _ = writeln!(out, "request: {method} {url}");
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        let _ = writeln!(
            out,
            "note: methods are case-sensitive: `{method}` is not `{}`, and routes list methods in upper case",
            method.as_str().to_ascii_uppercase()
        );
    }
    if let Some(why) = &req.refused {
        let _ = writeln!(
            out,
            "result: 400 Bad Request ({why}); no route is consulted"
        );
        return Ok(out);
    }
    // The decision is the gateway's own: admission, then `route_request`, the functions
    // the proxy calls. What follows only describes it.
    if let Err(e) = admission::admit(&req.header, &cfg.gateway.limits) {
        let _ = writeln!(
            out,
            "result: {} ({}); no route is consulted",
            e.status(),
            e.message()
        );
        return Ok(out);
    }
    let decision = route_request(&req.header, &cfg);
    let input = match RoutingInput::from_head(&req.header) {
        Ok(input) => input,
        Err(e) => {
            let _ = writeln!(
                out,
                "result: {} Bad Request ({}); no route is consulted",
                e.status(),
                e.message()
            );
            return Ok(out);
        }
    };
    let normalized = &input.normalized;
    let shown = normalized.path.replace('\0', "%2F");
    if shown.as_bytes() != input.raw_path {
        let _ = writeln!(out, "normalized path: {shown}");
    }
    if input.preflight {
        let _ = writeln!(
            out,
            "note: a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): routes are matched as {}",
            input.method
        );
    }
    let view = input.view(&req.header);
    let router = &cfg.router;
    let found = router.find(&view);
    match (found, &decision) {
        (None, _) => {
            let _ = writeln!(out, "result: 404, no route matches");
        }
        (Some(i), decision) => {
            let r = router.route(i);
            let _ = writeln!(out, "matched route: {} ({})", r.name, r.location);
            let _ = writeln!(
                out,
                "  pattern: {}  (priority {} of {})",
                r.pattern.source,
                i + 1,
                router.routes().len()
            );
            let mut why = vec![format!("path matches `{}`", r.pattern.source)];
            if !r.methods.is_empty() {
                why.push(format!("method {} is allowed", input.method));
            }
            if r.host.is_some() {
                why.push("host matches".into());
            }
            if !r.headers.is_empty() {
                why.push("header predicates hold".into());
            }
            let _ = writeln!(out, "  why: {}", why.join("; "));
            match decision {
                Ok(routed) => {
                    let upstream = routed
                        .target
                        .clone()
                        .unwrap_or_else(|| String::from_utf8_lossy(req.target.as_bytes()).into());
                    let _ = writeln!(out, "upstream path: {upstream}");
                }
                Err(refusal) if refusal.error == GatewayError::PathNotAllowed => {
                    let blocked = normalized.flags.without(r.allow);
                    let _ = writeln!(
                        out,
                        "result: 400, the path contains {} which route `{}` does not allow (add `allow = [{}]`)",
                        blocked.names().join(", "),
                        r.name,
                        blocked.names().iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
                    );
                }
                Err(refusal) => {
                    let e = refusal.error;
                    let _ = writeln!(out, "result: {} ({})", e.status(), e.message());
                }
            }
            // A refused request runs no policy's request step.
            if !r.chain.is_empty() && decision.is_ok() {
                // Policies of one kind are listed together: `auth = ["corp", "partners"]`.
                let mut kinds: Vec<(&str, Vec<String>)> = Vec::new();
                for p in r.chain.policies.iter() {
                    let name = format!("\"{}\"", p.name);
                    match kinds.last_mut() {
                        Some((k, names)) if *k == p.kind => names.push(name),
                        _ => kinds.push((p.kind, vec![name])),
                    }
                }
                let names: Vec<String> = kinds
                    .into_iter()
                    .map(|(k, n)| match n.as_slice() {
                        [one] => format!("{k} = {one}"),
                        _ => format!("{k} = [{}] (any one may accept)", n.join(", ")),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "policies (in the order they run): {}",
                    names.join(", ")
                );
            }
            cors::describe(&mut out, r, &req.header.headers, input.preflight);
            if decision.is_ok() {
                describe_rate_limit(&mut out, &cfg, r);
            }
            if let Some(sh) = &r.shadow {
                let routed = decision.as_ref().ok();
                split::describe_shadow(&mut out, &cfg, r, sh, &req.header, routed);
            }
            if let Some(sp) = &r.split {
                split::describe(&mut out, &cfg, r, sp, &req.header, decision.as_ref().ok());
                for side in &sp.sides {
                    describe_service(&mut out, &cfg, &cfg.services[side.service]);
                }
                if let Some(fb) = r.fallback.filter(|f| sp.side_of_service(*f).is_none()) {
                    describe_service(&mut out, &cfg, &cfg.services[fb]);
                }
            } else {
                let svc = &cfg.services[r.service];
                describe_service(&mut out, &cfg, svc);
                if let Some(fb) = r.fallback {
                    let _ = writeln!(
                        out,
                        "fallback: {} (used when `{}` is unavailable)",
                        cfg.services[fb].name, svc.name
                    );
                }
            }
        }
    }
    // Near misses: routes ranked by how far their pattern got, excluding the winner.
    let mut misses: Vec<(usize, usize, String, String)> = Vec::new();
    for (i, r) in router.routes().iter().enumerate() {
        if Some(i) == found {
            continue;
        }
        let (depth, path_reason) = r.pattern.mismatch(&normalized.path);
        let reason = match path_reason {
            Some(p) => p,
            None => match r.predicate_mismatch(&view) {
                Some(p) => p,
                None => match found {
                    Some(w) if w < i => format!(
                        "also matches, but `{}` is more specific or comes first",
                        router.route(w).name
                    ),
                    _ => "matches".to_string(),
                },
            },
        };
        // Routes that matched the path rank nearest.
        let closeness = if r.pattern.mismatch(&normalized.path).1.is_none() {
            1000
        } else {
            depth
        };
        misses.push((
            closeness,
            i,
            r.name.to_string(),
            format!("{reason} ({})", r.location),
        ));
    }
    misses.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if !misses.is_empty() {
        let _ = writeln!(out, "closest routes that did not match:");
        for (_, _, name, reason) in misses.iter().take(5) {
            let _ = writeln!(out, "  - {name}: {reason}");
        }
    }
    Ok(out)
}

/// Prints the route's rate limit: its limits, where it comes from, what a refusal carries.
fn describe_rate_limit(out: &mut String, cfg: &config::Config, r: &crate::router::Route) {
    use ficus_plugins::ratelimit::config::{HeaderMode, StoreSettings};
    use ficus_plugins::ratelimit::{RateLimitSettings, SECTION};
    let default = cfg.gateway.rate_limit.as_deref();
    let Some(p) = r.chain.policies.iter().find(|p| p.kind == SECTION) else {
        if let Some(d) = default {
            let _ = writeln!(
                out,
                "rate limit: none (the route opts out of `[gateway] rate_limit = \"{d}\"`)"
            );
        }
        return;
    };
    let Some(s) = p.settings::<RateLimitSettings>() else {
        return;
    };
    let origin = if default == Some(&*p.name) {
        " (also `[gateway] rate_limit`)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "rate limit: \"{}\"{origin}; buckets are shared by every route naming it; a request must pass every limit:",
        p.name
    );
    let single = s.limits.len() == 1;
    for l in &s.limits {
        let _ = writeln!(
            out,
            "  {} by {}: {}, burst {} (named \"{}\" in the RateLimit fields)",
            if single { "limit" } else { "-" },
            l.key,
            l.rate,
            l.burst,
            l.field_name(&p.name, single)
        );
    }
    let store = match &s.store {
        StoreSettings::Local { max_keys } => {
            format!("local memory, at most {max_keys} keys")
        }
        StoreSettings::Redis { server: r, .. } => {
            format!("redis {} (shared by every gateway)", r.url())
        }
    };
    let fields = match s.headers {
        HeaderMode::Refusals => "RateLimit fields on 429s",
        HeaderMode::Always => "RateLimit fields on every response",
        HeaderMode::Off => "no RateLimit fields",
    };
    let _ = writeln!(
        out,
        "  store: {store}; over the limit: 429 with Retry-After, {fields}{}",
        if s.legacy_headers {
            " and X-RateLimit-*"
        } else {
            ""
        }
    );
}

/// Prints a service's configured sources and, when the gateway is running, its live
/// instances and their health (from the admin listener's `/registry`).
fn describe_service(
    out: &mut String,
    cfg: &config::Config,
    svc: &crate::registry::spec::ServiceSpec,
) {
    let _ = writeln!(out, "service: {}  (lb {})", svc.name, svc.lb.label());
    for inst in &svc.statics {
        let _ = writeln!(
            out,
            "  static instance {} weight {}{}{}",
            inst.addr,
            inst.weight,
            inst.zone
                .as_deref()
                .map(|z| format!(" zone {z}"))
                .unwrap_or_default(),
            if svc.tls.is_some() { " tls" } else { "" }
        );
    }
    if let Some(d) = &svc.dns {
        let _ = writeln!(out, "  dns discovery: {:?}", d.query);
    }
    if svc.registration && cfg.registry.registration {
        let _ = writeln!(out, "  accepts self-registration");
    }
    match live_instances(cfg.gateway.admin, &svc.name) {
        Some(lines) if lines.is_empty() => {
            let _ = writeln!(
                out,
                "  live (from {}): no instances; requests get 503",
                cfg.gateway.admin
            );
        }
        Some(lines) => {
            let _ = writeln!(out, "  live (from {}):", cfg.gateway.admin);
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  live state: gateway admin at {} not reachable; showing configuration only",
                cfg.gateway.admin
            );
        }
    }
}

/// Asks a running gateway for a service's live instances (its first page of them: the
/// rest is counted). `None` when it is not reachable.
fn live_instances(admin: std::net::SocketAddr, service: &str) -> Option<Vec<String>> {
    let timeout = std::time::Duration::from_millis(500);
    let mut path = String::from("/registry?service=");
    crate::admin::registry_pages::percent_encode(service, &mut path);
    let v = super::admin_client::get_json_within(admin, &path, timeout).ok()?;
    let svc = v["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == service)?;
    let mut lines = Vec::new();
    let breaker = svc["breaker"]["state"].as_str().unwrap_or("");
    if breaker == "open" || breaker == "half_open" {
        lines.push(format!("circuit breaker {breaker}"));
    }
    for i in svc["instances"].as_array()? {
        let mut l = format!(
            "{} {} [{}]",
            i["addr"].as_str().unwrap_or("?"),
            i["health"].as_str().unwrap_or("?"),
            i["sources"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        );
        if i["ejected"].as_bool() == Some(true) {
            l.push_str(" EJECTED");
        }
        if let Some(err) = i["last_probe"]["error"].as_str() {
            l.push_str(&format!(" last probe: {err}"));
        }
        lines.push(l);
    }
    let shown = svc["instances"].as_array().map_or(0, Vec::len);
    let total = svc["total"].as_u64().and_then(|t| usize::try_from(t).ok());
    if let Some(more) = total.and_then(|t| t.checked_sub(shown)).filter(|m| *m > 0) {
        lines.push(format!(
            "... and {more} more (GET /registry?service={service}&offset={shown})"
        ));
    }
    Some(lines)
}
