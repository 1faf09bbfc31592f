mod common;
use common::*;
use std::time::{Duration, Instant};

fn assert_clean_json_error(r: &RawResponse, forbidden: &[String]) {
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "content-type {:?}",
        r.header("content-type")
    );
    let j = r.json();
    assert!(j["error"].is_string(), "{j}");
    let rid = j["request_id"].as_str().expect("request_id");
    assert_eq!(r.header("x-request-id"), Some(rid));
    let body = r.text();
    for f in forbidden {
        assert!(!body.contains(f.as_str()), "error body leaks {f:?}: {body}");
    }
    for f in [
        "127.0.0.1",
        "Connection refused",
        "os error",
        "ECONNREFUSED",
        "panicked",
        "Error {",
    ] {
        assert!(!body.contains(f), "error body leaks {f:?}: {body}");
    }
}

#[test]
fn connection_refused_is_fast_502() {
    let dead = Origin::start("dead");
    let dead_addr = dead.addr();
    dead.stop();
    let cfg = ConfigBuilder::new()
        .service("dead", &[dead_addr])
        .route("dead", "/**", "dead")
        .build();
    let gw = Gateway::start(&cfg);
    for _ in 0..3 {
        let start = Instant::now();
        let r = gw.get("/x");
        let el = start.elapsed();
        assert_eq!(r.status, 502, "body {}", r.text());
        assert!(el < Duration::from_secs(1), "502 took {el:?}");
        assert_clean_json_error(&r, &[dead_addr.to_string(), dead_addr.port().to_string()]);
    }
}

#[test]
fn hanging_origin_is_504_after_read_timeout() {
    let hang = Origin::builder("hang").fallback(Reply::hang()).start();
    let cfg = ConfigBuilder::new()
        .service("hang", &[hang.addr()])
        .route_with("hang", "/**", "hang", |r| {
            r.set("timeouts", r#"{ read = "300ms" }"#);
        })
        .build();
    let gw = Gateway::start(&cfg);
    let start = Instant::now();
    let r = try_raw_request(
        gw.listen,
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(15),
    )
    .expect("response");
    let el = start.elapsed();
    assert_eq!(r.status, 504, "body {}", r.text());
    assert!(
        el >= Duration::from_millis(250) && el <= Duration::from_millis(2500),
        "504 after {el:?}, expected ~300ms"
    );
    assert_clean_json_error(&r, &[hang.addr().to_string()]);
    assert!(hang.requests() >= 1);
}

#[test]
fn slow_origin_within_timeout_and_error_status_pass_through() {
    let slow = Origin::builder("slow")
        .fallback(Handler::echo().delay(Duration::from_millis(200)))
        .start();
    let err = Origin::builder("err")
        .fallback(Handler::echo().status(503))
        .start();
    let cfg = ConfigBuilder::new()
        .service("slow", &[slow.addr()])
        .service("err", &[err.addr()])
        .route_with("slow", "/slow/**", "slow", |r| {
            r.set("timeouts", r#"{ read = "3s" }"#);
        })
        .route("err", "/err/**", "err")
        .build();
    let gw = Gateway::start(&cfg);
    let r = gw.get("/slow/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.origin().as_deref(), Some("slow"));
    let r = gw.get("/err/x");
    assert_eq!(r.status, 503, "origin status must pass through");
    assert_eq!(
        r.origin().as_deref(),
        Some("err"),
        "origin body must pass through"
    );
}

#[test]
fn total_timeout_bounds_slow_origin() {
    let slow = Origin::builder("slow")
        .fallback(Handler::echo().delay(Duration::from_secs(5)))
        .start();
    let cfg = ConfigBuilder::new()
        .service("slow", &[slow.addr()])
        .route_with("slow", "/**", "slow", |r| {
            r.set(
                "timeouts",
                r#"{ connect = "1s", read = "10s", total = "500ms" }"#,
            );
        })
        .build();
    let gw = Gateway::start(&cfg);
    let start = Instant::now();
    let r = try_raw_request(
        gw.listen,
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(15),
    )
    .expect("response");
    let el = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        el >= Duration::from_millis(400) && el < Duration::from_millis(3000),
        "504 after {el:?}"
    );
}

/// Status codes outside 100-599, and a `101 Switching Protocols` to a request that asked
/// for no upgrade, are invalid upstream answers: 502, not relayed (a relayed 101 would turn
/// the client's connection into a tunnel it never asked for).
#[test]
fn invalid_upstream_statuses_are_502() {
    let cases: [(&str, &[u8]); 3] = [
        (
            "101 without an upgrade request",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
        ("status 600", b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"),
        ("status 999", b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n"),
    ];
    for (what, canned) in cases {
        // Every request on the connection gets the same raw bytes.
        let o = Origin::builder("o").fallback(Reply::raw(canned)).start();
        let cfg = ConfigBuilder::new()
            .service("o", &[o.addr()])
            .route_with("all", "/**", "o", |r| {
                r.set("retries", "{ attempts = 1 }");
            })
            .build();
        let gw = Gateway::start(&cfg);
        let r = get_raw(gw.listen, "/x", "t", &[]);
        assert_eq!(r.status, 502, "{what}: {:?}", r.text());
        assert_clean_json_error(&r, &[]);
    }
}

/// An invalid answer is still an answer: with retries allowed and another instance ready,
/// the request is not sent again (responses are never retried).
#[test]
fn an_invalid_answer_is_not_retried() {
    let bad = Origin::builder("bad")
        .fallback(Reply::raw(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        ))
        .start();
    let good = Origin::start("good");
    let cfg = ConfigBuilder::new()
        .service_with("o", &[bad.addr(), good.addr()], |s| {
            s.set_str("lb", "round_robin");
        })
        .route_with("all", "/**", "o", |r| {
            r.set("retries", "{ attempts = 3 }");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let mut invalid = 0;
    for _ in 0..4 {
        let r = get_raw(gw.listen, "/x", "t", &[]);
        if r.status == 502 {
            invalid += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(invalid >= 1, "the bad instance was never picked");
    assert_eq!(
        bad.requests(),
        invalid,
        "each invalid answer came from one try only"
    );
    assert_eq!(
        good.requests() + bad.requests(),
        4,
        "no request was sent twice"
    );
}
