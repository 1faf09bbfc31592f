//! CORS as a real browser enforces it: headless Chromium loads a page from one loopback
//! origin (`http://127.0.0.1:PAGE`) whose script calls the API through the gateway (another
//! origin, `http://127.0.0.1:GATEWAY`) with `fetch(..., {credentials: 'include'})`
//! (tests/common/cors_page.rs). What the script could read is what the policy allowed.
//!
//! Each test is one Chromium run (a few seconds) with several fetches. To check another kind
//! of gateway answer, add a route with [`Fixture::start`]'s `edit` and one more
//! [`FetchCase`], as the rate-limited route of the 429 test does.

mod common;
use common::*;

/// The API upstream, two page origins (one allowed, one not) and the gateway, whose
/// `[cors.shop]` admits only the first page's origin.
struct Fixture {
    api: Origin,
    allowed_page: Origin,
    other_page: Origin,
    gw: Gateway,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Routes: `orders` (`/orders/**`, CORS) and `private` (`/private/**`, CORS and a
    /// local HS256 auth policy, so unauthenticated calls get the gateway's 401); `edit` may
    /// add more (a rate-limited route).
    fn start(edit: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let secret = write_secret(dir.path(), "hmac.key", random_hex(32));
        let api = Origin::start("api");
        let allowed_page = Origin::start("allowed-page");
        let other_page = Origin::start("other-page");
        let page_origin = format!("http://{}", allowed_page.addr());
        let cfg = ConfigBuilder::new()
            .table("cors.shop", |t| {
                t.set("origins", format!("[{}]", toml_str(&page_origin)))
                    .set("methods", r#"["GET", "POST", "PUT"]"#)
                    .set("headers", r#"["X-Custom"]"#)
                    .set("expose_headers", r#"["X-Request-Id"]"#)
                    .set("credentials", "true")
                    .set_str("max_age", "600s");
            })
            .table("auth.local", |t| {
                t.set_str("issuer", "https://issuer.local")
                    .set("secret_file", toml_path(&secret))
                    .set("algorithms", r#"["HS256"]"#)
                    .set_str("audience", "urn:api:shop");
            })
            .service("api", &[api.addr()])
            .route_with("orders", "/orders/**", "api", |r| {
                r.set_str("cors", "shop");
            })
            .route_with("private", "/private/**", "api", |r| {
                r.set_str("cors", "shop").set_str("auth", "local");
            });
        let gw = Gateway::start(&edit(cfg).build());
        Fixture {
            api,
            allowed_page,
            other_page,
            gw,
            _dir: dir,
        }
    }

    /// Requests the API upstream received with `method`.
    fn api_saw(&self, method: &str) -> Vec<String> {
        self.api
            .received()
            .into_iter()
            .filter(|r| r.method == method)
            .map(|r| r.path)
            .collect()
    }
}

#[test]
fn the_allowed_origin_reads_answers_sends_preflighted_puts_and_reads_the_gateways_401() {
    let f = Fixture::start(|c| c);
    let results = run_page(
        &f.allowed_page,
        &[
            FetchCase::get("read", &f.gw.url("/orders/1"))
                .read_header("x-request-id")
                .read_header("x-origin"),
            FetchCase::new("put", "PUT", &f.gw.url("/orders/2"))
                .header("X-Custom", "custom-value")
                .header("Content-Type", "application/json")
                .body(r#"{"qty": 3}"#),
            FetchCase::get("unauthorized", &f.gw.url("/private/1"))
                .read_header("x-request-id")
                .read_header("www-authenticate"),
            FetchCase::new("delete", "DELETE", &f.gw.url("/orders/3")),
        ],
    );

    let read = &results["read"];
    assert!(read.ok, "{read:?}");
    assert_eq!(read.status, Some(200));
    let body: serde_json::Value = serde_json::from_str(read.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["path"], "/orders/1");
    // The page sent its own origin, and could read the exposed header but not another.
    assert_eq!(
        body["headers"]["origin"],
        format!("http://{}", f.allowed_page.addr())
    );
    assert!(
        read.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{read:?}"
    );
    assert_eq!(
        read.header("x-origin"),
        None,
        "an unexposed header was readable"
    );

    // A PUT with a custom header and a JSON body needs a preflight: the gateway answered it,
    // so the upstream saw exactly one PUT and no OPTIONS.
    let put = &results["put"];
    assert!(put.ok, "{put:?}");
    assert_eq!(put.status, Some(200));
    let body: serde_json::Value = serde_json::from_str(put.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["headers"]["x-custom"], "custom-value");
    assert_eq!(f.api_saw("PUT"), ["/orders/2"]);
    assert_eq!(f.api_saw("OPTIONS"), Vec::<String>::new());

    // The gateway's own 401 is readable: the page can tell "log in" from "network down".
    let unauthorized = &results["unauthorized"];
    assert!(unauthorized.ok, "{unauthorized:?}");
    assert_eq!(unauthorized.status, Some(401));
    let body: serde_json::Value =
        serde_json::from_str(unauthorized.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["request_id"].as_str(),
        unauthorized.header("x-request-id")
    );
    // Not listed in `expose_headers`, but the gateway's own answer exposes it: the page can
    // read why it was refused.
    assert!(
        unauthorized
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{unauthorized:?}"
    );
    assert!(f.api_saw("GET").iter().all(|p| p != "/private/1"));

    // DELETE is not in `methods`: the preflight is refused, the browser never sends it.
    let delete = &results["delete"];
    assert!(delete.blocked(), "{delete:?}");
    assert_eq!(f.api_saw("DELETE"), Vec::<String>::new());
}

#[test]
fn another_origin_is_blocked_by_the_browser() {
    let f = Fixture::start(|c| c);
    let results = run_page(
        &f.other_page,
        &[
            FetchCase::get("read", &f.gw.url("/orders/1")),
            FetchCase::new("put", "PUT", &f.gw.url("/orders/2")).header("X-Custom", "1"),
        ],
    );
    // A simple GET is sent (CORS guards what a page reads, not what it sends), but the
    // answer carries no CORS headers, so the script gets a TypeError, not the body.
    let read = &results["read"];
    assert!(read.blocked(), "{read:?}");
    assert_eq!(f.api_saw("GET"), ["/orders/1"]);
    // A preflighted PUT is refused at the preflight: the upstream never sees it.
    let put = &results["put"];
    assert!(put.blocked(), "{put:?}");
    assert_eq!(f.api_saw("PUT"), Vec::<String>::new());
    assert_eq!(f.api_saw("OPTIONS"), Vec::<String>::new());
    let m = f.gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_cors_preflights_total",
            &[("policy", "shop"), ("result", "refused_origin")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn a_429_from_the_rate_limit_is_readable_by_the_page() {
    let f = Fixture::start(|c| {
        c.table("rate_limits.tight", |t| {
            t.set(
                "limits",
                r#"[{ key = "client_ip", rate = "1/min", burst = 2 }]"#,
            );
        })
        .route_with("limited", "/limited/**", "api", |r| {
            r.set_str("cors", "shop").set_str("rate_limit", "tight");
        })
    });
    let results = run_page(
        &f.allowed_page,
        &[
            // A preflighted PUT: the preflight is answered before the rate limit and costs
            // the client nothing, the PUT itself takes one unit.
            FetchCase::new("put", "PUT", &f.gw.url("/limited/1")).header("X-Custom", "1"),
            FetchCase::get("second", &f.gw.url("/limited/2")),
            FetchCase::get("third", &f.gw.url("/limited/3"))
                .read_header("x-request-id")
                .read_header("retry-after")
                .read_header("ratelimit"),
        ],
    );
    assert_eq!(results["put"].status, Some(200), "{:?}", results["put"]);
    assert_eq!(
        results["second"].status,
        Some(200),
        "{:?}",
        results["second"]
    );
    let limited = &results["third"];
    assert!(limited.ok, "the page could not read the 429: {limited:?}");
    assert_eq!(limited.status, Some(429));
    let body: serde_json::Value = serde_json::from_str(limited.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["error"], "rate limit exceeded");
    assert_eq!(body["request_id"].as_str(), limited.header("x-request-id"));
    // How long to wait is readable without listing it in `expose_headers`.
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{limited:?}"
    );
    assert!(
        limited
            .header("ratelimit")
            .is_some_and(|v| v.contains("r=0")),
        "{limited:?}"
    );
    assert_eq!(
        f.api_saw("GET"),
        ["/limited/2"],
        "the limited request never reached the API"
    );
    assert_eq!(f.api_saw("OPTIONS"), Vec::<String>::new());
}
