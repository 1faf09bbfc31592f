//! The test harness itself (tests/common): the origin's handlers, the process fixture and
//! the config builder do what tests/README.md says, so a failing gateway test points at the
//! gateway and not at its harness.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn harness_selftest() {
    selftest();
}

/// Routes match exact paths and `/**` prefixes, the fallback echoes, handlers see the
/// request, and every request but the health probe is recorded.
#[test]
fn origin_routes_answer_and_requests_are_recorded() {
    let o = Origin::builder("api")
        .route("/jwks", Reply::json(serde_json::json!({ "keys": [] })))
        .route("/files/**", |r: &Request| {
            Reply::text(format!("file {}", r.path_only()))
        })
        .route("/teapot", Reply::new(418).header("x-brew", "no"))
        .start();
    let r = get_raw(o.addr(), "/jwks", "t", &[]);
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({ "keys": [] }))
    );
    assert_eq!(r.header("x-origin"), Some("api"));
    assert_eq!(
        get_raw(o.addr(), "/files/a/b?x=1", "t", &[]).text(),
        "file /files/a/b"
    );
    assert_eq!(get_raw(o.addr(), "/files", "t", &[]).text(), "file /files");
    assert_eq!(
        get_raw(o.addr(), "/filesystem", "t", &[])
            .origin()
            .as_deref(),
        Some("api")
    );
    let r = get_raw(o.addr(), "/teapot", "t", &[]);
    assert_eq!((r.status, r.header("x-brew")), (418, Some("no")));

    let r = raw_request(
        o.addr(),
        b"POST /echo?q=1 HTTP/1.1\r\nHost: t\r\nX-Test: a\r\nX-Test: b\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.origin_path().as_deref(), Some("/echo?q=1"));
    assert_eq!(r.origin_header("x-test").as_deref(), Some("a, b"));
    assert_eq!(r.json()["body_len"], 5);
    let seen = o.last().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/echo?q=1")
    );
    assert_eq!(seen.header_all("x-test"), ["a", "b"]);
    assert_eq!(seen.body, b"hello");

    // Probes are answered and counted apart.
    assert_eq!(get_raw(o.addr(), "/health", "t", &[]).text(), "ok");
    o.set_health(503);
    let r = get_raw(o.addr(), "/health", "t", &[]);
    assert_eq!((r.status, r.text().as_str()), (503, "fail"));
    assert_eq!(o.health_checks(), 2);
    assert_eq!(o.requests(), 6);
    assert_eq!(o.received().len(), 6);

    // Handlers can be swapped while the origin runs.
    o.set_route("/jwks", Reply::new(500));
    o.set_fallback(Handler::echo().status(503));
    assert_eq!(get_raw(o.addr(), "/jwks", "t", &[]).status, 500);
    let r = get_raw(o.addr(), "/other", "t", &[]);
    assert_eq!((r.status, r.origin().as_deref()), (503, Some("api")));
}

/// A streamed body arrives chunk by chunk, with the pauses between.
#[test]
fn origin_streams_a_body_in_timed_chunks() {
    let o = Origin::builder("s")
        .route(
            "/stream",
            Reply::ok()
                .chunk(Duration::ZERO, "first ")
                .chunk(Duration::from_millis(400), "second"),
        )
        .start();
    let mut s = connect(o.addr());
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // When each chunk arrived.
    let (mut got, mut first_at, mut second_at) = (Vec::new(), None, None);
    let mut buf = [0u8; 256];
    while second_at.is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if first_at.is_none() && text.contains("first ") {
            first_at = Some(Instant::now());
        }
        if text.contains("second") {
            second_at = Some(Instant::now());
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    let pause = second_at.unwrap() - first_at.expect("first chunk before the second");
    assert!(
        pause >= Duration::from_millis(300),
        "chunks {pause:?} apart"
    );
    let r = get_raw(o.addr(), "/stream", "t", &[]);
    assert_eq!(r.text(), "first second");
}

/// Replies that are no answer: hang, close, reset; and exact bytes.
#[test]
fn origin_hangs_closes_resets_and_writes_raw_bytes() {
    let o = Origin::builder("bad")
        .route("/hang", Reply::hang())
        .route("/close", Reply::close())
        .route("/reset", Reply::reset())
        .route(
            "/raw",
            Reply::raw("HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"),
        )
        .route("/slow", Handler::echo().delay(Duration::from_millis(300)))
        .start();
    let err = try_raw_request(
        o.addr(),
        b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_millis(300),
    )
    .expect_err("no answer");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    let mut s = connect(o.addr());
    s.write_all(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(s.read(&mut [0u8; 16]).unwrap(), 0, "closed without a byte");

    let mut s = connect(o.addr());
    s.write_all(b"GET /reset HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let err = s.read(&mut [0u8; 16]).expect_err("reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    let mut s = connect(o.addr());
    s.write_all(b"GET /raw HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 64];
    let n = s.read(&mut got).unwrap();
    assert_eq!(&got[..n], b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n");

    let started = Instant::now();
    assert_eq!(get_raw(o.addr(), "/slow", "t", &[]).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(280));
}

/// `stop` refuses new connections and ends open ones; `restart` serves on the same address.
#[test]
fn origin_stops_and_restarts_on_the_same_address() {
    let o = Origin::builder("o").route("/hang", Reply::hang()).start();
    let mut held = connect(o.addr());
    held.write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(o.wait_requests(1, Duration::from_secs(5)));
    o.stop();
    assert!(TcpStream::connect(o.addr()).is_err());
    assert!(
        matches!(held.read(&mut [0u8; 16]), Ok(0) | Err(_)),
        "open connection ended"
    );
    o.restart();
    assert_eq!(
        get_raw(o.addr(), "/x", "t", &[]).origin().as_deref(),
        Some("o")
    );
}

fn sh(name: &str, script: &str) -> ProcessBuilder {
    ProcessBuilder::new(name, "/bin/sh").args(["-c", script])
}

/// A probe decides when a program is ready; its output is kept; stop ends it.
#[test]
fn process_is_ready_when_the_probe_says_so() {
    let started = Instant::now();
    let mut p = sh(
        "ready",
        "echo starting; sleep 0.3; echo ready now; exec sleep 30",
    )
    .ready(probe::log_line("ready now"))
    .start();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(p.stdout().contains("starting\nready now"), "{}", p.logs());
    assert!(p.is_running());
    let status = p.stop().expect("stopped");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

/// A program that exits, or never gets ready, fails the start with its output.
#[test]
fn process_start_failures_carry_the_output() {
    let e = sh("early", "echo boom >&2; exit 3")
        .ready(|_| false)
        .spawn()
        .err()
        .expect("exited before ready");
    assert!(e.exited, "{e}");
    assert!(e.to_string().contains("exit status: 3"), "{e}");
    assert!(e.logs.contains("boom"), "{e}");

    let e = sh("slow", "echo waiting; exec sleep 30")
        .ready(|_| false)
        .ready_timeout(Duration::from_millis(300))
        .spawn()
        .err()
        .expect("never ready");
    assert!(!e.exited, "{e}");
    assert!(e.reason.contains("not ready after"), "{e}");
    assert!(e.logs.contains("waiting"), "{e}");

    let e = ProcessBuilder::new("missing", "/nonexistent/tool")
        .spawn()
        .err()
        .expect("cannot run");
    assert!(e.reason.contains("tests/run.sh"), "{e}");
}

/// A program that ignores the stop signal is killed after the grace period; a process group
/// is stopped with all its members.
#[test]
fn process_stop_escalates_and_reaches_the_group() {
    let mut p = sh(
        "stubborn",
        "trap '' TERM; echo trapped; while :; do sleep 0.05; done",
    )
    .ready(probe::log_line("trapped"))
    .stop_grace(Duration::from_millis(300))
    .start();
    let started = Instant::now();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(p.stop().and_then(|s| s.signal()), Some(libc::SIGKILL));
    assert!(started.elapsed() >= Duration::from_millis(250));

    let mut p = sh("group", "sleep 30 & echo helper $!; wait")
        .ready(probe::log_line("helper"))
        .process_group()
        .start();
    let helper: i32 = p
        .stdout()
        .trim()
        .trim_start_matches("helper ")
        .parse()
        .unwrap();
    p.stop();
    let gone = poll_until(Duration::from_secs(5), || {
        // SAFETY: signal 0 only checks that the pid exists.
        (unsafe { libc::kill(helper, 0) } != 0).then_some(())
    });
    assert!(gone.is_some(), "helper {helper} outlived its group");
}

/// A program that loses its port to someone else (and exits) is started again on another.
#[test]
fn start_on_free_port_tries_another_port_after_an_early_exit() {
    let attempts = std::cell::Cell::new(0);
    let (mut p, port) = start_on_free_port(|port| {
        attempts.set(attempts.get() + 1);
        let script = if attempts.get() == 1 {
            "exit 1".to_string()
        } else {
            format!("echo listening on {port}; exec sleep 30")
        };
        sh("flaky", &script).ready(probe::log_line("listening"))
    });
    assert_eq!(attempts.get(), 2);
    assert!(p.stdout().contains(&format!("listening on {port}")));
    p.stop();
}

/// The builder's TOML is what `ficus check` accepts, and it reads as written.
#[test]
fn config_builder_writes_valid_routes_toml() {
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("grace_period", "1s").set_str("zone", "eu-1");
        })
        .limits(|l| {
            l.set("max_body_bytes", 1000);
        })
        .table("registry", |t| {
            t.set_str("token", "secret");
        })
        .service("api", &["127.0.0.1:9000".parse().unwrap()])
        .service_with("odd \"name\"", &[], |s| {
            s.set("instances", r#"[{ addr = "127.0.0.1:9001", weight = 2 }]"#);
        })
        .route("api", "/api/**", "api")
        .route_with("odd", "/odd/**", "odd \"name\"", |r| {
            r.set_str("strip_prefix", "/odd");
        })
        .edit_route("api", |r| {
            r.set("retries", "{ attempts = 2 }");
        })
        .build();
    let expected = r#"[gateway]
listen = ["{listen}"]
admin = "{admin}"
threads = 2
access_log = "text"
grace_period = "1s"
zone = "eu-1"

[gateway.limits]
max_body_bytes = 1000

[registry]
token = "secret"

[services.api]
instances = ["127.0.0.1:9000"]

[services."odd \"name\""]
instances = [{ addr = "127.0.0.1:9001", weight = 2 }]

[[routes]]
name = "api"
match = { path = "/api/**" }
service = "api"
retries = { attempts = 2 }

[[routes]]
name = "odd"
match = { path = "/odd/**" }
service = "odd \"name\""
strip_prefix = "/odd"
"#;
    assert_eq!(cfg, expected);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        cfg.replace("{listen}", "127.0.0.1:0")
            .replace("{admin}", "127.0.0.1:0"),
    )
    .unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
}
