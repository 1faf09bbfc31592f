//! A `[rate_limits.NAME]` instance on the request path: compute the request's key for each
//! limit, ask the store for one decision, and answer `429` or let the request through
//! (leaving the decision for the response fields when `headers = "always"`).
//!
//! The instance holds the buckets, so they are shared by every route naming the policy and
//! survive a reload that leaves the policy unchanged. It never holds a lock across an
//! await: the local store decides synchronously under one shard lock per limit.

use async_trait::async_trait;
use http::StatusCode;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::config::{HeaderMode, OnStoreError, RateLimitSettings};
use super::fields::{Fields, RATELIMIT, RATELIMIT_POLICY};
use super::key::BucketKey;
use super::store::{Decision, Store, StoreError};
use super::SECTION;
use crate::{
    Background, Hooks, MetricSample, Outcome, Plugin, RequestView, Response, ResponseHead,
};

/// The refusal's message (fixed text).
pub const LIMITED: &str = "rate limit exceeded";
/// The answer when the store cannot decide and the policy fails closed.
pub const UNAVAILABLE: &str = "rate limit unavailable";
/// How often buckets that are full again are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// At most one message per this while the shared store keeps failing.
const STORE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The shared store's failures as logged: the first at once, then one summary per
/// [`STORE_LOG_EVERY`], and one line when it answers again.
#[derive(Default)]
struct StoreLog {
    last: Option<Instant>,
    /// Failed decisions not yet reported.
    unreported: u64,
    /// Failed decisions since the store last answered.
    outage: u64,
}

/// A decision left in the request's state for the response fields.
#[derive(Debug, Clone)]
pub struct RateLimitDecision(pub Decision);

#[derive(Default)]
struct RouteCounts {
    admitted: AtomicU64,
    limited: AtomicU64,
}

/// A rate-limit policy instance.
pub struct RateLimitPlugin {
    name: Arc<str>,
    settings: Arc<RateLimitSettings>,
    store: Store,
    fields: Fields,
    /// Per route naming the policy (route names are few and fixed by the config).
    counts: RwLock<HashMap<Box<str>, Arc<RouteCounts>, foldhash::fast::RandomState>>,
    store_errors: AtomicU64,
    /// The shared store failed its last call (read on every decision; the log's lock is
    /// taken only around failures and the recovery).
    store_failing: AtomicBool,
    store_log: Mutex<StoreLog>,
}

impl RateLimitPlugin {
    pub fn new(name: &str, settings: Arc<RateLimitSettings>, store: Store) -> RateLimitPlugin {
        RateLimitPlugin {
            name: name.into(),
            fields: Fields::new(name, &settings.limits),
            settings,
            store,
            counts: RwLock::new(HashMap::default()),
            store_errors: AtomicU64::new(0),
            store_failing: AtomicBool::new(false),
            store_log: Mutex::new(StoreLog::default()),
        }
    }

    /// Counts a decision the store could not make, and logs it (rate-limited: an outage
    /// under load is thousands of failures a second).
    fn store_failed(&self, e: &StoreError) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        self.store_failing.store(true, Ordering::Relaxed);
        let mut log = self.store_log.lock().unwrap_or_else(|p| p.into_inner());
        log.unreported += 1;
        log.outage += 1;
        let now = Instant::now();
        if log
            .last
            .is_none_or(|t| now.duration_since(t) >= STORE_LOG_EVERY)
        {
            let then = match self.settings.on_store_error {
                OnStoreError::FailOpen => "deciding with this gateway's own buckets",
                OnStoreError::FailClosed => "answering 503",
            };
            log::warn!(
                "rate limit {}: {e}; {then} ({} decision(s) without the store since the last message)",
                self.name,
                log.unreported
            );
            log.last = Some(now);
            log.unreported = 0;
        }
    }

    /// The store decided: ends an outage, with one line saying so.
    fn store_answered(&self) {
        if !self.store_failing.load(Ordering::Relaxed) {
            return;
        }
        let mut log = self.store_log.lock().unwrap_or_else(|p| p.into_inner());
        if self.store_failing.swap(false, Ordering::Relaxed) {
            // At warning level like the outage it ends (the gateway caps `log` records at
            // warnings: pingora's debug logging is costly even when filtered).
            log::warn!(
                "rate limit {}: the shared store answers again ({} decision(s) were made without it)",
                self.name,
                log.outage
            );
            *log = StoreLog::default();
        }
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The store's key count (for tests and `/policies`).
    pub fn keys(&self) -> usize {
        self.store.keys()
    }

    fn count(&self, route: &str, admitted: bool) {
        let bump = |c: &RouteCounts| {
            let n = if admitted { &c.admitted } else { &c.limited };
            n.fetch_add(1, Ordering::Relaxed);
        };
        if let Some(c) = self
            .counts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
        {
            return bump(c);
        }
        let mut counts = self.counts.write().unwrap_or_else(|p| p.into_inner());
        bump(counts.entry(route.into()).or_default());
    }

    /// The request's key for each limit, in the policy's order.
    fn bucket_keys<'r>(&self, req: &'r RequestView<'_>) -> SmallVec<[BucketKey<'r>; 4]> {
        self.settings
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| l.key.resolve(i, req))
            .collect()
    }

    /// The shared store's decision; when it cannot decide, the local buckets' (fail open)
    /// or none (fail closed).
    async fn shared_decision(&self, req: &RequestView<'_>) -> Option<Decision> {
        let keys = self.bucket_keys(req);
        match self.store.check(&keys).await {
            Ok(d) => {
                self.store_answered();
                Some(d)
            }
            Err(e) => {
                self.store_failed(&e);
                match self.settings.on_store_error {
                    OnStoreError::FailOpen => Some(self.store.fallback(&keys)),
                    OnStoreError::FailClosed => None,
                }
            }
        }
    }

    /// What the request gets for a decision (`None`: the store could not decide and the
    /// policy fails closed).
    fn conclude(&self, req: &mut RequestView<'_>, decision: Option<Decision>) -> Outcome {
        match decision {
            Some(d) if d.admitted => {
                self.count(req.route, true);
                if self.settings.headers == HeaderMode::Always {
                    req.state.insert(RateLimitDecision(d));
                }
                Outcome::Continue
            }
            Some(d) => {
                self.count(req.route, false);
                Outcome::Respond(self.refusal(&d))
            }
            None => Outcome::Respond(
                Response::error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
                    .with_header(http::header::RETRY_AFTER, 1u32.into())
                    .with_log_detail(format!(
                        "rate limit \"{}\": store unavailable (fail-closed)",
                        self.name
                    )),
            ),
        }
    }

    /// The access log's `detail` of a refusal: the policy and the limits that refused, by
    /// the names `RateLimit-Policy` gives them.
    fn refused_by(&self, d: &Decision) -> String {
        let single = self.settings.limits.len() == 1;
        let refusing: Vec<String> = d
            .limits
            .iter()
            .zip(&self.settings.limits)
            .filter(|(state, _)| !state.admitted)
            .map(|(_, limit)| limit.field_name(&self.name, single))
            .collect();
        format!("rate limit \"{}\": {}", self.name, refusing.join(", "))
    }

    /// The `429` for a refused decision.
    fn refusal(&self, d: &Decision) -> Response {
        let mut r = Response::error(StatusCode::TOO_MANY_REQUESTS, LIMITED)
            .with_header(http::header::RETRY_AFTER, Fields::retry_after(d))
            .with_log_detail(self.refused_by(d));
        if self.settings.headers == HeaderMode::Off {
            return r;
        }
        r = r
            .with_header(RATELIMIT_POLICY, self.fields.policy().clone())
            .with_header(RATELIMIT, self.fields.ratelimit(d));
        // The legacy fields go where the IETF ones go.
        if self.settings.legacy_headers {
            for (n, v) in self.fields.legacy(d) {
                r = r.with_header(n, v);
            }
        }
        r
    }
}

#[async_trait]
impl Plugin for RateLimitPlugin {
    fn kind(&self) -> &'static str {
        SECTION
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            // Fields on admitted requests' responses only when asked for: otherwise the
            // policy costs nothing after the request step.
            response: self.settings.headers == HeaderMode::Always,
            ..Hooks::default()
        }
    }

    async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
        let decision = match &self.store {
            // Decided here, under one shard lock per limit: nothing to await. The shared
            // store's call is boxed on its own, so this hook's future (allocated and moved
            // on every request) stays small.
            Store::Local(local) => Some(local.check(&self.bucket_keys(req))),
            Store::Shared(_) => Box::pin(self.shared_decision(req)).await,
        };
        self.conclude(req, decision)
    }

    async fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let Some(RateLimitDecision(d)) = resp.state.get::<RateLimitDecision>() else {
            return;
        };
        resp.edits
            .set(RATELIMIT_POLICY, self.fields.policy().clone());
        resp.edits.set(RATELIMIT, self.fields.ratelimit(d));
        if self.settings.legacy_headers {
            for (n, v) in self.fields.legacy(d) {
                resp.edits.set(n, v);
            }
        }
    }

    fn background(self: Arc<Self>) -> Option<Background> {
        Some(Box::pin(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                self.store.sweep();
            }
        }))
    }

    fn metrics(&self, out: &mut Vec<MetricSample>) {
        let counts = self.counts.read().unwrap_or_else(|p| p.into_inner());
        let mut routes: Vec<_> = counts.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, c) in routes {
            for (result, n) in [("admitted", &c.admitted), ("limited", &c.limited)] {
                out.push(MetricSample::counter(
                    "ficus_rate_limit_requests_total",
                    "Requests a rate-limit policy decided, by route and result.",
                    vec![
                        ("policy", self.name.to_string()),
                        ("route", route.to_string()),
                        ("result", result.to_string()),
                    ],
                    n.load(Ordering::Relaxed),
                ));
            }
        }
        out.push(MetricSample::counter(
            "ficus_rate_limit_store_errors_total",
            "Decisions a rate-limit policy's store could not make.",
            vec![("policy", self.name.to_string())],
            self.store_errors.load(Ordering::Relaxed),
        ));
        self.store.metrics(&self.name, out);
    }
}
