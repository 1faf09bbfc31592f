//! DNS service discovery through a running gateway, against a real dnsmasq: A records with the
//! configured port, SRV records with their own ports and weights, following record changes,
//! and keeping the last good set when DNS fails.

mod common;

use common::dnsmasq::{self, Dnsmasq};
use common::*;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Service `orders` with `dns` (and whatever else `edit` sets), behind route `orders` on
/// `/orders/**`; `cfg` may carry more.
fn orders(cfg: ConfigBuilder, dns: String, edit: impl FnOnce(&mut Table)) -> String {
    cfg.service_with("orders", &[], |s| {
        s.set("dns", dns);
        edit(s);
    })
    .route("orders", "/orders/**", "orders")
    .build()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Origins that served `n` requests.
fn served(gw: &Gateway, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let r = gw.get(&format!("/orders/{i}"));
            assert_eq!(r.status, 200, "{} {}\n{}", r.status, r.text(), gw.logs());
            served_by(&r)
        })
        .collect()
}

/// Polls until `n` requests in a row are served by exactly `want`.
fn wait_served_by(gw: &Gateway, dns: &Dnsmasq, want: &[&str], timeout: Duration) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let got = served(gw, 12);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "traffic goes to {got:?}, want {want:?} within {timeout:?}\nregistry: {:#}\n{}\n{}",
            registry(gw),
            dns.log(),
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the first DNS answer to reach the pool (the gateway is ready before discovery
/// has run once, so the very first requests may get 503).
fn wait_discovered(gw: &Gateway, dns: &Dnsmasq) {
    let ok = poll_until(Duration::from_secs(15), || {
        (gw.get("/orders/first").status == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "no instance discovered within 15 s\nregistry: {:#}\n{}\n{}",
        registry(gw),
        dns.log(),
        gw.logs()
    );
}

fn dns_failures(gw: &Gateway) -> f64 {
    metric(gw, "ficus_dns_failures_total", &[("service", "orders")])
}

#[test]
fn a_records_follow_changes_and_survive_dns_failures() {
    let origins = Origin::start_same_port(&[("one", ip("127.0.0.1")), ("two", ip("127.0.0.2"))]);
    let one = &origins[0];
    let port = one.addr().port();
    let dns = Dnsmasq::start();
    dns.set_hosts("orders.test", &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let gw = Gateway::start(&orders(
        ConfigBuilder::new(),
        format!(
            r#"{{ name = "orders.test", port = {port}, min_ttl = "1s", max_ttl = "2s", resolver = "{}" }}"#,
            dns.addr
        ),
        |_| {},
    ));

    // Both records become instances with the configured port.
    wait_discovered(&gw, &dns);
    wait_served_by(&gw, &dns, &["one", "two"], Duration::from_secs(15));
    let svc = service(&gw, "orders");
    // Configured sources: DNS (and self-registration, on by default).
    assert_eq!(
        svc["sources"],
        serde_json::json!(["registered", "dns"]),
        "{svc:#}"
    );
    assert_eq!(
        instance_addrs(&gw, "orders"),
        vec![format!("127.0.0.1:{port}"), format!("127.0.0.2:{port}")]
    );
    let inst = instance(&gw, "orders", one.addr()).unwrap();
    assert_eq!(inst["sources"], serde_json::json!(["dns"]), "{inst:#}");
    assert_eq!(svc["dns"]["query"], format!("orders.test:{port}"));
    assert!(svc["dns"]["last_error"].is_null(), "{svc:#}");
    assert_eq!(dns_failures(&gw), 0.0);

    // Scale in: only .2 is left; the pool follows within a few seconds.
    dns.set_hosts("orders.test", &[ip("127.0.0.2")]);
    wait_served_by(&gw, &dns, &["two"], Duration::from_secs(10));
    assert_eq!(
        instance_addrs(&gw, "orders"),
        vec![format!("127.0.0.2:{port}")]
    );
    let one_before = one.requests();
    served(&gw, 10);
    assert_eq!(
        one.requests(),
        one_before,
        "removed instance still gets traffic"
    );

    // The name stops resolving: the last good set keeps serving, failures are counted.
    dns.set_hosts("orders.test", &[]);
    let grew = poll_until(Duration::from_secs(15), || {
        (dns_failures(&gw) >= 2.0).then_some(())
    });
    assert!(
        grew.is_some(),
        "ficus_dns_failures_total did not grow for NXDOMAIN\n{}",
        gw.metrics()
    );
    assert_eq!(served(&gw, 10), BTreeSet::from(["two".to_string()]));
    let svc = service(&gw, "orders");
    assert!(svc["dns"]["last_error"].is_string(), "{svc:#}");

    // The DNS server goes away entirely: still serving, failures keep growing.
    let failures = dns_failures(&gw);
    let log = dns.log();
    drop(dns);
    let grew = poll_until(Duration::from_secs(30), || {
        (dns_failures(&gw) > failures).then_some(())
    });
    assert!(
        grew.is_some(),
        "no DNS failure counted with the server gone\n{}\n{log}",
        gw.metrics()
    );
    assert_eq!(served(&gw, 10), BTreeSet::from(["two".to_string()]));
    assert_eq!(
        instance_addrs(&gw, "orders"),
        vec![format!("127.0.0.2:{port}")]
    );
}

#[test]
fn srv_records_give_ports_and_weights() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let mut dns = Dnsmasq::start();
    dns.set_hosts("node.orders.test", &[ip("127.0.0.1")]);
    dns.set_srv(
        "_http._tcp.orders.test",
        &[
            (0, 1, a.addr().port(), "node.orders.test"),
            (0, 3, b.addr().port(), "node.orders.test"),
        ],
    );
    // The resolver comes from [registry] this time.
    let resolver = ConfigBuilder::new().table("registry", |t| {
        t.set_str("dns_resolver", &dns.addr.to_string());
    });
    let gw = Gateway::start(&orders(
        resolver,
        r#"{ srv = "_http._tcp.orders.test", min_ttl = "1s", max_ttl = "2s" }"#.to_string(),
        |_| {},
    ));
    wait_discovered(&gw, &dns);
    wait_served_by(&gw, &dns, &["a", "b"], Duration::from_secs(15));
    assert_eq!(instance(&gw, "orders", a.addr()).unwrap()["weight"], 1);
    assert_eq!(instance(&gw, "orders", b.addr()).unwrap()["weight"], 3);
    let svc = service(&gw, "orders");
    assert_eq!(svc["dns"]["query"], "_http._tcp.orders.test", "{svc:#}");
    // Weights apply: 1:3.
    let (a0, b0) = (a.requests(), b.requests());
    served(&gw, 40);
    assert_eq!((a.requests() - a0, b.requests() - b0), (10, 30));

    // Only b's port is left.
    dns.set_srv(
        "_http._tcp.orders.test",
        &[(0, 1, b.addr().port(), "node.orders.test")],
    );
    wait_served_by(&gw, &dns, &["b"], Duration::from_secs(15));
    assert_eq!(instance_addrs(&gw, "orders"), vec![b.addr().to_string()]);
}

#[test]
fn dns_instances_merge_with_static_and_health_checks() {
    let origins = Origin::start_same_port(&[("one", ip("127.0.0.1")), ("two", ip("127.0.0.2"))]);
    let (one, two) = (&origins[0], &origins[1]);
    two.set_health(503);
    let port = one.addr().port();
    let dns = Dnsmasq::start();
    dns.set_hosts("orders.test", &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let gw = Gateway::start(&orders(
        ConfigBuilder::new(),
        format!(
            r#"{{ name = "orders.test", port = {port}, min_ttl = "1s", max_ttl = "2s", resolver = "{}" }}"#,
            dns.addr
        ),
        |s| {
            s.set("instances", toml_addrs(&[one.addr()])).set(
                "health",
                r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
            );
        },
    ));
    let t = Duration::from_secs(15);
    wait_health(&gw, "orders", one.addr(), "healthy", t);
    wait_health(&gw, "orders", two.addr(), "unhealthy", t);
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 2, "{svc:#}");
    assert_eq!(
        instance(&gw, "orders", one.addr()).unwrap()["sources"],
        serde_json::json!(["static", "dns"])
    );
    assert_eq!(served(&gw, 10), BTreeSet::from(["one".to_string()]));
    assert_eq!(two.requests(), 0, "unhealthy DNS instance got traffic");
    // The record of the static address goes away: the static instance stays.
    dns.set_hosts("orders.test", &[ip("127.0.0.2")]);
    let ok = poll_until(Duration::from_secs(10), || {
        let i = instance(&gw, "orders", one.addr())?;
        (i["sources"] == serde_json::json!(["static"])).then_some(())
    });
    assert!(ok.is_some(), "{:#}", registry(&gw));
    assert_eq!(served(&gw, 5), BTreeSet::from(["one".to_string()]));
}

/// A server that refuses AAAA queries must not cost the A answer: the instances from the A
/// records serve, and the lookup is not counted as a failure.
#[test]
fn a_refused_aaaa_query_keeps_the_a_records() {
    let origins = Origin::start_same_port(&[("a2", ip("127.0.0.2")), ("a3", ip("127.0.0.3"))]);
    let port = origins[0].addr().port();
    // Knows A records, has no upstream and no `--local` domain, like the QA setup: AAAA
    // queries for its names are answered REFUSED, A queries normally.
    let dns = Dnsmasq::start_without_local_domain();
    dns.set_hosts("orders.test", &[ip("127.0.0.2"), ip("127.0.0.3")]);
    // The premise: A answers, AAAA is REFUSED (rcode 5).
    let a = dnsmasq::query_udp(dns.addr, "orders.test", 1).expect("A reply");
    assert_eq!((a.rcode, a.answers.len()), (0, 2));
    let aaaa = dnsmasq::query_udp(dns.addr, "orders.test", 28).expect("AAAA reply");
    assert_eq!(aaaa.rcode, 5, "dnsmasq no longer refuses AAAA here");

    let gw = Gateway::start(&orders(
        ConfigBuilder::new(),
        format!(
            r#"{{ name = "orders.test", port = {port}, resolver = "{}", min_ttl = "1s" }}"#,
            dns.addr
        ),
        |_| {},
    ));
    let both = poll_until(Duration::from_secs(15), || {
        (served_all(&gw, 12).len() == 2).then_some(())
    });
    assert!(
        both.is_some(),
        "A records not used\nregistry: {:#}\n{}\n{}",
        registry(&gw),
        dns.log(),
        gw.logs()
    );
    let svc = service(&gw, "orders");
    assert_eq!(svc["total"], 2, "{svc:#}");
    assert!(svc["dns"]["last_error"].is_null(), "{svc:#}");
    assert_eq!(dns_failures(&gw), 0.0);
}

/// Origin names that answered `n` requests (any status).
fn served_all(gw: &Gateway, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| served_by(&gw.get(&format!("/orders/{i}"))))
        .filter(|s| s != "-")
        .collect()
}
