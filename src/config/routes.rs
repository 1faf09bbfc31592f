//! `[[routes]]`: compiles each route's matcher, rewrites, header edits, timeouts, fallback
//! and retries into a [`Route`], resolving the services it names.
//!
//! The order of routes (priority) is the router's business; this file only builds them and
//! reports what is wrong with each.

use http::{HeaderName, HeaderValue, Method};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use toml::de::DeValue;
use toml::Spanned;

use super::compiler::{span_of, Compiler, HeaderSide};
use super::diag::{closest_name, did_you_mean, Diagnostics};
use super::identity::{self, IdentityHeaders};
use super::raw::{RawMatch, RawRoute};
use super::sections::Sections;
use super::{policies, raw_routes, shadow, split};
use crate::registry::spec::ServiceSpec;
use crate::router::normalize::PathFlags;
use crate::router::pattern::{HostPattern, PathPattern};
use crate::router::{Rewrite, Route, RouteExtras};
use crate::upstream::RetryPolicy;

/// The services routes can name, for lookups and "did you mean" hints.
pub(super) struct ServiceNames<'n> {
    names: Vec<&'n str>,
    index: HashMap<&'n str, usize>,
    /// Services whose own section had errors: already reported, so not "unknown".
    failed: &'n HashSet<String>,
    /// Services some route names, or meant to name (the "did you mean" of a typo): a
    /// service left out only because of a misspelling is not also reported as unused.
    used: Vec<bool>,
}

impl<'n> ServiceNames<'n> {
    fn new(names: Vec<&'n str>, failed: &'n HashSet<String>) -> Self {
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        ServiceNames {
            used: vec![false; names.len()],
            names,
            index,
            failed,
        }
    }

    /// The index of the service a route names (`what` is "service" or "fallback
    /// service"); an unknown name is an error with a hint.
    pub(super) fn resolve(
        &mut self,
        d: &mut Diagnostics<'_>,
        name: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Option<usize> {
        let n = name.get_ref();
        if let Some(&idx) = self.index.get(n.as_str()) {
            self.used[idx] = true;
            return Some(idx);
        }
        if self.failed.contains(n) {
            return None;
        }
        let suggestion = closest_name(n, &self.names);
        if let Some(idx) = suggestion.and_then(|s| self.index.get(s)) {
            self.used[*idx] = true;
        }
        let hint = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None if self.names.is_empty() => "define it under `[services.NAME]`".to_string(),
            None => format!("known services: {}", self.names.join(", ")),
        };
        d.error_hint(span_of(name), key, format!("unknown {what} `{n}`"), hint);
        None
    }
}

/// Deserializes and compiles the routes one at a time (so the raw form of every route is
/// never held at once), checks the service names of those that did not deserialize, and
/// warns about services no route uses. Returns the routes and each one's span by file
/// position.
pub(super) fn compile_routes(
    c: &mut Compiler<'_>,
    sections: &Sections<'_>,
    value: Option<Spanned<DeValue<'_>>>,
    services: &[ServiceSpec],
) -> (Vec<Route>, HashMap<usize, Range<usize>>) {
    let mut names = ServiceNames::new(
        sections
            .services
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect(),
        &sections.failed_services,
    );
    let mut route_names: HashMap<String, Range<usize>> = HashMap::new();
    let mut used_policies = HashSet::new();
    let defaults = policies::policy_defaults(
        c,
        &sections.policies,
        &mut used_policies,
        sections.gateway.as_ref(),
    );
    let mut routes = Vec::new();
    let mut spans = HashMap::new();
    let ids = IdentityHeaders::of(&sections.policies.compiled);
    identity::check_policy_and_service_keys(c, &ids, sections);
    let mut warned = identity::Warned::new();
    let failed = raw_routes::each_raw_route(c, value, |c, i, span, raw| {
        let key = format!("routes[{i}]");
        let chain = policies::route_chain(
            c,
            &sections.policies,
            &mut used_policies,
            &defaults,
            &key,
            &raw,
        );
        identity::check_route(c, &ids, &key, &raw, &chain, &mut warned);
        if let Some(mut route) = compile_route(c, &mut names, &mut route_names, i, &span, &raw) {
            route.chain = chain;
            routes.push(route);
        }
        spans.insert(i, span);
    });
    // A route that did not deserialize may have named any service: its `service` is still
    // checked and counted as used, and "not used" warnings would be guesses.
    for (i, svc) in &failed {
        if let Some(svc) = svc {
            names.resolve(&mut c.d, svc, &format!("routes[{i}].service"), "service");
        }
    }
    if failed.is_empty() {
        warn_unused_services(c, &names, sections, services);
        policies::warn_unused(c, &sections.policies, &used_policies);
    }
    (routes, spans)
}

/// One route; `None` when its pattern or service is unusable (reported).
fn compile_route(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    route_names: &mut HashMap<String, Range<usize>>,
    i: usize,
    span: &Range<usize>,
    raw: &RawRoute,
) -> Option<Route> {
    let key = format!("routes[{i}]");
    let name = route_name(c, &key, raw, route_names);
    let m = raw.matcher.get_ref();
    let pattern = path_pattern(c, &key, m);
    let (service, split) = split::route_upstream(c, names, &key, span, raw, pattern.as_ref());
    let host = host_pattern(c, &key, m);
    let methods = match_methods(c, &key, m);
    let headers = match_headers(c, &key, m);
    let allow = path_opt_ins(c, &key, raw);
    let strip_prefix = strip_prefix(c, &key, raw.strip_prefix.as_ref(), pattern.as_ref());
    let rewrite = rewrite(c, &key, raw, pattern.as_ref());
    let mut request_headers = c.header_edits(
        &raw.request_headers,
        &format!("{key}.request_headers"),
        HeaderSide::Request,
    );
    let response_headers = c.header_edits(
        &raw.response_headers,
        &format!("{key}.response_headers"),
        HeaderSide::Response,
    );
    super::bounds::check_route_header_bytes(
        c,
        &key,
        span.clone(),
        [&request_headers, &response_headers],
    );
    // The override names a side for the gateway only: the upstream never sees it.
    if let Some(h) = split.as_ref().and_then(|s| s.override_header.clone()) {
        request_headers.remove.push(h);
    }
    let timeouts = c.timeouts(&raw.timeouts, &format!("{key}.timeouts"));
    let own_service = service.filter(|_| split.is_none());
    let fallback = fallback(c, names, &key, raw, own_service);
    let shadow = shadow::route_shadow(c, names, &key, raw, own_service, pattern.as_ref());
    let retries = retry_policy(c, &key, span, raw);
    Some(Route {
        name: name.as_str().into(),
        file_order: i,
        location: c.d.place(span),
        pattern: pattern?,
        host,
        methods,
        headers,
        allow,
        service: service?,
        split: split.map(Box::new),
        strip_prefix,
        rewrite: rewrite.map(Box::new),
        extras: RouteExtras {
            request_headers,
            response_headers,
            timeouts,
        }
        .boxed(),
        fallback,
        retries,
        shadow: shadow.map(Box::new),
        chain: Default::default(),
    })
}

/// The route's name: not empty, and not used by another route (names label metrics).
fn route_name(
    c: &mut Compiler<'_>,
    key: &str,
    raw: &RawRoute,
    route_names: &mut HashMap<String, Range<usize>>,
) -> String {
    let name = raw.name.get_ref().clone();
    if name.is_empty() {
        c.d.error(
            span_of(&raw.name),
            format!("{key}.name"),
            "route name is empty",
        );
    }
    if let Some(prev) = route_names.get(&name) {
        let at = c.d.location(prev);
        c.d.error_hint(
            span_of(&raw.name),
            format!("{key}.name"),
            format!("route name `{name}` is used twice"),
            format!("first used at {at}; names label metrics and logs, so they must be unique"),
        );
    } else {
        route_names.insert(name.clone(), span_of(&raw.name));
    }
    name
}

fn path_pattern(c: &mut Compiler<'_>, key: &str, m: &RawMatch) -> Option<PathPattern> {
    match PathPattern::parse(m.path.get_ref()) {
        Ok(p) => Some(p),
        Err(e) => {
            c.d.error_hint(
                span_of(&m.path),
                format!("{key}.match.path"),
                format!("bad path pattern `{}`: {e}", m.path.get_ref()),
                "patterns look like /exact, /users/{id}, /static/*, /orders/**",
            );
            None
        }
    }
}

fn host_pattern(c: &mut Compiler<'_>, key: &str, m: &RawMatch) -> Option<HostPattern> {
    m.host
        .as_ref()
        .and_then(|h| match HostPattern::parse(h.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                c.d.error(
                    span_of(h),
                    format!("{key}.match.host"),
                    format!("bad host pattern: {e}"),
                );
                None
            }
        })
}

/// `match.methods`: any valid token; a non-standard one is a warning with a hint.
fn match_methods(c: &mut Compiler<'_>, key: &str, m: &RawMatch) -> Vec<Method> {
    let mut methods = Vec::new();
    for meth in &m.methods {
        let upper = meth.get_ref().to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(mm) => {
                let standard = [
                    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
                ];
                if !standard.contains(&mm.as_str()) {
                    let hint = did_you_mean(mm.as_str(), standard.into_iter())
                        .map(|s| format!("did you mean `{s}`?"));
                    c.d.warning(
                        span_of(meth),
                        format!("{key}.match.methods"),
                        format!("`{}` is not a standard HTTP method", meth.get_ref()),
                        hint,
                    );
                }
                methods.push(mm);
            }
            Err(_) => c.d.error(
                span_of(meth),
                format!("{key}.match.methods"),
                format!("`{}` is not a valid method", meth.get_ref()),
            ),
        }
    }
    methods
}

/// `match.headers`: name and value, or `"*"` for "present with any value".
fn match_headers(
    c: &mut Compiler<'_>,
    key: &str,
    m: &RawMatch,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut headers = Vec::new();
    for (hname, hval) in &m.headers {
        let n = HeaderName::from_bytes(hname.as_bytes());
        let v = if hval.get_ref() == "*" {
            Ok(None)
        } else {
            HeaderValue::from_str(hval.get_ref()).map(Some)
        };
        match (n, v) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => c.d.error(
                span_of(hval),
                format!("{key}.match.headers.{hname}"),
                "invalid header name or value",
            ),
        }
    }
    headers
}

/// `allow`: the path forms this route opts into (encoded slashes, backslashes, semicolons).
fn path_opt_ins(c: &mut Compiler<'_>, key: &str, raw: &RawRoute) -> PathFlags {
    let mut allow = PathFlags::empty();
    for a in &raw.allow {
        match PathFlags::from_name(a.get_ref()) {
            Some(f) => allow.insert(f),
            None => {
                let opts = ["encoded_slash", "backslash", "semicolon"];
                let hint = did_you_mean(a.get_ref(), opts.into_iter()).map_or_else(
                    || format!("allowed values: {}", opts.join(", ")),
                    |s| format!("did you mean `{s}`?"),
                );
                c.d.error_hint(
                    span_of(a),
                    format!("{key}.allow"),
                    format!("unknown path opt-in `{}`", a.get_ref()),
                    hint,
                );
            }
        }
    }
    allow
}

/// `strip_prefix` (of a route, or of a split's side under `key`): must be a leading part
/// of the pattern's fixed prefix, ending at a `/`.
pub(super) fn strip_prefix(
    c: &mut Compiler<'_>,
    key: &str,
    strip_prefix: Option<&Spanned<String>>,
    pattern: Option<&PathPattern>,
) -> Option<String> {
    let sp_key = strip_prefix;
    let mut strip_prefix = None;
    if let (Some(sp), Some(p)) = (sp_key, pattern) {
        let s = sp.get_ref().trim_end_matches('/');
        let lit = p.literal_prefix();
        let on_boundary = lit == s || lit.starts_with(&format!("{s}/"));
        if !s.starts_with('/') || !on_boundary {
            c.d.error_hint(
                    span_of(sp),
                    format!("{key}.strip_prefix"),
                    format!(
                        "strip_prefix `{}` is not a leading part of the path pattern `{}`",
                        sp.get_ref(),
                        p.source
                    ),
                    if lit.is_empty() {
                        "the pattern starts with a wildcard, so there is no fixed prefix to strip; use `rewrite` with captures".to_string()
                    } else {
                        format!("use a prefix of `{lit}` that ends at a `/`, or `rewrite`")
                    },
                );
        } else if !s.is_empty() {
            strip_prefix = Some(s.to_string());
        }
    }
    strip_prefix
}

/// `rewrite`: a template over the pattern's captures; excludes `strip_prefix`.
fn rewrite(
    c: &mut Compiler<'_>,
    key: &str,
    raw: &RawRoute,
    pattern: Option<&PathPattern>,
) -> Option<Rewrite> {
    path_rewrite(
        c,
        key,
        raw.rewrite.as_ref(),
        raw.strip_prefix.is_some(),
        pattern,
    )
}

/// A `rewrite` template (of a route, or of a split's side under `key`); `with_strip` says
/// the same table also has `strip_prefix`, which it excludes.
pub(super) fn path_rewrite(
    c: &mut Compiler<'_>,
    key: &str,
    rewrite_key: Option<&Spanned<String>>,
    with_strip: bool,
    pattern: Option<&PathPattern>,
) -> Option<Rewrite> {
    let mut rewrite = None;
    if let (Some(rw), Some(p)) = (rewrite_key, pattern) {
        match Rewrite::parse(rw.get_ref(), p) {
            Ok(r) => rewrite = Some(r),
            Err(e) => c.d.error(
                span_of(rw),
                format!("{key}.rewrite"),
                format!("bad rewrite: {e}"),
            ),
        }
        if with_strip {
            c.d.error_hint(span_of(rw), format!("{key}.rewrite"), "`rewrite` and `strip_prefix` cannot be combined", "a rewrite template already says the whole upstream path; use `{**}` for the rest of the path");
        }
    }
    rewrite
}

/// `fallback`: a known service other than the route's own.
fn fallback(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    key: &str,
    raw: &RawRoute,
    service: Option<usize>,
) -> Option<usize> {
    raw.fallback.as_ref().and_then(|f| {
        let fkey = format!("{key}.fallback");
        match names.resolve(&mut c.d, f, &fkey, "fallback service")? {
            idx if Some(idx) == service => {
                c.d.error(
                    span_of(f),
                    fkey,
                    "a route's fallback must be a different service",
                );
                None
            }
            idx => Some(idx),
        }
    })
}

/// `retries`: 1 (no retry) to 10 attempts.
fn retry_policy(
    c: &mut Compiler<'_>,
    key: &str,
    span: &Range<usize>,
    raw: &RawRoute,
) -> RetryPolicy {
    match &raw.retries {
        None => RetryPolicy::default(),
        Some(r) => {
            let attempts = r
                .attempts
                .as_ref()
                .map_or(RetryPolicy::default().attempts, |a| *a.get_ref());
            if attempts == 0 || attempts > 10 {
                c.d.error(
                    r.attempts.as_ref().map_or(span.clone(), span_of),
                    format!("{key}.retries.attempts"),
                    "attempts must be between 1 (no retry) and 10",
                );
            }
            RetryPolicy {
                attempts: attempts.clamp(1, 10),
                non_idempotent: r.non_idempotent,
            }
        }
    }
}

/// Services no route names. Not called when a route failed to deserialize: it may have
/// named any service, so the warnings would be guesses.
fn warn_unused_services(
    c: &mut Compiler<'_>,
    names: &ServiceNames<'_>,
    sections: &Sections<'_>,
    services: &[ServiceSpec],
) {
    for (idx, u) in names.used.iter().enumerate() {
        if !u {
            c.d.warning(
                sections.services[idx].1.clone(),
                format!("services.{}", services[idx].name),
                format!("service `{}` is not used by any route", services[idx].name),
                Some("remove it or add a route that sends traffic to it".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::diag::{Diagnostic, Severity};
    use super::super::testing::{errors, BASE, ROUTE};
    use std::path::Path;

    #[test]
    fn a_misspelled_service_is_not_also_unused() {
        let src = format!("{BASE}{}", ROUTE.replace("\"orders\"", "\"order\""));
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `orders`?"));
    }

    #[test]
    fn service_name_differing_in_case_gets_a_hint() {
        let src = format!("{BASE}{}", ROUTE.replace("\"orders\"", "\"ORDERS\""));
        let d = errors(&src);
        assert_eq!(
            d[0].hint.as_deref(),
            Some("did you mean `orders`?"),
            "{d:?}"
        );
    }

    #[test]
    fn unknown_service_has_position_and_hint() {
        let src = format!("{BASE}\n[[routes]]\nname = \"o\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"order\"\n");
        let d: Vec<Diagnostic> = errors(&src)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("unknown service `order`"));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `orders`?"));
        assert_eq!(d[0].line, 8);
        assert_eq!(d[0].column, 11);
    }

    #[test]
    fn warnings_for_shadowed_routes_and_unused_services() {
        let src = format!("{BASE}\n[services.unused]\ninstances = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"/o/{{id}}\" }}\nservice = \"orders\"\n\n[[routes]]\nname = \"b\"\nmatch = {{ path = \"/o/{{x}}\" }}\nservice = \"orders\"\n");
        let cfg = compile(Path::new("routes.toml"), &src).unwrap();
        let w: Vec<String> = cfg.warnings.iter().map(|d| d.to_string()).collect();
        assert!(
            w.iter().any(|m| m.contains("`unused` is not used")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|m| m.contains("route `b` can never match")),
            "{w:?}"
        );
    }

    #[test]
    fn strip_prefix_must_fit_the_pattern() {
        let src = format!("{BASE}\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"orders\"\nstrip_prefix = \"/ord\"\n");
        let d = errors(&src);
        assert!(d[0].message.contains("strip_prefix"), "{d:?}");
    }

    #[test]
    fn strip_prefix_on_a_leading_wildcard_suggests_rewrite() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\nmatch = {{ path = \"/{{x}}/api/**\" }}\nservice = \"orders\"\nstrip_prefix = \"/foo\"\n");
        let d = errors(&src);
        let hint = d[0].hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("no fixed prefix") && !hint.contains("``"),
            "{d:?}"
        );
    }
}
