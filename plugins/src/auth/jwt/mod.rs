//! `[auth.NAME]` with `type = "jwt"`: JSON Web Tokens verified at the edge, against a key
//! set fetched from the identity provider (a JWKS, found by OpenID discovery from the
//! issuer when not written) or a local key (a PEM public key, an HMAC secret).
//!
//! ```toml
//! [auth.corp]
//! type = "jwt"
//! issuer = "https://idp.example.com/realms/shop"   # `iss` must equal it; discovery from it
//! audience = "urn:api:shop"                        # `aud` must hold it (or one of a list)
//! algorithms = ["RS256"]                           # never taken from the token
//! require_typ = "at+jwt"                           # RFC 9068 access tokens only
//! leeway = "30s"
//! max_lifetime = "1h"
//! jwks_min_refresh = "10s"
//! ```
//!
//! The pieces, in the order a token meets them:
//! - the verified-token cache ([`crate::auth::cache`]): a token verified before (by the
//!   SHA-256 of its text) is accepted from the cache until its `exp`, unless the key set
//!   changed since.
//! - [`verify`]: the token's shape, its header's `alg` (one of `algorithms`) and `typ`, and
//!   its claims (`exp` required, `nbf`, `iat`, `iss`, `aud`, the lifetime), all checked
//!   on the decoded payload before any cryptography.
//! - [`keys`]: the key for the token's `kid` and `alg` (a key verifies only the
//!   algorithms of its own type), and the signature check (jsonwebtoken's RustCrypto
//!   backend).
//! - [`fetch`]: the key set's fetches, in the background; a token with an unknown `kid`
//!   can ask for an early one, at most once per `jwks_min_refresh`.
//!
//! No token, key or library error ever reaches a client: refusals are
//! [`Refusal`](crate::auth::Refusal)s with fixed descriptions.

mod config;
mod fetch;
mod keys;
mod policy;
#[cfg(test)]
mod testing;
mod verify;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{JwtConfig, JwtSettings, KeySource, RefreshConfig};
pub use fetch::{RefreshBounds, RemoteSettings};
pub use keys::{KeyKind, KeySet};
pub use policy::JwtPolicy;
pub use verify::ClaimRules;

use crate::{CompileContext, Plugin, PolicyKind, Stage};

/// The `jwt` auth policy kind.
pub struct Jwt;

impl PolicyKind for Jwt {
    const SECTION: &'static str = crate::auth::SECTION;
    const STAGE: Stage = Stage::Auth;
    type Config = JwtConfig;
    type Settings = JwtSettings;

    fn compile(config: JwtConfig, cx: &mut CompileContext<'_>) -> Option<JwtSettings> {
        config::compile(config, cx)
    }

    fn build(name: &str, settings: Arc<JwtSettings>) -> Arc<dyn Plugin> {
        Arc::new(JwtPolicy::new(name, settings))
    }
}

/// Seconds since the epoch (0 for a clock set before it).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
