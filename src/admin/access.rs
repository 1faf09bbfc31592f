//! Who may use the admin listener: the `Host` names it answers (against DNS rebinding),
//! which reads need the bearer token when reads are guarded, and the 401 answer.
//!
//! The token itself is the registry's (`[registry] token` / `token_env`) and is checked by
//! `Registrations::authorized`; this file only says where it is needed.

use http::{Response, StatusCode};

/// Whether a `GET` of `path` needs the token when admin reads are guarded. Load balancer
/// probes (`/healthz`, `/readyz`) never do, nor do the two pages, which hold no data: they
/// fetch it with the token the operator gives them.
pub(super) fn read_needs_token(path: &str) -> bool {
    !matches!(
        path,
        "/healthz" | "/readyz" | "/" | "/registry/ui" | "/migration" | "/migration/"
    )
}

/// `401` with `WWW-Authenticate: Bearer`.
pub(super) fn unauthorized(message: &str) -> Response<Vec<u8>> {
    let mut r = super::error_reply(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Whether the admin listener answers a request with this `Host`. A DNS-rebinding page
/// reaches the listener under its own domain name (`Host: evil.example:9901`) and could read
/// `/registry` or write to it; names it cannot control are let through:
/// - no `Host` (HTTP/1.0; a browser always sends one);
/// - an IP literal (`127.0.0.1:9901`, `[::1]:9901`, `10.0.0.5`): what `ficus status`,
///   Prometheus pod discovery and `kubectl port-forward` send;
/// - `localhost` and names under `.localhost` (always loopback, RFC 6761);
/// - a single-label name with no dot (`admin`, `ficus:9901`, a container or host short
///   name): it is resolved by the local network's own search domains or hosts file, never by
///   a name server an attacker runs.
pub(super) fn host_allowed(host: Option<&[u8]>) -> bool {
    let Some(host) = host else { return true };
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let host = host.trim();
    if let Some(v6) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        return v6
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _port)| name);
    if name.is_empty() {
        return false;
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost") || !lower.contains('.')
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, read_needs_token};

    #[test]
    fn probes_and_pages_need_no_token() {
        for open in ["/healthz", "/readyz", "/", "/registry/ui", "/migration"] {
            assert!(!read_needs_token(open), "{open}");
        }
        for guarded in [
            "/registry",
            "/registry/summary",
            "/metrics",
            "/migration.json",
            "/shadow",
            "/config",
            "/policies",
        ] {
            assert!(read_needs_token(guarded), "{guarded}");
        }
    }

    #[test]
    fn hosts_a_rebinding_page_cannot_use_are_allowed() {
        for ok in [
            None,
            Some("127.0.0.1:9901"),
            Some("10.0.0.5"),
            Some("[::1]:9901"),
            Some("[fe80::1]"),
            Some("localhost:9901"),
            Some("LOCALHOST"),
            Some("admin.localhost:9901"),
            Some("admin"),
            Some("ficus:9901"),
        ] {
            assert!(host_allowed(ok.map(str::as_bytes)), "{ok:?}");
        }
        for bad in [
            "evil.example",
            "evil.example:9901",
            "127.0.0.1.nip.io:9901",
            "localhost.evil.example",
            "admin.:9901",
            ":9901",
            "",
            "[not-v6]:9901",
        ] {
            assert!(!host_allowed(Some(bad.as_bytes())), "{bad:?}");
        }
    }
}
