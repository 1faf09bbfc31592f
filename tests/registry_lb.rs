//! Load-balancing policies of registry services: consistent hash (header, cookie, client IP),
//! least request, weights and zone preference.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A route `name` on `/name/**` to `service`.
fn route(cfg: ConfigBuilder, name: &str, service: &str) -> ConfigBuilder {
    cfg.route(name, &format!("/{name}/**"), service)
}

/// Service `s` with these instances and `edit`, behind route `name`.
fn one_service(instances: &[SocketAddr], edit: impl FnOnce(&mut Table), name: &str) -> String {
    route(
        ConfigBuilder::new().service_with("s", instances, edit),
        name,
        "s",
    )
    .build()
}

#[test]
fn consistent_hash_is_sticky_per_key_and_spreads_keys() {
    let o: Vec<Origin> = ["o1", "o2", "o3"]
        .iter()
        .map(|n| Origin::start(n))
        .collect();
    let inst: Vec<SocketAddr> = o.iter().map(Origin::addr).collect();
    let mut cfg = ConfigBuilder::new().gateway(|g| {
        g.set("trusted_proxies", r#"["127.0.0.1"]"#);
    });
    for (svc, hash_on) in [
        ("by_header", "header:x-user"),
        ("by_cookie", "cookie:session"),
        ("by_ip", "client_ip"),
    ] {
        cfg = cfg.service_with(svc, &inst, |s| {
            s.set_str("lb", "hash").set_str("hash_on", hash_on);
        });
    }
    let cfg = route(
        route(route(cfg, "h", "by_header"), "c", "by_cookie"),
        "ip",
        "by_ip",
    );
    let gw = Gateway::start(&cfg.build());

    // Sends 20 requests per key with `header(key)`; returns key -> the one origin it hit.
    let sticky = |path: &str, header: &dyn Fn(&str) -> (String, String)| {
        let mut placement = BTreeMap::new();
        for u in 0..12 {
            let key = format!("user-{u}");
            let (hn, hv) = header(&key);
            let mut seen = BTreeSet::new();
            for i in 0..20 {
                let r = get_with(&gw, &format!("{path}/{i}"), &[(&hn, &hv)]);
                assert_eq!(r.status, 200, "{}", r.text());
                seen.insert(served_by(&r));
            }
            assert_eq!(
                seen.len(),
                1,
                "{path}: key {key} was served by several instances: {seen:?}"
            );
            placement.insert(key, seen.into_iter().next().unwrap());
        }
        let distinct: BTreeSet<&String> = placement.values().collect();
        assert!(
            distinct.len() > 1,
            "{path}: 12 keys all landed on one instance: {placement:?}"
        );
        placement
    };
    sticky("/h", &|k| ("x-user".into(), k.into()));
    sticky("/c", &|k| {
        ("cookie".into(), format!("theme=dark; session={k}"))
    });
    // Client IP from X-Forwarded-For (the peer 127.0.0.1 is a trusted proxy).
    sticky("/ip", &|k| {
        let n = k.trim_start_matches("user-").parse::<u8>().unwrap();
        ("x-forwarded-for".into(), format!("10.0.{n}.7"))
    });
    // The TCP peer itself when there is no forwarded address: always the same instance.
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        seen.insert(served_by(&gw.get(&format!("/ip/{i}"))));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn hash_key_follows_the_instance_set() {
    // When the instance a key maps to goes away, the key moves; the others stay put.
    let o: Vec<Origin> = ["o1", "o2", "o3"]
        .iter()
        .map(|n| Origin::start(n))
        .collect();
    let inst: Vec<SocketAddr> = o.iter().map(Origin::addr).collect();
    let gw = Gateway::start(&one_service(
        &inst,
        |s| {
            s.set_str("lb", "hash").set_str("hash_on", "header:x-user").set(
                "health",
                r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
            );
        },
        "h",
    ));
    for x in &o {
        wait_health(&gw, "s", x.addr(), "healthy", Duration::from_secs(15));
    }
    let place = |key: &str| served_by(&get_with(&gw, "/h/x", &[("x-user", key)]));
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let before: BTreeMap<&String, String> = keys.iter().map(|k| (k, place(k))).collect();
    let victim = before.values().next().unwrap().clone();
    let v = o.iter().find(|x| x.name() == victim).unwrap();
    v.set_health(503);
    wait_health(&gw, "s", v.addr(), "unhealthy", Duration::from_secs(15));
    for k in &keys {
        let now = place(k);
        assert_ne!(now, victim, "{k} still sent to the unhealthy instance");
        if before[k] != victim {
            assert_eq!(now, before[k], "{k} moved although its instance is healthy");
        }
    }
}

#[test]
fn least_request_prefers_the_fast_instance_under_load() {
    let slow = Origin::builder("slow")
        .fallback(Handler::echo().delay(Duration::from_millis(300)))
        .start();
    let fast = Origin::start("fast");
    let gw = Gateway::start(&one_service(
        &[slow.addr(), fast.addr()],
        |s| {
            s.set_str("lb", "least_request");
        },
        "lr",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let listen = gw.listen;
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let r = get_raw(listen, &format!("/lr/{w}-{n}"), "test.local", &[]);
                    assert_eq!(r.status, 200, "{}", r.text());
                    n += 1;
                }
            })
        })
        .collect();
    // Three seconds of load: the share over time is what is measured.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let (s, f) = (slow.requests(), fast.requests());
    eprintln!("least_request: slow {s}, fast {f}");
    assert!(s >= 1, "the slow instance should still get some requests");
    assert!(
        f >= 3 * s,
        "least_request should send most requests to the fast instance: slow {s}, fast {f}"
    );
}

#[test]
fn round_robin_follows_weights() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = Gateway::start(&one_service(
        &[],
        |s| {
            s.set(
                "instances",
                toml_instances(&[(a.addr(), ""), (b.addr(), "weight = 3")]),
            )
            .set_str("lb", "round_robin");
        },
        "rr",
    ));
    for i in 0..40 {
        assert_eq!(gw.get(&format!("/rr/{i}")).status, 200);
    }
    assert_eq!((a.requests(), b.requests()), (10, 30));
    assert_eq!(instance(&gw, "s", b.addr()).unwrap()["weight"], 3);
}

#[test]
fn zone_preference_keeps_traffic_local_until_the_zone_is_down() {
    let local = Origin::start("local");
    let remote = Origin::start("remote");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("zone", "eu-1");
        })
        .service_with("s", &[], |s| {
            s.set(
                "instances",
                toml_instances(&[
                    (local.addr(), r#"zone = "eu-1""#),
                    (remote.addr(), r#"zone = "us-1""#),
                ]),
            )
            .set("prefer_zone", true)
            .set(
                "health",
                r#"{ path = "/health", interval = "100ms", timeout = "300ms", healthy_after = 1, unhealthy_after = 1 }"#,
            );
        });
    let gw = Gateway::start(&route(cfg, "z", "s").build());
    let t = Duration::from_secs(15);
    wait_health(&gw, "s", local.addr(), "healthy", t);
    wait_health(&gw, "s", remote.addr(), "healthy", t);
    assert_eq!(registry(&gw)["zone"], "eu-1");
    assert_eq!(instance(&gw, "s", remote.addr()).unwrap()["zone"], "us-1");
    for i in 0..10 {
        let r = gw.get(&format!("/z/{i}"));
        assert_eq!(served_by(&r), "local");
    }
    assert_eq!(remote.requests(), 0);
    local.set_health(503);
    wait_health(&gw, "s", local.addr(), "unhealthy", t);
    for i in 0..5 {
        let r = gw.get(&format!("/z/out{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "remote");
    }
}
