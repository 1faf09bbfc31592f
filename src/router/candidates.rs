//! The routes whose path pattern ends at one trie node, and how the best of them is found
//! for a request without testing them one by one.
//!
//! Many routes can share a path and differ only by a header (`x-tenant = "t42"`). A list
//! scanned route by route would make the last of 100,000 such routes cost 100,000
//! predicate checks per request. Once a node holds more than [`INDEX_FROM`] routes, each
//! route that requires an exact header value is filed under that header's name and value;
//! a request then looks up the values it actually sends, and only routes without such a
//! predicate (methods, host, presence-only headers) are still scanned. The index only
//! narrows the candidates: every candidate's predicates are still checked in full, so the
//! index can never pick a route the scan would not have picked.
//!
//! Nothing here allocates on the request path.

use http::{HeaderName, HeaderValue};
use std::collections::HashMap;

use super::{RequestView, Route};

/// Below this many routes on a node a scan is as fast as a lookup.
const INDEX_FROM: usize = 8;

/// The routes ending at one node (exactly, or with `/**`), by rank.
///
/// Kept small (a trie has a node per literal segment, most ending no route at all): an
/// empty list and an absent index take no allocation.
#[derive(Debug, Default)]
pub(super) struct Candidates {
    /// Routes not in the index, by rank (all of them on a small node).
    scan: Box<[usize]>,
    /// Header name → exact value → the routes requiring that value, by rank.
    by_header: Option<Box<HeaderIndex>>,
}

type HeaderIndex = HashMap<HeaderName, HashMap<HeaderValue, Vec<usize>>>;

impl Candidates {
    /// Files `ranks` (ascending) of `routes`.
    pub(super) fn new(ranks: Vec<usize>, routes: &[Route]) -> Candidates {
        if ranks.len() <= INDEX_FROM {
            return Candidates {
                scan: ranks.into_boxed_slice(),
                by_header: None,
            };
        }
        // Each route is filed under one of its exact-value headers: the name most routes of
        // this node share, so a request needs as few lookups as possible.
        let mut names: HashMap<&HeaderName, usize> = HashMap::new();
        for &r in &ranks {
            for (name, _) in routes[r].headers.iter().filter(|(_, v)| v.is_some()) {
                *names.entry(name).or_default() += 1;
            }
        }
        let mut scan = Vec::new();
        let mut by_header = HeaderIndex::new();
        for r in ranks {
            let key = routes[r]
                .headers
                .iter()
                .filter_map(|(name, value)| Some((name, value.as_ref()?)))
                .max_by(|(a, _), (b, _)| {
                    let (na, nb) = (names.get(a), names.get(b));
                    na.cmp(&nb).then_with(|| b.as_str().cmp(a.as_str()))
                });
            match key {
                Some((name, value)) => by_header
                    .entry(name.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(r),
                None => scan.push(r),
            }
        }
        Candidates {
            scan: scan.into_boxed_slice(),
            by_header: (!by_header.is_empty()).then(|| Box::new(by_header)),
        }
    }

    /// Lowers `best` to the best rank here whose predicates hold, if it beats `best`.
    pub(super) fn best(&self, routes: &[Route], req: &RequestView<'_>, best: &mut usize) {
        first_holding(&self.scan, routes, req, best);
        let Some(by_header) = self.by_header.as_deref() else {
            return;
        };
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
