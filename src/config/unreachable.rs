//! Warnings for routes that can never match: an earlier-ranked route with the same path
//! shape accepts every request the later one accepts.
//!
//! The work is linear in the number of routes, however many share a path: a route can only
//! be covered by one on the same path shape (capture names do not matter), with the same
//! host or none, whose header predicates are a subset of its own. Earlier routes are filed
//! under exactly that key (shape, host, header predicates), and a route looks up each
//! subset of its own header predicates (a handful: routes have few) instead of comparing
//! itself with every earlier route. A route found shadowed is not filed: whatever it would
//! cover, the route covering it covers too, and ranks earlier.

use http::Method;
use std::collections::HashMap;
use std::ops::Range;

use super::diag::Diagnostics;
use crate::router::pattern::{HostPattern, Segment};
use crate::router::Route;

/// Header predicates beyond this many (per route) are not used to find a covering route:
/// the lookups double or triple with each one. A route with more may miss a warning; none
/// is ever wrong.
const MAX_LOOKUP_HEADERS: usize = 6;

/// The part of a path pattern that decides which paths it matches.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PathShape<'r> {
    /// Literal segments, `None` for a capture or `*`.
    segments: Vec<Option<&'r str>>,
    tail: bool,
}

fn shape(r: &Route) -> PathShape<'_> {
    PathShape {
        segments: r
            .pattern
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(&**l),
                Segment::Param(_) => None,
            })
            .collect(),
        tail: r.pattern.tail,
    }
}

/// A host pattern as a map key: whether it is a `*.` suffix, and its (lowercase) text.
type HostKey<'r> = (bool, &'r str);

fn host_key(h: &HostPattern) -> HostKey<'_> {
    match h {
        HostPattern::Exact(e) => (false, e),
        HostPattern::Suffix(s) => (true, s),
    }
}

/// A set of header predicates as a map key: (name, required value), sorted.
type HeaderKey<'r> = Vec<(&'r str, Option<&'r [u8]>)>;

fn header_key(r: &Route) -> HeaderKey<'_> {
    let mut k: HeaderKey<'_> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_ref().map(|v| v.as_bytes())))
        .collect();
    k.sort_unstable();
    k
}

/// Every header-predicate set a route covering `r` may have: each of `r`'s predicates left
/// out, kept, or (for a required value) kept as presence only.
fn covering_header_keys(r: &Route) -> Vec<HeaderKey<'_>> {
    let mut keys: Vec<HeaderKey<'_>> = vec![Vec::new()];
    let mut own = header_key(r);
    own.truncate(MAX_LOOKUP_HEADERS);
    for (name, value) in own {
        let mut next = Vec::with_capacity(keys.len() * 3);
        for k in &keys {
            next.push(k.clone());
            let mut present = k.clone();
            present.push((name, None));
            next.push(present);
            if value.is_some() {
                let mut exact = k.clone();
                exact.push((name, value));
                next.push(exact);
            }
        }
        keys = next;
    }
    // Built from a sorted list, each key is sorted already.
    keys
}

/// Whether `wide` accepts every request that `narrow` accepts, given the same path shape.
fn covers(wide: &Route, narrow: &Route) -> bool {
    let methods = wide.methods.is_empty()
        || (!narrow.methods.is_empty()
            && narrow
                .methods
                .iter()
                .all(|m: &Method| wide.methods.contains(m)));
    let host = wide.host.is_none() || wide.host == narrow.host;
    let headers = wide.headers.iter().all(|(name, want)| {
        narrow
            .headers
            .iter()
            .any(|(n, v)| n == name && (want.is_none() || v == want))
    });
    methods && host && headers
}

/// Whether two routes accept exactly the same requests on the same path shape.
fn same_predicates(a: &Route, b: &Route) -> bool {
    covers(a, b) && covers(b, a)
}

/// Warns about every route that an earlier-ranked route shadows. `routes` is in priority
/// order; `spans` maps a route's file position to its span.
pub fn warn_shadowed(
    d: &mut Diagnostics<'_>,
    routes: &[Route],
    spans: &HashMap<usize, Range<usize>>,
) {
    // (path shape, host) → a small number, so the filing key below stays cheap to build.
    let mut groups: HashMap<(PathShape<'_>, Option<HostKey<'_>>), usize> = HashMap::new();
    // (group, header predicates) → the routes filed there, by rank; they differ in methods.
    let mut filed: HashMap<(usize, HeaderKey<'_>), Vec<usize>> = HashMap::new();
    for (rank, r) in routes.iter().enumerate() {
        let path = shape(r);
        let host = r.host.as_ref().map(host_key);
        let mut lookup_groups = Vec::with_capacity(2);
        if host.is_some() {
            lookup_groups.extend(groups.get(&(path.clone(), None)).copied());
        }
        lookup_groups.extend(groups.get(&(path.clone(), host)).copied());
        let mut wide = None;
        if !lookup_groups.is_empty() {
            for key in covering_header_keys(r) {
                for &g in &lookup_groups {
                    let Some(list) = filed.get(&(g, key.clone())) else {
                        continue;
                    };
                    if let Some(&w) = list.iter().find(|&&w| covers(&routes[w], r)) {
                        wide = Some(wide.map_or(w, |b: usize| b.min(w)));
                    }
                }
            }
        }
        let Some(w) = wide else {
            let next = groups.len();
            let g = *groups.entry((path, host)).or_insert(next);
            filed.entry((g, header_key(r))).or_default().push(rank);
            continue;
        };
        let wide = &routes[w];
        let message = if same_predicates(wide, r) {
            format!(
                "route `{}` can never match: route `{}` has the same path and predicates and comes first",
                r.name, wide.name
            )
        } else {
            format!(
                "route `{}` can never match: route `{}` above matches everything it does",
                r.name, wide.name
            )
        };
        d.warning(
            spans.get(&r.file_order).cloned().unwrap_or(0..0),
            format!("routes[{}]", r.file_order),
            message,
            Some(
                "remove it, move it above, or give it a predicate the other lacks (methods, host, headers)"
                    .into(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compile;
    use std::path::Path;

    fn shadow_warnings(routes: &str) -> Vec<String> {
        let src = format!("[services.a]\ninstances = [\"127.0.0.1:1\"]\n{routes}");
        let cfg = compile(Path::new("routes.toml"), &src).unwrap();
        cfg.warnings
            .iter()
            .map(|w| w.message.clone())
            .filter(|m| m.contains("can never match"))
            .collect()
    }

    fn route(name: &str, matcher: &str) -> String {
        format!("[[routes]]\nname = \"{name}\"\nmatch = {{ {matcher} }}\nservice = \"a\"\n")
    }

    #[test]
    fn a_route_covered_by_an_earlier_one_is_reported() {
        let cases = [
            (
                route(
                    "getpost",
                    "path = \"/a/{id}\", methods = [\"GET\", \"POST\"]",
                ) + &route("get", "path = \"/a/{x}\", methods = [\"GET\"]"),
                "route `get` can never match: route `getpost` above matches everything it does",
            ),
            (
                route("any", "path = \"/b/**\", headers = { x = \"*\" }")
                    + &route("one", "path = \"/b/**\", headers = { x = \"1\" }"),
                "route `one` can never match: route `any` above",
            ),
            (
                route("m1", "path = \"/c\", methods = [\"GET\"]")
                    + &route("m2", "path = \"/c\", methods = [\"GET\", \"GET\"]"),
                "route `m2` can never match: route `m1` has the same path and predicates",
            ),
            (
                route("h1", "path = \"/d\", host = \"*.x.com\"")
                    + &route("h2", "path = \"/d\", host = \"*.X.COM\""),
                "route `h2` can never match: route `h1` has the same path",
            ),
        ];
        for (routes, want) in cases {
            let w = shadow_warnings(&routes);
            assert_eq!(w.len(), 1, "{routes}: {w:?}");
            assert!(w[0].contains(want), "{routes}: {w:?}");
        }
    }

    #[test]
    fn covering_routes_with_presence_only_headers_are_found() {
        // Routes rank by how many predicates they have, so a route can only be covered by
        // one with as many: here, some of them "present" where the later one wants a value.
        let cases = [
            (
                route(
                    "any",
                    "path = \"/h/**\", headers = { x-beta = \"*\", x-tenant = \"*\" }",
                ) + &route(
                    "beta-tenant",
                    "path = \"/h/**\", headers = { x-tenant = \"a\", x-beta = \"1\" }",
                ),
                "route `beta-tenant` can never match: route `any` above",
            ),
            (
                route(
                    "a1",
                    "path = \"/i\", headers = { x-a = \"1\", x-b = \"*\" }, methods = [\"GET\", \"PUT\"]",
                ) + &route(
                    "a1b2",
                    "path = \"/i\", headers = { x-b = \"2\", x-a = \"1\" }, methods = [\"GET\"]",
                ),
                "route `a1b2` can never match: route `a1` above",
            ),
        ];
        for (routes, want) in cases {
            let w = shadow_warnings(&routes);
            assert_eq!(w.len(), 1, "{routes}: {w:?}");
            assert!(w[0].contains(want), "{routes}: {w:?}");
        }
    }

    #[test]
    fn many_routes_on_one_path_are_checked_in_linear_time() {
        // 20,000 tenants on one path, then one duplicate of a tenant and a catch-all: the
        // pairwise check compared 200 million pairs here.
        let mut routes = String::new();
        for i in 0..20_000 {
            routes += &route(
                &format!("t{i}"),
                &format!("path = \"/s/**\", headers = {{ x-tenant = \"t{i}\" }}"),
            );
        }
        routes += &route(
            "again",
            "path = \"/s/**\", headers = { x-tenant = \"t19999\" }",
        );
        routes += &route("rest", "path = \"/s/**\"");
        let start = std::time::Instant::now();
        let w = shadow_warnings(&routes);
        let took = start.elapsed();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(
                "route `again` can never match: route `t19999` has the same path and predicates"
            ),
            "{w:?}"
        );
        // A few hundred milliseconds unoptimized; the pairwise check took minutes.
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    }

    #[test]
    fn routes_that_can_still_match_are_not_reported() {
        let cases = [
            // The more specific route ranks first, so the general one still gets the rest.
            route("get", "path = \"/a/{id}\", methods = [\"GET\"]")
                + &route(
                    "getpost",
                    "path = \"/a/{id}\", methods = [\"GET\", \"POST\"]",
                ),
            route("one", "path = \"/b/**\", headers = { x = \"1\" }")
                + &route("two", "path = \"/b/**\", headers = { x = \"2\" }"),
            route("h1", "path = \"/d\", host = \"a.example\"")
                + &route("h2", "path = \"/d\", host = \"b.example\""),
            route("lit", "path = \"/e/x\"") + &route("param", "path = \"/e/{id}\""),
            route("exact", "path = \"/f\"") + &route("tail", "path = \"/f/**\""),
        ];
        for routes in cases {
            assert_eq!(shadow_warnings(&routes), Vec::<String>::new(), "{routes}");
        }
    }
}
