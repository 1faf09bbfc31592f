//! `[auth.NAME]` with `type = "jwt"` as written, and its compile step: every value checked
//! (with its span) and turned into [`JwtSettings`]. Files named by the section (secrets,
//! public keys, CA bundles) are read here, so their contents are part of the settings and
//! a changed file is a changed policy.
//!
//! This file holds the section's types, the compile step that ties the parts together
//! and the claim rules; [`key_source`](mod@key_source) finds and reads the one key
//! source (and a JWKS's fetch settings), [`algorithms`](mod@algorithms) checks the
//! allowed algorithms against it.

mod algorithms;
mod key_source;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

use super::fetch::{RefreshBounds, RemoteSettings};
use super::keys::KeySet;
use super::verify::{media_type, ClaimRules};
use crate::auth::common::{CommonConfig, TokenSourceConfig};
use crate::auth::introspection::{audience_list, count_key, duration_key};
use crate::auth::CommonSettings;
use crate::CompileContext;
use algorithms::{algorithms, check_secret_length};
use key_source::{key_source, no_remote_keys, remote_settings, Source};

pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// A longer leeway keeps expired tokens alive for longer than clocks ever disagree.
const LONGEST_SENSIBLE_LEEWAY: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
pub const DEFAULT_REFRESH_BOUNDS: RefreshBounds = RefreshBounds {
    min: Duration::from_secs(60),
    max: Duration::from_secs(24 * 3600),
};
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// `[auth.NAME]` with `type = "jwt"` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `"jwt"`: the gateway chose this kind by it.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub jwks: Option<Spanned<String>>,
    /// A string or a list of strings.
    pub audience: Option<Spanned<toml::Value>>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub require_typ: Option<Spanned<String>>,
    pub leeway: Option<Spanned<String>>,
    pub max_lifetime: Option<Spanned<String>>,
    pub jwks_min_refresh: Option<Spanned<String>>,
    pub jwks_refresh: Option<Spanned<RefreshConfig>>,
    pub ca_file: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Never accepted: read only to say so better than "unknown key" would.
    pub secret: Option<Spanned<toml::Value>>,
    pub secret_file: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
    pub cache_size: Option<Spanned<i64>>,
    pub token: Option<Spanned<TokenSourceConfig>>,
    pub max_token_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, Spanned<String>>,
    pub forward_authorization: Option<bool>,
    pub forward_claims: Option<Spanned<String>>,
}

/// `jwks_refresh = { min = "1m", max = "24h" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    pub min: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
}

/// A compiled JWT policy.
#[derive(Debug, PartialEq)]
pub struct JwtSettings {
    pub common: CommonSettings,
    pub keys: KeySource,
    /// The algorithms a token may be signed with; a header naming another is refused.
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimRules,
    /// Verified-token cache entries.
    pub cache_size: usize,
}

/// Where a policy's keys come from.
#[derive(Debug, PartialEq)]
pub enum KeySource {
    /// A PEM public key or an HMAC secret, read at compile time.
    Local(Arc<KeySet>),
    /// A JWKS fetched from the provider.
    Remote(RemoteSettings),
}

pub fn compile(c: JwtConfig, cx: &mut CompileContext<'_>) -> Option<JwtSettings> {
    let common = CommonSettings::compile(
        CommonConfig {
            token: c.token.as_ref(),
            max_token_size: c.max_token_size.as_ref(),
            claims_to_headers: &c.claims_to_headers,
            forward_authorization: c.forward_authorization,
            forward_claims: c.forward_claims.as_ref(),
        },
        cx,
    );
    let source = key_source(&c, cx);
    let kind = source.as_ref().and_then(Source::kind);
    let remote = matches!(source, Some(Source::Remote { .. }));
    let algorithms = algorithms(c.algorithms.as_ref(), kind, remote, cx);
    let claims = claim_rules(&c, cx);
    let cache_size = count_key(c.cache_size.as_ref(), "cache_size", DEFAULT_CACHE_SIZE, cx);
    let keys = match source? {
        Source::Remote { jwks, discovery } => {
            KeySource::Remote(remote_settings(&c, jwks, discovery, cx)?)
        }
        Source::Secret(secret, key, span) => {
            check_secret_length(secret.bytes(), key, span, &algorithms, cx);
            no_remote_keys(&c, cx);
            KeySource::Local(Arc::new(KeySet::secret(secret.bytes())?))
        }
        Source::PublicKey(set) => {
            no_remote_keys(&c, cx);
            KeySource::Local(Arc::new(set))
        }
    };
    if cx.has_errors() {
        return None;
    }
    Some(JwtSettings {
        common,
        keys,
        algorithms,
        claims,
        cache_size,
    })
}

fn claim_rules(c: &JwtConfig, cx: &mut CompileContext<'_>) -> ClaimRules {
    let leeway = duration_key(c.leeway.as_ref(), "leeway", DEFAULT_LEEWAY, true, cx);
    if let Some(v) = c
        .leeway
        .as_ref()
        .filter(|_| leeway > LONGEST_SENSIBLE_LEEWAY)
    {
        cx.warning(
            Some(v.span()),
            "leeway",
            "a leeway over 5m keeps expired tokens working that long; clocks rarely disagree by more than seconds",
        );
    }
    let max_lifetime = c.max_lifetime.as_ref().map(|v| {
        let d = duration_key(Some(v), "max_lifetime", Duration::from_secs(1), false, cx);
        d.as_secs().max(1) as i64
    });
    let require_typ = c.require_typ.as_ref().and_then(|v| {
        let t = media_type(v.get_ref());
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            cx.error_hint(
                Some(v.span()),
                "require_typ",
                format!("`{}` is not a token type", v.get_ref()),
                "RFC 9068 access tokens have typ \"at+jwt\"",
            );
            return None;
        }
        Some(t)
    });
    if c.audience.is_none() {
        cx.warning(
            None,
            "audience",
            "without `audience`, tokens the issuer made for any other API are accepted too; write audience = \"...\"",
        );
    }
    ClaimRules {
        issuer: c.issuer.as_ref().map(|i| i.get_ref().clone()),
        audience: audience_list(c.audience.as_ref(), cx),
        leeway: leeway.as_secs() as i64,
        max_lifetime,
        require_typ,
    }
}

#[cfg(test)]
mod tests;
