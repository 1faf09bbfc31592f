//! Client credentials toward upstreams: the OAuth2 access token ficus obtains for itself
//! (client-credentials grant, RFC 6749 §4.4) and sends to a service as
//! `Authorization: Bearer <token>` in place of the client's.
//!
//! - [`ClientCredentialsSpec`]: a service's compiled `client_credentials` settings (plain
//!   data; its secret is a [`Secret`] whose `Debug` says `[redacted]`).
//! - [`TokenSource`] (`source.rs`): one service's token: cached, refreshed before it
//!   expires with exactly one request in flight, backing off after failures. The request
//!   path asks it for the header value; it never waits longer than the spec's `timeout`.
//! - `exchange.rs`: the token request itself, made with the `oauth2` crate.
//! - [`CredentialTasks`] (`tasks.rs`): the background service that fetches the first token
//!   at start and refreshes tokens before they expire, so requests rarely wait.
//!
//! A source outlives a reload that leaves its settings unchanged (the runtime reuses the
//! previous snapshot's, see `crate::runtime`), so its token does too. Nothing here reads
//! routes.toml or answers clients: `config` compiles the settings, the proxy turns
//! [`Unavailable`] into its 503.

mod exchange;
mod source;
mod tasks;

pub use exchange::OAuth2Endpoint;
pub use source::{Fetched, TokenEndpoint, TokenSource, Unavailable};
pub use tasks::{CredentialSources, CredentialTasks};

use std::time::Duration;
use thiserror::Error;

/// How long a token request may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A service's `client_credentials`, compiled: how ficus obtains its own token for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsSpec {
    /// The token endpoint: an absolute `http` or `https` URL without credentials in it.
    pub token_url: String,
    pub client_id: String,
    /// Sent with `client_id` as HTTP Basic authentication (RFC 6749 §2.3.1).
    pub client_secret: Secret,
    /// The `scope` asked for (space-joined on the wire); empty asks for none.
    pub scopes: Vec<String>,
    /// RFC 8707 `resource` parameter.
    pub resource: Option<String>,
    /// `audience` parameter (Auth0, Okta and others use it in place of `resource`).
    pub audience: Option<String>,
    /// DER certificates of an extra CA trusted for https to the token endpoint (the webpki
    /// roots are trusted too).
    pub ca: Option<Vec<Vec<u8>>>,
    /// Bound on one token request, and on how long a request waits for it.
    pub timeout: Duration,
}

/// A secret from a file or the environment. It is compared (a changed secret is a
/// changed setting) but never shown: `Debug` prints `[redacted]` and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Why a token request failed. The texts name what went wrong and never carry the secret
/// or a token: they are logged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The token endpoint answered with an OAuth2 error (`invalid_client`, ...).
    #[error("the token endpoint refused the request: {0}")]
    Refused(String),
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the token endpoint's answer is not a token response: {0}")]
    BadResponse(String),
    /// A token type other than Bearer: it would be sent as something it is not.
    #[error("the token endpoint issued a `{0}` token; only Bearer tokens are sent upstream")]
    NotBearer(String),
    #[error("cannot set up the HTTP client for the token endpoint: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let spec = ClientCredentialsSpec {
            token_url: "https://idp.example/token".into(),
            client_id: "gw".into(),
            client_secret: Secret::new("hunter2-very-secret"),
            scopes: vec!["orders:read".into()],
            resource: None,
            audience: None,
            ca: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let shown = format!("{spec:?} {spec:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert_eq!(spec.client_secret.expose(), "hunter2-very-secret");
        // A changed secret is a changed setting (a reload picks up a rotated secret).
        let rotated = ClientCredentialsSpec {
            client_secret: Secret::new("new"),
            ..spec.clone()
        };
        assert_ne!(spec, rotated);
    }
}
