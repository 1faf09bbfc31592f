//! Route matching cost with 10, 1,000 and 10,000 routes (criterion).
//!
//! Each table mixes exact paths, `{param}` segments and `/**` tails over a few hundred
//! prefixes, plus a catch-all, the way a monolith's migration table grows. Lookups hit an
//! exact route, a param route, a tail route and the catch-all in turn.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ficus::router::normalize::PathFlags;
use ficus::router::pattern::PathPattern;
use ficus::router::{RequestView, Route, Router};
use http::{HeaderMap, Method};
use std::hint::black_box;

fn route(i: usize, path: String) -> Route {
    Route {
        name: format!("r{i}").into(),
        file_order: i,
        location: Default::default(),
        pattern: PathPattern::parse(&path).expect("bench patterns are valid"),
        host: None,
        methods: if i.is_multiple_of(3) {
            vec![Method::GET, Method::POST]
        } else {
            vec![]
        },
        headers: vec![],
        allow: PathFlags::empty(),
        service: 0,
        split: None,
        strip_prefix: None,
        rewrite: None,
        extras: None,
        fallback: None,
        chain: Default::default(),
        retries: Default::default(),
        shadow: None,
    }
}

fn table(n: usize) -> Router {
    let mut routes = Vec::with_capacity(n + 1);
    for i in 0..n {
        let prefix = format!("/svc{}/v{}", i / 3, i % 7);
        let path = match i % 3 {
            0 => format!("{prefix}/items"),
            1 => format!("{prefix}/items/{{id}}"),
            _ => format!("{prefix}/**"),
        };
        routes.push(route(i, path));
    }
    routes.push(route(n, "/**".to_string()));
    Router::new(routes)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    let headers = HeaderMap::new();
    for n in [10usize, 1_000, 10_000] {
        let router = table(n);
        let last = n.saturating_sub(1) / 3;
        let paths = [
            format!("/svc{last}/v0/items"),
            "/svc1/v4/items/12345".to_string(),
            "/svc0/v2/a/b/c".to_string(),
            "/legacy/products/7".to_string(),
        ];
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % paths.len();
                let view = RequestView {
                    method: &Method::GET,
                    host: Some("shop.example"),
                    path: &paths[i],
                    headers: &headers,
                };
                black_box(router.find(black_box(&view)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
