//! DNS service discovery through a running gateway, against a real dnsmasq: A records with the
//! configured port, SRV records with their own ports and weights, following record changes,
//! and keeping the last good set when DNS fails.

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;
#[path = "common/flex_origin.rs"]
mod flex_origin;

use common::*;
use dnsmasq::Dnsmasq;
use flex_origin::*;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const ROUTE: &str = r#"
[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "orders"
"#;

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
    let origins =
        FlexOrigin::start_same_port(&[("one", ip("127.0.0.1")), ("two", ip("127.0.0.2"))]);
    let one = &origins[0];
    let port = one.addr().port();
    let dns = Dnsmasq::start();
    dns.set_hosts("orders.test", &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let gw = Gateway::start(&format!(
        r#"{GATEWAY}
[services.orders]
dns = {{ name = "orders.test", port = {port}, min_ttl = "1s", max_ttl = "2s", resolver = "{}" }}
{ROUTE}"#,
        dns.addr
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
    let a = FlexOrigin::start("a");
    let b = FlexOrigin::start("b");
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
    let gw = Gateway::start(&format!(
        r#"{GATEWAY}
[registry]
dns_resolver = "{}"

[services.orders]
dns = {{ srv = "_http._tcp.orders.test", min_ttl = "1s", max_ttl = "2s" }}
{ROUTE}"#,
        dns.addr
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
    let origins =
        FlexOrigin::start_same_port(&[("one", ip("127.0.0.1")), ("two", ip("127.0.0.2"))]);
    let (one, two) = (&origins[0], &origins[1]);
    two.set_health(503);
    let port = one.addr().port();
    let dns = Dnsmasq::start();
    dns.set_hosts("orders.test", &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let gw = Gateway::start(&format!(
        r#"{GATEWAY}
[services.orders]
instances = ["127.0.0.1:{port}"]
dns = {{ name = "orders.test", port = {port}, min_ttl = "1s", max_ttl = "2s", resolver = "{}" }}
health = {{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }}
{ROUTE}"#,
        dns.addr
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

/// A dnsmasq that knows A records but has no upstream and no `--local` domain, like the
/// QA setup: AAAA queries for its names are answered REFUSED, A queries normally.
struct AaaaRefusingDnsmasq {
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl AaaaRefusingDnsmasq {
    fn start(hosts: &[(&str, IpAddr)]) -> AaaaRefusingDnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let text: String = hosts.iter().map(|(n, ip)| format!("{ip} {n}\n")).collect();
        std::fs::write(dir.path().join("hosts"), text).unwrap();
        for _ in 0..20 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = std::process::Command::new("/usr/sbin/dnsmasq");
            cmd.args([
                "--keep-in-foreground".to_string(),
                format!("--port={port}"),
                "--listen-address=127.0.0.1".into(),
                "--bind-interfaces".into(),
                "--conf-file=/dev/null".into(),
                "--no-hosts".into(),
                "--no-resolv".into(),
                "--no-poll".into(),
                format!("--addn-hosts={}", dir.path().join("hosts").display()),
                "--local-ttl=1".into(),
                "--pid-file=".into(),
                format!("--log-facility={}", dir.path().join("log").display()),
                "--log-queries".into(),
            ]);
            if unsafe { libc::geteuid() } == 0 {
                cmd.arg("--user=root");
            }
            let mut child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dnsmasq (installed by tests/run.sh)");
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // port taken: try another
                }
                if dnsmasq::query_udp(addr, hosts[0].0, 1).is_some() {
                    return AaaaRefusingDnsmasq { addr, dir, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for AaaaRefusingDnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that refuses AAAA queries must not cost the A answer: the instances from the A
/// records serve, and the lookup is not counted as a failure.
#[test]
fn a_refused_aaaa_query_keeps_the_a_records() {
    let origins = FlexOrigin::start_same_port(&[("a2", ip("127.0.0.2")), ("a3", ip("127.0.0.3"))]);
    let port = origins[0].addr().port();
    let dns = AaaaRefusingDnsmasq::start(&[
        ("orders.test", ip("127.0.0.2")),
        ("orders.test", ip("127.0.0.3")),
    ]);
    // The premise: A answers, AAAA is REFUSED (rcode 5).
    let a = dnsmasq::query_udp(dns.addr, "orders.test", 1).expect("A reply");
    assert_eq!((a.rcode, a.answers.len()), (0, 2));
    let aaaa = dnsmasq::query_udp(dns.addr, "orders.test", 28).expect("AAAA reply");
    assert_eq!(aaaa.rcode, 5, "dnsmasq no longer refuses AAAA here");

    let gw = Gateway::start(&format!(
        "{GATEWAY}\n[services.orders]\ndns = {{ name = \"orders.test\", port = {port}, resolver = \"{}\", min_ttl = \"1s\" }}\n{ROUTE}",
        dns.addr
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
