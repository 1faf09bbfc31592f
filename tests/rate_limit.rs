//! `[rate_limits.NAME]` end to end: clients from different loopback addresses (all of
//! 127.0.0.0/8 reaches lo), directly or through a trusted proxy, by address, by a verified
//! claim and by an API-key header; the exact `429` a client gets; the gateway default and
//! opting out; buckets across reloads; metrics.
//!
//! Limits are slow (`1/min`) so a test's few requests never see a bucket refill.

mod common;
use common::*;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A request sent from the local address `from`.
fn get_from(from: &str, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    send_from(from.parse::<IpAddr>().unwrap(), to, req.as_bytes())
}

/// Statuses of `n` requests from `from` to `path`.
fn statuses(gw: &Gateway, from: &str, path: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| get_from(from, gw.listen, path, &[]).status)
        .collect()
}

/// `[rate_limits.tight]`: two requests per client, then one a minute.
const TIGHT: &str = r#"{ key = "client_ip", rate = "1/min", burst = 2 }"#;

/// A gateway with one origin, policy `tight` (plus `extra` policy keys) and routes `orders`
/// (naming it) and `open` (naming none).
fn config(o: &Origin, policy_extra: &str, gateway_extra: &str) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            if !gateway_extra.is_empty() {
                for line in gateway_extra.lines() {
                    let (k, v) = line.split_once(" = ").unwrap();
                    g.set(k, v);
                }
            }
        })
        .table("rate_limits.tight", |t| {
            t.set("limits", format!("[{TIGHT}]"));
            for line in policy_extra.lines().filter(|l| !l.is_empty()) {
                let (k, v) = line.split_once(" = ").unwrap();
                t.set(k, v);
            }
        })
        .service("o", &[o.addr()])
        .route_with("orders", "/orders/**", "o", |r| {
            r.set_str("rate_limit", "tight");
        })
        .route_with("login", "/login/**", "o", |r| {
            r.set_str("rate_limit", "tight");
        })
        .route("open", "/**", "o")
        .build()
}

#[test]
fn a_client_over_its_limit_gets_429_with_exact_fields() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    assert_eq!(statuses(&gw, "127.0.0.2", "/orders/1", 2), [200, 200]);
    let r = get_from(
        "127.0.0.2",
        gw.listen,
        "/orders/1",
        &[("X-Request-Id", "req-429")],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(
        j,
        json!({ "error": "rate limit exceeded", "request_id": "req-429" })
    );
    assert_eq!(r.header("x-request-id"), Some("req-429"));
    // 1/min with burst 2: T = 60 s, a full bucket fills in 120 s; the next request is
    // admitted 60 s after the first (less the milliseconds this test took).
    assert_eq!(r.header("ratelimit-policy"), Some("\"tight\";q=2;w=120"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        r.header("ratelimit"),
        Some(format!("\"tight\";r=0;t={retry}").as_str())
    );
    // No legacy fields unless asked for; none on an admitted response by default.
    assert_eq!(r.header("x-ratelimit-remaining"), None);
    assert_eq!(o.requests(), 2, "a refused request reached the origin");

    // Another client has its own bucket; a route without the policy is not limited.
    assert_eq!(statuses(&gw, "127.0.0.3", "/orders/1", 1), [200]);
    assert_eq!(statuses(&gw, "127.0.0.2", "/elsewhere", 3), [200, 200, 200]);
    let ok = get_from("127.0.0.4", gw.listen, "/orders/1", &[]);
    assert_eq!(ok.header("ratelimit"), None);
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    // One client rotating every forwarding header it can think of: one bucket.
    let spoofs: [&[(&str, &str)]; 4] = [
        &[("X-Forwarded-For", "10.0.0.1")],
        &[("X-Real-IP", "10.0.0.2")],
        &[("Forwarded", "for=10.0.0.3")],
        &[("X-Forwarded-For", "10.0.0.4, 10.0.0.5")],
    ];
    let got: Vec<u16> = spoofs
        .iter()
        .map(|h| get_from("127.0.0.5", gw.listen, "/orders/1", h).status)
        .collect();
    assert_eq!(got, [200, 200, 429, 429]);

    // Naming someone else's address never spends their quota.
    for _ in 0..4 {
        get_from(
            "127.0.0.6",
            gw.listen,
            "/orders/1",
            &[("X-Forwarded-For", "127.0.0.7"), ("X-Real-IP", "127.0.0.7")],
        );
    }
    assert_eq!(statuses(&gw, "127.0.0.7", "/orders/1", 3), [200, 200, 429]);
}

#[test]
fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", "trusted_proxies = [\"127.0.0.9\"]"));
    let via_proxy = |xff: &str| {
        get_from(
            "127.0.0.9",
            gw.listen,
            "/orders/1",
            &[("X-Forwarded-For", xff)],
        )
        .status
    };
    // Two clients behind one proxy: two buckets.
    assert_eq!(
        [via_proxy("203.0.113.1"), via_proxy("203.0.113.1")],
        [200, 200]
    );
    assert_eq!(via_proxy("203.0.113.1"), 429);
    assert_eq!(
        [via_proxy("203.0.113.2"), via_proxy("203.0.113.2")],
        [200, 200]
    );
    // The limited client puts a fresh address left of what the proxy appended: the
    // gateway reads the right-most untrusted entry, so it is still that client.
    assert_eq!(via_proxy("198.51.100.77, 203.0.113.1"), 429);
    assert_eq!(via_proxy("203.0.113.2, 203.0.113.1"), 429);
    // The proxy itself is not the client.
    assert_eq!(statuses(&gw, "127.0.0.10", "/orders/1", 1), [200]);
}

/// Limits apply to the route the normalized path picked: spellings of one path are one
/// route and one bucket.
#[test]
fn path_variants_share_one_bucket() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    let got: Vec<u16> = ["/login", "//login", "/login/", "/./login", "/%6cogin"]
        .iter()
        .map(|p| get_from("127.0.0.11", gw.listen, p, &[]).status)
        .collect();
    assert_eq!(got, [200, 200, 429, 429, 429]);
    // And the route's buckets are the policy's: `orders` names it too, same key.
    assert_eq!(statuses(&gw, "127.0.0.11", "/orders/1", 1), [429]);
}

/// A route for exactly `/signin` (no `/**`): a trailing slash, a doubled slash, a dot
/// segment or an escaped letter is still that route, so none of them reaches the
/// unlimited catch-all.
#[test]
fn an_exact_route_cannot_be_dodged_with_a_trailing_slash() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .table("rate_limits.tight", |t| {
            t.set("limits", format!("[{TIGHT}]"));
        })
        .service("o", &[o.addr()])
        .route_with("signin", "/signin", "o", |r| {
            r.set_str("rate_limit", "tight");
        })
        .route("open", "/**", "o")
        .build();
    let gw = Gateway::start(&cfg);
    let got: Vec<u16> = [
        "/signin",
        "/signin/",
        "//signin//",
        "/./signin/.",
        "/%73ignin/",
        "/signin/x/..",
    ]
    .iter()
    .map(|p| get_from("127.0.0.19", gw.listen, p, &[]).status)
    .collect();
    assert_eq!(got, [200, 200, 429, 429, 429, 429]);
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_rate_limit_requests_total",
            &[("route", "signin")]
        ),
        Some(6.0),
        "{m}"
    );
    // Another path is another route.
    assert_eq!(statuses(&gw, "127.0.0.19", "/signinx", 1), [200]);
}

#[test]
fn headers_on_success_and_legacy_fields_when_configured() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(
        &o,
        "headers = \"always\"\nlegacy_headers = true",
        "",
    ));
    let r = get_from("127.0.0.12", gw.listen, "/orders/1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some("\"tight\";q=2;w=120"));
    // One used: one left, the next unit in 60 s, full again in 60 s.
    assert_eq!(r.header("ratelimit"), Some("\"tight\";r=1;t=60"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("60"));
    let r = get_from("127.0.0.12", gw.listen, "/orders/1", &[]);
    assert_eq!(r.header("ratelimit"), Some("\"tight\";r=0;t=60"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("120"));
    let r = get_from("127.0.0.12", gw.listen, "/orders/1", &[]);
    assert_eq!(r.status, 429);
    // Each field once, on the refusal as on the admitted responses.
    assert_eq!(r.header_all("ratelimit").len(), 1, "{:?}", r.headers);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));

    // headers = "off": a refusal still says when to come back, nothing more.
    let gw = Gateway::start(&config(&o, "headers = \"off\"", ""));
    statuses(&gw, "127.0.0.13", "/orders/1", 2);
    let r = get_from("127.0.0.13", gw.listen, "/orders/1", &[]);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);
}

#[test]
fn the_gateway_default_applies_to_routes_naming_none_and_false_opts_out() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("rate_limit", "tight");
        })
        .table("rate_limits.tight", |t| {
            t.set("limits", format!("[{TIGHT}]"));
        })
        .service("o", &[o.addr()])
        .route("a", "/a/**", "o")
        .route("b", "/b/**", "o")
        .route_with("health", "/health/**", "o", |r| {
            r.set("rate_limit", false);
        })
        .build();
    let gw = Gateway::start(&cfg);
    assert_eq!(statuses(&gw, "127.0.0.14", "/a/1", 3), [200, 200, 429]);
    // One quota per client across the routes using the policy.
    assert_eq!(statuses(&gw, "127.0.0.14", "/b/1", 1), [429]);
    assert_eq!(
        statuses(&gw, "127.0.0.14", "/health/x", 4),
        [200, 200, 200, 200]
    );
}

#[test]
fn a_key_with_the_route_splits_the_quota_per_route() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("rate_limit", "per_route");
        })
        .table("rate_limits.per_route", |t| {
            t.set(
                "limits",
                r#"[{ key = ["route", "client_ip"], rate = "1/min", burst = 1 }]"#,
            );
        })
        .service("o", &[o.addr()])
        .route("a", "/a/**", "o")
        .route("b", "/b/**", "o")
        .build();
    let gw = Gateway::start(&cfg);
    assert_eq!(statuses(&gw, "127.0.0.15", "/a/1", 2), [200, 429]);
    assert_eq!(statuses(&gw, "127.0.0.15", "/b/1", 2), [200, 429]);
    assert_eq!(statuses(&gw, "127.0.0.16", "/a/1", 1), [200]);
}

#[test]
fn limits_by_api_key_header_fall_back_to_the_address_without_one() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .table("rate_limits.keys", |t| {
            t.set(
                "limits",
                r#"[{ key = "header:X-Api-Key", rate = "1/min", burst = 2 }]"#,
            );
        })
        .service("o", &[o.addr()])
        .route_with("api", "/api/**", "o", |r| {
            r.set_str("rate_limit", "keys");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let with_key =
        |from: &str, key: &str| get_from(from, gw.listen, "/api/x", &[("X-Api-Key", key)]).status;
    // One key from two addresses: one bucket.
    assert_eq!(
        [
            with_key("127.0.0.17", "k-1"),
            with_key("127.0.0.18", "k-1"),
            with_key("127.0.0.17", "k-1")
        ],
        [200, 200, 429]
    );
    assert_eq!(with_key("127.0.0.17", "k-2"), 200);
    // Without the header: the client's address, which the keys above did not spend.
    assert_eq!(statuses(&gw, "127.0.0.17", "/api/x", 3), [200, 200, 429]);
    // An address that looks like a key is another bucket.
    assert_eq!(with_key("127.0.0.19", "127.0.0.17"), 200);
}

#[test]
fn limits_by_a_verified_claim() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_hex(32);
    let secret_path = write_secret(dir.path(), "hmac.key", &secret);
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .table("auth.local", |t| {
            t.set_str("issuer", "https://issuer.local")
                .set("secret_file", toml_path(&secret_path))
                .set("algorithms", r#"["HS256"]"#)
                .set_str("audience", "urn:api");
        })
        .table("rate_limits.per_client", |t| {
            t.set(
                "limits",
                r#"[{ key = "claim:client_id", rate = "1/min", burst = 2 }]"#,
            );
        })
        .service("o", &[o.addr()])
        .route_with("orders", "/orders/**", "o", |r| {
            r.set_str("auth", "local")
                .set_str("rate_limit", "per_client");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let token = |client: Option<&str>| {
        let mut claims = json!({
            "iss": "https://issuer.local", "aud": "urn:api", "sub": "u",
            "iat": now, "exp": now + 300, "jti": random_hex(8),
        });
        if let Some(c) = client {
            claims["client_id"] = json!(c);
        }
        hs256_jwt(&json!({ "alg": "HS256" }), &claims, secret.as_bytes())
    };
    let call = |from: &str, t: &str| {
        let auth = format!("Bearer {t}");
        get_from(from, gw.listen, "/orders/1", &[("Authorization", &auth)]).status
    };
    // One client id from two addresses, with fresh tokens each time: one bucket.
    let alpha: Vec<u16> = ["127.0.0.20", "127.0.0.21", "127.0.0.22"]
        .iter()
        .map(|from| call(from, &token(Some("alpha"))))
        .collect();
    assert_eq!(alpha, [200, 200, 429]);
    assert_eq!(call("127.0.0.20", &token(Some("beta"))), 200);
    // A token without the claim counts by address: 127.0.0.20's own bucket is untouched
    // by alpha's and beta's requests.
    let anon: Vec<u16> = (0..3).map(|_| call("127.0.0.20", &token(None))).collect();
    assert_eq!(anon, [200, 200, 429]);
    // Authentication ran first: a request without a token is 401, not counted.
    assert_eq!(statuses(&gw, "127.0.0.23", "/orders/1", 3), [401, 401, 401]);
}

#[test]
fn buckets_survive_an_unrelated_reload_and_reset_when_the_policy_changes() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    assert_eq!(statuses(&gw, "127.0.0.24", "/orders/1", 3), [200, 200, 429]);
    // An unrelated change: a new route (`reload` waits until it is live).
    let unrelated = config(&o, "", "")
        + "\n[[routes]]\nname = \"extra\"\nmatch = { path = \"/extra\" }\nservice = \"o\"\n";
    gw.reload(&unrelated);
    assert_eq!(statuses(&gw, "127.0.0.24", "/orders/1", 1), [429]);
    // A changed policy is a new policy: fresh buckets.
    gw.reload(&unrelated.replace("burst = 2", "burst = 3"));
    assert_eq!(
        statuses(&gw, "127.0.0.24", "/orders/1", 4),
        [200, 200, 200, 429]
    );
}

#[test]
fn metrics_count_decisions_per_route_and_keys() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    statuses(&gw, "127.0.0.25", "/orders/1", 3);
    statuses(&gw, "127.0.0.26", "/login", 1);
    let m = gw.metrics();
    let count = |labels: &[(&str, &str)]| {
        metric_sum(&m, "ficus_rate_limit_requests_total", labels).unwrap_or(-1.0)
    };
    let orders = [("policy", "tight"), ("route", "orders")];
    assert_eq!(
        count(&[orders[0], orders[1], ("result", "admitted")]),
        2.0,
        "{m}"
    );
    assert_eq!(
        count(&[orders[0], orders[1], ("result", "limited")]),
        1.0,
        "{m}"
    );
    assert_eq!(
        count(&[
            ("policy", "tight"),
            ("route", "login"),
            ("result", "admitted")
        ]),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "ficus_rate_limit_store_errors_total",
            &[("policy", "tight")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_sum(&m, "ficus_rate_limit_keys", &[("policy", "tight")]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "ficus_rate_limit_max_keys", &[("policy", "tight")]),
        Some(1_000_000.0)
    );
}

/// QA D1: a burst whose bucket would take years to refill is a config error at its key,
/// never a crash: `check` reports it, a reload with it is refused, and the next good
/// reload applies (the watcher lives on).
#[test]
fn an_absurd_burst_is_refused_and_reloading_goes_on() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o, "", ""));
    let absurd = config(&o, "", "").replace(
        TIGHT,
        r#"{ key = "client_ip", rate = "1/h", burst = 6000000 }"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, gw.subst(&absurd)).unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("rate_limits.tight.limits[0].burst"), "{out}");
    assert!(out.contains("takes 250000 days to refill"), "{out}");

    let before = gw.generation();
    gw.rewrite_config(&absurd);
    assert!(
        poll_until(Duration::from_secs(10), || {
            (metric_sum(
                &gw.metrics(),
                "ficus_config_reloads_total",
                &[("result", "failed")],
            ) >= Some(1.0))
            .then_some(())
        })
        .is_some(),
        "the reload is refused and counted\n{}",
        gw.logs()
    );
    assert_eq!(gw.generation(), before);
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
    // The next edit still reloads.
    gw.reload(&config(&o, "headers = \"off\"\nlegacy_headers = true", ""));
    assert_eq!(statuses(&gw, "127.0.0.20", "/orders/1", 2), [200, 200]);
    // QA D2: with headers = "off" the legacy fields stay off too (check warns).
    let r = get_from("127.0.0.20", gw.listen, "/orders/1", &[]);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    for h in [
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
    ] {
        assert_eq!(r.header(h), None, "{h}: {:?}", r.headers);
    }
}
