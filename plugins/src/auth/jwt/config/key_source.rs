//! The key source of a `jwt` section: exactly one of a JWKS (written, or found by
//! discovery from `issuer`), an HMAC secret or a PEM public key, read and checked here;
//! and a JWKS's fetch settings (timeout, refresh bounds, CA bundle). Does not decide the
//! algorithms ([`algorithms`](mod@super::algorithms)) nor build the settings
//! ([`super::compile`]).

use std::io::Read;
use std::time::Duration;
use toml::Spanned;

use super::{JwtConfig, DEFAULT_MIN_REFRESH, DEFAULT_REFRESH_BOUNDS, DEFAULT_TIMEOUT};
use crate::auth::introspection::duration_key;
use crate::auth::jwt::fetch::RemoteSettings;
use crate::auth::jwt::keys::{KeyKind, KeySet};
use crate::auth::provider;
use crate::auth::secret::{Secret, SecretKeys};
use crate::CompileContext;

/// Below this, unknown-`kid` tokens could make ficus fetch the JWKS many times a second.
const SHORTEST_MIN_REFRESH: Duration = Duration::from_secs(1);
/// Key files are small; a bigger one is a mistake (`/dev/zero`).
const MAX_KEY_FILE_SIZE: u64 = 1024 * 1024;

/// What the key settings say, before the algorithms are known.
pub(super) enum Source {
    Remote {
        jwks: Option<String>,
        discovery: Option<String>,
    },
    /// The secret, and the key and span that named it.
    Secret(Secret, &'static str, Option<std::ops::Range<usize>>),
    PublicKey(KeySet),
}

impl Source {
    pub(super) fn kind(&self) -> Option<KeyKind> {
        match self {
            Source::Remote { .. } => None,
            Source::Secret(..) => Some(KeyKind::Hmac),
            Source::PublicKey(set) => set.local_kind(),
        }
    }
}

/// The key source: exactly one of a JWKS (written, or by discovery from `issuer`), an
/// HMAC secret (`secret_file` or `secret_env`) or `public_key_file`.
pub(super) fn key_source(c: &JwtConfig, cx: &mut CompileContext<'_>) -> Option<Source> {
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

/// Keys that only mean something for a JWKS, written for a local key: a warning.
pub(super) fn no_remote_keys(c: &JwtConfig, cx: &mut CompileContext<'_>) {
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

pub(super) fn remote_settings(
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
