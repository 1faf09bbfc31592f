//! Failure handling around a service: no healthy instance, fallback, circuit breaker,
//! bulkhead, retries and their budget, outlier ejection, panic threshold.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A health check that declares an instance unhealthy after one failed probe.
const HEALTH_FAST_UNHEALTHY: &str =
    r#"{ path = "/health", interval = "100ms", timeout = "300ms", unhealthy_after = 1 }"#;

/// Service `orders` with these instances and whatever `edit` sets, behind route `orders`
/// on `/orders/**`.
fn orders(instances: &[SocketAddr], edit: impl FnOnce(&mut Table)) -> String {
    ConfigBuilder::new()
        .service_with("orders", instances, edit)
        .route("orders", "/orders/**", "orders")
        .build()
}

fn post(gw: &Gateway, path: &str, body: &str) -> RawResponse {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: test.local\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_request(gw.listen, req.as_bytes())
}

fn timed_get(gw: &Gateway, path: &str) -> (RawResponse, Duration) {
    let t = Instant::now();
    let r = gw.get(path);
    (r, t.elapsed())
}

fn retry_after(r: &RawResponse) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", r.headers))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {:?}", r.headers))
}

fn breaker_state(gw: &Gateway, svc: &str) -> String {
    service(gw, svc)["breaker"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Waits until the breaker of `svc` is open and its `open_for` is over: the next request is
/// admitted as a half-open trial.
fn wait_open_for_over(gw: &Gateway, svc: &str) {
    let over = poll_until(Duration::from_secs(10), || {
        let b = service(gw, svc)["breaker"].clone();
        (b["state"] == "open" && b["open_for_ms"] == 0).then_some(())
    });
    assert!(
        over.is_some(),
        "the breaker of {svc} is not open with open_for over: {:#}",
        service(gw, svc)["breaker"]
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn no_healthy_instance_is_503_json_with_request_id_and_retry_after() {
    let sick = Origin::start("sick");
    sick.set_health(503);
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("orders", &[sick.addr()], |s| {
                s.set("health", HEALTH_FAST_UNHEALTHY);
            })
            .service("empty", &[])
            .route("orders", "/orders/**", "orders")
            .route("empty", "/empty/**", "empty")
            .build(),
    );
    wait_health(
        &gw,
        "orders",
        sick.addr(),
        "unhealthy",
        Duration::from_secs(15),
    );
    for path in ["/orders/1", "/empty/1"] {
        let r = gw.get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        let j = r.json();
        assert!(
            j["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {j}"
        );
        let id = j["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no request_id in {j}"));
        assert!(!id.is_empty());
        assert_eq!(r.header("x-request-id"), Some(id), "{path}");
        assert!(retry_after(&r) >= 1, "{path}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.contains("application/json")),
            "{path}: {:?}",
            r.headers
        );
    }
    assert_eq!(sick.requests(), 0);
    assert!(
        metric(
            &gw,
            "ficus_upstream_errors_total",
            &[("service", "orders"), ("kind", "no_instance")]
        ) >= 1.0,
        "{}",
        gw.metrics()
    );
}

#[test]
fn fallback_serves_while_no_instance_is_healthy() {
    let orders = Origin::start("orders");
    orders.set_health(503);
    let monolith = Origin::start("monolith");
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("orders", &[orders.addr()], |s| {
                s.set(
                    "health",
                    r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 1 }"#,
                );
            })
            .service("monolith", &[monolith.addr()])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("fallback", "monolith");
            })
            .build(),
    );
    wait_health(
        &gw,
        "orders",
        orders.addr(),
        "unhealthy",
        Duration::from_secs(15),
    );
    for i in 0..5 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "monolith");
        assert_eq!(r.origin_path().as_deref(), Some(&*format!("/orders/{i}")));
    }
    assert_eq!(orders.requests(), 0);
    // The new service takes over once it is healthy.
    orders.set_health(200);
    wait_health(
        &gw,
        "orders",
        orders.addr(),
        "healthy",
        Duration::from_secs(15),
    );
    let r = gw.get("/orders/new");
    assert_eq!(r.status, 200);
    assert_eq!(served_by(&r), "orders");
}

#[test]
fn breaker_opens_rejects_fast_half_opens_and_closes() {
    let o = Origin::start("orders");
    o.set_fallback(Handler::echo().status(500));
    let gw = Gateway::start(&orders(&[o.addr()], |s| {
        s.set("outlier", "{ consecutive_failures = 0 }").set(
            "breaker",
            r#"{ consecutive_failures = 3, failure_rate = 0.5, min_requests = 1000, window = "10s", open_for = "3s", half_open_requests = 2 }"#,
        );
    }));
    assert_eq!(breaker_state(&gw, "orders"), "closed");
    for i in 0..3 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 500, "5xx from the origin is passed through");
        assert_eq!(served_by(&r), "orders");
    }
    assert_eq!(o.requests(), 3, "a 5xx response was retried");
    assert_eq!(breaker_state(&gw, "orders"), "open");
    assert_eq!(
        metric(&gw, "ficus_circuit_breaker_open", &[("service", "orders")]),
        1.0
    );

    // Open: refused at once, the origin sees nothing.
    let mut times = Vec::new();
    for i in 0..5 {
        let (r, t) = timed_get(&gw, &format!("/orders/open{i}"));
        assert_eq!(r.status, 503, "breaker open: {}", r.text());
        let ra = retry_after(&r);
        assert!((1..=3).contains(&ra), "Retry-After {ra} with open_for 3s");
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("circuit")),
            "{}",
            r.text()
        );
        assert!(t < Duration::from_secs(1), "rejection took {t:?}");
        times.push(t);
    }
    let m = median(times);
    assert!(m < Duration::from_millis(100), "median rejection {m:?}");
    assert_eq!(o.requests(), 3, "requests reached the origin while open");

    // After open_for a trial request goes through; it fails, so the breaker opens again.
    let trial = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/trial");
        (r.status != 503).then_some(r)
    })
    .expect("no half-open trial request within 15 s");
    assert_eq!(trial.status, 500, "{}", trial.text());
    assert_eq!(o.requests(), 4);
    let r = gw.get("/orders/reopened");
    assert_eq!(r.status, 503, "a failed trial must reopen the breaker");
    assert_eq!(o.requests(), 4);

    // Fixed: the next trials succeed and the breaker closes.
    o.set_fallback(Handler::echo());
    let first_ok = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/trial2");
        (r.status == 200).then_some(())
    });
    assert!(first_ok.is_some(), "no successful trial within 15 s");
    let closed = poll_until(Duration::from_secs(10), || {
        if breaker_state(&gw, "orders") == "closed" {
            return Some(());
        }
        let r = gw.get("/orders/trial3");
        assert_ne!(r.status, 500);
        None
    });
    assert!(
        closed.is_some(),
        "breaker did not close after successful trials: {:#}",
        service(&gw, "orders")
    );
    let before = o.requests();
    for i in 0..10 {
        let r = gw.get(&format!("/orders/ok{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(o.requests(), before + 10);
    assert_eq!(
        metric(&gw, "ficus_circuit_breaker_open", &[("service", "orders")]),
        0.0
    );
}

#[test]
fn open_breaker_sends_traffic_to_the_fallback() {
    let o = Origin::start("orders");
    o.set_fallback(Handler::echo().status(500));
    let monolith = Origin::start("monolith");
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("orders", &[o.addr()], |s| {
                s.set("outlier", "{ consecutive_failures = 0 }").set(
                    "breaker",
                    r#"{ consecutive_failures = 3, min_requests = 1000, open_for = "2s", half_open_requests = 1 }"#,
                );
            })
            .service("monolith", &[monolith.addr()])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("fallback", "monolith");
            })
            .build(),
    );
    for _ in 0..3 {
        let r = gw.get("/orders/x");
        assert_eq!(r.status, 500);
        assert_eq!(served_by(&r), "orders");
    }
    assert_eq!(breaker_state(&gw, "orders"), "open");
    for i in 0..5 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "fallback while open: {}", r.text());
        assert_eq!(served_by(&r), "monolith");
    }
    assert_eq!(o.requests(), 3);
    assert_eq!(monolith.requests(), 5);

    o.set_fallback(Handler::echo());
    let back = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/back");
        assert_eq!(r.status, 200, "{}", r.text());
        (served_by(&r) == "orders").then_some(())
    });
    assert!(
        back.is_some(),
        "traffic never returned to the recovered service"
    );
    let closed = poll_until(Duration::from_secs(5), || {
        (breaker_state(&gw, "orders") == "closed").then_some(())
    });
    assert!(closed.is_some(), "{:#}", service(&gw, "orders"));
    let r = gw.get("/orders/after");
    assert_eq!(served_by(&r), "orders");
}

#[test]
fn bulkhead_rejects_excess_concurrency_at_once() {
    let o = Origin::start("orders");
    o.set_fallback(Handler::echo().delay(Duration::from_secs(2)));
    let gw = Gateway::start(&orders(&[o.addr()], |s| {
        s.set("max_concurrent", 2);
    }));
    let barrier = Arc::new(Barrier::new(5));
    let listen = gw.listen;
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                let r = get_raw(listen, &format!("/orders/{i}"), "test.local", &[]);
                (r, t.elapsed())
            })
        })
        .collect();
    let results: Vec<(RawResponse, Duration)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|(r, _)| r.status == 200).count();
    let rejected: Vec<_> = results.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(
        (ok, rejected.len()),
        (2, 3),
        "statuses: {:?}",
        results
            .iter()
            .map(|(r, t)| (r.status, *t))
            .collect::<Vec<_>>()
    );
    for (r, t) in &rejected {
        assert!(
            *t < Duration::from_secs(1),
            "bulkhead rejection waited {t:?} (the origin takes 2 s)"
        );
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("concurrency")),
            "{}",
            r.text()
        );
        assert!(retry_after(r) >= 1);
    }
    assert_eq!(o.requests(), 2);
    // Slots are given back (the permit is released after the response is logged).
    let drained = poll_until(Duration::from_secs(5), || {
        (service(&gw, "orders")["inflight"] == 0).then_some(())
    });
    assert!(drained.is_some(), "{:#}", service(&gw, "orders"));
    o.set_fallback(Handler::echo());
    for _ in 0..3 {
        assert_eq!(gw.get("/orders/after").status, 200);
    }
}

/// Sends `n` sequential GETs; returns (ok, 502) counts, asserting nothing else comes back.
fn get_many(gw: &Gateway, prefix: &str, n: usize, good: &str) -> (usize, usize) {
    let (mut ok, mut bad) = (0, 0);
    for i in 0..n {
        let r = gw.get(&format!("{prefix}{i}"));
        match r.status {
            200 => {
                assert_eq!(served_by(&r), good);
                ok += 1;
            }
            502 => bad += 1,
            s => panic!("unexpected status {s}: {}", r.text()),
        }
    }
    (ok, bad)
}

#[test]
fn retry_budget_caps_retries() {
    let good = Origin::start("good");
    let dead = closed_addr();
    let gw = Gateway::start(&orders(&[good.addr(), dead], |s| {
        s.set("outlier", "{ consecutive_failures = 0 }")
            .set("retry_budget", "{ ratio = 0.2, min_retries = 10 }");
    }));
    let n = 100;
    let t = Instant::now();
    let (ok, bad) = get_many(&gw, "/orders/", n, "good");
    let elapsed = t.elapsed();
    let retries = metric(&gw, "ficus_retries_total", &[("service", "orders")]);
    eprintln!("{n} requests in {elapsed:?}: {ok} ok, {bad} 502, {retries} retries");
    assert_eq!(ok + bad, n);
    assert_eq!(good.requests(), ok);
    // The budget window is 10 s; within it retries are capped at ratio × requests + minimum.
    let cap = if elapsed < Duration::from_secs(9) {
        0.2 * n as f64 + 10.0
    } else {
        0.2 * n as f64 + 20.0
    };
    assert!(retries <= cap, "{retries} retries > budget {cap}");
    assert!(
        retries >= 10.0,
        "min_retries allows at least 10 retries: {retries}"
    );
    assert!(
        bad >= 1,
        "with half the picks on a dead instance, the budget must run out"
    );
    // Every failed first attempt was either retried (and served) or answered 502.
    let refused = metric(
        &gw,
        "ficus_upstream_errors_total",
        &[("service", "orders"), ("kind", "connect_refused")],
    );
    assert!(refused >= bad as f64, "{}", gw.metrics());
}

#[test]
fn zero_retry_budget_means_no_retries() {
    let good = Origin::start("good");
    let dead = closed_addr();
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("orders", &[good.addr(), dead], |s| {
                s.set("outlier", "{ consecutive_failures = 0 }")
                    .set("retry_budget", "{ ratio = 0.0, min_retries = 0 }");
            })
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set("retries", "{ attempts = 3 }");
            })
            .build(),
    );
    let (ok, bad) = get_many(&gw, "/orders/", 20, "good");
    assert!(
        bad >= 5,
        "expected about half 502s without retries: {ok} ok {bad} bad"
    );
    assert_eq!(
        metric(&gw, "ficus_retries_total", &[("service", "orders")]),
        0.0
    );
    let r = poll_until(Duration::from_secs(5), || {
        let r = gw.get("/orders/x");
        (r.status == 502).then_some(r)
    })
    .unwrap();
    assert_eq!(r.json()["error"], "upstream service unreachable");
    assert!(r.json()["request_id"].is_string());
}

#[test]
fn post_is_retried_only_when_the_route_opts_in() {
    let good_plain = Origin::start("good");
    let good_opt = Origin::start("good");
    let (dead1, dead2) = (closed_addr(), closed_addr());
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("plain", &[good_plain.addr(), dead1], |s| {
                s.set("outlier", "{ consecutive_failures = 0 }");
            })
            .service_with("opt", &[good_opt.addr(), dead2], |s| {
                s.set("outlier", "{ consecutive_failures = 0 }");
            })
            .route("plain", "/plain/**", "plain")
            .route_with("opt", "/opt/**", "opt", |r| {
                r.set("retries", "{ attempts = 2, non_idempotent = true }");
            })
            .build(),
    );
    let retries = |svc: &str| metric(&gw, "ficus_retries_total", &[("service", svc)]);

    // Default policy: POST is not retried, some fail with 502.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = post(&gw, &format!("/plain/{i}"), "payload");
        assert!(
            r.status == 200 || r.status == 502,
            "{} {}",
            r.status,
            r.text()
        );
        statuses.push(r.status);
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert_eq!(retries("plain"), 0.0, "a POST was retried");
    // ... while GET on the same service is retried.
    let (_, bad) = get_many(&gw, "/plain/get", 6, "good");
    assert_eq!(bad, 0);
    assert!(retries("plain") >= 1.0);

    // Opted in: POSTs are retried and all succeed, with their body.
    for i in 0..10 {
        let r = post(&gw, &format!("/opt/{i}"), "payload");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_len"], 7);
    }
    assert!(retries("opt") >= 1.0, "no POST was retried");
}

#[test]
fn connection_closed_before_response_is_retried_for_get_only() {
    let good = Origin::start("good");
    let dropper = Origin::start("dropper");
    dropper.set_fallback(Reply::close());
    let gw = Gateway::start(&orders(&[good.addr(), dropper.addr()], |s| {
        s.set("outlier", "{ consecutive_failures = 0 }");
    }));
    let (_, bad) = get_many(&gw, "/orders/", 10, "good");
    assert_eq!(
        bad, 0,
        "GETs dropped by an instance must be retried elsewhere"
    );
    assert!(dropper.requests() >= 1);
    let retried = metric(&gw, "ficus_retries_total", &[("service", "orders")]);
    assert!(retried >= 1.0);
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(post(&gw, &format!("/orders/p{i}"), "x").status);
    }
    assert!(
        statuses.iter().any(|s| *s >= 500),
        "POSTs sent to a dropping instance must fail, not be replayed: {statuses:?}"
    );
    assert_eq!(
        metric(&gw, "ficus_retries_total", &[("service", "orders")]),
        retried,
        "a POST was retried after it reached the instance"
    );
}

#[test]
fn server_errors_are_not_retried_but_lead_to_ejection() {
    let good = Origin::start("good");
    let bad = Origin::start("bad");
    bad.set_fallback(Handler::echo().status(500));
    let gw = Gateway::start(&orders(&[good.addr(), bad.addr()], |s| {
        s.set(
            "outlier",
            r#"{ consecutive_failures = 3, base_ejection_time = "2s", max_ejection_time = "30s", max_ejection_percent = 50 }"#,
        );
    }));
    let mut five_hundreds = 0;
    for i in 0..20 {
        let r = gw.get(&format!("/orders/{i}"));
        match r.status {
            200 => assert_eq!(served_by(&r), "good"),
            500 => {
                assert_eq!(served_by(&r), "bad");
                five_hundreds += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(five_hundreds, 3, "ejected after 3 consecutive 5xx");
    assert_eq!(bad.requests(), 3, "5xx responses must not be retried");
    assert_eq!(
        metric(&gw, "ficus_retries_total", &[("service", "orders")]),
        0.0
    );
    let inst = instance(&gw, "orders", bad.addr()).unwrap();
    assert_eq!(inst["ejected"], true, "{inst:#}");
    assert_eq!(inst["ejections"], 1, "{inst:#}");
    let left = inst["ejected_for_ms"].as_u64().unwrap();
    assert!(
        left <= 2000,
        "first ejection lasts base_ejection_time: {inst:#}"
    );
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_outlier_ejections_total",
            &[("service", "orders")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "ficus_service_instances",
            &[("service", "orders"), ("state", "ejected")]
        ),
        Some(1.0),
        "{m}"
    );

    // The ejection ends; the instance is tried again, fails again, and is ejected for
    // twice as long.
    let again = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/again");
        (r.status == 500).then_some(())
    });
    assert!(again.is_some(), "ejected instance never came back");
    let second = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/more");
        assert!(r.status == 200 || r.status == 500);
        instance(&gw, "orders", bad.addr()).filter(|i| i["ejections"] == 2)
    })
    .expect("no second ejection");
    let left = second["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!(
        left > 2000 && left <= 4000,
        "second ejection should last 2 × base: {second:#}"
    );
}

#[test]
fn ejection_never_takes_more_than_max_percent() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    a.set_fallback(Handler::echo().status(500));
    b.set_fallback(Handler::echo().status(500));
    let gw = Gateway::start(&orders(&[a.addr(), b.addr()], |s| {
        s.set(
            "outlier",
            r#"{ consecutive_failures = 2, base_ejection_time = "30s", max_ejection_percent = 50 }"#,
        );
    }));
    for i in 0..20 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 500, "{}", r.text());
    }
    let svc = service(&gw, "orders");
    let ejected = svc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ejected"] == true)
        .count();
    assert_eq!(ejected, 1, "50% of 2 instances: {svc:#}");
}

#[test]
fn panic_threshold_uses_unhealthy_instances_when_too_few_are_healthy() {
    let s1 = Origin::start("s1");
    let s2 = Origin::start("s2");
    let p1 = Origin::start("p1");
    let p2 = Origin::start("p2");
    for o in [&s1, &s2, &p1, &p2] {
        o.set_health(503);
    }
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("strict", &[s1.addr(), s2.addr()], |s| {
                s.set("health", HEALTH_FAST_UNHEALTHY);
            })
            .service_with("panicky", &[p1.addr(), p2.addr()], |s| {
                s.set("health", HEALTH_FAST_UNHEALTHY)
                    .set("panic_threshold", 0.5);
            })
            .route("strict", "/strict/**", "strict")
            .route("panicky", "/panicky/**", "panicky")
            .build(),
    );
    let t = Duration::from_secs(15);
    for (svc, o) in [
        ("strict", &s1),
        ("strict", &s2),
        ("panicky", &p1),
        ("panicky", &p2),
    ] {
        wait_health(&gw, svc, o.addr(), "unhealthy", t);
    }
    assert_eq!(gw.get("/strict/1").status, 503);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let r = gw.get(&format!("/panicky/{i}"));
        assert_eq!(
            r.status,
            200,
            "panic mode must use all instances: {}",
            r.text()
        );
        seen.insert(served_by(&r));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(s1.requests() + s2.requests(), 0);
}

/// A half-open trial that the bulkhead turns away never reached the upstream, so it must not
/// count as a successful trial (and close the breaker).
#[test]
fn bulkhead_rejected_trial_does_not_close_the_breaker() {
    let dead = closed_addr();
    let slow = Origin::start("slow");
    slow.set_fallback(Handler::echo().delay(Duration::from_secs(3)));
    // Zone preference makes the first pick the dead (local) instance and the retry the slow
    // (remote) one: the first request opens the breaker and then holds the only bulkhead
    // slot for 3 s.
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set_str("zone", "eu-1");
            })
            .service_with("orders", &[], |s| {
                s.set(
                    "instances",
                    toml_instances(&[
                        (dead, r#"zone = "eu-1""#),
                        (slow.addr(), r#"zone = "us-1""#),
                    ]),
                )
                .set("prefer_zone", true)
                .set("max_concurrent", 1)
                .set("outlier", "{ consecutive_failures = 0 }")
                .set(
                    "breaker",
                    r#"{ consecutive_failures = 1, min_requests = 1000, open_for = "500ms", half_open_requests = 1 }"#,
                );
            })
            .route("orders", "/orders/**", "orders")
            .build(),
    );
    let listen = gw.listen;
    let first = std::thread::spawn(move || {
        let req = "GET /orders/first HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n";
        try_raw_request(listen, req.as_bytes(), Duration::from_secs(20))
    });
    assert!(
        slow.wait_requests(1, Duration::from_secs(10)),
        "first request never reached the slow instance\n{}",
        gw.logs()
    );
    assert_eq!(breaker_state(&gw, "orders"), "open");
    // Past open_for, while the first request still holds the bulkhead slot.
    wait_open_for_over(&gw, "orders");
    let r = gw.get("/orders/second");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(slow.requests(), 1);
    let state = breaker_state(&gw, "orders");
    assert_ne!(
        state,
        "closed",
        "the breaker closed although its only trial request was refused by the bulkhead and \
         never reached an instance: {:#}\n{}",
        service(&gw, "orders"),
        gw.logs()
    );
    let r = first.join().unwrap().expect("first request");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A half-open trial that finds no healthy instance must not use up the trial slots for
/// good: once the instance is healthy again, trials go through and the breaker closes.
#[test]
fn trial_without_a_healthy_instance_does_not_wedge_the_breaker() {
    let o = Origin::start("orders");
    let gw = Gateway::start(&orders(&[o.addr()], |s| {
        s.set("outlier", "{ consecutive_failures = 0 }")
            .set(
                "health",
                r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
            )
            .set(
                "breaker",
                r#"{ consecutive_failures = 2, min_requests = 1000, open_for = "1s", half_open_requests = 1 }"#,
            );
    }));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", o.addr(), "healthy", t);
    o.set_fallback(Handler::echo().status(500));
    for _ in 0..2 {
        assert_eq!(gw.get("/orders/fail").status, 500);
    }
    assert_eq!(breaker_state(&gw, "orders"), "open");
    // While open, the instance also fails its probes.
    o.set_health(503);
    wait_health(&gw, "orders", o.addr(), "unhealthy", t);
    wait_open_for_over(&gw, "orders");
    // open_for is over: this request is admitted as the trial but finds no healthy instance.
    let r = gw.get("/orders/trial");
    assert_eq!(r.status, 503, "{}", r.text());

    // The instance recovers completely.
    o.set_fallback(Handler::echo());
    o.set_health(200);
    wait_health(&gw, "orders", o.addr(), "healthy", t);
    let mut last = None;
    let recovered = poll_until(Duration::from_secs(15), || {
        let r = gw.get("/orders/after");
        let ok = r.status == 200;
        last = Some(r);
        if !ok {
            // Paces the attempts: refused ones come back at once.
            std::thread::sleep(Duration::from_millis(200));
        }
        ok.then_some(())
    });
    let last = last.unwrap();
    assert!(
        recovered.is_some(),
        "service healthy again but every request is refused: last {} {}; breaker {:#}\n{}",
        last.status,
        last.text(),
        service(&gw, "orders")["breaker"],
        truncate_lines(&gw.logs(), 20, 20)
    );
    let closed = poll_until(Duration::from_secs(5), || {
        (breaker_state(&gw, "orders") == "closed").then_some(())
    });
    assert!(closed.is_some(), "{:#}", service(&gw, "orders"));
}

/// Clients that give up waiting on a hanging service count as failures: the breaker
/// opens, and a half-open trial that its client abandons opens it again instead of
/// closing it (before, an abandoned request counted as a success).
#[test]
fn abandoned_requests_count_as_failures_for_the_breaker() {
    let o = Origin::start("orders");
    o.set_fallback(Handler::echo().delay(Duration::from_secs(5)));
    let gw = Gateway::start(&orders(&[o.addr()], |s| {
        s.set("outlier", "{ consecutive_failures = 0 }").set(
            "breaker",
            r#"{ consecutive_failures = 2, open_for = "1s", half_open_requests = 1 }"#,
        );
    }));
    let abandon = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = try_raw_request(gw.listen, req.as_bytes(), Duration::from_millis(300));
        assert!(r.is_err(), "the client should have given up: {r:?}");
    };
    abandon("/orders/1");
    abandon("/orders/2");
    poll_until(Duration::from_secs(3), || {
        (breaker_state(&gw, "orders") == "open").then_some(())
    })
    .unwrap_or_else(|| panic!("two abandoned requests: {}", breaker_state(&gw, "orders")));
    // After open_for, one trial goes through; its client gives up too.
    wait_open_for_over(&gw, "orders");
    abandon("/orders/trial");
    // The trial's outcome is recorded once the breaker leaves half-open.
    poll_until(Duration::from_secs(3), || {
        (breaker_state(&gw, "orders") != "half_open").then_some(())
    });
    assert_ne!(
        breaker_state(&gw, "orders"),
        "closed",
        "an abandoned trial must not close the breaker"
    );
    // A healthy service closes it again.
    o.set_fallback(Handler::echo());
    let ok = poll_until(Duration::from_secs(5), || {
        let r = gw.get("/orders/ok");
        (r.status == 200).then_some(())
    });
    assert!(ok.is_some(), "the breaker never let a trial through");
    assert_eq!(breaker_state(&gw, "orders"), "closed");
}
