//! How values appear in a difference or a sample: short, and with secrets replaced.
//!
//! Everything a comparison keeps for people to read passes through here, so a redacted
//! field or a credential header cannot reach a sample by another road. Values are cut
//! to [`MAX_RENDERED`] bytes: a sample says what differed, it does not archive bodies.

use http::header::{HeaderMap, HeaderName, AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
use serde_json::Value;
use std::io;

use super::path::{PathSet, Progress, Segment};

/// What a redacted value or header reads as.
pub const REDACTED: &str = "[redacted]";

/// Longest rendering of one value or header, in bytes (then `…`). Enough to recognise a
/// value, small enough that 20 samples of 20 differences stay a few tens of kilobytes.
pub const MAX_RENDERED: usize = 160;

/// Headers whose values never appear in a sample or a difference, whatever the config
/// says: they carry credentials or sessions.
pub const SENSITIVE_HEADERS: [HeaderName; 4] =
    [AUTHORIZATION, COOKIE, SET_COOKIE, PROXY_AUTHORIZATION];

/// Whether a header's values are always redacted.
pub fn is_sensitive(name: &HeaderName) -> bool {
    SENSITIVE_HEADERS.contains(name)
}

/// Renders the value found at `at` (a concrete position in a body) as compact JSON, with
/// every part `redact` covers replaced by `"[redacted]"`, cut to [`MAX_RENDERED`].
pub(crate) fn value(value: &Value, at: &[Segment<'_>], redact: &PathSet) -> String {
    if redact.is_empty() {
        return bounded_json(value);
    }
    let mut stack = Vec::new();
    if redact.start(&mut stack) {
        return REDACTED.to_owned();
    }
    let mut from = 0;
    for seg in at {
        let to = stack.len();
        if redact.advance(&mut stack, from, to, seg) {
            return REDACTED.to_owned();
        }
        from = to;
    }
    if from == stack.len() {
        // No pattern reaches below this position: nothing to hide inside it.
        return bounded_json(value);
    }
    let mut copy = value.clone();
    let to = stack.len();
    redact_inside(&mut copy, redact, &mut stack, from, to);
    bounded_json(&copy)
}

fn redact_inside(
    value: &mut Value,
    redact: &PathSet,
    stack: &mut Vec<Progress>,
    from: usize,
    to: usize,
) {
    match value {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                visit(Segment::Key(k), child, redact, stack, from, to);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                visit(Segment::Index(i), child, redact, stack, from, to);
            }
        }
        _ => {}
    }
}

fn visit(
    seg: Segment<'_>,
    child: &mut Value,
    redact: &PathSet,
    stack: &mut Vec<Progress>,
    from: usize,
    to: usize,
) {
    let start = stack.len();
    if redact.advance(stack, from, to, &seg) {
        *child = Value::String(REDACTED.to_owned());
    } else if stack.len() > start {
        let end = stack.len();
        redact_inside(child, redact, stack, start, end);
    }
    stack.truncate(start);
}

/// A header's values as one string (`, `-joined, as HTTP folds them), redacted when the
/// header is sensitive; `None` when the response does not have it.
pub(crate) fn header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    if is_sensitive(name) {
        return Some(REDACTED.to_owned());
    }
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        if out.len() > MAX_RENDERED {
            break;
        }
    }
    Some(cut(out))
}

/// Every header of a message, redacted and cut, at most `max` of them (a sample's view
/// of the request or a response).
pub(crate) fn headers(headers: &HeaderMap, max: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        if out.len() == max {
            break;
        }
        if let Some(v) = header(headers, name) {
            out.push((name.as_str().to_owned(), v));
        }
    }
    out
}

/// Cuts a string to [`MAX_RENDERED`] bytes on a character boundary, marking the cut.
pub(crate) fn cut(mut s: String) -> String {
    if s.len() > MAX_RENDERED {
        let mut end = MAX_RENDERED;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Compact JSON, serialized only as far as [`MAX_RENDERED`] (a large subtree is not
/// written out in full just to be cut).
fn bounded_json(value: &Value) -> String {
    let mut w = Bounded(Vec::new());
    // The writer refuses past the limit; that error only means "cut here".
    let _ = serde_json::to_writer(&mut w, value);
    cut(String::from_utf8_lossy(&w.0).into_owned())
}

struct Bounded(Vec<u8>);

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // One byte over the limit, so `cut` sees that there was more.
        let room = (MAX_RENDERED + 1).saturating_sub(self.0.len());
        if room == 0 {
            return Err(io::Error::other("rendering limit"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::path::PathPattern;
    use serde_json::json;

    fn set(paths: &[&str]) -> PathSet {
        PathSet::new(
            paths
                .iter()
                .map(|p| PathPattern::parse(p).unwrap())
                .collect(),
        )
    }

    #[test]
    fn redacts_inside_a_rendered_subtree() {
        let card = json!({"number": "4111111111111111", "brand": "visa"});
        let r = set(&["$.card.number"]);
        let out = value(&card, &[Segment::Key("card")], &r);
        assert!(!out.contains("4111"), "{out}");
        assert!(out.contains(r#""number":"[redacted]""#), "{out}");
        assert!(out.contains("visa"), "{out}");
        // At the redacted field itself.
        let out = value(
            &json!("4111111111111111"),
            &[Segment::Key("card"), Segment::Key("number")],
            &r,
        );
        assert_eq!(out, REDACTED);
        // Through wildcards and from the root.
        let body = json!({"cards": [{"number": "1"}, {"number": "2", "x": 1}]});
        let out = value(&body, &[], &set(&["$.cards[*].number"]));
        assert_eq!(
            out,
            r#"{"cards":[{"number":"[redacted]"},{"number":"[redacted]","x":1}]}"#
        );
    }

    #[test]
    fn cuts_long_values() {
        let long = Value::String("x".repeat(10_000));
        let out = value(&long, &[], &PathSet::default());
        assert!(out.len() <= MAX_RENDERED + '…'.len_utf8());
        assert!(out.ends_with('…'));
        assert_eq!(
            cut("é".repeat(100)).chars().filter(|&c| c == 'é').count(),
            80
        );
    }

    #[test]
    fn sensitive_headers_never_show() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer secret".parse().unwrap());
        h.append(SET_COOKIE, "sid=secret".parse().unwrap());
        h.insert("proxy-authorization", "Basic secret".parse().unwrap());
        h.insert(COOKIE, "sid=secret".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        let all = headers(&h, 10);
        assert_eq!(all.len(), 5);
        for (name, v) in &all {
            if name != "x-a" {
                assert_eq!(v, REDACTED, "{name}");
            }
        }
        assert!(all.contains(&("x-a".into(), "1, 2".into())));
        assert_eq!(header(&h, &HeaderName::from_static("x-b")), None);
        assert_eq!(headers(&h, 2).len(), 2);
    }
}
