//! A bounded cache of token verdicts, keyed by the SHA-256 of the token (the token itself
//! is never stored), whose entries never outlive the time they were given.
//!
//! Used by the JWT policy (verified tokens, until their `exp`) and the introspection policy
//! (answers, until the earlier of `exp` and `cache_ttl`). When full, expired entries go
//! first, then an arbitrary eighth of the rest: a flood of distinct tokens costs the cache
//! its hit rate, never unbounded memory.

use sha2::{Digest, Sha256};

use crate::MetricSample;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The key of a token: its SHA-256.
pub type TokenKey = [u8; 32];

pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Lookups of a policy's token cache, for `ficus_auth_cache_total{policy, result}`. A hit is
/// counted by the policy once the entry is also still usable (its key set, its `exp`).
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheCounters {
    pub fn record(&self, hit: bool) {
        let n = if hit { &self.hits } else { &self.misses };
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub fn samples(&self, policy: &str, out: &mut Vec<MetricSample>) {
        for (result, n) in [("hit", &self.hits), ("miss", &self.misses)] {
            out.push(MetricSample::counter(
                "ficus_auth_cache_total",
                "Token cache lookups by policy and result.",
                vec![("policy", policy.to_string()), ("result", result.into())],
                n.load(Ordering::Relaxed),
            ));
        }
    }
}

pub struct TokenCache<V> {
    entries: Mutex<HashMap<TokenKey, (V, Instant)>>,
    capacity: usize,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(capacity: usize) -> TokenCache<V> {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, (V, Instant)>> {
        // A panic while holding the lock cannot leave the map half-written in a way that
        // matters: at worst an entry is missing.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` if it is still valid at `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `until` (not kept at all if that is already past).
    pub fn insert(&self, key: TokenKey, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, u)| *u > now);
            if map.len() >= self.capacity {
                let drop = (self.capacity / 8).max(1);
                let victims: Vec<TokenKey> = map.keys().take(drop).copied().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (value, until));
    }

    /// Forgets everything (the key set changed: a token verified with a removed key must
    /// not pass from the cache).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let now = Instant::now();
        let c = TokenCache::new(16);
        c.insert(token_key("a"), 1, now + Duration::from_secs(10), now);
        assert_eq!(c.get(&token_key("a"), now), Some(1));
        assert_eq!(c.get(&token_key("a"), now + Duration::from_secs(10)), None);
        assert!(c.is_empty(), "an expired entry is dropped when met");
        c.insert(token_key("past"), 2, now, now);
        assert!(c.is_empty(), "an entry already expired is not kept");
        for i in 0..1000 {
            c.insert(
                token_key(&i.to_string()),
                i,
                now + Duration::from_secs(60),
                now,
            );
            assert!(c.len() <= 16);
        }
        assert_eq!(
            c.get(&token_key("999"), now),
            Some(999),
            "the newest entry is kept"
        );
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let now = Instant::now();
        let c = TokenCache::new(4);
        c.insert(token_key("live"), 0, now + Duration::from_secs(60), now);
        for i in 0..3 {
            c.insert(
                token_key(&i.to_string()),
                1,
                now + Duration::from_secs(1),
                now,
            );
        }
        let later = now + Duration::from_secs(2);
        c.insert(token_key("new"), 2, later + Duration::from_secs(60), later);
        assert_eq!(c.get(&token_key("live"), later), Some(0));
        assert_eq!(c.get(&token_key("new"), later), Some(2));
    }
}
