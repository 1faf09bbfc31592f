//! `[auth.NAME]` with `type = "jwt"` as written, and its compile step: every value checked
//! (with its span) and turned into [`JwtSettings`]. Files named by the section (secrets,
//! public keys, CA bundles) are read here, so their contents are part of the settings and
//! a changed file is a changed policy.

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

use super::fetch::{RefreshBounds, RemoteSettings};
use super::keys::{KeyKind, KeySet};
use super::verify::{algorithm, algorithm_name, media_type, ClaimRules, ALGORITHMS};
use crate::auth::common::{CommonConfig, TokenSourceConfig};
use crate::auth::introspection::{audience_list, count_key, duration_key};
use crate::auth::secret::{Secret, SecretKeys};
use crate::auth::{provider, CommonSettings};
use crate::CompileContext;

pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// A longer leeway keeps expired tokens alive for longer than clocks ever disagree.
const LONGEST_SENSIBLE_LEEWAY: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
/// Below this, unknown-`kid` tokens could make ficus fetch the JWKS many times a second.
const SHORTEST_MIN_REFRESH: Duration = Duration::from_secs(1);
pub const DEFAULT_REFRESH_BOUNDS: RefreshBounds = RefreshBounds {
    min: Duration::from_secs(60),
    max: Duration::from_secs(24 * 3600),
};
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// Key files are small; a bigger one is a mistake (`/dev/zero`).
const MAX_KEY_FILE_SIZE: u64 = 1024 * 1024;

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

/// What the key settings say, before the algorithms are known.
enum Source {
    Remote {
        jwks: Option<String>,
        discovery: Option<String>,
    },
    /// The secret, and the key and span that named it.
    Secret(Secret, &'static str, Option<std::ops::Range<usize>>),
    PublicKey(KeySet),
}

impl Source {
    fn kind(&self) -> Option<KeyKind> {
        match self {
            Source::Remote { .. } => None,
            Source::Secret(..) => Some(KeyKind::Hmac),
            Source::PublicKey(set) => set.local_kind(),
        }
    }
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

/// The key source: exactly one of a JWKS (written, or by discovery from `issuer`), an
/// HMAC secret (`secret_file` or `secret_env`) or `public_key_file`.
fn key_source(c: &JwtConfig, cx: &mut CompileContext<'_>) -> Option<Source> {
    let secret = SecretKeys {
        name: "secret",
        file: c.secret_file.as_ref(),
        env: c.secret_env.as_ref(),
        inline: c.secret.as_ref(),
    };
    let given: Vec<(&str, std::ops::Range<usize>)> = [
        ("secret_file", c.secret_file.as_ref()),
        ("secret_env", c.secret_env.as_ref()),
        ("public_key_file", c.public_key_file.as_ref()),
        ("jwks", c.jwks.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v.span())))
    .collect();
    // `secret_file` with `secret_env` is the secret's own business (reported by `read`).
    if let [(first, _), .., (second, span)] = given.as_slice() {
        if !(given.len() == 2 && first.starts_with("secret_") && second.starts_with("secret_")) {
            cx.error_hint(
                Some(span.clone()),
                second,
                format!("`{first}` and `{second}` are two key sources"),
                "a policy has one key source; write a policy per key",
            );
            return None;
        }
    }
    if secret.is_given() {
        let read = secret.read(cx);
        let named = match (&c.secret_file, &c.secret_env) {
            (Some(f), _) => Some(("secret_file", f.span())),
            (None, e) => e.as_ref().map(|e| ("secret_env", e.span())),
        };
        if let Some((key, span)) = named {
            return read.map(|s| Source::Secret(s, key, Some(span)));
        }
        // Only an inline `secret`, now reported: the rest of the section is still checked,
        // unless there is nothing else to check ("needs a key source" would only repeat it).
        if c.public_key_file.is_none() && c.issuer.is_none() && c.jwks.is_none() {
            return None;
        }
    }
    if let Some(path) = &c.public_key_file {
        let pem = read_key_file(path, cx)?;
        return match KeySet::from_public_key_pem(&pem) {
            Ok(set) => Some(Source::PublicKey(set)),
            Err(e) => {
                cx.error_hint(
                    Some(path.span()),
                    "public_key_file",
                    format!("`{}` is not a usable public key: {e}", path.get_ref()),
                    "give a PEM public key (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519); `openssl pkey -in private.pem -pubout` extracts one",
                );
                None
            }
        };
    }
    remote_source(c, cx)
}

/// A JWKS source: `jwks` if written, else discovery from `issuer`, which is required
/// either way.
fn remote_source(c: &JwtConfig, cx: &mut CompileContext<'_>) -> Option<Source> {
    let Some(issuer) = &c.issuer else {
        match &c.jwks {
            Some(jwks) => cx.error_hint(
                Some(jwks.span()),
                "issuer",
                "a policy with `jwks` needs `issuer`",
                "without it, tokens from any issuer the key set signs for would pass; write issuer = \"https://idp.example.com/realms/shop\"",
            ),
            None => cx.error_hint(
                None,
                "",
                "a jwt policy needs a key source",
                "write `issuer` (keys found by OpenID discovery), `jwks`, `public_key_file`, `secret_file` or `secret_env`",
            ),
        }
        return None;
    };
    if issuer.get_ref().is_empty() {
        cx.error(Some(issuer.span()), "issuer", "`issuer` is empty");
        return None;
    }
    if let Some(jwks) = &c.jwks {
        provider::check_url(jwks, "jwks", cx)?;
        return Some(Source::Remote {
            jwks: Some(jwks.get_ref().clone()),
            discovery: None,
        });
    }
    let url = provider::check_url(issuer, "issuer", cx)?;
    if url.query().is_some() || url.fragment().is_some() {
        cx.error(
            Some(issuer.span()),
            "issuer",
            "an OpenID issuer has no query or fragment",
        );
        return None;
    }
    Some(Source::Remote {
        jwks: None,
        // OpenID Connect Discovery §4: a trailing `/` of the issuer is not doubled.
        discovery: Some(format!(
            "{}/.well-known/openid-configuration",
            issuer.get_ref().trim_end_matches('/')
        )),
    })
}

/// The allowed algorithms: as written (each known, agreeing with the key), or the key's
/// default (RS256 for a JWKS).
fn algorithms(
    written: Option<&Spanned<Vec<Spanned<String>>>>,
    kind: Option<KeyKind>,
    remote: bool,
    cx: &mut CompileContext<'_>,
) -> Vec<Algorithm> {
    let Some(list) = written else {
        return vec![kind.map_or(Algorithm::RS256, KeyKind::default_algorithm)];
    };
    if list.get_ref().is_empty() {
        cx.error_hint(
            Some(list.span()),
            "algorithms",
            "`algorithms` is empty: no token could pass",
            "leave it out for the key's default, or list algorithms like [\"RS256\"]",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, name) in list.get_ref().iter().enumerate() {
        let key = format!("algorithms[{i}]");
        let Some(alg) = algorithm(name.get_ref()) else {
            cx.error_hint(
                Some(name.span()),
                &key,
                format!("`{}` is not an algorithm ficus verifies", name.get_ref()),
                algorithm_hint(name.get_ref()),
            );
            continue;
        };
        if remote && KeyKind::Hmac.accepts(alg) {
            cx.error_hint(
                Some(name.span()),
                &key,
                format!(
                    "`{}` needs a shared secret, and a JWKS holds public keys",
                    name.get_ref()
                ),
                "verify HMAC tokens in a policy of their own, with secret_file or secret_env",
            );
            continue;
        }
        if let Some(kind) = kind.filter(|k| !k.accepts(alg)) {
            let names: Vec<&str> = kind
                .algorithms()
                .iter()
                .map(|a| algorithm_name(*a))
                .collect();
            cx.error_hint(
                Some(name.span()),
                &key,
                format!(
                    "`{}` cannot be verified with {}",
                    name.get_ref(),
                    kind.describe()
                ),
                format!("{} verifies {}", kind.describe(), names.join(", ")),
            );
            continue;
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    out
}

/// The did-you-mean of an unknown algorithm name.
fn algorithm_hint(got: &str) -> String {
    if got.eq_ignore_ascii_case("none") {
        return "unsigned tokens are never accepted".into();
    }
    if let Some((name, _)) = ALGORITHMS.iter().find(|(n, _)| n.eq_ignore_ascii_case(got)) {
        return format!("did you mean `{name}`? algorithm names are case-sensitive");
    }
    let family: Vec<&str> = ALGORITHMS
        .iter()
        .map(|(n, _)| *n)
        // `get`: the name may not be ASCII, and byte 2 need not be a character boundary.
        .filter(|n| got.get(..2).is_some_and(|g| n[..2].eq_ignore_ascii_case(g)))
        .collect();
    if !family.is_empty() {
        return format!("did you mean one of {}?", family.join(", "));
    }
    let all: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
    format!("supported: {}", all.join(", "))
}

/// RFC 7518 §3.2: an HMAC key at least as long as the hash output.
fn check_secret_length(
    secret: &[u8],
    key: &str,
    span: Option<std::ops::Range<usize>>,
    algorithms: &[Algorithm],
    cx: &mut CompileContext<'_>,
) {
    let needed = algorithms
        .iter()
        .map(|a| match a {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        })
        .max()
        .unwrap_or(32);
    if secret.len() < needed {
        cx.error_hint(
            span,
            key,
            format!(
                "the HMAC secret is {} bytes; {} needs at least {needed}",
                secret.len(),
                algorithms
                    .iter()
                    .map(|a| algorithm_name(*a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "a shorter secret can be guessed offline from any token; `openssl rand -base64 48` makes a good one",
        );
    }
}

/// Keys that only mean something for a JWKS, written for a local key: a warning.
fn no_remote_keys(c: &JwtConfig, cx: &mut CompileContext<'_>) {
    let remote_only: [(&str, Option<std::ops::Range<usize>>); 4] = [
        (
            "jwks_min_refresh",
            c.jwks_min_refresh.as_ref().map(Spanned::span),
        ),
        ("jwks_refresh", c.jwks_refresh.as_ref().map(Spanned::span)),
        ("ca_file", c.ca_file.as_ref().map(Spanned::span)),
        ("timeout", c.timeout.as_ref().map(Spanned::span)),
    ];
    for (key, span) in remote_only {
        if let Some(span) = span {
            cx.warning(
                Some(span),
                key,
                format!("`{key}` has no effect with a local key"),
            );
        }
    }
}

fn remote_settings(
    c: &JwtConfig,
    jwks: Option<String>,
    discovery: Option<String>,
    cx: &mut CompileContext<'_>,
) -> Option<RemoteSettings> {
    let timeout = duration_key(c.timeout.as_ref(), "timeout", DEFAULT_TIMEOUT, false, cx);
    let min_refresh = at_least_a_second(
        c.jwks_min_refresh.as_ref(),
        "jwks_min_refresh",
        DEFAULT_MIN_REFRESH,
        "it bounds how often tokens with unknown key ids make ficus fetch the JWKS",
        cx,
    );
    let mut refresh = DEFAULT_REFRESH_BOUNDS;
    if let Some(r) = &c.jwks_refresh {
        let bounds = r.get_ref();
        let why = "it bounds how often ficus fetches the JWKS";
        refresh.min = at_least_a_second(
            bounds.min.as_ref(),
            "jwks_refresh.min",
            refresh.min,
            why,
            cx,
        );
        refresh.max = at_least_a_second(
            bounds.max.as_ref(),
            "jwks_refresh.max",
            refresh.max,
            why,
            cx,
        );
        if refresh.min > refresh.max {
            cx.error(
                Some(r.span()),
                "jwks_refresh",
                "`jwks_refresh.min` is longer than `jwks_refresh.max`",
            );
        }
    }
    Some(RemoteSettings {
        jwks,
        discovery,
        issuer: c.issuer.as_ref()?.get_ref().clone(),
        timeout,
        min_refresh,
        refresh,
        ca: provider::read_ca(c.ca_file.as_ref(), cx),
    })
}

/// A duration key of at least a second.
fn at_least_a_second(
    v: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    why: &str,
    cx: &mut CompileContext<'_>,
) -> Duration {
    let d = duration_key(v, key, default, true, cx);
    match v {
        Some(v) if d < SHORTEST_MIN_REFRESH => {
            cx.error_hint(
                Some(v.span()),
                key,
                format!("`{key}` must be at least 1s"),
                why,
            );
            default
        }
        _ => d,
    }
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

/// The contents of `public_key_file`, resolved against routes.toml's directory.
fn read_key_file(path: &Spanned<String>, cx: &mut CompileContext<'_>) -> Option<Vec<u8>> {
    let full = cx.resolve_path(path.get_ref());
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&full)
        .and_then(|f| f.take(MAX_KEY_FILE_SIZE + 1).read_to_end(&mut bytes));
    let problem = match read {
        Ok(_) if bytes.len() as u64 > MAX_KEY_FILE_SIZE => {
            "is larger than 1 MiB: not a key file".into()
        }
        Ok(0) => "is empty".into(),
        Ok(_) => return Some(bytes),
        Err(e) => format!("cannot be read: {e}"),
    };
    cx.error(
        Some(path.span()),
        "public_key_file",
        format!("{} {problem}", full.display()),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::testing::{fixture, fixture_path, TempDir};
    use crate::{Problem, Severity};
    use std::path::Path;

    fn compile_in(dir: &Path, src: &str) -> (Option<JwtSettings>, Vec<Problem>) {
        let cfg: JwtConfig = toml::from_str(src).unwrap();
        let mut cx = CompileContext::new(dir);
        let s = compile(cfg, &mut cx);
        (s, cx.into_problems())
    }

    fn compiles(src: &str) -> (JwtSettings, Vec<Problem>) {
        let (s, p) = compile_in(Path::new("."), src);
        match s {
            Some(s) => (s, p),
            None => panic!("{src}: {p:?}"),
        }
    }

    /// The one error `src` gets.
    fn error(src: &str) -> Problem {
        error_in(Path::new("."), src)
    }

    fn error_in(dir: &Path, src: &str) -> Problem {
        let (s, p) = compile_in(dir, src);
        assert!(s.is_none(), "{src} compiled");
        let errors: Vec<Problem> = p
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{src}: {errors:?}");
        errors.into_iter().next().unwrap()
    }

    fn warnings(p: &[Problem]) -> Vec<&str> {
        p.iter()
            .filter(|p| p.severity == Severity::Warning)
            .map(|p| p.key.as_str())
            .collect()
    }

    const ISSUER: &str =
        "issuer = \"https://idp.example.com/realms/shop/\"\naudience = \"urn:api:shop\"\n";

    #[test]
    fn a_jwks_by_discovery_with_the_defaults() {
        let (s, p) = compiles(&format!("type = \"jwt\"\n{ISSUER}"));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s.algorithms, [Algorithm::RS256]);
        assert_eq!(s.cache_size, DEFAULT_CACHE_SIZE);
        assert_eq!(s.claims.leeway, 30);
        assert_eq!(s.claims.audience, ["urn:api:shop"]);
        let KeySource::Remote(r) = &s.keys else {
            panic!("{:?}", s.keys)
        };
        assert_eq!(
            r.discovery.as_deref(),
            Some("https://idp.example.com/realms/shop/.well-known/openid-configuration")
        );
        assert_eq!(r.jwks, None);
        assert_eq!(r.issuer, "https://idp.example.com/realms/shop/");
        assert_eq!(r.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.min_refresh, DEFAULT_MIN_REFRESH);
        assert_eq!(r.refresh, DEFAULT_REFRESH_BOUNDS);
    }

    #[test]
    fn every_key_compiles() {
        let (s, p) = compiles(
            r#"
            issuer = "https://idp.example.com"
            jwks = "https://idp.example.com/certs"
            audience = ["a", "b"]
            algorithms = ["RS256", "PS256", "ES256", "RS256"]
            require_typ = "application/AT+JWT"
            leeway = "5s"
            max_lifetime = "1h"
            jwks_min_refresh = "30s"
            jwks_refresh = { min = "5m", max = "1h" }
            timeout = "2s"
            cache_size = 500
            token = { header = "X-Token" }
            claims_to_headers = { sub = "X-User-Id" }
            forward_authorization = false
            "#,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            s.algorithms,
            [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
        );
        assert_eq!(s.claims.require_typ.as_deref(), Some("at+jwt"));
        assert_eq!(s.claims.max_lifetime, Some(3600));
        assert_eq!(s.claims.audience, ["a", "b"]);
        assert_eq!(s.cache_size, 500);
        assert!(!s.common.forward_authorization);
        let KeySource::Remote(r) = &s.keys else {
            panic!()
        };
        assert_eq!(r.jwks.as_deref(), Some("https://idp.example.com/certs"));
        assert_eq!(r.discovery, None);
        assert_eq!(r.refresh.min, Duration::from_secs(300));
        assert_eq!(r.min_refresh, Duration::from_secs(30));
    }

    #[test]
    fn an_inline_secret_is_refused_with_a_hint() {
        let e = error("secret = \"hunter2hunter2hunter2hunter2hunter2\"\n");
        assert_eq!(e.key, "secret");
        assert_eq!(e.span, Some(9..46));
        assert!(e.message.contains("never written in routes.toml"));
        assert!(e.hint.unwrap().contains("secret_file"));
        // Next to another key source, the rest of the section is checked too.
        let (s, p) = compile_in(
            Path::new("."),
            &format!(
                "public_key_file = \"{}\"\nsecret = {{ value = 1 }}\nalgorithms = [\"HS256\"]\n",
                fixture_path("rsa-public.pem")
            ),
        );
        assert!(s.is_none());
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["secret", "algorithms[0]", "audience"]);
    }

    #[test]
    fn hmac_secrets_from_a_file_or_the_environment() {
        let dir = TempDir::new();
        dir.write("short.key", b"too short\n");
        dir.write("ok.key", b"0123456789abcdef0123456789abcdef\n");
        let e = error_in(dir.path(), "secret_file = \"short.key\"");
        assert_eq!(e.key, "secret_file");
        assert!(e.message.contains("9 bytes"), "{}", e.message);
        let (s, _) = compile_in(dir.path(), "secret_file = \"ok.key\"");
        let s = s.unwrap();
        assert_eq!(s.algorithms, [Algorithm::HS256]);
        // HS512 needs a 64-byte key.
        let e = error_in(
            dir.path(),
            "secret_file = \"ok.key\"\nalgorithms = [\"HS512\"]",
        );
        assert!(e.message.contains("at least 64"), "{}", e.message);

        // The trailing newline is not part of the secret: the same key from the environment.
        std::env::set_var("FICUS_TEST_JWT_SECRET", "0123456789abcdef0123456789abcdef");
        let (from_env, _) = compiles("secret_env = \"FICUS_TEST_JWT_SECRET\"");
        assert_eq!(from_env, s);
        std::env::set_var("FICUS_TEST_JWT_SECRET_EMPTY", "");
        for var in ["FICUS_TEST_JWT_SECRET_EMPTY", "FICUS_TEST_JWT_SECRET_UNSET"] {
            let e = error(&format!("secret_env = \"{var}\""));
            assert_eq!(e.key, "secret_env");
            assert!(e.message.contains("is empty") || e.message.contains("is not set"));
        }
    }

    #[test]
    fn a_changed_key_file_is_a_changed_policy_and_secrets_stay_out_of_debug() {
        let dir = TempDir::new();
        dir.write("a.key", &[b'a'; 40]);
        dir.write("b.key", &[b'a'; 40]);
        let (a, _) = compile_in(dir.path(), "secret_file = \"a.key\"");
        let (b, _) = compile_in(dir.path(), "secret_file = \"b.key\"");
        assert_eq!(
            a, b,
            "the same secret under another name is the same policy"
        );
        dir.write("b.key", &[b'b'; 40]);
        let (b2, _) = compile_in(dir.path(), "secret_file = \"b.key\"");
        assert_ne!(a, b2);
        let shown = format!("{:?}", a.unwrap());
        assert!(!shown.contains("aaaa"), "{shown}");
        assert!(!shown.contains("97, 97"), "{shown}");
    }

    #[test]
    fn public_keys_set_the_default_algorithm_and_must_agree_with_algorithms() {
        for (file, alg) in [
            ("rsa-public.pem", Algorithm::RS256),
            ("ec256-public.pem", Algorithm::ES256),
            ("ec384-public.pem", Algorithm::ES384),
            ("ed25519-public.pem", Algorithm::EdDSA),
        ] {
            let (s, _) = compiles(&format!("public_key_file = \"{}\"", fixture_path(file)));
            assert_eq!(s.algorithms, [alg], "{file}");
        }
        let rsa = fixture_path("rsa-public.pem");
        // An RSA public key never verifies HMAC tokens: no HS/RS confusion by config.
        for alg in ["HS256", "ES256", "EdDSA"] {
            let e = error(&format!(
                "public_key_file = \"{rsa}\"\nalgorithms = [\"{alg}\"]"
            ));
            assert_eq!(e.key, "algorithms[0]");
            assert!(e.message.contains("cannot be verified with an RSA key"));
            assert!(e.hint.unwrap().contains("PS512"));
        }
        let e = error(&format!(
            "public_key_file = \"{}\"\nalgorithms = [\"ES384\"]",
            fixture_path("ec256-public.pem")
        ));
        assert!(e.message.contains("EC P-256"));
        let dir = TempDir::new();
        dir.write("k", &[b'k'; 64]);
        let e = error_in(dir.path(), "secret_file = \"k\"\nalgorithms = [\"RS256\"]");
        assert!(e.message.contains("an HMAC secret"));
    }

    #[test]
    fn hmac_with_a_jwks_is_refused() {
        let e = error(&format!("{ISSUER}algorithms = [\"RS256\", \"HS256\"]"));
        assert_eq!(e.key, "algorithms[1]");
        assert!(e.message.contains("shared secret"));
    }

    #[test]
    fn unknown_algorithms_get_a_did_you_mean() {
        let hint = |alg: &str| {
            error(&format!("{ISSUER}algorithms = [\"{alg}\"]"))
                .hint
                .unwrap()
        };
        assert!(hint("rs256").contains("did you mean `RS256`?"));
        assert!(hint("RS265").contains("RS256, RS384, RS512"));
        assert!(hint("none").contains("never accepted"));
        assert!(hint("XY1").contains("supported: HS256"));
        assert!(hint("€S256").contains("supported: HS256"));
        assert!(hint("R").contains("supported: HS256"));
        let e = error(&format!("{ISSUER}algorithms = []"));
        assert!(e.message.contains("empty"));
    }

    #[test]
    fn one_key_source() {
        let rsa = fixture_path("rsa-public.pem");
        let e = error(&format!("secret_env = \"X\"\npublic_key_file = \"{rsa}\""));
        assert_eq!(e.key, "public_key_file");
        assert!(e.message.contains("two key sources"));
        let e = error(&format!(
            "{ISSUER}jwks = \"https://idp.example.com/certs\"\npublic_key_file = \"{rsa}\""
        ));
        assert_eq!(e.key, "jwks");
        let e = error("audience = \"a\"");
        assert!(e.message.contains("needs a key source"));
        let e = error("jwks = \"https://idp.example.com/certs\"");
        assert_eq!(e.key, "issuer");
        // A local key with an issuer: `iss` is checked, nothing is fetched.
        let (s, p) = compiles(&format!(
            "issuer = \"https://idp.example.com\"\npublic_key_file = \"{rsa}\"\ntimeout = \"1s\""
        ));
        assert_eq!(s.claims.issuer.as_deref(), Some("https://idp.example.com"));
        assert!(matches!(s.keys, KeySource::Local(_)));
        assert_eq!(warnings(&p), ["audience", "timeout"]);
    }

    #[test]
    fn provider_urls() {
        for (url, key) in [
            ("ftp://idp.example.com", "issuer"),
            ("idp.example.com", "issuer"),
            ("https://idp.example.com?realm=x", "issuer"),
        ] {
            let e = error(&format!("issuer = \"{url}\""));
            assert_eq!(e.key, key, "{url}");
        }
        let e = error("issuer = \"x\"\njwks = \"file:///etc/passwd\"");
        assert_eq!(e.key, "jwks");
        // Plain http: a warning, except on loopback.
        let (_, p) = compiles("issuer = \"http://idp.example.com\"\naudience = \"a\"");
        assert_eq!(warnings(&p), ["issuer"]);
        assert!(p[0].message.contains("plain http"));
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            let (_, p) = compiles(&format!("issuer = \"{local}\"\naudience = \"a\""));
            assert!(p.is_empty(), "{local}: {p:?}");
        }
        // With an explicit jwks the issuer is only compared with `iss`: any string.
        compiles(
            "issuer = \"urn:corp\"\njwks = \"https://idp.example.com/certs\"\naudience = \"a\"",
        );
    }

    #[test]
    fn missing_audience_is_a_warning() {
        let (_, p) = compiles("issuer = \"https://idp.example.com\"");
        assert_eq!(warnings(&p), ["audience"]);
        for bad in [
            "audience = \"\"",
            "audience = []",
            "audience = [1]",
            "audience = 5",
        ] {
            let e = error(&format!("issuer = \"https://idp.example.com\"\n{bad}"));
            assert_eq!(e.key, "audience", "{bad}");
        }
    }

    #[test]
    fn durations_and_numbers() {
        let bad = [
            ("leeway = \"5 parsecs\"", "leeway"),
            ("max_lifetime = \"0s\"", "max_lifetime"),
            ("timeout = \"0ms\"", "timeout"),
            ("jwks_min_refresh = \"100ms\"", "jwks_min_refresh"),
            (
                "jwks_refresh = { min = \"1h\", max = \"1m\" }",
                "jwks_refresh",
            ),
            ("jwks_refresh = { min = \"10ms\" }", "jwks_refresh.min"),
            ("cache_size = -1", "cache_size"),
            ("cache_size = 100000000", "cache_size"),
            ("require_typ = \"\"", "require_typ"),
        ];
        for (line, key) in bad {
            let e = error(&format!("{ISSUER}{line}"));
            assert_eq!(e.key, key, "{line}");
        }
        let (_, p) = compiles(&format!("{ISSUER}leeway = \"10m\""));
        assert_eq!(warnings(&p), ["leeway"]);
    }

    #[test]
    fn files_that_cannot_be_used() {
        let dir = TempDir::new();
        let e = error_in(dir.path(), "public_key_file = \"missing.pem\"");
        assert!(e.message.contains("cannot be read"), "{}", e.message);
        assert!(e.message.contains("missing.pem"));
        dir.write("private.pem", &fixture("rsa-private.pem"));
        let e = error_in(dir.path(), "public_key_file = \"private.pem\"");
        assert!(e.message.contains("private key"), "{}", e.message);
        assert!(e.hint.unwrap().contains("-pubout"));
        dir.write("empty.key", b"");
        let e = error_in(dir.path(), "secret_file = \"empty.key\"");
        assert!(e.message.contains("empty"));
        dir.write("small.pem", &fixture("rsa1024-public.pem"));
        let e = error_in(dir.path(), "public_key_file = \"small.pem\"");
        assert!(e.message.contains("1024 bits"), "{}", e.message);
    }

    #[test]
    fn a_ca_file_is_read_and_checked() {
        let dir = TempDir::new();
        dir.write("ca.pem", &fixture("ca.pem"));
        dir.write("junk.pem", b"not a certificate");
        let (s, _) = compile_in(dir.path(), &format!("{ISSUER}ca_file = \"ca.pem\""));
        let KeySource::Remote(r) = s.unwrap().keys else {
            panic!()
        };
        assert_eq!(r.ca.unwrap(), fixture("ca.pem"));
        let e = error_in(dir.path(), &format!("{ISSUER}ca_file = \"junk.pem\""));
        assert_eq!(e.key, "ca_file");
        assert!(e.message.contains("no PEM certificate"), "{}", e.message);
    }

    #[test]
    fn unknown_keys_are_still_refused() {
        let r: Result<JwtConfig, _> = toml::from_str("isuer = \"x\"");
        assert!(r.is_err());
    }
}
