mod common;
use common::*;
use std::time::{Duration, Instant};

fn setup() -> (Gateway, Origin) {
    let o = Origin::start("o");
    let gw = catch_all_gateway(&o, |c| {
        c.limits(|l| {
            l.set("max_header_bytes", 4096)
                .set("max_headers", 20)
                .set("max_uri_bytes", 1024)
                .set("max_body_bytes", 1000)
                .set_str("body_read_timeout", "1s");
        })
    });
    (gw, o)
}

fn get_with_headers(gw: &Gateway, path: &str, headers: &[(String, String)]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_request(gw.listen, req.as_bytes())
}

fn assert_json_error(r: &RawResponse) {
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "status {} content-type {:?}",
        r.status,
        r.header("content-type")
    );
    let j = r.json();
    assert!(j["error"].is_string(), "{j}");
    assert_eq!(r.header("x-request-id"), j["request_id"].as_str());
}

#[test]
fn too_many_headers_is_431() {
    let (gw, o) = setup();
    let few: Vec<_> = (0..10)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    assert_eq!(get_with_headers(&gw, "/ok", &few).status, 200);
    let mut many: Vec<_> = (0..300)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    many.push(("X-Request-Id".to_string(), "client-id-7".to_string()));
    let r = get_with_headers(&gw, "/many", &many);
    assert_eq!(r.status, 431, "301 headers with max_headers = 20");
    assert_json_error(&r);
    // Refused by the head layer (past pingora's own 256-field limit), it still keeps the
    // client's request id, and is counted.
    assert_eq!(r.header("x-request-id"), Some("client-id-7"));
    assert_eq!(r.json()["request_id"], "client-id-7");
    let m = gw.admin_get("/metrics").unwrap().text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("ficus_requests_total{") && l.contains(r#"status="431""#)),
        "{m}"
    );
    assert_eq!(
        o.requests(),
        1,
        "the rejected request must not reach the origin"
    );
}

#[test]
fn oversized_headers_is_431() {
    let (gw, o) = setup();
    let ok = vec![("x-big".to_string(), "a".repeat(2000))];
    assert_eq!(get_with_headers(&gw, "/ok", &ok).status, 200);
    let one_big = vec![("x-big".to_string(), "a".repeat(5000))];
    assert_eq!(
        get_with_headers(&gw, "/big", &one_big).status,
        431,
        "one 5000-byte header, limit 4096"
    );
    let many_medium: Vec<_> = (0..10)
        .map(|i| (format!("x-m{i}"), "b".repeat(500)))
        .collect();
    assert_eq!(
        get_with_headers(&gw, "/medium", &many_medium).status,
        431,
        "10 x 500-byte headers (sum > 4096)"
    );
    assert_eq!(o.requests(), 1);
}

#[test]
fn long_uri_is_414() {
    let (gw, o) = setup();
    let ok = format!("/{}", "a".repeat(900));
    assert_eq!(gw.get(&ok).status, 200);
    let long_path = format!("/{}", "a".repeat(2000));
    let r = gw.get(&long_path);
    assert_eq!(r.status, 414, "2001-byte path, limit 1024");
    assert_json_error(&r);
    let long_query = format!("/x?q={}", "q".repeat(2000));
    assert_eq!(
        gw.get(&long_query).status,
        414,
        "long query counts towards the URI"
    );
    assert_eq!(o.requests(), 1);
}

fn post_cl(gw: &Gateway, len: usize, declared: usize) -> RawResponse {
    let mut req =
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n")
            .into_bytes();
    req.extend(std::iter::repeat_n(b'x', len));
    raw_request(gw.listen, &req)
}

fn post_chunked(gw: &Gateway, total: usize, chunk: usize) -> RawResponse {
    let mut req = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk);
        req.extend(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'y', n));
        req.extend(b"\r\n");
        left -= n;
    }
    req.extend(b"0\r\n\r\n");
    raw_request(gw.listen, &req)
}

#[test]
fn content_length_over_limit_is_413() {
    let (gw, o) = setup();
    let r = post_cl(&gw, 500, 500);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 500);
    let r = post_cl(&gw, 1000, 1000);
    assert_eq!(r.status, 200, "exactly max_body_bytes is allowed");
    assert_eq!(r.json()["body_len"], 1000);
    let r = post_cl(&gw, 2000, 2000);
    assert_eq!(r.status, 413);
    assert_json_error(&r);
    // declared only, no body sent: must be rejected from the header alone
    let r = post_cl(&gw, 0, 50_000_000);
    assert_eq!(r.status, 413);
    assert_eq!(o.requests(), 2, "413s must not reach the origin");
}

#[test]
fn chunked_body_over_limit_is_413() {
    let (gw, _o) = setup();
    let r = post_chunked(&gw, 500, 100);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 500);
    let r = post_chunked(&gw, 3000, 500);
    assert_eq!(r.status, 413, "3000-byte chunked body, limit 1000");
}

#[test]
fn slow_body_is_408() {
    let (gw, _o) = setup();
    let start = Instant::now();
    let mut req =
        b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
            .to_vec();
    req.extend(b"0123456789"); // 10 of 100 bytes, then nothing
    let r =
        try_raw_request(gw.listen, &req, Duration::from_secs(15)).expect("a response, not a hang");
    let el = start.elapsed();
    assert_eq!(r.status, 408, "body_read_timeout = 1s");
    assert!(
        el >= Duration::from_millis(800) && el < Duration::from_secs(8),
        "408 after {el:?}"
    );
}

/// Beyond what pingora's parser accepts at all (256 header lines, a 1 MiB head) the answer
/// must still be 431 (or 414 for a request line that never ends), not a generic 400.
#[test]
fn heads_beyond_the_parsers_own_limits_are_431_or_414() {
    let (gw, o) = setup();
    let lots: Vec<_> = (0..300)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let r = get_with_headers(&gw, "/lots", &lots);
    assert_eq!(r.status, 431, "300 header lines");
    assert_json_error(&r);

    let huge = vec![("x-huge".to_string(), "h".repeat(2 * 1024 * 1024))];
    let r = get_with_headers(&gw, "/huge", &huge);
    assert_eq!(r.status, 431, "one 2 MiB header");
    assert_json_error(&r);

    let endless_line = format!("GET /{} HTTP/1.1\r\n", "p".repeat(2 * 1024 * 1024));
    let r = raw_request(gw.listen, endless_line.as_bytes());
    assert_eq!(r.status, 414, "a 2 MiB request line");
    assert_json_error(&r);

    assert_eq!(o.requests(), 0, "none of them may reach the origin");
    // The gateway is still there for the next client.
    assert_eq!(gw.get("/after").status, 200);
}

/// A client that stops sending its body while the upstream waits for it is the slow one:
/// 408, and nothing counted against the upstream, even when the route's upstream `read`
/// timeout runs out before `body_read_timeout` (else a few stalled uploads open a breaker).
#[test]
fn stalled_upload_is_the_clients_fault_not_the_upstreams() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .limits(|l| {
            l.set_str("body_read_timeout", "2s");
        })
        .service_with("o", &[o.addr()], |s| {
            s.set(
                "breaker",
                r#"{ consecutive_failures = 2, open_for = "30s" }"#,
            )
            .set("timeouts", r#"{ read = "500ms" }"#);
        })
        .catch_all("o")
        .build();
    let gw = Gateway::start(&cfg);
    for i in 0..3 {
        let req = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello";
        let r = try_raw_request(gw.listen, req, Duration::from_secs(10))
            .expect("a response, not a hang");
        assert_eq!(r.status, 408, "stalled upload #{i}: {}", r.text());
        assert_json_error(&r);
    }
    let r = gw.get("/after");
    assert_eq!(r.status, 200, "the breaker must stay closed: {}", r.text());
    let metrics = gw.admin_get("/metrics").unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"ficus_upstream_errors_total{service="o",kind="read_timeout"} 0"#),
        "no upstream read timeout may be counted:\n{metrics}"
    );
}

/// A client that stops reading the response is cut off after `send_timeout` (slow-read
/// attack), and the access log says why.
#[test]
fn client_that_stops_reading_is_cut_off_after_send_timeout() {
    use std::io::{Read, Write};
    // A 64 MiB answer, streamed: far more than the socket buffers hold.
    let big = Origin::builder("big")
        .fallback(Reply::ok().repeat_body(b'x', 64 << 20))
        .start();
    let cfg = ConfigBuilder::new()
        .limits(|l| {
            l.set_str("send_timeout", "1s");
        })
        .service("big", &[big.addr()])
        .route("big", "/**", "big")
        .build();
    let gw = Gateway::start(&cfg);
    let mut s = std::net::TcpStream::connect(gw.listen).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // Stop reading: the socket buffers fill, and the gateway's writes stall.
    let logged = poll_until(Duration::from_secs(10), || {
        let logs = gw.logs();
        logs.contains("client stopped reading the response")
            .then_some(())
    });
    assert!(logged.is_some(), "not cut off:\n{}", gw.logs());
}

/// The answer to an over-long request target does not depend on how its bytes were split
/// into packets: 100 KiB of target in 16 KiB writes, or in one, is 414 every time.
#[test]
fn an_over_long_target_is_414_however_it_arrives() {
    use std::io::Write;
    let o = Origin::start("o");
    let gw = catch_all_gateway(&o, |c| c);
    let req = format!(
        "GET /x?q={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    for attempt in 0..10 {
        let mut s = std::net::TcpStream::connect(gw.listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if attempt % 2 == 0 {
            for piece in req.as_bytes().chunks(16 * 1024) {
                // The gateway may answer and close before the last piece.
                if s.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            let _ = s.write_all(req.as_bytes());
        }
        let r = read_response(&mut s, Instant::now() + Duration::from_secs(5)).expect("an answer");
        assert_eq!(r.status, 414, "attempt {attempt}: {}", r.text());
    }
    // A target just under the limit still goes through.
    let ok = format!("/x?q={}", "a".repeat(8 * 1024 - 100));
    assert_eq!(gw.get(&ok).status, 200);
    assert_eq!(o.requests(), 1);
}

/// Heads that break two limits at once get one answer whatever the packets: a target just
/// over `max_uri_bytes` followed by a 60 KB header is 414 (the target is judged first), and
/// a 70 KiB header name is 431, whether the whole head arrives in one write or in
/// 1460-byte packets (found by the black-box pass: 414 or 431, 400 or 431, by the split).
#[test]
fn heads_over_two_limits_get_one_answer_however_they_arrive() {
    use std::io::Write;
    let o = Origin::start("o");
    let gw = catch_all_gateway(&o, |c| c);
    let uri_and_header = format!(
        "GET /x?q={} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8193),
        "b".repeat(60_000)
    );
    let long_name = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\n{}: v\r\n\r\n",
        "n".repeat(71_680)
    );
    for (req, want) in [(&uri_and_header, 414), (&long_name, 431)] {
        for packet in [usize::MAX, 1460] {
            let mut s = std::net::TcpStream::connect(gw.listen).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for piece in req.as_bytes().chunks(packet.min(req.len())) {
                if s.write_all(piece).is_err() {
                    break;
                }
                if packet != usize::MAX {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let r =
                read_response(&mut s, Instant::now() + Duration::from_secs(5)).expect("an answer");
            assert_eq!(r.status, want, "{packet}-byte packets: {}", r.text());
        }
    }
    assert_eq!(o.requests(), 0);
}
