//! Warnings for routes that can never match: an earlier-ranked route with the same path
//! shape accepts every request the later one accepts.
//!
//! Routes are grouped by path shape (capture names do not matter) and host, so the work is
//! linear in the number of routes plus the pairs within a group of routes on the same path
//! and host (a route without a host is compared with every host's routes on its path).

use http::Method;
use std::collections::HashMap;
use std::ops::Range;

use super::diag::Diagnostics;
use crate::router::pattern::{HostPattern, Segment};
use crate::router::Route;

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
    let mut groups: HashMap<(PathShape<'_>, Option<HostKey<'_>>), Vec<usize>> = HashMap::new();
    for (rank, r) in routes.iter().enumerate() {
        let path = shape(r);
        let any_host = r
            .host
            .as_ref()
            .and_then(|_| groups.get(&(path.clone(), None)))
            .into_iter()
            .flatten();
        let host = r.host.as_ref().map(host_key);
        let same_host = groups.get(&(path.clone(), host)).into_iter().flatten();
        let wide = any_host
            .chain(same_host)
            .copied()
            .filter(|&w| covers(&routes[w], r))
            .min();
        if let Some(w) = wide {
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
        groups.entry((path, host)).or_default().push(rank);
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
