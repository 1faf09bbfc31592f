//! ficus: an API gateway and strangler-fig facade in front of a legacy monolith.
//!
//! The request flow: [`proxy::Gateway`] (pingora phases) → [`router`] (normalize, match) →
//! [`upstream`] (pick an instance) → the origin. [`config`] compiles routes.toml into the
//! types the router and upstreams use; [`runtime`] holds the current compiled snapshot;
//! [`reload`] swaps it; [`admin`] serves health and metrics; [`listener`] reads request
//! heads before the proxy sees them; [`server`] wires it all into pingora. See
//! docs/architecture.md.

pub mod access_log;
pub mod admin;
pub mod board;
pub mod cli;
pub mod config;
pub mod demo;
pub use ficus_plugins::duration;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_syntax;
pub mod ids;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod periodic;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod server;
pub mod shadow;
pub mod signals;
pub mod sockets;
pub mod upgrade;
pub mod upstream;
