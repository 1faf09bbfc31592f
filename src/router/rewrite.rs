//! Rewrite templates: `rewrite = "/search?q={q}"` compiled against a route's pattern.
//!
//! A template is split once into literal text and capture references. Captures placed in
//! the path are percent-encoded as path text; captures placed in the query are encoded as
//! query components, so a captured `a&b` cannot inject a second query parameter.

use super::normalize::{encode_path, encode_query_component};
use super::pattern::PathPattern;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RewriteError {
    #[error("a rewrite must start with `/`")]
    NotAbsolute,
    #[error("`{{{0}}}` is not captured by the route's path pattern (captures: {1})")]
    UnknownCapture(String, String),
    #[error("unclosed `{{` in rewrite")]
    Unclosed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Capture(usize),
}

/// A compiled rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    path: Vec<Part>,
    query: Option<Vec<Part>>,
    pub source: String,
}

fn parse_parts(src: &str, names: &[&str]) -> Result<Vec<Part>, RewriteError> {
    let mut parts = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or(RewriteError::Unclosed)? + open;
        let name = &rest[open + 1..close];
        let idx = names.iter().position(|n| *n == name).ok_or_else(|| {
            RewriteError::UnknownCapture(
                name.to_string(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            )
        })?;
        parts.push(Part::Capture(idx));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_string()));
    }
    Ok(parts)
}

impl Rewrite {
    pub fn parse(src: &str, pattern: &PathPattern) -> Result<Rewrite, RewriteError> {
        if !src.starts_with('/') {
            return Err(RewriteError::NotAbsolute);
        }
        let names = pattern.capture_names();
        let (path, query) = match src.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (src, None),
        };
        Ok(Rewrite {
            path: parse_parts(path, &names)?,
            query: query.map(|q| parse_parts(q, &names)).transpose()?,
            source: src.to_string(),
        })
    }

    /// Renders the wire-form target (path and query) for a request. `captures` are the
    /// route pattern's captures of the normalized path; `query` is the incoming query,
    /// appended after the template's own query.
    pub fn render(&self, captures: &[&str], query: Option<&str>) -> String {
        let mut decoded = String::new();
        for p in &self.path {
            match p {
                Part::Literal(l) => decoded.push_str(l),
                Part::Capture(i) => decoded.push_str(captures.get(*i).copied().unwrap_or("")),
            }
        }
        // A `{**}` capture of an empty tail can leave `//`; keep the target canonical.
        while let Some(pos) = decoded.find("//") {
            decoded.remove(pos);
        }
        let mut out = String::with_capacity(decoded.len() + 16);
        encode_path(&decoded, &mut out);
        let mut has_query = false;
        if let Some(q) = &self.query {
            out.push('?');
            has_query = true;
            for p in q {
                match p {
                    Part::Literal(l) => out.push_str(l),
                    Part::Capture(i) => {
                        encode_query_component(captures.get(*i).copied().unwrap_or(""), &mut out)
                    }
                }
            }
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(if has_query { '&' } else { '?' });
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_path_and_query_captures() {
        let p = PathPattern::parse("/google/{q}").unwrap();
        let r = Rewrite::parse("/search?q={q}", &p).unwrap();
        assert_eq!(r.render(&["rust lang"], None), "/search?q=rust%20lang");
        assert_eq!(
            r.render(&["a&b=c"], Some("page=2")),
            "/search?q=a%26b%3Dc&page=2"
        );
        let t = PathPattern::parse("/v1/{id}/**").unwrap();
        let r = Rewrite::parse("/v2/items/{id}/{**}", &t).unwrap();
        assert_eq!(r.render(&["7", "x/y"], None), "/v2/items/7/x/y");
        assert_eq!(r.render(&["7", ""], None), "/v2/items/7/");
        assert!(matches!(
            Rewrite::parse("/x/{nope}", &p),
            Err(RewriteError::UnknownCapture(..))
        ));
        assert_eq!(Rewrite::parse("x", &p), Err(RewriteError::NotAbsolute));
    }
}
