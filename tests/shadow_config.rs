//! Shadow traffic's configuration and tools: `ficus check` errors and the unsafe-method
//! warning, which methods are copied, `ficus explain`, `ficus shadow`, the admin listing,
//! and records across reloads.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const CHECK_BASE: &str = "[gateway]\nlisten = [\"127.0.0.1:18080\"]\nlegacy = \"monolith\"\n[services.monolith]\ninstances = [\"127.0.0.1:1\"]\n[services.orders]\ninstances = [\"127.0.0.1:2\"]\n[[routes]]\nname = \"orders\"\nmatch = { path = \"/orders/**\" }\nservice = \"monolith\"\n";

fn check(route_keys: &str) -> (i32, String) {
    check_text(&format!("{CHECK_BASE}{route_keys}"))
}

#[test]
fn check_reports_shadow_mistakes() {
    let cases = [
        (
            "shadow = { service = \"ordrs\" }\n",
            "did you mean `orders`",
        ),
        (
            "shadow = { service = \"monolith\" }\n",
            "the shadow service is the route's own service",
        ),
        (
            "shadow = { service = \"orders\", sample = 1.5 }\n",
            "sample = 1.5",
        ),
        (
            "shadow = { service = \"orders\", sample = -0.1 }\n",
            "sample = -0.1",
        ),
        (
            "shadow = { service = \"orders\", methods = [] }\n",
            "no method listed",
        ),
        (
            "shadow = { service = \"orders\", methods = [\"GE T\"] }\n",
            "not an HTTP method",
        ),
        (
            "shadow = { service = \"orders\", timeout = \"0s\" }\n",
            "zero timeout",
        ),
        (
            "shadow = { service = \"orders\", timeout = \"soon\" }\n",
            "not a duration",
        ),
        (
            "shadow = { service = \"orders\", max_body_bytes = -1 }\n",
            "max_body_bytes = -1",
        ),
        (
            "shadow = { service = \"orders\", queue = 0 }\n",
            "queue = 0",
        ),
        (
            "shadow = { service = \"orders\", compare = { ignore = [\"total\"] } }\n",
            "compare.ignore[0]",
        ),
        (
            "shadow = { service = \"orders\", compare = { tolerance = 2.0 } }\n",
            "compare.tolerance",
        ),
        (
            "shadow = { service = \"orders\", compare = { noise_sample = 7 } }\n",
            "noise_sample",
        ),
        (
            "shadow = { service = \"orders\", compare = { ignor = [] } }\n",
            "ignor",
        ),
        (
            "shadow = { service = \"orders\", rewrite = \"/v2/{nope}\" }\n",
            "bad rewrite",
        ),
        (
            "shadow = { service = \"orders\", strip_prefix = \"/elsewhere\" }\n",
            "not a leading part",
        ),
        ("shadow = { servce = \"orders\" }\n", "servce"),
        (
            "shadow = { service = \"orders\", max_body_bytes = 0 }\n",
            "max_body_bytes = 0",
        ),
        ("shadow = \"orders\"\n", "a table like { service = \"NAME\""),
    ];
    for (keys, want) in cases {
        let (code, out) = check(keys);
        assert_eq!(code, 2, "{keys}\n{out}");
        assert!(out.contains(want), "{keys}: wanted `{want}` in\n{out}");
    }
    // Unsafe methods are allowed, with a warning that says why it matters.
    let (code, out) = check("shadow = { service = \"orders\", methods = [\"GET\", \"post\"] }\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("copies of POST requests reach the shadow service"),
        "{out}"
    );
    assert!(out.contains("X-Ficus-Shadow: 1"), "{out}");
    let (code, out) = check("shadow = { service = \"orders\", sample = 0 }\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sample = 0: no request is copied"), "{out}");
    let (code, out) = check("shadow = { service = \"orders\", sample = 0.25, timeout = \"2s\", queue = 10, max_body_bytes = 4096, rewrite = \"/v2/orders/{**}\", compare = { ignore = [\"$.at\", \"$.items[*].etag\"], tolerance = 0.001, headers = [\"content-type\"], redact = [\"$.card\"], noise_sample = 0.05 } }\n");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn explain_shows_the_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("routes.toml");
    std::fs::write(
        &p,
        format!("{CHECK_BASE}shadow = {{ service = \"orders\", sample = 0.25, rewrite = \"/v2/orders/{{**}}\", compare = {{ ignore = [\"$.at\"], tolerance = 0.001, noise_sample = 0.05 }} }}\n"),
    )
    .unwrap();
    let explain = |method: &str| {
        let (code, out, err) = ficus(&[
            "explain",
            "--config",
            p.to_str().unwrap(),
            method,
            "/orders/5?x=1",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        out
    };
    let out = explain("GET");
    for want in [
        "shadow: copies to orders after the client has its answer (25.0% of GET/HEAD requests",
        "this request: GET is copied, shadow path /v2/orders/5?x=1",
        "ignored: $.at",
        "numbers within 0.1% of each other are equal",
        "noise: 5.0% of copies also ask the primary again",
    ] {
        assert!(out.contains(want), "wanted `{want}` in\n{out}");
    }
    assert!(explain("POST").contains("this request: POST is not copied"));
}

fn two_origins() -> (Origin, Origin) {
    let mono = Origin::builder("monolith")
        .fallback(Handler::new(|_| Reply::json(json!({"id": 1, "total": 10}))))
        .start();
    let v2 = Origin::builder("v2")
        .fallback(Handler::new(|_| Reply::json(json!({"id": 1, "total": 11}))))
        .start();
    (mono, v2)
}

fn compared(gw: &Gateway, want: u64) {
    let ok = poll_until(Duration::from_secs(10), || {
        let r = gw.admin_get("/shadow/orders").ok()?;
        (r.json()["compared"].as_u64() == Some(want)).then_some(())
    });
    let now = gw
        .admin_get("/shadow/orders")
        .map(|r| r.text())
        .unwrap_or_default();
    assert!(ok.is_some(), "compared never reached {want}: {now}");
}

fn send(gw: &Gateway, method: &str, path: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client()
            .request(m, gw.url(path))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200, "{method} {path}");
}

#[test]
fn only_safe_methods_are_copied_unless_the_route_lists_more() {
    let (mono, v2) = two_origins();
    let gw = Gateway::start(&shadow_config(&mono, &v2, r#"{ service = "orders-v2" }"#));
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] {
        send(&gw, m, "/orders/1");
    }
    compared(&gw, 2);
    std::thread::sleep(Duration::from_millis(200));
    let methods: Vec<String> = v2.received().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["GET", "HEAD"]);
    gw.reload(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", methods = ["POST"] }"#,
    ));
    send(&gw, "GET", "/orders/2");
    send(&gw, "POST", "/orders/2");
    // The same comparison: the record goes on (2 before, the POST now).
    compared(&gw, 3);
    let last = v2.received().last().map(|r| r.method.clone());
    assert_eq!(last.as_deref(), Some("POST"));
}

#[test]
fn records_survive_a_reload_that_keeps_the_shadow_and_start_over_when_it_changes() {
    let (mono, v2) = two_origins();
    let base = r#"{ service = "orders-v2" }"#;
    let gw = Gateway::start(&shadow_config(&mono, &v2, base));
    for _ in 0..3 {
        send(&gw, "GET", "/orders/1");
    }
    compared(&gw, 3);
    // Another route changes; the shadow does not: the record goes on.
    let mut changed_elsewhere = shadow_config(&mono, &v2, base);
    changed_elsewhere = changed_elsewhere.replace("/other/**", "/elsewhere/**");
    gw.reload(&changed_elsewhere);
    send(&gw, "GET", "/orders/1");
    compared(&gw, 4);
    // The queue bound changes: still the same experiment.
    gw.reload(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", queue = 5 }"#,
    ));
    send(&gw, "GET", "/orders/1");
    compared(&gw, 5);
    assert_eq!(gw.admin_get("/shadow/orders").unwrap().json()["queue"], 5);
    // The comparison changes: a new record.
    gw.reload(&shadow_config(
        &mono,
        &v2,
        r#"{ service = "orders-v2", queue = 5, compare = { ignore = ["$.total"] } }"#,
    ));
    send(&gw, "GET", "/orders/1");
    compared(&gw, 1);
    let rep = gw.admin_get("/shadow/orders").unwrap().json();
    assert_eq!(rep["matched"], 1, "{rep:#}");
    // The shadow goes away: so does its record.
    let plain = ConfigBuilder::new()
        .service("monolith", &[mono.addr()])
        .route("orders", "/orders/**", "monolith")
        .build();
    gw.reload(&plain);
    let r = gw.admin_get("/shadow/orders").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("no shadowed route named `orders`"));
    assert_eq!(gw.admin_get("/shadow").unwrap().json(), json!([]));
}

#[test]
fn ficus_shadow_prints_the_record_of_the_running_gateway() {
    let (mono, v2) = two_origins();
    let gw = Gateway::start(&shadow_config(&mono, &v2, r#"{ service = "orders-v2" }"#));
    for _ in 0..2 {
        send(&gw, "GET", "/orders/42");
    }
    compared(&gw, 2);
    let admin = gw.admin.to_string();
    let (code, out, err) = ficus(&["shadow", "orders", "--admin", &admin]);
    assert_eq!(code, 0, "{out}\n{err}");
    for want in [
        "route orders: copies go to orders-v2",
        "compared 2: matched 0 (0.0%), mismatched 2",
        "$.total  2",
        "GET /orders/42  primary 200 / shadow 200",
        "$.total value changed: 10 -> 11",
    ] {
        assert!(out.contains(want), "wanted `{want}` in\n{out}");
    }
    // The admin address from a routes file's `[gateway] admin` (only that key is read).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("routes.toml");
    std::fs::write(&p, format!("[gateway]\nadmin = \"{admin}\"\n")).unwrap();
    let (code, out, _) = ficus(&["shadow", "orders", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("compared 2"), "{out}");
    // An unknown route, and a gateway that is not there.
    let (code, _, err) = ficus(&["shadow", "nope", "--admin", &admin]);
    assert_eq!(code, 2);
    assert!(err.contains("no shadowed route named `nope`"), "{err}");
    let (code, _, err) = ficus(&["shadow", "orders", "--admin", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("not reachable"), "{err}");
    // A routes file that is not there is said so, not replaced by the default address.
    let (code, _, err) = ficus(&["shadow", "orders", "--config", "/nonexistent/routes.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read the admin address from /nonexistent/routes.toml"),
        "{err}"
    );
    // The listing.
    let list = gw.admin_get("/shadow").unwrap().json();
    assert_eq!(list[0]["route"], "orders");
    assert_eq!(list[0]["mismatched"], 2);
    assert_eq!(list[0]["top_fields"], json!(["$.total"]));
}
