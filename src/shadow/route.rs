//! A route's `shadow = { … }` as the gateway runs it: where copies go, which requests are
//! copied, and the bounds on each copy.

use http::Method;
use std::time::Duration;

use super::compare::ShadowComparison;
use crate::router::rewrite::Rewrite;

/// The marker every shadow copy (and second primary request) carries, so a service can
/// skip side effects. The gateway owns it: a client's copy is removed from every request.
pub static X_FICUS_SHADOW: http::HeaderName = http::HeaderName::from_static("x-ficus-shadow");

/// The default share of a route's requests that are copied.
pub const DEFAULT_SAMPLE: f64 = 1.0;
/// The default limit on a shadow exchange, from sending the copy to the shadow's last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default limit on a copied body, in each direction.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// The largest `max_body_bytes` a route may set: every copy in flight may hold this much
/// three times over (request, primary's answer, shadow's answer).
pub const MAX_MAX_BODY: usize = 16 * 1024 * 1024;
/// The default number of a route's copies in flight at once; more are dropped and counted.
pub const DEFAULT_QUEUE: usize = 64;
/// The largest `queue` a route may set.
pub const MAX_QUEUE: usize = 10_000;

/// A route's compiled `shadow`.
#[derive(Debug, Clone)]
pub struct RouteShadow {
    /// Index of the shadow service in the runtime's service list.
    pub service: usize,
    /// Share of the route's requests copied (0 to 1).
    pub sample: f64,
    /// Methods whose requests are copied (`GET` and `HEAD` unless the route says more).
    pub methods: Vec<Method>,
    pub timeout: Duration,
    /// Bound on the copied request body and on each answer kept for comparison.
    pub max_body: usize,
    /// Copies of this route in flight at most.
    pub queue: usize,
    /// The shadow's own path rules; without either, the primary's target is used.
    pub strip_prefix: Option<String>,
    pub rewrite: Option<Rewrite>,
    pub compare: ShadowComparison,
}

impl RouteShadow {
    /// Whether the shadow has path rules of its own.
    pub fn has_own_path_rules(&self) -> bool {
        self.strip_prefix.is_some() || self.rewrite.is_some()
    }

    /// Whether a request with this method may be copied.
    pub fn copies(&self, method: &Method) -> bool {
        self.methods.iter().any(|m| m == method)
    }
}
