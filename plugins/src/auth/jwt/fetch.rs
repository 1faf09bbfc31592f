//! Fetching a policy's key set from its identity provider: OIDC discovery (once, when
//! `jwks` is not written), then the JWKS, in the background, refreshed on the answer's
//! `Cache-Control: max-age` within `jwks_refresh` bounds, retried with backoff while the
//! provider fails, and early (at most once per `jwks_min_refresh`) when a token names a
//! `kid` the set does not have.
//!
//! Every fetch happens in one place, the policy's background task ([`Remote::run`]): the
//! request path only asks for an early refresh and waits (bounded) for the round that
//! serves it, so a flood of tokens with unknown `kid`s costs the provider at most one fetch
//! per interval. Requests go only to the configured URLs (and the `jwks_uri` of the
//! configured issuer's discovery document) through the shared provider client
//! ([`crate::auth::provider`]): no redirect is followed, TLS is verified (plus `ca_file`
//! when given), answers are bounded in size and time, and nothing in a token can name a
//! URL.
//!
//! A failed fetch never drops keys: the last good set stays in use until a good answer
//! replaces it.

use reqwest::header::{ACCEPT, CACHE_CONTROL};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{watch, Notify};

use super::keys::{JwksError, KeySet};
use crate::auth::provider::{self, CallError};

/// The refresh interval when the JWKS answer has no `max-age` (then clamped to the bounds).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The first retry after a failed fetch; each failure doubles it up to [`LAST_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
pub const LAST_RETRY: Duration = Duration::from_secs(30);

/// Where a policy's keys come from and how they are refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The JWKS URL, when written; otherwise the discovery document names it.
    pub jwks: Option<String>,
    /// `{issuer}/.well-known/openid-configuration`, when `jwks` is not written.
    pub discovery: Option<String>,
    /// The issuer the discovery document must name.
    pub issuer: String,
    /// Per request to the provider; also the longest a request waits for a fetch.
    pub timeout: Duration,
    /// The shortest time between two fetches asked for by unknown `kid`s.
    pub min_refresh: Duration,
    pub refresh: RefreshBounds,
    /// Extra trusted roots for the provider's TLS certificate (PEM, read at compile time).
    pub ca: Option<Vec<u8>>,
}

/// Bounds on the refresh interval a JWKS answer's `max-age` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    pub min: Duration,
    pub max: Duration,
}

/// Why a fetch failed (for the log; clients only ever see `503` or a refusal).
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("no JWKS URL")]
    NoUrl,
    #[error("{url}: {cause}")]
    Call { url: String, cause: String },
    #[error("{url} names the issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch {
        url: String,
        found: Option<String>,
        expected: String,
    },
    #[error("{url}: `jwks_uri` is missing or not an {scheme} URL")]
    BadJwksUri { url: String, scheme: &'static str },
    #[error("{url}: {source}")]
    Jwks { url: String, source: JwksError },
}

/// A call error with its causes (a request error's cause says "connection refused" or
/// which certificate check failed; the error itself only "error sending request"). Causes
/// whose text is already there are left out: reqwest repeats itself.
fn describe(e: &CallError) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The `max-age` of a response's `Cache-Control` values, in seconds: 0 for `no-cache` or
/// `no-store`, the smallest when several are given, `None` when there is none.
pub fn max_age<'a>(values: impl Iterator<Item = &'a str>) -> Option<u64> {
    let mut out: Option<u64> = None;
    for directive in values.flat_map(|v| v.split(',')) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let secs = if name.eq_ignore_ascii_case("max-age") {
            value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                // Only digits: a parse failure is an overflow, i.e. "very long".
                .map(|v| v.parse().unwrap_or(u64::MAX))
        } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            Some(0)
        } else {
            None
        };
        if let Some(s) = secs {
            out = Some(out.map_or(s, |o| o.min(s)));
        }
    }
    out
}

/// When to fetch the key set again after a good answer with this `max-age`.
pub fn next_refresh(max_age: Option<u64>, bounds: RefreshBounds) -> Duration {
    // Not `clamp`, which panics on inverted bounds (compile refuses them anyway).
    max_age
        .map_or(DEFAULT_REFRESH, Duration::from_secs)
        .max(bounds.min)
        .min(bounds.max)
}

#[derive(Debug, Default)]
struct RoundState {
    /// A fetch is under way.
    in_round: bool,
    /// An early fetch was asked for and has not started yet.
    requested: bool,
    /// When a request last asked for an early fetch.
    last_early: Option<Instant>,
}

/// A policy's connection to its provider: the background fetch loop and the early
/// refreshes requests ask it for.
pub struct Remote {
    policy: Arc<str>,
    settings: RemoteSettings,
    client: reqwest::Client,
    /// The JWKS URL: configured, or found by discovery (then kept).
    jwks: Mutex<Option<String>>,
    state: Mutex<RoundState>,
    kick: Notify,
    /// Fetches completed, good or not.
    rounds: watch::Sender<u64>,
    fetched_ok: AtomicU64,
    fetched_err: AtomicU64,
}

impl Remote {
    pub fn new(policy: Arc<str>, settings: RemoteSettings) -> Remote {
        Remote {
            policy,
            client: provider::client(settings.ca.as_deref(), settings.timeout),
            jwks: Mutex::new(settings.jwks.clone()),
            settings,
            state: Mutex::new(RoundState::default()),
            kick: Notify::new(),
            rounds: watch::Sender::new(0),
            fetched_ok: AtomicU64::new(0),
            fetched_err: AtomicU64::new(0),
        }
    }

    /// Fetches completed so far: `(good, failed)`.
    pub fn fetches(&self) -> (u64, u64) {
        (
            self.fetched_ok.load(Ordering::Relaxed),
            self.fetched_err.load(Ordering::Relaxed),
        )
    }

    /// Waits (at most `timeout`) for the first fetch to complete, if none has yet.
    pub async fn wait_first_round(&self) {
        let mut rounds = self.rounds.subscribe();
        if *rounds.borrow_and_update() > 0 {
            return;
        }
        let _ = tokio::time::timeout(self.settings.timeout, rounds.changed()).await;
    }

    /// Asks for an early fetch because a token names an unknown `kid`, and waits (at most
    /// `timeout`) for it. A fetch under way or already asked for is shared; none is asked
    /// for within `min_refresh` of the last early one (the caller then returns at once).
    /// Scheduled fetches do not count: a key the provider added just after one is found
    /// at the first token that names it.
    pub async fn refresh_for_unknown_kid(&self) {
        let mut rounds = self.rounds.subscribe();
        {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !(st.in_round || st.requested) {
                if st
                    .last_early
                    .is_some_and(|t| t.elapsed() < self.settings.min_refresh)
                {
                    return;
                }
                st.requested = true;
                st.last_early = Some(Instant::now());
                self.kick.notify_one();
            }
        }
        let _ = tokio::time::timeout(self.settings.timeout, rounds.changed()).await;
    }

    /// The fetch loop, run as the policy's background work for as long as the policy is
    /// in use: fetches, hands a good key set to `publish`, then sleeps until the refresh
    /// interval (or the next retry) is over or a request asks for an early fetch.
    pub async fn run(&self, publish: impl Fn(KeySet)) {
        let mut retry = FIRST_RETRY;
        loop {
            self.begin_round();
            let wait = match self.fetch().await {
                Ok((set, next)) => {
                    self.fetched_ok.fetch_add(1, Ordering::Relaxed);
                    publish(set);
                    retry = FIRST_RETRY;
                    next
                }
                Err(e) => {
                    self.fetched_err.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "auth policy `{}`: fetching the JWKS failed: {e}; retrying in {retry:?}",
                        self.policy
                    );
                    let wait = retry;
                    retry = (retry * 2).min(LAST_RETRY);
                    wait
                }
            };
            self.end_round();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {}
            }
        }
    }

    fn begin_round(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.in_round = true;
        st.requested = false;
    }

    fn end_round(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_round = false;
        self.rounds.send_modify(|n| *n += 1);
    }

    /// One fetch: discovery if the JWKS URL is not known yet, then the JWKS. Returns the
    /// key set and when to fetch it again.
    async fn fetch(&self) -> Result<(KeySet, Duration), FetchError> {
        let known = self
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let url = match (known, &self.settings.discovery) {
            (Some(url), _) => url,
            (None, Some(discovery)) => {
                let url = self.discover(discovery).await?;
                *self.jwks.lock().unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
                url
            }
            // Compile guarantees one of the two.
            (None, None) => return Err(FetchError::NoUrl),
        };
        let (doc, max_age) = self.get(&url).await?;
        let set = KeySet::from_jwks(&doc).map_err(|source| FetchError::Jwks {
            url: url.clone(),
            source,
        })?;
        Ok((set, next_refresh(max_age, self.settings.refresh)))
    }

    /// The `jwks_uri` of the discovery document at `url`, which must name the configured
    /// issuer (OpenID Connect Discovery §4.3).
    async fn discover(&self, url: &str) -> Result<String, FetchError> {
        let (doc, _) = self.get(url).await?;
        let issuer = doc.get("issuer").and_then(Value::as_str);
        if issuer != Some(self.settings.issuer.as_str()) {
            return Err(FetchError::IssuerMismatch {
                url: url.into(),
                found: issuer.map(|i| i.chars().take(200).collect()),
                expected: self.settings.issuer.clone(),
            });
        }
        // Keys from an https provider come over https; plain http only where discovery
        // itself is plain http (a test provider on loopback).
        let https_only = url.starts_with("https:");
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|u| {
                reqwest::Url::parse(u)
                    .is_ok_and(|u| u.scheme() == "https" || (!https_only && u.scheme() == "http"))
            })
            .ok_or(FetchError::BadJwksUri {
                url: url.into(),
                scheme: if https_only { "https" } else { "http(s)" },
            })?;
        Ok(jwks.to_string())
    }

    /// GETs a JSON document from the provider (bounded in size and time), with the
    /// `max-age` of its answer.
    async fn get(&self, url: &str) -> Result<(Value, Option<u64>), FetchError> {
        let failed = |e: CallError| FetchError::Call {
            url: url.into(),
            cause: describe(&e),
        };
        let resp = self
            .client
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(e.into()))?;
        let max_age = max_age(
            resp.headers()
                .get_all(CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let doc = provider::json_body(resp).await.map_err(failed)?;
        Ok((doc, max_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::testing::{jwks_doc, Provider};

    const BOUNDS: RefreshBounds = RefreshBounds {
        min: Duration::from_secs(60),
        max: Duration::from_secs(86_400),
    };

    #[test]
    fn cache_control_max_age() {
        let age = |v: &[&str]| max_age(v.iter().copied());
        assert_eq!(age(&["max-age=300"]), Some(300));
        assert_eq!(age(&["public, MAX-AGE = 120 , must-revalidate"]), Some(120));
        assert_eq!(age(&["max-age=\"90\""]), Some(90));
        assert_eq!(age(&["max-age=600", "max-age=60"]), Some(60));
        assert_eq!(age(&["no-cache"]), Some(0));
        assert_eq!(age(&["max-age=600, no-store"]), Some(0));
        assert_eq!(age(&["max-age=99999999999999999999999"]), Some(u64::MAX));
        assert_eq!(age(&["public"]), None);
        assert_eq!(age(&["max-age=-5", "max-age=1h", "max-age="]), None);
        assert_eq!(age(&[]), None);
    }

    #[test]
    fn refresh_interval_is_clamped() {
        assert_eq!(next_refresh(Some(3600), BOUNDS), Duration::from_secs(3600));
        assert_eq!(next_refresh(Some(0), BOUNDS), BOUNDS.min);
        assert_eq!(next_refresh(Some(5), BOUNDS), BOUNDS.min);
        assert_eq!(next_refresh(Some(u64::MAX), BOUNDS), BOUNDS.max);
        assert_eq!(next_refresh(None, BOUNDS), DEFAULT_REFRESH);
        let tight = RefreshBounds {
            min: Duration::from_secs(600),
            max: Duration::from_secs(900),
        };
        assert_eq!(next_refresh(None, tight), Duration::from_secs(600));
    }

    fn settings(provider: &Provider, discovery: bool) -> RemoteSettings {
        RemoteSettings {
            jwks: (!discovery).then(|| provider.url("/jwks")),
            discovery: discovery.then(|| provider.url("/.well-known/openid-configuration")),
            issuer: provider.issuer(),
            timeout: Duration::from_secs(2),
            min_refresh: Duration::from_secs(10),
            refresh: BOUNDS,
            ca: None,
        }
    }

    #[tokio::test]
    async fn discovery_finds_the_jwks_and_checks_the_issuer() {
        let provider = Provider::start().await;
        provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
        let remote = Remote::new("corp".into(), settings(&provider, true));
        let (set, next) = remote.fetch().await.unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(
            next,
            Duration::from_secs(300),
            "the provider says max-age=300"
        );
        assert_eq!(provider.hits("/.well-known/openid-configuration"), 1);
        // The JWKS URL is kept: no second discovery.
        remote.fetch().await.unwrap();
        assert_eq!(provider.hits("/.well-known/openid-configuration"), 1);
        assert_eq!(provider.hits("/jwks"), 2);

        let mut wrong = settings(&provider, true);
        wrong.issuer = "https://someone-else.example".into();
        let err = Remote::new("corp".into(), wrong).fetch().await.unwrap_err();
        assert!(matches!(err, FetchError::IssuerMismatch { .. }), "{err}");
        assert!(err.to_string().contains("someone-else"), "{err}");
    }

    async fn fails(remote: &Remote) -> String {
        remote.fetch().await.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn bad_answers_are_errors() {
        let provider = Provider::start().await;
        let remote = Remote::new("corp".into(), settings(&provider, false));
        provider.set_jwks(b"{\"keys\": []}".to_vec());
        assert!(fails(&remote).await.contains("none of the JWKS's 0 keys"));
        provider.set_status("/jwks", 500);
        assert!(fails(&remote).await.contains("500"));
        // Redirects are not followed.
        provider.set_status("/jwks", 302);
        assert!(fails(&remote).await.contains("302"));
        provider.set_status("/jwks", 200);
        provider.set_jwks(vec![b' '; provider::MAX_BODY + 1]);
        assert!(fails(&remote).await.contains("larger than"));
        let gone = RemoteSettings {
            jwks: Some("http://127.0.0.1:1/jwks".into()),
            ..settings(&provider, false)
        };
        let err = fails(&Remote::new("corp".into(), gone)).await;
        assert!(err.contains("127.0.0.1:1"), "{err}");
        assert!(
            err.to_lowercase().contains("refused"),
            "the cause is kept: {err}"
        );
    }
}
