//! Rate limits: `[rate_limits.NAME]` policies, named by routes (`rate_limit = "NAME"`) or
//! by `[gateway] rate_limit` for routes that name none.
//!
//! ```toml
//! [rate_limits.per_client]
//! limits = [
//!   { key = "client_ip", rate = "100/s", burst = 200 },
//!   { key = "route", rate = "2000/s", burst = 2000 },
//! ]
//! ```
//!
//! A policy is a list of limits, each a GCRA bucket per key; a request passes only when
//! every limit admits it. The flow is the same whatever the store: the policy computes the
//! request's key for each limit ([`key`]), asks its [`store::Store`] for one decision over
//! all of them, and turns the decision into a `429` or into response fields ([`fields`]).
//! Buckets belong to the policy: routes naming the same policy share them (add `"route"`
//! to a key to split them per route).
//!
//! Runs after authentication ([`Stage::RateLimit`]), so `claim:NAME` keys read the
//! verified identity. Per request it allocates nothing on the local store's path except
//! when `headers = "always"` leaves the decision for the response.

pub mod clock;
pub mod config;
pub mod fields;
pub mod key;
pub mod local;
pub mod plugin;
pub mod rate;
pub mod redis;
pub mod shared;
pub mod store;
mod store_config;
pub mod table;

use std::sync::Arc;

use crate::{CompileContext, Plugin, PolicyKind, Stage};
pub use config::{RateLimitConfig, RateLimitSettings, StoreSettings};
pub use plugin::{RateLimitDecision, RateLimitPlugin};

/// The routes.toml table of rate-limit policies.
pub const SECTION: &str = "rate_limits";
/// The route key (and `[gateway]` key) naming one.
pub const ROUTE_KEY: &str = "rate_limit";

/// The `rate_limits` policy kind.
pub struct RateLimit;

impl PolicyKind for RateLimit {
    const SECTION: &'static str = SECTION;
    const STAGE: Stage = Stage::RateLimit;
    type Config = RateLimitConfig;
    type Settings = RateLimitSettings;

    fn compile(config: RateLimitConfig, cx: &mut CompileContext<'_>) -> Option<RateLimitSettings> {
        config::compile(config, cx)
    }

    fn build(name: &str, settings: Arc<RateLimitSettings>) -> Arc<dyn Plugin> {
        let store = match &settings.store {
            StoreSettings::Local { max_keys } => {
                store::Store::Local(local::LocalStore::new(&settings.limits, *max_keys))
            }
            StoreSettings::Redis { server, max_keys } => {
                let password = server
                    .password
                    .as_ref()
                    .and_then(|p| p.text())
                    .map(str::to_string);
                match redis::RedisStore::new(&server.url(), password, server.timeout) {
                    Ok(r) => store::Store::Shared(shared::SharedStore::new(
                        name,
                        r,
                        &settings.limits,
                        *max_keys,
                    )),
                    // Compiling checked the URL with the same call; should it still be
                    // refused, the limits hold in this gateway alone rather than not at all.
                    Err(e) => {
                        log::error!("rate limit {name}: {e}; limiting in this gateway only");
                        store::Store::Local(local::LocalStore::new(&settings.limits, *max_keys))
                    }
                }
            }
        };
        Arc::new(RateLimitPlugin::new(name, settings, store))
    }
}
