//! The router: compiled routes, their priority, and matching a request to one route.
//!
//! Routes are sorted once by priority (most specific first, then file order) so a route's
//! index *is* its rank. Paths are looked up in a segment trie; every route whose pattern
//! matches is a candidate and the lowest index among candidates whose predicates (host,
//! methods, headers) hold wins; routes sharing a path are indexed by exact host and exact
//! header values (`candidates.rs`). Matching allocates nothing (but for a Host over 256
//! bytes with upper-case letters on a path with hosts indexed).
//!
//! This module knows nothing about pingora or the registry (a route names its service by
//! index and carries plain attempt settings from `upstream::attempt`); it must stay cheap
//! enough to run on every request (see benches/route_match.rs).

mod candidates;
pub mod normalize;
pub mod pattern;
pub mod rewrite;
pub mod shadow;
pub mod split;

use candidates::Candidates;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use normalize::PathFlags;
use pattern::{split_segment, HostPattern, PathPattern, Segment};
use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::Chain;
pub use crate::upstream::{RetryPolicy, Timeouts};
pub use rewrite::Rewrite;
pub use split::{Side, Split, StickyKey};

/// Header edits applied to a request or response.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// The most headers these edits can add to a message.
    pub fn additions(&self) -> usize {
        self.set.len() + self.add.len()
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Position in routes.toml (0-based), the last tie-breaker.
    pub file_order: usize,
    /// `file:line:column` of the route, for explain and logs.
    pub location: Location,
    pub pattern: PathPattern,
    pub host: Option<HostPattern>,
    pub methods: Vec<Method>,
    /// Header predicates: the value must equal, or with `None` the header must be present.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Ambiguous path constructs this route accepts.
    pub allow: PathFlags,
    /// Index of the route's service in the runtime's service list; for a split, its first
    /// side's (config order).
    pub service: usize,
    /// `split = [...]`: the services the route's traffic is shared between. `None` sends
    /// everything to `service`. Boxed, like the other rarely used parts, to keep a plain
    /// route small (a config may hold 100,000 of them).
    pub split: Option<Box<Split>>,
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Box<Rewrite>>,
    /// Header edits and timeouts, boxed together (most routes have none): read them with
    /// [`Route::request_headers`], [`Route::response_headers`], [`Route::timeouts`].
    pub extras: Option<Box<RouteExtras>>,
    /// Service index to use when the route's service is unavailable.
    pub fallback: Option<usize>,
    pub retries: RetryPolicy,
    /// `shadow = { … }`: copies of the route's requests sent to another service and
    /// compared with the primary's answers.
    pub shadow: Option<Box<shadow::RouteShadow>>,
    /// The route's policies (access, and later authentication, rate limits, CORS) as a
    /// plugin chain in their fixed stage order.
    pub chain: Chain,
}

/// What a route sets less often than not, kept out of line so a plain route stays small.
#[derive(Debug, Default)]
pub struct RouteExtras {
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// Route-level timeouts; unset values come from the service actually used.
    pub timeouts: Timeouts,
}

impl RouteExtras {
    /// `None` when nothing is set, so a plain route allocates nothing.
    pub fn boxed(self) -> Option<Box<RouteExtras>> {
        let empty = self.request_headers.is_empty()
            && self.response_headers.is_empty()
            && self.timeouts == Timeouts::default();
        (!empty).then(|| Box::new(self))
    }
}

/// No header edits (what a route without [`RouteExtras`] has).
static NO_EDITS: HeaderEdits = HeaderEdits {
    set: Vec::new(),
    add: Vec::new(),
    remove: Vec::new(),
};

/// Where a route is in its file: `file:line:column` when displayed. The file's name is
/// one allocation shared by every route of the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Route {
    /// Header edits on the request sent upstream.
    pub fn request_headers(&self) -> &HeaderEdits {
        self.extras
            .as_ref()
            .map_or(&NO_EDITS, |e| &e.request_headers)
    }

    /// Header edits on the response sent to the client.
    pub fn response_headers(&self) -> &HeaderEdits {
        self.extras
            .as_ref()
            .map_or(&NO_EDITS, |e| &e.response_headers)
    }

    /// Route-level timeouts; unset values come from the service actually used.
    pub fn timeouts(&self) -> Timeouts {
        self.extras
            .as_ref()
            .map_or_else(Timeouts::default, |e| e.timeouts)
    }

    /// The wire-form target (path and query) to send upstream for a normalized path:
    /// the rewrite template, or the path minus `strip_prefix`, re-encoded where needed.
    pub fn upstream_target(&self, path: &str, query: Option<&str>) -> String {
        self.target_with(
            self.rewrite.as_deref(),
            self.strip_prefix.as_deref(),
            path,
            query,
        )
    }

    /// The upstream target for a split's side: its own path rules, else the route's.
    pub fn side_target(&self, side: &Side, path: &str, query: Option<&str>) -> String {
        if side.has_own_path_rules() {
            self.target_with(
                side.rewrite.as_ref(),
                side.strip_prefix.as_deref(),
                path,
                query,
            )
        } else {
            self.upstream_target(path, query)
        }
    }

    /// The upstream target for a route's shadow: its own path rules, else `None` (the
    /// primary's target is used).
    pub fn shadow_target(
        &self,
        shadow: &shadow::RouteShadow,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        shadow.has_own_path_rules().then(|| {
            self.target_with(
                shadow.rewrite.as_ref(),
                shadow.strip_prefix.as_deref(),
                path,
                query,
            )
        })
    }

    fn target_with(
        &self,
        rewrite: Option<&Rewrite>,
        strip_prefix: Option<&str>,
        path: &str,
        query: Option<&str>,
    ) -> String {
        if let Some(rw) = rewrite {
            let caps = self.pattern.captures(path).unwrap_or_default();
            return rw.render(&caps, query);
        }
        let path = match strip_prefix {
            Some(prefix) => match path.strip_prefix(prefix) {
                Some("") => "/",
                Some(rest) if rest.starts_with('/') => rest,
                _ => path,
            },
            None => path,
        };
        let mut t = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
        if normalize::is_wire_safe(path) {
            t.push_str(path);
        } else {
            normalize::encode_path(path, &mut t);
        }
        if let Some(q) = query {
            t.push('?');
            t.push_str(q);
        }
        t
    }

    /// Whether the upstream target differs from the incoming raw path, so the request line
    /// must be rewritten.
    pub fn changes_target(&self, normalized: &str, raw_path: &[u8]) -> bool {
        self.rewrite.is_some()
            || self.strip_prefix.is_some()
            || normalized.as_bytes() != raw_path
            || !normalize::is_wire_safe(normalized)
    }

    fn predicate_weight(&self) -> usize {
        self.host.as_ref().map_or(0, HostPattern::weight)
            + usize::from(!self.methods.is_empty())
            + self.headers.len()
    }

    /// Whether the non-path predicates hold.
    pub fn predicates_hold(&self, req: &RequestView<'_>) -> bool {
        self.predicate_mismatch(req).is_none()
    }

    /// The first predicate that fails, described for `ficus explain`.
    pub fn predicate_mismatch(&self, req: &RequestView<'_>) -> Option<String> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            let list: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            return Some(format!(
                "method {} is not one of [{}]",
                req.method,
                list.join(", ")
            ));
        }
        if let Some(h) = &self.host {
            let ok = req.host.is_some_and(|host| h.matches(host));
            if !ok {
                return Some(format!(
                    "host `{}` does not match `{}`",
                    req.host.unwrap_or("(none)"),
                    match h {
                        HostPattern::Exact(e) => e.to_string(),
                        HostPattern::Suffix(s) => format!("*{s}"),
                    }
                ));
            }
        }
        for (name, want) in &self.headers {
            match (req.headers.get(name), want) {
                (None, _) => return Some(format!("header `{name}` is missing")),
                (Some(got), Some(want)) if got != want => {
                    return Some(format!(
                        "header `{name}` is `{}`, route wants `{}`",
                        String::from_utf8_lossy(got.as_bytes()),
                        String::from_utf8_lossy(want.as_bytes())
                    ))
                }
                _ => {}
            }
        }
        None
    }
}

/// What the router needs to know about a request.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Host without port, as sent (any case).
    pub host: Option<&'a str>,
    /// The normalized path.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

#[derive(Default, Debug)]
struct Node {
    /// Children by literal segment; `None` on a leaf (most nodes), so it costs no table.
    /// Boxed on purpose: 8 bytes on a leaf instead of an empty map's 48.
    #[allow(clippy::box_collection)]
    literals: Option<Box<HashMap<Box<str>, usize>>>,
    param: Option<usize>,
    /// Routes whose pattern ends exactly here.
    exact: Candidates,
    /// Routes whose pattern ends here with `/**`.
    tail: Candidates,
}

/// All routes, ordered by priority, plus the lookup trie.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    nodes: Vec<Node>,
}

impl Router {
    /// Builds the router; `routes` may be in file order, they are sorted by priority here.
    pub fn new(mut routes: Vec<Route>) -> Router {
        routes.sort_by(|a, b| {
            let ka = (a.pattern.specificity(), a.predicate_weight());
            let kb = (b.pattern.specificity(), b.predicate_weight());
            kb.cmp(&ka).then(a.file_order.cmp(&b.file_order))
        });
        let mut nodes = vec![Node::default()];
        // Per node, the ranks ending there exactly and with `/**` (indexed once complete).
        let mut ends: Vec<(Vec<usize>, Vec<usize>)> = vec![Default::default()];
        for (rank, route) in routes.iter().enumerate() {
            let mut at = 0;
            for seg in &route.pattern.segments {
                at = match seg {
                    Segment::Literal(l) => match nodes[at].literals.as_ref().and_then(|m| m.get(l))
                    {
                        Some(&n) => n,
                        None => {
                            nodes.push(Node::default());
                            ends.push(Default::default());
                            let n = nodes.len() - 1;
                            nodes[at]
                                .literals
                                .get_or_insert_with(Default::default)
                                .insert(l.clone(), n);
                            n
                        }
                    },
                    Segment::Param(_) => match nodes[at].param {
                        Some(n) => n,
                        None => {
                            nodes.push(Node::default());
                            ends.push(Default::default());
                            let n = nodes.len() - 1;
                            nodes[at].param = Some(n);
                            n
                        }
                    },
                };
            }
            if route.pattern.tail {
                ends[at].1.push(rank);
            } else {
                ends[at].0.push(rank);
            }
        }
        for (node, (exact, tail)) in nodes.iter_mut().zip(ends) {
            node.exact = Candidates::new(exact, &routes);
            node.tail = Candidates::new(tail, &routes);
        }
        // Both grew by doubling; a config is built once and read many times.
        routes.shrink_to_fit();
        nodes.shrink_to_fit();
        Router { routes, nodes }
    }

    /// Routes in priority order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// The index of the best route for this request, if any.
    pub fn find(&self, req: &RequestView<'_>) -> Option<usize> {
        let rest = req.path.strip_prefix('/').filter(|r| !r.is_empty());
        let mut best = usize::MAX;
        self.walk(0, rest, req, &mut best);
        (best != usize::MAX).then_some(best)
    }

    fn best_of(&self, list: &Candidates, req: &RequestView<'_>, best: &mut usize) {
        list.best(&self.routes, req, best);
    }

    fn walk(&self, node: usize, rest: Option<&str>, req: &RequestView<'_>, best: &mut usize) {
        let n = &self.nodes[node];
        self.best_of(&n.tail, req, best);
        let Some(rest) = rest else {
            self.best_of(&n.exact, req, best);
            return;
        };
        // A trailing slash is not significant: `/login/` is the route of `/login` (a
        // client must not reach another route's policies, or dodge a route's limit, by
        // adding one). A route that ends in `/**` here ranks as it always did.
        if rest.is_empty() {
            self.best_of(&n.exact, req, best);
        }
        let (head, next) = split_segment(rest);
        if let Some(&child) = n.literals.as_ref().and_then(|m| m.get(head)) {
            self.walk(child, next, req, best);
        }
        if let Some(child) = n.param {
            if !head.is_empty() {
                self.walk(child, next, req, best);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn route(name: &str, path: &str, order: usize) -> Route {
        Route {
            name: name.into(),
            file_order: order,
            location: Location::default(),
            pattern: PathPattern::parse(path).unwrap(),
            host: None,
            methods: vec![],
            headers: vec![],
            allow: PathFlags::empty(),
            service: 0,
            split: None,
            strip_prefix: None,
            rewrite: None,
            extras: None,
            fallback: None,
            retries: RetryPolicy::default(),
            shadow: None,
            chain: Chain::default(),
        }
    }

    /// A plain route (a path and a service) is small: a config may hold 100,000 of them.
    /// Before the header edits, timeouts and plugin chain were boxed it was 536 bytes.
    #[test]
    fn a_plain_route_is_small() {
        let size = std::mem::size_of::<Route>();
        eprintln!("Route: {size} bytes");
        assert!(size <= 300, "{size}");
        let r = route("r", "/r/**", 0);
        assert!(r.extras.is_none() && r.chain.is_empty());
        assert!(r.request_headers().is_empty() && r.response_headers().is_empty());
        assert_eq!(r.timeouts(), Timeouts::default());
    }

    fn find<'a>(r: &'a Router, method: &Method, host: Option<&str>, path: &str) -> Option<&'a str> {
        let headers = HeaderMap::new();
        let view = RequestView {
            method,
            host,
            path,
            headers: &headers,
        };
        r.find(&view).map(|i| &*r.route(i).name)
    }

    #[test]
    fn priority_table() {
        let r = Router::new(vec![
            route("all", "/**", 0),
            route("orders-tail", "/orders/**", 1),
            route("orders-id", "/orders/{id}", 2),
            route("orders-42", "/orders/42", 3),
            route("star", "/orders/*/items", 4),
            route("root", "/", 5),
        ]);
        let get = Method::GET;
        assert_eq!(find(&r, &get, None, "/orders/42"), Some("orders-42"));
        assert_eq!(find(&r, &get, None, "/orders/43"), Some("orders-id"));
        assert_eq!(find(&r, &get, None, "/orders/43/items"), Some("star"));
        assert_eq!(find(&r, &get, None, "/orders/43/x"), Some("orders-tail"));
        assert_eq!(find(&r, &get, None, "/orders"), Some("orders-tail"));
        assert_eq!(find(&r, &get, None, "/orders/"), Some("orders-tail"));
        assert_eq!(find(&r, &get, None, "/other"), Some("all"));
        assert_eq!(find(&r, &get, None, "/"), Some("root"));
    }

    #[test]
    fn file_order_breaks_ties_and_predicates_filter() {
        let mut a = route("a", "/x/**", 0);
        a.methods = vec![Method::POST];
        let b = route("b", "/x/**", 1);
        let mut c = route("c", "/x/**", 2);
        c.host = Some(HostPattern::parse("api.example.com").unwrap());
        let r = Router::new(vec![a, b, c]);
        // a and c carry predicates, so they rank above b; an exact host outweighs a method list.
        assert_eq!(find(&r, &Method::GET, None, "/x/1"), Some("b"));
        assert_eq!(find(&r, &Method::POST, None, "/x/1"), Some("a"));
        assert_eq!(
            find(&r, &Method::POST, Some("api.example.com"), "/x/1"),
            Some("c")
        );
        let r2 = Router::new(vec![route("first", "/y", 0), route("second", "/y", 1)]);
        assert_eq!(find(&r2, &Method::GET, None, "/y"), Some("first"));
    }

    #[test]
    fn no_match_is_none() {
        let r = Router::new(vec![route("a", "/a", 0)]);
        assert_eq!(find(&r, &Method::GET, None, "/b"), None);
        assert_eq!(find(&r, &Method::GET, None, "/a/b"), None);
    }

    #[test]
    fn header_predicates() {
        let mut a = route("canary", "/**", 0);
        a.headers = vec![(
            HeaderName::from_static("x-canary"),
            Some(HeaderValue::from_static("1")),
        )];
        let r = Router::new(vec![a, route("default", "/**", 1)]);
        let mut headers = HeaderMap::new();
        let view = |h: &HeaderMap| {
            let v = RequestView {
                method: &Method::GET,
                host: None,
                path: "/z",
                headers: h,
            };
            r.find(&v).map(|i| r.route(i).name.to_string())
        };
        assert_eq!(view(&headers).as_deref(), Some("default"));
        headers.insert("x-canary", HeaderValue::from_static("1"));
        assert_eq!(view(&headers).as_deref(), Some("canary"));
        headers.insert("x-canary", HeaderValue::from_static("2"));
        assert_eq!(view(&headers).as_deref(), Some("default"));
    }
}
