//! What a CORS policy costs the request path (criterion): the response hook on a proxied
//! answer (allowed origin, refused origin, no origin; the upstream sent a `Vary` and a CORS
//! header of its own, the worst case: a merged `Vary` and a removal), the request hook on
//! an ordinary request, and an answered preflight. Each runs through the `Plugin` trait, as
//! the gateway calls it (the async-trait box included), and applies nothing: the gateway's
//! own work to apply the edits is not counted.
//!
//! `cargo bench -p ficus-plugins --bench cors`
//!
//! On the 2-core dev box (shared, one run, medians): response hook 281 ns for an allowed
//! origin on a plain upstream head, 706 ns when the upstream sent `Vary` and its own
//! `Access-Control-Allow-Origin` (one removal, a merged `Vary` built), 249 ns for a refused
//! lookalike origin, 107 ns without `Origin`; request hook 35 ns on an ordinary request,
//! 838 ns for an answered preflight (the 204 and its six headers built).

use criterion::{criterion_group, criterion_main, Criterion};
use ficus_plugins::cors::{Cors, CorsConfig};
use ficus_plugins::{
    CompileContext, HeaderEdits, Plugin, PolicyKind, RequestState, RequestView, ResponseHead,
    Source,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

const SHOP: &str = r#"
origins = ["https://shop.example.com", "https://*.example.com", "http://localhost:3000"]
methods = ["GET", "POST", "PUT"]
headers = ["Content-Type", "X-Custom"]
expose_headers = ["X-Request-Id"]
credentials = true
max_age = "600s"
"#;

fn plugin() -> Arc<dyn Plugin> {
    let cfg: CorsConfig = toml::from_str(SHOP).expect("bench config parses");
    let mut cx = CompileContext::new(Path::new("."));
    let settings = Cors::compile(cfg, &mut cx).expect("bench config compiles");
    Cors::build("shop", Arc::new(settings))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            )
        })
        .collect()
}

/// Runs a hook's future to completion: the CORS hooks never wait, so one poll does.
fn run<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the CORS hooks never wait"),
    }
}

fn respond(p: &dyn Plugin, req: &HeaderMap, resp: &HeaderMap, state: &RequestState) -> usize {
    let mut edits = HeaderEdits::default();
    let mut head = ResponseHead {
        status: StatusCode::OK,
        headers: resp,
        source: Source::Upstream,
        method: &Method::GET,
        request_headers: req,
        route: "orders",
        state,
        edits: &mut edits,
    };
    run(p.on_response(&mut head));
    edits.ops().len()
}

fn request(p: &dyn Plugin, req: &HeaderMap, method: &Method, preflight: bool) -> bool {
    let mut state = RequestState::new();
    let mut upstream = HeaderEdits::default();
    let mut view = RequestView {
        method,
        path: "/orders/1",
        query: None,
        headers: req,
        client_ip: None,
        route: "orders",
        request_id: "5f0c2a",
        preflight,
        state: &mut state,
        upstream: &mut upstream,
    };
    matches!(
        run(p.on_request(&mut view)),
        ficus_plugins::Outcome::Continue
    )
}

fn bench(c: &mut Criterion) {
    let p = plugin();
    let state = RequestState::new();
    let browser = |origin: &str| {
        headers(&[
            ("host", "api.example.com"),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
            ),
            ("accept", "application/json"),
            ("accept-language", "en-GB,en;q=0.9"),
            ("origin", origin),
            ("referer", "https://app.example.com/cart"),
            ("cookie", "session=0d5e8f7a1b2c4d3e8f9a0b1c2d3e4f5a"),
        ])
    };
    let upstream = headers(&[
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("date", "Sat, 05 Dec 2026 09:07:14 GMT"),
        ("server", "orders"),
        ("cache-control", "no-store"),
        ("vary", "Accept-Encoding"),
        ("access-control-allow-origin", "*"),
        ("x-request-id", "5f0c2a"),
    ]);
    let plain = headers(&[
        ("content-type", "application/json"),
        ("content-length", "512"),
        ("date", "Sat, 05 Dec 2026 09:07:14 GMT"),
        ("server", "orders"),
        ("x-request-id", "5f0c2a"),
    ]);
    let allowed = browser("https://app.example.com");
    let refused = browser("https://example.com.evil.com");
    let none = headers(&[("host", "api.example.com"), ("accept", "*/*")]);
    let mut preflight = browser("https://app.example.com");
    preflight.insert(
        "access-control-request-method",
        HeaderValue::from_static("PUT"),
    );
    preflight.insert(
        "access-control-request-headers",
        HeaderValue::from_static("content-type,x-custom"),
    );

    let mut g = c.benchmark_group("cors");
    g.bench_function("response, allowed origin, plain upstream head", |b| {
        b.iter(|| black_box(respond(&*p, black_box(&allowed), black_box(&plain), &state)))
    });
    g.bench_function(
        "response, allowed origin, upstream Vary and CORS header",
        |b| {
            b.iter(|| {
                black_box(respond(
                    &*p,
                    black_box(&allowed),
                    black_box(&upstream),
                    &state,
                ))
            })
        },
    );
    g.bench_function("response, refused lookalike origin", |b| {
        b.iter(|| black_box(respond(&*p, black_box(&refused), black_box(&plain), &state)))
    });
    g.bench_function("response, no Origin", |b| {
        b.iter(|| black_box(respond(&*p, black_box(&none), black_box(&plain), &state)))
    });
    g.bench_function("request hook, not a preflight", |b| {
        b.iter(|| black_box(request(&*p, black_box(&allowed), &Method::GET, false)))
    });
    g.bench_function("request hook, answered preflight", |b| {
        b.iter(|| black_box(request(&*p, black_box(&preflight), &Method::OPTIONS, true)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
