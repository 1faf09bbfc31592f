//! Which part of the registry a read asks for: `GET /registry?service=NAME&offset=N&limit=M`
//! (the query), and the link to the next page.
//!
//! A registry can hold thousands of instances with up to 4 KiB of description each, so no
//! read returns all of them: each service shows at most `limit` instances (at most
//! [`MAX_LIMIT`]) from `offset`, a read of every service at most [`MAX_PER_READ`] in all
//! (whichever services come first), and each service's `next` link names where its
//! instances continue. The dashboard reads `/registry/summary`, which is the first
//! [`SUMMARY_LIMIT`] instances of each service without their metadata. Nothing here touches
//! the registry itself.

use std::fmt::Write;
use thiserror::Error;

/// Instances per service when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a read may ask for: 500 instances of at most 4 KiB description each
/// keeps one page in the low megabytes.
pub const MAX_LIMIT: usize = 500;
/// The most instances one read of every service (`/registry` without `service=`) shows, all
/// services together: as many as one service's largest page, so the whole answer stays in
/// the low megabytes however many services the registry holds.
pub const MAX_PER_READ: usize = MAX_LIMIT;
/// Instances per service in `/registry/summary` (what the dashboard draws every second).
pub const SUMMARY_LIMIT: usize = 50;

/// A page of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Only this service (else every service, each from `offset`).
    pub service: Option<String>,
    pub offset: usize,
    pub limit: usize,
    /// The most instances shown across all services; once spent, the remaining services
    /// show their counts and a `next` link only.
    pub budget: usize,
    /// Whether instances carry their metadata (the summary leaves it out).
    pub metadata: bool,
}

impl Page {
    /// The first page of every service, as `/registry` without a query shows it.
    pub fn first() -> Page {
        Page {
            service: None,
            offset: 0,
            limit: DEFAULT_LIMIT,
            budget: MAX_PER_READ,
            metadata: true,
        }
    }

    /// What `/registry/summary` shows.
    pub fn summary() -> Page {
        Page {
            service: None,
            offset: 0,
            limit: SUMMARY_LIMIT,
            // Bounded per service only: it carries no metadata, and the dashboard must show
            // every service.
            budget: usize::MAX,
            metadata: false,
        }
    }

    /// The page a query string (without the `?`) asks for.
    pub fn from_query(query: Option<&str>) -> Result<Page, QueryError> {
        let mut page = Page::first();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or(QueryError::Encoding)?;
            match key {
                "service" => page.service = Some(value),
                "offset" => {
                    page.offset = value
                        .parse()
                        .map_err(|_| QueryError::Number("offset", value))?
                }
                "limit" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| QueryError::Number("limit", value.clone()))?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(QueryError::Limit(n));
                    }
                    page.limit = n;
                }
                other => return Err(QueryError::Unknown(other.to_string())),
            }
        }
        Ok(page)
    }

    /// The link to the page after this one for `service`, which showed `shown` instances
    /// from `offset` (fewer than `limit` when the read's budget ran out), when `total`
    /// instances leave one.
    pub fn next_link(&self, service: &str, shown: usize, total: usize) -> Option<String> {
        let next = self.offset.checked_add(shown)?;
        if next >= total {
            return None;
        }
        let mut link = String::from("/registry?service=");
        percent_encode(service, &mut link);
        let _ = write!(link, "&offset={next}&limit={}", self.limit);
        Some(link)
    }
}

/// Why a registry query was refused (400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("`{0}` is not a registry query parameter (use service, offset and limit)")]
    Unknown(String),
    #[error("`{0}` must be a whole number, not `{1}`")]
    Number(&'static str, String),
    #[error("`limit` must be between 1 and {MAX_LIMIT}, not {0}")]
    Limit(usize),
    #[error("the query is not valid percent-encoded UTF-8")]
    Encoding,
}

/// Decodes `%XX` escapes and `+` (a space, as forms send it).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Appends `s` with everything but unreserved characters (RFC 3986 §2.3) escaped.
pub(crate) fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_a_service_and_a_page() {
        assert_eq!(Page::from_query(None), Ok(Page::first()));
        let p = Page::from_query(Some("service=or%20ders&offset=200&limit=50")).unwrap();
        assert_eq!(p.service.as_deref(), Some("or ders"));
        assert_eq!((p.offset, p.limit, p.metadata), (200, 50, true));
        for (bad, err) in [
            ("limit=0", QueryError::Limit(0)),
            ("limit=501", QueryError::Limit(501)),
            ("offset=-1", QueryError::Number("offset", "-1".into())),
            ("limt=5", QueryError::Unknown("limt".into())),
            ("service=%zz", QueryError::Encoding),
        ] {
            assert_eq!(Page::from_query(Some(bad)), Err(err), "{bad}");
        }
    }

    #[test]
    fn next_links_stop_at_the_last_page() {
        let p = Page::from_query(Some("service=a&offset=0&limit=2")).unwrap();
        assert_eq!(
            p.next_link("a b", 2, 5).as_deref(),
            Some("/registry?service=a%20b&offset=2&limit=2")
        );
        let last = Page::from_query(Some("offset=4&limit=2")).unwrap();
        assert_eq!(last.next_link("a", 1, 5), None);
        assert_eq!(last.next_link("a", 2, 6), None);
        assert_eq!(
            last.next_link("a", 2, 7).as_deref(),
            Some("/registry?service=a&offset=6&limit=2")
        );
        // The read's budget ran out after one instance, or before any.
        assert_eq!(
            last.next_link("a", 1, 7).as_deref(),
            Some("/registry?service=a&offset=5&limit=2")
        );
        assert_eq!(
            last.next_link("a", 0, 7).as_deref(),
            Some("/registry?service=a&offset=4&limit=2")
        );
    }
}
