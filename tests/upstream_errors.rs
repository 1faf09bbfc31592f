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
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.dead]
instances = ["{origin:dead}"]

[[routes]]
name = "dead"
match = { path = "/**" }
service = "dead"
"#),
        &[&dead],
    );
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
    let hang = Origin::builder("hang").hang().start();
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.hang]
instances = ["{origin:hang}"]

[[routes]]
name = "hang"
match = { path = "/**" }
service = "hang"
timeouts = { read = "300ms" }
"#),
        &[&hang],
    );
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
        .delay(Duration::from_millis(200))
        .start();
    let err = Origin::builder("err").status(503).start();
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.slow]
instances = ["{origin:slow}"]

[services.err]
instances = ["{origin:err}"]

[[routes]]
name = "slow"
match = { path = "/slow/**" }
service = "slow"
timeouts = { read = "3s" }

[[routes]]
name = "err"
match = { path = "/err/**" }
service = "err"
"#),
        &[&slow, &err],
    );
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
        .delay(Duration::from_secs(5))
        .start();
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.slow]
instances = ["{origin:slow}"]

[[routes]]
name = "slow"
match = { path = "/**" }
service = "slow"
timeouts = { connect = "1s", read = "10s", total = "500ms" }
"#),
        &[&slow],
    );
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
    /// Answers every request on the connection with the same raw bytes.
    fn answer_with(mut conn: std::net::TcpStream, response: &[u8]) {
        use std::io::{Read, Write};
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(response).is_err() {
                return;
            }
        }
    }
    type Serve = fn(std::net::TcpStream);
    let cases: [(&str, Serve); 3] = [
        ("101 without an upgrade request", |c| {
            answer_with(
                c,
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
        }),
        ("status 600", |c| {
            answer_with(c, b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n")
        }),
        ("status 999", |c| {
            answer_with(c, b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n")
        }),
    ];
    for (what, canned) in cases {
        let addr = raw_origin(canned);
        let cfg = GATEWAY.to_string()
            + &format!(
                r#"
[services.o]
instances = ["{addr}"]

[[routes]]
name = "all"
match = {{ path = "/**" }}
service = "o"
retries = {{ attempts = 1 }}
"#
            );
        let gw = Gateway::start(&cfg);
        let r = get_raw(gw.listen, "/x", "t", &[]);
        assert_eq!(r.status, 502, "{what}: {:?}", r.text());
        assert_clean_json_error(&r, &[]);
    }
}
