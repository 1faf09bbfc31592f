//! Active health checks of the service registry: which instances get traffic, recovery after
//! an instance goes away and comes back, no flapping, `start_healthy`, probe kinds, and
//! `ficus explain` showing live health.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Service `orders` with these instances and `health` (and whatever else `edit` sets),
/// behind route `orders` on `/orders/**`.
fn orders(instances: &[SocketAddr], health: &str, edit: impl FnOnce(&mut Table)) -> String {
    ConfigBuilder::new()
        .service_with("orders", instances, |s| {
            s.set("health", health);
            edit(s);
        })
        .route("orders", "/orders/**", "orders")
        .build()
}

#[test]
fn only_healthy_instances_get_traffic() {
    let up = Origin::start("up");
    let sick = Origin::start("sick");
    sick.set_health(503);
    let dead = closed_addr();
    let gw = Gateway::start(&orders(
        &[up.addr(), sick.addr(), dead],
        r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 2 }"#,
        |_| {},
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", up.addr(), "healthy", t);
    wait_health(&gw, "orders", sick.addr(), "unhealthy", t);
    wait_health(&gw, "orders", dead, "unhealthy", t);

    for i in 0..30 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "request {i}: {} {}", r.status, r.text());
        assert_eq!(served_by(&r), "up", "request {i}");
    }
    assert_eq!(sick.requests(), 0, "an unhealthy instance got traffic");
    assert!(
        sick.health_checks() >= 2,
        "the sick instance was never probed"
    );
    assert_eq!(
        metric(&gw, "ficus_retries_total", &[("service", "orders")]),
        0.0,
        "requests were sent to an unhealthy instance and retried"
    );

    let svc = service(&gw, "orders");
    assert_eq!(svc["healthy"], 1, "{svc:#}");
    assert_eq!(svc["total"], 3, "{svc:#}");
    let dead_inst = instance(&gw, "orders", dead).unwrap();
    assert_eq!(dead_inst["last_probe"]["ok"], false, "{dead_inst:#}");
    assert!(
        dead_inst["last_probe"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "probe error of a refusing instance should mention connect: {dead_inst:#}"
    );
    let sick_inst = instance(&gw, "orders", sick.addr()).unwrap();
    assert_eq!(sick_inst["last_probe"]["status"], 503, "{sick_inst:#}");

    let m = gw.metrics();
    let state = |s: &str| {
        metric_sum(
            &m,
            "ficus_service_instances",
            &[("service", "orders"), ("state", s)],
        )
    };
    assert_eq!(state("healthy"), Some(1.0), "{m}");
    assert_eq!(state("unhealthy"), Some(2.0), "{m}");
    assert_eq!(state("ejected"), Some(0.0), "{m}");
}

#[test]
fn instance_stopped_under_load_loses_no_request_and_recovers() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = Gateway::start(&orders(
        &[a.addr(), b.addr()],
        r#"{ path = "/health", interval = "200ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 3 }"#,
        |s| {
            s.set("outlier", r#"{ consecutive_failures = 3, base_ejection_time = "1s", max_ejection_time = "2s" }"#);
        },
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", a.addr(), "healthy", t);
    wait_health(&gw, "orders", b.addr(), "healthy", t);

    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listen = gw.listen;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, bad, total) = (stop.clone(), bad.clone(), total.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let req = format!(
                        "GET /orders/w{w}-{i} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
                    );
                    match try_raw_request(listen, req.as_bytes(), Duration::from_secs(20)) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => bad
                            .lock()
                            .unwrap()
                            .push(format!("w{w}-{i}: {} {}", r.status, r.text())),
                        Err(e) => bad.lock().unwrap().push(format!("w{w}-{i}: io error {e}")),
                    }
                    total.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();

    // Both instances serve the load before one goes away.
    assert!(
        b.wait_requests(10, Duration::from_secs(10)),
        "b got no traffic under load"
    );
    let b_before = b.requests();
    b.stop();
    // Three seconds of load without b: the behaviour under test, so a timed wait.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let bad = bad.lock().unwrap().clone();
    let total = total.load(Ordering::SeqCst);
    eprintln!("{total} requests under load, {} failed", bad.len());
    assert!(total >= 40, "load too small to mean anything: {total}");
    assert!(b_before > 0, "b got no traffic before it stopped");
    assert!(
        bad.is_empty(),
        "{} of {total} client requests failed while an instance went away (retries, ejection and \
         probes should hide it); first: {:?}\n{}",
        bad.len(),
        &bad[..bad.len().min(10)],
        truncate_lines(&gw.logs(), 40, 40)
    );
    wait_health(
        &gw,
        "orders",
        b.addr(),
        "unhealthy",
        Duration::from_secs(10),
    );
    let b_inst = instance(&gw, "orders", b.addr()).unwrap();
    assert_eq!(b_inst["last_probe"]["ok"], false, "{b_inst:#}");

    // Back again: healthy, and it gets traffic again.
    b.restart();
    let b_after_restart = b.requests();
    wait_health(&gw, "orders", b.addr(), "healthy", Duration::from_secs(15));
    let got = poll_until(Duration::from_secs(20), || {
        let r = gw.get("/orders/again");
        assert_eq!(r.status, 200, "{}", r.text());
        (b.requests() > b_after_restart).then_some(())
    });
    assert!(
        got.is_some(),
        "restarted instance is healthy but gets no traffic; registry: {:#}",
        registry(&gw)
    );
}

#[test]
fn alternating_probe_results_never_flip_health() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    b.set_health(503);
    let gw = Gateway::start(&orders(
        &[a.addr(), b.addr()],
        r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 3 }"#,
        |_| {},
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", a.addr(), "healthy", t);
    wait_health(&gw, "orders", b.addr(), "unhealthy", t);

    a.set_health_alternating();
    b.set_health_alternating();
    let (a0, b0) = (a.health_checks(), b.health_checks());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut samples = 0;
    while a.health_checks() < a0 + 20 || b.health_checks() < b0 + 20 {
        assert!(
            Instant::now() < deadline,
            "fewer than 20 probes per instance in 60s: a {} b {}",
            a.health_checks() - a0,
            b.health_checks() - b0
        );
        let doc = registry(&gw);
        let svc = service_of(&doc, "orders").unwrap();
        for inst in svc["instances"].as_array().unwrap() {
            let want = if inst["addr"] == a.addr().to_string() {
                "healthy"
            } else {
                "unhealthy"
            };
            assert_eq!(
                inst["health"], want,
                "health flipped after {samples} samples with alternating probe results: {inst:#}"
            );
        }
        samples += 1;
        // Sampling the health over many probe rounds is the test: one sample per round.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples >= 10, "only {samples} samples");
    // Traffic kept going to the (still healthy) instance only.
    for i in 0..6 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "a");
    }
    assert_eq!(b.requests(), 0);
}

#[test]
fn registered_instance_gets_no_traffic_before_it_is_healthy() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    b.set_health(503);
    let gw = Gateway::start(&orders(
        &[a.addr()],
        r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 2, start_healthy = false }"#,
        |_| {},
    ));
    wait_health(&gw, "orders", a.addr(), "healthy", Duration::from_secs(15));
    register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"{}","ttl":"60s"}}"#, b.addr()),
    );
    let inst = instance(&gw, "orders", b.addr()).expect("registered instance in /registry");
    assert_ne!(inst["health"], "healthy", "{inst:#}");
    // Probed, still failing: no traffic at all.
    assert!(b.wait_health_checks(3, Duration::from_secs(15)));
    for i in 0..20 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            served_by(&r),
            "a",
            "request {i} went to a not-yet-healthy instance"
        );
    }
    assert_eq!(b.requests(), 0);

    b.set_health(200);
    wait_health(&gw, "orders", b.addr(), "healthy", Duration::from_secs(15));
    let got = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/orders/x");
        assert_eq!(r.status, 200, "{}", r.text());
        (b.requests() > 0).then_some(())
    });
    assert!(got.is_some(), "healthy registered instance gets no traffic");
}

#[test]
fn start_healthy_decides_traffic_before_the_first_probes() {
    let cold = Origin::start("cold");
    let warm = Origin::start("warm");
    // healthy_after = 2 with a long interval: the second successful probe comes ~10 s after
    // start, so before that only `start_healthy` instances may be used.
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .service_with("cold", &[cold.addr()], |s| {
                s.set(
                    "health",
                    r#"{ path = "/health", interval = "10s", healthy_after = 2, start_healthy = false }"#,
                );
            })
            .service_with("warm", &[warm.addr()], |s| {
                s.set(
                    "health",
                    r#"{ path = "/health", interval = "10s", healthy_after = 2, start_healthy = true }"#,
                );
            })
            .route("cold", "/cold/**", "cold")
            .route("warm", "/warm/**", "warm")
            .build(),
    );
    let r = gw.get("/warm/1");
    assert_eq!(
        r.status,
        200,
        "start_healthy instance refused: {}",
        r.text()
    );
    assert_eq!(served_by(&r), "warm");
    let r = gw.get("/cold/1");
    assert_eq!(
        r.status,
        503,
        "instance used before `healthy_after` probes passed: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(cold.requests(), 0);
    // After the second probe it is healthy and serves.
    wait_health(&gw, "cold", cold.addr(), "healthy", Duration::from_secs(30));
    let r = gw.get("/cold/2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&r), "cold");
}

#[test]
fn probe_checks_status_range_and_body() {
    let good = Origin::start("good");
    let wrong_body = Origin::start("wrong_body");
    wrong_body.set_health_body(Some("starting"));
    let redirect = Origin::start("redirect");
    redirect.set_health(302);
    let gw = Gateway::start(&orders(
        &[good.addr(), wrong_body.addr(), redirect.addr()],
        r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1, expect_status = "200-299", body_contains = "ok" }"#,
        |_| {},
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", good.addr(), "healthy", t);
    wait_health(&gw, "orders", wrong_body.addr(), "unhealthy", t);
    wait_health(&gw, "orders", redirect.addr(), "unhealthy", t);
    let wb = instance(&gw, "orders", wrong_body.addr()).unwrap();
    assert_eq!(wb["last_probe"]["status"], 200, "{wb:#}");
    assert!(
        wb["last_probe"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ok")),
        "{wb:#}"
    );
    let rd = instance(&gw, "orders", redirect.addr()).unwrap();
    assert_eq!(rd["last_probe"]["status"], 302, "{rd:#}");
    for i in 0..9 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(served_by(&r), "good");
    }
    // The body check passes once the body is right.
    wrong_body.set_health_body(Some("all ok"));
    wait_health(&gw, "orders", wrong_body.addr(), "healthy", t);
}

#[test]
fn tcp_probe_only_checks_the_connect() {
    let listening = Origin::start("listening");
    listening.set_health(503); // irrelevant to a TCP probe
    let dead = closed_addr();
    let gw = Gateway::start(&orders(
        &[listening.addr(), dead],
        r#"{ type = "tcp", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
        |_| {},
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", listening.addr(), "healthy", t);
    wait_health(&gw, "orders", dead, "unhealthy", t);
    assert_eq!(
        listening.health_checks(),
        0,
        "a TCP probe sent an HTTP request"
    );
    for i in 0..6 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Going away is noticed by the TCP probe too.
    listening.stop();
    wait_health(&gw, "orders", listening.addr(), "unhealthy", t);
    let r = gw.get("/orders/none");
    assert_eq!(r.status, 503, "{}", r.text());
}

/// `ficus explain GET http://test.local/orders/42` on the gateway's config: its output
/// (the command must succeed).
fn explain_orders(gw: &Gateway) -> String {
    let config = gw.config_path().to_str().unwrap().to_string();
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        &config,
        "GET",
        "http://test.local/orders/42",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    out
}

#[test]
fn explain_shows_live_instance_health() {
    let up = Origin::start("up");
    let sick = Origin::start("sick");
    sick.set_health(503);
    let reg = Origin::start("reg");
    // `ficus explain` finds the admin listener at the address in the config file: a real port.
    let gw = Gateway::builder(&orders(
        &[up.addr(), sick.addr()],
        r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
        |_| {},
    ))
    .fixed_ports()
    .start();
    let t = Duration::from_secs(15);
    register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"{}","ttl":"60s"}}"#, reg.addr()),
    );
    wait_health(&gw, "orders", up.addr(), "healthy", t);
    wait_health(&gw, "orders", sick.addr(), "unhealthy", t);
    wait_health(&gw, "orders", reg.addr(), "healthy", t);

    let config = gw.config_path().to_str().unwrap().to_string();
    let out = explain_orders(&gw);
    assert!(
        out.contains(&format!("live (from {}):", gw.admin)),
        "no live section:\n{out}"
    );
    let line_of = |addr: SocketAddr| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("no live line for {addr}:\n{out}"))
            .trim()
            .to_string()
    };
    let l = line_of(up.addr());
    assert!(
        l.contains(" healthy") && l.contains("[static]"),
        "{l}\n{out}"
    );
    let l = line_of(sick.addr());
    assert!(
        l.contains(" unhealthy") && l.contains("[static]"),
        "{l}\n{out}"
    );
    let l = line_of(reg.addr());
    assert!(
        l.contains(" healthy") && l.contains("[registered]"),
        "{l}\n{out}"
    );

    // Without a running gateway explain says so and still shows the configuration.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("routes.toml");
    std::fs::copy(&config, &copy).unwrap();
    drop(gw);
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        copy.to_str().unwrap(),
        "GET",
        "http://test.local/orders/42",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("not reachable"), "{out}");
    assert!(!out.contains("live (from"), "{out}");
}

/// `health.host` goes into the probe's `Host` line: CR/LF (header injection), spaces and
/// other controls are config errors, and so is a `jitter` outside 0–1.
#[test]
fn check_refuses_bad_probe_host_and_jitter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    let check = |health: &str| {
        std::fs::write(
            &path,
            format!(
                "[services.orders]\ninstances = [\"127.0.0.1:9\"]\nhealth = {health}\n\n\
                 [[routes]]\nname = \"orders\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"orders\"\n"
            ),
        )
        .unwrap();
        ficus(&["check", path.to_str().unwrap()])
    };
    for (health, key) in [
        (
            r#"{ host = "a\r\nX-Evil: 1\r\nContent-Length: 5" }"#,
            "health.host",
        ),
        (r#"{ host = "a b" }"#, "health.host"),
        (r#"{ host = "" }"#, "health.host"),
        (r#"{ jitter = 2.0 }"#, "health.jitter"),
        (r#"{ jitter = -1.0 }"#, "health.jitter"),
    ] {
        let (code, out, err) = check(health);
        assert_eq!(code, 2, "{health}: stdout {out}\nstderr {err}");
        assert!(
            format!("{out}{err}").contains(key),
            "{health}: stdout {out}\nstderr {err}"
        );
    }
    for health in [
        r#"{ host = "orders.internal:8080", jitter = 0.0 }"#,
        r#"{ jitter = 1.0 }"#,
    ] {
        let (code, out, err) = check(health);
        assert_eq!(code, 0, "{health}: stdout {out}\nstderr {err}");
    }
}

/// `ficus explain` asks for the route's own service and shows the first page of its
/// instances, counting the rest, however many other services and instances there are.
#[test]
fn explain_reads_one_service_and_counts_instances_past_its_first_page() {
    let up = Origin::start("up");
    let cfg = ConfigBuilder::new()
        .service("other", &[up.addr()])
        .service("orders", &[up.addr()])
        .route("orders", "/orders/**", "orders")
        .catch_all("other")
        .build();
    let gw = Gateway::builder(&cfg).fixed_ports().start();
    // 120 registered instances (never contacted: no traffic, no probes) on loopback ports.
    for i in 0..120u16 {
        register(
            &gw,
            "orders",
            None,
            &format!(r#"{{"addr":"127.0.0.1:{}","ttl":"60s"}}"#, 40_000 + i),
        );
    }
    let out = explain_orders(&gw);
    let listed = out
        .lines()
        .filter(|l| l.trim_start().starts_with("127.0.0.1:"))
        .count();
    assert_eq!(listed, 100, "one page of the 121 instances:\n{out}");
    assert!(
        out.contains("... and 21 more (GET /registry?service=orders&offset=100)"),
        "{out}"
    );
}
