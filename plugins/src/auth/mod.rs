//! Authentication at the edge: `[auth.NAME]` policies and the per-route gate that runs them.
//!
//! An auth policy is an [`Authenticator`]: it finds a token in the request (see
//! [`TokenSource`]) and verifies it (a JWT against a key set, or an OAuth2 introspection
//! call), answering with a [`Verdict`]. Policies are shared by the routes that name them and
//! keep their caches and key sets across reloads that leave them unchanged.
//!
//! A route's `auth = "corp"` or `auth = ["corp", "partners"]`, with its `scopes` and `claims`
//! rules, becomes one [`gate::AuthGate`] plugin in the route's chain. The gate asks each
//! policy in turn (any one may accept), checks the route's requirements against the
//! verified [`Identity`], turns refusals into `401`/`403`/`503` answers with an RFC 6750
//! `WWW-Authenticate` challenge, and hands the identity to the upstream as headers.
//!
//! This module never echoes a token, a key or a library error to the client: every
//! refusal has a fixed description ([`Refusal::description`]).

pub mod cache;
pub mod common;
pub mod gate;
pub mod introspection;
pub mod jwt;
pub mod provider;
pub mod requirements;
pub mod secret;

use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Identity, MetricSample, RequestView};
pub use common::{CommonSettings, TokenSource};

/// The section of `[auth.NAME]` policies and the route key naming them.
pub const SECTION: &str = "auth";

/// Why a token was refused. Each has a fixed description for the client and a label for
/// the `ficus_auth_requests_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a well-formed token: wrong segment count, bad base64, not JSON, wrong types.
    Malformed,
    /// Longer than the policy's `max_token_size`.
    TooLarge,
    Expired,
    NotYetValid,
    BadSignature,
    /// Signed with a key (`kid`) the key set does not have, even after a refresh.
    UnknownKey,
    WrongIssuer,
    WrongAudience,
    /// The header's `typ` is not the required one (an ID token used as an access token).
    WrongType,
    /// The header's `alg` is not one the policy allows.
    Algorithm,
    /// `exp - iat` is longer than `max_lifetime`.
    Lifetime,
    /// A required claim (`exp`) is missing or has the wrong JSON type.
    InvalidClaims,
    /// Introspection answered `active: false`.
    Inactive,
}

impl Refusal {
    pub const ALL: [Refusal; 13] = [
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::BadSignature,
        Refusal::UnknownKey,
        Refusal::WrongIssuer,
        Refusal::WrongAudience,
        Refusal::WrongType,
        Refusal::Algorithm,
        Refusal::Lifetime,
        Refusal::InvalidClaims,
        Refusal::Inactive,
    ];

    /// What the client is told (`error_description`): fixed text, never the token's content.
    pub fn description(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed token",
            Refusal::TooLarge => "token too large",
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token not yet valid",
            Refusal::BadSignature => "bad signature",
            Refusal::UnknownKey => "unknown signing key",
            Refusal::WrongIssuer => "wrong issuer",
            Refusal::WrongAudience => "wrong audience",
            Refusal::WrongType => "wrong token type",
            Refusal::Algorithm => "algorithm not allowed",
            Refusal::Lifetime => "token lifetime too long",
            Refusal::InvalidClaims => "missing or invalid registered claims",
            Refusal::Inactive => "token inactive",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::BadSignature => "bad_signature",
            Refusal::UnknownKey => "unknown_key",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongType => "wrong_type",
            Refusal::Algorithm => "algorithm",
            Refusal::Lifetime => "lifetime",
            Refusal::InvalidClaims => "invalid_claims",
            Refusal::Inactive => "inactive",
        }
    }
}

/// What a policy decided about one token.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Verified; who it belongs to.
    Accepted(Identity),
    /// Not acceptable, for this reason.
    Refused(Refusal),
    /// The policy cannot decide: its identity provider was never reached (no key set), or
    /// the introspection endpoint is down or slow. Never a pass.
    Unavailable,
}

/// Outcomes counted per policy, beyond the refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Accepted,
    NoToken,
    Refused(Refusal),
    InsufficientScope,
    ClaimMismatch,
    ProviderUnavailable,
}

impl Counted {
    fn index(self) -> usize {
        match self {
            Counted::Accepted => 0,
            Counted::NoToken => 1,
            Counted::InsufficientScope => 2,
            Counted::ClaimMismatch => 3,
            Counted::ProviderUnavailable => 4,
            Counted::Refused(r) => 5 + r as usize,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Counted::Accepted => "accepted",
            Counted::NoToken => "no_token",
            Counted::InsufficientScope => "insufficient_scope",
            Counted::ClaimMismatch => "claim_mismatch",
            Counted::ProviderUnavailable => "provider_unavailable",
            Counted::Refused(r) => r.label(),
        }
    }

    const ALL: [Counted; 5 + Refusal::ALL.len()] = {
        let mut all = [Counted::Accepted; 5 + Refusal::ALL.len()];
        all[1] = Counted::NoToken;
        all[2] = Counted::InsufficientScope;
        all[3] = Counted::ClaimMismatch;
        all[4] = Counted::ProviderUnavailable;
        let mut i = 0;
        while i < Refusal::ALL.len() {
            all[5 + i] = Counted::Refused(Refusal::ALL[i]);
            i += 1;
        }
        all
    };
}

/// A policy's outcome counters (`ficus_auth_requests_total{policy, outcome}`). They live in
/// the policy instance, so they survive reloads that keep it.
#[derive(Debug, Default)]
pub struct AuthCounters {
    outcomes: [AtomicU64; Counted::ALL.len()],
}

impl AuthCounters {
    pub fn count(&self, what: Counted) {
        self.outcomes[what.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, what: Counted) -> u64 {
        self.outcomes[what.index()].load(Ordering::Relaxed)
    }

    /// Every outcome as a metric sample, labelled with the policy.
    pub fn samples(&self, policy: &str, out: &mut Vec<MetricSample>) {
        for what in Counted::ALL {
            out.push(MetricSample::counter(
                "ficus_auth_requests_total",
                "Authentication outcomes by policy.",
                vec![
                    ("policy", policy.to_string()),
                    ("outcome", what.label().into()),
                ],
                self.get(what),
            ));
        }
    }
}

/// An `[auth.NAME]` policy: finds and verifies a token.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The policy's name (`corp` for `[auth.corp]`).
    fn name(&self) -> &str;

    /// Where the token is read from and what of the identity goes upstream.
    fn common(&self) -> &CommonSettings;

    /// Verifies a token found in the request (already within `max_token_size`). Cheap
    /// checks (shape, size) come before any cryptography or network call.
    async fn verify(&self, token: &str) -> Verdict;

    /// The policy's outcome counters, which the gate also counts into.
    fn counters(&self) -> &AuthCounters;
}

/// Looks for this policy's token in the request and verifies it: `None` when the request
/// carries none.
pub async fn authenticate(a: &dyn Authenticator, req: &RequestView<'_>) -> Option<Verdict> {
    match a.common().find_token(req) {
        Ok(None) => None,
        Ok(Some(token)) => Some(a.verify(&token).await),
        Err(refusal) => Some(Verdict::Refused(refusal)),
    }
}

/// The identity carried by verified claims: `sub`, the client (`client_id`, else `azp`),
/// scopes from `scope` (space-separated) or `scp` (an array, or a string).
pub fn identity_from_claims(policy: &str, claims: serde_json::Value) -> Identity {
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(Arc::<str>::from);
    let subject = text("sub");
    let client_id = text("client_id").or_else(|| text("azp"));
    let mut scopes: Vec<String> = Vec::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(serde_json::Value::String(s)) => {
                scopes.extend(s.split_ascii_whitespace().map(str::to_string))
            }
            Some(serde_json::Value::Array(a)) => {
                scopes.extend(a.iter().filter_map(|v| v.as_str()).map(str::to_string))
            }
            _ => {}
        }
    }
    let mut id = Identity::new(policy);
    id.subject = subject;
    id.client_id = client_id;
    id.scopes = scopes.into();
    id.claims = Arc::new(claims);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let id = identity_from_claims(
            "corp",
            serde_json::json!({"sub": "u1", "azp": "web", "scope": "a b  c"}),
        );
        assert_eq!(*id.scopes, ["a", "b", "c"]);
        assert_eq!(id.client_id.as_deref(), Some("web"));
        let id = identity_from_claims("corp", serde_json::json!({"scp": ["x", 3, "y"]}));
        assert_eq!(*id.scopes, ["x", "y"]);
        assert_eq!(id.subject, None);
    }

    #[test]
    fn every_outcome_has_its_own_counter() {
        let c = AuthCounters::default();
        for (i, what) in Counted::ALL.iter().enumerate() {
            assert_eq!(what.index(), i);
            c.count(*what);
        }
        let mut out = Vec::new();
        c.samples("corp", &mut out);
        assert_eq!(out.len(), Counted::ALL.len());
        assert!(out.iter().all(|s| s.value == 1));
        let labels: std::collections::HashSet<_> =
            out.iter().map(|s| s.labels[1].1.clone()).collect();
        assert_eq!(labels.len(), Counted::ALL.len());
    }
}
