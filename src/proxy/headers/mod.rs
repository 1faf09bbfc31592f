//! Header policy between client and upstream. This module holds what the parts share:
//! where edits go ([`HeaderSink`]), the gateway's own header names, per-route edits,
//! cookie joining, and dropping pingora's header spellings. [`hop_by_hop`] removes
//! connection-specific headers; [`forwarding`] decides whom to believe and sets
//! X-Forwarded-*. Host syntax is [`crate::http_syntax::host`], shared with the CLI.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::router::HeaderEdits;

pub mod forwarding;
pub mod hop_by_hop;
pub mod spelling;

// The paths the proxy phases use (`headers::set_forwarded`, ...).
pub use crate::http_syntax::host::{
    absolute_authority, absolute_target_authority, host_value_is_sound, request_host,
};
pub use forwarding::{client_ip, forwarded_host, is_trusted, set_forwarded};
pub use hop_by_hop::{
    connection_is_sound, strip_hop_by_hop_request, strip_hop_by_hop_response,
    strip_identity_headers,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

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
            // A name with a static spelling costs pingora no copy of it (see `spelling`).
            fn put_named(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = match spelling::static_spelling(name) {
                    Some(s) => self.insert_header(s, value),
                    None => self.insert_header(name.clone(), value),
                };
            }
            fn add(&mut self, name: &HeaderName, value: HeaderValue) {
                let _ = match spelling::static_spelling(name) {
                    Some(s) => self.append_header(s, value),
                    None => self.append_header(name.clone(), value),
                };
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
    let mut parts = response_parts(resp);
    edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
}

/// Takes a response head apart the way [`without_case_response`] does, for edits that
/// await (the plugins' response hooks); put it back with `ResponseHeader::from(parts)`.
/// Until then `resp` is an empty `200` head.
pub fn response_parts(resp: &mut ResponseHeader) -> http::response::Parts {
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    std::mem::replace(resp, empty).into()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
