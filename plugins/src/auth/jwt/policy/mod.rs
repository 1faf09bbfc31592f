//! A JWT policy instance: verifies tokens against its key set and caches the verified
//! ones; as a [`Plugin`] it has no hooks of its own (routes reach it through their auth
//! gate), fetches its key set in the background, and reports readiness and metrics.

use async_trait::async_trait;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::fetch::Remote;
use super::keys::{KeySet, KeyStore, Lookup};
use super::verify::parse;
use super::{unix_now, JwtSettings, KeySource};
use crate::auth::cache::{CacheCounters, TokenCache, TokenKey};
use crate::auth::{
    identity_from_claims, AuthCounters, Authenticator, CommonSettings, Refusal, Verdict,
};
use crate::duration::MAX_DURATION;
use crate::{Background, Hooks, Identity, MetricSample, Plugin};

/// Why a token was not accepted.
enum Failure {
    Refused(Refusal),
    /// No key set was ever fetched.
    Unavailable,
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure::Refused(r)
    }
}

/// A verified token as cached.
#[derive(Clone)]
struct Cached {
    identity: Identity,
    /// The key-set generation it was verified under: void once the key set changes.
    generation: u64,
    /// The token's `exp`: checked on every hit against the wall clock too, since the
    /// cache's own deadline is on the monotonic clock and a clock step would move it.
    exp: i64,
}

/// A token that passed every check.
struct Verified {
    identity: Identity,
    exp: i64,
    /// The key-set generation it was verified under.
    generation: u64,
}

/// An `[auth.NAME]` policy of type `jwt`.
pub struct JwtPolicy {
    name: Arc<str>,
    settings: Arc<JwtSettings>,
    keys: KeyStore,
    remote: Option<Remote>,
    cache: TokenCache<Cached>,
    counters: AuthCounters,
    cache_lookups: CacheCounters,
    /// Where a remote key set comes from, as the key of [`LAST_KEY_SETS`].
    source: Option<String>,
}

/// The last key set fetched from each source (JWKS URL or discovery document and issuer)
/// in this process. A policy rebuilt by a reload (its `leeway` changed, say) starts from
/// the keys its predecessor had instead of from nothing: during a provider outage the new
/// instance would otherwise have no keys at all and answer `503` until the provider comes
/// back. The background fetch replaces them as usual. Small: one key set per source ever
/// configured.
static LAST_KEY_SETS: Mutex<Vec<(String, Arc<KeySet>)>> = Mutex::new(Vec::new());

fn source_key(r: &super::RemoteSettings) -> String {
    format!("{:?}|{:?}|{}", r.jwks, r.discovery, r.issuer)
}

fn last_key_set(source: &str) -> Option<Arc<KeySet>> {
    let sets = LAST_KEY_SETS.lock().unwrap_or_else(PoisonError::into_inner);
    sets.iter()
        .find(|(s, _)| s == source)
        .map(|(_, k)| k.clone())
}

fn remember_key_set(source: &str, set: Arc<KeySet>) {
    let mut sets = LAST_KEY_SETS.lock().unwrap_or_else(PoisonError::into_inner);
    match sets.iter_mut().find(|(s, _)| s == source) {
        Some(entry) => entry.1 = set,
        None => sets.push((source.to_string(), set)),
    }
}

impl JwtPolicy {
    pub fn new(name: &str, settings: Arc<JwtSettings>) -> JwtPolicy {
        let name: Arc<str> = name.into();
        let (keys, remote, source) = match &settings.keys {
            KeySource::Local(set) => (KeyStore::fixed(set.clone()), None, None),
            KeySource::Remote(r) => {
                let source = source_key(r);
                let keys = match last_key_set(&source) {
                    Some(set) => KeyStore::fixed(set),
                    None => KeyStore::default(),
                };
                (
                    keys,
                    Some(Remote::new(name.clone(), r.clone())),
                    Some(source),
                )
            }
        };
        JwtPolicy {
            name,
            cache: TokenCache::new(settings.cache_size),
            settings,
            keys,
            remote,
            counters: AuthCounters::default(),
            cache_lookups: CacheCounters::default(),
            source,
        }
    }

    /// Makes a fetched key set current; a different one voids every cached token.
    fn publish(&self, set: KeySet) {
        if self.keys.publish(set) {
            self.cache.clear();
        }
        if let (Some(source), Some(set)) = (&self.source, self.keys.current()) {
            remember_key_set(source, set);
        }
    }

    /// The current key set; before the first fetch has completed, waits for it (bounded
    /// by `timeout`).
    async fn key_set(&self) -> Result<Arc<KeySet>, Failure> {
        if let Some(set) = self.keys.current() {
            return Ok(set);
        }
        if let Some(remote) = &self.remote {
            remote.wait_first_round().await;
        }
        self.keys.current().ok_or(Failure::Unavailable)
    }

    /// Every check, cheapest first: shape, algorithm, type and claims on the unverified
    /// token, then the key and the signature.
    async fn check(&self, token: &str, now: i64) -> Result<Verified, Failure> {
        let t = parse(token)?;
        if !self.settings.algorithms.contains(&t.alg) {
            return Err(Refusal::Algorithm.into());
        }
        let exp = self.settings.claims.check(&t, now)?;
        let mut set = self.key_set().await?;
        if let (Lookup::Unknown, Some(remote)) = (set.select(t.kid.as_deref(), t.alg), &self.remote)
        {
            // Maybe the provider rotated its keys: fetch again (rate-limited, shared).
            remote.refresh_for_unknown_kid().await;
            set = self.key_set().await?;
        }
        let key = match set.select(t.kid.as_deref(), t.alg) {
            Lookup::Found(k) => k,
            Lookup::Unusable => return Err(Refusal::Algorithm.into()),
            Lookup::Unknown | Lookup::Ambiguous => return Err(Refusal::UnknownKey.into()),
        };
        if !key.verifies(t.signing_input, t.signature, t.alg) {
            return Err(Refusal::BadSignature.into());
        }
        Ok(Verified {
            identity: identity_from_claims(&self.name, serde_json::Value::Object(t.claims)),
            exp,
            generation: set.generation,
        })
    }
}

#[async_trait]
impl Authenticator for JwtPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn common(&self) -> &CommonSettings {
        &self.settings.common
    }

    async fn verify(&self, token: &str) -> Verdict {
        let key = TokenKey::jwt(token);
        let unix = unix_now();
        let hit = self
            .cache
            .get(&key, Instant::now())
            .filter(|c| c.generation == self.keys.generation() && unix < c.exp);
        if let Some(c) = hit {
            self.cache_lookups.record(true);
            return Verdict::Accepted(c.identity);
        }
        self.cache_lookups.record(false);
        match self.check(token, unix).await {
            Ok(v) => {
                // Kept until the token's `exp`, never longer.
                let left = Duration::from_secs(v.exp.saturating_sub(unix).max(0) as u64);
                let now = Instant::now();
                let cached = Cached {
                    identity: v.identity.clone(),
                    generation: v.generation,
                    exp: v.exp,
                };
                self.cache
                    .insert(&key, cached, now + left.min(MAX_DURATION), now);
                Verdict::Accepted(v.identity)
            }
            Err(Failure::Refused(r)) => Verdict::Refused(r),
            Err(Failure::Unavailable) => Verdict::Unavailable,
        }
    }

    fn counters(&self) -> &AuthCounters {
        &self.counters
    }
}

#[async_trait]
impl Plugin for JwtPolicy {
    fn kind(&self) -> &'static str {
        "auth:jwt"
    }

    /// None: the routes' auth gates call [`Authenticator::verify`].
    fn hooks(&self) -> Hooks {
        Hooks::default()
    }

    fn background(self: Arc<Self>) -> Option<Background> {
        self.remote.as_ref()?;
        Some(Box::pin(async move {
            if let Some(remote) = &self.remote {
                remote.run(|set| self.publish(set)).await;
            }
        }))
    }

    /// Ready once a key set is there (a local key always is).
    fn ready(&self) -> bool {
        self.keys.current().is_some()
    }

    fn metrics(&self, out: &mut Vec<MetricSample>) {
        self.counters.samples(&self.name, out);
        let labelled = |result: &str| {
            vec![
                ("policy", self.name.to_string()),
                ("result", result.to_string()),
            ]
        };
        if let Some(remote) = &self.remote {
            let (ok, failed) = remote.fetches();
            for (result, n) in [("ok", ok), ("error", failed)] {
                out.push(MetricSample::counter(
                    "ficus_auth_jwks_fetches_total",
                    "JWKS fetches (with discovery when needed) by policy and result.",
                    labelled(result),
                    n,
                ));
            }
        }
        self.cache_lookups.samples(&self.name, out);
    }

    fn authenticator(self: Arc<Self>) -> Option<Arc<dyn Authenticator>> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
