//! Measures the local rate-limit store's memory for a million active keys: the process's
//! resident memory before and after a million distinct clients each spend one request of
//! a slow limit (so none of their buckets is idle), and the table's own allocation.
//!
//! `cargo run --release -p ficus-plugins --example rate_limit_memory [KEYS]`
//! (docs/rate-limiting.md quotes a run).

use ficus_plugins::ratelimit::config::Limit;
use ficus_plugins::ratelimit::key::{BucketKey, KeyPart, KeySpec, KeyValue, MAX_PARTS};
use ficus_plugins::ratelimit::local::LocalStore;
use ficus_plugins::ratelimit::rate::Rate;
use std::net::{IpAddr, Ipv4Addr};

/// Resident memory in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let keys: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let limit = slow_limit();
    let before = rss_kib();
    // The cap is split evenly over the table's shards and keys do not spread perfectly
    // evenly: leave 10% headroom so every key gets a bucket of its own.
    let store = LocalStore::new(&[limit], keys as usize + keys as usize / 10);
    let empty = rss_kib();
    let start = std::time::Instant::now();
    for n in 0..keys {
        let mut parts = [KeyValue::Empty; MAX_PARTS];
        parts[0] = KeyValue::Ip(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n)));
        store.check(&[BucketKey { limit: 0, parts }]);
    }
    let elapsed = start.elapsed();
    let after = rss_kib();
    let held = store.len();
    let table = store.table().allocated_bytes();
    println!("keys held:              {held}");
    println!("RSS before:             {before} KiB");
    println!("RSS with empty store:   {empty} KiB");
    println!("RSS after:              {after} KiB");
    println!(
        "RSS growth:             {} KiB = {:.1} bytes per key",
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / f64::from(keys)
    );
    println!(
        "table allocation:       {} KiB = {:.1} bytes per key",
        table / 1024,
        table as f64 / f64::from(keys)
    );
    println!(
        "inserting:              {:.0} ns per new key",
        elapsed.as_nanos() as f64 / f64::from(keys)
    );
    // With max_keys exactly `keys`: how full the table is when the first newcomer finds
    // its shard full and goes to the overflow bucket.
    let exact = LocalStore::new(&[slow_limit()], keys as usize);
    for n in 0..keys {
        let mut parts = [KeyValue::Empty; MAX_PARTS];
        parts[0] = KeyValue::Ip(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n)));
        exact.check(&[BucketKey { limit: 0, parts }]);
        if exact.table().overflowed() > 0 {
            println!(
                "first overflow at:      {} keys held of max_keys {keys} ({:.2}%)",
                exact.len(),
                exact.len() as f64 * 100.0 / f64::from(keys)
            );
            break;
        }
    }
}

fn slow_limit() -> Limit {
    Limit {
        name: None,
        key: KeySpec {
            parts: vec![KeyPart::ClientIp],
        },
        rate: Rate::parse("1/h").expect("a valid rate"),
        burst: 10,
    }
}
