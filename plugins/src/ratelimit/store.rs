//! Where buckets live, behind one call: a policy hands a store the keys of a request (one
//! per limit) and gets back one [`Decision`] over all of them.
//!
//! Every store implements the same GCRA (docs/rate-limiting.md): per bucket a theoretical
//! arrival time `tat`; at time `t` a request is admitted iff `max(tat, t) + T - t <= B·T`,
//! and then `tat` becomes `max(tat, t) + T`. A request is admitted only when every limit
//! admits it, and then it costs each limit one unit; a refused request costs none. So the
//! fields a store reports ([`LimitState`]) mean the same whichever store computed them, and
//! the response fields built from them do too.
//!
//! `Local` keeps buckets in this process's memory; `Shared` keeps them in Redis, shared
//! by every gateway naming the policy, with local buckets to fall back on.

use smallvec::SmallVec;
use std::time::Duration;

use super::key::BucketKey;
use super::local::LocalStore;
use super::shared::SharedStore;
use crate::MetricSample;

/// What a store knows about one limit after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// Whether this limit alone would admit the request.
    pub admitted: bool,
    /// Requests this limit would admit right now, after this decision (0 when refused).
    pub remaining: u64,
    /// Time until this limit's bucket is full again (`tat - t`).
    pub reset: Duration,
    /// When refused: time until this limit would admit one request
    /// (`max(tat, t) + T - t - B·T`); zero otherwise.
    pub retry_after: Duration,
}

/// One decision over all of a policy's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Every limit admitted the request (and each was charged one unit).
    pub admitted: bool,
    /// One state per limit, in the policy's order.
    pub limits: SmallVec<[LimitState; 4]>,
}

impl Decision {
    /// When a refused request could be admitted: when the last refusing limit admits.
    pub fn retry_after(&self) -> Duration {
        self.limits
            .iter()
            .map(|l| l.retry_after)
            .max()
            .unwrap_or_default()
    }
}

/// A store that could not decide (a shared store unreachable). The policy's
/// `on_store_error` says what the request gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the rate-limit store is unavailable: {0}")]
    Unavailable(String),
}

/// A policy's buckets.
pub enum Store {
    /// In this process's memory: exact, never fails, not shared with other instances.
    Local(LocalStore),
    /// In Redis, shared by every gateway: exact, may fail (then see `fallback`).
    Shared(SharedStore),
}

impl Store {
    /// Decides one request: `keys` holds one key per limit, in the policy's order.
    pub async fn check(&self, keys: &[BucketKey<'_>]) -> Result<Decision, StoreError> {
        match self {
            Store::Local(s) => Ok(s.check(keys)),
            Store::Shared(s) => s.check(keys).await,
        }
    }

    /// A decision without the shared store, for a policy that fails open while it cannot
    /// decide: this gateway's own buckets, with the same limits.
    pub fn fallback(&self, keys: &[BucketKey<'_>]) -> Decision {
        match self {
            Store::Local(s) => s.check(keys),
            Store::Shared(s) => s.fallback(keys),
        }
    }

    /// Whether the store can decide (the local store always can; Redis: its last call did).
    pub fn healthy(&self) -> bool {
        match self {
            Store::Local(_) => true,
            Store::Shared(s) => s.healthy(),
        }
    }

    /// Periodic upkeep (the local store drops buckets that are full again).
    pub fn sweep(&self) {
        match self {
            Store::Local(s) => s.sweep(),
            Store::Shared(s) => s.fallback_store().sweep(),
        }
    }

    /// How many keys the store holds for this instance (the local store's table).
    pub fn keys(&self) -> usize {
        match self {
            Store::Local(s) => s.len(),
            Store::Shared(s) => s.fallback_store().len(),
        }
    }

    /// The store's own samples, labelled with the policy.
    pub fn metrics(&self, policy: &str, out: &mut Vec<MetricSample>) {
        match self {
            Store::Local(s) => s.metrics(policy, out),
            Store::Shared(s) => {
                out.push(MetricSample::gauge(
                    "ficus_rate_limit_store_up",
                    "Whether a rate-limit policy's shared store answered its last call.",
                    vec![("policy", policy.to_string())],
                    u64::from(s.healthy()),
                ));
                s.fallback_store().metrics(policy, out)
            }
        }
    }
}
