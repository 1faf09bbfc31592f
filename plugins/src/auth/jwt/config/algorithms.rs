//! The `algorithms` of a `jwt` section: each one known, agreeing with the key source
//! (no HMAC with a JWKS, none a local key cannot verify), with a did-you-mean for an
//! unknown name; and an HMAC secret long enough for the algorithms it verifies.

use jsonwebtoken::Algorithm;
use toml::Spanned;

use crate::auth::jwt::keys::KeyKind;
use crate::auth::jwt::verify::{algorithm, algorithm_name, ALGORITHMS};
use crate::CompileContext;

/// The allowed algorithms: as written (each known, agreeing with the key), or the key's
/// default (RS256 for a JWKS).
pub(super) fn algorithms(
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
pub(super) fn check_secret_length(
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
