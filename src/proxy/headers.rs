//! Header policy between client and upstream: hop-by-hop removal, X-Forwarded-*, request
//! ids and trace context, and per-route edits.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;

use crate::config::Cidr;
use crate::router::HeaderEdits;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether `ip` is one of the configured trusted proxies.
pub fn is_trusted(trusted: &[Cidr], ip: Option<IpAddr>) -> bool {
    match ip {
        Some(ip) => trusted.iter().any(|c| c.contains(ip)),
        None => false,
    }
}

/// The original client address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most address in X-Forwarded-For that is not itself a trusted proxy.
pub fn client_ip(trusted: &[Cidr], peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut found = peer;
    for v in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(s) = v.to_str() else { break };
        for part in s.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    found = Some(ip);
                    if !is_trusted(trusted, Some(ip)) {
                        return found;
                    }
                }
                Err(_) => return found,
            }
        }
    }
    found
}

/// Removes hop-by-hop headers, including any named in `Connection`. For protocol upgrades
/// (WebSocket) `Upgrade` and `Connection: upgrade` are kept so the upgrade reaches the
/// upstream.
pub fn strip_hop_by_hop_request(req: &mut RequestHeader, upgrade: bool) {
    // Most requests carry no hop-by-hop header at all: one pass to find out is far cheaper
    // than seven removals (each touches two maps in pingora's case-preserving header).
    if !req.headers.keys().any(is_hop_by_hop_name) {
        if upgrade {
            let _ = req.insert_header("Connection", HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(&req.headers);
    for n in named {
        if upgrade && n == header::UPGRADE {
            continue;
        }
        req.remove_header(&n);
    }
    req.remove_header(&KEEP_ALIVE);
    req.remove_header(&PROXY_CONNECTION);
    req.remove_header(&header::TE);
    req.remove_header(&header::TRAILER);
    req.remove_header(&header::PROXY_AUTHORIZATION);
    if upgrade {
        let _ = req.insert_header(header::CONNECTION, "upgrade");
    } else {
        req.remove_header(&header::CONNECTION);
        req.remove_header(&header::UPGRADE);
    }
}

/// Same for a response; a `101 Switching Protocols` keeps its upgrade headers.
pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    if !resp.headers.keys().any(is_hop_by_hop_name) {
        return;
    }
    let upgrade = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    for n in connection_tokens(&resp.headers) {
        if upgrade && n == header::UPGRADE {
            continue;
        }
        resp.remove_header(&n);
    }
    resp.remove_header(&KEEP_ALIVE);
    resp.remove_header(&PROXY_CONNECTION);
    resp.remove_header(&header::TRAILER);
    resp.remove_header(&header::PROXY_AUTHENTICATE);
    if !upgrade {
        resp.remove_header(&header::CONNECTION);
        resp.remove_header(&header::UPGRADE);
    }
}

/// Headers that only describe one connection.
fn is_hop_by_hop_name(n: &HeaderName) -> bool {
    n == header::CONNECTION
        || n == header::UPGRADE
        || n == header::TE
        || n == header::TRAILER
        || n == header::PROXY_AUTHORIZATION
        || n == header::PROXY_AUTHENTICATE
        || n == KEEP_ALIVE
        || n == PROXY_CONNECTION
}

fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for t in s.split(',') {
                let t = t.trim();
                if t.is_empty()
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Sets X-Forwarded-For/-Proto/-Host. Incoming values are kept only from trusted proxies.
pub fn set_forwarded(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    trusted: bool,
    tls: bool,
    host: Option<&str>,
) {
    let mut peer_s = String::with_capacity(40);
    if let Some(p) = peer {
        push_ip(&mut peer_s, p);
    }
    let xff = if trusted {
        let prior: Vec<&str> = req
            .headers
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
    // Static, title-cased names: pingora keeps header case, and a `&'static str` name costs
    // no copy.
    if req.headers.contains_key(&X_FORWARDED_FOR) {
        req.remove_header(&X_FORWARDED_FOR);
    }
    if let Ok(v) = HeaderValue::try_from(xff) {
        if !v.is_empty() {
            let _ = req.insert_header("X-Forwarded-For", v);
        }
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        let _ = req.insert_header("X-Forwarded-Proto", proto);
    }
    if !(trusted && req.headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => {
                let _ = req.insert_header("X-Forwarded-Host", h);
            }
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }
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

/// Applies per-route header edits to a request.
pub fn edit_request(req: &mut RequestHeader, edits: &HeaderEdits) {
    for n in &edits.remove {
        req.remove_header(n);
    }
    for (n, v) in &edits.set {
        let _ = req.insert_header(n.clone(), v.clone());
    }
    for (n, v) in &edits.add {
        let _ = req.append_header(n.clone(), v.clone());
    }
}

/// Applies per-route header edits to a response.
pub fn edit_response(resp: &mut ResponseHeader, edits: &HeaderEdits) {
    for n in &edits.remove {
        resp.remove_header(n);
    }
    for (n, v) in &edits.set {
        let _ = resp.insert_header(n.clone(), v.clone());
    }
    for (n, v) in &edits.add {
        let _ = resp.append_header(n.clone(), v.clone());
    }
}

/// The request's host without port: `:authority` for HTTP/2, else the Host header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = req
        .uri
        .host()
        .or_else(|| req.headers.get(header::HOST).and_then(|v| v.to_str().ok()))?;
    Some(strip_port(raw))
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map_or(h, |(a, _)| &a[1..]);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

/// A header value from a string that is known to be valid (hex ids).
pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn strips_hop_by_hop() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("connection", "keep-alive, x-secret")
            .unwrap();
        req.insert_header("x-secret", "1").unwrap();
        req.insert_header("keep-alive", "timeout=5").unwrap();
        req.insert_header("te", "trailers").unwrap();
        req.insert_header("upgrade", "h2c").unwrap();
        req.insert_header("x-keep", "1").unwrap();
        strip_hop_by_hop_request(&mut req, false);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(!req.headers.contains_key(gone), "{gone}");
        }
        assert!(req.headers.contains_key("x-keep"));
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
            Some("h"),
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
            Some("h"),
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
    fn host_without_port() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("a.com"), "a.com");
    }
}
