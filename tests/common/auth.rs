//! What the authentication tests (tests/auth_*.rs) share: sending a token, the answers the
//! spec fixes (401 with `WWW-Authenticate: Bearer ...`, 403 `insufficient_scope`, 503 with
//! `Retry-After`), the `ficus_auth_*` metrics and the JSON access log.
//!
//! ```ignore
//! let r = bearer(&gw, "/orders/1", &token);
//! assert_invalid_token(&r, "token expired");
//! assert_eq!(auth_outcomes(&gw, "corp", "expired"), 1.0);
//! ```

use super::gateway::Gateway;
use super::poll_until;
use super::registry::{get_with, metric};
use super::wire::RawResponse;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `aud` of the provider's JWT access tokens ([`crate::common::OidcOptions`]).
pub const AUD: &str = "urn:api:shop";
/// The `aud` of its opaque (introspected) tokens.
pub const OPAQUE_AUD: &str = "urn:api:shop:opaque";

/// The challenge of a request without a token (RFC 6750 §3.1: no error code).
pub const NO_TOKEN_CHALLENGE: &str = r#"Bearer realm="ficus""#;

/// The fixed `error_description`s of a refused token (the spec's list): nothing from the
/// token or the key is ever echoed.
pub const DESCRIPTIONS: &[&str] = &[
    "token expired",
    "token not yet valid",
    "bad signature",
    "malformed token",
    "token too large",
    "unknown signing key",
    "wrong issuer",
    "wrong audience",
    "algorithm not allowed",
    "wrong token type",
    "token lifetime too long",
    "token inactive",
    "missing or invalid registered claims",
];

/// How long a gateway may take to fetch keys it could not fetch at start (it retries).
pub const KEYS_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` with `Authorization: Bearer TOKEN` (other headers: [`get_with`]).
pub fn bearer(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    let value = format!("Bearer {token}");
    get_with(gw, path, &[("Authorization", &value)])
}

/// `401` for a request without a token: the bare challenge and the JSON error body.
#[track_caller]
pub fn assert_no_token(r: &RawResponse) {
    assert_eq!(r.status, 401, "{}", describe(r));
    assert_eq!(
        r.header("www-authenticate"),
        Some(NO_TOKEN_CHALLENGE),
        "{}",
        describe(r)
    );
    assert_error_body(r);
}

/// `401` for a refused token with exactly this `error_description`.
#[track_caller]
pub fn assert_invalid_token(r: &RawResponse, description: &str) {
    assert_invalid_token_one_of(r, &[description]);
}

/// `401` for a refused token whose `error_description` is one of `descriptions` (where the
/// spec leaves the choice open; the test says why).
#[track_caller]
pub fn assert_invalid_token_one_of(r: &RawResponse, descriptions: &[&str]) {
    assert_eq!(r.status, 401, "{}", describe(r));
    let challenge = r.header("www-authenticate").unwrap_or_default();
    let ok = descriptions.iter().any(|d| {
        challenge
            == format!(r#"Bearer realm="ficus", error="invalid_token", error_description="{d}""#)
    });
    assert!(
        ok,
        "WWW-Authenticate {challenge:?} is not invalid_token with one of {descriptions:?}\n{}",
        describe(r)
    );
    assert_error_body(r);
}

/// `401` for a refused token, whatever its `error_description`: for tests of what must be
/// refused, where the wording is another test's concern.
#[track_caller]
pub fn assert_refused_token(r: &RawResponse) {
    assert_eq!(r.status, 401, "{}", describe(r));
    let challenge = r.header("www-authenticate").unwrap_or_default();
    let prefix = r#"Bearer realm="ficus", error="invalid_token", error_description=""#;
    assert!(
        challenge.starts_with(prefix)
            && challenge.ends_with('"')
            && challenge.len() > prefix.len() + 1,
        "WWW-Authenticate {challenge:?} is not an invalid_token challenge\n{}",
        describe(r)
    );
    assert_error_body(r);
}

/// `403` for missing scopes: `scope` lists every required scope, space separated.
#[track_caller]
pub fn assert_insufficient_scope(r: &RawResponse, scope: &str) {
    assert_eq!(r.status, 403, "{}", describe(r));
    let want = format!(r#"Bearer realm="ficus", error="insufficient_scope", scope="{scope}""#);
    assert_eq!(
        r.header("www-authenticate"),
        Some(want.as_str()),
        "{}",
        describe(r)
    );
    assert_error_body(r);
}

/// `403` for a claim rule the token does not meet.
#[track_caller]
pub fn assert_claim_not_satisfied(r: &RawResponse) {
    assert_eq!(r.status, 403, "{}", describe(r));
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="ficus", error="insufficient_scope", error_description="required claim not satisfied""#
        ),
        "{}",
        describe(r)
    );
    assert_error_body(r);
}

/// `503` with `Retry-After: 5`: the identity provider was never reached (or introspection
/// failed). Never a pass.
#[track_caller]
pub fn assert_unavailable(r: &RawResponse) {
    assert_eq!(r.status, 503, "{}", describe(r));
    assert_eq!(r.header("retry-after"), Some("5"), "{}", describe(r));
    assert_error_body(r);
}

/// The gateway's JSON error body: `{"error": "...", "request_id": "..."}`.
#[track_caller]
fn assert_error_body(r: &RawResponse) {
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{}", describe(r));
    let j: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", describe(r)));
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        describe(r)
    );
    assert!(j["request_id"].is_string(), "{}", describe(r));
}

/// A response, for assertion messages.
pub fn describe(r: &RawResponse) -> String {
    format!(
        "status {} headers {:?} body {}",
        r.status,
        r.headers,
        r.text()
    )
}

/// Sends `token` until the gateway stops answering 503 (it fetches keys in the background,
/// and may get the first request before they arrive); the first other answer.
pub fn wait_for_keys(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    let mut last = None;
    let found = poll_until(KEYS_TIMEOUT, || {
        let r = bearer(gw, path, token);
        let done = r.status != 503;
        last = Some(r.clone());
        done.then_some(r)
    });
    found.unwrap_or_else(|| {
        panic!(
            "still 503 after {KEYS_TIMEOUT:?}: {}\n{}",
            last.map(|r| describe(&r)).unwrap_or_default(),
            gw.logs()
        )
    })
}

/// `ficus_auth_requests_total{policy, outcome}` (0 when the series is not there yet).
pub fn auth_outcomes(gw: &Gateway, policy: &str, outcome: &str) -> f64 {
    metric(
        gw,
        "ficus_auth_requests_total",
        &[("policy", policy), ("outcome", outcome)],
    )
}

/// Waits (up to 5 s) until `read()` is at least `want`; returns the last value. Counters
/// move when the request is logged, which may be just after the client has its answer.
pub fn wait_metric(want: f64, mut read: impl FnMut() -> f64) -> f64 {
    let mut last = read();
    let _ = poll_until(Duration::from_secs(5), || {
        last = read();
        (last >= want).then_some(())
    });
    last
}

/// The JSON access log lines (`access_log = "json"`) the gateway wrote so far.
pub fn access_lines(gw: &Gateway) -> Vec<Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request_id").is_some() && v.get("status").is_some())
        .collect()
}

/// The access log line of the request with this `X-Request-Id`, waiting for it (up to 5 s).
pub fn access_line(gw: &Gateway, request_id: &str) -> Value {
    poll_until(Duration::from_secs(5), || {
        access_lines(gw)
            .into_iter()
            .find(|l| l["request_id"] == request_id)
    })
    .unwrap_or_else(|| panic!("no access log line for {request_id}\n{}", gw.logs()))
}

/// Writes `contents` to `dir/name`; the path, for a `*_file` setting.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Writes a secret to `dir/name`, readable by its owner only (`ficus check` warns about a
/// secret file others can read); the path.
pub fn write_secret(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = write_file(dir, name, contents);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
    path
}

/// The path as a TOML string.
pub fn toml_path(path: &Path) -> String {
    crate::common::toml_str(&path.display().to_string())
}
