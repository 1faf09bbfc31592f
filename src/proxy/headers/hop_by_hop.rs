//! Hop-by-hop headers (RFC 9110 §7.6.1): the headers that describe one connection and
//! must not be passed on, removed from requests and responses in one pass each, and the
//! check that refuses a `Connection` header naming a header the gateway relies on.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

use super::forwarding::{forwarding_name, is_underscore_alias, FORWARDING};
use super::HeaderSink;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

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
/// (X-Forwarded-For/-Proto/-Host are replaced by [`super::forwarding::set_forwarded`]).
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

/// Removes every client-sent copy of the identity headers (`X-User-Id`), in every spelling
/// a server may read as the same name: any case (header names arrive lower-cased) and `_`
/// for `-` (`x_user_id`, which CGI-style servers turn into the same `HTTP_X_USER_ID`).
pub fn strip_identity_headers(req: &mut impl HeaderSink, identity: &[HeaderName]) {
    if identity.is_empty() {
        return;
    }
    let spoofed: Vec<HeaderName> = req
        .map()
        .keys()
        .filter(|n| identity.iter().any(|i| same_name(i.as_str(), n.as_str())))
        .cloned()
        .collect();
    for n in &spoofed {
        req.del(n);
    }
}

/// `a` and `b` (both lower case) name the same header when `_` is read as `-`.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (x == b'-' && y == b'_') || (x == b'_' && y == b'-'))
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

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::{RequestHeader, ResponseHeader};

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
}
