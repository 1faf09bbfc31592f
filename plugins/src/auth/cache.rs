//! A bounded cache of token verdicts whose entries never outlive the time they were given.
//!
//! Used by the JWT policy (verified tokens, until their `exp`) and the introspection policy
//! (answers, until the earlier of `exp` and `cache_ttl`). When full, expired entries go
//! first, then an arbitrary eighth of the rest: a flood of distinct tokens costs the cache
//! its hit rate, never unbounded memory.
//!
//! An entry is found by a [`TokenKey`]: the SHA-256 of the token's secret part, and the
//! rest of the token kept as it is and compared in full on every hit (decision 31). For a
//! JWT the secret part is its signature: the cache holds header and claims, which cannot
//! be used without the signature, and hashes only the ~350 bytes of an RS256 signature
//! instead of the whole 1-2 KiB token (the whole token's SHA-256 was a fifth of a cache
//! hit's cost). For an opaque token (introspection) the whole token is the secret part.
//! Two different tokens find the same entry only if their secret parts have the same
//! SHA-256; a memory dump shows no token that could be replayed.

use sha2::{Digest, Sha256};

use crate::MetricSample;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Where a token's entry is, and what must match there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenKey<'t> {
    digest: [u8; 32],
    clear: &'t str,
}

impl<'t> TokenKey<'t> {
    /// A JWT's key: everything up to the last `.` kept, the signature hashed. (A token
    /// without a `.` is hashed whole.)
    pub fn jwt(token: &'t str) -> TokenKey<'t> {
        match token.rfind('.') {
            Some(dot) => TokenKey {
                digest: Sha256::digest(&token.as_bytes()[dot + 1..]).into(),
                clear: &token[..=dot],
            },
            None => TokenKey::opaque(token),
        }
    }

    /// An opaque token's key: the whole token hashed, nothing kept.
    pub fn opaque(token: &'t str) -> TokenKey<'t> {
        TokenKey {
            digest: Sha256::digest(token.as_bytes()).into(),
            clear: "",
        }
    }
}

struct Entry<V> {
    clear: Box<str>,
    value: V,
    until: Instant,
}

/// SHA-256 digests are already uniform: a seeded fast hash spreads them well enough, and
/// an entry is only ever matched on the whole digest and its clear part.
type Table<V> = HashMap<[u8; 32], Entry<V>, foldhash::fast::RandomState>;

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
    entries: Mutex<Table<V>>,
    capacity: usize,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(capacity: usize) -> TokenCache<V> {
        TokenCache {
            entries: Mutex::new(Table::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table<V>> {
        // A panic while holding the lock cannot leave the map half-written in a way that
        // matters: at worst an entry is missing.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` if it is still valid at `now`.
    pub fn get(&self, key: &TokenKey<'_>, now: Instant) -> Option<V> {
        let mut map = self.lock();
        match map.get(&key.digest) {
            Some(e) if *e.clear != *key.clear => None,
            Some(e) if e.until > now => Some(e.value.clone()),
            Some(_) => {
                map.remove(&key.digest);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `until` (not kept at all if that is already past).
    pub fn insert(&self, key: &TokenKey<'_>, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key.digest) {
            map.retain(|_, e| e.until > now);
            if map.len() >= self.capacity {
                let mut drop = (self.capacity / 8).max(1);
                map.retain(|_, _| {
                    if drop == 0 {
                        return true;
                    }
                    drop -= 1;
                    false
                });
            }
        }
        map.insert(
            key.digest,
            Entry {
                clear: key.clear.into(),
                value,
                until,
            },
        );
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

    fn k(token: &str) -> TokenKey<'_> {
        TokenKey::opaque(token)
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let now = Instant::now();
        let c = TokenCache::new(16);
        c.insert(&k("a"), 1, now + Duration::from_secs(10), now);
        assert_eq!(c.get(&k("a"), now), Some(1));
        assert_eq!(c.get(&k("a"), now + Duration::from_secs(10)), None);
        assert!(c.is_empty(), "an expired entry is dropped when met");
        c.insert(&k("past"), 2, now, now);
        assert!(c.is_empty(), "an entry already expired is not kept");
        for i in 0..1000 {
            c.insert(&k(&i.to_string()), i, now + Duration::from_secs(60), now);
            assert!(c.len() <= 16);
        }
        assert_eq!(c.get(&k("999"), now), Some(999), "the newest entry is kept");
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn only_the_exact_token_finds_its_entry() {
        let now = Instant::now();
        let c = TokenCache::new(16);
        let until = now + Duration::from_secs(60);
        let token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
        c.insert(&TokenKey::jwt(token), "alice", until, now);
        assert_eq!(c.get(&TokenKey::jwt(token), now), Some("alice"));
        for other in [
            "eyJhbGciOiJSUzI1NiJ9.e30.c2lN",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2l",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2lnA",
            // The same signature on other claims.
            "eyJhbGciOiJSUzI1NiJ9.e31.c2ln",
            "eyJhbGciOiJSUzI1NiJ9.e30c2ln",
            "c2ln",
            "",
        ] {
            let key = TokenKey::jwt(other);
            assert_eq!(c.get(&key, now), None, "{other:?} is not the cached token");
        }
        let kept = c.lock();
        let e = kept.values().next().expect("one entry");
        assert_eq!(
            &*e.clear, "eyJhbGciOiJSUzI1NiJ9.e30.",
            "the signature is not kept"
        );
    }

    #[test]
    fn a_full_cache_drops_an_eighth() {
        let now = Instant::now();
        let c = TokenCache::new(16);
        let until = now + Duration::from_secs(60);
        for i in 0..16 {
            c.insert(&k(&i.to_string()), i, until, now);
        }
        assert_eq!(c.len(), 16);
        c.insert(&k("new"), 99, until, now);
        assert_eq!(c.len(), 15, "two of sixteen dropped, one added");
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let now = Instant::now();
        let c = TokenCache::new(4);
        c.insert(&k("live"), 0, now + Duration::from_secs(60), now);
        for i in 0..3 {
            c.insert(&k(&i.to_string()), 1, now + Duration::from_secs(1), now);
        }
        let later = now + Duration::from_secs(2);
        c.insert(&k("new"), 2, later + Duration::from_secs(60), later);
        assert_eq!(c.get(&k("live"), later), Some(0));
        assert_eq!(c.get(&k("new"), later), Some(2));
    }
}
