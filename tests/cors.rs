//! `[cors.NAME]` at the header level, against the real gateway: which origins are echoed
//! (lookalikes are not), credentials, exposed headers and `Vary`; preflights answered at the
//! edge (never forwarded, never authenticated) or refused without CORS headers; the
//! upstream's CORS headers replaced; CORS headers on the gateway's own 401 and 502; the
//! gateway default and `cors = false`; the same headers with and without
//! `preserve_header_case` and over HTTP/2; `ficus check` and `explain`; reload. The
//! browser's side is tests/cors_browser.rs.

mod common;
use common::*;

const SHOP: &str = "shop.example";

/// The issue's policy, on a route `orders` (and any `extra` route keys).
fn shop_policy(t: &mut Table) {
    t.set(
        "origins",
        r#"["https://shop.example.com", "https://*.example.com"]"#,
    )
    .set("methods", r#"["GET", "POST", "PUT"]"#)
    .set("headers", r#"["Content-Type", "X-Custom"]"#)
    .set("expose_headers", r#"["X-Request-Id"]"#)
    .set("credentials", "true")
    .set_str("max_age", "600s");
}

/// An upstream that sends CORS headers of its own and a `Vary`.
fn upstream_with_cors_headers() -> Origin {
    Origin::builder("orders")
        .fallback(
            Handler::echo()
                .header("Access-Control-Allow-Origin", "*")
                .header("Access-Control-Allow-Credentials", "false")
                .header("Access-Control-Expose-Headers", "X-Secret")
                .header("Vary", "Accept-Encoding"),
        )
        .start()
}

fn shop_gateway(o: &Origin) -> Gateway {
    Gateway::start(
        &ConfigBuilder::new()
            .table("cors.shop", shop_policy)
            .service("orders", &[o.addr()])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("cors", "shop");
            })
            .build(),
    )
}

fn send(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    request_raw(gw.listen, method, path, SHOP, headers)
}

fn preflight(gw: &Gateway, path: &str, origin: &str, method: &str, headers: &str) -> RawResponse {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if !headers.is_empty() {
        h.push(("Access-Control-Request-Headers", headers));
    }
    send(gw, "OPTIONS", path, &h)
}

/// The response's `Access-Control-*` headers.
fn cors_headers(r: &RawResponse) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

/// Every `Vary` line, as the client got them.
fn vary(r: &RawResponse) -> Vec<&str> {
    r.header_all("vary")
}

#[test]
fn an_allowed_origin_is_echoed_with_credentials_exposed_headers_and_vary() {
    let o = upstream_with_cors_headers();
    let gw = shop_gateway(&o);
    for origin in [
        "https://shop.example.com",
        "https://app.example.com",
        "https://a-1.example.com",
        "HTTPS://App.Example.COM:443",
    ] {
        let r = send(&gw, "GET", "/orders/1", &[("Origin", origin)]);
        assert_eq!(r.status, 200, "{}", describe(&r));
        assert_eq!(r.origin().as_deref(), Some("orders"));
        // The exact origin, once: the upstream's `*` is replaced, not added to.
        assert_eq!(r.header_all("access-control-allow-origin"), [origin]);
        assert_eq!(
            r.header_all("access-control-allow-credentials"),
            ["true"],
            "{origin}"
        );
        assert_eq!(
            r.header_all("access-control-expose-headers"),
            ["X-Request-Id"]
        );
        // Preflight-only headers are not on actual responses.
        assert!(r.header("access-control-allow-methods").is_none());
        assert!(r.header("access-control-max-age").is_none());
        // The upstream's Vary is kept and Origin merged into it, in one line.
        assert_eq!(vary(&r), ["Accept-Encoding, Origin"], "{}", describe(&r));
        // The exposed header is there to be read.
        assert!(r.header("x-request-id").is_some());
    }
    // The origin that proxied them got the request as the client sent it.
    assert_eq!(
        o.last().unwrap().header("origin"),
        Some("HTTPS://App.Example.COM:443")
    );
}

/// With header case kept or not, a proxied response gets the same CORS headers, spelled
/// the same on the wire (pingora keeps its Title-Case for a dozen names only: these go out
/// in lowercase either way); the gateway's `X-Request-Id` is Title-Case only where case is
/// kept. (Without it, the policy's edits are made in the same step as the gateway's own.)
#[test]
fn cors_headers_are_the_same_with_and_without_header_case() {
    let o = upstream_with_cors_headers();
    for preserve in [true, false] {
        let gw = Gateway::start(
            &ConfigBuilder::new()
                .gateway(|g| {
                    g.set("preserve_header_case", preserve);
                })
                .table("cors.shop", shop_policy)
                .service("orders", &[o.addr()])
                .route_with("orders", "/orders/**", "orders", |r| {
                    r.set_str("cors", "shop");
                })
                .build(),
        );
        let r = send(
            &gw,
            "GET",
            "/orders/1",
            &[("Origin", "https://shop.example.com")],
        );
        assert_eq!(r.status, 200, "{}", describe(&r));
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-expose-headers",
            "vary",
        ] {
            assert_eq!(
                names.iter().filter(|n| **n == want).count(),
                1,
                "{want} once, spelled so (preserve_header_case = {preserve}): {names:?}"
            );
        }
        let request_id = if preserve {
            "X-Request-Id"
        } else {
            "x-request-id"
        };
        assert!(names.contains(&request_id), "{request_id}: {names:?}");
        assert_eq!(
            r.header_all("access-control-allow-origin"),
            ["https://shop.example.com"]
        );
        assert_eq!(r.header_all("access-control-allow-credentials"), ["true"]);
        assert_eq!(
            r.header_all("access-control-expose-headers"),
            ["X-Request-Id"]
        );
        assert_eq!(vary(&r), ["Accept-Encoding, Origin"]);
    }
}

/// An HTTP/2 client gets the policy's headers too (its responses are edited without the
/// head's spellings, which HTTP/2 does not send), with `preserve_header_case` on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_gets_the_cors_headers() {
    let o = upstream_with_cors_headers();
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set("listen", r#"[{ addr = "{listen}", h2c = true }]"#)
                    .set("preserve_header_case", true);
            })
            .table("cors.shop", shop_policy)
            .service("orders", &[o.addr()])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("cors", "shop");
            })
            .build(),
    );
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .get(format!("http://{}/orders/1", gw.listen))
        .header("Origin", "https://shop.example.com")
        .send()
        .await
        .expect("h2c request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let all = |name: &str| -> Vec<String> {
        r.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        all("access-control-allow-origin"),
        ["https://shop.example.com"]
    );
    assert_eq!(all("access-control-allow-credentials"), ["true"]);
    assert_eq!(all("access-control-expose-headers"), ["X-Request-Id"]);
    assert_eq!(all("vary"), ["Accept-Encoding, Origin"]);
    assert_eq!(all("x-request-id").len(), 1);
}

#[test]
fn lookalike_origins_get_no_cors_headers_not_even_the_upstreams() {
    let o = upstream_with_cors_headers();
    let gw = shop_gateway(&o);
    for origin in [
        "https://example.com.evil.com",
        "https://evilexample.com",
        "https://a.evilexample.com",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a.b.example.com",
        "https://example.com",
        "https://shop.example.com.",
        "https://shop.example.com/",
        "null",
        "https://shop.example.com https://evil.com",
    ] {
        let r = send(&gw, "GET", "/orders/1", &[("Origin", origin)]);
        // CORS decides what a browser lets a page read, not who may call: the request is
        // still proxied, and answered without any CORS header.
        assert_eq!(r.status, 200, "{origin}: {}", describe(&r));
        assert_eq!(cors_headers(&r), [], "{origin}: {}", describe(&r));
        assert_eq!(vary(&r), ["Accept-Encoding, Origin"], "{origin}");
    }
    // Without an Origin: no CORS headers (the upstream's are gone too), and Vary: Origin,
    // since the same URL with an Origin gets another answer (caches must know).
    let r = send(&gw, "GET", "/orders/1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(cors_headers(&r), []);
    assert_eq!(vary(&r), ["Accept-Encoding, Origin"]);
    // Two Origin lines are no origin.
    let r = send(
        &gw,
        "GET",
        "/orders/1",
        &[
            ("Origin", "https://shop.example.com"),
            ("Origin", "https://shop.example.com"),
        ],
    );
    assert_eq!(cors_headers(&r), []);
}

#[test]
fn null_is_allowed_only_where_listed_and_star_answers_star() {
    let o = Origin::start("o");
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .table("cors.shop", shop_policy)
            .table("cors.sandboxed", |t| {
                t.set("origins", r#"["null"]"#);
            })
            .table("cors.public", |t| {
                t.set("origins", r#"["*"]"#)
                    .set("expose_headers", r#"["X-Request-Id"]"#);
            })
            .service("o", &[o.addr()])
            .route_with("shop", "/shop/**", "o", |r| {
                r.set_str("cors", "shop");
            })
            .route_with("sandboxed", "/sandboxed/**", "o", |r| {
                r.set_str("cors", "sandboxed");
            })
            .route_with("public", "/public/**", "o", |r| {
                r.set_str("cors", "public");
            })
            .build(),
    );
    let null = [("Origin", "null")];
    assert_eq!(cors_headers(&send(&gw, "GET", "/shop/1", &null)), []);
    let r = send(&gw, "GET", "/sandboxed/1", &null);
    assert_eq!(r.header_all("access-control-allow-origin"), ["null"]);
    assert!(r.header("access-control-allow-credentials").is_none());
    // `*`: the same answer for every origin and none, so no Vary.
    for headers in [&null[..], &[("Origin", "https://anyone.test")], &[]] {
        let r = send(&gw, "GET", "/public/1", headers);
        assert_eq!(r.header_all("access-control-allow-origin"), ["*"]);
        assert_eq!(
            r.header_all("access-control-expose-headers"),
            ["X-Request-Id"]
        );
        assert!(r.header("access-control-allow-credentials").is_none());
        assert_eq!(vary(&r), Vec::<&str>::new());
    }
}

/// A gateway with the shop policy on `orders`, whose route also needs a token from a local
/// HS256 policy, and a route `down` to an address nobody listens on.
struct AuthSetup {
    gw: Gateway,
    o: Origin,
    _dir: tempfile::TempDir,
}

fn auth_setup() -> AuthSetup {
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path(), "hmac.key", random_hex(32));
    let o = upstream_with_cors_headers();
    // A port that was free a moment ago and has nobody listening: a 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .table("cors.shop", shop_policy)
            .table("auth.local", |t| {
                t.set_str("issuer", "https://issuer.local")
                    .set("secret_file", toml_path(&secret))
                    .set("algorithms", r#"["HS256"]"#)
                    .set_str("audience", "urn:api:shop");
            })
            .service("orders", &[o.addr()])
            .service("down", &[dead])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("cors", "shop").set_str("auth", "local");
            })
            .route_with("down", "/down/**", "down", |r| {
                r.set_str("cors", "shop");
            })
            .build(),
    );
    AuthSetup { gw, o, _dir: dir }
}

#[test]
fn a_preflight_is_answered_at_the_edge_without_auth_and_never_reaches_the_upstream() {
    let AuthSetup { gw, o, .. } = auth_setup();
    let before = o.requests();
    let r = preflight(
        &gw,
        "/orders/1",
        "https://app.example.com",
        "PUT",
        "content-type,x-custom",
    );
    assert_eq!(r.status, 204, "{}", describe(&r));
    assert!(r.body.is_empty());
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["https://app.example.com"]
    );
    assert_eq!(
        r.header_all("access-control-allow-methods"),
        ["GET, POST, PUT"]
    );
    assert_eq!(
        r.header_all("access-control-allow-headers"),
        ["content-type,x-custom"]
    );
    assert_eq!(r.header_all("access-control-max-age"), ["600"]);
    assert_eq!(r.header_all("access-control-allow-credentials"), ["true"]);
    assert_eq!(
        vary(&r),
        ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
    );
    // No 401 for the missing token, no challenge.
    assert!(r.header("www-authenticate").is_none());
    assert!(r.header("x-request-id").is_some());
    // Header names in any case; a GET preflight without listed headers.
    let r = preflight(
        &gw,
        "/orders/1",
        "https://shop.example.com",
        "GET",
        "X-CUSTOM",
    );
    assert_eq!(r.status, 204, "{}", describe(&r));
    assert_eq!(r.header_all("access-control-allow-headers"), ["X-CUSTOM"]);
    assert_eq!(o.requests(), before, "a preflight reached the upstream");
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_cors_preflights_total",
            &[("policy", "shop"), ("result", "allowed")]
        ),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn a_refused_preflight_gets_403_and_no_cors_headers() {
    let AuthSetup { gw, o, .. } = auth_setup();
    let before = o.requests();
    let cases = [
        ("https://evilexample.com", "PUT", "", "origin not allowed"),
        ("http://app.example.com", "PUT", "", "origin not allowed"),
        (
            "https://app.example.com",
            "DELETE",
            "",
            "method not allowed",
        ),
        ("https://app.example.com", "put", "", "method not allowed"),
        (
            "https://app.example.com",
            "PUT",
            "x-custom,x-unlisted",
            "request header not allowed",
        ),
    ];
    for (origin, method, headers, why) in cases {
        let r = preflight(&gw, "/orders/1", origin, method, headers);
        let what = format!("{origin} {method} {headers}: {}", describe(&r));
        assert_eq!(r.status, 403, "{what}");
        assert_eq!(cors_headers(&r), [], "{what}");
        let body = r.json();
        assert!(body["error"].as_str().unwrap().contains(why), "{what}");
        assert_eq!(
            body["request_id"].as_str(),
            r.header("x-request-id"),
            "{what}"
        );
    }
    assert_eq!(
        o.requests(),
        before,
        "a refused preflight reached the upstream"
    );
    let m = gw.metrics();
    let count = |result| {
        metric_sum(
            &m,
            "ficus_cors_preflights_total",
            &[("policy", "shop"), ("result", result)],
        )
    };
    assert_eq!(count("refused_origin"), Some(2.0), "{m}");
    assert_eq!(count("refused_method"), Some(2.0), "{m}");
    assert_eq!(count("refused_header"), Some(1.0), "{m}");
}

#[test]
fn the_gateways_own_401_and_502_carry_cors_headers() {
    let AuthSetup { gw, o, .. } = auth_setup();
    let origin = [("Origin", "https://shop.example.com")];
    let before = o.requests();
    // No token: the auth stage answers 401, and a page can read it.
    let r = send(&gw, "GET", "/orders/1", &origin);
    assert_eq!(r.status, 401, "{}", describe(&r));
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["https://shop.example.com"]
    );
    assert_eq!(r.header_all("access-control-allow-credentials"), ["true"]);
    // The gateway's own answer exposes its refusal and retry fields on top of the policy's
    // list (proxied responses expose the list alone: see the test above).
    assert_eq!(
        r.header_all("access-control-expose-headers"),
        ["X-Request-Id, Retry-After, RateLimit-Policy, RateLimit, WWW-Authenticate"]
    );
    assert_eq!(vary(&r), ["Origin"]);
    assert_eq!(o.requests(), before);
    // A refused origin's 401 has no CORS headers.
    let r = send(&gw, "GET", "/orders/1", &[("Origin", "https://evil.test")]);
    assert_eq!(r.status, 401);
    assert_eq!(cors_headers(&r), []);
    // Nobody listens upstream: the gateway's 502.
    let r = send(&gw, "GET", "/down/1", &origin);
    assert_eq!(r.status, 502, "{}", describe(&r));
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["https://shop.example.com"]
    );
    assert_eq!(r.header_all("access-control-allow-credentials"), ["true"]);
    assert_eq!(vary(&r), ["Origin"]);
    assert!(r.json()["request_id"].is_string());
}

#[test]
fn the_gateway_default_applies_to_routes_that_name_none_and_false_opts_out() {
    let o = upstream_with_cors_headers();
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set_str("cors", "shop");
            })
            .table("cors.shop", shop_policy)
            .table("cors.partners", |t| {
                t.set("origins", r#"["https://partner.test"]"#);
            })
            .service("orders", &[o.addr()])
            .route("orders", "/orders/**", "orders")
            .route_with("partners", "/partners/**", "orders", |r| {
                r.set_str("cors", "partners");
            })
            .route_with("legacy", "/legacy/**", "orders", |r| {
                r.set("cors", "false");
            })
            .build(),
    );
    let shop = [("Origin", "https://shop.example.com")];
    // The default.
    let r = send(&gw, "GET", "/orders/1", &shop);
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["https://shop.example.com"]
    );
    // A route's own policy wins over the default.
    let r = send(&gw, "GET", "/partners/1", &shop);
    assert_eq!(cors_headers(&r), []);
    let r = send(
        &gw,
        "GET",
        "/partners/1",
        &[("Origin", "https://partner.test")],
    );
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["https://partner.test"]
    );
    assert!(r.header("access-control-allow-credentials").is_none());
    // Opted out: the upstream's own headers pass as they are, and preflights go upstream.
    let r = send(&gw, "GET", "/legacy/1", &shop);
    assert_eq!(r.header_all("access-control-allow-origin"), ["*"]);
    assert_eq!(r.header_all("access-control-allow-credentials"), ["false"]);
    assert_eq!(vary(&r), ["Accept-Encoding"]);
    let before = o.requests();
    let r = preflight(&gw, "/legacy/1", "https://shop.example.com", "PUT", "");
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(o.requests(), before + 1);
    assert_eq!(o.last().unwrap().method, "OPTIONS");
    // /policies lists the CORS policies with the routes that use them.
    let policies = gw.admin_get("/policies").unwrap().json();
    let routes_of = |name: &str| -> Vec<String> {
        let p = policies["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "cors" && p["name"] == name)
            .unwrap_or_else(|| panic!("no cors policy {name} in {policies}"));
        p["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(routes_of("shop"), ["orders"]);
    assert_eq!(routes_of("partners"), ["partners"]);
}

fn check(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, toml).unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[test]
fn check_refuses_star_with_credentials_and_bad_values_with_positions_and_hints() {
    let (code, all) = check(
        r#"[services.o]
instances = ["127.0.0.1:9"]

[cors.open]
origins = ["*"]
credentials = true

[cors.typos]
origins = ["https://shop.example.com/", "shop.example.com", "https://shop.*.com", "https://a.com:99999", "https://a.com/app?x=1"]
methods = ["P UT"]
headers = ["X Custom"]
max_age = "ten minutes"

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"
cors = "open"

[[routes]]
name = "b"
match = { path = "/b/**" }
service = "o"
cors = "typos"

[[routes]]
name = "c"
match = { path = "/c/**" }
service = "o"
cors = "shopp"
"#,
    );
    assert_eq!(code, 2, "{all}");
    let expect = [
        (
            "routes.toml:5:12",
            "`*` cannot be used with `credentials = true`",
            "hint: list the origins that may send credentials",
        ),
        (
            "routes.toml:9:12",
            "origin `https://shop.example.com/` ends with `/`",
            "(key `cors.typos.origins[0]`)",
        ),
        (
            "routes.toml:9:41",
            "origin `shop.example.com` has no scheme",
            "hint: write the scheme too",
        ),
        (
            "routes.toml:9:61",
            "origin `https://shop.*.com` has `*` where only a whole first label may be `*`",
            "\"https://*.example.com\" (one label",
        ),
        (
            "routes.toml:9:83",
            "invalid port `99999`",
            "(key `cors.typos.origins[3]`)",
        ),
        (
            "routes.toml:9:106",
            "has a path",
            "(key `cors.typos.origins[4]`)",
        ),
        (
            "routes.toml:10:12",
            "`P UT` is not an HTTP method",
            "methods[0]",
        ),
        (
            "routes.toml:11:12",
            "`X Custom` is not a header name",
            "headers[0]",
        ),
        (
            "routes.toml:12:11",
            "`ten minutes` is not a valid duration",
            "max_age",
        ),
        (
            "routes.toml:30:8",
            "unknown cors policy `shopp`",
            "known cors policies",
        ),
    ];
    for (at, message, detail) in expect {
        let line = all
            .lines()
            .position(|l| l.contains(at) && l.contains(message))
            .unwrap_or_else(|| panic!("no `{message}` at {at} in:\n{all}"));
        let with_hint: String = all
            .lines()
            .skip(line)
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(with_hint.contains(detail), "{detail} not in:\n{with_hint}");
    }
    // A misspelt default is reported once, at the gateway key.
    let (code, all) = check(
        r#"[gateway]
cors = "shp"

[cors.shop]
origins = ["https://shop.example.com"]

[services.o]
instances = ["127.0.0.1:9"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"

[[routes]]
name = "b"
match = { path = "/b/**" }
service = "o"
"#,
    );
    assert_eq!(code, 2, "{all}");
    assert_eq!(all.matches("unknown cors policy `shp`").count(), 1, "{all}");
    assert!(all.contains("routes.toml:2:8"), "{all}");
    assert!(all.contains("did you mean `shop`?"), "{all}");
    assert!(all.contains("(key `gateway.cors`)"), "{all}");
    // `true` names no policy.
    let (code, all) = check(
        r#"[services.o]
instances = ["127.0.0.1:9"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"
cors = true
"#,
    );
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("`true` names no policy"), "{all}");
}

#[test]
fn check_warns_about_null_and_explain_shows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        r#"[cors.shop]
origins = ["https://*.example.com", "null"]
methods = ["PUT"]
credentials = true

[services.o]
instances = ["127.0.0.1:9"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "o"
cors = "shop"
"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = ficus(&["check", p]);
    assert_eq!(code, 1, "warnings only: {out}{err}");
    assert!(
        out.contains("routes.toml:2:37")
            && out.contains("`null` is the origin of sandboxed frames"),
        "{out}"
    );
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        p,
        "OPTIONS",
        "/orders/1",
        "-H",
        "Origin: https://app.example.com",
        "-H",
        "Access-Control-Request-Method: PUT",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("cors: policy \"shop\": origins https://*.example.com, null; methods PUT"),
        "{out}"
    );
    assert!(
        out.contains("preflight: answered by the gateway with 204 (Access-Control-Allow-Origin: https://app.example.com); not forwarded, not authenticated"),
        "{out}"
    );
}

#[test]
fn reload_keeps_an_unchanged_policy_and_applies_a_changed_one() {
    let o = Origin::start("o");
    let config = |origins: &str, timeout: &str| {
        ConfigBuilder::new()
            .table("cors.shop", |t| {
                t.set("origins", origins).set("credentials", "true");
            })
            .service("o", &[o.addr()])
            .route_with("orders", "/orders/**", "o", |r| {
                r.set_str("cors", "shop")
                    .set("timeouts", format!("{{ total = \"{timeout}\" }}"));
            })
            .build()
    };
    let gw = Gateway::start(&config(r#"["https://a.test"]"#, "5s"));
    let allowed = |origin: &str| {
        send(&gw, "GET", "/orders/1", &[("Origin", origin)])
            .header("access-control-allow-origin")
            .map(String::from)
    };
    let id = |gw: &Gateway| {
        let p = gw.admin_get("/policies").unwrap().json();
        p["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == "cors")
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(allowed("https://a.test").as_deref(), Some("https://a.test"));
    let first = id(&gw);
    // Another part of the file changes: the policy instance is kept.
    gw.reload(&config(r#"["https://a.test"]"#, "6s"));
    assert_eq!(id(&gw), first);
    assert_eq!(allowed("https://a.test").as_deref(), Some("https://a.test"));
    // The policy changes: a new instance, the new list.
    gw.reload(&config(r#"["https://b.test"]"#, "6s"));
    assert_ne!(id(&gw), first);
    assert_eq!(allowed("https://a.test"), None);
    assert_eq!(allowed("https://b.test").as_deref(), Some("https://b.test"));
    let r = preflight(&gw, "/orders/1", "https://b.test", "POST", "");
    assert_eq!(r.status, 204, "{}", describe(&r));
    // A refused policy (`*` with credentials) fails the reload; the running one stays.
    let failed = || {
        metric_sum(
            &gw.metrics(),
            "ficus_config_reloads_total",
            &[("result", "failed")],
        )
        .unwrap_or(0.0)
    };
    let before = failed();
    gw.rewrite_config(&config(r#"["*"]"#, "6s"));
    poll_until(std::time::Duration::from_secs(5), || {
        (failed() > before).then_some(())
    })
    .unwrap_or_else(|| panic!("the reload was not refused\n{}", gw.logs()));
    assert!(gw
        .logs()
        .contains("cannot be used with `credentials = true`"));
    assert_eq!(allowed("https://b.test").as_deref(), Some("https://b.test"));
    assert_eq!(allowed("https://x.test"), None);
}

/// An upload too large for the gateway, declared or streamed: the 413 carries the route's
/// CORS headers, so a page can tell its user why.
#[test]
fn a_413_for_a_body_too_large_carries_cors_headers() {
    let o = upstream_with_cors_headers();
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .limits(|l| {
                l.set("max_body_bytes", 1000);
            })
            .table("cors.shop", shop_policy)
            .service("orders", &[o.addr()])
            .route_with("orders", "/orders/**", "orders", |r| {
                r.set_str("cors", "shop");
            })
            .build(),
    );
    let declared = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: {SHOP}\r\nOrigin: https://shop.example.com\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(5000)
    );
    let mut chunked = format!(
        "POST /orders/1 HTTP/1.1\r\nHost: {SHOP}\r\nOrigin: https://shop.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..5 {
        chunked.push_str(&format!("3e8\r\n{}\r\n", "y".repeat(1000)));
    }
    chunked.push_str("0\r\n\r\n");
    for req in [declared, chunked] {
        let r = raw_request(gw.listen, req.as_bytes());
        assert_eq!(r.status, 413, "{}", describe(&r));
        assert_eq!(
            r.header_all("access-control-allow-origin"),
            ["https://shop.example.com"],
            "{}",
            describe(&r)
        );
        assert_eq!(r.header_all("access-control-allow-credentials"), ["true"]);
        assert!(r.json()["request_id"].is_string());
    }
    // Another origin's 413 has none.
    let r = raw_request(
        gw.listen,
        format!("POST /orders/1 HTTP/1.1\r\nHost: {SHOP}\r\nOrigin: https://evil.test\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(cors_headers(&r), []);
}
