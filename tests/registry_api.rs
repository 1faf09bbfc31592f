//! The registry admin API: self-registration with TTL and heartbeats, deregistration, bearer
//! token, registration switches, validation, merging with static instances, and the JSON,
//! HTML and metrics views.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HEALTH: &str = r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 2 }"#;

/// `cfg` plus service `orders` (these static instances, then `edit`) behind route `orders`
/// on `/orders/**`.
fn orders(cfg: ConfigBuilder, instances: &[SocketAddr], edit: impl FnOnce(&mut Table)) -> String {
    cfg.service_with("orders", instances, edit)
        .route("orders", "/orders/**", "orders")
        .build()
}

fn instances_path(svc: &str) -> String {
    format!("/registry/services/{svc}/instances")
}

#[test]
fn registered_instance_serves_once_healthy_and_deregisters() {
    let o = Origin::start("reg");
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |s| {
        s.set("health", HEALTH);
    }));
    // No instance yet.
    assert_eq!(gw.get("/orders/1").status, 503);
    assert_eq!(service(&gw, "orders")["total"], 0);

    let body = format!(
        r#"{{"addr":"{}","weight":2,"zone":"z1","version":"v2","metadata":{{"team":"red"}},"ttl":"30s"}}"#,
        o.addr()
    );
    let r = admin_request(&gw, "POST", &instances_path("orders"), None, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    let id = j["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    assert_eq!(j["addr"], o.addr().to_string());

    let inst = instance(&gw, "orders", o.addr()).expect("registered instance listed");
    assert_eq!(
        inst["sources"],
        serde_json::json!(["registered"]),
        "{inst:#}"
    );
    assert_eq!(inst["id"], id.as_str());
    assert_eq!(inst["weight"], 2);
    assert_eq!(inst["zone"], "z1");
    assert_eq!(inst["version"], "v2");
    assert_eq!(inst["metadata"]["team"], "red");
    let expires = inst["expires_in_ms"].as_u64().expect("expires_in_ms");
    assert!(expires > 20_000 && expires <= 30_000, "{inst:#}");

    wait_health(&gw, "orders", o.addr(), "healthy", Duration::from_secs(15));
    let r = gw.get("/orders/2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(served_by(&r), "reg");

    // Re-registering the same address keeps the registration id.
    let again = register(&gw, "orders", None, &body);
    assert_eq!(again, id);
    assert_eq!(service(&gw, "orders")["total"], 1);

    let del = format!("{}/{id}", instances_path("orders"));
    let r = admin_request(&gw, "DELETE", &del, None, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(instance(&gw, "orders", o.addr()).is_none());
    let before = o.requests();
    let r = gw.get("/orders/3");
    assert_eq!(r.status, 503, "deregistered instance still serving");
    assert_eq!(o.requests(), before);
    // Gone: a second delete and a heartbeat are 404.
    assert_eq!(admin_request(&gw, "DELETE", &del, None, None).status, 404);
    let hb = format!("{}/{id}/heartbeat", instances_path("orders"));
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 404);
}

#[test]
fn heartbeats_keep_a_registration_alive_and_it_lapses_without() {
    let o = Origin::start("reg");
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let id = register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"{}","ttl":"2s"}}"#, o.addr()),
    );
    let hb = format!("{}/{id}/heartbeat", instances_path("orders"));
    // Keep it alive for 3 × its TTL.
    let start = Instant::now();
    let mut last_heartbeat = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        last_heartbeat = Instant::now();
        let r = admin_request(&gw, "PUT", &hb, None, None);
        assert_eq!(r.status, 200, "heartbeat: {}", r.text());
        assert_eq!(r.json()["ttl_seconds"], 2.0);
        let r = gw.get("/orders/alive");
        assert_eq!(
            r.status,
            200,
            "instance lost after {:?} despite heartbeats: {}",
            start.elapsed(),
            r.text()
        );
        assert_eq!(served_by(&r), "reg");
        // A heartbeat every 400 ms for 6 s: the pace is what keeps it alive.
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(instance(&gw, "orders", o.addr()).is_some());

    // No more heartbeats: gone after the TTL (plus slack), and no more traffic.
    let gone = poll_until(Duration::from_secs(10), || {
        instance(&gw, "orders", o.addr()).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "registration did not lapse: {:#}",
        registry(&gw)
    );
    assert!(
        last_heartbeat.elapsed() >= Duration::from_millis(1900),
        "lapsed {:?} after the last heartbeat (ttl 2s)",
        last_heartbeat.elapsed()
    );
    let before = o.requests();
    for _ in 0..3 {
        assert_eq!(gw.get("/orders/late").status, 503);
    }
    assert_eq!(o.requests(), before);
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 404);
}

#[test]
fn writes_need_the_bearer_token_when_configured() {
    let o = Origin::start("reg");
    let token = ConfigBuilder::new().table("registry", |t| {
        t.set_str("token", "secret");
    });
    let gw = Gateway::start(&orders(token, &[], |_| {}));
    let body = format!(r#"{{"addr":"{}"}}"#, o.addr());
    let path = instances_path("orders");
    let r = admin_request(&gw, "POST", &path, None, Some(&body));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some(), "{:?}", r.headers);
    assert_eq!(
        admin_request(&gw, "POST", &path, Some("wrong"), Some(&body)).status,
        401
    );
    assert_eq!(
        admin_request(&gw, "POST", &path, Some("secrets"), Some(&body)).status,
        401
    );
    assert!(
        service(&gw, "orders")["total"] == 0,
        "unauthorized write applied"
    );
    let id = register(&gw, "orders", Some("secret"), &body);
    let hb = format!("{path}/{id}/heartbeat");
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 401);
    assert_eq!(
        admin_request(&gw, "PUT", &hb, Some("secret"), None).status,
        200
    );
    let del = format!("{path}/{id}");
    assert_eq!(admin_request(&gw, "DELETE", &del, None, None).status, 401);
    assert!(instance(&gw, "orders", o.addr()).is_some());
    assert_eq!(
        admin_request(&gw, "DELETE", &del, Some("secret"), None).status,
        200
    );
    // Reads stay open.
    assert_eq!(gw.admin_get("/registry").unwrap().status, 200);
}

/// An admin listener on every address (`0.0.0.0`) can be reached from other hosts, so
/// writes that change routing need the token: `run` refuses to start without one, with one
/// writes need it, and a reload that drops it is refused and the old config, token
/// included, stays in force. (Loopback without a token keeps accepting registrations:
/// `registered_instance_serves_once_healthy_and_deregisters`.)
#[test]
fn a_reachable_admin_listener_needs_the_token() {
    let o = Origin::start("reg");
    let reachable = || {
        ConfigBuilder::new().gateway(|g| {
            g.set("admin", r#""0.0.0.0:0""#);
        })
    };
    let open = orders(reachable(), &[], |_| {});
    match Gateway::builder(&open).try_start() {
        Ok(_) => panic!("`ficus run` started with a reachable admin listener and no token"),
        Err(e) => assert!(
            e.contains("can be reached from other hosts") && e.contains("token_env"),
            "{e}"
        ),
    }

    let with_token = orders(
        reachable().table("registry", |t| {
            t.set("token", r#""secret""#);
        }),
        &[],
        |_| {},
    );
    let gw = Gateway::start(&with_token);
    let body = format!(r#"{{"addr":"{}"}}"#, o.addr());
    let path = instances_path("orders");
    assert_eq!(
        admin_request(&gw, "POST", &path, None, Some(&body)).status,
        401
    );
    let id = register(&gw, "orders", Some("secret"), &body);

    gw.rewrite_config(&open);
    poll_until(Duration::from_secs(5), || {
        let logs = gw.logs();
        (logs.contains("config reload failed") && logs.contains("can be reached from other hosts"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the reload without a token was not refused:\n{}", gw.logs()));
    let other = r#"{"addr":"127.0.0.1:9"}"#;
    assert_eq!(
        admin_request(&gw, "POST", &path, None, Some(other)).status,
        401,
        "the refused reload opened registration"
    );
    // Moving `admin` to loopback in the same edit does not help: the listener stays
    // where it is until a restart, so the reload is judged on the address it is bound to.
    let moved = open.replace("0.0.0.0:0", "127.0.0.1:0");
    assert_ne!(moved, open);
    let refusals = gw.logs().matches("can be reached from other hosts").count();
    gw.rewrite_config(&moved);
    poll_until(Duration::from_secs(5), || {
        (gw.logs().matches("can be reached from other hosts").count() > refusals).then_some(())
    })
    .unwrap_or_else(|| panic!("the reload moving admin was not refused:\n{}", gw.logs()));
    assert_eq!(
        admin_request(&gw, "POST", &path, None, Some(other)).status,
        401,
        "a reload that moved admin in the file opened registration"
    );
    let hb = format!("{path}/{id}/heartbeat");
    assert_eq!(admin_request(&gw, "PUT", &hb, None, None).status, 401);
    assert_eq!(
        admin_request(&gw, "PUT", &hb, Some("secret"), None).status,
        200
    );
}

#[test]
fn registration_switched_off_is_403() {
    let o = Origin::start("reg");
    // Globally off.
    let off = ConfigBuilder::new().table("registry", |t| {
        t.set("registration", false);
    });
    let gw = Gateway::start(&orders(off, &[o.addr()], |_| {}));
    let body = r#"{"addr":"127.0.0.1:9"}"#;
    let r = admin_request(&gw, "POST", &instances_path("orders"), None, Some(body));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["error"].is_string());
    drop(gw);

    // Per service.
    let open = ConfigBuilder::new()
        .service("open", &[])
        .route("open", "/open/**", "open");
    let gw = Gateway::start(&orders(open, &[o.addr()], |s| {
        s.set("registration", false);
    }));
    assert_eq!(
        admin_request(&gw, "POST", &instances_path("orders"), None, Some(body)).status,
        403
    );
    assert_eq!(
        admin_request(&gw, "POST", &instances_path("open"), None, Some(body)).status,
        201
    );
    assert_eq!(service(&gw, "orders")["total"], 1);
}

#[test]
fn bad_requests_are_rejected() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let path = instances_path("orders");
    for body in [
        "not json",
        r#"{"weight":1}"#,
        r#"{"addr":"nowhere"}"#,
        r#"{"addr":"127.0.0.1"}"#,
        r#"{"addr":"127.0.0.1:9","weight":0}"#,
        r#"{"addr":"127.0.0.1:9","ttl":"soon"}"#,
        r#"{"addr":"127.0.0.1:9","ttl":-1}"#,
        r#"{"addr":"127.0.0.1:9","colour":"red"}"#,
    ] {
        let r = admin_request(&gw, "POST", &path, None, Some(body));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{body}: {}", r.text());
    }
    assert_eq!(service(&gw, "orders")["total"], 0);
    // Unknown service / id.
    let r = admin_request(
        &gw,
        "POST",
        &instances_path("nope"),
        None,
        Some(r#"{"addr":"127.0.0.1:9"}"#),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        admin_request(
            &gw,
            "PUT",
            "/registry/services/nope/instances/x/heartbeat",
            None,
            None
        )
        .status,
        404
    );
    assert_eq!(
        admin_request(
            &gw,
            "DELETE",
            "/registry/services/orders/instances/nope",
            None,
            None
        )
        .status,
        404
    );
    // A number of seconds is a valid TTL.
    let r = admin_request(
        &gw,
        "POST",
        &path,
        None,
        Some(r#"{"addr":"127.0.0.1:9","ttl":5}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["ttl_seconds"], 5.0);
}

#[test]
fn static_and_registered_address_is_one_instance() {
    let o = Origin::start("both");
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[o.addr()], |_| {}));
    let id = register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"{}","ttl":"60s"}}"#, o.addr()),
    );
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 1, "{svc:#}");
    let inst = &svc["instances"][0];
    assert_eq!(
        inst["sources"],
        serde_json::json!(["static", "registered"]),
        "{inst:#}"
    );
    for _ in 0..4 {
        assert_eq!(gw.get("/orders/x").status, 200);
    }
    assert_eq!(o.requests(), 4);
    // Deregistering leaves the static instance.
    let r = admin_request(
        &gw,
        "DELETE",
        &format!("{}/{id}", instances_path("orders")),
        None,
        None,
    );
    assert_eq!(r.status, 200);
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 1);
    assert_eq!(
        svc["instances"][0]["sources"],
        serde_json::json!(["static"])
    );
    assert_eq!(gw.get("/orders/y").status, 200);
}

#[test]
fn registry_json_ui_and_metrics_describe_the_services() {
    let a = Origin::start("a");
    let zone = ConfigBuilder::new().gateway(|g| {
        g.set_str("zone", "eu-1");
    });
    let gw = Gateway::start(&orders(zone, &[a.addr()], |s| {
        s.set("health", HEALTH)
            .set("breaker", "{ consecutive_failures = 5 }")
            .set("max_concurrent", 7)
            .set_str("lb", "least_request");
    }));
    wait_health(&gw, "orders", a.addr(), "healthy", Duration::from_secs(15));
    let doc = registry(&gw);
    assert_eq!(doc["zone"], "eu-1");
    assert!(doc["generated_at_ms"].as_u64().is_some());
    let svc = service_of(&doc, "orders").unwrap();
    assert_eq!(svc["lb"], "least_request");
    assert_eq!(svc["breaker"]["state"], "closed");
    assert_eq!(svc["max_concurrent"], 7);
    assert_eq!(svc["inflight"], 0);
    assert_eq!(svc["healthy"], 1);
    assert_eq!(svc["total"], 1);
    let inst = &svc["instances"][0];
    assert_eq!(inst["addr"], a.addr().to_string());
    assert_eq!(inst["health"], "healthy");
    assert_eq!(inst["ejected"], false);
    assert_eq!(inst["sources"], serde_json::json!(["static"]));
    assert_eq!(inst["last_probe"]["ok"], true);
    assert_eq!(inst["last_probe"]["status"], 200);
    assert!(
        inst["expires_in_ms"].is_null(),
        "static instances never expire"
    );

    let ui = gw.admin_get("/registry/ui").unwrap();
    assert_eq!(ui.status, 200);
    assert!(
        ui.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        ui.headers
    );
    assert!(ui.text().to_ascii_lowercase().contains("<html"), "not HTML");

    let m = gw.metrics();
    for (state, want) in [("healthy", 1.0), ("unhealthy", 0.0), ("ejected", 0.0)] {
        assert_eq!(
            metric_sum(
                &m,
                "ficus_service_instances",
                &[("service", "orders"), ("state", state)]
            ),
            Some(want),
            "{state}\n{m}"
        );
    }
    assert_eq!(
        metric_sum(&m, "ficus_circuit_breaker_open", &[("service", "orders")]),
        Some(0.0)
    );
    assert_eq!(
        metric_sum(&m, "ficus_retries_total", &[("service", "orders")]),
        Some(0.0)
    );
    assert_eq!(
        metric_sum(
            &m,
            "ficus_outlier_ejections_total",
            &[("service", "orders")]
        ),
        Some(0.0)
    );
}

/// Addresses that parse but that no instance can have are a 400 with the reason, and never
/// enter the pool.
#[test]
fn unusable_addresses_are_rejected() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let path = instances_path("orders");
    for (addr, why) in [
        ("0.0.0.0:18104", "unspecified"),
        ("[::]:18104", "unspecified"),
        ("[::ffff:0.0.0.0]:18104", "unspecified"),
        ("127.0.0.1:0", "port 0"),
        ("224.0.0.1:80", "multicast"),
        ("[ff02::1]:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
        ("169.254.169.254:80", "link-local"),
        ("[fe80::1]:80", "link-local"),
    ] {
        let body = format!(r#"{{"addr":"{addr}"}}"#);
        let r = admin_request(&gw, "POST", &path, None, Some(&body));
        assert_eq!(r.status, 400, "{addr}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(why), "{addr}: {msg}");
    }
    assert_eq!(service(&gw, "orders")["total"], 0);
    // An ordinary address still registers.
    register(&gw, "orders", None, r#"{"addr":"127.0.0.1:9"}"#);
}

/// The gateway's own listener and admin addresses cannot be registered (traffic would loop
/// back into it); link-local ones only with `allow_link_local`.
#[test]
fn the_gateways_own_addresses_are_refused_and_link_local_needs_an_opt_in() {
    let with_opt_in = ConfigBuilder::new().table("registry", |t| {
        t.set("allow_link_local", true);
    });
    let cfg = orders(with_opt_in, &[], |_| {});
    let gw = Gateway::builder(&cfg).fixed_ports().start();
    let path = instances_path("orders");
    for own in [gw.listen, gw.admin] {
        let body = format!(r#"{{"addr":"{own}"}}"#);
        let r = admin_request(&gw, "POST", &path, None, Some(&body));
        assert_eq!(r.status, 400, "{own}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains("the gateway's own"), "{own}: {msg}");
    }
    register(&gw, "orders", None, r#"{"addr":"169.254.10.10:80"}"#);
    assert_eq!(service(&gw, "orders")["total"], 1);
}

/// What one registration may say about itself is bounded: every registry read serves it.
#[test]
fn instance_metadata_is_bounded() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let path = instances_path("orders");
    let big = "m".repeat(5000);
    let body = format!(r#"{{"addr":"127.0.0.1:9","metadata":{{"note":"{big}"}}}}"#);
    let r = admin_request(&gw, "POST", &path, None, Some(&body));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("at most 4096"), "{}", r.text());
    assert_eq!(service(&gw, "orders")["total"], 0);
    let fits = "m".repeat(3000);
    register(
        &gw,
        "orders",
        None,
        &format!(r#"{{"addr":"127.0.0.1:9","version":"1.2","metadata":{{"note":"{fits}"}}}}"#),
    );
    assert_eq!(service(&gw, "orders")["total"], 1);
}

/// A raw admin request with the given `Host`, `Content-Type` and body (`Connection: close`).
fn admin_raw(
    gw: &Gateway,
    request_line: &str,
    host: &str,
    content_type: Option<&str>,
    body: &str,
) -> RawResponse {
    let mut req = format!("{request_line} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw_request(gw.admin, req.as_bytes())
}

/// A web page can send a cross-site POST only with a "simple" content type (no preflight):
/// registrations need `application/json`, so a page cannot register instances (CSRF).
#[test]
fn registrations_need_a_json_content_type() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let line = format!("POST {}", instances_path("orders"));
    let body = r#"{"addr":"127.0.0.1:18116","ttl":3600,"metadata":{"a":"="}}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let r = admin_raw(&gw, &line, "127.0.0.1", ct, body);
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text());
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    assert_eq!(service(&gw, "orders")["total"], 0);
    let r = admin_raw(
        &gw,
        &line,
        "127.0.0.1",
        Some("application/json; charset=utf-8"),
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// DNS rebinding: a page on `evil.example` that resolves to the admin address reaches it
/// with `Host: evil.example`; such requests are refused (421), reads and writes alike.
/// Probes and scrapers, which address the gateway by DNS name, still get `/healthz`,
/// `/readyz` and `/metrics`.
#[test]
fn admin_refuses_foreign_host_names() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let json = Some("application/json");
    for host in ["evil.example:19901", "evil.example", "127.0.0.1.nip.io"] {
        for path in ["/registry", "/registry/ui"] {
            let r = admin_raw(&gw, &format!("GET {path}"), host, None, "");
            assert_eq!(r.status, 421, "{host} {path}: {}", r.text());
            assert!(!r.text().contains("orders"), "{}", r.text());
        }
        for path in ["/healthz", "/readyz", "/metrics"] {
            let r = admin_raw(&gw, &format!("GET {path}"), host, None, "");
            assert_eq!(r.status, 200, "{host} {path}: {}", r.text());
        }
        let r = admin_raw(
            &gw,
            &format!("POST {}", instances_path("orders")),
            host,
            json,
            r#"{"addr":"127.0.0.1:9"}"#,
        );
        assert_eq!(r.status, 421, "{host}: {}", r.text());
    }
    assert_eq!(service(&gw, "orders")["total"], 0);
    // What operators and tools send is answered.
    let admin = gw.admin.to_string();
    let port = gw.admin.port();
    for host in [
        admin.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "ficus-admin".to_string(),
    ] {
        let r = admin_raw(&gw, "GET /registry", &host, None, "");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
}

/// A wrong method on a registry endpoint is a 405 naming the method it takes.
#[test]
fn wrong_methods_on_registry_endpoints_are_405_with_allow() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let list = instances_path("orders");
    let one = format!("{list}/abc");
    let hb = format!("{list}/abc/heartbeat");
    for (method, path, allow) in [
        ("GET", list.as_str(), "POST"),
        ("PUT", list.as_str(), "POST"),
        ("DELETE", list.as_str(), "POST"),
        ("POST", hb.as_str(), "PUT"),
        ("GET", hb.as_str(), "PUT"),
        ("GET", one.as_str(), "DELETE"),
        ("POST", one.as_str(), "DELETE"),
    ] {
        let r = admin_request(&gw, method, path, None, None);
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    // Read-only pages say what they take too.
    let r = admin_request(&gw, "POST", "/registry", None, None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // Paths that are no endpoint stay 404.
    let r = admin_request(&gw, "POST", "/registry/services/orders/nothing", None, None);
    assert_eq!(r.status, 404);
}

/// One service takes at most 1,000 registrations (429 beyond, re-registering still works),
/// and a registry request body over 64 KiB is a 413.
#[test]
fn registrations_per_service_and_body_size_are_capped() {
    const CAP: u16 = 1000;
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let path = instances_path("orders");
    // One keep-alive connection keeps 1,000 registrations quick.
    let mut conn = AdminConn::open(&gw);
    let body = |port: u16| format!(r#"{{"addr":"127.0.0.1:{port}","ttl":"1h"}}"#);
    for port in 1..=CAP {
        let (status, text) = conn.send("POST", &path, Some(&body(port)));
        assert_eq!(status, 201, "registration {port}: {text}");
    }
    let (status, text) = conn.send("POST", &path, Some(&body(CAP + 1)));
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("1000"), "{text}");
    // Re-registering an address already registered is not a new registration.
    let (status, text) = conn.send("POST", &path, Some(&body(7)));
    assert_eq!(status, 201, "{text}");
    assert_eq!(service(&gw, "orders")["total"], u64::from(CAP));

    let big = format!(
        r#"{{"addr":"127.0.0.1:9","metadata":{{"pad":"{}"}}}}"#,
        "x".repeat(64 * 1024)
    );
    let r = admin_request(&gw, "POST", &instances_path("orders"), None, Some(&big));
    assert_eq!(r.status, 413, "{}", r.text());
}

/// Keep-alive requests to the admin listener are answered without the ~40 ms that Nagle's
/// algorithm plus the client's delayed ACK add when head and body go out as two writes.
#[test]
fn admin_keep_alive_requests_are_not_delayed() {
    let gw = Gateway::start(&orders(ConfigBuilder::new(), &[], |_| {}));
    let mut conn = AdminConn::open(&gw);
    // Warm up (first request on the connection is never delayed).
    assert_eq!(conn.send("GET", "/healthz", None).0, 200);
    const N: u32 = 20;
    let start = Instant::now();
    for _ in 0..N {
        assert_eq!(conn.send("GET", "/healthz", None).0, 200);
    }
    let per_request = start.elapsed() / N;
    // With the stall each request takes ≥ 40 ms; without it, well under 5 ms here.
    assert!(
        per_request < Duration::from_millis(20),
        "{per_request:?} per keep-alive admin request"
    );
}

/// A keep-alive HTTP/1.1 connection to the admin listener.
struct AdminConn {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl AdminConn {
    fn open(gw: &Gateway) -> AdminConn {
        let s = std::net::TcpStream::connect(gw.admin).expect("connect admin");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        AdminConn {
            stream: std::io::BufReader::new(s),
        }
    }

    /// Sends a request and reads the response: (status, body).
    fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        use std::io::{BufRead, Read, Write};
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status = 0;
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("response head");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().unwrap();
            } else if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf).expect("response body");
        (status, String::from_utf8_lossy(&buf).into_owned())
    }
}
