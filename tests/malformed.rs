//! What attackers and broken clients send: framing tricks (request smuggling), malformed
//! heads and ambiguous hosts. Each must get a 4xx from the gateway and never reach the
//! upstream in a form the upstream could read differently.

mod common;
use common::*;

fn setup() -> (Gateway, Origin) {
    let o = Origin::start("o");
    (catch_all_gateway(&o, |c| c), o)
}

fn send(gw: &Gateway, req: &str) -> RawResponse {
    raw_request(gw.listen, req.as_bytes())
}

fn assert_4xx(r: &RawResponse, what: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: status {} (body {:?})",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
}

/// `Content-Length` and `Transfer-Encoding` together, in either order and spelling: the
/// request-smuggling classic. Refused with 400 before anything is forwarded, and the
/// connection closed (as Envoy and nginx do; RFC 9112 §6.3 would allow framing it by the
/// chunked coding).
#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let (gw, o) = setup();
    for head in [
        "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
        "Host-X: 1\r\ncontent-length: 6\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nCONTENT-LENGTH: 0\r\n",
    ] {
        let req = format!(
            "POST /cl-te HTTP/1.1\r\n{head}Host: t\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        );
        let r = send(&gw, &req);
        assert_eq!(
            r.status,
            400,
            "{head}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("connection"), Some("close"), "{head}");
        assert!(r.json()["request_id"].is_string());
    }
    assert_eq!(o.requests(), 0, "nothing reached the origin");
    // The request line first, then Content-Length as the first header line.
    let r = send(
        &gw,
        "POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nHost: t\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // Chunked alone still works.
    let r = send(
        &gw,
        "POST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(o.requests(), 1);
}

/// Framing that an upstream could read differently from the gateway is refused before
/// any upstream sees it: two Content-Length lines (even equal), a `Connection` option
/// that would make the gateway drop a framing header, a Host that is a list or has an
/// impossible port.
#[test]
fn ambiguous_framing_and_hosts_are_400() {
    let (gw, o) = setup();
    for (what, req) in [
        (
            "two equal Content-Length lines",
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        ),
        (
            "Connection naming Content-Length",
            "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: Content-Length, close\r\n\r\nabc",
        ),
        (
            "Connection naming Transfer-Encoding",
            "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding, close\r\n\r\n0\r\n\r\n",
        ),
        ("Host list", "GET /x HTTP/1.1\r\nHost: a,b\r\nConnection: close\r\n\r\n"),
        ("Host port", "GET /x HTTP/1.1\r\nHost: a:99999\r\nConnection: close\r\n\r\n"),
        ("Host markup", "GET /x HTTP/1.1\r\nHost: a<b>\r\nConnection: close\r\n\r\n"),
        ("Host quote", "GET /x HTTP/1.1\r\nHost: a\"b\r\nConnection: close\r\n\r\n"),
        (
            "HTTP/1.0 absolute-form with a bad authority",
            "GET http://a,b/x HTTP/1.0\r\n\r\n",
        ),
    ] {
        let r = send(&gw, req);
        assert_eq!(r.status, 400, "{what}: {:?}", String::from_utf8_lossy(&r.body));
        assert!(r.header("x-request-id").is_some(), "{what}: a request id");
    }
    assert_eq!(o.requests(), 0, "none of them reached the upstream");
}

/// TRACE (which echoes credentials back: cross-site tracing) is 405 unless the route
/// lists it.
#[test]
fn trace_only_where_a_route_lists_it() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .route_with("debug", "/debug/**", "o", |r| {
            r.set("match", r#"{ path = "/debug/**", methods = ["TRACE"] }"#);
        })
        .catch_all("o")
        .build();
    let gw = Gateway::start(&cfg);
    let r = send(
        &gw,
        "TRACE /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    let r = send(
        &gw,
        "TRACK /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405, "IIS's TRACK does the same");
    assert_eq!(o.requests(), 0);
    let r = send(
        &gw,
        "TRACE /debug/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(o.last().unwrap().method, "TRACE");
}

#[test]
fn conflicting_content_lengths_are_400() {
    let (gw, o) = setup();
    let r = send(
        &gw,
        "POST /two-cl HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
    );
    assert_eq!(r.status, 400);
    assert_eq!(o.requests(), 0);
}

#[test]
fn unknown_transfer_coding_is_refused() {
    let (gw, o) = setup();
    let r = send(
        &gw,
        "POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(
        (400..=501).contains(&r.status) && r.status != 404,
        "status {}",
        r.status
    );
    assert_eq!(o.requests(), 0);
}

#[test]
fn malformed_heads_are_400() {
    let (gw, o) = setup();
    for (what, req) in [
        (
            "space in a header name",
            "GET /a HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
        ),
        ("no colon", "GET /a HTTP/1.1\r\nHost: t\r\nnocolon\r\n\r\n"),
        ("garbage request line", "HELLO\r\n\r\n"),
        (
            "NUL in a header value",
            "GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "obsolete line folding",
            "GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  b\r\n\r\n",
        ),
    ] {
        let r = send(&gw, req);
        assert_4xx(&r, what);
    }
    assert_eq!(o.requests(), 0, "none of them may reach the origin");
    assert_eq!(gw.get("/still-up").status, 200);
}

/// A body that breaks its own chunked framing is the client's fault: 400, not a 5xx. (The
/// head may already be on its way upstream, since bodies are streamed.)
#[test]
fn broken_chunked_body_is_400() {
    let (gw, _o) = setup();
    let r = send(
        &gw,
        "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 400, "body {:?}", String::from_utf8_lossy(&r.body));
    assert!(r.header("x-request-id").is_some());
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with two, is refused.
#[test]
fn missing_or_repeated_host_is_400() {
    let (gw, o) = setup();
    let r = send(&gw, "GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "no Host");
    let r = send(
        &gw,
        "GET /twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "two Hosts");
    let r = send(
        &gw,
        "GET /badhost HTTP/1.1\r\nHost: a/b@c\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "a Host that is not host[:port]");
    assert_eq!(o.requests(), 0);
    // HTTP/1.0 needs no Host.
    let r = send(&gw, "GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
}

fn connect(gw: &Gateway) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(gw.listen).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    s
}

/// RFC 9112 §9.3.2: pipelined requests are answered in order. (pingora alone would answer
/// the first and drop the rest without closing, leaving the client waiting.)
#[test]
fn pipelined_requests_are_answered_in_order() {
    use std::io::Write;
    let (gw, o) = setup();
    let mut s = connect(&gw);
    s.write_all(
        b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\nGET /p3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = read_until_close(&mut s);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the connection should close after the third answer"
    );
    let paths: Vec<String> = o.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/p1", "/p2", "/p3"]);
    let (a, b, c) = (
        out.find("\"/p1\"").unwrap(),
        out.find("\"/p2\"").unwrap(),
        out.find("\"/p3\"").unwrap(),
    );
    assert!(a < b && b < c, "answers out of order: {out}");
}

/// Requests pipelined behind one with a body (sized or chunked, with a stray CRLF after
/// it, all in one packet) are all answered, in order, and each upstream request gets
/// exactly its own body.
#[test]
fn pipelining_behind_a_body_answers_every_request() {
    use std::io::Write;
    let (gw, o) = setup();
    let mut s = connect(&gw);
    s.write_all(
        b"POST /b1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          POST /b2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\r\n\
          GET /b3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = read_until_close(&mut s);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "left hanging: {out}"
    );
    let got: Vec<(String, Vec<u8>)> = o.received().into_iter().map(|r| (r.path, r.body)).collect();
    assert_eq!(
        got,
        [
            ("/b1".to_string(), b"abc".to_vec()),
            ("/b2".to_string(), b"de".to_vec()),
            ("/b3".to_string(), Vec::new()),
        ]
    );
}

/// RFC 9112 §2.2: empty lines before a request line are ignored (one or several).
#[test]
fn empty_lines_before_the_request_line_are_ignored() {
    let (gw, o) = setup();
    let r = send(
        &gw,
        "\r\n\r\n\r\nGET /after-blank HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(o.last().unwrap().path, "/after-blank");
}

/// RFC 9112 §3.2.2: servers must accept the absolute form. It is routed on its path, and
/// the upstream gets the request in origin form.
#[test]
fn absolute_form_target_is_routed_on_its_path() {
    let (gw, o) = setup();
    let r = send(
        &gw,
        "GET http://t/abs/x?y=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let seen = o.last().unwrap();
    assert_eq!(seen.path, "/abs/x?y=1");
    assert_eq!(seen.header("host"), Some("t"));
}

/// An absolute-form target whose authority differs from the `Host` header is ambiguous:
/// one reading of the host could pick the route while the upstream sees the other. It is
/// refused (pingora's parser does this) and reaches no upstream; a matching pair is served,
/// routed on that host.
#[test]
fn absolute_form_with_a_different_host_header_reaches_no_upstream() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let cfg = ConfigBuilder::new()
        .service("a", &[a.addr()])
        .service("b", &[b.addr()])
        .route_with("admin-host", "/**", "a", |r| {
            r.set("match", r#"{ path = "/**", host = "admin.example" }"#);
        })
        .route("rest", "/**", "b")
        .build();
    let gw = Gateway::start(&cfg);
    for req in [
        "GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
        "GET http://public.example/y HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n",
    ] {
        let r = send(&gw, req);
        assert_eq!(r.status, 400, "{req:?}");
    }
    assert!(a.received().is_empty() && b.received().is_empty());

    let r = send(
        &gw,
        "GET http://admin.example/z HTTP/1.1\r\nHost: admin.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = a.last().expect("routed on the host");
    assert_eq!(seen.path, "/z");
    assert_eq!(seen.header("host"), Some("admin.example"));
    assert_eq!(seen.header("x-forwarded-host"), Some("admin.example"));
    assert!(b.received().is_empty());
}

/// `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7): the gateway answers it
/// itself, with no upstream involved. `*` with any other method is malformed.
#[test]
fn options_asterisk_is_answered_by_the_gateway() {
    let (gw, o) = setup();
    let r = send(
        &gw,
        "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let allow = r.header("allow").expect("an Allow header");
    assert!(
        allow.contains("GET") && allow.contains("OPTIONS"),
        "{allow}"
    );
    assert!(r.header("x-request-id").is_some());
    assert!(r.body.is_empty());
    assert!(o.received().is_empty(), "OPTIONS * reached the upstream");

    let r = send(
        &gw,
        "GET * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert!(o.received().is_empty());
}

/// Only `chunked` is a transfer coding the gateway forwards. Anything else (`identity,
/// chunked`, `gzip, chunked`, ...) is a coding the upstream may read differently from the
/// gateway, the root of many request-smuggling tricks: refused with 501 (RFC 9112 §6.1),
/// and the connection is closed because the body's framing is unknown.
#[test]
fn transfer_codings_other_than_chunked_are_501() {
    let (gw, o) = setup();
    for te in [
        "identity, chunked",
        "gzip, chunked",
        "chunked, chunked",
        "chunked\r\nTransfer-Encoding: chunked",
    ] {
        let r = send(
            &gw,
            &format!("POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        );
        assert_eq!(
            r.status,
            501,
            "{te}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(String::from_utf8_lossy(&r.body).contains("\"request_id\""));
        assert_eq!(r.header("connection"), Some("close"), "{te}");
    }
    assert_eq!(
        o.requests(),
        0,
        "an odd transfer coding reached the upstream"
    );
    // Plain chunked (any case) is fine and reaches the upstream as chunked.
    let r = send(
        &gw,
        "POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = o.last().unwrap();
    assert_eq!(seen.body, b"abc");
}

/// `Content-Length: 5, 5` (a list of equal values, which RFC 9110 §8.6 lets a recipient
/// accept) reaches the upstream as one plain number, never as the list.
#[test]
fn content_length_list_is_forwarded_as_one_number_or_refused() {
    let (gw, o) = setup();
    for cl in ["5, 5", "5,5", "05, 5"] {
        let r = send(
            &gw,
            &format!("POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: {cl}\r\nConnection: close\r\n\r\nhello"),
        );
        if r.status == 200 {
            let seen = o.last().unwrap();
            assert_eq!(seen.header("content-length"), Some("5"), "{cl}");
            assert_eq!(seen.body, b"hello");
        } else {
            assert_eq!(r.status, 400, "{cl}");
        }
    }
    assert_eq!(o.requests(), 0, "the list reached the upstream");
    // A plain number with surrounding spaces is fine.
    let r = send(
        &gw,
        "POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length:  5 \r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.status, 200);
    assert_eq!(o.last().unwrap().body, b"hello");
}

/// A TLS client on a plain listener is closed at once (its ClientHello can never become a
/// request head), not left waiting for the head deadline.
#[test]
fn tls_on_a_plain_listener_is_closed_at_once() {
    use std::io::{Read, Write};
    let (gw, o) = setup();
    let mut s = connect(&gw);
    // The start of a TLS 1.2 ClientHello record.
    s.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ])
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut b = [0u8; 16];
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(o.requests(), 0);
}
