//! The ficus request-plugin API.
//!
//! A plugin inspects a request at a fixed phase and either lets it continue or answers it
//! itself. Plugins are typed: each has its own `Deserialize` config struct with
//! `deny_unknown_fields`, is constructed once when routes.toml is compiled, and returns a
//! [`Outcome`] rather than a bare bool, so "deny" can never be confused with "allow".
//!
//! Built-in plugins (JWT, OAuth2 introspection, rate limits, CORS) are registered in one
//! explicit function, [`registry`]; there is no global or link-time registration.
//!
//! ```
//! use ficus_plugins::{Outcome, Plugin, RequestInfo, Response};
//!
//! struct DenyAll;
//! impl Plugin for DenyAll {
//!     fn name(&self) -> &'static str { "deny-all" }
//!     fn on_request(&self, _req: &mut RequestInfo<'_>) -> Outcome {
//!         Outcome::Respond(Response::json(403, r#"{"error":"forbidden"}"#))
//!     }
//! }
//! ```

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::net::IpAddr;
use thiserror::Error;

/// What a plugin sees of a request. Headers are mutable so a plugin can add verified
/// identity (e.g. `x-user-id`) for the upstream.
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// The normalized path (the one routing used).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub client_ip: Option<IpAddr>,
    pub route: &'a str,
    /// Headers to add to the upstream request.
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
}

/// A response written by a plugin instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Response {
    /// A JSON response; an invalid status falls back to 500.
    pub fn json(status: u16, body: &'static str) -> Response {
        Response {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from_static(body.as_bytes()),
        }
    }
}

/// The result of running a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go on to the next plugin and then the upstream.
    Continue,
    /// Stop here and send this response.
    Respond(Response),
}

/// A request plugin. Runs in the gateway's `request_filter` phase, after routing, in the
/// order the route lists its plugins. Must not block: anything slow (key fetches, remote
/// checks) belongs in a background task that the plugin reads from.
pub trait Plugin: Send + Sync {
    /// The name used in routes.toml and logs.
    fn name(&self) -> &'static str;
    /// Inspects (and may annotate) a request.
    fn on_request(&self, req: &mut RequestInfo<'_>) -> Outcome;
}

/// Why a plugin could not be built from its config.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("unknown plugin `{0}`")]
    Unknown(String),
    #[error("invalid config for plugin `{plugin}`: {message}")]
    Config { plugin: String, message: String },
}

/// Runs plugins in order; the first `Respond` wins.
pub fn run_chain(plugins: &[Box<dyn Plugin>], req: &mut RequestInfo<'_>) -> Outcome {
    for p in plugins {
        if let Outcome::Respond(r) = p.on_request(req) {
            return Outcome::Respond(r);
        }
    }
    Outcome::Continue
}

/// The names of the built-in plugins. Empty until the authentication and rate-limiting
/// work lands; routes.toml rejects any plugin name not listed here.
pub fn registry() -> &'static [&'static str] {
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tag;
    impl Plugin for Tag {
        fn name(&self) -> &'static str {
            "tag"
        }
        fn on_request(&self, req: &mut RequestInfo<'_>) -> Outcome {
            req.upstream_headers.push((
                HeaderName::from_static("x-tag"),
                HeaderValue::from_static("1"),
            ));
            Outcome::Continue
        }
    }
    struct Deny;
    impl Plugin for Deny {
        fn name(&self) -> &'static str {
            "deny"
        }
        fn on_request(&self, _req: &mut RequestInfo<'_>) -> Outcome {
            Outcome::Respond(Response::json(403, "{}"))
        }
    }

    #[test]
    fn chain_stops_at_first_response() {
        let headers = HeaderMap::new();
        let mut req = RequestInfo {
            method: &Method::GET,
            path: "/",
            query: None,
            headers: &headers,
            client_ip: None,
            route: "r",
            upstream_headers: vec![],
        };
        let chain: Vec<Box<dyn Plugin>> = vec![Box::new(Tag), Box::new(Deny), Box::new(Tag)];
        let out = run_chain(&chain, &mut req);
        assert_eq!(out, Outcome::Respond(Response::json(403, "{}")));
        assert_eq!(req.upstream_headers.len(), 1);
    }
}
