//! What every auth policy kind shares: where the token is found ([`TokenSource`], the size
//! limit) and what of the verified identity goes to the upstream (`claims_to_headers`,
//! `forward_authorization`, `forward_claims`).
//!
//! The keys are written in each kind's section (serde cannot flatten a shared struct into a
//! `deny_unknown_fields` one), and compiled here by [`CommonSettings::compile`].

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use toml::Spanned;

use super::Refusal;
use crate::{CompileContext, HeaderEdits, Identity, RequestView};

/// Tokens longer than this are refused before any parsing, unless `max_token_size` says
/// otherwise: real access tokens are a few hundred bytes to a few KiB.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;
/// The most `max_token_size` may be: the request head limit bounds it anyway.
const MAX_MAX_TOKEN_SIZE: i64 = 64 * 1024;

/// `token = { header = "X-Token" }` (or `cookie`, or `query`) as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSourceConfig {
    pub header: Option<Spanned<String>>,
    pub cookie: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
}

/// Where a policy reads the token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer TOKEN` (the default).
    Bearer,
    /// The whole value of a named header.
    Header(HeaderName),
    /// A named cookie.
    Cookie(String),
    /// A query parameter; only when configured (tokens in URLs end up in logs and
    /// browser histories, RFC 6750 §5.3).
    Query(String),
}

/// The shared keys of an auth section, borrowed from the kind's config.
pub struct CommonConfig<'a> {
    pub token: Option<&'a Spanned<TokenSourceConfig>>,
    pub max_token_size: Option<&'a Spanned<i64>>,
    pub claims_to_headers: &'a BTreeMap<String, Spanned<String>>,
    pub forward_authorization: Option<bool>,
    pub forward_claims: Option<&'a Spanned<String>>,
}

/// The compiled shared keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonSettings {
    pub token: TokenSource,
    pub max_token_size: usize,
    /// `(claim path, header)`, in the order of the claim paths.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub forward_authorization: bool,
    /// The header that carries the verified claims as base64url JSON.
    pub forward_claims: Option<HeaderName>,
}

impl Default for CommonSettings {
    fn default() -> Self {
        CommonSettings {
            token: TokenSource::Bearer,
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            claims_to_headers: Vec::new(),
            forward_authorization: true,
            forward_claims: None,
        }
    }
}

/// Headers an identity header may not be: the gateway's own, framing, and the ones that
/// carry credentials or routing.
const RESERVED: [&str; 12] = [
    "authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

impl CommonSettings {
    pub fn compile(c: CommonConfig<'_>, cx: &mut CompileContext<'_>) -> CommonSettings {
        let mut out = CommonSettings {
            forward_authorization: c.forward_authorization.unwrap_or(true),
            ..CommonSettings::default()
        };
        if let Some(t) = c.token {
            out.token = token_source(t, cx);
        }
        if let Some(n) = c.max_token_size {
            match *n.get_ref() {
                v @ 1..=MAX_MAX_TOKEN_SIZE => out.max_token_size = v as usize,
                _ => cx.error_hint(
                    Some(n.span()),
                    "max_token_size",
                    format!("`max_token_size` must be between 1 and {MAX_MAX_TOKEN_SIZE} bytes"),
                    format!("the default is {DEFAULT_MAX_TOKEN_SIZE}"),
                ),
            }
        }
        let mut seen: Vec<HeaderName> = Vec::new();
        for (claim, header) in c.claims_to_headers {
            let key = format!("claims_to_headers.{claim}");
            if claim.is_empty() || claim.split('.').any(str::is_empty) {
                cx.error_hint(
                    Some(header.span()),
                    &key,
                    format!("`{claim}` is not a claim path"),
                    "name a claim (`sub`) or a nested one (`realm_access.roles`)",
                );
                continue;
            }
            if let Some(h) = identity_header(header, &key, &seen, cx) {
                seen.push(h.clone());
                out.claims_to_headers.push((claim.clone(), h));
            }
        }
        if let Some(h) = c.forward_claims {
            out.forward_claims = identity_header(h, "forward_claims", &seen, cx);
        }
        if let (TokenSource::Query(_), false, Some(t)) =
            (&out.token, out.forward_authorization, c.token)
        {
            cx.warning(
                Some(t.span()),
                "forward_authorization",
                "`forward_authorization = false` cannot take a token out of the query string: the upstream still gets it in the URL",
            );
        }
        out
    }

    /// Every header this policy sets on the upstream request (and so removes from the
    /// client's request first).
    pub fn identity_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.claims_to_headers
            .iter()
            .map(|(_, h)| h)
            .chain(self.forward_claims.iter())
    }

    /// The token in `req` as this policy finds it: `Ok(None)` when there is none, a refusal
    /// when it is ambiguous (sent twice) or too large.
    pub fn find_token<'r>(
        &self,
        req: &'r RequestView<'_>,
    ) -> Result<Option<Cow<'r, str>>, Refusal> {
        let found = match &self.token {
            TokenSource::Bearer => bearer(req.headers)?.map(Cow::Borrowed),
            TokenSource::Header(name) => single(req.headers, name)?
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(Cow::Borrowed),
            TokenSource::Cookie(name) => cookie(req.headers, name)?.map(Cow::Borrowed),
            TokenSource::Query(name) => query_param(req.query, name)?,
        };
        match found {
            Some(t) if t.len() > self.max_token_size => Err(Refusal::TooLarge),
            other => Ok(other),
        }
    }

    /// Queues the upstream edits for a request this policy verified: the identity headers
    /// from its claims, and the token removed unless forwarded (`headers`: the client's).
    pub fn forward_identity(&self, id: &Identity, headers: &HeaderMap, edits: &mut HeaderEdits) {
        for (claim, header) in &self.claims_to_headers {
            if let Some(v) = id.claim(claim).and_then(claim_header_value) {
                edits.set(header.clone(), v);
            }
        }
        if let Some(h) = &self.forward_claims {
            if let Ok(json) = serde_json::to_vec(&*id.claims) {
                if let Ok(v) = HeaderValue::from_str(&base64url(&json)) {
                    edits.set(h.clone(), v);
                }
            }
        }
        if !self.forward_authorization {
            self.remove_token(headers, edits);
        }
    }

    /// Queues the removal of this policy's token from the upstream request: the
    /// `Authorization` header, the named header, or the named cookie (the other cookies
    /// stay). A token in the query string stays in the URL (`ficus check` says so).
    pub fn remove_token(&self, headers: &HeaderMap, edits: &mut HeaderEdits) {
        match &self.token {
            TokenSource::Bearer => edits.remove(http::header::AUTHORIZATION),
            TokenSource::Header(h) => edits.remove(h.clone()),
            TokenSource::Cookie(name) => {
                if !headers.contains_key(http::header::COOKIE) {
                    return;
                }
                let kept: Vec<&str> = headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|pair| {
                        !pair.is_empty()
                            && pair.split_once('=').map_or(pair.trim(), |(k, _)| k.trim()) != name
                    })
                    .collect();
                match HeaderValue::from_str(&kept.join("; ")) {
                    Ok(v) if !kept.is_empty() => edits.set(http::header::COOKIE, v),
                    _ => edits.remove(http::header::COOKIE),
                }
            }
            TokenSource::Query(_) => {}
        }
    }
}

/// A claim as a header value: strings as they are, other JSON compact. `None` for a value
/// that cannot be a header (control characters) or is `null`.
fn claim_header_value(v: &serde_json::Value) -> Option<HeaderValue> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => HeaderValue::from_str(s).ok(),
        other => HeaderValue::from_str(&other.to_string()).ok(),
    }
}

fn identity_header(
    h: &Spanned<String>,
    key: &str,
    seen: &[HeaderName],
    cx: &mut CompileContext<'_>,
) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(h.get_ref().as_bytes()) else {
        cx.error(
            Some(h.span()),
            key,
            format!("`{}` is not a valid header name", h.get_ref()),
        );
        return None;
    };
    if RESERVED.contains(&name.as_str()) {
        cx.error_hint(
            Some(h.span()),
            key,
            format!("`{}` cannot carry identity", h.get_ref()),
            "pick a header of your own, like `X-User-Id`",
        );
        return None;
    }
    if seen.contains(&name) {
        cx.error(
            Some(h.span()),
            key,
            format!("`{}` is set from two claims", h.get_ref()),
        );
        return None;
    }
    Some(name)
}

fn token_source(t: &Spanned<TokenSourceConfig>, cx: &mut CompileContext<'_>) -> TokenSource {
    let c = t.get_ref();
    let given = [&c.header, &c.cookie, &c.query]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        cx.error_hint(
            Some(t.span()),
            "token",
            "`token` names one place to read the token from",
            "write token = { header = \"X-Token\" }, { cookie = \"NAME\" } or { query = \"NAME\" }; leave it out for `Authorization: Bearer`",
        );
        return TokenSource::Bearer;
    }
    if let Some(h) = &c.header {
        return match HeaderName::from_bytes(h.get_ref().as_bytes()) {
            Ok(n) if n == http::header::AUTHORIZATION => TokenSource::Bearer,
            Ok(n) => TokenSource::Header(n),
            Err(_) => {
                cx.error(
                    Some(h.span()),
                    "token.header",
                    format!("`{}` is not a valid header name", h.get_ref()),
                );
                TokenSource::Bearer
            }
        };
    }
    let (name, key, cookie) = match (&c.cookie, &c.query) {
        (Some(n), _) => (n, "token.cookie", true),
        (_, Some(n)) => (n, "token.query", false),
        _ => return TokenSource::Bearer,
    };
    let valid = !name.get_ref().is_empty()
        && name
            .get_ref()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    if !valid {
        cx.error_hint(
            Some(name.span()),
            key,
            format!("`{}` is not a usable name", name.get_ref()),
            "use letters, digits, `-`, `_`, `.` or `~`",
        );
        return TokenSource::Bearer;
    }
    if cookie {
        TokenSource::Cookie(name.get_ref().clone())
    } else {
        TokenSource::Query(name.get_ref().clone())
    }
}

/// The one value of header `name`; two of them are ambiguous.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Refusal> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Refusal::Malformed);
    }
    first.to_str().map(Some).map_err(|_| Refusal::Malformed)
}

/// The token of `Authorization: Bearer TOKEN` (scheme case-insensitive, RFC 6750 §2.1).
/// Another scheme (`Basic`) carries no bearer token.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let v = v.as_bytes().trim_ascii();
    let (scheme, rest) = match memchr::memchr(b' ', v) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() || !token_bytes(token) {
        return Err(Refusal::Malformed);
    }
    // Visible ASCII: always UTF-8.
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| Refusal::Malformed)
}

/// Whether every byte is visible ASCII other than `,`: what a bearer token may hold here
/// (RFC 6750's token68, loosely; a JWT is refused later for anything outside base64url).
/// A token is 1-2 KiB and this runs on every request, so the loop has no early exit and
/// compiles to vector compares; the byte-at-a-time scan it replaced was the largest cost
/// of a cache hit.
fn token_bytes(token: &[u8]) -> bool {
    token.iter().fold(true, |ok, &c| {
        ok & (c.wrapping_sub(0x21) < 0x5e) & (c != b',')
    })
}

/// Cookie `name` from the request's `Cookie` headers; sent twice is ambiguous.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    let mut found = None;
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                if found.is_some() {
                    return Err(Refusal::Malformed);
                }
                found = Some(val.trim().trim_matches('"'));
            }
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// Query parameter `name`, percent-decoded; sent twice is ambiguous.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Result<Option<Cow<'q, str>>, Refusal> {
    let Some(q) = query else { return Ok(None) };
    let mut found = None;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if found.is_some() {
                return Err(Refusal::Malformed);
            }
            found = Some(v);
        }
    }
    match found {
        None | Some("") => Ok(None),
        Some(v) if !v.contains(['%', '+']) => Ok(Some(Cow::Borrowed(v))),
        Some(v) => percent_decode(v)
            .map(|s| Some(Cow::Owned(s)))
            .ok_or(Refusal::Malformed),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Unpadded base64url (RFC 4648 §5).
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
