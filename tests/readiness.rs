mod common;
use common::*;
use std::time::Duration;

/// `/readyz` is "200 when serving": the moment it first answers 200, the proxy listener must
/// accept connections and serve requests.
#[test]
fn readyz_200_implies_proxy_listener_serving() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let mut failures = Vec::new();
    for i in 0..10 {
        // Polls `/readyz` itself (on an admin address it picked) instead of waiting for the
        // ready file, which is what this test is about.
        let gw = Gateway::builder(&cfg).wait_for_readyz().start();
        match try_raw_request(
            gw.listen,
            b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        ) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("start {i}: status {}", r.status)),
            Err(e) => failures.push(format!("start {i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "first request right after /readyz == 200 failed in {}/10 starts: {failures:?}",
        failures.len()
    );
}

#[test]
fn healthz_and_readyz() {
    let gw = Gateway::start(&ConfigBuilder::new().build());
    assert_eq!(gw.admin_get("/healthz").unwrap().status, 200);
    assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);
    assert_eq!(gw.admin_get("/nope").unwrap().status, 404);
}

/// Polls `/readyz` until it answers 200; returns the bodies of the 503s seen before and the
/// time it took.
fn readyz_history(gw: &Gateway, limit: Duration) -> (Vec<String>, Duration) {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < limit {
        if let Ok(r) = gw.admin_get("/readyz") {
            if r.status == 200 {
                return (seen, start.elapsed());
            }
            seen.push(format!("{} {}", r.status, r.text().trim()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("/readyz not 200 within {limit:?}; saw {seen:?}");
}

/// A health-checked service's instances get no traffic before their first healthy verdict
/// (`start_healthy = false`): `/readyz` waits for it, so a load balancer never sends the
/// gateway requests it could only answer with 503.
#[test]
fn readyz_waits_for_a_first_healthy_instance() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service_with("o", &[o.addr()], |t| {
            t.set(
                "health",
                r#"{ path = "/", interval = "400ms", healthy_after = 2, jitter = 0 }"#,
            );
        })
        .catch_all("o")
        .build();
    // The ready file is written once the listeners accept; `/readyz` may still say no.
    let gw = Gateway::builder(&cfg).fixed_ports().start();
    let (before, took) = readyz_history(&gw, Duration::from_secs(10));
    assert!(
        before
            .iter()
            .any(|b| b == "503 starting: waiting for the first health verdicts of service o"),
        "/readyz was 200 before any probe could have passed twice ({took:?}): {before:?}"
    );
    // The first request after `/readyz` turned 200 is served.
    let r = gw.get("/x");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A service whose every instance is down at start must not keep the gateway out of its
/// load balancer: once every instance has a verdict, `/readyz` is 200 (the routes to that
/// service answer 503 or fall back; the others serve).
#[test]
fn readyz_does_not_wait_for_a_service_that_is_down() {
    let o = Origin::start("o");
    let dead = free_addr();
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .service_with("down", &[dead], |t| {
            t.set(
                "health",
                r#"{ type = "tcp", interval = "200ms", unhealthy_after = 2, jitter = 0 }"#,
            );
        })
        .route("down", "/down/**", "down")
        .catch_all("o")
        .build();
    let gw = Gateway::builder(&cfg).fixed_ports().start();
    let (_, took) = readyz_history(&gw, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(gw.get("/x").status, 200);
    assert_eq!(gw.get("/down/x").status, 503);
}

/// Once ready, a reload that adds a health-checked service (whose instances start without a
/// verdict) does not take the serving gateway out of its load balancer.
#[test]
fn readyz_stays_200_when_a_reload_adds_a_probed_service() {
    let o = Origin::start("o");
    let base = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .catch_all("o");
    let gw = Gateway::builder(&base.build()).wait_for_readyz().start();
    let slow = free_addr();
    let more = base
        .service_with("later", &[slow], |t| {
            t.set(
                "health",
                r#"{ type = "tcp", interval = "10s", unhealthy_after = 3, jitter = 0 }"#,
            );
        })
        .route("later", "/later/**", "later")
        .build();
    gw.reload(&more);
    for _ in 0..10 {
        let r = gw.admin_get("/readyz").expect("GET /readyz");
        assert_eq!(r.status, 200, "{}", r.text());
        std::thread::sleep(Duration::from_millis(30));
    }
}
