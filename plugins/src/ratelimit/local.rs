//! The local store: GCRA buckets in this process's memory, decided by governor's keyed
//! limiter (one per limit) over the policy's bounded [`BucketTable`].
//!
//! One decision over several limits: each limit is charged in turn; when one refuses, the
//! limits already charged get their unit back (a TAT goes down by `T`, which is exact even
//! when other requests charged the same bucket meanwhile), and the rest are only read. So a
//! refused request costs no limit anything, as in the shared store; the only trace is that,
//! for the microseconds between charge and refund, a concurrent request on an earlier
//! limit's bucket sees one unit less.

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use smallvec::SmallVec;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::clock::{self, DecisionClock};
use super::config::Limit;
use super::key::BucketKey;
use super::store::{Decision, LimitState};
use super::table::{BucketTable, Probe, SharedTable};
use crate::MetricSample;

type Limiter = RateLimiter<Probe, SharedTable, DecisionClock, NoOpMiddleware<Nanos>>;

/// One limit's GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Emission interval `T`.
    t: u64,
    burst: u64,
}

impl Gcra {
    /// The state of a bucket holding `tat` at `now`. `charged`: this decision charged it
    /// (it admitted); otherwise the state says whether it would admit.
    fn state(self, tat: u64, now: u64, charged: bool) -> LimitState {
        let capacity = self.t.saturating_mul(self.burst);
        let debt = tat.saturating_sub(now);
        let fits = debt.saturating_add(self.t) <= capacity;
        let admitted = charged || fits;
        LimitState {
            admitted,
            remaining: if admitted {
                capacity.saturating_sub(debt) / self.t
            } else {
                0
            },
            reset: Duration::from_nanos(debt),
            retry_after: if admitted {
                Duration::ZERO
            } else {
                Duration::from_nanos((debt + self.t).saturating_sub(capacity))
            },
        }
    }
}

/// A policy's buckets in memory.
pub struct LocalStore {
    table: Arc<BucketTable>,
    limiters: Vec<Limiter>,
    gcra: Vec<Gcra>,
    /// Secret per instance: where a key's bucket is cannot be predicted from outside.
    seed: RandomState,
}

impl LocalStore {
    /// A store for these limits holding at most `max_keys` buckets.
    pub fn new(limits: &[Limit], max_keys: usize) -> LocalStore {
        let table = Arc::new(BucketTable::new(max_keys, limits.len()));
        // Built at instant 0, the limiters count time from 0: TATs are on the store's
        // clock (see `clock`).
        let limiters = clock::at(0, || {
            limits
                .iter()
                .map(|l| {
                    let burst = NonZeroU32::new(l.burst).unwrap_or(NonZeroU32::MIN);
                    let quota = Quota::with_period(l.rate.emission_interval())
                        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                        .allow_burst(burst);
                    RateLimiter::new(quota, SharedTable(table.clone()), DecisionClock)
                })
                .collect()
        });
        let gcra = limits
            .iter()
            .map(|l| Gcra {
                t: l.rate.emission_interval().as_nanos().max(1) as u64,
                burst: u64::from(l.burst.max(1)),
            })
            .collect();
        LocalStore {
            table,
            limiters,
            gcra,
            seed: RandomState::new(),
        }
    }

    /// Decides one request now.
    pub fn check(&self, keys: &[BucketKey<'_>]) -> Decision {
        self.check_at(keys, clock::monotonic_now())
    }

    /// Decides one request at instant `now` (ns on the store's clock; tests pick it).
    pub fn check_at(&self, keys: &[BucketKey<'_>], now: u64) -> Decision {
        clock::at(now, || self.decide(keys, now))
    }

    fn decide(&self, keys: &[BucketKey<'_>], now: u64) -> Decision {
        let mut probes: SmallVec<[(Probe, Gcra, bool); 4]> = SmallVec::new();
        let mut limits: SmallVec<[LimitState; 4]> = SmallVec::new();
        let mut admitted = true;
        for key in keys {
            let i = usize::from(key.limit).min(self.gcra.len() - 1);
            let (gcra, probe) = (self.gcra[i], Probe::new(self.seed.hash_one(key), key.limit));
            // Charge while every limit so far admitted; after a refusal only read.
            let charged = admitted && self.limiters[i].check_key(&probe).is_ok();
            let state = if admitted {
                gcra.state(probe.tat.get(), now, charged)
            } else {
                gcra.state(self.table.peek(&probe), now, false)
            };
            admitted = charged;
            limits.push(state);
            probes.push((probe, gcra, charged));
        }
        if !admitted {
            // Give the units back to the limits charged before the refusal.
            for ((probe, gcra, charged), state) in probes.iter().zip(limits.iter_mut()) {
                if *charged {
                    self.table.refund(probe, gcra.t);
                    *state = gcra.state(probe.tat.get().saturating_sub(gcra.t), now, false);
                }
            }
        }
        Decision { admitted, limits }
    }

    /// Drops buckets that are full again.
    pub fn sweep(&self) {
        self.table.sweep(clock::monotonic_now());
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The table, for measurements.
    pub fn table(&self) -> &BucketTable {
        &self.table
    }

    pub fn metrics(&self, policy: &str, out: &mut Vec<MetricSample>) {
        let labels = || vec![("policy", policy.to_string())];
        out.push(MetricSample::gauge(
            "ficus_rate_limit_keys",
            "Buckets a local rate-limit policy holds in memory.",
            labels(),
            self.table.len() as u64,
        ));
        out.push(MetricSample::gauge(
            "ficus_rate_limit_max_keys",
            "The most buckets a local rate-limit policy holds (max_keys).",
            labels(),
            self.table.capacity() as u64,
        ));
        out.push(MetricSample::counter(
            "ficus_rate_limit_evicted_total",
            "Buckets dropped because they were full again.",
            labels(),
            self.table.evicted(),
        ));
        out.push(MetricSample::counter(
            "ficus_rate_limit_overflow_total",
            "Checks of keys that found the table full and were judged by the limit's shared overflow bucket.",
            labels(),
            self.table.overflowed(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::key::{KeyPart, KeySpec, KeyValue, MAX_PARTS};
    use crate::ratelimit::rate::Rate;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn limit(rate: &str, burst: u32) -> Limit {
        Limit {
            name: None,
            key: KeySpec {
                parts: vec![KeyPart::ClientIp],
            },
            rate: Rate::parse(rate).unwrap(),
            burst,
        }
    }

    fn key(limit: u8, ip: IpAddr) -> BucketKey<'static> {
        let mut parts = [KeyValue::Empty; MAX_PARTS];
        parts[0] = KeyValue::Ip(ip);
        BucketKey { limit, parts }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn burst_then_one_per_interval() {
        let store = LocalStore::new(&[limit("100/s", 200)], 1000);
        let k = [key(0, v4(1))];
        let t0 = 5 * SEC;
        for i in 0..200 {
            let d = store.check_at(&k, t0);
            assert!(d.admitted, "request {i}");
            assert_eq!(d.limits[0].remaining, 199 - i);
        }
        let d = store.check_at(&k, t0);
        assert!(!d.admitted);
        assert_eq!(d.limits[0].remaining, 0);
        assert_eq!(d.limits[0].reset, Duration::from_secs(2));
        assert_eq!(d.limits[0].retry_after, Duration::from_millis(10));
        // One more every T = 10 ms.
        assert!(!store.check_at(&k, t0 + 9 * MS).admitted);
        assert!(store.check_at(&k, t0 + 10 * MS).admitted);
        assert!(!store.check_at(&k, t0 + 10 * MS).admitted);
        // Over any window W from a full bucket: at most B + floor(W / T).
        let fresh = [key(0, v4(2))];
        let mut admitted = 0;
        for step in 0..1000u64 {
            // 1000 requests over one second, one per ms.
            if store.check_at(&fresh, t0 + step * MS).admitted {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 200 + 99);
        // Another client is untouched.
        assert!(store.check_at(&[key(0, v4(3))], t0).admitted);
    }

    #[test]
    fn a_refusal_costs_no_limit_anything() {
        // A generous limit and a strict one on the same request.
        let store = LocalStore::new(&[limit("100/s", 10), limit("1/h", 2)], 1000);
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let k = [key(0, ip), key(1, ip)];
        let t0 = SEC;
        assert!(store.check_at(&k, t0).admitted);
        assert!(store.check_at(&k, t0).admitted);
        for _ in 0..5 {
            let d = store.check_at(&k, t0);
            assert!(!d.admitted);
            assert!(d.limits[0].admitted, "the generous limit alone would admit");
            assert!(!d.limits[1].admitted);
            assert_eq!(d.limits[0].remaining, 8, "refused requests were charged");
            assert_eq!(d.retry_after(), Duration::from_secs(3600));
        }
        // The first limit still has its 8: a request with only that limit's key passes 8
        // times.
        for i in 0..8 {
            assert!(store.check_at(&k[..1], t0).admitted, "{i}");
        }
        assert!(!store.check_at(&k[..1], t0).admitted);
        // And when the first refuses, the second is only read, not charged.
        let d = store.check_at(&k, t0 + 3600 * SEC - 1);
        assert!(!d.admitted);
    }

    #[test]
    fn idle_buckets_are_swept() {
        let store = LocalStore::new(&[limit("10/s", 5)], 1000);
        for n in 0..100 {
            assert!(store.check_at(&[key(0, v4(n))], SEC).admitted);
        }
        assert_eq!(store.len(), 100);
        // T = 100 ms: a bucket charged once is full again 100 ms later.
        assert_eq!(store.table().sweep(SEC + 50 * MS), 0);
        assert_eq!(store.table().sweep(SEC + 100 * MS), 100);
        assert!(store.is_empty());
    }

    /// A stream of a million new keys (a botnet, random API keys) through a table capped at
    /// 10,000: the key count never passes the cap, the maps' memory stays what the cap
    /// needs, and newcomers that find no room are limited together, not admitted freely.
    #[test]
    fn a_million_new_keys_keep_memory_flat() {
        let cap = 10_000;
        let store = LocalStore::new(&[limit("1/h", 1)], cap);
        let t0 = SEC;
        let mut admitted = 0u64;
        let mut peak_bytes = 0;
        for n in 0..1_000_000u32 {
            // All within one millisecond of each other: none of them is idle yet.
            if store.check_at(&[key(0, v4(n))], t0 + u64::from(n)).admitted {
                admitted += 1;
            }
            if n % 50_000 == 0 {
                assert!(store.len() <= cap, "{} keys", store.len());
                peak_bytes = peak_bytes.max(store.table().allocated_bytes());
            }
        }
        assert!(store.len() <= cap, "{} keys", store.len());
        assert!(store.len() >= cap * 9 / 10, "{} keys", store.len());
        // Each shard's map holds at most its share: at most twice the slots it needs
        // (power-of-two growth), 17 bytes a slot.
        let bytes = store.table().allocated_bytes().max(peak_bytes);
        assert!(
            bytes <= 2 * cap * 17 + 64 * 1024,
            "{bytes} bytes for {cap} keys"
        );
        // Those with a bucket got their one request; the other 990,000 shared one overflow
        // bucket (1/h, burst 1): one of them got through.
        assert_eq!(admitted, store.len() as u64 + 1);
        assert!(store.table().overflowed() >= 990_000 - 1);
    }

    #[test]
    fn a_full_table_makes_room_from_idle_buckets_first() {
        let store = LocalStore::new(&[limit("10/s", 1)], 100);
        for n in 0..100 {
            assert!(store.check_at(&[key(0, v4(n))], SEC).admitted);
        }
        assert_eq!(store.len(), 100);
        // 100 ms later all are full again: a newcomer sweeps them out and gets its own
        // bucket, not the overflow one.
        let d = store.check_at(&[key(0, v4(1000))], SEC + 200 * MS);
        assert!(d.admitted);
        assert_eq!(store.table().overflowed(), 0);
        assert_eq!(store.len(), 1);
        assert_eq!(store.table().evicted(), 100);
    }
}
