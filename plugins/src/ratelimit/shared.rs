//! The Redis-backed store as a policy uses it: bucket names that every gateway derives
//! alike, Redis's decisions turned into the policy's [`Decision`], and the local buckets a
//! fail-open policy decides on while Redis cannot.
//!
//! A bucket's Redis key is `ficus:rl:POLICY:LIMIT:DIGEST`: the policy's name, the limit's
//! position in it, and 128 bits of the SHA-256 of the key's values (tagged by kind, as the
//! local store hashes them). Gateways naming the same policy share its buckets; a client's
//! address, claim or API key never appears in Redis in the clear.

use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::config::Limit;
use super::key::BucketKey;
use super::local::LocalStore;
use super::redis::{RedisLimit, RedisStore};
use super::store::{Decision, StoreError};

/// A policy's buckets in Redis, with local ones to fall back on.
pub struct SharedStore {
    redis: RedisStore,
    /// `POLICY:` (the policy's name is part of every bucket's key).
    prefix: String,
    /// `(T, B)` per limit, in the policy's order.
    limits: Vec<(Duration, u32)>,
    /// Decides while Redis cannot, for a policy that fails open.
    fallback: LocalStore,
}

impl SharedStore {
    pub fn new(policy: &str, redis: RedisStore, limits: &[Limit], max_keys: usize) -> SharedStore {
        SharedStore {
            redis,
            prefix: format!("{policy}:"),
            limits: limits
                .iter()
                .map(|l| (l.rate.emission_interval(), l.burst))
                .collect(),
            fallback: LocalStore::new(limits, max_keys),
        }
    }

    /// One script call to Redis for all the request's limits.
    pub async fn check(&self, keys: &[BucketKey<'_>]) -> Result<Decision, StoreError> {
        let names: SmallVec<[String; 4]> = keys.iter().map(|k| self.bucket_name(k)).collect();
        let limits: SmallVec<[RedisLimit<'_>; 4]> = keys
            .iter()
            .zip(&names)
            .map(|(k, name)| {
                let (interval, burst) = self
                    .limits
                    .get(usize::from(k.limit))
                    .copied()
                    .unwrap_or((Duration::from_secs(1), 1));
                RedisLimit {
                    key: name,
                    interval,
                    burst,
                }
            })
            .collect();
        let d = self
            .redis
            .check(&limits)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Decision {
            admitted: d.admitted,
            limits: d.limits.iter().copied().collect(),
        })
    }

    /// The local decision while Redis cannot decide.
    pub fn fallback(&self, keys: &[BucketKey<'_>]) -> Decision {
        self.fallback.check(keys)
    }

    /// Whether the last call to Redis got a decision.
    pub fn healthy(&self) -> bool {
        self.redis.healthy()
    }

    pub fn fallback_store(&self) -> &LocalStore {
        &self.fallback
    }

    /// `POLICY:LIMIT:DIGEST` (the store adds `ficus:rl:`).
    fn bucket_name(&self, key: &BucketKey<'_>) -> String {
        let mut h = DigestHasher(Sha256::new());
        key.parts.hash(&mut h);
        let digest = h.0.finalize();
        let mut name = String::with_capacity(self.prefix.len() + 4 + 32);
        name.push_str(&self.prefix);
        let _ = write!(name, "{}:", key.limit);
        for b in &digest[..16] {
            let _ = write!(name, "{b:02x}");
        }
        name
    }
}

/// Feeds `Hash` output into SHA-256: the same values give the same digest in every
/// gateway (of the same build), unlike the local store's seeded hash.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only `finalize` is used.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::key::{KeyValue, MAX_PARTS};
    use crate::ratelimit::rate::Rate;
    use std::net::{IpAddr, Ipv4Addr};

    fn limits() -> Vec<Limit> {
        vec![Limit {
            name: None,
            key: crate::ratelimit::key::KeySpec { parts: Vec::new() },
            rate: Rate::parse("10/s").expect("a rate"),
            burst: 5,
        }]
    }

    fn key(v: KeyValue<'_>) -> BucketKey<'_> {
        let mut parts = [KeyValue::Empty; MAX_PARTS];
        parts[0] = v;
        BucketKey { limit: 0, parts }
    }

    #[test]
    fn bucket_names_are_stable_distinct_and_opaque() {
        let redis = RedisStore::new("redis://127.0.0.1:1/0", None, Duration::from_millis(50))
            .expect("a valid URL");
        let a = SharedStore::new("partners", redis.clone(), &limits(), 16);
        let b = SharedStore::new("partners", redis, &limits(), 16);
        let ip = key(KeyValue::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))));
        let name = a.bucket_name(&ip);
        assert_eq!(name, b.bucket_name(&ip), "two gateways name a bucket alike");
        assert!(name.starts_with("partners:0:"), "{name}");
        assert_eq!(name.len(), "partners:0:".len() + 32);
        assert!(!name.contains("127.0.0.9"));
        let api_key = key(KeyValue::Header(b"sk_live_secret"));
        let other = a.bucket_name(&api_key);
        assert_ne!(name, other);
        assert!(!other.contains("sk_live"), "{other}");
        // The same text as a header and as a route is two buckets.
        assert_ne!(
            a.bucket_name(&key(KeyValue::Header(b"orders"))),
            a.bucket_name(&key(KeyValue::Route("orders")))
        );
    }
}
