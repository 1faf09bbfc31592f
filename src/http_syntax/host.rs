//! The request's host: where it is found (HTTP/2 `:authority`, the `Host` header, an
//! absolute-form target), whether a value is a sound `host[:port]`, and the host without
//! its port.

use http::header;
use pingora_http::RequestHeader;

/// The authority of an absolute-form request target (`http://host:port/path`), as sent.
pub fn absolute_target_authority(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let start = target.windows(3).position(|w| w == b"://")? + 3;
    let rest = &target[start..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The same, only when it is a sound, non-empty `host[:port]`.
pub fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    absolute_target_authority(target).filter(|a| !a.is_empty() && host_value_is_sound(a))
}

/// The request's host without port: `:authority` for HTTP/2, else the Host header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = req
        .uri
        .host()
        .or_else(|| req.headers.get(header::HOST).and_then(|v| v.to_str().ok()))?;
    Some(strip_port(raw))
}

/// A `Host` value is `host [":" port]` (RFC 9110 §7.2): a bracketed IPv6 literal, or a name
/// of letters, digits, `-`, `.` and `_` (what host names and IPv4 addresses are made of;
/// URI syntax would also allow sub-delimiters and percent-escapes, which no real host
/// uses and which would reach X-Forwarded-Host and backends that echo it), and at most
/// five port digits up to 65535. An empty value is allowed (RFC 9112 §3.2, for targets
/// without an authority).
pub fn host_value_is_sound(h: &[u8]) -> bool {
    let (name, port) = if h.first() == Some(&b'[') {
        match h.iter().position(|&b| b == b']') {
            Some(close) => (&h[1..close], h.get(close + 1..).unwrap_or_default()),
            None => return false,
        }
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(colon) => (&h[..colon], &h[colon..]),
            None => (h, &[][..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .is_none_or(|d| d.is_empty() || d.parse::<u32>().is_ok_and(|p| p <= 65535))
        }
        _ => false,
    };
    if !port_ok {
        return false;
    }
    if h.first() == Some(&b'[') {
        // An IP literal in brackets is an IPv6 address: `[admin.example]` names no host.
        return std::str::from_utf8(name).is_ok_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
    }
    // Labels are not empty (`a..b`, `.a`): one trailing dot, the root, is all a name may end
    // with.
    let labels_ok = !name.starts_with(b".") && !name.windows(2).any(|w| w == b"..");
    labels_ok
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// A `host[:port]` value without its port; an IPv6 literal keeps its brackets.
pub fn strip_port(h: &str) -> &str {
    let b = h.as_bytes();
    if b.first() == Some(&b'[') {
        // An IPv6 literal keeps its brackets: without them its last group reads as a port.
        return h.find(']').map_or(h, |close| &h[..=close]);
    }
    // A byte scan from the end: the port, if any, is the digits after the last ':'.
    let mut i = b.len();
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i > 0 && b[i - 1] == b':' {
        &h[..i - 1]
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        for ok in [
            "a.com",
            "a.com:8080",
            "a.com:",
            "[::1]",
            "[::1]:443",
            "",
            "xn--bcher-kva.example",
            "a.com.",
            "[2001:db8::1]:8443",
        ] {
            assert!(host_value_is_sound(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a,b",
            "a:99999",
            "a:123456",
            "a:b",
            "a@b",
            "a/b",
            "[::1",
            "[::1]x",
            "a b",
            "a:-1",
            "[a]]",
            "[admin.example]",
            "[::1::2]",
            "a.com..",
            "a..com",
            ".a.com",
        ] {
            assert!(!host_value_is_sound(bad.as_bytes()), "{bad}");
        }
        assert_eq!(
            absolute_authority(b"http://evil:81/x"),
            Some(&b"evil:81"[..])
        );
        assert_eq!(absolute_authority(b"http://evil?q"), Some(&b"evil"[..]));
        assert_eq!(absolute_authority(b"/x"), None);
        assert_eq!(absolute_authority(b"http:///x"), None);
    }

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("a.com:"), "a.com");
        assert_eq!(strip_port("a:b"), "a:b");
        assert_eq!(strip_port("8080"), "8080");
        assert_eq!(strip_port(":80"), "");
    }
}
