//! The registry admin API: self-registration with TTL and heartbeats, deregistration, bearer
//! token, registration switches, validation, merging with static instances, and the JSON,
//! HTML and metrics views.

mod common;
#[path = "common/flex_origin.rs"]
mod flex_origin;

use common::*;
use flex_origin::*;
use std::time::{Duration, Instant};

const ROUTE: &str = r#"
[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "orders"
"#;

const HEALTH: &str = r#"health = { path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 2, unhealthy_after = 2 }"#;

fn instances_path(svc: &str) -> String {
    format!("/registry/services/{svc}/instances")
}

#[test]
fn registered_instance_serves_once_healthy_and_deregisters() {
    let o = FlexOrigin::start("reg");
    let gw = Gateway::start(&format!("{GATEWAY}\n[services.orders]\n{HEALTH}\n{ROUTE}"));
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
    let o = FlexOrigin::start("reg");
    let gw = Gateway::start(&format!("{GATEWAY}\n[services.orders]\n{ROUTE}"));
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
    let o = FlexOrigin::start("reg");
    let gw = Gateway::start(&format!(
        "{GATEWAY}\n[registry]\ntoken = \"secret\"\n\n[services.orders]\n{ROUTE}"
    ));
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

#[test]
fn registration_switched_off_is_403() {
    let o = FlexOrigin::start("reg");
    // Globally off.
    let gw = Gateway::start(&format!(
        "{GATEWAY}\n[registry]\nregistration = false\n\n[services.orders]\ninstances = [\"{}\"]\n{ROUTE}",
        o.addr()
    ));
    let body = r#"{"addr":"127.0.0.1:9"}"#;
    let r = admin_request(&gw, "POST", &instances_path("orders"), None, Some(body));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["error"].is_string());
    drop(gw);

    // Per service.
    let gw = Gateway::start(&format!(
        r#"{GATEWAY}
[services.orders]
registration = false
instances = ["{}"]

[services.open]
{ROUTE}
[[routes]]
name = "open"
match = {{ path = "/open/**" }}
service = "open"
"#,
        o.addr()
    ));
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
    let gw = Gateway::start(&format!("{GATEWAY}\n[services.orders]\n{ROUTE}"));
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
    let o = FlexOrigin::start("both");
    let gw = Gateway::start(&format!(
        "{GATEWAY}\n[services.orders]\ninstances = [\"{}\"]\n{ROUTE}",
        o.addr()
    ));
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
    let a = FlexOrigin::start("a");
    let gw = Gateway::start(&format!(
        r#"{GATEWAY}
zone = "eu-1"

[services.orders]
instances = ["{}"]
{HEALTH}
breaker = {{ consecutive_failures = 5 }}
max_concurrent = 7
lb = "least_request"
{ROUTE}"#,
        a.addr()
    ));
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
