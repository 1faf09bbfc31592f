//! `ficus demo`: what a newcomer runs first.
mod common;
use common::*;
use std::time::Duration;

/// The repository's routes.toml with its addresses moved to free ports.
fn demo_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "{listen}")
        .replace("127.0.0.1:9901", "{admin}")
        .replace("127.0.0.1:8081", "{listen2}")
        .replace("127.0.0.1:8082", "{listen3}")
}

/// `ficus demo` on the config. Its sample origins listen where the config says, so the
/// config names real ports (picked free by the fixture, retried if one was taken).
fn demo(config: &str) -> GatewayBuilder {
    Gateway::builder(config)
        .args(|p| vec!["demo".into(), "--config".into(), p.display().to_string()])
        .fixed_ports()
}

/// The demo's sample monolith answers what is not migrated, its sample deliveries service
/// answers the migrated path with the rewritten path, an encoded slash is refused, and the
/// banner shows runnable commands.
#[test]
fn demo_routes_between_the_sample_monolith_and_the_new_service() {
    let mut gw = demo(&demo_config()).start();
    let r = gw.get("/products/7");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["served_by"], "legacy-monolith");
    assert_eq!(r.json()["path"], "/products/7");
    let r = gw.get("/deliveries/42");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["served_by"], "deliveries-service");
    assert_eq!(r.json()["path"], "/v2/deliveries/42");
    assert_eq!(r.header("x-served-by"), Some("deliveries-service"));
    assert_eq!(
        r.json()["request_id"].as_str(),
        r.header("x-request-id"),
        "the service got the request id the client sees"
    );
    assert_eq!(gw.get("/a%2Fb").status, 400);
    // The back office is for loopback's own address only.
    assert_eq!(gw.get("/admin/users").status, 200);
    let outsider = send_from(
        "127.0.0.2".parse().unwrap(),
        gw.listen,
        b"GET /admin/users HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(outsider.status, 403, "{}", outsider.text());
    let banner = poll_until(Duration::from_secs(5), || {
        let logs = gw.logs();
        logs.contains("explain --config").then_some(logs)
    })
    .expect("the banner");
    let explain = banner
        .lines()
        .find(|l| l.contains("explain --config"))
        .unwrap()
        .trim()
        .to_string();
    let exe = explain.split_whitespace().next().unwrap();
    assert!(
        std::path::Path::new(exe).exists(),
        "the banner's explain command names a binary that exists: {explain}"
    );
    gw.signal(libc::SIGINT);
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
}

/// When one of the demo's addresses is taken the demo says which and exits 1, instead of
/// proxying to a stranger.
#[test]
fn demo_refuses_to_start_on_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = demo_config().replace("{listen2}", &taken.local_addr().unwrap().to_string());
    let err = demo(&cfg)
        .try_start()
        .err()
        .expect("the demo must not start");
    assert!(
        err.contains("exited (exit status: 1) before it was ready"),
        "{err}"
    );
    assert!(err.contains("sample monolith address"), "{err}");
    assert!(err.contains("is in use"), "{err}");
}
