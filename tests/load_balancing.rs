mod common;
use common::*;

#[test]
fn weighted_round_robin_is_proportional() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let cfg = ConfigBuilder::new()
        .service_with("s", &[], |s| {
            s.set(
                "instances",
                toml_instances(&[(a.addr(), "weight = 1"), (b.addr(), "weight = 2")]),
            );
        })
        .catch_all("s")
        .build();
    let gw = Gateway::start(&cfg);
    let (mut na, mut nb, mut other) = (0, 0, Vec::new());
    for i in 0..300 {
        let r = gw.get(&format!("/r{i}"));
        match r.header("x-origin") {
            Some("a") => na += 1,
            Some("b") => nb += 1,
            _ => other.push(r.status),
        }
    }
    assert!(other.is_empty(), "non-origin responses: {other:?}");
    assert!(
        (98..=102).contains(&na),
        "a (weight 1) served {na}/300, b served {nb}"
    );
    assert!(
        (198..=202).contains(&nb),
        "b (weight 2) served {nb}/300, a served {na}"
    );
}

#[test]
fn equal_weights_round_robin_over_string_instances() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    let cfg = ConfigBuilder::new()
        .service("s", &[a.addr(), b.addr(), c.addr()])
        .catch_all("s")
        .build();
    let gw = Gateway::start(&cfg);
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..150 {
        let r = gw.get(&format!("/r{i}"));
        *counts
            .entry(r.header("x-origin").unwrap_or("none").to_string())
            .or_insert(0) += 1;
    }
    for n in ["a", "b", "c"] {
        let got = counts.get(n).copied().unwrap_or(0);
        assert!((48..=52).contains(&got), "{n} served {got}/150: {counts:?}");
    }
}
