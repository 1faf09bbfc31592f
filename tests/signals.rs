mod common;
use common::*;
use std::time::{Duration, Instant};

fn config(o: &Origin, grace: &str, read_timeout: &str) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("grace_period", grace);
        })
        .service("o", &[o.addr()])
        .route_with("all", "/**", "o", |r| {
            r.set(
                "timeouts",
                format!("{{ read = {} }}", toml_str(read_timeout)),
            );
        })
        .build()
}

/// Waits until the gateway shows it took the SIGTERM: `/readyz` says draining, and the
/// proxy listener no longer accepts connections.
fn wait_drain_started(gw: &Gateway) {
    assert!(
        gw.wait_draining(Duration::from_secs(5)),
        "/readyz never said draining after SIGTERM"
    );
    // Not asserted here: whether new connections are refused is what the tests check.
    poll_until(Duration::from_secs(2), || {
        std::net::TcpStream::connect_timeout(&gw.listen, Duration::from_millis(200))
            .is_err()
            .then_some(())
    });
}

fn spawn_request(
    gw: &Gateway,
    timeout: Duration,
) -> std::thread::JoinHandle<std::io::Result<RawResponse>> {
    let addr = gw.listen;
    std::thread::spawn(move || {
        try_raw_request(
            addr,
            b"GET /inflight HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            timeout,
        )
    })
}

#[test]
fn sigint_exits_fast() {
    let o = Origin::start("o");
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    assert_eq!(gw.get("/x").status, 200);
    let t = Instant::now();
    gw.signal(libc::SIGINT);
    let st = gw.wait_exit(Duration::from_secs(5));
    let el = t.elapsed();
    assert!(st.is_some(), "still running 5s after SIGINT");
    // Within 1 s also after access-log lines were written (the log writers once held it
    // up by their 1 s flush timeout).
    assert!(
        el < Duration::from_secs(1),
        "SIGINT exit took {el:?} (spec: within 1s)"
    );
}

#[test]
fn sigterm_when_idle_exits_promptly() {
    let o = Origin::start("o");
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    assert_eq!(gw.get("/x").status, 200);
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    let st = gw.wait_exit(Duration::from_secs(12));
    let el = t.elapsed();
    assert!(st.is_some(), "still running 12s after SIGTERM");
    assert!(
        el < Duration::from_secs(1),
        "idle SIGTERM exit took {el:?}; grace_period is 10s but nothing was in flight"
    );
}

#[test]
fn sigterm_lets_inflight_request_finish_and_refuses_new_ones() {
    let o = Origin::builder("o")
        .fallback(Handler::echo().delay(Duration::from_millis(1500)))
        .start();
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    let inflight = spawn_request(&gw, Duration::from_secs(15));
    assert!(
        o.wait_requests(1, Duration::from_secs(5)),
        "request never reached origin"
    );
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    wait_drain_started(&gw);
    let late = try_raw_request(
        gw.listen,
        b"GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(4),
    );
    if let Ok(r) = &late {
        assert_ne!(
            r.status, 200,
            "a new connection after SIGTERM was served normally"
        );
    }

    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request must complete");
    assert_eq!(
        r.status,
        200,
        "in-flight request must get its response: {}",
        r.text()
    );
    assert_eq!(r.origin().as_deref(), Some("o"));
    let st = gw.wait_exit(Duration::from_secs(10));
    assert!(st.is_some(), "did not exit after draining");
    let el = t.elapsed();
    assert!(
        el < Duration::from_secs(5),
        "exit {el:?} after SIGTERM; in-flight work was ~1.5s"
    );
}

#[test]
fn readyz_is_503_while_draining() {
    let o = Origin::builder("o")
        .fallback(Handler::echo().delay(Duration::from_secs(3)))
        .start();
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    assert_eq!(gw.admin_get("/healthz").unwrap().status, 200);
    let inflight = spawn_request(&gw, Duration::from_secs(15));
    assert!(o.wait_requests(1, Duration::from_secs(5)));
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    // The in-flight request keeps the gateway draining for ~3s. Throughout, the admin
    // listener must stay up and /readyz must say 503 (so load balancers take us out).
    let mut seen = Vec::new();
    for at in [500u64, 1000, 1500, 2000] {
        // Sampling over the drain is the behaviour under test, so these are timed reads.
        let wait = Duration::from_millis(at).saturating_sub(t.elapsed());
        std::thread::sleep(wait);
        let got = match gw.admin_get("/readyz") {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        seen.push(format!("{at}ms: {got}"));
    }
    assert!(
        seen.iter().all(|s| s.ends_with(": 503")),
        "/readyz while draining (after SIGTERM, in-flight request pending): {seen:?}"
    );
    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request must complete");
    assert_eq!(r.status, 200);
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn grace_period_bounds_drain_of_hanging_request() {
    let o = Origin::builder("o").fallback(Reply::hang()).start();
    let mut gw = Gateway::start(&config(&o, "1s", "30s"));
    let _inflight = spawn_request(&gw, Duration::from_secs(20));
    assert!(
        o.wait_requests(1, Duration::from_secs(5)),
        "request never reached origin"
    );
    let t = Instant::now();
    gw.signal(libc::SIGTERM);
    let st = gw.wait_exit(Duration::from_secs(10));
    let el = t.elapsed();
    assert!(
        st.is_some(),
        "still running 10s after SIGTERM with grace_period = 1s"
    );
    assert!(
        el >= Duration::from_millis(800),
        "exited after {el:?}: did not wait for the in-flight request"
    );
    assert!(
        el < Duration::from_millis(3500),
        "exited after {el:?}; grace_period is 1s"
    );
}

#[test]
fn sigint_stops_a_drain_at_once() {
    let o = Origin::builder("o").fallback(Reply::hang()).start();
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    let _inflight = spawn_request(&gw, Duration::from_secs(20));
    assert!(
        o.wait_requests(1, Duration::from_secs(5)),
        "request never reached origin"
    );
    gw.signal(libc::SIGTERM);
    wait_drain_started(&gw);
    // What is checked is that the process does *not* exit: give it the time an exit
    // would take (the drain watcher checks every 20 ms after a 100 ms pause).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gw.wait_exit(Duration::from_millis(10)).is_none(),
        "SIGTERM with a request in flight must drain, not exit"
    );
    let t = Instant::now();
    gw.signal(libc::SIGINT);
    let st = gw.wait_exit(Duration::from_secs(5));
    let el = t.elapsed();
    assert!(
        st.is_some(),
        "SIGINT during a 10 s drain did not stop the gateway"
    );
    assert!(
        el < Duration::from_secs(1),
        "SIGINT during a drain took {el:?} (spec: Ctrl-C stops within 1s)"
    );
}

/// A response finished while the gateway drains says `Connection: close` (RFC 9112 §9.6):
/// a keep-alive client then opens a new connection (to the next gateway) for its next
/// request instead of sending it on one that is about to close.
#[test]
fn responses_finished_while_draining_say_connection_close() {
    let o = Origin::builder("o")
        .fallback(Handler::echo().delay(Duration::from_millis(1500)))
        .start();
    let mut gw = Gateway::start(&config(&o, "10s", "30s"));
    let addr = gw.listen;
    // A keep-alive request (no `Connection: close`) in flight when the drain starts.
    let inflight = std::thread::spawn(move || {
        try_raw_request(
            addr,
            b"GET /inflight HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(15),
        )
    });
    assert!(
        o.wait_requests(1, Duration::from_secs(5)),
        "request never reached origin"
    );
    gw.signal(libc::SIGTERM);
    wait_drain_started(&gw);
    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close"),
        "a response sent while draining must close the connection: {:?}",
        r.headers
    );
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
}
