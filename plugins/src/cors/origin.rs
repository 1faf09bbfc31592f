//! Origins for `[cors.NAME]`: the entries of `origins` (exact origins and `*.` patterns),
//! checked and compiled once, and a request's `Origin` header, parsed without allocating
//! and matched against them.
//!
//! Origins are compared as serialized origins, `scheme://host[:port]` (RFC 6454 §6.2): the
//! scheme and host without regard to ASCII case, and a scheme's default port the same as
//! no port (`https://a.com:443` is `https://a.com`). A pattern `scheme://*.suffix[:port]`
//! stands for exactly one label in front of `suffix`, with the same scheme and port:
//! `https://*.example.com` matches `https://shop.example.com`, but neither
//! `https://a.b.example.com`, `https://example.com`, `https://example.com.evil.com`,
//! `https://evilexample.com`, `http://shop.example.com` nor `https://shop.example.com:8443`.
//! This module does not decide what to answer; `settings.rs` does.

use std::fmt;
use std::net::Ipv6Addr;
use thiserror::Error;

/// The port a scheme uses when an origin names none (the special schemes of the URL
/// standard that have one): `https://a.com:443` is the origin `https://a.com`.
fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

/// `port` unless it is the scheme's default.
fn normalized_port(scheme: &str, port: Option<u16>) -> Option<u16> {
    port.filter(|p| Some(*p) != default_port(scheme))
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.` (RFC 3986 §3.1).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A byte a host name label may hold. Underscores are not valid in DNS host names, but URL
/// hosts accept them and browsers send them as written.
fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Why an `origins` entry was refused. Displayed after "origin `ENTRY` ".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OriginError {
    #[error("is empty")]
    Empty,
    #[error("has no scheme")]
    MissingScheme,
    #[error("has an invalid scheme `{0}`")]
    BadScheme(String),
    #[error("has no host")]
    MissingHost,
    #[error("ends with `/`: an origin has no path, not even `/`")]
    TrailingSlash,
    #[error("has a path: an origin is only scheme://host[:port]")]
    Path,
    #[error("has a query: an origin is only scheme://host[:port]")]
    Query,
    #[error("has a fragment: an origin is only scheme://host[:port]")]
    Fragment,
    #[error("has user information (`@`): an origin is only scheme://host[:port]")]
    Userinfo,
    #[error("has `*` where only a whole first label may be `*`")]
    Wildcard,
    #[error("would match every site under `{0}`")]
    WildcardTooBroad(String),
    #[error("has an invalid host `{0}`")]
    BadHost(String),
    #[error("has a non-ASCII host, which no browser sends")]
    NonAscii,
    #[error("has an invalid port `{0}` (a port is 1 to 65535)")]
    BadPort(String),
}

impl OriginError {
    /// What to write instead.
    pub fn hint(&self) -> &'static str {
        match self {
            OriginError::Empty | OriginError::MissingHost => {
                "write an origin like \"https://shop.example.com\""
            }
            OriginError::MissingScheme => {
                "write the scheme too: \"https://shop.example.com\" or \"https://*.example.com\""
            }
            OriginError::BadScheme(_) => "a scheme is letters, digits, `+`, `-` or `.`, starting with a letter, like https",
            OriginError::TrailingSlash
            | OriginError::Path
            | OriginError::Query
            | OriginError::Fragment
            | OriginError::Userinfo => {
                "browsers send the origin alone, like \"https://shop.example.com\" or \"http://localhost:3000\""
            }
            OriginError::Wildcard => {
                "`*` must be the whole first label: \"https://*.example.com\" (one label; list \"https://*.eu.example.com\" for deeper ones)"
            }
            OriginError::WildcardTooBroad(_) => {
                "name a registrable domain under the wildcard, like \"https://*.example.com\""
            }
            OriginError::BadHost(_) => {
                "a host is dot-separated labels of letters, digits, `-` and `_`, or an IP address (IPv6 in brackets)"
            }
            OriginError::NonAscii => "write the host in its punycode form (xn--...)",
            OriginError::BadPort(_) => "write the port as digits after the host: \"http://localhost:3000\"",
        }
    }
}

/// The host part of an [`OriginRule`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostRule {
    /// A host, in lower case (an IPv6 literal in brackets, in its canonical spelling).
    Exact(Box<str>),
    /// `*.suffix`: exactly one label before the suffix. Stored with its leading dot
    /// (`.example.com`), in lower case.
    OneLabelUnder(Box<str>),
}

/// One compiled `origins` entry other than `*` and `null`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginRule {
    /// In lower case.
    scheme: Box<str>,
    host: HostRule,
    /// `None` for the scheme's default port.
    port: Option<u16>,
    /// For an exact host: the origin as a browser serializes it (`https://app.example.com`),
    /// compared byte for byte before any parsing (the common case, cheaply).
    serialized: Option<Box<[u8]>>,
}

impl OriginRule {
    /// Parses an `origins` entry: `scheme://host[:port]` or `scheme://*.suffix[:port]`.
    pub fn parse(entry: &str) -> Result<OriginRule, OriginError> {
        if entry.is_empty() {
            return Err(OriginError::Empty);
        }
        if !entry.is_ascii() {
            return Err(OriginError::NonAscii);
        }
        let (scheme, rest) = entry.split_once("://").ok_or(OriginError::MissingScheme)?;
        if !is_scheme(scheme) {
            return Err(OriginError::BadScheme(scheme.to_string()));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        match tail.as_bytes().first() {
            None => {}
            Some(b'/') if tail == "/" => return Err(OriginError::TrailingSlash),
            Some(b'/') => return Err(OriginError::Path),
            Some(b'?') => return Err(OriginError::Query),
            Some(_) => return Err(OriginError::Fragment),
        }
        if authority.contains('@') {
            return Err(OriginError::Userinfo);
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(OriginError::MissingHost);
        }
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p).ok_or_else(|| OriginError::BadPort(p.to_string()))?),
        };
        let host = host_rule(host)?;
        let scheme = scheme.to_ascii_lowercase();
        let mut rule = OriginRule {
            port: normalized_port(&scheme, port),
            scheme: scheme.into(),
            host,
            serialized: None,
        };
        if matches!(rule.host, HostRule::Exact(_)) {
            rule.serialized = Some(rule.to_string().into_bytes().into());
        }
        Ok(rule)
    }

    /// Whether `value` is this rule's origin exactly as a browser sends it. A `true` is
    /// always right (the bytes parse to the rule's own origin); a `false` proves nothing:
    /// other spellings are judged by [`OriginRule::matches`].
    pub fn is_exactly(&self, value: &[u8]) -> bool {
        self.serialized.as_deref() == Some(value)
    }

    /// Whether the rule admits a request's origin.
    pub fn matches(&self, o: &RequestOrigin<'_>) -> bool {
        self.port == o.port
            && self.scheme.eq_ignore_ascii_case(o.scheme)
            && match &self.host {
                HostRule::Exact(h) => h.eq_ignore_ascii_case(o.host),
                HostRule::OneLabelUnder(suffix) => {
                    // The request's host is ASCII (checked when parsed), so any index is a
                    // character boundary.
                    o.host.len() > suffix.len() && {
                        let (label, tail) = o.host.split_at(o.host.len() - suffix.len());
                        tail.eq_ignore_ascii_case(suffix) && !label.contains('.')
                    }
                }
            }
    }

    /// Whether this is a `*.` pattern.
    pub fn is_pattern(&self) -> bool {
        matches!(self.host, HostRule::OneLabelUnder(_))
    }
}

impl fmt::Display for OriginRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostRule::Exact(h) => f.write_str(h)?,
            HostRule::OneLabelUnder(s) => write!(f, "*{s}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), OriginError> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err(OriginError::BadHost(authority.to_string()));
        };
        let (host, after) = authority.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err(OriginError::BadHost(authority.to_string())),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

/// A port: 1 to 5 digits, 1..=65535.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

/// The host of a config entry: a name, `*.suffix`, or a bracketed IPv6 literal.
fn host_rule(host: &str) -> Result<HostRule, OriginError> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| OriginError::BadHost(host.to_string()))?;
        // Browsers serialize an IPv6 origin in its canonical spelling, as Display writes it.
        return Ok(HostRule::Exact(format!("[{ip}]").into()));
    }
    if host.contains('*') {
        let suffix = host.strip_prefix("*.").ok_or(OriginError::Wildcard)?;
        if suffix.contains('*') {
            return Err(OriginError::Wildcard);
        }
        check_labels(suffix, host)?;
        // `*.com` would admit every .com site. (A public suffix of two labels, `*.co.uk`,
        // cannot be told from `*.example.com` without the public suffix list: documented.)
        if !suffix.contains('.') {
            return Err(OriginError::WildcardTooBroad(suffix.to_ascii_lowercase()));
        }
        return Ok(HostRule::OneLabelUnder(
            format!(".{}", suffix.to_ascii_lowercase()).into(),
        ));
    }
    check_labels(host, host)?;
    Ok(HostRule::Exact(host.to_ascii_lowercase().into()))
}

/// Every dot-separated label is non-empty and made of label bytes (a trailing dot is an
/// empty label: `https://example.com.` is another origin than the one browsers send).
fn check_labels(name: &str, whole: &str) -> Result<(), OriginError> {
    if name
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(is_label_byte))
    {
        Ok(())
    } else {
        Err(OriginError::BadHost(whole.to_string()))
    }
}

/// A request's `Origin` header, parsed (borrowed from the header value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOriginValue<'a> {
    /// `null`: an opaque origin (sandboxed frames, `file:` pages, some redirects).
    Null,
    Tuple(RequestOrigin<'a>),
}

/// A serialized origin from a request: `scheme://host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOrigin<'a> {
    pub scheme: &'a str,
    /// ASCII: letters, digits, `-`, `.`, `_`, or a bracketed IPv6 literal.
    pub host: &'a str,
    /// `None` when absent or the scheme's default.
    pub port: Option<u16>,
}

/// Parses an `Origin` header value; `None` when it is not a serialized origin (a path, a
/// query, an empty host, a bad port, a list of origins...). Allocates nothing.
pub fn parse_request_origin(value: &[u8]) -> Option<RequestOriginValue<'_>> {
    if value == b"null" {
        return Some(RequestOriginValue::Null);
    }
    let s = std::str::from_utf8(value).ok()?;
    let (scheme, authority) = s.split_once("://")?;
    if !is_scheme(scheme) || authority.is_empty() {
        return None;
    }
    let (host, port) = split_host_port(authority).ok()?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => !host.is_empty() && host.bytes().all(|b| is_label_byte(b) || b == b'.'),
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Some(RequestOriginValue::Tuple(RequestOrigin {
        scheme,
        host,
        port: normalized_port(scheme, port),
    }))
}

/// The compiled `origins` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `origins = ["*"]`: every origin, answered with `Access-Control-Allow-Origin: *`
    /// (only without credentials).
    Any,
    /// Listed origins and patterns; `null` only when listed literally.
    List { rules: Vec<OriginRule>, null: bool },
}

impl Origins {
    /// Whether a request's `Origin` value is admitted. A value that is not a serialized
    /// origin is never admitted by a list.
    pub fn admits(&self, value: &[u8]) -> bool {
        match self {
            Origins::Any => true,
            Origins::List { rules, .. } if rules.iter().any(|r| r.is_exactly(value)) => true,
            Origins::List { rules, null } => match parse_request_origin(value) {
                Some(RequestOriginValue::Null) => *null,
                Some(RequestOriginValue::Tuple(o)) => rules.iter().any(|r| r.matches(&o)),
                None => false,
            },
        }
    }
}

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origins::Any => f.write_str("*"),
            Origins::List { rules, null } => {
                let mut first = true;
                for r in rules {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{r}")?;
                }
                if *null {
                    if !first {
                        f.write_str(", ")?;
                    }
                    f.write_str("null")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Origins {
        Origins::List {
            rules: entries
                .iter()
                .map(|e| OriginRule::parse(e).unwrap())
                .collect(),
            null: false,
        }
    }

    #[test]
    fn exact_origins_compare_as_serialized_origins() {
        let o = list(&[
            "https://Shop.Example.com",
            "http://localhost:3000",
            "https://a.com:443",
        ]);
        assert!(o.admits(b"https://shop.example.com"));
        assert!(o.admits(b"HTTPS://SHOP.EXAMPLE.COM"));
        assert!(o.admits(b"https://shop.example.com:443"));
        assert!(o.admits(b"https://a.com"));
        assert!(o.admits(b"http://localhost:3000"));
        assert!(!o.admits(b"http://localhost"));
        assert!(!o.admits(b"http://localhost:3001"));
        assert!(!o.admits(b"http://shop.example.com"));
        assert!(!o.admits(b"https://shop.example.com:8443"));
        assert!(!o.admits(b"https://shop.example.com/"));
        assert!(!o.admits(b"https://shop.example.com.evil.com"));
        assert!(!o.admits(b"null"));
        assert!(!o.admits(b""));
        assert!(!o.admits(b"https://shop.example.com, https://a.com"));
    }

    #[test]
    fn a_pattern_stands_for_exactly_one_label() {
        let o = list(&["https://*.example.com"]);
        assert!(o.admits(b"https://a.example.com"));
        assert!(o.admits(b"https://A-1.Example.COM"));
        assert!(o.admits(b"https://a.example.com:443"));
        for refused in [
            "https://example.com",
            "https://.example.com",
            "https://a.b.example.com",
            "https://example.com.evil.com",
            "https://a.example.com.evil.com",
            "https://evilexample.com",
            "https://a.evilexample.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://a.example.co",
            "wss://a.example.com",
        ] {
            assert!(!o.admits(refused.as_bytes()), "{refused}");
        }
        let with_port = list(&["http://*.dev.example.com:8080"]);
        assert!(with_port.admits(b"http://x.dev.example.com:8080"));
        assert!(!with_port.admits(b"http://x.dev.example.com"));
    }

    #[test]
    fn the_exact_spelling_is_found_without_parsing_and_agrees_with_it() {
        let o = list(&[
            "https://App.Example.com:443",
            "http://127.0.0.1:8080",
            "https://*.example.com",
        ]);
        for (value, admitted) in [
            ("https://app.example.com", true),
            ("http://127.0.0.1:8080", true),
            ("https://APP.example.com", true),
            ("https://app.example.com:443", true),
            ("https://app.example.com.", false),
            ("https://app.example.co", false),
            ("http://app.example.com", false),
            ("https://b.example.com", true),
        ] {
            assert_eq!(o.admits(value.as_bytes()), admitted, "{value}");
        }
        let Origins::List { rules, .. } = &o else {
            unreachable!()
        };
        assert!(rules[0].is_exactly(b"https://app.example.com"));
        assert!(!rules[0].is_exactly(b"https://APP.example.com"));
        assert!(
            !rules[2].is_exactly(b"https://*.example.com"),
            "patterns are always parsed"
        );
    }

    #[test]
    fn null_only_when_listed() {
        let o = Origins::List {
            rules: vec![],
            null: true,
        };
        assert!(o.admits(b"null"));
        assert!(!o.admits(b"Null"));
        assert!(!list(&["https://a.com"]).admits(b"null"));
        assert!(Origins::Any.admits(b"null"));
    }

    #[test]
    fn ipv6_and_ipv4_hosts() {
        let o = list(&["http://[0:0::1]:8080", "http://127.0.0.1:5173"]);
        assert_eq!(
            OriginRule::parse("http://[0:0::1]:8080")
                .unwrap()
                .to_string(),
            "http://[::1]:8080"
        );
        assert!(o.admits(b"http://[::1]:8080"));
        assert!(o.admits(b"http://127.0.0.1:5173"));
        assert!(!o.admits(b"http://127.0.0.2:5173"));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let cases: &[(&str, OriginError)] = &[
            ("", OriginError::Empty),
            ("example.com", OriginError::MissingScheme),
            ("*.example.com", OriginError::MissingScheme),
            ("localhost:3000", OriginError::MissingScheme),
            ("1http://a.com", OriginError::BadScheme("1http".into())),
            ("https://", OriginError::MissingHost),
            ("https://:443", OriginError::MissingHost),
            ("https://a.com/", OriginError::TrailingSlash),
            ("https://a.com/app", OriginError::Path),
            ("https://a.com?x=1", OriginError::Query),
            ("https://a.com#top", OriginError::Fragment),
            ("https://u:p@a.com", OriginError::Userinfo),
            ("https://a.*.com", OriginError::Wildcard),
            ("https://*example.com", OriginError::Wildcard),
            ("https://*.*.example.com", OriginError::Wildcard),
            ("https://shop.*", OriginError::Wildcard),
            ("https://*.com", OriginError::WildcardTooBroad("com".into())),
            ("https://a..com", OriginError::BadHost("a..com".into())),
            ("https://a.com.", OriginError::BadHost("a.com.".into())),
            ("https://a b.com", OriginError::BadHost("a b.com".into())),
            ("https://[::g]", OriginError::BadHost("[::g]".into())),
            ("https://bücher.de", OriginError::NonAscii),
            ("https://a.com:", OriginError::BadPort("".into())),
            ("https://a.com:0", OriginError::BadPort("0".into())),
            ("https://a.com:65536", OriginError::BadPort("65536".into())),
            ("https://a.com:8o", OriginError::BadPort("8o".into())),
            ("https://a.com:1:2", OriginError::BadPort("1:2".into())),
        ];
        for (entry, want) in cases {
            assert_eq!(OriginRule::parse(entry).as_ref(), Err(want), "{entry}");
            assert!(!want.hint().is_empty());
        }
    }

    #[test]
    fn default_ports_are_normalized_away() {
        assert_eq!(
            OriginRule::parse("HTTPS://A.com:443").unwrap().to_string(),
            "https://a.com"
        );
        assert_eq!(
            OriginRule::parse("http://a.com:443").unwrap().to_string(),
            "http://a.com:443"
        );
        assert_eq!(
            OriginRule::parse("https://*.A.com:8443")
                .unwrap()
                .to_string(),
            "https://*.a.com:8443"
        );
    }

    #[test]
    fn request_origins_that_are_not_origins_are_refused() {
        for bad in [
            &b"https://a.com/"[..],
            b"https://a.com:0",
            b"https://a.com:99999",
            b"https://",
            b"a.com",
            b"https://a.com\xff",
            b"https://[zz]",
            b"https://a.com@b.com",
        ] {
            assert_eq!(
                parse_request_origin(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
