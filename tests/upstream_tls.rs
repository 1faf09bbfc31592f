//! TLS to upstream instances: a second ficus with a TLS listener (certificate for
//! `orders.internal` from a test CA) in front of a plain origin, and a front gateway whose
//! services speak TLS to it with different verification settings.

mod common;

use common::*;

struct Setup {
    front: Gateway,
    _back: Gateway,
    origin: Origin,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let origin = Origin::start("plain");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "orders", &["orders.internal"]);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();

    let back = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set(
                    "listen",
                    format!(
                        r#"[{{ addr = "{{listen}}", tls = {{ certificates = [{{ cert = "{}", key = "{}" }}] }} }}]"#,
                        cert.cert_path.display(),
                        cert.key_path.display()
                    ),
                );
            })
            .service("plain", &[origin.addr()])
            .catch_all("plain")
            .build(),
    );

    let ca = ca_path.display();
    let upstream = back.listen;
    let services = [
        (
            "ca",
            format!(r#"{{ sni = "orders.internal", ca_file = "{ca}" }}"#),
        ),
        ("system", r#"{ sni = "orders.internal" }"#.to_string()),
        (
            "noverify",
            r#"{ sni = "orders.internal", verify = false }"#.to_string(),
        ),
        ("nosni", r#"{ verify = false }"#.to_string()),
        (
            "wrongsni",
            format!(r#"{{ sni = "wrong.internal", ca_file = "{ca}" }}"#),
        ),
    ];
    let mut cfg = ConfigBuilder::new();
    for (name, tls) in &services {
        cfg = cfg
            .service_with(name, &[upstream], |s| {
                s.set("tls", tls);
            })
            .route(name, &format!("/{name}/**"), name);
    }
    let cfg = cfg.build();
    let front = Gateway::start(&cfg);
    Setup {
        front,
        _back: back,
        origin,
        _dir: dir,
    }
}

fn tls_errors(gw: &Gateway, svc: &str) -> f64 {
    metric(
        gw,
        "ficus_upstream_errors_total",
        &[("service", svc), ("kind", "tls")],
    )
}

#[test]
fn verified_tls_to_the_upstream_works() {
    let s = setup();
    let r = s.front.get("/ca/orders/1");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.front.logs());
    assert_eq!(served_by(&r), "plain");
    assert_eq!(r.origin_path().as_deref(), Some("/ca/orders/1"));
    assert_eq!(s.origin.requests(), 1);
    assert_eq!(tls_errors(&s.front, "ca"), 0.0);
}

#[test]
fn unknown_ca_is_rejected_with_502() {
    let s = setup();
    let r = s.front.get("/system/orders/1");
    assert_eq!(
        r.status,
        502,
        "a certificate from an unknown CA was accepted: {}",
        r.text()
    );
    assert_eq!(r.json()["error"], "upstream service unreachable");
    assert_eq!(s.origin.requests(), 0);
    assert!(
        tls_errors(&s.front, "system") >= 1.0,
        "{}",
        s.front.metrics()
    );
}

#[test]
fn verify_false_accepts_the_certificate() {
    let s = setup();
    let r = s.front.get("/noverify/orders/1");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.front.logs());
    assert_eq!(served_by(&r), "plain");
    assert_eq!(s.origin.requests(), 1);
}

/// `tls = { verify = false }` without `sni` is a valid config (`ficus check` accepts it: only
/// verification needs a name), so it must connect.
#[test]
fn verify_false_without_sni_connects() {
    let s = setup();
    let r = s.front.get("/nosni/orders/2");
    assert_eq!(
        r.status,
        200,
        "tls = {{ verify = false }} without sni: {}\n{}",
        r.text(),
        s.front.logs()
    );
    assert_eq!(served_by(&r), "plain");
    assert_eq!(s.origin.requests(), 1);
}

#[test]
fn wrong_sni_fails_verification() {
    let s = setup();
    let r = s.front.get("/wrongsni/orders/1");
    assert_eq!(
        r.status,
        502,
        "certificate for orders.internal accepted for SNI wrong.internal: {}",
        r.text()
    );
    assert_eq!(s.origin.requests(), 0);
    assert!(tls_errors(&s.front, "wrongsni") >= 1.0);
}

/// Pooled upstream connections are not shared between services that trust different CAs:
/// after the `ca` service has a verified connection to the instance, the `system` service
/// (which does not trust that CA) must still fail its own handshake, not reuse it.
#[test]
fn pooled_connections_are_not_shared_across_trust_settings() {
    let s = setup();
    for i in 0..3 {
        let r = s.front.get(&format!("/ca/orders/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for i in 0..3 {
        let r = s.front.get(&format!("/system/orders/{i}"));
        assert_eq!(
            r.status,
            502,
            "a connection verified against another service's CA was reused: {}",
            r.text()
        );
    }
    assert_eq!(s.origin.requests(), 3);
}
