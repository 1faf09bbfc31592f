//! Forwarding headers: which peers are believed (`trusted_proxies`), the client's address,
//! `X-Forwarded-For`/`-Proto`/`-Host` as the upstream gets them, and the other forwarding
//! headers (`Forwarded`, `X-Real-IP`...) that only a trusted proxy may send. Their removal
//! from other peers happens in the one hop-by-hop pass ([`super::hop_by_hop`]); this
//! module says which names they are.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use pingora_http::RequestHeader;
use std::net::IpAddr;

use super::{HeaderSink, X_REQUEST_ID};
use crate::config::Cidr;
use crate::http_syntax::host::{absolute_authority, request_host, strip_port};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `ip` is one of the configured trusted proxies.
pub fn is_trusted(trusted: &[Cidr], ip: Option<IpAddr>) -> bool {
    match ip {
        Some(ip) => trusted.iter().any(|c| c.contains(ip)),
        None => false,
    }
}

/// The original client address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most address in X-Forwarded-For that is not itself a trusted proxy.
///
/// Entries may carry a port (`203.0.113.7:5555`, `[2001:db8::7]:443`, as some load
/// balancers write them) or brackets. An entry that is no address at all (`unknown`, an
/// obfuscated name, an empty item) where the walk needs one means the client cannot be
/// known: `None`, never the trusted proxy's own address (an allow list naming the
/// proxies' network would otherwise admit every client behind them).
pub fn client_ip(trusted: &[Cidr], peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut found = peer;
    for v in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let s = v.to_str().ok()?;
        for part in s.rsplit(',') {
            let ip = forwarded_ip(part)?;
            found = Some(ip);
            if !is_trusted(trusted, found) {
                return found;
            }
        }
    }
    found
}

/// One X-Forwarded-For entry as an address: `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`;
/// an IPv4-mapped IPv6 address as the IPv4 address it carries.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    let ip = if let Some(rest) = e.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?
    } else if let Ok(ip) = e.parse::<IpAddr>() {
        ip
    } else {
        // `1.2.3.4:5555` (an IPv6 address without brackets has several colons and parsed
        // above, or is not an address).
        let (host, port) = e.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?
    };
    Some(ip.to_canonical())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Forwarding headers besides X-Forwarded-For/-Proto/-Host that backends trust: only
/// trusted proxies may send them.
pub(super) static FORWARDING: [HeaderName; 9] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Whether `n` is a forwarding or request-id header spelled with `_` for `-`
/// (`X_Forwarded_For`, `X_Real_IP`). CGI, WSGI, Rack and PHP read both spellings as one
/// variable, so such a header from a client would stand in for the one the gateway sets
/// or strips. Always removed, from every peer.
pub(super) fn is_underscore_alias(n: &str) -> bool {
    // Every such name starts with `x_` or `true_`: most names are ruled out by two bytes.
    let b = n.as_bytes();
    let candidate = match b.first() {
        Some(b'x') => b.get(1) == Some(&b'_') || (b.get(1) == Some(&b'-') && b.contains(&b'_')),
        Some(b't') => b.contains(&b'_'),
        _ => false,
    };
    if !candidate {
        return false;
    }
    let dashed = n.replace('_', "-");
    [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
    ]
    .into_iter()
    .chain(FORWARDING.iter())
    .any(|p| p.as_str() == dashed)
}

/// Whether `n` is one of [`FORWARDING`] (by its first byte first: most names are not).
pub(super) fn forwarding_name(n: &str) -> bool {
    match n.as_bytes().first() {
        Some(b'x') => n.starts_with("x-") && FORWARDING[1..].iter().any(|f| f.as_str() == n),
        Some(b'f') => n == "forwarded",
        Some(b't') => n == "true-client-ip",
        _ => false,
    }
}

/// Sets X-Forwarded-For/-Proto/-Host. Incoming values are kept only from trusted proxies.
pub fn set_forwarded(
    req: &mut impl HeaderSink,
    peer: Option<IpAddr>,
    trusted: bool,
    tls: bool,
    host: Option<HeaderValue>,
) {
    let mut peer_s = String::with_capacity(40);
    if let Some(p) = peer {
        push_ip(&mut peer_s, p);
    }
    let xff = if trusted {
        let prior: Vec<&str> = req
            .map()
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            peer_s
        } else {
            format!("{}, {peer_s}", prior.join(", "))
        }
    } else {
        peer_s
    };
    match HeaderValue::try_from(xff) {
        Ok(v) if !v.is_empty() => req.put(&X_FORWARDED_FOR, "X-Forwarded-For", v),
        _ => req.del(&X_FORWARDED_FOR),
    }
    if !(trusted && req.map().contains_key(&X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        req.put(&X_FORWARDED_PROTO, "X-Forwarded-Proto", proto);
    }
    if !(trusted && req.map().contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => req.put(&X_FORWARDED_HOST, "X-Forwarded-Host", h),
            None => req.del(&X_FORWARDED_HOST),
        }
    }
}

/// [`request_host`] as a header value for X-Forwarded-Host: the Host header's own value
/// (no copy) when it carries no port.
pub fn forwarded_host(req: &RequestHeader) -> Option<HeaderValue> {
    if req.uri.host().is_none() {
        if let Some(v) = req.headers.get(header::HOST) {
            let s = v.to_str().ok()?;
            let host = strip_port(s);
            return if host.is_empty() {
                None
            } else if host.len() == s.len() {
                Some(v.clone())
            } else {
                HeaderValue::from_str(host).ok()
            };
        }
    }
    request_host(req)
        // An HTTP/1.0 absolute-form request may carry its host only in the target.
        .or_else(|| {
            absolute_authority(req.raw_path())
                .and_then(|a| std::str::from_utf8(a).ok())
                .map(strip_port)
        })
        .and_then(|h| HeaderValue::from_str(h).ok())
}

/// Writes an IP address; IPv4 without the general formatting machinery (it is on every
/// request, and `Display` for `Ipv4Addr` costs over a thousand instructions).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                let o = *octet;
                if o >= 100 {
                    out.push((b'0' + o / 100) as char);
                }
                if o >= 10 {
                    out.push((b'0' + (o / 10) % 10) as char);
                }
                out.push((b'0' + o % 10) as char);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_entries_with_ports_brackets_or_garbage() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_ip(" 203.0.113.7 "), ip("203.0.113.7"));
        assert_eq!(forwarded_ip("203.0.113.7:5555"), ip("203.0.113.7"));
        assert_eq!(forwarded_ip("2001:db8::7"), ip("2001:db8::7"));
        assert_eq!(forwarded_ip("[2001:db8::7]"), ip("2001:db8::7"));
        assert_eq!(forwarded_ip("[2001:db8::7]:443"), ip("2001:db8::7"));
        assert_eq!(forwarded_ip("::ffff:10.1.2.3"), ip("10.1.2.3"));
        for bad in [
            "unknown",
            "_hidden",
            "",
            "1.2.3.4:",
            "1.2.3.4:port",
            "[::1",
            "[::1]x",
            "[1.2.3.4]",
        ] {
            assert_eq!(forwarded_ip(bad), None, "{bad:?}");
        }
        // Behind a trusted proxy, an entry that is no address makes the client unknown
        // rather than the proxy itself.
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy = ip("10.0.0.5");
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.1, unknown"),
        );
        assert_eq!(client_ip(&trusted, proxy, &h), None);
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.1:6000"),
        );
        assert_eq!(client_ip(&trusted, proxy, &h), ip("198.51.100.1"));
    }

    #[test]
    fn client_ip_walks_trusted_hops() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("1.2.3.4, 10.0.0.5"),
        );
        let peer = Some("10.0.0.9".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, peer, &h),
            Some("1.2.3.4".parse().unwrap())
        );
        let untrusted_peer = Some("8.8.8.8".parse().unwrap());
        assert_eq!(client_ip(&trusted, untrusted_peer, &h), untrusted_peer);
    }

    #[test]
    fn forwarded_headers_trust_rules() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        set_forwarded(
            &mut req,
            Some("127.0.0.1".parse().unwrap()),
            false,
            false,
            Some(HeaderValue::from_static("h")),
        );
        assert_eq!(req.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert_eq!(req.headers["x-forwarded-host"], "h");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        set_forwarded(
            &mut req,
            Some("127.0.0.1".parse().unwrap()),
            true,
            false,
            Some(HeaderValue::from_static("h")),
        );
        assert_eq!(req.headers["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn ip_formatting_matches_display() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.255.9", "::1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn underscore_spellings_of_the_gateways_headers_are_aliases() {
        for alias in [
            "x_forwarded_for",
            "x_real_ip",
            "true_client_ip",
            "x_original_url",
            "x-forwarded_host",
            "x_request_id",
        ] {
            assert!(is_underscore_alias(alias), "{alias}");
        }
        for other in [
            "x_custom",
            "x-forwarded-for",
            "accept",
            "te",
            "x_forwarded_forx",
            "trace_id",
        ] {
            assert!(!is_underscore_alias(other), "{other}");
        }
    }
}
