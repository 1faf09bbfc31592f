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
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Where header edits go: a pingora request or response header (through its
/// case-preserving API, which keeps a second map of original spellings in step), or a
/// plain [`HeaderMap`] of a header that no longer keeps spellings (one map, no name
/// parsing, no allocation for a static name). See `preserve_header_case`.
pub trait HeaderSink {
    fn map(&self) -> &HeaderMap;
    /// Replaces every value of a header the gateway itself sets; `title` is its spelling
    /// when case is kept.
    fn put(&mut self, name: &HeaderName, title: &'static str, value: HeaderValue);
    /// Replaces every value of a configured header.
    fn put_named(&mut self, name: &HeaderName, value: HeaderValue);
    fn add(&mut self, name: &HeaderName, value: HeaderValue);
    fn del(&mut self, name: &HeaderName);
    /// Makes room for `additional` more headers in one step, where the map allows it.
    /// pingora sizes a parsed map for exactly the headers it read, so without this each
    /// header the gateway adds can make the map grow (and rehash) again.
    fn reserve(&mut self, additional: usize);
}

impl HeaderSink for HeaderMap {
    fn map(&self) -> &HeaderMap {
        self
    }
    fn put(&mut self, name: &HeaderName, _title: &'static str, value: HeaderValue) {
        self.insert(name.clone(), value);
    }
    fn put_named(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }
    fn add(&mut self, name: &HeaderName, value: HeaderValue) {
        self.append(name.clone(), value);
    }
    fn del(&mut self, name: &HeaderName) {
        self.remove(name);
    }
    fn reserve(&mut self, additional: usize) {
        HeaderMap::reserve(self, additional);
    }
}

macro_rules! pingora_sink {
    ($t:ty) => {
        impl HeaderSink for $t {
            fn map(&self) -> &HeaderMap {
                &self.headers
            }
            fn put(&mut self, _name: &HeaderName, title: &'static str, value: HeaderValue) {
                let _ = self.insert_header(title, value);
            }
            fn put_named(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = self.insert_header(name.clone(), value);
            }
            fn add(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = self.append_header(name.clone(), value);
            }
            fn del(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            // pingora's header types offer no way to reserve (pingora 0.9.1).
            fn reserve(&mut self, _additional: usize) {}
        }
    };
}
pingora_sink!(RequestHeader);
pingora_sink!(ResponseHeader);

/// Whether the request target is origin-form (`/path?query`), the only form a header
/// rebuilt from its parts (see [`without_case_request`]) sends unchanged.
pub fn is_origin_form(req: &RequestHeader) -> bool {
    req.uri.authority().is_none()
        && req
            .uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path())
}

/// Runs `edit` on the header's map after dropping pingora's record of original header
/// spellings: names then go out in canonical form (Title-Case for standard names,
/// lowercase otherwise), which HTTP defines as equivalent.
pub fn without_case_request(req: &mut RequestHeader, edit: impl FnOnce(&mut HeaderMap)) {
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, empty).into();
    edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
}

/// The same for a response (its reason phrase becomes the canonical one for the status).
pub fn without_case_response(resp: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap)) {
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, empty).into();
    edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
}

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

/// Removes hop-by-hop headers from the upstream request (RFC 9110 §7.6.1): every header
/// named in `Connection`, and `Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`,
/// `Trailer`, `Upgrade`, `HTTP2-Settings`, `Proxy-Authorization`, `Proxy-Authenticate`.
/// A WebSocket upgrade (`websocket`) keeps `Upgrade` and gets `Connection: upgrade`; any
/// other upgrade is forwarded as a plain request. With `Transfer-Encoding` (only `chunked`
/// gets this far) a `Content-Length` is dropped: the chunked framing is what the body has.
///
/// This is the gateway's only pass: pingora's own (ten lookups per request whether or
/// not such headers exist) is switched off per peer, see `upstream::make_peer`. The
/// `Connection` nominations pingora would refuse are refused earlier, in
/// [`connection_is_sound`].
///
/// From a peer that is not a trusted proxy (`untrusted`) the other forwarding headers a
/// backend may believe go too: `Forwarded`, `X-Real-IP`, `X-Client-IP`, `True-Client-IP`,
/// `X-Forwarded-Port`, `-Prefix`, `-Server`, `X-Original-URL`, `X-Rewrite-URL`
/// (X-Forwarded-For/-Proto/-Host are replaced by [`set_forwarded`]).
pub fn strip_hop_by_hop_request(req: &mut impl HeaderSink, websocket: bool, untrusted: bool) {
    // Most requests carry no hop-by-hop header at all: one pass over the names finds out.
    let mut present = 0u16;
    for n in req.map().keys() {
        present |= hop_by_hop_bit(n);
    }
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        for n in connection_tokens(req.map()) {
            if !(websocket && n == header::UPGRADE) {
                req.del(&n);
            }
        }
    }
    if present & TRANSFER_ENCODING_BIT != 0 {
        req.del(&header::CONTENT_LENGTH);
    }
    if untrusted && present & FORWARDING_BIT != 0 {
        for name in &FORWARDING {
            req.del(name);
        }
    }
    if present & ALIAS_BIT != 0 {
        let aliases: Vec<HeaderName> = req
            .map()
            .keys()
            .filter(|n| is_underscore_alias(n.as_str()))
            .cloned()
            .collect();
        for n in &aliases {
            req.del(n);
        }
    }
    for &(bit, name) in &HOP_BY_HOP {
        let kept = websocket && bit == UPGRADE_BIT;
        if present & bit != 0 && !kept {
            req.del(name);
        }
    }
    if websocket {
        req.put(
            &header::CONNECTION,
            "Connection",
            HeaderValue::from_static("upgrade"),
        );
    }
}

/// Whether a `Connection` header can be honoured (RFC 9110 §7.6.1). Refused, as pingora
/// refuses them: more than nine options, an option that is not a `token` (for instance a
/// quoted `"X-Forwarded-For"` that slips past a name check), a pseudo-header, or one that
/// names `Host` or an `X-Forwarded-*` header, which a client must not be able to make a
/// proxy drop.
pub fn connection_is_sound(headers: &HeaderMap) -> bool {
    let mut count = 0;
    for v in headers.get_all(header::CONNECTION) {
        for t in v.as_bytes().split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.is_empty() {
                continue;
            }
            count += 1;
            if count > 9 || !t.iter().all(|&b| is_tchar(b)) {
                return false;
            }
            if NOT_NOMINABLE.iter().any(|p| t.eq_ignore_ascii_case(p)) {
                return false;
            }
        }
    }
    true
}

/// Headers a `Connection` option may not name.
const NOT_NOMINABLE: [&[u8]; 6] = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
];

/// A `tchar` (RFC 9110 §5.6.2), the bytes of a `token`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Same for a response; a `101 Switching Protocols` (`switching`) keeps its upgrade
/// headers. `connection_rewritten`: the downstream is HTTP/1, where pingora replaces
/// `Connection` with its own keep-alive decision anyway, so a `Connection` that names no
/// other header (the usual `keep-alive` from an upstream) is simply dropped: one removal,
/// which also leaves pingora room to add its own without growing the header tables.
pub fn strip_hop_by_hop_response(
    resp: &mut impl HeaderSink,
    switching: bool,
    connection_rewritten: bool,
) {
    let mut present = 0u16;
    for n in resp.map().keys() {
        present |= hop_by_hop_bit(n);
    }
    if present & RESPONSE_BITS == 0 {
        return;
    }
    let tokens = if present & CONNECTION_BIT != 0 {
        connection_tokens(resp.map())
    } else {
        Vec::new()
    };
    if present & RESPONSE_BITS == CONNECTION_BIT && connection_rewritten && tokens.is_empty() {
        resp.del(&header::CONNECTION);
        return;
    }
    for n in tokens {
        if switching && n == header::UPGRADE {
            continue;
        }
        resp.del(&n);
    }
    for &(bit, name) in &HOP_BY_HOP[..RESPONSE_SET] {
        let kept = switching && (bit == CONNECTION_BIT || bit == UPGRADE_BIT);
        if present & bit != 0 && !kept {
            resp.del(name);
        }
    }
}

const CONNECTION_BIT: u16 = 1;
const UPGRADE_BIT: u16 = 2;
const TRANSFER_ENCODING_BIT: u16 = 256;
/// Any of [`FORWARDING`].
const FORWARDING_BIT: u16 = 512;
/// A name with underscores that spells one of the gateway's own headers
/// ([`is_underscore_alias`]).
const ALIAS_BIT: u16 = 1024;

/// Forwarding headers besides X-Forwarded-For/-Proto/-Host that backends trust: only
/// trusted proxies may send them.
static FORWARDING: [HeaderName; 9] = [
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

/// The hop-by-hop headers, with their bit in [`hop_by_hop_bit`]'s mask. All are removed
/// from upstream requests; the first [`RESPONSE_SET`] from responses (the others only
/// occur in requests).
static HOP_BY_HOP: [(u16, &HeaderName); 9] = [
    (CONNECTION_BIT, &header::CONNECTION),
    (UPGRADE_BIT, &header::UPGRADE),
    (4, &KEEP_ALIVE),
    (8, &PROXY_CONNECTION),
    (16, &header::TRAILER),
    (32, &header::PROXY_AUTHENTICATE),
    (64, &header::TE),
    (64, &header::PROXY_AUTHORIZATION),
    (128, &HTTP2_SETTINGS),
];
const RESPONSE_SET: usize = 6;
/// The bits of the response set.
const RESPONSE_BITS: u16 = 63;

/// A bit per hop-by-hop header name, 0 for any other name. `TE` and
/// `Proxy-Authorization` (request-only) share one bit.
fn hop_by_hop_bit(n: &HeaderName) -> u16 {
    if n == header::CONNECTION {
        CONNECTION_BIT
    } else if n == header::UPGRADE {
        UPGRADE_BIT
    } else if n == KEEP_ALIVE {
        4
    } else if n == PROXY_CONNECTION {
        8
    } else if n == header::TRAILER {
        16
    } else if n == header::PROXY_AUTHENTICATE {
        32
    } else if n == header::TE || n == header::PROXY_AUTHORIZATION {
        64
    } else if n == HTTP2_SETTINGS {
        128
    } else if n == header::TRANSFER_ENCODING {
        TRANSFER_ENCODING_BIT
    } else if forwarding_name(n.as_str()) {
        FORWARDING_BIT
    } else if is_underscore_alias(n.as_str()) {
        ALIAS_BIT
    } else {
        0
    }
}

/// Whether `n` is a forwarding or request-id header spelled with `_` for `-`
/// (`X_Forwarded_For`, `X_Real_IP`). CGI, WSGI, Rack and PHP read both spellings as one
/// variable, so such a header from a client would stand in for the one the gateway sets
/// or strips. Always removed, from every peer.
fn is_underscore_alias(n: &str) -> bool {
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
fn forwarding_name(n: &str) -> bool {
    match n.as_bytes().first() {
        Some(b'x') => n.starts_with("x-") && FORWARDING[1..].iter().any(|f| f.as_str() == n),
        Some(b'f') => n == "forwarded",
        Some(b't') => n == "true-client-ip",
        _ => false,
    }
}

fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        // The usual value names no other header.
        let raw = v.as_bytes();
        if raw.eq_ignore_ascii_case(b"keep-alive") || raw.eq_ignore_ascii_case(b"close") {
            continue;
        }
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

/// Joins several `Cookie` fields into one, separated by "; ".
pub fn join_cookies(h: &mut impl HeaderSink) {
    let mut cookies = h.map().get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in h.map().get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.put(&header::COOKIE, "Cookie", v);
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

/// Applies per-route header edits (to a request or a response).
pub fn edit(h: &mut impl HeaderSink, edits: &HeaderEdits) {
    for n in &edits.remove {
        h.del(n);
    }
    for (n, v) in &edits.set {
        h.put_named(n, v.clone());
    }
    for (n, v) in &edits.add {
        h.add(n, v.clone());
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
    request_host(req).and_then(|h| HeaderValue::from_str(h).ok())
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
    let bracketed = h.first() == Some(&b'[');
    port_ok
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') || (bracketed && b == b':')
        })
}

fn strip_port(h: &str) -> &str {
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

    fn response(headers: &[(&'static str, &'static str)], status: u16) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (n, v) in headers {
            r.append_header(*n, *v).unwrap();
        }
        r
    }

    #[test]
    fn response_hop_by_hop_handling() {
        // HTTP/1 and HTTP/2 clients: a plain `Connection: keep-alive` goes (on HTTP/1
        // pingora writes its own).
        for h1 in [true, false] {
            let mut r = response(&[("Connection", "keep-alive"), ("X-Keep", "1")], 200);
            strip_hop_by_hop_response(&mut r, false, h1);
            assert!(!r.headers.contains_key("connection"));
            assert!(r.headers.contains_key("x-keep"));
        }
        // A nominated header goes in both cases, and so do the fixed hop-by-hop ones.
        let mut r = response(
            &[
                ("Connection", "keep-alive, X-Private"),
                ("X-Private", "s"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authenticate", "Basic"),
                ("Trailer", "X-T"),
                ("X-Keep", "1"),
            ],
            200,
        );
        strip_hop_by_hop_response(&mut r, false, true);
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "proxy-authenticate",
            "trailer",
        ] {
            assert!(!r.headers.contains_key(gone), "{gone} still there");
        }
        assert!(r.headers.contains_key("x-keep"));
        // 101 keeps what the upgrade needs.
        let mut r = response(
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Keep-Alive", "x"),
            ],
            101,
        );
        strip_hop_by_hop_response(&mut r, true, true);
        assert!(r.headers.contains_key("upgrade"));
        assert!(r.headers.contains_key("connection"));
        assert!(!r.headers.contains_key("keep-alive"));
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
        strip_hop_by_hop_request(&mut req, false, true);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(!req.headers.contains_key(gone), "{gone}");
        }
        assert!(req.headers.contains_key("x-keep"));
    }

    #[test]
    fn strips_every_standard_hop_by_hop_name_and_keeps_websocket_upgrades() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in [
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Authenticate", "Basic"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("Trailer", "x-t"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade, X-Hop"),
            ("X-Hop", "1"),
        ] {
            req.append_header(n, v).unwrap();
        }
        let mut ws = req.clone();
        strip_hop_by_hop_request(&mut req, false, true);
        assert_eq!(req.headers.len(), 0, "{:?}", req.headers);
        strip_hop_by_hop_request(&mut ws, true, true);
        assert_eq!(ws.headers.get("upgrade").unwrap(), "websocket");
        assert_eq!(ws.headers.get("connection").unwrap(), "upgrade");
        assert_eq!(ws.headers.len(), 2, "{:?}", ws.headers);
    }

    #[test]
    fn chunked_framing_wins_over_content_length() {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.append_header("Content-Length", "6").unwrap();
        req.append_header("Transfer-Encoding", "chunked").unwrap();
        strip_hop_by_hop_request(&mut req, false, true);
        assert!(!req.headers.contains_key("content-length"));
        assert_eq!(req.headers.get("transfer-encoding").unwrap(), "chunked");
    }

    #[test]
    fn connection_options_that_are_refused() {
        let ok = |v: &str| {
            let mut h = HeaderMap::new();
            h.append(header::CONNECTION, HeaderValue::from_str(v).unwrap());
            connection_is_sound(&h)
        };
        assert!(connection_is_sound(&HeaderMap::new()));
        assert!(ok("keep-alive"));
        assert!(ok("close, X-Custom, te"));
        assert!(!ok("X-Forwarded-For"));
        assert!(!ok("keep-alive, host"));
        assert!(!ok("\"x-forwarded-for\""));
        assert!(!ok(":authority"));
        assert!(ok("a,b,c,d,e,f,g,h,i"));
        assert!(!ok("a,b,c,d,e,f,g,h,i,j"));
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
    fn host_values() {
        for ok in [
            "a.com",
            "a.com:8080",
            "a.com:",
            "[::1]",
            "[::1]:443",
            "",
            "xn--bcher-kva.example",
        ] {
            assert!(host_value_is_sound(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a,b", "a:99999", "a:123456", "a:b", "a@b", "a/b", "[::1", "[::1]x", "a b", "a:-1",
            "[a]]",
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

    #[test]
    fn cookies_are_joined_into_one_line() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = HeaderMap::new();
        one.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut one);
        assert_eq!(one.get_all(header::COOKIE).iter().count(), 1);
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
