mod common;
use common::*;
use std::time::Duration;

/// `/readyz` is "200 when serving": the moment it first answers 200, the proxy listener must
/// accept connections and serve requests.
#[test]
fn readyz_200_implies_proxy_listener_serving() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let mut failures = Vec::new();
    for i in 0..10 {
        // Polls `/readyz` itself (on an admin address it picked) instead of waiting for the
        // ready file, which is what this test is about.
        let gw = Gateway::builder(&cfg).wait_for_readyz().start();
        match try_raw_request(
            gw.listen,
            b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        ) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("start {i}: status {}", r.status)),
            Err(e) => failures.push(format!("start {i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "first request right after /readyz == 200 failed in {}/10 starts: {failures:?}",
        failures.len()
    );
}

#[test]
fn healthz_and_readyz() {
    let gw = Gateway::start(&ConfigBuilder::new().build());
    assert_eq!(gw.admin_get("/healthz").unwrap().status, 200);
    assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);
    assert_eq!(gw.admin_get("/nope").unwrap().status, 404);
}
