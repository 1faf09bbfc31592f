//! Path patterns (`/orders/{id}`, `/static/*`, `/orders/**`) and host patterns
//! (`api.example.com`, `*.example.com`), parsed once at config compile time.

use thiserror::Error;

/// A problem with a path or host pattern in routes.toml.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PatternError {
    #[error("a path pattern must start with `/`")]
    NotAbsolute,
    #[error("`**` is only allowed as the last segment")]
    InnerDoubleStar,
    #[error("`{0}` mixes a wildcard with literal text; a wildcard must be a whole segment")]
    PartialWildcard(String),
    #[error("parameter name `{0}` is not a valid identifier (letters, digits, `_`)")]
    BadParamName(String),
    #[error("parameter `{0}` is captured twice")]
    DuplicateParam(String),
    #[error("empty segment (`//`): requests are normalized, so it could never match")]
    EmptySegment,
    #[error("`{0}` is a dot segment: requests are normalized (`/a/../b` becomes `/b`), so it could never match")]
    DotSegment(String),
    #[error("`{0}` contains a percent-escape: requests are matched decoded, so it could never match; write the character itself")]
    PercentEscape(String),
    #[error("`{0}` has an unclosed `{{`")]
    UnclosedBrace(String),
    #[error("a host pattern has no port: the port is ignored when matching")]
    HostWithPort,
    #[error("empty host pattern")]
    EmptyHost,
    #[error("`*` in a host pattern is only allowed as the whole first label (`*.example.com`)")]
    BadHostWildcard,
    #[error("`{0}` is not ASCII: Host headers carry internationalized names in their `xn--` form; write that")]
    NonAsciiHost(String),
    #[error("a host pattern is a name, not a URL: leave out `{0}`")]
    HostWithScheme(String),
    #[error("`{0}` is not a valid host label (letters, digits, `-` and `_`, not empty, no `-` at either end)")]
    BadHostLabel(String),
    #[error(
        "`{0}` is not an IPv6 address in brackets (a zone such as `%eth0` cannot appear in a Host)"
    )]
    BadIpLiteral(String),
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this (already normalized) text.
    Literal(Box<str>),
    /// Matches any one non-empty segment; `name` is set for `{name}`, `None` for `*`.
    Param(Option<Box<str>>),
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pub segments: Vec<Segment>,
    /// Trailing `/**`: matches zero or more further segments.
    pub tail: bool,
    pub source: String,
}

/// How specific a pattern is, compared so that the most specific route wins.
/// Field order is the priority order: see docs/configuration.md "Route priority".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    pub exact: bool,
    pub literals: usize,
    pub no_tail: bool,
    pub params: usize,
}

impl PathPattern {
    pub fn parse(src: &str) -> Result<PathPattern, PatternError> {
        let Some(rest) = src.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute);
        };
        let mut segments = Vec::new();
        let mut tail = false;
        let mut names: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                if part.is_empty() && !last {
                    return Err(PatternError::EmptySegment);
                }
                if *part == "**" {
                    if !last {
                        return Err(PatternError::InnerDoubleStar);
                    }
                    tail = true;
                } else if *part == "*" {
                    segments.push(Segment::Param(None));
                } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
                {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(PatternError::BadParamName(name.to_string()));
                    }
                    if names.contains(&name) {
                        return Err(PatternError::DuplicateParam(name.to_string()));
                    }
                    names.push(name);
                    segments.push(Segment::Param(Some(name.into())));
                } else if part.starts_with('{') && !part.contains('}') {
                    return Err(PatternError::UnclosedBrace(part.to_string()));
                } else if part.contains(['*', '{', '}']) {
                    return Err(PatternError::PartialWildcard(part.to_string()));
                } else if *part == "." || *part == ".." {
                    return Err(PatternError::DotSegment(part.to_string()));
                } else if has_percent_escape(part) {
                    return Err(PatternError::PercentEscape(part.to_string()));
                } else {
                    segments.push(Segment::Literal((*part).into()));
                }
            }
        }
        Ok(PathPattern {
            segments,
            tail,
            source: src.to_string(),
        })
    }

    pub fn specificity(&self) -> Specificity {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let params = self.segments.len() - literals;
        Specificity {
            exact: !self.tail && params == 0,
            literals,
            no_tail: !self.tail,
            params,
        }
    }

    /// The names of the captures this pattern produces, in order (`**` is named `**`).
    pub fn capture_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(Some(n)) => Some(&**n),
                _ => None,
            })
            .collect();
        if self.tail {
            names.push("**");
        }
        names
    }

    /// The literal text before the first wildcard, e.g. `/orders` for `/orders/{id}`.
    pub fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Segment::Param(_) => break,
            }
        }
        out
    }

    /// Captured values for a path this pattern matches, in `capture_names` order.
    /// Returns `None` when the path does not match.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let mut out = Vec::new();
        let rest = path.strip_prefix('/')?;
        let mut rest: Option<&'p str> = Some(rest).filter(|r| !r.is_empty());
        for seg in &self.segments {
            let r = rest?;
            let (head, next) = split_segment(r);
            match seg {
                Segment::Literal(l) if **l == *head => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    if head.is_empty() {
                        return None;
                    }
                    if name.is_some() {
                        out.push(head);
                    }
                }
            }
            rest = next;
        }
        if self.tail {
            out.push(rest.unwrap_or(""));
            Some(out)
        } else if rest.is_none_or(str::is_empty) {
            // Nothing left, or only a trailing slash (not significant, see `Router::find`).
            Some(out)
        } else {
            None
        }
    }

    /// Why a path does not match, for `ficus explain`: `None` when it matches. Also returns
    /// how many leading segments matched, to rank near misses.
    pub fn mismatch(&self, path: &str) -> (usize, Option<String>) {
        let mut rest = path.strip_prefix('/').filter(|r| !r.is_empty());
        for (i, seg) in self.segments.iter().enumerate() {
            let Some(r) = rest else {
                return (
                    i,
                    Some(format!(
                        "path has {i} segment(s); pattern `{}` needs at least {}",
                        self.source,
                        self.segments.len()
                    )),
                );
            };
            let (head, next) = split_segment(r);
            match seg {
                Segment::Literal(l) if **l == *head => {}
                Segment::Literal(l) => {
                    return (
                        i,
                        Some(format!(
                            "segment {} is `{}`, pattern `{}` wants `{}`",
                            i + 1,
                            head.replace('\0', "%2F"),
                            self.source,
                            l
                        )),
                    )
                }
                Segment::Param(_) if head.is_empty() => {
                    return (
                        i,
                        Some(format!(
                            "segment {} is empty, pattern `{}` needs a value there",
                            i + 1,
                            self.source
                        )),
                    )
                }
                Segment::Param(_) => {}
            }
            rest = next;
        }
        if rest.is_some_and(|r| !r.is_empty()) && !self.tail {
            return (
                self.segments.len(),
                Some(format!(
                    "path is longer than pattern `{}` (no trailing `/**`)",
                    self.source
                )),
            );
        }
        (self.segments.len(), None)
    }
}

/// Splits `a/b/c` into (`a`, Some(`b/c`)); `a` into (`a`, None); `a/` into (`a`, Some(``)).
pub fn split_segment(rest: &str) -> (&str, Option<&str>) {
    match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// Whether a literal segment holds `%` and two hex digits, which a normalized path never does.
fn has_percent_escape(segment: &str) -> bool {
    segment
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Each dot-separated label of a host name: letters, digits, `-` and `_` (seen in
/// internal names), not empty, and no `-` at either end.
fn check_host_labels(host: &str) -> Result<(), PatternError> {
    if !host.is_ascii() {
        return Err(PatternError::NonAsciiHost(host.to_string()));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(PatternError::BadHostLabel(label.to_string()));
        }
    }
    Ok(())
}

/// A compiled host pattern. Both forms are stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Box<str>),
    /// `*.example.com` stored as `.example.com`: one or more labels before the suffix.
    Suffix(Box<str>),
}

/// `[0::1]`, `[::0001]` and `[0:0:0:0:0:0:0:1]` are one address: the canonical spelling
/// (RFC 5952, `[::1]`) of a bracketed IPv6 literal, or `None` when it is not one (a zone id
/// such as `[::1%lo]` cannot appear in a Host).
pub fn canonical_ip_literal(host: &str) -> Option<String> {
    let inner = host.strip_prefix('[')?.strip_suffix(']')?;
    let ip: std::net::Ipv6Addr = inner.parse().ok()?;
    Some(format!("[{ip}]"))
}

impl HostPattern {
    pub fn parse(src: &str) -> Result<HostPattern, PatternError> {
        let src = src.trim().to_ascii_lowercase();
        if let Some((scheme, _)) = src.split_once("://") {
            return Err(PatternError::HostWithScheme(format!("{scheme}://")));
        }
        // A fully qualified name may end in a dot; it names the same host.
        let src = src.strip_suffix('.').unwrap_or(&src);
        if src.is_empty() {
            return Err(PatternError::EmptyHost);
        }
        if let Some(suffix) = src.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(PatternError::BadHostWildcard);
            }
            check_host_labels(suffix)?;
            return Ok(HostPattern::Suffix(format!(".{suffix}").into()));
        }
        if src.contains('*') {
            return Err(PatternError::BadHostWildcard);
        }
        if src
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            && !src.contains(']')
        {
            return Err(PatternError::HostWithPort);
        }
        // A bracketed IPv6 literal is not made of labels; it is kept in its canonical
        // spelling, which requests are compared in (see [`canonical_ip_literal`]).
        if src.starts_with('[') && src.ends_with(']') {
            return canonical_ip_literal(src)
                .map(|h| HostPattern::Exact(h.into()))
                .ok_or_else(|| PatternError::BadIpLiteral(src.to_string()));
        }
        check_host_labels(src)?;
        Ok(HostPattern::Exact(src.into()))
    }

    /// `host` is the request's host without port, in any case (an IPv6 literal in its
    /// canonical spelling). A trailing dot (a fully
    /// qualified name, `shop.example.`) names the same host as without it.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }

    /// Exact hosts rank above wildcards.
    pub fn weight(&self) -> usize {
        match self {
            HostPattern::Exact(_) => 2,
            HostPattern::Suffix(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_literal_hosts_match_in_any_spelling() {
        let p = HostPattern::parse("[0:0::1]").unwrap();
        assert!(p.matches("[::1]"));
        assert_eq!(
            canonical_ip_literal("[0:0:0:0:0:0:0:1]").as_deref(),
            Some("[::1]")
        );
        assert_eq!(
            canonical_ip_literal("[::ffff:7f00:1]").as_deref(),
            Some("[::ffff:127.0.0.1]")
        );
        assert!(HostPattern::parse("[::1%lo]").is_err());
        assert!(HostPattern::parse("[nope]").is_err());
    }

    #[test]
    fn parses_patterns() {
        let p = PathPattern::parse("/orders/{id}/items/**").unwrap();
        assert_eq!(p.segments.len(), 3);
        assert!(p.tail);
        assert_eq!(p.capture_names(), vec!["id", "**"]);
        assert_eq!(p.literal_prefix(), "/orders");
        assert_eq!(
            PathPattern::parse("/a/**/b").unwrap_err(),
            PatternError::InnerDoubleStar
        );
        assert!(matches!(
            PathPattern::parse("/a/x*").unwrap_err(),
            PatternError::PartialWildcard(_)
        ));
        assert!(matches!(
            PathPattern::parse("/{a}/{a}").unwrap_err(),
            PatternError::DuplicateParam(_)
        ));
        assert_eq!(
            PathPattern::parse("a").unwrap_err(),
            PatternError::NotAbsolute
        );
        let root = PathPattern::parse("/").unwrap();
        assert!(root.segments.is_empty() && !root.tail);
    }

    #[test]
    fn captures_and_mismatch() {
        let p = PathPattern::parse("/google/{q}").unwrap();
        assert_eq!(p.captures("/google/rust"), Some(vec!["rust"]));
        assert_eq!(p.captures("/google"), None);
        assert_eq!(p.captures("/google/a/b"), None);
        // A trailing slash is not significant; an empty segment is still no value.
        assert_eq!(p.captures("/google/rust/"), Some(vec!["rust"]));
        assert!(p.mismatch("/google/rust/").1.is_none());
        assert_eq!(p.captures("/google/"), None);
        assert_eq!(p.captures("/google/a/b/"), None);
        let t = PathPattern::parse("/orders/**").unwrap();
        assert_eq!(t.captures("/orders"), Some(vec![""]));
        assert_eq!(t.captures("/orders/1/2"), Some(vec!["1/2"]));
        assert_eq!(t.captures("/ordersx"), None);
        assert!(p.mismatch("/bing/x").1.unwrap().contains("segment 1"));
        assert!(p.mismatch("/google/x").1.is_none());
        let root = PathPattern::parse("/").unwrap();
        assert_eq!(root.captures("/"), Some(vec![]));
        assert_eq!(root.captures("/a"), None);
        let all = PathPattern::parse("/**").unwrap();
        assert_eq!(all.captures("/"), Some(vec![""]));
    }

    #[test]
    fn host_patterns() {
        let h = HostPattern::parse("*.Example.com").unwrap();
        assert!(h.matches("api.example.com"));
        assert!(h.matches("a.b.EXAMPLE.com"));
        assert!(!h.matches("example.com"));
        let e = HostPattern::parse("api.example.com").unwrap();
        assert!(e.matches("API.example.com"));
        assert!(!e.matches("x.api.example.com"));
        assert!(HostPattern::parse("a.*.com").is_err());
        assert_eq!(
            HostPattern::parse("api.example.com:8080"),
            Err(PatternError::HostWithPort)
        );
        assert_eq!(
            PathPattern::parse("/x//y").unwrap_err(),
            PatternError::EmptySegment
        );
    }

    #[test]
    fn patterns_that_could_never_match_are_refused() {
        for (p, want) in [
            ("/a/../b", PatternError::DotSegment("..".into())),
            ("/a/./b", PatternError::DotSegment(".".into())),
            ("/%41", PatternError::PercentEscape("%41".into())),
            ("/{id", PatternError::UnclosedBrace("{id".into())),
        ] {
            assert_eq!(PathPattern::parse(p), Err(want), "{p}");
        }
        // Dots inside a segment and a `%` without hex digits are ordinary text.
        assert!(PathPattern::parse("/a.b/..c/100%").is_ok());
    }

    #[test]
    fn hosts_that_could_never_match_are_refused() {
        for (h, want) in [
            (
                "http://shop.example",
                PatternError::HostWithScheme("http://".into()),
            ),
            ("shop..example", PatternError::BadHostLabel(String::new())),
            ("-shop.example", PatternError::BadHostLabel("-shop".into())),
            ("*.a..b", PatternError::BadHostLabel(String::new())),
            (
                "shop.example/x",
                PatternError::BadHostLabel("example/x".into()),
            ),
            (".", PatternError::EmptyHost),
        ] {
            assert_eq!(HostPattern::parse(h), Err(want), "{h}");
        }
        for ok in [
            "[::1]",
            "10.0.0.1",
            "my_service.internal",
            "xn--bcher-kva.example",
        ] {
            assert!(HostPattern::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_trailing_dot_names_the_same_host() {
        let e = HostPattern::parse("shop.example.").unwrap();
        assert_eq!(e, HostPattern::parse("shop.example").unwrap());
        assert!(e.matches("shop.example."));
        assert!(e.matches("Shop.Example"));
        let w = HostPattern::parse("*.shop.example").unwrap();
        assert!(w.matches("api.shop.example."));
        assert!(!w.matches("shop.example."));
    }

    #[test]
    fn specificity_orders_as_documented() {
        let s = |p: &str| PathPattern::parse(p).unwrap().specificity();
        assert!(s("/orders/42") > s("/orders/{id}"));
        assert!(s("/orders/{id}") > s("/orders/**"));
        assert!(s("/orders/**") > s("/**"));
        assert!(s("/a/b/{x}") > s("/a/{x}/{y}"));
        assert!(s("/") > s("/**"));
    }
}
