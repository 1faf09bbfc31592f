//! Talking to an identity provider: URL checks at compile time, the HTTP client (TLS
//! verified by default, with an extra CA from `ca_file`), bounded response bodies.
//!
//! The JWKS fetch, discovery and introspection calls all go through here, and only to URLs
//! from routes.toml (or, for the JWKS, from the configured issuer's discovery document):
//! never to a URL taken from a token.

use std::time::Duration;
use toml::Spanned;

use crate::CompileContext;

/// The most a provider answer may hold; a key set or an introspection answer is a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// Checks a provider URL: `http` or `https` with a host. A plain `http` URL to a host other
/// than loopback gets a warning (tokens and keys would cross the network unprotected).
pub fn check_url(
    url: &Spanned<String>,
    key: &str,
    cx: &mut CompileContext<'_>,
) -> Option<reqwest::Url> {
    let parsed = match reqwest::Url::parse(url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            cx.error_hint(
                Some(url.span()),
                key,
                format!("`{}` is not an http(s) URL", url.get_ref()),
                "write the full URL, like \"https://idp.example.com/realms/shop\"",
            );
            return None;
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        cx.error_hint(
            Some(url.span()),
            key,
            "a provider URL must not hold credentials",
            "give the gateway's credentials with `client_id` and `client_secret_file`",
        );
        return None;
    }
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        cx.warning(
            Some(url.span()),
            key,
            format!(
                "`{}` is plain http: keys and tokens would cross the network unprotected",
                url.get_ref()
            ),
        );
    }
    Some(parsed)
}

fn is_loopback(u: &reqwest::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Reads `ca_file` (PEM certificates) at compile time.
pub fn read_ca(file: Option<&Spanned<String>>, cx: &mut CompileContext<'_>) -> Option<Vec<u8>> {
    let f = file?;
    let path = cx.resolve_path(f.get_ref());
    match crate::files::read_bounded(&path) {
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Some(pem),
            _ => {
                cx.error(
                    Some(f.span()),
                    "ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
        },
        Err(e) => {
            cx.error(
                Some(f.span()),
                "ca_file",
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

/// An HTTP client for provider calls: certificates verified (the platform's roots plus
/// `ca`), no redirects followed, every request bounded by `timeout`.
pub fn client(ca: Option<&[u8]>, timeout: Duration) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ficus/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca {
        for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
            b = b.add_root_certificate(cert);
        }
    }
    // Building fails only when the TLS backend cannot initialise; a client without the
    // extra CA then fails its calls, which the policies report as the provider being
    // unavailable (never as a pass).
    b.build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Why a provider call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("answered status {0}")]
    Status(u16),
    #[error("answer larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("answer is not a JSON object")]
    NotJson,
}

/// The body of a successful answer as JSON, at most [`MAX_BODY`] bytes read.
pub async fn json_body(resp: reqwest::Response) -> Result<serde_json::Value, CallError> {
    match any_json_body(resp).await? {
        (status, v) if (200..300).contains(&status) => Ok(v),
        (status, _) => Err(CallError::Status(status)),
    }
}

/// The status and JSON body of an answer, whatever its status (an OAuth2 error answer is
/// JSON too), at most [`MAX_BODY`] bytes read.
pub async fn any_json_body(
    mut resp: reqwest::Response,
) -> Result<(u16, serde_json::Value), CallError> {
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(CallError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok((status, v)),
        _ if !(200..300).contains(&status) => Err(CallError::Status(status)),
        _ => Err(CallError::NotJson),
    }
}
