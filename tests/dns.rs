//! DNS service discovery ([`ficus::registry::dns`]) against a real dnsmasq serving test records
//! with TTL 1 s.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::dnsmasq::Dnsmasq;
use ficus::registry::dns::{clamp_ttl, DnsAnswer, DnsError, DnsQuery, DnsResolver};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn host(name: &str, port: u16) -> DnsQuery {
    DnsQuery::Host {
        name: name.to_string(),
        port,
    }
}

fn srv(name: &str) -> DnsQuery {
    DnsQuery::Srv {
        name: name.to_string(),
    }
}

fn resolver(dns: &Dnsmasq) -> DnsResolver {
    DnsResolver::new(Some(dns.addr)).expect("resolver")
}

async fn lookup_ok(r: &DnsResolver, dns: &Dnsmasq, q: &DnsQuery) -> DnsAnswer {
    match r.lookup(q).await {
        Ok(answer) => answer,
        Err(e) => panic!("lookup {q:?} failed: {e}\n{}", dns.log()),
    }
}

#[tokio::test]
async fn a_records_become_instances_with_the_port() {
    let dns = Dnsmasq::start();
    dns.set_hosts("web.test", &[ip("10.0.0.2"), ip("10.0.0.1")]);
    let r = resolver(&dns);

    let got = lookup_ok(&r, &dns, &host("web.test", 8080)).await;
    assert_eq!(
        got.instances,
        vec![(sa("10.0.0.1:8080"), 1), (sa("10.0.0.2:8080"), 1)]
    );
    // A trailing dot means the same name.
    let dotted = lookup_ok(&r, &dns, &host("web.test.", 8080)).await;
    assert_eq!(dotted.instances, got.instances);
    // The port is the query's, per query.
    let other = lookup_ok(&r, &dns, &host("web.test", 9)).await;
    assert_eq!(
        other.instances,
        vec![(sa("10.0.0.1:9"), 1), (sa("10.0.0.2:9"), 1)]
    );
}

#[tokio::test]
async fn lookups_follow_record_changes() {
    let dns = Dnsmasq::start();
    dns.set_hosts("svc.test", &[ip("10.0.1.1"), ip("10.0.1.2")]);
    let r = resolver(&dns);
    let q = host("svc.test", 80);
    assert_eq!(
        lookup_ok(&r, &dns, &q).await.instances,
        vec![(sa("10.0.1.1:80"), 1), (sa("10.0.1.2:80"), 1)]
    );

    // Scale: one instance replaced, one added.
    dns.set_hosts(
        "svc.test",
        &[ip("10.0.1.2"), ip("10.0.1.3"), ip("10.0.1.4")],
    );
    let want = vec![
        (sa("10.0.1.2:80"), 1),
        (sa("10.0.1.3:80"), 1),
        (sa("10.0.1.4:80"), 1),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = lookup_ok(&r, &dns, &q).await;
        if got.instances == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {:?} 5 s after the change, want {want:?}",
            got.instances
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Scale to zero: the name disappears, and that is an error, not an empty set.
    dns.set_hosts("svc.test", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match r.lookup(&q).await {
            Err(DnsError::NoRecords(msg)) => {
                assert!(msg.contains("svc.test"), "{msg}");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "still {other:?} 5 s after removing the records"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn aaaa_records_and_dual_stack() {
    let dns = Dnsmasq::start();
    dns.set_hosts("v6.test", &[ip("fd00::2"), ip("fd00::1")]);
    dns.set_hosts("dual.test", &[ip("fd00::10"), ip("10.0.2.1")]);
    let r = resolver(&dns);

    let got = lookup_ok(&r, &dns, &host("v6.test", 443)).await;
    assert_eq!(
        got.instances,
        vec![(sa("[fd00::1]:443"), 1), (sa("[fd00::2]:443"), 1)]
    );

    let got = lookup_ok(&r, &dns, &host("dual.test", 8443)).await;
    assert_eq!(
        got.instances,
        vec![(sa("10.0.2.1:8443"), 1), (sa("[fd00::10]:8443"), 1)]
    );
}

#[tokio::test]
async fn srv_uses_only_the_lowest_priority_with_srv_ports_and_weights() {
    let mut dns = Dnsmasq::start();
    dns.set_hosts("a.test", &[ip("10.1.0.1")]);
    dns.set_hosts("b.test", &[ip("10.1.0.2"), ip("fd00::1:2")]);
    dns.set_hosts("backup.test", &[ip("10.1.0.9")]);
    dns.set_srv(
        "_http._tcp.orders.test",
        &[
            (10, 5, 8080, "a.test"),
            (10, 0, 8081, "b.test"), // weight 0 counts as 1
            (20, 50, 9090, "backup.test"),
        ],
    );
    let r = resolver(&dns);

    let got = lookup_ok(&r, &dns, &srv("_http._tcp.orders.test")).await;
    assert_eq!(
        got.instances,
        vec![
            (sa("10.1.0.1:8080"), 5),
            (sa("10.1.0.2:8081"), 1),
            (sa("[fd00::1:2]:8081"), 1),
        ]
    );

    // Without the priority-10 records the priority-20 one is used.
    dns.set_srv("_http._tcp.orders.test", &[(20, 50, 9090, "backup.test")]);
    let got = lookup_ok(&r, &dns, &srv("_http._tcp.orders.test.")).await;
    assert_eq!(got.instances, vec![(sa("10.1.0.9:9090"), 50)]);
}

#[tokio::test]
async fn srv_targets_without_addresses_are_skipped() {
    let mut dns = Dnsmasq::start();
    dns.set_hosts("up.test", &[ip("10.2.0.1")]);
    dns.set_srv(
        "_grpc._tcp.billing.test",
        &[(0, 3, 7000, "up.test"), (0, 4, 7001, "nowhere.test")],
    );
    dns.set_srv("_grpc._tcp.gone.test", &[(0, 1, 7000, "nowhere.test")]);
    let r = resolver(&dns);

    let got = lookup_ok(&r, &dns, &srv("_grpc._tcp.billing.test")).await;
    assert_eq!(got.instances, vec![(sa("10.2.0.1:7000"), 3)]);

    // No target resolves: an error naming the service, not an empty set.
    match r.lookup(&srv("_grpc._tcp.gone.test")).await {
        Err(DnsError::NoRecords(msg)) => {
            assert!(msg.contains("_grpc._tcp.gone.test"), "{msg}");
            assert!(msg.contains("nowhere.test"), "{msg}");
        }
        other => panic!("want NoRecords, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_names_are_errors() {
    let mut dns = Dnsmasq::start();
    dns.set_hosts("known.test", &[ip("10.3.0.1")]);
    dns.set_srv("_http._tcp.known.test", &[(0, 1, 80, "known.test")]);
    let r = resolver(&dns);

    match r.lookup(&host("missing.test", 80)).await {
        Err(e @ DnsError::NoRecords(_)) => {
            assert!(e.to_string().contains("missing.test"), "{e}");
        }
        other => panic!("want NoRecords for an unknown host, got {other:?}"),
    }
    match r.lookup(&srv("_http._tcp.missing.test")).await {
        Err(e @ DnsError::NoRecords(_)) => {
            assert!(e.to_string().contains("_http._tcp.missing.test"), "{e}");
        }
        other => panic!("want NoRecords for an unknown SRV name, got {other:?}"),
    }
    // A name with addresses but no SRV records.
    assert!(matches!(
        r.lookup(&srv("known.test")).await,
        Err(DnsError::NoRecords(_))
    ));
    // An invalid name is rejected, not sent.
    assert!(matches!(
        r.lookup(&host("bad..name", 80)).await,
        Err(DnsError::InvalidName { .. })
    ));
    // The known names still resolve through the same resolver.
    assert_eq!(
        lookup_ok(&r, &dns, &host("known.test", 80)).await.instances,
        vec![(sa("10.3.0.1:80"), 1)]
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_lookup_error() {
    // Bound but never read: queries time out (2 s, 2 attempts); TCP is refused.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = DnsResolver::new(Some(silent.local_addr().unwrap())).unwrap();
    let started = Instant::now();
    let err = r
        .lookup(&host("web.test", 80))
        .await
        .expect_err("lookup against a silent server");
    assert!(matches!(err, DnsError::Lookup { .. }), "{err:?}");
    assert!(err.to_string().contains("web.test"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ttl_is_the_records_ttl_and_the_caller_clamps_it() {
    let mut dns = Dnsmasq::start();
    dns.set_hosts("ttl.test", &[ip("10.4.0.1")]);
    dns.set_srv("_http._tcp.ttl.test", &[(0, 1, 80, "ttl.test")]);
    let r = resolver(&dns);

    let a = lookup_ok(&r, &dns, &host("ttl.test", 80)).await;
    assert!(a.ttl <= Duration::from_secs(1), "A ttl {:?}", a.ttl);
    let s = lookup_ok(&r, &dns, &srv("_http._tcp.ttl.test")).await;
    assert!(s.ttl <= Duration::from_secs(1), "SRV ttl {:?}", s.ttl);

    // The caller's floor lifts the 1 s TTL; its ceiling caps a long one.
    let floor = Duration::from_secs(5);
    let ceiling = Duration::from_secs(60);
    assert_eq!(clamp_ttl(a.ttl, floor, ceiling), floor);
    assert_eq!(clamp_ttl(s.ttl, floor, ceiling), floor);
    assert_eq!(
        clamp_ttl(a.ttl, Duration::ZERO, ceiling),
        a.ttl,
        "inside the bounds the record TTL is kept"
    );
    assert_eq!(
        clamp_ttl(Duration::from_secs(86_400), floor, ceiling),
        ceiling
    );
}
