//! What a route allows each upstream attempt: how long it may take ([`Timeouts`]) and how
//! many attempts a request gets ([`RetryPolicy`]).
//!
//! Plain data, compiled from routes.toml and read by the proxy when it sets up an attempt.
//! It lives below both the router (a route carries it) and the registry (a service carries
//! default timeouts), so neither has to import the other.

use std::time::Duration;

/// Per-route upstream timeouts. `None` means the service's (or the built-in) default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub total: Option<Duration>,
}

impl Timeouts {
    /// `self` with unset values taken from `fallback`.
    pub fn or(self, fallback: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.or(fallback.connect),
            read: self.read.or(fallback.read),
            total: self.total.or(fallback.total),
        }
    }
}

/// Per-route retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries including the first.
    pub attempts: u32,
    pub non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            non_idempotent: false,
        }
    }
}
