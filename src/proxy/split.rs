//! The side of a split route a request goes to, decided once per request (before the
//! first attempt; retries and the access log reuse it): a tester's override where the
//! route allows one, else the sticky key's side, else a random side by weight.
//!
//! Reads the request head, the verified identity and the client address; the arithmetic
//! is `router::split`'s.

use ficus_plugins::Identity;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::ctx::RequestCtx;
use crate::registry::spec::ServiceSpec;
use crate::router::{Route, Split, StickyKey};

/// How the side was chosen, for metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The route's override header named a side.
    Override,
    /// The sticky key's value placed the request.
    Sticky,
    /// No key (none configured, or the request carries none): random by weight.
    Random,
}

/// The chosen side of a split route.
#[derive(Debug, Clone, Copy)]
pub struct Chosen {
    /// Index into the split's sides.
    pub side: usize,
    pub choice: Choice,
    /// The request named a side in the override header, but not one of this split.
    pub override_ignored: bool,
}

/// What a request offers besides its headers for choosing a side.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The verified identity (set by the route's auth gate), for `claim` keys.
    pub identity: Option<&'a Identity>,
    /// The computed client address, for `client_ip` keys.
    pub client_ip: Option<IpAddr>,
    /// The config's services, to read the override's service name.
    pub services: &'a [ServiceSpec],
}

/// Chooses the side for a request; the service to send to is the side's. `ficus explain`
/// calls this too.
pub fn choose(split: &Split, req: &Request<'_>) -> Chosen {
    let mut override_ignored = false;
    let headers = req.headers;
    if let Some(name) = &split.override_header {
        if let Some(v) = headers.get(name) {
            let services = req.services;
            match split.side_named(v.as_bytes().trim_ascii(), |i| &services[i].name) {
                Some(side) => {
                    return Chosen {
                        side,
                        choice: Choice::Override,
                        override_ignored: false,
                    }
                }
                None => override_ignored = true,
            }
        }
    }
    let keyed = split
        .sticky
        .as_ref()
        .and_then(|k| with_key(k, req, |key| split.side_of_key(key)));
    let (side, choice) = match keyed {
        Some(side) => (side, Choice::Sticky),
        None => (split.random_side(), Choice::Random),
    };
    Chosen {
        side,
        choice,
        override_ignored,
    }
}

/// Calls `f` with the request's value of the sticky key, if it has one.
fn with_key<T>(key: &StickyKey, req: &Request<'_>, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let headers = req.headers;
    match key {
        StickyKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .filter_map(|kv| {
                let kv = kv.trim_ascii();
                let eq = kv.iter().position(|b| *b == b'=')?;
                Some((&kv[..eq], &kv[eq + 1..]))
            })
            .find(|(k, v)| *k == name.as_bytes() && !v.is_empty())
            .map(|(_, v)| f(v)),
        StickyKey::Header(name) => headers
            .get(name)
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|v| !v.is_empty())
            .map(f),
        StickyKey::Claim(path) => {
            let identity = req.identity?;
            match identity.claim(path)? {
                serde_json::Value::String(s) if !s.is_empty() => Some(f(s.as_bytes())),
                // Numeric subjects exist (some providers use user ids).
                serde_json::Value::Number(n) => Some(f(n.to_string().as_bytes())),
                _ => None,
            }
        }
        StickyKey::ClientIp => {
            let ip = req.client_ip?;
            Some(match ip {
                std::net::IpAddr::V4(v4) => f(&v4.octets()),
                std::net::IpAddr::V6(v6) => f(&v6.octets()),
            })
        }
    }
}

/// The index of the service a split route's request is sent to before any fallback, with
/// the choice recorded in the request context; for a plain route, its service.
pub fn primary_service(route: &Route, headers: &HeaderMap, ctx: &mut RequestCtx) -> usize {
    let Some(split) = &route.split else {
        return route.service;
    };
    let chosen = choose(
        split,
        &Request {
            headers,
            identity: ctx.plugins.state.get::<Identity>(),
            client_ip: ctx.client.ip,
            services: &ctx.runtime.config.services,
        },
    );
    ctx.upstream.split = Some(chosen);
    split.sides[chosen.side].service
}

/// Counts a split route's decision: the side, how it was chosen, a fallback away from it,
/// an ignored override.
pub fn record(ctx: &RequestCtx, route: usize) {
    let (Some(chosen), Some(Some(m))) = (ctx.upstream.split, ctx.runtime.split_metrics.get(route))
    else {
        return;
    };
    if let Some(side) = m.sides.get(chosen.side) {
        side.chosen(match chosen.choice {
            Choice::Sticky => 0,
            Choice::Random => 1,
            Choice::Override => 2,
        });
        if ctx.upstream.fell_back {
            side.fell_back.fetch_add(1, Ordering::Relaxed);
        }
    }
    if chosen.override_ignored {
        m.override_ignored.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn key_of(key: &StickyKey, headers: &HeaderMap) -> Option<Vec<u8>> {
        let req = Request {
            headers,
            identity: None,
            client_ip: None,
            services: &[],
        };
        with_key(key, &req, |k| k.to_vec())
    }

    #[test]
    fn cookie_keys_match_the_whole_name_and_need_a_value() {
        let uid = StickyKey::Cookie("uid".into());
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("xuid=wrong; theme=dark"),
        );
        assert_eq!(key_of(&uid, &h), None);
        // HTTP/2 clients may send several cookie fields.
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static(" uid=alice "),
        );
        assert_eq!(key_of(&uid, &h), Some(b"alice".to_vec()));
        let mut empty = HeaderMap::new();
        empty.insert(http::header::COOKIE, HeaderValue::from_static("uid="));
        assert_eq!(key_of(&uid, &empty), None);
    }

    #[test]
    fn header_keys_ignore_surrounding_space_and_empty_values() {
        let key = StickyKey::Header(HeaderName::from_static("x-user"));
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("  "));
        assert_eq!(key_of(&key, &h), None);
        h.insert("x-user", HeaderValue::from_static(" bob"));
        assert_eq!(key_of(&key, &h), Some(b"bob".to_vec()));
        // A claim key without a verified identity has no value.
        assert_eq!(key_of(&StickyKey::Claim("sub".into()), &h), None);
    }
}
