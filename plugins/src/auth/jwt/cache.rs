//! The verified-token cache: a token that passed every check is remembered, by the
//! SHA-256 of its text, with the identity it carries, so the next request with it costs a
//! hash and a lookup instead of a signature check (an RS256 verification costs tens of
//! microseconds, more than proxying the request).
//!
//! Entries never outlive the token's `exp` (checked on every hit), never survive a change
//! of the key set (each carries the key-set generation it was verified under), and the
//! cache holds at most `cache_size` of them: when full, expired entries go first, then the
//! oldest. Refusals are never cached.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::Identity;

/// The cache key: the SHA-256 of the token.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    identity: Identity,
    /// The token's `exp`, seconds since the epoch.
    exp: i64,
    /// The key-set generation the token was verified under.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<TokenDigest, Entry>,
    /// Digests in insertion order, for evicting the oldest. May hold digests already
    /// removed (by a sweep or a clear); eviction skips them.
    order: VecDeque<TokenDigest>,
    /// When expired entries were last swept out (seconds since the epoch).
    last_sweep: i64,
}

/// A bounded map from token digests to verified identities.
pub struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; 0 caches nothing.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The identity of a token verified under key-set `generation` that has not expired
    /// at `now`.
    pub fn get(&self, key: &TokenDigest, now: i64, generation: u64) -> Option<Identity> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let e = inner.entries.get(key)?;
        (now < e.exp && e.generation == generation).then(|| e.identity.clone())
    }

    /// Remembers a verified token until its `exp`.
    pub fn insert(
        &self,
        key: TokenDigest,
        identity: Identity,
        exp: i64,
        generation: u64,
        now: i64,
    ) {
        // A token accepted within the leeway after its `exp` is not worth an entry.
        if self.capacity == 0 || exp <= now {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            inner.make_room(self.capacity, now);
        }
        let entry = Entry {
            identity,
            exp,
            generation,
        };
        if inner.entries.insert(key, entry).is_none() {
            inner.order.push_back(key);
        }
    }

    /// Forgets everything (the key set changed).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.clear();
        inner.order.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

impl Inner {
    /// Frees at least one slot: expired entries first (a full sweep, at most once a second
    /// so a stream of new tokens does not sweep on every insert), then the oldest.
    fn make_room(&mut self, capacity: usize, now: i64) {
        if now != self.last_sweep {
            self.last_sweep = now;
            self.entries.retain(|_, e| e.exp > now);
        }
        while self.entries.len() >= capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        // Sweeps leave removed digests in `order`; keep it from growing without bound.
        if self.order.len() > 2 * capacity {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sub: &str) -> Identity {
        Identity::new("corp").with_subject(sub)
    }

    fn key(i: u32) -> TokenDigest {
        digest(&format!("token-{i}"))
    }

    #[test]
    fn a_hit_needs_an_unexpired_entry_of_the_current_generation() {
        let c = TokenCache::new(10);
        c.insert(key(1), id("a"), 1_000, 3, 900);
        assert_eq!(
            c.get(&key(1), 999, 3).unwrap().subject.as_deref(),
            Some("a")
        );
        assert!(c.get(&key(1), 1_000, 3).is_none(), "not at exp");
        assert!(c.get(&key(1), 5_000, 3).is_none());
        assert!(c.get(&key(1), 999, 4).is_none(), "the key set changed");
        assert!(c.get(&key(2), 999, 3).is_none());
        c.clear();
        assert!(c.get(&key(1), 999, 3).is_none());
    }

    #[test]
    fn expired_and_disabled_never_stored() {
        let c = TokenCache::new(10);
        c.insert(key(1), id("a"), 100, 0, 100);
        assert_eq!(c.len(), 0);
        let off = TokenCache::new(0);
        assert!(!off.enabled());
        off.insert(key(1), id("a"), 1_000, 0, 100);
        assert!(off.get(&key(1), 100, 0).is_none());
    }

    #[test]
    fn bounded_expired_go_first_then_the_oldest() {
        let c = TokenCache::new(3);
        c.insert(key(1), id("1"), 2_000, 0, 100);
        c.insert(key(2), id("2"), 150, 0, 100);
        c.insert(key(3), id("3"), 2_000, 0, 100);
        // Full at t=200: entry 2 has expired and goes, not the oldest.
        c.insert(key(4), id("4"), 2_000, 0, 200);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(1), 200, 0).is_some());
        assert!(c.get(&key(4), 200, 0).is_some());
        // Full with nothing expired: the oldest (1) goes.
        c.insert(key(5), id("5"), 2_000, 0, 200);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(1), 200, 0).is_none());
        for i in [3, 4, 5] {
            assert!(c.get(&key(i), 200, 0).is_some(), "{i}");
        }
        // Re-inserting a present token takes no extra slot.
        c.insert(key(5), id("5"), 2_000, 0, 200);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn a_stream_of_new_tokens_stays_within_bounds() {
        let c = TokenCache::new(100);
        for i in 0..10_000 {
            c.insert(
                key(i),
                id("x"),
                10_000 + i64::from(i % 7),
                0,
                i64::from(i / 50),
            );
        }
        assert_eq!(c.len(), 100);
        let inner = c.inner.lock().unwrap();
        assert!(inner.order.len() <= 200);
        // The newest are kept.
        assert!(inner.entries.contains_key(&key(9_999)));
    }
}
