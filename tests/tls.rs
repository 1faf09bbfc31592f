mod common;
use common::*;
use std::net::SocketAddr;

struct TlsSetup {
    gw: Gateway,
    _o: Origin,
    ca: TestCa,
}

fn setup() -> TlsSetup {
    setup_with(|_| {})
}

/// Listeners: plain HTTP/1 (`gw.listeners[0]`), TLS with two certificates and HTTP/2 by
/// ALPN (`[1]`), h2c (`[2]`); `limits` edits `[gateway.limits]`.
fn setup_with(limits: impl FnOnce(&mut Table)) -> TlsSetup {
    let o = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    // the default (first) certificate also covers 127.0.0.1 so that an SNI-less client can verify it
    let a = ca.issue(dir.path(), "a", &["a.example", "127.0.0.1"]);
    let b = ca.issue(dir.path(), "b", &["b.example"]);
    let listen = format!(
        r#"["{{listen}}", {{ addr = "{{listen}}", tls = {{ certificates = [{{ cert = "{}", key = "{}", hosts = ["a.example"] }}, {{ cert = "{}", key = "{}", hosts = ["b.example"] }}] }}, http2 = true }}, {{ addr = "{{listen}}", h2c = true }}]"#,
        a.cert_path.display(),
        a.key_path.display(),
        b.cert_path.display(),
        b.key_path.display()
    );
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("listen", listen);
        })
        .limits(limits)
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::builder(&cfg).dir(dir).start();
    TlsSetup { gw, _o: o, ca }
}

fn tls_client(ca: &TestCa, tls_addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca.reqwest_cert())
        .resolve("a.example", tls_addr)
        .resolve("b.example", tls_addr)
        .resolve("c.example", tls_addr)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_certificate_and_first_is_default() {
    let s = setup();
    let port = s.gw.listeners[1].port();
    let c = tls_client(&s.ca, s.gw.listeners[1]);
    for host in ["a.example", "b.example"] {
        let r = c
            .get(format!("https://{host}:{port}/x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("https://{host} failed (wrong certificate served?): {e:?}"));
        assert_eq!(r.status(), 200);
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["origin"], "o");
        assert_eq!(j["headers"]["x-forwarded-proto"], "https", "{j}");
    }
    // no SNI (IP address): default certificate (a, which also covers 127.0.0.1)
    let r = c.get(format!("https://127.0.0.1:{port}/x")).send().await;
    assert!(
        r.is_ok(),
        "SNI-less connection should get the default certificate: {r:?}"
    );
    // unknown name: default certificate, which does not cover c.example -> verification fails
    let r = c.get(format!("https://c.example:{port}/x")).send().await;
    assert!(
        r.is_err(),
        "c.example must not verify (no certificate for it), got {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_via_alpn() {
    let s = setup();
    let c = tls_client(&s.ca, s.gw.listeners[1]);
    let r = c
        .get(format!("https://a.example:{}/x", s.gw.listeners[1].port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["origin"], "o");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_and_plain_http1() {
    let s = setup();
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .get(format!("http://{}/x", s.gw.listeners[2]))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["origin"], "o");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");

    let r = client().get(s.gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

/// A raw TLS connection to the gateway's TLS listener, trusting the test CA, HTTP/1.1 only.
fn raw_tls(
    ca: &TestCa,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    raw_tls_alpn(ca, addr, b"http/1.1")
}

/// The same, offering one ALPN protocol.
fn raw_tls_alpn(
    ca: &TestCa,
    addr: SocketAddr,
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(8)))
        .unwrap();
    ca.client_over(sock, alpn)
}

/// The request-head deadline also holds on TLS listeners: a client that never finishes its
/// head gets 408, and a well-behaved client (keep-alive, pipelined) is served as before.
#[test]
fn slow_request_head_over_tls_is_408() {
    use std::io::Write;
    let s = setup_with(|l| {
        l.set_str("header_read_timeout", "1s");
    });
    let mut slow = raw_tls(&s.ca, s.gw.listeners[1]);
    let started = std::time::Instant::now();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a.example\r\nX-Trickle: ")
        .unwrap();
    let out = read_until_close(&mut slow);
    let took = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(out.contains("\"request_id\""), "{out}");
    assert!(
        took >= std::time::Duration::from_millis(800) && took < std::time::Duration::from_secs(6),
        "408 after {took:?}"
    );

    let mut ok = raw_tls(&s.ca, s.gw.listeners[1]);
    ok.write_all(
        b"GET /t1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /t2 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let out = read_until_close(&mut ok);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.find("\"/t1\"").unwrap() < out.find("\"/t2\"").unwrap());
    assert!(out.contains("\"x-forwarded-proto\":\"https\""), "{out}");
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn raw_tcp(addr: SocketAddr) -> std::net::TcpStream {
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(8)))
        .unwrap();
    sock
}

/// Runs `f`, which reads until the gateway closes, and returns how long that took.
fn closed_after(f: impl FnOnce() -> String) -> (String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = f();
    (out, started.elapsed())
}

fn within(took: std::time::Duration, lo_ms: u64, hi_ms: u64) -> bool {
    took >= std::time::Duration::from_millis(lo_ms)
        && took < std::time::Duration::from_millis(hi_ms)
}

/// HTTP/1 clients on an h2c listener get the same head deadline as anywhere else, and short
/// HTTP/1 requests (fewer bytes than the HTTP/2 preface) are answered, not left waiting.
#[test]
fn h2c_listener_guards_http1_heads_too() {
    use std::io::Write;
    let s = setup_with(|l| {
        l.set_str("header_read_timeout", "1s");
    });
    let mut slow = raw_tcp(s.gw.listeners[2]);
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Trickle: ")
        .unwrap();
    let (out, took) = closed_after(|| read_until_close(&mut slow));
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(within(took, 800, 6000), "408 after {took:?}");

    let mut short = raw_tcp(s.gw.listeners[2]);
    short.write_all(b"GET /s HTTP/1.0\r\n\r\n").unwrap();
    let (out, took) = closed_after(|| read_until_close(&mut short));
    assert!(
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"),
        "{out:?}"
    );
    assert!(out.contains("\"/s\""), "{out}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "answered after {took:?}"
    );

    // Too many header lines on the h2c listener: the JSON 431, not pingora's bare 400.
    let mut big = raw_tcp(s.gw.listeners[2]);
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..300 {
        head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    big.write_all(&head).unwrap();
    let out = read_until_close(&mut big);
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    assert!(out.contains("\"request_id\""), "{out}");
}

/// A client that starts the HTTP/2 preface and stalls, on h2c or on TLS with ALPN h2, is
/// closed after the head deadline instead of holding the connection forever.
#[test]
fn stalled_http2_preface_is_closed() {
    use std::io::Write;
    let s = setup_with(|l| {
        l.set_str("header_read_timeout", "1s");
    });
    let mut h2c = raw_tcp(s.gw.listeners[2]);
    h2c.write_all(&H2_PREFACE[..10]).unwrap();
    let (out, took) = closed_after(|| read_until_close(&mut h2c));
    assert!(out.is_empty(), "{out:?}");
    assert!(within(took, 800, 6000), "closed after {took:?}");

    let mut tls = raw_tls_alpn(&s.ca, s.gw.listeners[1], b"h2");
    // Finish the TLS handshake (a TLS-level write), then send nothing at the HTTP/2 level.
    tls.conn.complete_io(&mut tls.sock).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    let (out, took) = closed_after(|| read_until_close(&mut tls));
    assert!(out.is_empty(), "{out:?}");
    assert!(within(took, 800, 6000), "closed after {took:?}");

    // A complete preface is served: the gateway answers with its own SETTINGS frame.
    let mut ok = raw_tcp(s.gw.listeners[2]);
    ok.write_all(H2_PREFACE).unwrap();
    ok.write_all(H2_SETTINGS).unwrap();
    let mut frame = [0u8; 9];
    std::io::Read::read_exact(&mut ok, &mut frame).unwrap();
    assert_eq!(frame[3], 4, "a SETTINGS frame first: {frame:?}");
}

/// `keepalive_timeout` closes idle client connections: HTTP/1 between requests, HTTP/2
/// with no stream open.
#[test]
fn idle_connections_close_after_keepalive_timeout() {
    use std::io::Write;
    let s = setup_with(|l| {
        l.set_str("keepalive_timeout", "1s");
    });
    let mut h1 = raw_tcp(s.gw.listen);
    h1.write_all(b"GET /k HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (out, took) = closed_after(|| read_until_close(&mut h1));
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(within(took, 800, 6000), "closed after {took:?}");

    let mut h2 = raw_tcp(s.gw.listeners[2]);
    h2.write_all(H2_PREFACE).unwrap();
    h2.write_all(H2_SETTINGS).unwrap();
    let (out, took) = closed_after(|| read_until_close(&mut h2));
    assert!(!out.is_empty(), "the server's SETTINGS came first");
    assert!(within(took, 800, 6000), "closed after {took:?}");
}

/// A gateway with an h2c listener in front of `o`; `service_extra`: more keys for its service.
fn h2c_gateway(o: &Origin, service_extra: impl FnOnce(&mut Table)) -> Gateway {
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("listen", r#"[{ addr = "{listen}", h2c = true }]"#);
        })
        .service_with("o", &[o.addr()], service_extra)
        .catch_all("o")
        .build();
    Gateway::start(&cfg)
}

/// An HTTP/2 (prior knowledge) client connection to the gateway's listener.
async fn h2c_client(gw: &Gateway) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

/// pingora reads HTTP/2 request bodies without a timeout, so `body_read_timeout` cannot
/// apply there; a client that stalls mid-body is ended when the service's upstream `read`
/// timeout runs out (the upstream waits for the rest of the body and stays silent). The
/// body being incomplete, that is the client's doing: 408 with a request id, and the stream
/// does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_body_ends_with_the_upstream_read_timeout() {
    let o = Origin::start("o");
    let gw = h2c_gateway(&o, |s| {
        s.set("timeouts", r#"{ read = "1s" }"#);
    });
    let mut client = h2c_client(&gw).await;
    let req = http::Request::post(format!("http://{}/upload", gw.listen))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut body) = client.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"only ten b"), false)
        .unwrap();
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(8), resp)
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 408);
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(within(took, 800, 6000), "408 after {took:?}");
}

/// An HTTP/2 client's cookies, split over several `cookie` fields, reach an HTTP/1.1
/// upstream as one line joined with "; " (RFC 9113 §8.2.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookie_fields_are_joined_for_http1() {
    let o = Origin::start("o");
    let gw = h2c_gateway(&o, |_| {});
    let mut client = h2c_client(&gw).await;
    let req = http::Request::get(format!("http://{}/cookies", gw.listen))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(8), resp)
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = o.last().unwrap();
    assert_eq!(seen.header_all("cookie"), ["a=1; b=2"]);
}

/// The readiness probe completes a TLS handshake on TLS listeners: starting the gateway
/// logs no handshake error (a bare TCP probe made pingora log one at every start).
#[test]
fn readiness_probe_leaves_no_handshake_error() {
    let s = setup();
    // Waiting for a log line that must *not* come: no state says "no error will follow", so
    // give pingora the time it takes to log a failed handshake after the probe.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logs = s.gw.logs();
    assert!(!logs.contains("handshake error"), "{logs}");
    assert_eq!(s.gw.admin_get("/readyz").unwrap().status, 200);
}

/// QA obs #2: a listener certificate paired with a key it was not issued for is a config
/// error. A reload with it is refused (the old certificates keep serving), and `run`
/// refuses to start with it (exit 2) instead of starting and failing every handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_listener_key_is_refused_at_reload_and_start() {
    let s = setup();
    let good = std::fs::read_to_string(s.gw.config_path()).unwrap();
    let bad = good.replacen("a.key\"", "b.key\"", 1);
    assert_ne!(good, bad, "config names a.key");
    s.gw.rewrite_config(&bad);
    let failed = poll_until(std::time::Duration::from_secs(10), || {
        let t = s.gw.metrics();
        (metric_sum(&t, "ficus_config_reloads_total", &[("result", "failed")]) == Some(1.0))
            .then_some(())
    });
    assert!(
        failed.is_some(),
        "reload with a mismatched key was not refused\n{}\nlogs:\n{}",
        s.gw.metrics(),
        s.gw.logs()
    );
    assert!(s.gw.logs().contains("do not match"), "{}", s.gw.logs());
    // The old certificates still serve.
    let r = tls_client(&s.ca, s.gw.listeners[1])
        .get(format!("https://a.example:{}/x", s.gw.listeners[1].port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("TLS after a refused reload: {e:?}"));
    assert_eq!(r.status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, &bad).unwrap();
    let (code, _, stderr) = ficus(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("do not match"), "{stderr}");
}

/// HTTP/2's `:authority` gets the same checks as `Host` on HTTP/1: a list or an impossible
/// port is 400 and reaches no upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_is_checked_like_host() {
    let o = Origin::start("o");
    let gw = h2c_gateway(&o, |_| {});
    for bad in ["a,b", "a:99999"] {
        let mut client = h2c_client(&gw).await;
        let req = http::Request::get(format!("http://{bad}/x"))
            .body(())
            .expect("a request http accepts");
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(8), resp)
            .await
            .expect("an answer")
            .expect("a response, not a reset");
        assert_eq!(resp.status(), 400, ":authority {bad}");
    }
    assert_eq!(o.requests(), 0, "no bad authority reached the upstream");
}
