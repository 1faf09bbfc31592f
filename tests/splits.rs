//! Weighted and sticky splits (`split = [...]`): the ratio, stickiness across a weight
//! change, header and client-address keys, the override, per-side rewrites, fallback from
//! an unavailable side and back, `ficus check` and `ficus explain`.

mod common;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A config with services `monolith` and `orders` and a split route `orders` on
/// `/orders/**`; `keys` are the route's other keys (sticky, override, fallback...).
fn split_config(mono: &Origin, orders: &Origin, weights: (u32, u32), keys: &str) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("monolith", &[mono.addr()])
        .service("orders", &[orders.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                format!(
                    r#"[{{ service = "monolith", weight = {} }}, {{ service = "orders", weight = {} }}]"#,
                    weights.0, weights.1
                ),
            );
        })
        // Raw TOML comes after the routes, so these keys land in the route's table.
        .raw(keys)
        .build()
}

/// Waits for a metric to reach `want` (requests are counted when they are logged, just
/// after the client has its answer); the metrics text on failure.
fn wait_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)], want: f64) {
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(5), || {
        last = gw.metrics();
        (metric_sum(&last, name, labels) == Some(want)).then_some(())
    });
    assert!(
        ok.is_some(),
        "{name}{labels:?} never reached {want}:\n{last}"
    );
}

/// The `x-origin` of a GET with these headers.
fn side_of(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> String {
    let r = get_raw(gw.listen, path, "test.local", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-origin").unwrap_or("none").to_string()
}

#[test]
fn split_ratio_is_within_two_percent_over_ten_thousand_requests() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let gw = Gateway::start(&split_config(&mono, &orders, (90, 10), ""));
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1250;
    let listen = gw.listen;
    let counts: Vec<HashMap<String, usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut c = HashMap::new();
                    for i in 0..PER_THREAD {
                        let r = get_raw(listen, &format!("/orders/{t}-{i}"), "test.local", &[]);
                        *c.entry(r.header("x-origin").unwrap_or("none").to_string())
                            .or_insert(0) += 1;
                    }
                    c
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total: HashMap<String, usize> = HashMap::new();
    for c in counts {
        for (k, v) in c {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let new = total.get("orders").copied().unwrap_or(0);
    let old = total.get("monolith").copied().unwrap_or(0);
    assert_eq!(new + old, 10_000, "{total:?}");
    // 10% ± 2 percentage points.
    assert!(
        (800..=1200).contains(&new),
        "orders got {new}/10000: {total:?}"
    );
    // Requests are counted under the service that served them, and as random placements.
    for (svc, n) in [("orders", new), ("monolith", old)] {
        let labels = [("route", "orders"), ("service", svc)];
        wait_metric(&gw, "ficus_requests_total", &labels, n as f64);
    }
    let labels = [
        ("route", "orders"),
        ("service", "orders"),
        ("choice", "random"),
    ];
    wait_metric(&gw, "ficus_split_requests_total", &labels, new as f64);
}

#[test]
fn sticky_cookie_users_stay_and_a_weight_change_moves_only_the_shifted_range() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let sticky = "sticky = { cookie = \"uid\" }\n";
    let gw = Gateway::start(&split_config(&mono, &orders, (90, 10), sticky));
    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let sides = |gw: &Gateway| -> Vec<String> {
        users
            .iter()
            .map(|u| {
                let cookie = format!("theme=dark; uid={u}");
                side_of(gw, "/orders/1", &[("cookie", &cookie)])
            })
            .collect()
    };
    let before = sides(&gw);
    // The same user always lands on the same side.
    assert_eq!(
        before,
        sides(&gw),
        "a cookie user changed side without a reload"
    );
    let new_before = before.iter().filter(|s| *s == "orders").count();
    assert!(
        (60..=140).contains(&new_before),
        "{new_before}/1000 on orders at 10%"
    );

    gw.reload(&split_config(&mono, &orders, (80, 20), sticky));
    // The admin API shows the reloaded weights.
    let config = gw.admin_get("/config").unwrap().json();
    assert_eq!(
        config["routes"][0]["split"],
        serde_json::json!([
            { "service": "monolith", "weight": 80 },
            { "service": "orders", "weight": 20 }
        ]),
        "{config}"
    );
    let after = sides(&gw);
    let mut moved = 0;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            !(b == "orders" && a == "monolith"),
            "{} moved from the new side back to the old one",
            users[i]
        );
        if b != a {
            assert_eq!((b.as_str(), a.as_str()), ("monolith", "orders"));
            moved += 1;
        }
    }
    // Exactly the users in the range [80, 90) move: about 10% of them.
    assert!((60..=140).contains(&moved), "{moved}/1000 users moved");
    let new_after = after.iter().filter(|s| *s == "orders").count();
    assert_eq!(new_after, new_before + moved);
    wait_metric(
        &gw,
        "ficus_split_requests_total",
        &[("choice", "sticky")],
        3000.0,
    );
}

#[test]
fn header_and_client_address_keys_are_sticky() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let gw = Gateway::start(&split_config(
        &mono,
        &orders,
        (50, 50),
        "sticky = { header = \"X-User\" }\n",
    ));
    let mut seen = HashMap::new();
    for i in 0..100 {
        let user = format!("u{i}");
        let first = side_of(&gw, "/orders/1", &[("x-user", &user)]);
        for _ in 0..3 {
            assert_eq!(
                side_of(&gw, "/orders/1", &[("x-user", &user)]),
                first,
                "{user}"
            );
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "100 users all on one side: {seen:?}");

    gw.reload(&split_config(
        &mono,
        &orders,
        (50, 50),
        "sticky = { client_ip = true }\n",
    ));
    let mut seen = HashMap::new();
    for i in 1..=40u8 {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
        let req = b"GET /orders/1 HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n";
        let sides: Vec<String> = (0..3)
            .map(|_| {
                let r = send_from(from, gw.listen, req);
                r.header("x-origin").unwrap_or("none").to_string()
            })
            .collect();
        assert!(sides.iter().all(|s| *s == sides[0]), "{from}: {sides:?}");
        *seen.entry(sides[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "40 addresses all on one side: {seen:?}");
}

#[test]
fn override_is_honoured_only_where_configured_and_only_for_split_members() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let billing = Origin::start("billing");
    let keys = "override = { header = \"X-Ficus-Target\" }\n";
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("monolith", &[mono.addr()])
        .service("orders", &[orders.addr()])
        .service("billing", &[billing.addr()])
        .route("billing", "/billing/**", "billing")
        .route_with("plain", "/plain/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 1 }, { service = "orders", weight = 0 }]"#,
            );
        })
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 1 }, { service = "orders", weight = 0 }]"#,
            );
        })
        .raw(keys)
        .build();
    let gw = Gateway::start(&cfg);
    let target = [("x-ficus-target", "orders")];
    for _ in 0..5 {
        assert_eq!(side_of(&gw, "/orders/1", &target), "orders");
        // Not configured on this route: the header changes nothing.
        assert_eq!(side_of(&gw, "/plain/1", &target), "monolith");
        // A service outside the split is ignored.
        assert_eq!(
            side_of(&gw, "/orders/1", &[("x-ficus-target", "billing")]),
            "monolith"
        );
    }
    // The upstream never sees the override header; the rest of the request is untouched.
    let r = get_raw(
        gw.listen,
        "/orders/7?x=1",
        "test.local",
        &[("x-ficus-target", "orders"), ("x-keep", "yes")],
    );
    assert_eq!(r.origin_path().as_deref(), Some("/orders/7?x=1"));
    assert_eq!(r.origin_header("x-ficus-target"), None);
    assert_eq!(r.origin_header("x-keep").as_deref(), Some("yes"));
    assert_eq!(billing.requests(), 0);
    wait_metric(
        &gw,
        "ficus_split_overrides_ignored_total",
        &[("route", "orders")],
        5.0,
    );
    let labels = [
        ("route", "orders"),
        ("service", "orders"),
        ("choice", "override"),
    ];
    wait_metric(&gw, "ficus_split_requests_total", &labels, 6.0);
}

#[test]
fn each_side_has_its_own_rewrite() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .service("monolith", &[mono.addr()])
        .service("orders", &[orders.addr()])
        .route_with("orders", "/api/orders/**", "monolith", |r| {
            r.remove("service");
            r.set("strip_prefix", r#""/api""#);
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 1 }, { service = "orders", weight = 1, rewrite = "/v2/orders/{**}" }]"#,
            );
        })
        .raw("override = { header = \"X-Ficus-Target\" }\n")
        .build();
    let gw = Gateway::start(&cfg);
    let r = get_raw(
        gw.listen,
        "/api/orders/42/items?page=2",
        "test.local",
        &[("x-ficus-target", "orders")],
    );
    assert_eq!(r.origin().as_deref(), Some("orders"));
    assert_eq!(
        r.origin_path().as_deref(),
        Some("/v2/orders/42/items?page=2")
    );
    // The monolith side has no rules of its own: the route's strip_prefix applies.
    let r = get_raw(
        gw.listen,
        "/api/orders/42/items?page=2",
        "test.local",
        &[("x-ficus-target", "monolith")],
    );
    assert_eq!(r.origin().as_deref(), Some("monolith"));
    assert_eq!(r.origin_path().as_deref(), Some("/orders/42/items?page=2"));
    // The access log is written by its own thread, just after the answer.
    let logged = poll_until(Duration::from_secs(5), || {
        gw.logs()
            .lines()
            .any(|l| l.contains("service=orders") && l.contains("side=orders"))
            .then_some(())
    });
    assert!(logged.is_some(), "{}", gw.logs());
}

#[test]
fn an_unavailable_new_side_falls_back_and_traffic_returns_when_it_recovers() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .service("monolith", &[mono.addr()])
        .service_with("orders", &[orders.addr()], |s| {
            s.set(
                "breaker",
                r#"{ consecutive_failures = 2, open_for = "500ms" }"#,
            );
        })
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 0 }, { service = "orders", weight = 100, rewrite = "/v2/orders/{**}" }]"#,
            );
            r.set_str("fallback", "monolith");
        })
        .build();
    let gw = Gateway::start(&cfg);
    assert_eq!(side_of(&gw, "/orders/1", &[]), "orders");
    orders.stop();
    // The failures that open the breaker, then every request is served by the fallback
    // with the monolith's own path.
    let opened = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/orders/1");
        (r.status == 200 && r.origin().as_deref() == Some("monolith")).then_some(r)
    })
    .expect("the breaker never opened into the fallback");
    assert_eq!(opened.origin_path().as_deref(), Some("/orders/1"));
    for _ in 0..5 {
        assert_eq!(gw.get("/orders/1").origin().as_deref(), Some("monolith"));
    }
    let m = gw.metrics();
    assert!(
        metric_sum(
            &m,
            "ficus_split_fallbacks_total",
            &[("route", "orders"), ("service", "orders")]
        )
        .is_some_and(|n| n >= 5.0),
        "{m}"
    );
    // Served by the monolith, so counted under it (monolith's weight is 0: only fallbacks).
    assert!(
        metric_sum(
            &m,
            "ficus_requests_total",
            &[
                ("route", "orders"),
                ("service", "monolith"),
                ("status", "200")
            ]
        )
        .is_some_and(|n| n >= 5.0),
        "{m}"
    );
    assert!(
        gw.logs().lines().any(|l| l.contains("fallback=true")
            && l.contains("service=monolith")
            && l.contains("side=orders")),
        "{}",
        gw.logs()
    );
    orders.restart();
    let back = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/orders/2");
        (r.origin().as_deref() == Some("orders")).then_some(r)
    })
    .expect("traffic never returned to the recovered side");
    assert_eq!(back.origin_path().as_deref(), Some("/v2/orders/2"));
}

const CHECK_BASE: &str = "[gateway]\nlisten = [\"127.0.0.1:18080\"]\nlegacy = \"monolith\"\n[services.monolith]\ninstances = [\"127.0.0.1:1\"]\n[services.orders]\ninstances = [\"127.0.0.1:2\"]\n[[routes]]\nname = \"orders\"\nmatch = { path = \"/orders/**\" }\n";

fn check(route_keys: &str) -> (i32, String) {
    check_text(&format!("{CHECK_BASE}{route_keys}"))
}

#[test]
fn check_reports_split_mistakes() {
    let cases = [
        (
            "service = \"monolith\"\nsplit = [{ service = \"orders\", weight = 1 }]\n",
            "either `service` or `split`",
        ),
        ("fallback = \"monolith\"\n", "names no service"),
        (
            "split = [{ service = \"ordrs\", weight = 1 }]\n",
            "did you mean `orders`",
        ),
        (
            "split = [{ service = \"orders\", weight = 0 }]\n",
            "every weight of the split is 0",
        ),
        (
            "split = [{ service = \"orders\", weight = -5 }]\n",
            "weight -5 is out of range",
        ),
        (
            "split = [{ service = \"orders\", weight = 1 }, { service = \"orders\", weight = 1 }]\n",
            "in the split twice",
        ),
        (
            "service = \"orders\"\nsticky = { cookie = \"uid\" }\n",
            "`sticky` without a `split`",
        ),
        (
            "service = \"orders\"\noverride = { header = \"X-T\" }\n",
            "`override` without a `split`",
        ),
    ];
    for (keys, want) in cases {
        let (code, out) = check(keys);
        assert_eq!(code, 2, "{keys}\n{out}");
        assert!(out.contains(want), "{keys}: wanted `{want}` in\n{out}");
    }
    // (A claim key needs the route's `auth`: tests/identity_keys.rs.)
    let (code, out) = check("split = [{ service = \"monolith\", weight = 90 }, { service = \"orders\", weight = 10 }]\nsticky = { cookie = \"uid\" }\nfallback = \"monolith\"\n");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn explain_shows_the_split_stickiness_override_and_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("routes.toml");
    std::fs::write(
        &p,
        format!("{CHECK_BASE}split = [{{ service = \"monolith\", weight = 90 }}, {{ service = \"orders\", weight = 10, rewrite = \"/v2/orders/{{**}}\" }}]\nsticky = {{ cookie = \"uid\" }}\noverride = {{ header = \"X-Ficus-Target\" }}\nfallback = \"monolith\"\n"),
    )
    .unwrap();
    let explain = |headers: &[&str]| {
        let mut args = vec![
            "explain",
            "--config",
            p.to_str().unwrap(),
            "GET",
            "/orders/5",
        ];
        for h in headers {
            args.push("-H");
            args.push(h);
        }
        let (code, out, err) = ficus(&args);
        assert_eq!(code, 0, "{out}\n{err}");
        out
    };
    let out = explain(&[]);
    for want in [
        "sticky on the cookie `uid`",
        "override header `x-ficus-target`",
        "monolith  weight 90 (90.0%)  upstream path: /orders/5",
        "orders  weight 10 (10.0%)  upstream path: /v2/orders/5",
        "a random side by weight (it carries no cookie `uid`)",
        "fallback: monolith",
    ] {
        assert!(out.contains(want), "wanted `{want}` in\n{out}");
    }
    let out = explain(&["X-Ficus-Target: orders"]);
    assert!(
        out.contains("side `orders` (forced by the override header)"),
        "{out}"
    );
    let out = explain(&["Cookie: uid=alice"]);
    assert!(out.contains("(by its cookie `uid`"), "{out}");
}

#[test]
fn claim_keys_follow_the_verified_subject() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_hex(32);
    let secret_path = write_secret(dir.path(), "hmac.key", &secret);
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.local", |t| {
            t.set_str("issuer", "https://issuer.local")
                .set("secret_file", toml_path(&secret_path))
                .set("algorithms", r#"["HS256"]"#)
                .set_str("audience", "ficus-tests");
        })
        .service("monolith", &[mono.addr()])
        .service("orders", &[orders.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 50 }, { service = "orders", weight = 50 }]"#,
            );
            r.set_str("auth", "local");
        })
        .raw("sticky = { claim = \"sub\" }\n")
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let header = serde_json::json!({ "alg": "HS256", "typ": "JWT" });
    let mut seen = HashMap::new();
    for i in 0..60 {
        let claims = serde_json::json!({
            "iss": "https://issuer.local", "aud": "ficus-tests", "sub": format!("user-{i}"),
            "iat": now, "exp": now + 300,
        });
        let token = hs256_jwt(&header, &claims, secret.as_bytes());
        let auth = format!("Bearer {token}");
        let sides: Vec<String> = (0..3)
            .map(|_| side_of(&gw, "/orders/1", &[("authorization", &auth)]))
            .collect();
        assert!(sides.iter().all(|s| *s == sides[0]), "user-{i}: {sides:?}");
        *seen.entry(sides[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "60 subjects all on one side: {seen:?}");
    wait_metric(
        &gw,
        "ficus_split_requests_total",
        &[("route", "orders"), ("choice", "sticky")],
        180.0,
    );
}
