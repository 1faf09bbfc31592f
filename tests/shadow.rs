//! Shadow traffic (`shadow = { … }` on a route): copies reach the shadow service marked
//! `X-Ficus-Shadow: 1` and never change, fail or delay the client's answer; the copy's
//! size and queue bounds; JSON comparison with ignored paths, reordered keys, tolerance,
//! a real mismatch and learned noise; redaction in samples; records across reloads;
//! `/shadow`, `ficus shadow`, metrics and `ficus check`.

mod common;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    get_raw(gw.listen, path, "test.local", headers)
}

#[test]
fn copies_are_marked_compared_structurally_and_never_change_the_answer() {
    let mono = Origin::builder("monolith")
        .fallback(Handler::new(|_| {
            Reply::json(
                json!({"id": 7, "total": 10.0, "items": [{"sku": "a", "etag": "x1"}], "at": 1, "card": "4111-1111"}),
            )
        }))
        .start();
    // Same answer with keys reordered, a float within tolerance, another etag and
    // timestamp (ignored), and a real difference on /orders/bad.
    let v2 = Origin::builder("v2")
        .route(
            "/orders/bad",
            Handler::new(|_| Reply::json(json!({"at": 2, "id": 7, "total": 12.5, "items": [{"sku": "a", "etag": "y"}], "card": "4999-9999"}))),
        )
        .fallback(Handler::new(|_| {
            Reply::json(json!({"at": 2, "items": [{"etag": "y2", "sku": "a"}], "total": 10.000001, "id": 7, "card": "4111-1111"}))
        }))
        .start();
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", compare = { ignore = ["$.at", "$.items[*].etag"], tolerance = 0.001, redact = ["$.card"] } }"#,
    ));
    for _ in 0..3 {
        let r = get(
            &gw,
            "/orders/1",
            &[
                ("authorization", "Bearer secret-token"),
                ("cookie", "sid=abc"),
            ],
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["total"],
            10.0,
            "the client gets the primary's answer"
        );
    }
    let r = get(
        &gw,
        "/orders/bad",
        &[
            ("authorization", "Bearer secret-token"),
            ("cookie", "sid=abc"),
        ],
    );
    assert_eq!(r.json()["total"], 10.0);
    let request_id = r.header("x-request-id").expect("a request id").to_owned();
    // A client cannot pass a real request off as a copy.
    for forged in ["X-Ficus-Shadow", "x_ficus_shadow"] {
        assert_eq!(get(&gw, "/other/x", &[(forged, "1")]).status, 200);
    }
    let rep = wait_outcomes(&gw, 4);
    assert_eq!(rep["compared"], 4, "{rep:#}");
    assert_eq!(rep["matched"], 3, "{rep:#}");
    let forged: Vec<_> = mono
        .received()
        .into_iter()
        .filter(|r| r.path == "/other/x")
        .collect();
    assert_eq!(forged.len(), 2, "unrouted? {forged:?}");
    assert!(forged
        .iter()
        .all(|r| r.header("x-ficus-shadow").is_none() && r.header("x_ficus_shadow").is_none()));
    assert_eq!(rep["mismatched"], 1, "{rep:#}");
    assert_eq!(rep["service"], "orders-v2");
    let fields: Vec<&str> = rep["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["$.card", "$.total"], "{rep:#}");
    // The sample: the field-level difference, the path, sensitive headers redacted.
    let sample = &rep["samples"][0];
    assert_eq!(sample["path"], "/orders/bad");
    let total = sample["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "$.total")
        .expect("the total's difference");
    assert_eq!(total["kind"], "value_changed");
    assert_eq!(
        (total["primary"].as_str(), total["shadow"].as_str()),
        (Some("10.0"), Some("12.5"))
    );
    let text = sample.to_string();
    assert!(!text.contains("secret-token"), "{text}");
    assert!(!text.contains("sid=abc"), "{text}");
    // A redacted field is named, its values are not.
    assert!(text.contains("$.card"), "{text}");
    assert!(!text.contains("4111") && !text.contains("4999"), "{text}");
    // The copy is marked; the primary's request is not.
    let copies = v2.received();
    assert_eq!(copies.len(), 4);
    assert!(copies
        .iter()
        .all(|c| c.header("x-ficus-shadow") == Some("1")));
    assert!(mono
        .received()
        .iter()
        .all(|c| c.header("x-ficus-shadow").is_none()));
    // The copy carries the request id the client's answer has, and the client's headers.
    let bad = copies
        .iter()
        .find(|c| c.path == "/orders/bad")
        .expect("the copy");
    assert_eq!(bad.header("x-request-id"), Some(request_id.as_str()));
    assert_eq!(bad.header("authorization"), Some("Bearer secret-token"));
    let metrics = gw.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            "ficus_shadow_requests_total",
            &[("route", "orders"), ("result", "mismatched")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "ficus_shadow_field_mismatches_total",
            &[("field", "$.total")]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn noise_is_learned_from_a_second_primary_answer_and_excused() {
    let tick = Arc::new(AtomicU64::new(0));
    let t = tick.clone();
    let mono = Origin::builder("monolith")
        .fallback(Handler::new(move |_| {
            Reply::json(json!({"id": 1, "at": t.fetch_add(1, Ordering::Relaxed)}))
        }))
        .start();
    let v2 = Origin::builder("v2")
        .fallback(Handler::new(|_| {
            Reply::json(json!({"id": 1, "at": 999_999}))
        }))
        .start();
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", compare = { noise_sample = 1.0 } }"#,
    ));
    for _ in 0..5 {
        assert_eq!(get(&gw, "/orders/1", &[]).status, 200);
        // One at a time, so every copy learns before the next comparison.
        std::thread::sleep(Duration::from_millis(50));
    }
    let rep = wait_outcomes(&gw, 5);
    // Every copy also asked the primary a second time, marked as a copy.
    let second: Vec<_> = mono
        .received()
        .into_iter()
        .filter(|r| r.header("x-ficus-shadow") == Some("1"))
        .collect();
    assert_eq!(second.len(), 5, "{rep:#}");
    let noise: Vec<&str> = rep["noise"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(noise, ["$.at"], "{rep:#}");
    assert_eq!(rep["mismatched"], 0, "the timestamp is noise: {rep:#}");
    assert_eq!(rep["excused_by_noise"], 5, "{rep:#}");
}

#[test]
fn a_slow_failing_or_resetting_shadow_never_reaches_the_client() {
    let mono = ok_origin("monolith");
    let v2 = Origin::builder("v2")
        .route(
            "/orders/slow",
            Handler::new(|_| Reply::json(json!({"ok": true})).delay(Duration::from_secs(2))),
        )
        .route("/orders/reset", Handler::new(|_| Reply::reset()))
        .route("/orders/close", Handler::new(|_| Reply::close()))
        .route(
            "/orders/garbage",
            Handler::new(|_| Reply::raw("NOT HTTP\r\n\r\n")),
        )
        .fallback(Handler::new(|_| Reply::json(json!({"ok": true}))))
        .start();
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", timeout = "1s", queue = 100 }"#,
    ));
    let mut worst = Duration::ZERO;
    for path in [
        "/orders/slow",
        "/orders/reset",
        "/orders/close",
        "/orders/garbage",
    ] {
        for _ in 0..3 {
            let start = Instant::now();
            let r = get(&gw, path, &[]);
            worst = worst.max(start.elapsed());
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.json()["ok"], true);
        }
    }
    assert!(
        worst < Duration::from_millis(400),
        "a client waited {worst:?}"
    );
    let rep = wait_outcomes(&gw, 12);
    assert_eq!(rep["shadow_timeouts"], 3, "{rep:#}");
    assert_eq!(rep["shadow_errors"], 9, "{rep:#}");
    assert_eq!(rep["compared"], 0, "{rep:#}");
}

/// Client p99 over `n` sequential requests.
fn p99(gw: &Gateway, path: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(get(gw, path, &[]).status, 200);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n * 99 / 100]
}

#[test]
fn a_shadow_sleeping_two_seconds_adds_no_client_latency() {
    let mono = ok_origin("monolith");
    let v2 = Origin::builder("v2")
        .fallback(Handler::new(|_| {
            Reply::json(json!({"ok": true})).delay(Duration::from_secs(2))
        }))
        .start();
    let config = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("monolith", &[mono.addr()])
        .service("orders-v2", &[v2.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.set(
                "shadow",
                r#"{ service = "orders-v2", timeout = "3s", queue = 1000 }"#,
            );
        })
        .route("plain", "/plain/**", "monolith")
        .build();
    let gw = Gateway::start(&config);
    let plain = p99(&gw, "/plain/1", 200);
    let shadowed = p99(&gw, "/orders/1", 200);
    eprintln!("client p99: plain {plain:?}, shadowed {shadowed:?}");
    assert!(
        shadowed < plain * 3 + Duration::from_millis(20),
        "shadowed p99 {shadowed:?} against plain {plain:?}"
    );
    assert!(shadowed < Duration::from_millis(200), "{shadowed:?}");
    // The copies really went out and are still sleeping.
    let rep = report(&gw);
    assert!(rep["in_flight"].as_u64().unwrap() > 0, "{rep:#}");
}

#[test]
fn the_queue_bound_drops_and_counts_copies() {
    let mono = ok_origin("monolith");
    let v2 = Origin::builder("v2")
        .fallback(Handler::new(|_| {
            Reply::json(json!({"ok": true})).delay(Duration::from_secs(1))
        }))
        .start();
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", queue = 2, timeout = "5s" }"#,
    ));
    for _ in 0..10 {
        assert_eq!(get(&gw, "/orders/1", &[]).status, 200);
    }
    // Counted as each request is logged, just after its answer.
    let rep = poll_until(Duration::from_millis(500), || {
        let rep = report(&gw);
        (rep["dropped"] == 8).then_some(rep)
    })
    .unwrap_or_else(|| report(&gw));
    assert_eq!(rep["dropped"], 8, "{rep:#}");
    assert_eq!(
        rep["in_flight"], 2,
        "the two copies still wait for the shadow: {rep:#}"
    );
    let rep = wait_outcomes(&gw, 10);
    assert_eq!(rep["compared"], 2, "{rep:#}");
    assert_eq!(v2.requests(), 2);
}

#[test]
fn bodies_over_the_copy_limit_are_not_compared_and_are_counted() {
    let mono = Origin::builder("monolith")
        .route(
            "/orders/big",
            Handler::new(|_| Reply::ok().repeat_body(b'a', 5000)),
        )
        .fallback(Handler::echo())
        .start();
    let v2 = Origin::builder("v2")
        .route(
            "/orders/v2big",
            Handler::new(|_| Reply::ok().repeat_body(b'b', 5000)),
        )
        .fallback(Handler::new(|_| Reply::text("small")))
        .start();
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", max_body_bytes = 1000, methods = ["GET", "POST"] }"#,
    ));
    // The primary's answer is over the limit.
    let r = get(&gw, "/orders/big", &[]);
    assert_eq!(r.body.len(), 5000, "the client still gets it whole");
    // The shadow's answer is over the limit.
    assert_eq!(get(&gw, "/orders/v2big", &[]).status, 200);
    // A request body over the limit, declared and chunked: not copied at all.
    let big = "x".repeat(3000);
    let declared = format!(
        "POST /orders/post HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n{big}"
    );
    assert_eq!(raw_request(gw.listen, declared.as_bytes()).status, 200);
    let mut chunked = String::from(
        "POST /orders/chunked HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..6 {
        chunked.push_str(&format!("1f4\r\n{}\r\n", "y".repeat(500)));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(raw_request(gw.listen, chunked.as_bytes()).status, 200);
    let rep = wait_outcomes(&gw, 4);
    assert_eq!(rep["too_large_answers"], 2, "{rep:#}");
    assert_eq!(rep["dropped"], 2, "{rep:#}");
    assert_eq!(rep["compared"], 0, "{rep:#}");
    let copied: Vec<String> = v2.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        copied,
        ["/orders/v2big"],
        "only the one with a small request and primary answer went out"
    );
}

/// A client on HTTP/2 (h2c): the copy goes out on HTTP/1.1 with the Host the primary got,
/// and its body whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_http2_requests_go_out_as_http1_with_their_host_and_body() {
    let mono = Origin::builder("monolith")
        .fallback(Handler::echo())
        .start();
    let v2 = Origin::builder("v2").fallback(Handler::echo()).start();
    let config = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
            g.set("listen", r#"[{ addr = "{listen}", h2c = true }]"#);
        })
        .service("monolith", &[mono.addr()])
        .service("orders-v2", &[v2.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.set(
                "shadow",
                r#"{ service = "orders-v2", methods = ["GET", "POST"] }"#,
            );
        })
        .build();
    let gw = Gateway::start(&config);
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .post(format!("http://{}/orders/9?x=1", gw.listen))
        .body("a".repeat(3000))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let listen = gw.listen;
    let copy = tokio::task::spawn_blocking(move || {
        poll_until(Duration::from_secs(10), || v2.received().pop())
    })
    .await
    .unwrap()
    .expect("the copy never arrived");
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.path, "/orders/9?x=1");
    assert_eq!(copy.body.len(), 3000);
    assert_eq!(copy.header("host"), Some(listen.to_string().as_str()));
    assert_eq!(copy.header("x-ficus-shadow"), Some("1"));
    let primary = mono.received().pop().expect("the primary's request");
    assert_eq!(copy.header("host"), primary.header("host"));
}

/// Requests still streaming their answers hold memory for their copies: all of them
/// together stay within the route's budget (twice `queue` × `max_body_bytes`), and the
/// copies that would pass it are dropped and counted.
#[test]
fn captures_in_progress_share_the_routes_memory_budget() {
    let mono = Origin::builder("monolith")
        .fallback(Handler::new(|_| {
            Reply::ok()
                .chunk(Duration::ZERO, vec![b'a'; 900])
                .chunk(Duration::from_millis(1500), vec![b'b'; 50])
        }))
        .start();
    let v2 = Origin::builder("v2")
        .fallback(Handler::new(|_| Reply::text("x")))
        .start();
    // Budget: 2 × 3 × 1000 = 6000 bytes, room for six 900-byte answers in progress.
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", queue = 3, max_body_bytes = 1000 }"#,
    ));
    let listen = gw.listen;
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || get_raw(listen, "/orders/1", "test.local", &[]).status))
        .collect();
    let held = |m: &str| metric_sum(m, "ficus_shadow_held_bytes", &[("route", "orders")]);
    let mut last = String::new();
    let peak = poll_until(Duration::from_secs(3), || {
        last = gw.metrics();
        (held(&last) == Some(5400.0)).then_some(())
    });
    assert!(
        peak.is_some(),
        "six answers of 900 bytes never held:\n{last}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        held(&gw.metrics()),
        Some(5400.0),
        "no more than the budget allows"
    );
    for c in clients {
        assert_eq!(c.join().unwrap(), 200, "every client gets its whole answer");
    }
    let rep = wait_outcomes(&gw, 8);
    assert!(rep["dropped"].as_u64().unwrap() >= 2, "{rep:#}");
    let gone = poll_until(Duration::from_secs(5), || {
        (held(&gw.metrics()) == Some(0.0)).then_some(())
    });
    assert!(gone.is_some(), "the bytes are given back: {}", gw.metrics());
}

/// Noise is learned from a second primary answer only for safe methods: a copied POST
/// never reaches production twice.
#[test]
fn a_copied_post_is_never_sent_to_the_primary_twice() {
    let mono = ok_origin("monolith");
    let v2 = ok_origin("v2");
    let gw = Gateway::start(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", methods = ["GET", "POST"], compare = { noise_sample = 1.0 } }"#,
    ));
    let r = request_raw(
        gw.listen,
        "POST",
        "/orders/pay",
        "test.local",
        &[("content-length", "0")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(&gw, "/orders/1", &[]).status, 200);
    wait_outcomes(&gw, 2);
    let posts = mono
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the primary got the POST once");
    let gets = mono.received().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 2, "a GET is asked twice to learn noise");
}

/// A shadow that answers with a flood of interim answers is an error like any other.
#[test]
fn a_flood_of_interim_answers_is_a_shadow_error() {
    let mono = ok_origin("monolith");
    let flood = "HTTP/1.1 100 Continue\r\n\r\n".repeat(50)
        + "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
    let v2 = Origin::builder("v2")
        .route("/orders/few", Handler::new(|_| Reply::raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")))
        .fallback(Handler::new(move |_| Reply::raw(flood.clone())))
        .start();
    let gw = Gateway::start(&shadow_config(&mono, &v2, r#"{ service = "orders-v2" }"#));
    for _ in 0..3 {
        assert_eq!(get(&gw, "/orders/1", &[]).status, 200);
    }
    assert_eq!(get(&gw, "/orders/few", &[]).status, 200);
    let rep = wait_outcomes(&gw, 4);
    assert_eq!(rep["shadow_errors"], 3, "{rep:#}");
    assert_eq!(
        rep["matched"], 1,
        "one interim answer is read past: {rep:#}"
    );
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

/// Compressed answers are compared by what they say: gzip on one side only, or at
/// different levels, is not a mismatch; a real difference inside still is.
#[test]
fn compressed_answers_are_decoded_before_they_are_compared() {
    use std::io::Write;
    let gzip = |body: &serde_json::Value, level: u32| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(body.to_string().as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let order = json!({"id": 3, "items": ["a", "b"], "total": 5});
    let fast = gzip(&order, 1);
    let mono = Origin::builder("monolith")
        .fallback(Handler::new(move |_| {
            Reply::ok()
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(fast.clone())
        }))
        .start();
    let best = gzip(&order, 9);
    let changed = gzip(&json!({"id": 3, "items": ["a", "b"], "total": 6}), 6);
    let plain = order.clone();
    let v2 = Origin::builder("v2")
        .route(
            "/orders/plain",
            Handler::new(move |_| Reply::json(plain.clone())),
        )
        .route(
            "/orders/changed",
            Handler::new(move |_| {
                Reply::ok()
                    .header("content-encoding", "gzip")
                    .body(changed.clone())
            }),
        )
        .fallback(Handler::new(move |_| {
            Reply::ok()
                .header("content-encoding", "gzip")
                .body(best.clone())
        }))
        .start();
    let gw = Gateway::start(&shadow_config(&mono, &v2, r#"{ service = "orders-v2" }"#));
    for path in ["/orders/levels", "/orders/plain", "/orders/changed"] {
        let r = get(&gw, path, &[("accept-encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding"),
            Some("gzip"),
            "the client's answer is untouched"
        );
    }
    let rep = wait_outcomes(&gw, 3);
    assert_eq!(rep["matched"], 2, "{rep:#}");
    assert_eq!(rep["mismatched"], 1, "{rep:#}");
    assert_eq!(rep["invalid_json"], 0, "{rep:#}");
    assert_eq!(rep["fields"][0]["field"], "$.total", "{rep:#}");
}
