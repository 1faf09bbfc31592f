//! What a limit counts by: `key = "client_ip"`, `"route"`, `"claim:NAME"`, `"header:NAME"`,
//! or a list combining them (`key = ["route", "client_ip"]`).
//!
//! Compiled once ([`KeySpec`]); per request it becomes a [`BucketKey`] that borrows from the
//! request (the client address, the route name, a claim of the verified identity, a header
//! value) and allocates nothing. A store turns it into its own key: the local store hashes
//! it (with a per-instance secret seed, so nobody can aim two keys at one bucket), a
//! shared store may write it out.
//!
//! A claim or header a request does not carry falls back to the client address. Every part
//! is hashed with a tag of its kind, so a claim whose value reads `192.0.2.1` never shares a
//! bucket with the client `192.0.2.1`.

use http::HeaderName;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use crate::{Identity, RequestView};

/// At most this many parts in one key (`["route", "client_ip"]` has two).
pub const MAX_PARTS: usize = 4;

/// The key kinds, for messages and did-you-mean hints.
pub const KINDS: [&str; 4] = ["client_ip", "route", "claim:NAME", "header:NAME"];

/// One part of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address the gateway computed (the TCP peer, or behind a trusted proxy
    /// the right-most untrusted `X-Forwarded-For` entry).
    ClientIp,
    /// The route's name.
    Route,
    /// A claim of the verified identity, by dotted path (`client_id`, `org.id`).
    Claim(Box<str>),
    /// A request header's value (an API key).
    Header(HeaderName),
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::ClientIp => f.write_str("client_ip"),
            KeyPart::Route => f.write_str("route"),
            KeyPart::Claim(c) => write!(f, "claim:{c}"),
            KeyPart::Header(h) => write!(f, "header:{h}"),
        }
    }
}

/// Why a key part was refused; the caller adds the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub message: String,
    pub hint: String,
}

impl KeyPart {
    /// Parses one part as written.
    pub fn parse(s: &str) -> Result<KeyPart, KeyError> {
        let err = |message: String, hint: &str| KeyError {
            message,
            hint: hint.to_string(),
        };
        match s {
            "client_ip" => return Ok(KeyPart::ClientIp),
            "route" => return Ok(KeyPart::Route),
            _ => {}
        }
        if let Some(name) = s.strip_prefix("claim:") {
            let name = name.trim();
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(err(
                    format!("`{s}` names no claim"),
                    "write the claim's name, or a dotted path into it: \"claim:client_id\", \"claim:org.id\"",
                ));
            }
            return Ok(KeyPart::Claim(name.into()));
        }
        if let Some(name) = s.strip_prefix("header:") {
            let name = name.trim();
            if name.is_empty() {
                return Err(err(
                    format!("`{s}` names no header"),
                    "write the header's name: \"header:X-Api-Key\"",
                ));
            }
            return HeaderName::from_bytes(name.as_bytes())
                .map(KeyPart::Header)
                .map_err(|_| {
                    err(
                        format!("`{name}` is not a valid header name"),
                        "header names are letters, digits and !#$%&'*+-.^_`|~",
                    )
                });
        }
        let hint = match closest_kind(s) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("the key kinds are {}", KINDS.join(", ")),
        };
        Err(KeyError {
            message: format!("`{s}` is not a rate-limit key"),
            hint,
        })
    }
}

/// The key kind nearest to a misspelling (`client-ip`, `ip`, `claims:sub`, `headers:x`).
fn closest_kind(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let head = lower.split_once(':').map_or(lower.as_str(), |(h, _)| h);
    let name = s
        .split_once(':')
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty());
    if ["ip", "addr", "client", "remote_addr", "peer"].contains(&head) {
        return Some("client_ip".into());
    }
    let (best, distance) = ["client_ip", "route", "claim", "header"]
        .into_iter()
        .map(|c| (c, edit_distance(head, c)))
        .min_by_key(|(_, d)| *d)?;
    if distance > 2 {
        return None;
    }
    Some(match (best, name) {
        ("claim" | "header", Some(n)) => format!("{best}:{n}"),
        ("claim" | "header", None) => format!("{best}:NAME"),
        _ => best.to_string(),
    })
}

/// Levenshtein distance, for hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A compiled key: one to [`MAX_PARTS`] parts, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub parts: Vec<KeyPart>,
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_char('+')?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl KeySpec {
    /// Whether a request's key needs the verified identity.
    pub fn uses_identity(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, KeyPart::Claim(_)))
    }

    /// The key of limit number `limit` for this request.
    pub fn resolve<'r>(&self, limit: usize, req: &'r RequestView<'_>) -> BucketKey<'r> {
        let identity = if self.uses_identity() {
            req.state.get::<Identity>()
        } else {
            None
        };
        let client = || match req.client_ip {
            Some(ip) => KeyValue::Ip(ip),
            None => KeyValue::NoClientIp,
        };
        let mut key = BucketKey {
            limit: limit as u8,
            parts: [KeyValue::Empty; MAX_PARTS],
        };
        for (slot, part) in key.parts.iter_mut().zip(&self.parts) {
            *slot = match part {
                KeyPart::ClientIp => client(),
                KeyPart::Route => KeyValue::Route(req.route),
                KeyPart::Claim(path) => identity
                    .and_then(|id| id.claim(path))
                    .and_then(ClaimValue::of)
                    .map_or_else(client, KeyValue::Claim),
                KeyPart::Header(name) => req
                    .headers
                    .get(name)
                    .map_or_else(client, |v| KeyValue::Header(v.as_bytes())),
            };
        }
        key
    }
}

/// A claim's value as a key: strings, numbers and booleans. Objects, arrays and `null`
/// are no key (the request falls back to its client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimValue<'r> {
    Str(&'r str),
    Number(&'r serde_json::Number),
    Bool(bool),
}

impl<'r> ClaimValue<'r> {
    fn of(v: &'r serde_json::Value) -> Option<ClaimValue<'r>> {
        match v {
            serde_json::Value::String(s) => Some(ClaimValue::Str(s)),
            serde_json::Value::Number(n) => Some(ClaimValue::Number(n)),
            serde_json::Value::Bool(b) => Some(ClaimValue::Bool(*b)),
            _ => None,
        }
    }
}

/// One part of a request's key, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue<'r> {
    /// An unused slot.
    Empty,
    Ip(IpAddr),
    /// A request on a listener without IP addresses: all such requests share a bucket.
    NoClientIp,
    Route(&'r str),
    Claim(ClaimValue<'r>),
    Header(&'r [u8]),
}

/// Tags that keep the kinds' values apart in the hash.
mod tag {
    pub const IP: u8 = 1;
    pub const NO_IP: u8 = 2;
    pub const ROUTE: u8 = 3;
    pub const CLAIM_STR: u8 = 4;
    pub const CLAIM_NUMBER: u8 = 5;
    pub const CLAIM_BOOL: u8 = 6;
    pub const HEADER: u8 = 7;
}

impl Hash for KeyValue<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            KeyValue::Empty => {}
            KeyValue::Ip(ip) => {
                h.write_u8(tag::IP);
                match ip {
                    IpAddr::V4(v4) => h.write(&v4.octets()),
                    IpAddr::V6(v6) => h.write(&v6.octets()),
                }
            }
            KeyValue::NoClientIp => h.write_u8(tag::NO_IP),
            KeyValue::Route(r) => {
                h.write_u8(tag::ROUTE);
                r.hash(h);
            }
            KeyValue::Claim(ClaimValue::Str(s)) => {
                h.write_u8(tag::CLAIM_STR);
                s.hash(h);
            }
            KeyValue::Claim(ClaimValue::Number(n)) => {
                h.write_u8(tag::CLAIM_NUMBER);
                // The number's JSON text, written straight into the hasher.
                let _ = write!(HashWriter(h), "{n}");
                h.write_u8(0xff);
            }
            KeyValue::Claim(ClaimValue::Bool(b)) => {
                h.write_u8(tag::CLAIM_BOOL);
                h.write_u8(u8::from(*b));
            }
            KeyValue::Header(v) => {
                h.write_u8(tag::HEADER);
                h.write_usize(v.len());
                h.write(v);
            }
        }
    }
}

/// Formats into a hasher without allocating.
struct HashWriter<'h, H: Hasher>(&'h mut H);

impl<H: Hasher> fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A request's key for one limit: the limit's number and the values of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketKey<'r> {
    /// The limit's index in its policy: each limit has buckets of its own.
    pub limit: u8,
    pub parts: [KeyValue<'r>; MAX_PARTS],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HeaderEdits, RequestState};
    use http::{HeaderMap, Method};
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    use std::sync::Arc;

    fn parse_all(s: &[&str]) -> KeySpec {
        KeySpec {
            parts: s.iter().map(|p| KeyPart::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn kinds_parse_and_print() {
        let k = parse_all(&["route", "client_ip", "claim:org.id", "header:X-Api-Key"]);
        assert_eq!(
            k.to_string(),
            "route+client_ip+claim:org.id+header:x-api-key"
        );
        assert!(k.uses_identity());
    }

    #[test]
    fn bad_kinds_get_hints() {
        let e = KeyPart::parse("client-ip").unwrap_err();
        assert_eq!(e.hint, "did you mean `client_ip`?");
        let e = KeyPart::parse("ip").unwrap_err();
        assert_eq!(e.hint, "did you mean `client_ip`?");
        let e = KeyPart::parse("claims:sub").unwrap_err();
        assert_eq!(e.hint, "did you mean `claim:sub`?");
        let e = KeyPart::parse("headers:X-Key").unwrap_err();
        assert_eq!(e.hint, "did you mean `header:X-Key`?");
        let e = KeyPart::parse("tenant").unwrap_err();
        assert!(e.hint.contains("client_ip, route"), "{}", e.hint);
        assert!(KeyPart::parse("claim:")
            .unwrap_err()
            .message
            .contains("names no claim"));
        assert!(KeyPart::parse("claim:a..b").is_err());
        assert!(KeyPart::parse("header: ")
            .unwrap_err()
            .message
            .contains("names no header"));
        let e = KeyPart::parse("header:X Key").unwrap_err();
        assert!(
            e.message.contains("not a valid header name"),
            "{}",
            e.message
        );
    }

    struct Req {
        headers: HeaderMap,
        state: RequestState,
        edits: HeaderEdits,
    }

    impl Req {
        fn new() -> Req {
            Req {
                headers: HeaderMap::new(),
                state: RequestState::new(),
                edits: HeaderEdits::default(),
            }
        }
        fn view(&mut self, ip: Option<&str>) -> RequestView<'_> {
            RequestView {
                method: &Method::GET,
                path: "/x",
                query: None,
                headers: &self.headers,
                client_ip: ip.map(|s| s.parse().unwrap()),
                route: "orders",
                request_id: "r",
                preflight: false,
                state: &mut self.state,
                upstream: &mut self.edits,
            }
        }
    }

    fn id(seed: &RandomState, k: &BucketKey<'_>) -> u64 {
        seed.hash_one(k)
    }

    #[test]
    fn missing_claims_and_headers_fall_back_to_the_client_ip_in_their_own_key_space() {
        let seed = RandomState::new();
        let claim = parse_all(&["claim:client_id"]);
        let ip = parse_all(&["client_ip"]);
        let header = parse_all(&["header:x-api-key"]);

        let mut anon = Req::new();
        let v = anon.view(Some("192.0.2.1"));
        let by_ip = ip.resolve(0, &v);
        assert_eq!(claim.resolve(0, &v), by_ip);
        assert_eq!(header.resolve(0, &v), by_ip);

        // A claim whose value is that address text is another bucket.
        let mut tricky = Req::new();
        let mut identity = Identity::new("corp");
        identity.claims = Arc::new(serde_json::json!({ "client_id": "192.0.2.1" }));
        tricky.state.insert(identity);
        let v = tricky.view(Some("192.0.2.1"));
        let k = claim.resolve(0, &v);
        assert_eq!(k.parts[0], KeyValue::Claim(ClaimValue::Str("192.0.2.1")));
        assert_ne!(id(&seed, &k), id(&seed, &by_ip));

        // So is a header of the same text.
        let mut h = Req::new();
        h.headers.insert("x-api-key", "192.0.2.1".parse().unwrap());
        let v = h.view(Some("192.0.2.1"));
        let hk = header.resolve(0, &v);
        assert_ne!(id(&seed, &hk), id(&seed, &by_ip));
        assert_ne!(id(&seed, &hk), id(&seed, &k));
    }

    #[test]
    fn numbers_and_booleans_are_keys_objects_are_not() {
        let seed = RandomState::new();
        let claim = parse_all(&["claim:n"]);
        let key_for = |v: serde_json::Value| {
            let mut r = Req::new();
            let mut identity = Identity::new("corp");
            identity.claims = Arc::new(serde_json::json!({ "n": v }));
            r.state.insert(identity);
            let v = r.view(Some("10.0.0.1"));
            let k = claim.resolve(0, &v);
            (id(&seed, &k), matches!(k.parts[0], KeyValue::Claim(_)))
        };
        let (n42, is_claim) = key_for(serde_json::json!(42));
        assert!(is_claim);
        assert_ne!(n42, key_for(serde_json::json!(43)).0);
        assert_ne!(n42, key_for(serde_json::json!("42")).0);
        assert!(key_for(serde_json::json!(true)).1);
        assert!(!key_for(serde_json::json!({ "a": 1 })).1);
        assert!(!key_for(serde_json::json!(null)).1);
    }

    #[test]
    fn limits_and_combined_keys_are_apart() {
        let seed = RandomState::new();
        let both = parse_all(&["route", "client_ip"]);
        let mut r = Req::new();
        let v = r.view(Some("10.0.0.1"));
        let a = both.resolve(0, &v);
        let b = both.resolve(1, &v);
        assert_ne!(id(&seed, &a), id(&seed, &b));
        let mut r2 = Req::new();
        let v2 = r2.view(Some("10.0.0.2"));
        assert_ne!(id(&seed, &a), id(&seed, &both.resolve(0, &v2)));
        let mut r3 = Req::new();
        assert_eq!(
            id(&seed, &both.resolve(0, &r3.view(Some("10.0.0.1")))),
            id(&seed, &a)
        );
        // No client address: one shared bucket, not a panic.
        let v3 = r3.view(None);
        assert_eq!(both.resolve(0, &v3).parts[1], KeyValue::NoClientIp);
    }
}
