//! Registry state across config reloads: registrations, ejections and breakers survive an
//! edit that keeps the service; removing the service removes its state.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn generation(gw: &Gateway) -> u64 {
    let r = gw.admin_get("/config").expect("GET /config");
    assert_eq!(r.status, 200);
    r.json()["generation"].as_u64().expect("generation")
}

/// Rewrites the config and waits until the new generation is live.
fn reload(gw: &Gateway, config: &str) {
    let before = generation(gw);
    gw.rewrite_config(config);
    let applied = poll_until(Duration::from_secs(20), || {
        (generation(gw) > before).then_some(())
    });
    assert!(
        applied.is_some(),
        "config not reloaded within 20 s\n{}",
        gw.logs()
    );
}

/// Service `other` at `a`; with `with_orders`, also service `orders` at `a` and `dead`
/// (ejected after two failures), whose route sets `x-config: HEADER` on answers.
fn config(a: SocketAddr, dead: SocketAddr, header: &str, with_orders: bool) -> String {
    let mut c = ConfigBuilder::new()
        .service("other", &[a])
        .route("other", "/other/**", "other");
    if with_orders {
        c = c
            .service_with("orders", &[a, dead], |s| {
                s.set(
                    "outlier",
                    r#"{ consecutive_failures = 2, base_ejection_time = "60s" }"#,
                )
                .set(
                    "breaker",
                    r#"{ consecutive_failures = 50, open_for = "60s" }"#,
                );
            })
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set(
                    "response_headers",
                    format!("{{ set = {{ x-config = {} }} }}", toml_str(header)),
                );
            });
    }
    c.build()
}

/// Service `orders` with these instances and `edit`, behind route `orders` (and `route`).
fn orders(
    instances: &[SocketAddr],
    edit: impl FnOnce(&mut Table),
    route: impl FnOnce(&mut Table),
) -> String {
    ConfigBuilder::new()
        .service_with("orders", instances, edit)
        .route_with("orders", "/orders/**", "orders", route)
        .build()
}

#[test]
fn reload_keeps_registrations_and_ejections_and_drops_removed_services() {
    let a = Origin::start("a");
    let reg = Origin::start("reg");
    let dead = closed_addr();
    let gw = Gateway::start(&config(a.addr(), dead, "v1", true));

    // An ejected instance (connect failures) and a registered one.
    let ejected = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/orders/x");
        assert_eq!(r.status, 200, "{}", r.text());
        instance(&gw, "orders", dead).filter(|i| i["ejected"] == true)
    });
    assert!(ejected.is_some(), "{:#}", registry(&gw));
    let id = register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"{}","ttl":"120s"}}"#, reg.addr()),
    );
    let r = gw.get("/orders/v1");
    assert_eq!(r.header("x-config"), Some("v1"));

    // An edit that keeps the service.
    reload(&gw, &config(a.addr(), dead, "v2", true));
    let r = gw.get("/orders/v2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-config"), Some("v2"), "new config not in use");
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 3, "{svc:#}");
    let inst = instance(&gw, "orders", reg.addr()).expect("registration lost on reload");
    assert_eq!(inst["id"], id.as_str());
    assert_eq!(inst["sources"], serde_json::json!(["registered"]));
    let d = instance(&gw, "orders", dead).unwrap();
    assert_eq!(d["ejected"], true, "ejection lost on reload: {d:#}");
    assert_eq!(d["ejections"], 1, "{d:#}");
    // Traffic still avoids the ejected instance and reaches the registered one.
    let before = reg.requests();
    for i in 0..6 {
        let r = gw.get(&format!("/orders/after{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(reg.requests() > before);
    assert_eq!(
        metric(
            &gw,
            "ficus_outlier_ejections_total",
            &[("service", "orders")]
        ),
        1.0
    );
    // The registration can still be renewed with its id.
    let hb = format!("/registry/services/orders/instances/{id}/heartbeat");
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 200);

    // Remove the service: gone from /registry, registrations too.
    reload(&gw, &config(a.addr(), dead, "v3", false));
    let doc = registry(&gw);
    assert!(service_of(&doc, "orders").is_none(), "{doc:#}");
    assert!(service_of(&doc, "other").is_some(), "{doc:#}");
    assert_eq!(gw.get("/orders/gone").status, 404);
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 404);

    // Added back: fresh state, no registration, nothing ejected.
    reload(&gw, &config(a.addr(), dead, "v4", true));
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 2, "{svc:#}");
    assert!(instance(&gw, "orders", reg.addr()).is_none());
    assert_eq!(instance(&gw, "orders", dead).unwrap()["ejected"], false);
}

#[test]
fn reload_keeps_an_open_breaker_and_health() {
    let o = Origin::start("o");
    o.set_fallback(Handler::echo().status(500));
    let sick = Origin::start("sick");
    sick.set_health(503);
    let cfg = |open_for: &str| {
        orders(
            &[o.addr(), sick.addr()],
            |s| {
                s.set("outlier", "{ consecutive_failures = 0 }")
                    .set(
                        "breaker",
                        format!(
                            "{{ consecutive_failures = 3, min_requests = 1000, open_for = {} }}",
                            toml_str(open_for)
                        ),
                    )
                    .set(
                        "health",
                        r#"{ path = "/health", interval = "5s", healthy_after = 1, unhealthy_after = 1 }"#,
                    );
            },
            |_| {},
        )
    };
    let gw = Gateway::start(&cfg("60s"));
    wait_health(&gw, "orders", o.addr(), "healthy", Duration::from_secs(15));
    wait_health(
        &gw,
        "orders",
        sick.addr(),
        "unhealthy",
        Duration::from_secs(15),
    );
    for _ in 0..3 {
        assert_eq!(gw.get("/orders/x").status, 500);
    }
    assert_eq!(service(&gw, "orders")["breaker"]["state"], "open");
    let probes = (o.health_checks(), sick.health_checks());
    reload(&gw, &cfg("50s"));
    assert_eq!(
        service(&gw, "orders")["breaker"]["state"],
        "open",
        "breaker reset by reload"
    );
    assert_eq!(gw.get("/orders/y").status, 503);
    assert_eq!(o.requests(), 3);
    // Health is kept too (the 5 s interval means no new probe decided it).
    assert_eq!(
        instance(&gw, "orders", o.addr()).unwrap()["health"],
        "healthy"
    );
    assert_eq!(
        instance(&gw, "orders", sick.addr()).unwrap()["health"],
        "unhealthy"
    );
    assert!(
        o.health_checks() <= probes.0 + 1 && sick.health_checks() <= probes.1 + 1,
        "reload restarted probing"
    );
}

/// Turning on health checks for a service that is serving must not take its instances out of
/// rotation until the new probes pass (they were fine a moment ago).
#[test]
fn adding_health_checks_by_reload_keeps_serving_instances() {
    let a = Origin::start("a");
    let gw = Gateway::start(&orders(&[a.addr()], |_| {}, |_| {}));
    reload(
        &gw,
        &orders(
            &[a.addr()],
            |s| {
                s.set(
                    "health",
                    r#"{ path = "/health", interval = "5s", healthy_after = 2 }"#,
                );
            },
            |_| {},
        ),
    );
    let mut statuses = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        statuses.push(gw.get("/orders/after").status);
        // Sampling for 3 s is the test: the instance must stay in rotation all along.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a serving instance was taken out of rotation by a reload that added health checks: \
         {statuses:?}; instance {:#}",
        instance(&gw, "orders", a.addr()).unwrap()
    );
}

/// Many reloads in a row leave exactly one probe loop per instance: the probe rate stays
/// one per interval (a duplicate per reload would multiply it).
#[test]
fn reloads_never_duplicate_probes() {
    let o = Origin::start("o");
    let cfg = |tag: usize| {
        orders(
            &[o.addr()],
            |s| {
                s.set(
                    "health",
                    r#"{ path = "/health", interval = "200ms", timeout = "200ms", jitter = 0.0 }"#,
                );
            },
            |r| {
                r.set(
                    "response_headers",
                    format!(r#"{{ set = {{ "x-generation" = "{tag}" }} }}"#),
                );
            },
        )
    };
    let gw = Gateway::start(&cfg(0));
    for i in 1..=10 {
        reload(&gw, &cfg(i));
    }
    assert_eq!(gw.get("/orders/x").header("x-generation"), Some("10"));
    let before = o.health_checks();
    let start = std::time::Instant::now();
    // Measuring a rate needs wall time: the sleep is the measurement.
    std::thread::sleep(Duration::from_secs(2));
    let probes = o.health_checks() - before;
    let secs = start.elapsed().as_secs_f64();
    // One probe per 200 ms is ~10 in 2 s; eleven duplicated loops would be ~110.
    assert!(
        probes >= 4 && (probes as f64) <= secs / 0.2 + 4.0,
        "{probes} probes in {secs:.2}s after 10 reloads"
    );
}

/// Turning registration off by reload (for the service, then for every service) takes the
/// registered instances out of the pool at once, and their heartbeats are refused: the pool
/// holds registrations only while registration is on.
#[test]
fn turning_registration_off_evicts_registrations_and_refuses_heartbeats() {
    let stat = Origin::start("static");
    let reg = Origin::start("reg");
    let reg2 = Origin::start("reg2");
    let cfg = |global: bool, orders: bool| {
        ConfigBuilder::new()
            .table("registry", |t| {
                t.set("registration", global);
            })
            .service_with("orders", &[stat.addr()], |s| {
                s.set("registration", orders);
            })
            .service("other", &[])
            .route("orders", "/orders/**", "orders")
            .route("other", "/other/**", "other")
            .build()
    };
    let gw = Gateway::start(&cfg(true, true));
    let body = |o: &Origin| format!(r#"{{"addr":"{}","ttl":"120s"}}"#, o.addr());
    let id = register(&gw, "orders", None, &body(&reg));
    let other_id = register(&gw, "other", None, &body(&reg2));
    assert_eq!(service(&gw, "orders")["total"], 2);

    // Off for `orders` only.
    reload(&gw, &cfg(true, false));
    assert_eq!(
        instance_addrs(&gw, "orders"),
        vec![stat.addr().to_string()],
        "registered instance still in the pool after registration was turned off"
    );
    let before = reg.requests();
    for i in 0..4 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "static");
    }
    assert_eq!(reg.requests(), before, "evicted instance still got traffic");
    let hb = format!("/registry/services/orders/instances/{id}/heartbeat");
    let r = admin_request(&gw, "PUT", &hb, None, None);
    assert_eq!(
        r.status,
        403,
        "heartbeat after registration off: {}",
        r.text()
    );
    // The other service is untouched.
    let other_hb = format!("/registry/services/other/instances/{other_id}/heartbeat");
    assert_eq!(admin_request(&gw, "PUT", &other_hb, None, None).status, 200);

    // Off for every service.
    reload(&gw, &cfg(false, true));
    assert_eq!(service(&gw, "other")["total"], 0, "{:#}", registry(&gw));
    assert_eq!(gw.get("/other/x").status, 503);
    assert_eq!(admin_request(&gw, "PUT", &other_hb, None, None).status, 403);

    // On again: the pool starts without the old registrations; registrants register anew.
    reload(&gw, &cfg(true, true));
    assert_eq!(instance_addrs(&gw, "orders"), vec![stat.addr().to_string()]);
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 404);
    register(&gw, "orders", None, &body(&reg));
    assert_eq!(service(&gw, "orders")["total"], 2);
}

/// Removing a service's breaker by reload clears `ficus_circuit_breaker_open`, and adding it
/// back starts a closed breaker instead of the old open one.
#[test]
fn removing_a_breaker_clears_its_gauge_and_readding_starts_closed() {
    let o = Origin::start("o");
    o.set_fallback(Handler::echo().status(500));
    let cfg = |breaker: bool| {
        orders(
            &[o.addr()],
            |s| {
                s.set("outlier", "{ consecutive_failures = 0 }");
                if breaker {
                    s.set(
                        "breaker",
                        r#"{ consecutive_failures = 3, min_requests = 1000, open_for = "60s" }"#,
                    );
                }
            },
            |_| {},
        )
    };
    let open = |gw: &Gateway| metric(gw, "ficus_circuit_breaker_open", &[("service", "orders")]);
    let gw = Gateway::start(&cfg(true));
    for _ in 0..3 {
        assert_eq!(gw.get("/orders/x").status, 500);
    }
    assert_eq!(service(&gw, "orders")["breaker"]["state"], "open");
    assert_eq!(open(&gw), 1.0);

    reload(&gw, &cfg(false));
    assert_eq!(service(&gw, "orders")["breaker"]["state"], "disabled");
    assert_eq!(
        gw.get("/orders/y").status,
        500,
        "no breaker: the origin answers"
    );
    assert_eq!(
        open(&gw),
        0.0,
        "gauge of a removed breaker:\n{}",
        gw.metrics()
    );

    reload(&gw, &cfg(true));
    let b = service(&gw, "orders")["breaker"].clone();
    assert_eq!(b["state"], "closed", "old open state came back: {b:#}");
    assert_eq!(b["consecutive_failures"], 0, "{b:#}");
    assert_eq!(open(&gw), 0.0);
    // A fresh count: two failures do not trip a 3-failure breaker.
    for _ in 0..2 {
        assert_eq!(gw.get("/orders/z").status, 500);
    }
    assert_eq!(service(&gw, "orders")["breaker"]["state"], "closed");
}
