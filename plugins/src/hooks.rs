//! The [`Plugin`] trait: the hooks a plugin may implement, when each runs and what its
//! return means.
//!
//! For one request the gateway calls, in this order:
//!
//! 1. [`Plugin::on_request`] for each plugin of the route, in stage order (see
//!    [`Stage`](crate::Stage)), after routing and before anything is sent upstream. The
//!    first [`Outcome::Respond`] ends the chain: the gateway answers with it and no
//!    upstream is contacted.
//! 2. [`Plugin::on_upstream_request`] for each plugin, in stage order, once per upstream
//!    attempt (a retry runs it again), after the gateway's own edits (forwarding headers,
//!    request id, the route's `request_headers`). Edits apply to the request the upstream
//!    receives only, never to what other plugins or the access log see of the client's
//!    request.
//! 3. [`Plugin::on_response`] for each plugin, in *reverse* stage order, on the head of
//!    every response the client gets: proxied ones, and the ones the gateway writes itself
//!    (its errors, a plugin's answer, a 502 after an upstream failure). A plugin that
//!    answered in step 1 still sees its own answer here, so headers that must be on every
//!    response (CORS, rate-limit fields) are set in one place.
//! 4. [`Plugin::on_log`] for each plugin, in stage order, when the request is over,
//!    whatever happened to it.
//!
//! The gateway only calls the hooks a plugin lists in [`Plugin::hooks`]: a plugin costs
//! nothing in the phases it does not use.
//!
//! Hooks are `async`: a cache miss may await a network call (a key set, a token check, a
//! shared counter). Work that can be done ahead (refreshing keys) belongs in
//! [`Plugin::background`], not on the request path.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::{HeaderEdits, MetricSample, RequestState};

/// Which hooks a plugin implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    pub request: bool,
    pub upstream_request: bool,
    pub response: bool,
    pub log: bool,
}

impl Hooks {
    /// Only [`Plugin::on_request`].
    pub const REQUEST: Hooks = Hooks {
        request: true,
        upstream_request: false,
        response: false,
        log: false,
    };
}

/// A body the gateway sends for a plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Sent as is.
    Bytes(Bytes),
    /// The gateway's standard JSON error body, `{"error": MESSAGE, "request_id": ID}`,
    /// with the request's id filled in. `MESSAGE` must be fixed text chosen by the plugin:
    /// never a library error or anything taken from the request.
    Error(Cow<'static, str>),
}

/// A response a plugin sends instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body,
    /// Which policy answered and why, for the access log's `detail` (never sent to the
    /// client): `rate limit "per_client": per-user`. The `error` field gets the message
    /// of a [`Body::Error`].
    pub log_detail: Option<Cow<'static, str>>,
}

impl Response {
    /// The gateway's JSON error shape with the request id: what clients see for every
    /// refusal, whoever refused.
    pub fn error(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Error(message.into()),
            log_detail: None,
        }
    }

    /// A JSON body of the plugin's own.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Body::Bytes(body.into()),
            log_detail: None,
        }
    }

    /// An empty body (a preflight's `204`, say).
    pub fn empty(status: StatusCode) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Bytes::new()),
            log_detail: None,
        }
    }

    /// Says, for the access log, which policy answered and why.
    pub fn with_log_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Response {
        self.log_detail = Some(detail.into());
        self
    }

    /// Adds a header (kept alongside any of the same name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// What [`Plugin::on_request`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go on to the next plugin, then the upstream.
    Continue,
    /// Stop here and send this response; no upstream is contacted.
    Respond(Response),
}

/// The request as [`Plugin::on_request`] sees it.
pub struct RequestView<'a> {
    /// The method as sent (`OPTIONS` for a CORS preflight, see `preflight`).
    pub method: &'a Method,
    /// The normalized path routing used (`//a/./b` arrives as `/a/b`).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The client's request headers, as received.
    pub headers: &'a HeaderMap,
    /// The client's address: the TCP peer, or when that is a trusted proxy the right-most
    /// untrusted address of `X-Forwarded-For`. `None` only for non-IP listeners.
    pub client_ip: Option<IpAddr>,
    /// The route's name.
    pub route: &'a str,
    /// The request id (also in the `X-Request-Id` of the upstream request and response).
    pub request_id: &'a str,
    /// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`. It
    /// was routed as if it were the requested method.
    pub preflight: bool,
    /// Results of earlier plugins; store yours here.
    pub state: &'a mut RequestState,
    /// Edits for the upstream request (applied on every attempt, before the
    /// [`Plugin::on_upstream_request`] hooks run).
    pub upstream: &'a mut HeaderEdits,
}

/// The upstream request as [`Plugin::on_upstream_request`] sees it.
pub struct UpstreamRequest<'a> {
    /// The headers the upstream will receive, as the gateway has prepared them so far.
    pub headers: &'a HeaderMap,
    pub route: &'a str,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    pub state: &'a RequestState,
    /// Edits to apply to this attempt's headers.
    pub edits: &'a mut HeaderEdits,
}

/// Who produced a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Proxied from the upstream.
    Upstream,
    /// Written by the gateway: its own errors and plugin answers.
    Gateway,
}

/// A response head as [`Plugin::on_response`] sees it.
pub struct ResponseHead<'a> {
    pub status: StatusCode,
    /// The response's headers so far.
    pub headers: &'a HeaderMap,
    pub source: Source,
    /// The client's request method and headers (`Origin`, say).
    pub method: &'a Method,
    pub request_headers: &'a HeaderMap,
    pub route: &'a str,
    pub state: &'a RequestState,
    /// Edits to apply to the response head.
    pub edits: &'a mut HeaderEdits,
}

/// A finished request as [`Plugin::on_log`] sees it.
pub struct LogRecord<'a> {
    /// The status sent (0 when no response was sent: the client went away first).
    pub status: u16,
    pub route: &'a str,
    pub client_ip: Option<IpAddr>,
    /// From the arrival of the request head to the end of the response.
    pub duration: Duration,
    pub state: &'a RequestState,
}

/// Work a plugin instance runs in the background while it is in use.
pub type Background = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A plugin instance: one per policy section (`[access.office]`), shared by every route
/// that names it and by every request on those routes.
///
/// An instance lives as long as its section: a reload that leaves the section unchanged
/// keeps the instance (and whatever it caches), a changed section gets a fresh instance, a
/// removed one is dropped. Keep caches and counters inside the instance.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The kind of plugin (`access`): for logs and the admin listing.
    fn kind(&self) -> &'static str;

    /// The hooks this plugin implements; the others are never called.
    fn hooks(&self) -> Hooks;

    /// Runs after routing, before anything goes upstream. Returns
    /// [`Outcome::Continue`] to go on, or [`Outcome::Respond`] to answer the request
    /// itself (the later plugins' request hooks do not run; their response and log hooks
    /// do).
    async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
        let _ = req;
        Outcome::Continue
    }

    /// Runs before each upstream attempt; may set, append and remove headers of the
    /// request the upstream receives.
    async fn on_upstream_request(&self, req: &mut UpstreamRequest<'_>) {
        let _ = req;
    }

    /// Runs on the head of every response the client gets on the plugin's routes; may
    /// set, append and remove headers. Cannot change the status or the body.
    async fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let _ = resp;
    }

    /// Runs when the request is over, whatever its outcome.
    async fn on_log(&self, log: &LogRecord<'_>) {
        let _ = log;
    }

    /// Work to run in the background for as long as this instance is in use (refreshing a
    /// key set, say). Called once per instance; the gateway cancels the future when the
    /// instance is dropped by a reload or the server stops, so it must not rely on running
    /// to completion.
    fn background(self: Arc<Self>) -> Option<Background> {
        None
    }

    /// Whether the instance can do its job yet: an authentication policy is not ready until
    /// it has fetched its key set once. `/readyz` waits (bounded) for every policy in use to
    /// be ready, and a reload waits (bounded) for its new instances before it goes live, so
    /// traffic does not meet a policy that has nothing to check against. Requests that do
    /// meet one get whatever the plugin answers (an auth policy: `503`).
    fn ready(&self) -> bool {
        true
    }

    /// Adds the instance's metric samples (scraped from `/metrics`).
    fn metrics(&self, out: &mut Vec<MetricSample>) {
        let _ = out;
    }

    /// The instance as an [`Authenticator`] when it is an `[auth.NAME]` policy: routes
    /// name auth policies through a per-route gate that asks each of them in turn.
    fn authenticator(self: Arc<Self>) -> Option<Arc<dyn Authenticator>> {
        None
    }
}

/// Runs `plugins`' request hooks in order; the first answer wins.
pub async fn run_request_hooks(plugins: &[Arc<dyn Plugin>], req: &mut RequestView<'_>) -> Outcome {
    for p in plugins {
        if let Outcome::Respond(r) = p.on_request(req).await {
            return Outcome::Respond(r);
        }
    }
    Outcome::Continue
}
