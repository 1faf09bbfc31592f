//! The routes whose path pattern ends at one trie node, and how the best of them is found
//! for a request without testing them one by one.
//!
//! Many routes can share a path and differ only by host (`host = "t42.example"`, one
//! hostname per tenant) or by a header (`x-tenant = "t42"`). A list scanned route by route
//! would make the last of 100,000 such routes cost 100,000 predicate checks per request,
//! and so would every request with a Host nobody routes. Once a node holds more than
//! [`INDEX_FROM`] routes, each route that requires an exact host is filed under that host,
//! and each other route that requires an exact header value under that header's name and
//! value; the rest are filed under their wildcard host's suffix (`*.t42.example`: a
//! request looks up each suffix of its Host, one per label) or under the name of a header
//! they only need present (`"*"`). A request then looks up the host, its suffixes and the
//! headers it actually sends, and only routes told apart by methods alone (or by nothing)
//! are still scanned. The index only narrows the candidates: every candidate's predicates
//! are still checked in full, so the index can never pick a route the scan would not have
//! picked.
//!
//! Nothing here allocates on the request path (a request's Host longer than
//! [`HOST_BUF`] bytes with upper-case letters in it is lower-cased on the heap).

use http::{HeaderName, HeaderValue};
use std::collections::HashMap;

use super::pattern::HostPattern;
use super::{RequestView, Route};

/// Below this many routes on a node a scan is as fast as a lookup.
const INDEX_FROM: usize = 8;

/// A request's Host is lower-cased on the stack up to this length: a DNS name is at most
/// 253 bytes, so only a made-up Host is longer.
const HOST_BUF: usize = 256;

/// The routes ending at one node (exactly, or with `/**`), by rank.
///
/// Kept small (a trie has a node per literal segment, most ending no route at all): an
/// empty list and an absent index take no allocation.
#[derive(Debug, Default)]
pub(super) struct Candidates {
    /// Routes not in the index, by rank (all of them on a small node).
    scan: Box<[usize]>,
    index: Option<Box<Index>>,
}

/// The routes of a large node filed by an exact predicate, each route in one place.
#[derive(Debug, Default)]
struct Index {
    /// Exact host (lower case, no trailing dot, as [`HostPattern::Exact`] keeps it) → the
    /// routes requiring it, by rank.
    by_host: HashMap<Box<str>, Vec<usize>>,
    /// The longest key of `by_host`: a longer Host cannot be one of them.
    longest_host: usize,
    /// Header name → exact value → the routes requiring that value, by rank.
    by_header: HeaderIndex,
    /// Wildcard host suffix (`.t42.example`, lower case, as [`HostPattern::Suffix`] keeps
    /// it) → the routes requiring it, by rank.
    by_suffix: HashMap<Box<str>, Vec<usize>>,
    /// The longest key of `by_suffix`.
    longest_suffix: usize,
    /// Header name → the routes that only need it present (and no exact value or host),
    /// by rank.
    by_present: HashMap<HeaderName, Vec<usize>>,
}

type HeaderIndex = HashMap<HeaderName, HashMap<HeaderValue, Vec<usize>>>;

impl Candidates {
    /// Files `ranks` (ascending) of `routes`.
    pub(super) fn new(ranks: Vec<usize>, routes: &[Route]) -> Candidates {
        if ranks.len() <= INDEX_FROM {
            return Candidates {
                scan: ranks.into_boxed_slice(),
                index: None,
            };
        }
        // A route with exact header values is filed under one of them: the name most
        // routes of this node share, so a request needs as few lookups as possible.
        let mut names: HashMap<&HeaderName, usize> = HashMap::new();
        let mut pairs: HashMap<(&HeaderName, &HeaderValue), usize> = HashMap::new();
        let mut hosts: HashMap<&str, usize> = HashMap::new();
        for &r in &ranks {
            for (name, value) in &routes[r].headers {
                if let Some(value) = value {
                    *names.entry(name).or_default() += 1;
                    *pairs.entry((name, value)).or_default() += 1;
                }
            }
            if let Some(host) = exact_host(&routes[r]) {
                *hosts.entry(host).or_default() += 1;
            }
        }
        let mut scan = Vec::new();
        let mut index = Index::default();
        for r in ranks {
            let header = routes[r]
                .headers
                .iter()
                .filter_map(|(name, value)| Some((name, value.as_ref()?)))
                .max_by(|(a, _), (b, _)| {
                    let (na, nb) = (names.get(a), names.get(b));
                    na.cmp(&nb).then_with(|| b.as_str().cmp(a.as_str()))
                });
            // An exact host takes one lookup per request whatever the node holds; a route
            // with both goes under the host unless fewer routes share its header value
            // (all tenants on one host, told apart by a header).
            let host = exact_host(&routes[r]).filter(|h| {
                header.is_none_or(|(name, value)| hosts.get(h) <= pairs.get(&(name, value)))
            });
            match (host, header) {
                (Some(host), _) => {
                    index.longest_host = index.longest_host.max(host.len());
                    index.by_host.entry(host.into()).or_default().push(r);
                }
                (None, Some((name, value))) => index
                    .by_header
                    .entry(name.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(r),
                (None, None) => match (suffix(&routes[r]), present_header(&routes[r])) {
                    (Some(suffix), _) => {
                        index.longest_suffix = index.longest_suffix.max(suffix.len());
                        index.by_suffix.entry(suffix.into()).or_default().push(r);
                    }
                    (None, Some(name)) => index.by_present.entry(name.clone()).or_default().push(r),
                    (None, None) => scan.push(r),
                },
            }
        }
        let indexed = !index.by_host.is_empty()
            || !index.by_header.is_empty()
            || !index.by_suffix.is_empty()
            || !index.by_present.is_empty();
        Candidates {
            scan: scan.into_boxed_slice(),
            index: indexed.then(|| Box::new(index)),
        }
    }

    /// Lowers `best` to the best rank here whose predicates hold, if it beats `best`.
    pub(super) fn best(&self, routes: &[Route], req: &RequestView<'_>, best: &mut usize) {
        first_holding(&self.scan, routes, req, best);
        let Some(index) = self.index.as_deref() else {
            return;
        };
        if let Some(host) = req.host {
            if let Some(list) = index.host_routes(host) {
                first_holding(list, routes, req, best);
            }
            if !index.by_suffix.is_empty() {
                index.suffix_routes(host, |list| first_holding(list, routes, req, best));
            }
        }
        for (name, list) in &index.by_present {
            if req.headers.contains_key(name) {
                first_holding(list, routes, req, best);
            }
        }
        let by_header = &index.by_header;
        if by_header.is_empty() {
            return;
        }
        // Whichever side is smaller drives the lookups: the node's indexed names or the
        // request's header names (a node could index thousands of different names).
        if by_header.len() <= req.headers.keys_len() {
            for (name, values) in by_header {
                if let Some(list) = req.headers.get(name).and_then(|v| values.get(v)) {
                    first_holding(list, routes, req, best);
                }
            }
        } else {
            for name in req.headers.keys() {
                let list = by_header
                    .get(name)
                    .zip(req.headers.get(name))
                    .and_then(|(values, v)| values.get(v));
                if let Some(list) = list {
                    first_holding(list, routes, req, best);
                }
            }
        }
    }
}

impl Index {
    /// The routes filed under the request's host, compared as [`HostPattern::matches`]
    /// does: any ASCII case, a trailing dot ignored.
    fn host_routes(&self, host: &str) -> Option<&Vec<usize>> {
        let host = host.strip_suffix('.').unwrap_or(host);
        // Exact hosts are ASCII (labels, or an IPv6 literal).
        if host.len() > self.longest_host || !host.is_ascii() {
            return None;
        }
        if !host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_host.get(host);
        }
        let mut buf = [0u8; HOST_BUF];
        match buf.get_mut(..host.len()) {
            Some(lower) => {
                lower.copy_from_slice(host.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII in, ASCII out: always valid UTF-8.
                std::str::from_utf8(lower)
                    .ok()
                    .and_then(|h| self.by_host.get(h))
            }
            None => self.by_host.get(host.to_ascii_lowercase().as_str()),
        }
    }
}

impl Index {
    /// Calls `found` with the routes filed under each suffix of the request's host that
    /// starts at a dot after its first byte (`a.t42.example` looks up `.t42.example` and
    /// `.example`), compared as [`HostPattern::matches`] does: any ASCII case, a trailing
    /// dot ignored, at least one byte before the suffix.
    fn suffix_routes(&self, host: &str, mut found: impl FnMut(&[usize])) {
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut buf = [0u8; HOST_BUF];
        let lower = match buf.get_mut(..host.len()) {
            Some(lower) => {
                lower.copy_from_slice(host.as_bytes());
                lower.make_ascii_lowercase();
                std::borrow::Cow::Borrowed(&*lower)
            }
            None => std::borrow::Cow::Owned(host.to_ascii_lowercase().into_bytes()),
        };
        // ASCII lower-casing keeps UTF-8 valid.
        let Ok(lower) = std::str::from_utf8(&lower) else {
            return;
        };
        let from = lower.len().saturating_sub(self.longest_suffix).max(1);
        for (i, _) in lower.match_indices('.').filter(|(i, _)| *i >= from) {
            if let Some(list) = self.by_suffix.get(&lower[i..]) {
                found(list);
            }
        }
    }
}

/// The route's wildcard host suffix (`.t42.example`), if it has one.
fn suffix(route: &Route) -> Option<&str> {
    match &route.host {
        Some(HostPattern::Suffix(s)) => Some(s),
        _ => None,
    }
}

/// A header the route only needs present (its first), when it has no exact-value header.
fn present_header(route: &Route) -> Option<&HeaderName> {
    route
        .headers
        .iter()
        .find(|(_, value)| value.is_none())
        .map(|(name, _)| name)
}

/// The route's host when it is an exact one (stored lower case, without a trailing dot).
fn exact_host(route: &Route) -> Option<&str> {
    match &route.host {
        Some(HostPattern::Exact(h)) => Some(h),
        _ => None,
    }
}

/// `list` is sorted by rank, so the first route passing its predicates is the list's best;
/// stops as soon as the remaining ranks cannot beat the current best.
fn first_holding(list: &[usize], routes: &[Route], req: &RequestView<'_>, best: &mut usize) {
    for &r in list {
        if r >= *best {
            return;
        }
        if routes[r].predicates_hold(req) {
            *best = r;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::route;
    use super::super::Router;
    use super::*;
    use http::{HeaderMap, Method};
    use std::time::{Duration, Instant};

    fn tenant(name: &str, value: &str, order: usize) -> Route {
        let mut r = route(name, "/shared/**", order);
        r.headers = vec![(
            HeaderName::from_static("x-tenant"),
            Some(HeaderValue::from_str(value).unwrap()),
        )];
        r
    }

    fn find(r: &Router, headers: &HeaderMap, method: &Method) -> Option<String> {
        let view = RequestView {
            method,
            host: None,
            path: "/shared/a",
            headers,
        };
        r.find(&view).map(|i| r.route(i).name.to_string())
    }

    /// The best route by brute force: routes are in rank order, and all of these share
    /// one path.
    fn brute(r: &Router, view: &RequestView<'_>) -> Option<String> {
        r.routes()
            .iter()
            .find(|route| route.predicates_hold(view))
            .map(|route| route.name.to_string())
    }

    #[test]
    fn wildcard_hosts_and_present_headers_are_indexed_and_pick_what_a_scan_would() {
        let mut routes: Vec<Route> = Vec::new();
        for i in 0..200 {
            routes.push(hosted(&format!("w{i}"), &format!("*.t{i}.example"), i));
        }
        routes.push(hosted("deep", "*.b.t7.example", 200));
        routes.push(hosted("exact", "a.t5.example", 201));
        let mut present = route("has-beta", "/shared/**", 202);
        present.headers = vec![(HeaderName::from_static("x-beta"), None)];
        routes.push(present);
        let mut wild_beta = hosted("w9-beta", "*.t9.example", 203);
        wild_beta.headers = vec![(HeaderName::from_static("x-beta"), None)];
        routes.push(wild_beta);
        routes.push(route("default", "/shared/**", 204));
        let r = Router::new(routes);
        let empty = HeaderMap::new();
        let mut beta = HeaderMap::new();
        beta.insert("x-beta", HeaderValue::from_static("1"));
        let long = format!("{}.t3.example", "x".repeat(300));
        for host in [
            "a.t5.example",
            "b.t5.example",
            "A.T5.EXAMPLE.",
            "t5.example",
            "x.b.t7.example",
            "b.t7.example",
            "a.t199.example",
            "ü.t3.example",
            "a.t9.example",
            "x.unknown",
            ".t4.example",
            long.as_str(),
        ] {
            for headers in [&empty, &beta] {
                let view = RequestView {
                    method: &Method::GET,
                    host: Some(host),
                    path: "/shared/a",
                    headers,
                };
                let got = r.find(&view).map(|i| r.route(i).name.to_string());
                assert_eq!(got, brute(&r, &view), "host {host}, headers {headers:?}");
            }
        }
        let pick = |host: &str, headers: &HeaderMap| {
            find_host(&r, Some(host), headers).unwrap_or_default()
        };
        assert_eq!(pick("a.t5.example", &empty), "exact");
        assert_eq!(pick("B.T5.Example.", &empty), "w5");
        assert_eq!(pick("t5.example", &empty), "default");
        // Two wildcards weigh the same whatever their length: file order.
        assert_eq!(pick("x.b.t7.example", &empty), "w7");
        assert_eq!(pick("a.t9.example", &beta), "w9-beta");
        assert_eq!(pick("x.unknown", &beta), "has-beta");
    }

    #[test]
    fn indexed_routes_pick_what_a_scan_would() {
        let mut routes: Vec<Route> = (0..50)
            .map(|i| tenant(&format!("t{i}"), &format!("t{i}"), i))
            .collect();
        // An earlier route that needs both a tenant and a method, one that only needs the
        // header to be present, and one with two exact headers: all still honoured.
        let mut post = tenant("t7-post", "t7", 50);
        post.methods = vec![Method::POST];
        routes.push(post);
        let mut present = route("any-tenant-put", "/shared/**", 51);
        present.headers = vec![(HeaderName::from_static("x-tenant"), None)];
        present.methods = vec![Method::PUT];
        routes.push(present);
        let mut two = tenant("t3-beta", "t3", 52);
        two.headers.push((
            HeaderName::from_static("x-beta"),
            Some(HeaderValue::from_static("1")),
        ));
        routes.push(two);
        routes.push(route("default", "/shared/**", 53));
        let r = Router::new(routes);
        let mut h = HeaderMap::new();
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("default"));
        h.insert("x-tenant", HeaderValue::from_static("t49"));
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("t49"));
        h.insert("x-tenant", HeaderValue::from_static("t7"));
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("t7"));
        assert_eq!(find(&r, &h, &Method::POST).as_deref(), Some("t7-post"));
        h.insert("x-tenant", HeaderValue::from_static("nobody"));
        assert_eq!(
            find(&r, &h, &Method::PUT).as_deref(),
            Some("any-tenant-put")
        );
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("default"));
        h.insert("x-tenant", HeaderValue::from_static("t3"));
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("t3"));
        h.insert("x-beta", HeaderValue::from_static("1"));
        assert_eq!(find(&r, &h, &Method::GET).as_deref(), Some("t3-beta"));
    }

    fn hosted(name: &str, host: &str, order: usize) -> Route {
        let mut r = route(name, "/shared/**", order);
        r.host = Some(HostPattern::parse(host).unwrap());
        r
    }

    fn find_host(r: &Router, host: Option<&str>, headers: &HeaderMap) -> Option<String> {
        let view = RequestView {
            method: &Method::GET,
            host,
            path: "/shared/a",
            headers,
        };
        r.find(&view).map(|i| r.route(i).name.to_string())
    }

    /// A test route: name, host, methods, `x-tenant` value.
    type Spec<'a> = (&'a str, Option<&'a str>, &'a [Method], Option<&'a str>);

    /// The router with and without the index must agree: each case is also checked on a
    /// node small enough to be scanned.
    fn scanned(routes: &[Spec<'_>]) -> (Router, Router) {
        let build = |filler: usize| {
            let mut list: Vec<Route> = routes
                .iter()
                .enumerate()
                .map(|(i, (name, host, methods, tenant))| {
                    let mut r = route(name, "/shared/**", i);
                    r.host = host.map(|h| HostPattern::parse(h).unwrap());
                    r.methods = methods.to_vec();
                    r.headers = tenant
                        .iter()
                        .map(|t| {
                            (
                                HeaderName::from_static("x-tenant"),
                                Some(HeaderValue::from_str(t).unwrap()),
                            )
                        })
                        .collect();
                    r
                })
                .collect();
            for i in 0..filler {
                list.push(hosted(&format!("f{i}"), &format!("f{i}.example"), 100 + i));
            }
            Router::new(list)
        };
        (build(40), build(0))
    }

    #[test]
    fn host_indexed_wildcard_and_host_less_routes_keep_their_precedence() {
        let get: &[Method] = &[];
        let post: &[Method] = &[Method::POST];
        let (indexed, small) = scanned(&[
            ("any-post", None, post, None),
            ("wild", Some("*.example.com"), get, None),
            ("api", Some("api.example.com"), get, None),
            ("api-post", Some("api.example.com"), post, None),
            ("api-t1", Some("api.example.com"), get, Some("t1")),
            ("t2-anywhere", None, get, Some("t2")),
            ("wild-t3", Some("*.example.com"), get, Some("t3")),
            ("ip", Some("[0:0::1]"), get, None),
            ("default", None, get, None),
        ]);
        let mut h = HeaderMap::new();
        let post_view = |r: &Router, host: Option<&str>, h: &HeaderMap| {
            let view = RequestView {
                method: &Method::POST,
                host,
                path: "/shared/a",
                headers: h,
            };
            r.find(&view).map(|i| r.route(i).name.to_string())
        };
        for r in [&indexed, &small] {
            // An exact host (weight 2) outranks a wildcard (1) and a method list (1); its
            // host plus a header (3) outranks both; among equals, file order decides.
            assert_eq!(
                find_host(r, Some("api.example.com"), &h).as_deref(),
                Some("api")
            );
            assert_eq!(
                find_host(r, Some("API.Example.COM."), &h).as_deref(),
                Some("api")
            );
            assert_eq!(
                find_host(r, Some("www.example.com"), &h).as_deref(),
                Some("wild")
            );
            assert_eq!(
                find_host(r, Some("example.com"), &h).as_deref(),
                Some("default")
            );
            assert_eq!(
                find_host(r, Some("nobody.example"), &h).as_deref(),
                Some("default")
            );
            assert_eq!(find_host(r, None, &h).as_deref(), Some("default"));
            assert_eq!(find_host(r, Some("[::1]"), &h).as_deref(), Some("ip"));
            let filler = if std::ptr::eq(r, &indexed) {
                "f39"
            } else {
                "default"
            };
            assert_eq!(
                find_host(r, Some("f39.example"), &h).as_deref(),
                Some(filler)
            );
            assert_eq!(
                post_view(r, Some("api.example.com"), &h).as_deref(),
                Some("api-post")
            );
            // A method list (1) ties with a wildcard (1): file order.
            assert_eq!(
                post_view(r, Some("www.example.com"), &h).as_deref(),
                Some("any-post")
            );
            assert_eq!(
                post_view(r, Some("nobody.example"), &h).as_deref(),
                Some("any-post")
            );
            h.insert("x-tenant", HeaderValue::from_static("t1"));
            assert_eq!(
                find_host(r, Some("api.example.com"), &h).as_deref(),
                Some("api-t1")
            );
            assert_eq!(
                find_host(r, Some("www.example.com"), &h).as_deref(),
                Some("wild")
            );
            h.insert("x-tenant", HeaderValue::from_static("t2"));
            // A header (1) ties with a wildcard (1): file order.
            assert_eq!(
                find_host(r, Some("api.example.com"), &h).as_deref(),
                Some("api")
            );
            assert_eq!(
                find_host(r, Some("www.example.com"), &h).as_deref(),
                Some("wild")
            );
            assert_eq!(
                find_host(r, Some("nobody.example"), &h).as_deref(),
                Some("t2-anywhere")
            );
            h.insert("x-tenant", HeaderValue::from_static("t3"));
            assert_eq!(
                find_host(r, Some("www.example.com"), &h).as_deref(),
                Some("wild-t3")
            );
            assert_eq!(
                find_host(r, Some("api.example.com"), &h).as_deref(),
                Some("api")
            );
            h.clear();
        }
        assert!(indexed.nodes.iter().any(|n| n
            .tail
            .index
            .as_ref()
            .is_some_and(|i| i.by_host.len() > 40)));
    }

    #[test]
    fn routes_sharing_a_host_are_filed_by_their_header() {
        // All tenants on one host, told apart by a header: filed by the header, so the
        // last tenant is one lookup too.
        let routes: Vec<Route> = (0..50)
            .map(|i| {
                let mut r = tenant(&format!("t{i}"), &format!("t{i}"), i);
                r.host = Some(HostPattern::parse("api.example.com").unwrap());
                r
            })
            .collect();
        let r = Router::new(routes);
        let index = r.nodes.iter().find_map(|n| n.tail.index.as_ref()).unwrap();
        assert!(index.by_host.is_empty());
        let mut h = HeaderMap::new();
        h.insert("x-tenant", HeaderValue::from_static("t49"));
        assert_eq!(
            find_host(&r, Some("api.example.com"), &h).as_deref(),
            Some("t49")
        );
        assert_eq!(find_host(&r, Some("www.example.com"), &h), None);
    }

    /// `routes` (named `{prefix}{i}`, the host of route `i` made by `host(i)`) and a
    /// default route: the last route's host and an unknown one are found in one lookup,
    /// not a scan of 20,000 routes.
    fn found_without_a_scan(
        prefix: &str,
        host: impl Fn(usize) -> String,
        last: &str,
        unknown: &str,
    ) {
        const N: usize = 20_000;
        let mut routes: Vec<Route> = (0..N)
            .map(|i| hosted(&format!("{prefix}{i}"), &host(i), i))
            .collect();
        routes.push(route("default", "/shared/**", N));
        let r = Router::new(routes);
        let h = HeaderMap::new();
        assert_eq!(
            find_host(&r, Some(last), &h),
            Some(format!("{prefix}{}", N - 1))
        );
        const ROUNDS: u32 = 2_000;
        for (host, want) in [(last, N - 1), (unknown, N)] {
            let view = RequestView {
                method: &Method::GET,
                host: Some(host),
                path: "/shared/a",
                headers: &h,
            };
            let start = Instant::now();
            for _ in 0..ROUNDS {
                assert_eq!(r.find(&view), Some(want));
            }
            // As for headers: a scan costs hundreds of microseconds, a lookup well under one.
            let per_request = start.elapsed() / ROUNDS;
            assert!(
                per_request < Duration::from_micros(50),
                "{host}: {per_request:?} per lookup"
            );
        }
    }

    #[test]
    fn the_last_of_many_host_routes_and_an_unknown_host_are_found_without_a_scan() {
        found_without_a_scan(
            "t",
            |i| format!("t{i}.example"),
            "T19999.Example",
            "nobody.example",
        );
    }

    #[test]
    fn the_last_of_many_wildcard_host_routes_is_found_without_a_scan() {
        found_without_a_scan(
            "w",
            |i| format!("*.t{i}.example"),
            "www.T19999.Example",
            "www.nobody.example",
        );
    }

    #[test]
    fn the_last_of_many_header_routes_is_found_without_a_scan() {
        const N: usize = 20_000;
        let routes: Vec<Route> = (0..N)
            .map(|i| tenant(&format!("t{i}"), &format!("t{i}"), i))
            .collect();
        let r = Router::new(routes);
        let mut h = HeaderMap::new();
        h.insert(
            "x-tenant",
            HeaderValue::from_str(&format!("t{}", N - 1)).unwrap(),
        );
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert_eq!(find(&r, &h, &Method::GET), Some(format!("t{}", N - 1)));
        // A scan of 20,000 routes takes hundreds of microseconds even in a release build;
        // the lookup takes well under one. The bound is loose for a shared, unoptimized
        // build, and still 20× under what one scan per request would cost.
        const ROUNDS: u32 = 2_000;
        let start = Instant::now();
        let view = RequestView {
            method: &Method::GET,
            host: None,
            path: "/shared/a",
            headers: &h,
        };
        for _ in 0..ROUNDS {
            assert_eq!(r.find(&view), Some(N - 1));
        }
        let per_request = start.elapsed() / ROUNDS;
        assert!(
            per_request < Duration::from_micros(50),
            "{per_request:?} per lookup"
        );
    }
}
