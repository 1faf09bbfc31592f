//! The `check` and `explain` commands. They compile the config exactly as `run` does and
//! use the same router, so what they say is what the gateway does.

pub mod admin_client;
mod cors;
mod shadow;
mod split;
pub mod status;

pub use shadow::shadow;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::fmt::Write;
use std::path::Path;

use crate::config::diag::Severity;
use crate::config::{self, ConfigError};
use crate::http_syntax::host;
use crate::proxy::admission;
use crate::proxy::error::GatewayError;
use crate::proxy::route::{route_request, RoutingInput};

/// `ficus check`: returns (exit code, report). 0 clean, 1 warnings only, 2 errors.
pub fn check(path: &Path) -> (i32, String) {
    match config::load(path) {
        Ok(cfg) => {
            let mut out = String::new();
            for w in &cfg.warnings {
                let _ = writeln!(out, "{w}");
            }
            let routes = cfg.router.routes().len();
            let services = cfg.services.len();
            if cfg.warnings.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: ok ({routes} routes, {services} services)",
                    path.display()
                );
                (0, out)
            } else {
                let _ = writeln!(
                    out,
                    "{}: {} warning(s) ({routes} routes, {services} services)",
                    path.display(),
                    cfg.warnings.len()
                );
                (1, out)
            }
        }
        Err(ConfigError::Invalid(items)) => {
            let mut out = String::new();
            for d in &items {
                let _ = writeln!(out, "{d}");
            }
            let errors = items
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let _ = writeln!(out, "{}: {errors} error(s)", path.display());
            (2, out)
        }
        Err(e) => (2, format!("{e}\n")),
    }
}

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

/// Asks a running gateway for a service's live instances. `None` when it is not reachable.
fn live_instances(admin: std::net::SocketAddr, service: &str) -> Option<Vec<String>> {
    use std::io::{Read, Write as _};
    use std::time::Duration;
    let timeout = Duration::from_millis(500);
    let mut s = std::net::TcpStream::connect_timeout(&admin, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("GET /registry HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
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
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn write_config(body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f
    }

    const CFG: &str = r#"
[services.monolith]
instances = ["127.0.0.1:8081"]
[services.orders]
instances = ["127.0.0.1:8082", { addr = "127.0.0.1:8083", weight = 2 }]
[services.search]
instances = ["127.0.0.1:8084"]

[[routes]]
name = "orders"
match = { path = "/orders/**", methods = ["GET", "POST"] }
service = "orders"
strip_prefix = "/orders"

[[routes]]
name = "search"
match = { path = "/google/{q}" }
service = "search"
rewrite = "/search?q={q}"

[[routes]]
name = "legacy"
match = { path = "/**" }
service = "monolith"
"#;

    #[test]
    fn explain_shows_route_upstream_path_and_misses() {
        let f = write_config(CFG);
        let out = explain(f.path(), "GET", "http://shop.example/orders/42?x=1", &[]).unwrap();
        assert!(out.contains("matched route: orders"), "{out}");
        assert!(out.contains("upstream path: /42?x=1"), "{out}");
        assert!(
            out.contains("static instance 127.0.0.1:8083 weight 2"),
            "{out}"
        );
        assert!(out.contains("- legacy: also matches"), "{out}");
        let out = explain(f.path(), "DELETE", "/orders/42", &[]).unwrap();
        assert!(out.contains("matched route: legacy"), "{out}");
        assert!(
            out.contains("- orders: method DELETE is not one of [GET, POST]"),
            "{out}"
        );
        let out = explain(f.path(), "GET", "/google/rust%20lang", &[]).unwrap();
        assert!(
            out.contains("upstream path: /search?q=rust%20lang"),
            "{out}"
        );
        let out = explain(f.path(), "GET", "/public/%2e%2e/orders/1", &[]).unwrap();
        assert!(out.contains("normalized path: /orders/1"), "{out}");
    }

    #[test]
    fn explain_agrees_with_the_gateway_on_hosts() {
        let hosted = CFG.replace(
            "match = { path = \"/google/{q}\" }",
            "match = { path = \"/google/{q}\", host = \"api.example\" }",
        );
        let f = write_config(&hosted);
        // The URL's host is the request's host.
        let out = explain(f.path(), "GET", "http://api.example/google/x", &[]).unwrap();
        assert!(out.contains("matched route: search"), "{out}");
        // A Host header that differs from the URL's authority: pingora answers 400.
        for host in [
            "Host: other.example",
            "Host: API.example",
            "Host: api.example:80",
        ] {
            let out = explain(
                f.path(),
                "GET",
                "http://api.example/google/x",
                &[host.into()],
            )
            .unwrap();
            assert!(out.contains("result: 400 Bad Request"), "{host}: {out}");
            assert!(!out.contains("matched route"), "{host}: {out}");
        }
        let out = explain(
            f.path(),
            "GET",
            "/google/x",
            &["Host: api.example:8080".into()],
        )
        .unwrap();
        assert!(out.contains("matched route: search"), "{out}");
    }

    #[test]
    fn explain_options_asterisk() {
        let f = write_config(CFG);
        let out = explain(f.path(), "OPTIONS", "*", &[]).unwrap();
        assert!(out.contains("answered by the gateway itself"), "{out}");
    }

    #[test]
    fn explain_methods_are_case_sensitive() {
        let f = write_config(CFG);
        let out = explain(f.path(), "post", "/orders/1", &[]).unwrap();
        assert!(out.contains("request: post /orders/1"), "{out}");
        assert!(out.contains("methods are case-sensitive"), "{out}");
        assert!(out.contains("matched route: legacy"), "{out}");
        assert!(
            out.contains("- orders: method post is not one of [GET, POST]"),
            "{out}"
        );
    }

    #[test]
    fn explain_refuses_malformed_urls() {
        let f = write_config(CFG);
        for url in ["http://[::1/y", "ftp://x/y", "orders/1", "http:///x"] {
            let err = explain(f.path(), "GET", url, &[]).unwrap_err();
            assert!(matches!(err, ExplainError::Url(..)), "{url}: {err}");
        }
    }

    #[test]
    fn explain_describes_rate_limits_and_opt_outs() {
        let cfg = CFG.replacen(
            "[services.monolith]",
            "[gateway]\nrate_limit = \"per_client\"\n\n[rate_limits.per_client]\nlimits = [{ key = \"client_ip\", rate = \"100/s\", burst = 200 }, { key = \"route\", rate = \"2000/s\" }]\nlegacy_headers = true\n\n[services.monolith]",
            1,
        )
        .replace(
            "service = \"search\"\n",
            "service = \"search\"\nrate_limit = false\n",
        );
        let f = write_config(&cfg);
        let out = explain(f.path(), "GET", "/orders/1", &[]).unwrap();
        assert!(out.contains("rate_limits = \"per_client\""), "{out}");
        assert!(
            out.contains("- by client_ip: 100/s, burst 200 (named \"per_client.client_ip\""),
            "{out}"
        );
        assert!(out.contains("- by route: 2000/s, burst 2000"), "{out}");
        assert!(out.contains("at most 1000000 keys"), "{out}");
        assert!(out.contains("and X-RateLimit-*"), "{out}");
        let out = explain(f.path(), "GET", "/google/x", &[]).unwrap();
        assert!(
            out.contains(
                "rate limit: none (the route opts out of `[gateway] rate_limit = \"per_client\"`)"
            ),
            "{out}"
        );
    }

    #[test]
    fn check_exit_codes() {
        let f = write_config(CFG);
        assert_eq!(check(f.path()).0, 0);
        let f = write_config(&format!(
            "{CFG}\n[services.unused]\ninstances = [\"127.0.0.1:1\"]\n"
        ));
        let (code, out) = check(f.path());
        assert_eq!(code, 1, "{out}");
        let f = write_config(&CFG.replace("service = \"search\"", "service = \"serch\""));
        let (code, out) = check(f.path());
        assert_eq!(code, 2);
        assert!(out.contains("did you mean `search`?"), "{out}");
    }
}
