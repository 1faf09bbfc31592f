//! What the access log says about requests the gateway refused itself: the message the
//! client got (`error`) and which policy or limit refused (`detail`), so one request id
//! tells an operator why; and what it never says: a refused target's query, which may
//! carry a token.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn config(o: &Origin) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""json""#);
        })
        .table("rate_limits.tight", |t| {
            t.set(
                "limits",
                r#"[{ key = "client_ip", rate = "1/min", burst = 1, name = "per-ip" }]"#,
            );
        })
        .table("access.office", |t| {
            t.set("allow", r#"["10.0.0.0/8"]"#);
        })
        .table("cors.shop", |t| {
            t.set("origins", r#"["https://shop.example"]"#);
        })
        .service("o", &[o.addr()])
        .route_with("limited", "/limited/**", "o", |r| {
            r.set_str("rate_limit", "tight");
        })
        .route_with("office", "/office/**", "o", |r| {
            r.set_str("access", "office");
        })
        .route_with("shop", "/shop/**", "o", |r| {
            r.set_str("cors", "shop");
        })
        .route("open", "/**", "o")
        .build()
}

/// The JSON access-log line of the request with id `id`, once written.
fn line_of(gw: &Gateway, id: &str) -> Value {
    let mut found = None;
    poll_until(Duration::from_secs(5), || {
        found = gw
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| v["request_id"] == id);
        found.is_some().then_some(())
    });
    found.unwrap_or_else(|| panic!("no access-log line for {id}\n{}", gw.logs()))
}

#[test]
fn refusals_say_why_in_error_and_detail() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o));

    let first = get_raw(
        gw.listen,
        "/limited/a",
        "test.local",
        &[("X-Request-Id", "rl-1")],
    );
    assert_eq!(first.status, 200);
    let r = get_raw(
        gw.listen,
        "/limited/a",
        "test.local",
        &[("X-Request-Id", "rl-2")],
    );
    assert_eq!(r.status, 429);
    let l = line_of(&gw, "rl-2");
    assert_eq!(l["error"], "rate limit exceeded", "{l}");
    assert_eq!(l["detail"], "rate limit \"tight\": per-ip", "{l}");
    assert_eq!(
        line_of(&gw, "rl-1")["error"],
        "",
        "an admitted request has no error"
    );

    let r = get_raw(
        gw.listen,
        "/office/a",
        "test.local",
        &[("X-Request-Id", "acl-1")],
    );
    assert_eq!(r.status, 403);
    let l = line_of(&gw, "acl-1");
    assert_eq!(l["error"], "client address not allowed", "{l}");
    assert_eq!(l["detail"], "access policy \"office\"", "{l}");

    let r = raw_request(
        gw.listen,
        b"OPTIONS /shop/a HTTP/1.1\r\nHost: test.local\r\nX-Request-Id: cors-1\r\n\
          Origin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(r.status, 403);
    let l = line_of(&gw, "cors-1");
    assert!(
        l["error"].as_str().is_some_and(|e| e.contains("origin")),
        "{l}"
    );
    assert_eq!(l["detail"], "cors policy \"shop\"", "{l}");
    assert_eq!(o.requests(), 1, "only the admitted request went upstream");
}

#[test]
fn a_refused_targets_query_is_not_logged() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o));
    for (id, target) in [
        ("q-1", "/orders/%ZZ?access_token=SECRET1"),
        ("q-2", "/x/%252e/y?access_token=SECRET2"),
        ("q-3", "/nope%00x?api_key=SECRET3"),
    ] {
        let r = raw_request(
            gw.listen,
            format!(
                "GET {target} HTTP/1.1\r\nHost: test.local\r\nX-Request-Id: {id}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}");
        let l = line_of(&gw, id);
        let path = l["path"].as_str().unwrap_or_default();
        assert_eq!(
            Some(path),
            target.split('?').next(),
            "the refused target's path part, without its query: {l}"
        );
    }
    let logs = gw.logs();
    assert!(
        !logs.contains("SECRET"),
        "a query reached the logs:\n{logs}"
    );
    assert_eq!(o.requests(), 0);
}
