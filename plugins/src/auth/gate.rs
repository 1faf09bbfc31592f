//! [`AuthGate`]: the auth step of one route. It asks the route's policies in turn for a
//! verdict on the request's token (any one may accept), checks the route's requirements,
//! answers refusals with an RFC 6750 challenge, and queues the verified identity for the
//! upstream.
//!
//! The gateway removes every client-sent copy of the identity headers from every request
//! (on every route, in every spelling), so what the gate sets is the only identity an
//! upstream can read.

use async_trait::async_trait;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;

use super::requirements::{Requirements, Unmet};
use super::{authenticate, Authenticator, Counted, Refusal, Verdict};
use crate::{Hooks, Outcome, Plugin, RequestView, Response};

/// How long a client is told to wait when the identity provider is unavailable.
pub const RETRY_AFTER_SECS: &str = "5";
const REALM: &str = "Bearer realm=\"ficus\"";

/// The auth step of one route: built per route from its `auth`, `scopes` and `claims`.
pub struct AuthGate {
    policies: Vec<Arc<dyn Authenticator>>,
    requirements: Requirements,
    scope_challenge: HeaderValue,
}

impl AuthGate {
    pub fn new(policies: Vec<Arc<dyn Authenticator>>, requirements: Requirements) -> AuthGate {
        // Scopes were checked at compile time to be printable ASCII without `"` or `\`.
        let scope_challenge = HeaderValue::from_str(&format!(
            "{REALM}, error=\"insufficient_scope\", scope=\"{}\"",
            requirements.scopes.join(" ")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(REALM));
        AuthGate {
            policies,
            requirements,
            scope_challenge,
        }
    }
}

fn challenge(refusal: Option<Refusal>) -> Response {
    match refusal {
        None => Response::error(StatusCode::UNAUTHORIZED, "authentication required").with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(REALM),
        ),
        Some(r) => {
            let value = format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                r.description()
            );
            Response::error(StatusCode::UNAUTHORIZED, r.description()).with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(REALM)),
            )
        }
    }
}

fn unavailable() -> Response {
    Response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "identity provider unavailable",
    )
    .with_header(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    )
}

#[async_trait]
impl Plugin for AuthGate {
    fn kind(&self) -> &'static str {
        super::SECTION
    }

    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
        // A browser's CORS preflight carries no credentials; refusing it would break every
        // cross-origin call. It is answered or forwarded as the route says, without identity.
        // Whatever token it carries goes no further: it was not checked.
        if req.preflight {
            for p in &self.policies {
                p.common().remove_token(req.headers, req.upstream);
            }
            return Outcome::Continue;
        }
        let mut provider_down = false;
        let mut refusal: Option<Refusal> = None;
        for p in &self.policies {
            match authenticate(p.as_ref(), req).await {
                None => p.counters().count(Counted::NoToken),
                Some(Verdict::Refused(r)) => {
                    p.counters().count(Counted::Refused(r));
                    // A token meant for another policy is refused by this one's issuer
                    // check; the other policy's reason says more.
                    if refusal.is_none_or(|first| first == Refusal::WrongIssuer) {
                        refusal = Some(r);
                    }
                }
                Some(Verdict::Unavailable) => {
                    p.counters().count(Counted::ProviderUnavailable);
                    provider_down = true;
                }
                Some(Verdict::Accepted(id)) => {
                    return match self.requirements.check(&id) {
                        Ok(()) => {
                            p.counters().count(Counted::Accepted);
                            p.common().forward_identity(&id, req.headers, req.upstream);
                            req.state.insert(id);
                            Outcome::Continue
                        }
                        Err(Unmet::Scope) => {
                            p.counters().count(Counted::InsufficientScope);
                            req.state.insert(id);
                            Outcome::Respond(
                                Response::error(StatusCode::FORBIDDEN, "insufficient scope")
                                    .with_header(
                                        http::header::WWW_AUTHENTICATE,
                                        self.scope_challenge.clone(),
                                    )
                                    .with_log_detail(accepted_by(p.as_ref())),
                            )
                        }
                        Err(Unmet::Claim) => {
                            p.counters().count(Counted::ClaimMismatch);
                            req.state.insert(id);
                            Outcome::Respond(
                                Response::error(
                                    StatusCode::FORBIDDEN,
                                    "required claim not satisfied",
                                )
                                .with_header(
                                    http::header::WWW_AUTHENTICATE,
                                    HeaderValue::from_static(
                                        "Bearer realm=\"ficus\", error=\"insufficient_scope\", error_description=\"required claim not satisfied\"",
                                    ),
                                )
                                .with_log_detail(accepted_by(p.as_ref())),
                            )
                        }
                    };
                }
            }
        }
        // Unavailable outranks a refusal: the policy that could not answer might have
        // accepted the token, and a client should retry rather than drop its credential.
        let answer = if provider_down {
            unavailable()
        } else {
            challenge(refusal)
        };
        Outcome::Respond(answer.with_log_detail(self.asked()))
    }
}

impl AuthGate {
    /// The access log's `detail` of a `401`/`503`: the policies that were asked.
    fn asked(&self) -> String {
        let names: Vec<String> = self
            .policies
            .iter()
            .map(|p| format!("\"{}\"", p.name()))
            .collect();
        match names.len() {
            1 => format!("auth policy {}", names[0]),
            _ => format!("auth policies {}", names.join(", ")),
        }
    }
}

/// The access log's `detail` of a `403`: the policy that verified the token whose scopes
/// or claims fell short.
fn accepted_by(policy: &dyn Authenticator) -> String {
    format!(
        "auth policy \"{}\": token verified, requirements not met",
        policy.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{identity_from_claims, AuthCounters, CommonSettings};
    use crate::{HeaderEdits, RequestState};
    use http::{HeaderMap, Method};

    /// A policy that gives the same verdict to every token.
    struct Fixed {
        name: &'static str,
        verdict: Verdict,
        common: CommonSettings,
        counters: AuthCounters,
    }

    fn fixed(name: &'static str, verdict: Verdict) -> Arc<dyn Authenticator> {
        Arc::new(Fixed {
            name,
            verdict,
            common: CommonSettings::default(),
            counters: AuthCounters::default(),
        })
    }

    #[async_trait]
    impl Authenticator for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn common(&self) -> &CommonSettings {
            &self.common
        }
        async fn verify(&self, _token: &str) -> Verdict {
            self.verdict.clone()
        }
        fn counters(&self) -> &AuthCounters {
            &self.counters
        }
    }

    fn accepted(scope: &str) -> Verdict {
        Verdict::Accepted(identity_from_claims(
            "p",
            serde_json::json!({"sub": "u1", "scope": scope}),
        ))
    }

    async fn run(gate: &AuthGate, token: Option<&str>, preflight: bool) -> (Outcome, RequestState) {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
        }
        let mut state = RequestState::new();
        let mut edits = HeaderEdits::default();
        let mut req = RequestView {
            method: &Method::GET,
            path: "/",
            query: None,
            headers: &headers,
            client_ip: None,
            route: "r",
            request_id: "id",
            preflight,
            state: &mut state,
            upstream: &mut edits,
        };
        let out = gate.on_request(&mut req).await;
        (out, state)
    }

    fn status_and_challenge(out: &Outcome) -> (u16, String) {
        match out {
            Outcome::Respond(r) => (
                r.status.as_u16(),
                r.headers
                    .iter()
                    .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
                    .map(|(_, v)| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
            ),
            Outcome::Continue => (0, String::new()),
        }
    }

    #[tokio::test]
    async fn refusals_say_which_policies_for_the_access_log() {
        let detail = |out: &Outcome| match out {
            Outcome::Respond(r) => r.log_detail.as_deref().unwrap_or_default().to_string(),
            Outcome::Continue => String::new(),
        };
        let gate = AuthGate::new(
            vec![
                fixed("corp", Verdict::Refused(Refusal::Expired)),
                fixed("partners", Verdict::Refused(Refusal::WrongIssuer)),
            ],
            Requirements::default(),
        );
        let (out, _) = run(&gate, Some("t"), false).await;
        assert_eq!(detail(&out), "auth policies \"corp\", \"partners\"");
        let (out, _) = run(&gate, None, false).await;
        assert_eq!(detail(&out), "auth policies \"corp\", \"partners\"");
        let one = AuthGate::new(
            vec![fixed("corp", accepted("orders:read"))],
            Requirements {
                scopes: vec!["orders:write".into()],
                claims: Vec::new(),
            },
        );
        let (out, _) = run(&one, Some("t"), false).await;
        assert_eq!(status_and_challenge(&out).0, 403);
        assert_eq!(
            detail(&out),
            "auth policy \"corp\": token verified, requirements not met"
        );
    }

    #[tokio::test]
    async fn any_policy_may_accept_and_the_identity_is_stored() {
        let gate = AuthGate::new(
            vec![
                fixed("a", Verdict::Refused(Refusal::WrongIssuer)),
                fixed("b", accepted("x")),
            ],
            Requirements::default(),
        );
        let (out, state) = run(&gate, Some("t"), false).await;
        assert_eq!(out, Outcome::Continue);
        assert_eq!(
            state
                .get::<crate::Identity>()
                .and_then(|i| i.subject.as_deref()),
            Some("u1")
        );
    }

    #[tokio::test]
    async fn unavailable_outranks_a_refusal_and_no_token_gets_a_bare_challenge() {
        let gate = AuthGate::new(
            vec![
                fixed("a", Verdict::Refused(Refusal::Expired)),
                fixed("b", Verdict::Unavailable),
            ],
            Requirements::default(),
        );
        let (out, _) = run(&gate, Some("t"), false).await;
        assert_eq!(status_and_challenge(&out).0, 503);
        let (out, _) = run(&gate, None, false).await;
        assert_eq!(
            status_and_challenge(&out),
            (401, "Bearer realm=\"ficus\"".to_string())
        );
        // A preflight is never refused.
        let (out, _) = run(&gate, None, true).await;
        assert_eq!(out, Outcome::Continue);
    }

    #[tokio::test]
    async fn the_refusal_that_says_most_is_reported() {
        let gate = AuthGate::new(
            vec![
                fixed("a", Verdict::Refused(Refusal::WrongIssuer)),
                fixed("b", Verdict::Refused(Refusal::Inactive)),
            ],
            Requirements::default(),
        );
        let (out, _) = run(&gate, Some("t"), false).await;
        assert_eq!(
            status_and_challenge(&out),
            (
                401,
                "Bearer realm=\"ficus\", error=\"invalid_token\", error_description=\"token inactive\""
                    .to_string()
            )
        );
    }

    #[tokio::test]
    async fn requirements_are_checked_on_the_accepting_policys_identity() {
        let gate = AuthGate::new(
            vec![fixed("a", accepted("orders:read"))],
            Requirements {
                scopes: vec!["orders:read".into(), "orders:write".into()],
                claims: vec![],
            },
        );
        let (out, state) = run(&gate, Some("t"), false).await;
        assert_eq!(
            status_and_challenge(&out),
            (
                403,
                "Bearer realm=\"ficus\", error=\"insufficient_scope\", scope=\"orders:read orders:write\""
                    .to_string()
            )
        );
        assert!(
            state.get::<crate::Identity>().is_some(),
            "a 403 still logs who it was"
        );
    }
}
