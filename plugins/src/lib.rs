//! The ficus plugin API and the built-in plugins.
//!
//! A plugin is an instance of a *policy kind* ([`PolicyKind`]), configured by a named
//! section of routes.toml (`[access.office]`) and attached to routes by name
//! (`access = "office"`). Instances implement [`Plugin`]: async hooks on the request, the
//! upstream request, every response head and the finished request (see [`hooks`] for
//! when each runs and what its return means). Plugins pass results to each other, to the
//! gateway and to the access log through typed per-request state ([`RequestState`],
//! [`Identity`]).
//!
//! Built-in kinds are listed in one explicit place in the gateway (its policy compiler);
//! there is no global or link-time registration.
//!
//! ```
//! use ficus_plugins::{async_trait, Hooks, Outcome, Plugin, RequestView, Response};
//! use http::StatusCode;
//!
//! struct DenyAll;
//!
//! #[async_trait]
//! impl Plugin for DenyAll {
//!     fn kind(&self) -> &'static str { "deny-all" }
//!     fn hooks(&self) -> Hooks { Hooks::REQUEST }
//!     async fn on_request(&self, _req: &mut RequestView<'_>) -> Outcome {
//!         Outcome::Respond(Response::error(StatusCode::FORBIDDEN, "forbidden"))
//!     }
//! }
//! ```

pub mod access;
pub mod auth;
pub mod cors;
pub mod duration;
mod edits;
pub mod files;
pub mod hooks;
mod metrics;
pub mod net;
mod policy;
pub mod ratelimit;
mod state;

pub use async_trait::async_trait;
pub use edits::{HeaderEdits, HeaderOp};
pub use hooks::{
    run_request_hooks, Background, Body, Hooks, LogRecord, Outcome, Plugin, RequestView, Response,
    ResponseHead, Source, UpstreamRequest,
};
pub use metrics::{MetricSample, MetricType};
pub use policy::{CompileContext, PolicyKind, Problem, Severity, Stage};
pub use state::{Identity, RequestState};
