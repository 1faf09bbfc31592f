//! One service's token: cached, refreshed before it expires, one request at a time.
//!
//! The request path calls [`TokenSource::authorization`]: a usable cached token is
//! answered at once (an atomic load and a clock read). Only without one does a request
//! wait, and then for the fetch already in flight, or one it starts; never longer than the
//! spec's `timeout`. After a failed fetch the next waits 1 s, doubling up to 30 s, and a
//! request without a usable token in that time is refused at once: a provider that is
//! down sees one request per backoff step, not one per client request. A token that is
//! still valid keeps being sent while refreshes fail.
//!
//! Times are tokio's [`Instant`], so unit tests can run the clock.

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use http::HeaderValue;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ClientCredentialsSpec, FetchError};
use crate::metrics::CredentialMetrics;

/// The lifetime of a token whose response has no `expires_in` (it is only RECOMMENDED,
/// RFC 6749 §5.1): a guess too short costs a few extra refreshes, one too long would send
/// expired tokens.
pub const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens living shorter than this are refused: refreshing them would keep the provider
/// busy and each would be stale by the time it arrives upstream.
const MIN_LIFETIME: Duration = Duration::from_secs(3);
/// `expires_in` counts whole seconds, and a JWT's `exp` is the issue time truncated to
/// the second plus the lifetime: the token may end up to this much sooner than
/// `expires_in` says.
const EXPIRES_IN_RESOLUTION: Duration = Duration::from_secs(1);
/// Lifetimes are capped here for scheduling, so a year-long token is still refreshed
/// daily (and an absurd `expires_in` cannot overflow the clock).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A refresh starts at 80% of the lifetime or this long before expiry, whichever is
/// earlier (but not before half the lifetime).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// A token is not sent in the last tenth of its life (at most this long) before expiry,
/// nor in the second `expires_in` may overstate: it could expire on its way upstream.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// Waits after failed fetches: the first, doubling up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A request waits for a fetch at most the spec's timeout plus this (the fetch enforces
/// the timeout itself; this only covers the hand-over).
const WAIT_SLACK: Duration = Duration::from_millis(100);

/// What a token endpoint issued.
pub struct Fetched {
    pub access_token: String,
    /// `expires_in`, if the endpoint said.
    pub expires_in: Option<Duration>,
}

/// Where tokens come from: the OAuth2 token endpoint ([`super::OAuth2Endpoint`]), or a
/// stand-in in tests.
#[async_trait]
pub trait TokenEndpoint: Send + Sync + 'static {
    async fn fetch(&self) -> Result<Fetched, FetchError>;
}

/// No token can be had now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// When the next attempt to get one is due.
    pub retry_after: Duration,
}

/// A token in use.
struct Token {
    /// `Bearer <token>`, marked sensitive.
    authorization: HeaderValue,
    refresh_at: Instant,
    usable_until: Instant,
}

impl Token {
    fn new(fetched: Fetched, now: Instant) -> Result<Token, FetchError> {
        let lifetime = fetched
            .expires_in
            .unwrap_or(ASSUMED_LIFETIME)
            .min(MAX_LIFETIME);
        if lifetime < MIN_LIFETIME {
            return Err(FetchError::BadResponse(format!(
                "a token living {lifetime:?} is too short-lived to use"
            )));
        }
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", fetched.access_token))
            .ok()
            .filter(|_| !fetched.access_token.is_empty())
            .ok_or_else(|| {
                FetchError::BadResponse("the access token is empty or not a header value".into())
            })?;
        authorization.set_sensitive(true);
        let usable_until = now + lifetime - expiry_margin(lifetime);
        Ok(Token {
            authorization,
            refresh_at: (now + refresh_after(lifetime)).min(usable_until),
            usable_until,
        })
    }
}

/// When to refresh a token of this lifetime: the earlier of 80% of it and 30 s before
/// expiry, but not before half of it (a 40 s token is refreshed after 20 s, not 10 s).
fn refresh_after(lifetime: Duration) -> Duration {
    let at_80_percent = lifetime * 4 / 5;
    let before_expiry = lifetime.saturating_sub(REFRESH_BEFORE_EXPIRY);
    at_80_percent.min(before_expiry).max(lifetime / 2)
}

/// How long before the end `expires_in` gives a token stops being sent.
fn expiry_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_EXPIRY_MARGIN) + EXPIRES_IN_RESOLUTION
}

/// The wait after `failures` failed fetches in a row (at least one).
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * (1u32 << doublings)).min(BACKOFF_MAX)
}

/// The state of fetching, changed only under its lock.
#[derive(Default)]
struct Fetching {
    in_flight: bool,
    /// Failed fetches since the last success.
    failures: u32,
    /// No fetch before this (set after a failure).
    next_attempt: Option<Instant>,
}

/// One service's client-credentials token.
pub struct TokenSource {
    service: String,
    spec: ClientCredentialsSpec,
    endpoint: Box<dyn TokenEndpoint>,
    token: ArcSwapOption<Token>,
    fetching: Mutex<Fetching>,
    /// Bumped when a fetch ends, either way: what waiting requests wake on.
    finished: watch::Sender<u64>,
    counters: Arc<CredentialMetrics>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("service", &self.service)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source without a token yet; nothing is fetched until it is asked for one or
    /// [`maintain`](Self::maintain)ed.
    pub fn new(
        service: &str,
        spec: ClientCredentialsSpec,
        endpoint: Box<dyn TokenEndpoint>,
        counters: Arc<CredentialMetrics>,
    ) -> Arc<TokenSource> {
        Arc::new(TokenSource {
            service: service.to_string(),
            spec,
            endpoint,
            token: ArcSwapOption::empty(),
            fetching: Mutex::new(Fetching::default()),
            finished: watch::Sender::new(0),
            counters,
        })
    }

    /// The settings this source was built from (a reload keeps the source when they are
    /// equal).
    pub fn spec(&self) -> &ClientCredentialsSpec {
        &self.spec
    }

    /// The `Authorization` value for an upstream request: the cached token while it is
    /// usable, else the result of the fetch in flight (or of one started now), waited for
    /// at most the spec's timeout. `Unavailable` at once while failed fetches back off.
    pub async fn authorization(self: &Arc<Self>) -> Result<HeaderValue, Unavailable> {
        if let Some(v) = self.usable(Instant::now()) {
            return Ok(v);
        }
        let mut finished = self.finished.subscribe();
        // A fetch that ended since the check above is seen here; one that ends later
        // wakes `finished`.
        if let Some(v) = self.usable(Instant::now()) {
            return Ok(v);
        }
        if let Err(left) = self.start_fetch(Instant::now()) {
            return Err(Unavailable { retry_after: left });
        }
        let _ = tokio::time::timeout(self.spec.timeout + WAIT_SLACK, finished.changed()).await;
        let now = Instant::now();
        self.usable(now).ok_or_else(|| Unavailable {
            retry_after: self.backoff_left(now).unwrap_or(BACKOFF_FIRST),
        })
    }

    /// Starts a fetch when there is no usable token or the one there is due for refresh
    /// (the background service calls this on every tick).
    pub fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let due = self
            .token
            .load()
            .as_ref()
            .is_none_or(|t| now >= t.refresh_at);
        if due {
            let _ = self.start_fetch(now);
        }
    }

    /// The cached token if it is usable at `now`; a refresh is started when it is due.
    fn usable(self: &Arc<Self>, now: Instant) -> Option<HeaderValue> {
        let guard = self.token.load();
        let token = guard.as_ref().filter(|t| now < t.usable_until)?;
        if now >= token.refresh_at {
            let _ = self.start_fetch(now);
        }
        Some(token.authorization.clone())
    }

    /// How long failed fetches still say to wait, if they do.
    fn backoff_left(&self, now: Instant) -> Option<Duration> {
        let f = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        f.next_attempt
            .filter(|next| *next > now)
            .map(|next| next - now)
    }

    /// Starts a fetch unless one is in flight (`Ok` either way) or failed fetches say to
    /// wait (`Err` with the time left).
    fn start_fetch(self: &Arc<Self>, now: Instant) -> Result<(), Duration> {
        let mut f = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if f.in_flight {
            return Ok(());
        }
        if let Some(next) = f.next_attempt.filter(|next| *next > now) {
            return Err(next - now);
        }
        f.in_flight = true;
        drop(f);
        let source = self.clone();
        // Spawned, so that a request that stops waiting does not cancel the fetch others
        // wait for.
        tokio::spawn(async move { source.fetch().await });
        Ok(())
    }

    /// One token request, its result stored and counted.
    async fn fetch(&self) {
        // Lifetimes count from when the request left: the token's clock started before the
        // answer arrived, never after.
        let sent = Instant::now();
        let result = match tokio::time::timeout(self.spec.timeout, self.endpoint.fetch()).await {
            Ok(fetched) => fetched.and_then(|f| Token::new(f, sent)),
            Err(_) => Err(FetchError::TimedOut(self.spec.timeout)),
        };
        let mut f = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(token) => {
                self.token.store(Some(Arc::new(token)));
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
                if f.failures > 0 {
                    tracing::info!(service = %self.service, failures = f.failures, "client credentials: token obtained after failed attempts");
                } else {
                    tracing::debug!(service = %self.service, "client credentials: token obtained");
                }
                f.failures = 0;
                f.next_attempt = None;
            }
            Err(e) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                f.failures = f.failures.saturating_add(1);
                let wait = backoff(f.failures);
                f.next_attempt = Some(Instant::now() + wait);
                let cached = self
                    .token
                    .load()
                    .as_ref()
                    .is_some_and(|t| Instant::now() < t.usable_until);
                tracing::warn!(
                    service = %self.service,
                    token_url = %self.spec.token_url,
                    still_valid_token = cached,
                    "client credentials: {e}; next attempt in {wait:?}"
                );
            }
        }
        f.in_flight = false;
        drop(f);
        self.finished.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Secret, DEFAULT_TIMEOUT};
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A token endpoint that counts its requests, answers after `delay`, and fails while
    /// `failing` is set.
    struct Fake {
        calls: Arc<AtomicUsize>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        delay: Duration,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenEndpoint for Fake {
        async fn fetch(&self) -> Result<Fetched, FetchError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(FetchError::Unreachable("connection refused".into()));
            }
            Ok(Fetched {
                access_token: format!("token-{n}"),
                expires_in: Some(self.lifetime),
            })
        }
    }

    struct Setup {
        source: Arc<TokenSource>,
        calls: Arc<AtomicUsize>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        counters: Arc<CredentialMetrics>,
    }

    fn setup(delay: Duration, lifetime: Duration, failing: bool) -> Setup {
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(failing));
        let counters = Arc::new(CredentialMetrics::default());
        let spec = ClientCredentialsSpec {
            token_url: "http://127.0.0.1:1/token".into(),
            client_id: "gw".into(),
            client_secret: Secret::new("s"),
            scopes: vec![],
            resource: None,
            audience: None,
            ca: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let fake = Fake {
            calls: calls.clone(),
            failing: failing.clone(),
            delay,
            lifetime,
        };
        Setup {
            source: TokenSource::new("orders", spec, Box::new(fake), counters.clone()),
            calls,
            failing,
            counters,
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn refresh_schedule() {
        let s = Duration::from_secs;
        // Long tokens: at 80%.
        assert_eq!(refresh_after(s(3600)), s(2880));
        assert_eq!(refresh_after(s(600)), s(480));
        // Shorter: 30 s before expiry is earlier...
        assert_eq!(refresh_after(s(100)), s(70));
        // ... but never before half the lifetime.
        assert_eq!(refresh_after(s(40)), s(20));
        assert_eq!(refresh_after(s(4)), s(2));
        assert_eq!(expiry_margin(s(600)), s(6));
        assert_eq!(expiry_margin(s(4)), Duration::from_millis(1400));
        let backoffs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch_and_then_the_cache() {
        let t = setup(Duration::from_millis(200), Duration::from_secs(600), false);
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let s = t.source.clone();
                tokio::spawn(async move { s.authorization().await })
            })
            .collect();
        let mut values = Vec::new();
        for w in waiting {
            values.push(w.await.unwrap().unwrap());
        }
        assert!(values.iter().all(|v| v == "Bearer token-1"), "{values:?}");
        assert!(values[0].is_sensitive());
        assert_eq!(t.calls.load(Ordering::SeqCst), 1);
        // Cached from now on.
        for _ in 0..10 {
            assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-1");
        }
        assert_eq!(t.calls.load(Ordering::SeqCst), 1);
        assert_eq!(t.counters.ok.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshed_before_expiry_while_the_old_token_serves() {
        let t = setup(Duration::from_millis(10), Duration::from_secs(100), false);
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-1");
        // Not due yet: the background tick does nothing.
        tokio::time::advance(Duration::from_secs(69)).await;
        t.source.maintain();
        settle().await;
        assert_eq!(t.calls.load(Ordering::SeqCst), 1);
        // Due at 70 s: one refresh, while the old token is still answered.
        tokio::time::advance(Duration::from_secs(1)).await;
        t.source.maintain();
        t.source.maintain();
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-1");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-2");
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_a_valid_token_keeps_serving() {
        let t = setup(Duration::from_millis(10), Duration::from_secs(100), false);
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-1");
        t.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(70)).await;
        t.source.maintain();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(t.counters.error.load(Ordering::SeqCst), 1);
        // The refresh failed; the token is still valid and still sent, and the next tick
        // inside the backoff asks nobody.
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-1");
        t.source.maintain();
        settle().await;
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
        // Past its usable end (100 s less 6 s of margin) with the provider still down: refused
        // at once, without another request while backing off.
        tokio::time::advance(Duration::from_secs(26)).await;
        let calls = t.calls.load(Ordering::SeqCst);
        t.source.maintain();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = Instant::now();
        let refused = t.source.authorization().await.unwrap_err();
        assert_eq!(Instant::now(), before, "a refusal in backoff does not wait");
        assert!(refused.retry_after > Duration::ZERO);
        assert_eq!(t.calls.load(Ordering::SeqCst), calls + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_never_reached_is_asked_once_per_backoff_step() {
        let t = setup(Duration::from_millis(10), Duration::from_secs(600), true);
        let first = t.source.authorization().await.unwrap_err();
        assert_eq!(first.retry_after, Duration::from_secs(1));
        for _ in 0..50 {
            let e = t.source.authorization().await.unwrap_err();
            assert!(e.retry_after <= Duration::from_secs(1));
        }
        assert_eq!(t.calls.load(Ordering::SeqCst), 1);
        // After the first backoff: one more attempt, then a 2 s wait.
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = t.source.authorization().await.unwrap_err();
        assert_eq!(second.retry_after, Duration::from_secs(2));
        assert_eq!(t.calls.load(Ordering::SeqCst), 2);
        // Recovery: the next attempt after the backoff gets a token.
        t.failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(t.source.authorization().await.unwrap(), "Bearer token-3");
        assert_eq!(t.counters.error.load(Ordering::SeqCst), 2);
        assert_eq!(t.counters.ok.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_provider_is_waited_for_only_up_to_the_timeout() {
        let t = setup(Duration::from_secs(3600), Duration::from_secs(600), false);
        let start = Instant::now();
        let e = t.source.authorization().await.unwrap_err();
        let waited = start.elapsed();
        assert!(
            waited >= DEFAULT_TIMEOUT && waited <= DEFAULT_TIMEOUT + WAIT_SLACK,
            "{waited:?}"
        );
        assert_eq!(e.retry_after, Duration::from_secs(1));
        assert_eq!(t.counters.error.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn unusable_token_responses_are_errors() {
        let s = Duration::from_secs;
        let now = Instant::now();
        let token = |t: &str, secs: Option<u64>| {
            Token::new(
                Fetched {
                    access_token: t.into(),
                    expires_in: secs.map(Duration::from_secs),
                },
                now,
            )
        };
        assert!(token("", Some(600)).is_err());
        assert!(token("a\nb", Some(600)).is_err());
        assert!(token("abc", Some(2)).is_err());
        let no_lifetime = token("abc", None).unwrap();
        assert_eq!(no_lifetime.usable_until - now, ASSUMED_LIFETIME - s(6));
        let forever = token("abc", Some(u64::MAX / 2)).unwrap();
        assert_eq!(forever.refresh_at - now, MAX_LIFETIME * 4 / 5);
        // The shortest usable token is refreshed before it stops being sent.
        let short = token("abc", Some(3)).unwrap();
        assert!(short.refresh_at < short.usable_until);
    }
}
