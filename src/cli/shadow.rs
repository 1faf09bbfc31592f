//! `ficus shadow ROUTE`: a shadowed route's record in the terminal, read from the running
//! gateway's `/shadow/{route}`: how many copies matched, which fields differ, the noise
//! learned, and the last mismatches field by field.

use serde_json::Value;
use std::fmt::Write;

use super::admin_client::{get_json, AdminError};

/// Mismatch samples shown (the record keeps more; `/shadow/{route}` has them all).
const SAMPLES_SHOWN: usize = 5;

/// Reads and renders the record of `route`.
pub fn shadow(admin: std::net::SocketAddr, route: &str) -> Result<String, AdminError> {
    let path = format!("/shadow/{}", encode(route));
    Ok(render(&get_json(admin, &path)?))
}

/// Percent-encodes what a route name may hold that a request target may not.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A string of the record as it may be printed: control characters (an upstream chose
/// the field names) are shown escaped, never sent to the terminal.
fn text(v: &Value, absent: &str) -> String {
    match v.as_str() {
        Some(s) => s
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
        None => absent.to_owned(),
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The record as text.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "route {}: copies go to {} ({} in flight, queue {})",
        text(&r["route"], "?"),
        text(&r["service"], "?"),
        n(&r["in_flight"]),
        n(&r["queue"])
    );
    let compared = n(&r["compared"]);
    let rate = r["match_rate"]
        .as_f64()
        .map_or("-".to_owned(), |x| format!("{:.1}%", x * 100.0));
    let _ = writeln!(
        out,
        "compared {compared}: matched {} ({rate}), mismatched {}",
        n(&r["matched"]),
        n(&r["mismatched"])
    );
    if n(&r["excused_by_noise"]) > 0 {
        let _ = writeln!(
            out,
            "  {} matched only because their differences were learned noise",
            n(&r["excused_by_noise"])
        );
    }
    let _ = writeln!(
        out,
        "not compared: {} shadow errors, {} timeouts, {} answers over the size limit, {} dropped (queue full or request body over the limit)",
        n(&r["shadow_errors"]),
        n(&r["shadow_timeouts"]),
        n(&r["too_large_answers"]),
        n(&r["dropped"])
    );
    fields(&mut out, r);
    noise(&mut out, r);
    samples(&mut out, r);
    out
}

fn fields(out: &mut String, r: &Value) {
    let Some(fields) = r["fields"].as_array().filter(|f| !f.is_empty()) else {
        let _ = writeln!(out, "no mismatching field");
        return;
    };
    let _ = writeln!(out, "mismatching fields (in how many mismatches):");
    let width = fields
        .iter()
        .map(|f| text(&f["field"], "").len())
        .max()
        .unwrap_or(0);
    for f in fields {
        let _ = writeln!(
            out,
            "  {:<width$}  {}{}",
            text(&f["field"], "?"),
            n(&f["count"]),
            if f["noise"].as_bool() == Some(true) {
                "  (learned as noise since)"
            } else {
                ""
            }
        );
    }
}

fn noise(out: &mut String, r: &Value) {
    let pairs = n(&r["noise"]["pairs"]);
    if pairs == 0 {
        return;
    }
    let learned: Vec<String> = r["noise"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f["noise"].as_bool() != Some(false))
                .map(|f| text(&f["field"], "?"))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "noise learned from {pairs} pairs of primary answers: {}",
        if learned.is_empty() {
            "none".to_owned()
        } else {
            learned.join(", ")
        }
    );
}

fn samples(out: &mut String, r: &Value) {
    let Some(samples) = r["samples"].as_array().filter(|s| !s.is_empty()) else {
        return;
    };
    let _ = writeln!(out, "last mismatches (newest first):");
    for s in samples.iter().take(SAMPLES_SHOWN) {
        let _ = writeln!(
            out,
            "  {} {}  primary {} / shadow {}",
            text(&s["method"], "?"),
            text(&s["path"], "?"),
            n(&s["primary"]["status"]),
            n(&s["shadow"]["status"])
        );
        for d in s["differences"].as_array().into_iter().flatten() {
            let side = |k: &str| text(&d[k], "(absent)");
            let _ = writeln!(
                out,
                "    {} {}: {} -> {}",
                text(&d["path"], "?"),
                text(&d["kind"], "?").replace('_', " "),
                side("primary"),
                side("shadow")
            );
        }
        if n(&s["omitted"]) > 0 {
            let _ = writeln!(out, "    ... and {} more differences", n(&s["omitted"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_record_never_reach_the_terminal() {
        let r = serde_json::json!({
            "route": "orders\u{1b}[2J",
            "fields": [{"field": "$.a\nfake line", "count": 1}],
            "samples": [{"method": "GET", "path": "/x\r", "differences": [
                {"path": "$.b\u{7}", "kind": "value_changed", "primary": "1\u{1b}]0;x", "shadow": "2"}
            ]}]
        });
        let out = render(&r);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("$.a\\nfake line"), "{out}");
        assert!(out.contains("orders\\u{1b}[2J"), "{out}");
    }
}
