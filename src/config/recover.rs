//! Deserializing one section of routes.toml while collecting every error in it.
//!
//! serde stops at the first unknown key or wrong type in a table. To report them all, the
//! offending entry is removed from the parsed document and deserialization is tried again,
//! a bounded number of times. Positions come from the spans of the original document, so
//! they point into the file as written. This module only reports problems that serde sees;
//! the checks on values live in `config::compile`.

use std::ops::Range;
use toml::de::{DeArray, DeValue, ValueDeserializer};
use toml::Spanned;

use super::diag::{did_you_mean, Diagnostics};

/// How many errors one section may report before the rest of it is given up on. Each retry
/// removes one entry, so this also bounds the work on a pathological file.
const MAX_ERRORS_PER_SECTION: usize = 64;

/// An entry removed from the document because serde refused it.
struct Removed {
    /// Dotted path from the section's root, e.g. `timeouts.read` or `instances[1]`.
    path: String,
    /// The entry's own key (empty for an array element).
    key: String,
    /// Span of the table the entry was in.
    table: Range<usize>,
}

/// The outcome of deserializing one section.
pub enum Outcome<T> {
    /// The section deserialized, possibly after dropping entries that had errors (those
    /// errors are recorded).
    Parsed(T),
    /// The section could not be deserialized at all; its errors are recorded.
    Failed,
}

/// Deserializes `value` as `T`, recording every unknown key and type error at its own
/// position under `key` (the section's dotted name).
pub fn deserialize_all<'i, T: serde::Deserialize<'i>>(
    d: &mut Diagnostics<'_>,
    mut value: Spanned<DeValue<'i>>,
    key: &str,
) -> Outcome<T> {
    let mut removed: Vec<Removed> = Vec::new();
    // Entries are removed as errors are found, so indices in the working copy shift: paths
    // are named as in the section as written.
    // The section as written, copied only once it has an error (most have none).
    let mut original: Option<Spanned<DeValue<'i>>> = None;
    for _ in 0..MAX_ERRORS_PER_SECTION {
        let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => return Outcome::Parsed(v),
            Err(e) => e,
        };
        let original = original.get_or_insert_with(|| value.clone());
        let span = err.span().unwrap_or_else(|| value.span());
        if is_follow_on(&err, &span, &removed) {
            return Outcome::Failed;
        }
        match remove_offending(&mut value, &span) {
            Some(mut r) => {
                if let Some(path) = locate(original, &span) {
                    r.path = path;
                }
                let full = if r.path.starts_with('[') {
                    format!("{key}{}", r.path)
                } else {
                    format!("{key}.{}", r.path)
                };
                d.toml_error(&err, &full, type_hint(&r.key, err.message()), span);
                removed.push(r);
            }
            None => {
                d.toml_error(&err, key, None, span);
                return Outcome::Failed;
            }
        }
    }
    Outcome::Failed
}

/// "missing field `service`" after `service` (or a misspelling of it, `servcie`) was
/// removed from the same table is a consequence of the error already reported.
fn is_follow_on(err: &toml::de::Error, span: &Range<usize>, removed: &[Removed]) -> bool {
    let Some(field) = err
        .message()
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return false;
    };
    removed.iter().any(|r| {
        r.table == *span && (r.key == field || did_you_mean(&r.key, [field].into_iter()).is_some())
    })
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// One step of the path to an entry: a table's key or an array's index.
enum Step<'i> {
    Key(Spanned<toml::de::DeString<'i>>),
    Index(usize),
}

/// The path to the innermost entry of `value` whose key or value holds `target`. A table
/// written with a `[header]` has the header's span, not its body's, so a table's entries
/// are searched whether or not its own span holds the target.
fn find<'i>(value: &Spanned<DeValue<'i>>, target: &Range<usize>) -> Option<Vec<Step<'i>>> {
    // `v` holds the target: deeper if one of its entries does, else `v` itself.
    let inside = |v: &Spanned<DeValue<'i>>, step: Step<'i>| {
        let container = matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        if container && v.span() != *target {
            if let Some(mut inner) = find(v, target) {
                inner.insert(0, step);
                return Some(inner);
            }
        }
        contains(&v.span(), target).then(|| vec![step])
    };
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            if contains(&k.span(), target) {
                return Some(vec![Step::Key(k.clone())]);
            }
            inside(v, Step::Key(k.clone()))
        }),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| inside(v, Step::Index(i))),
        _ => None,
    }
}

/// `timeouts.read`, `instances[1]`, `[0].name`.
fn path_text(steps: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k.get_ref()),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k.get_ref());
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes the innermost entry of `value` whose key or value holds `target`. `None` when
/// the error is about `value` itself (a missing field, or a wrong type for the whole
/// section), which nothing inside can fix.
fn remove_offending(value: &mut Spanned<DeValue<'_>>, target: &Range<usize>) -> Option<Removed> {
    let steps = find(value, target)?;
    let path = path_text(&steps);
    let (last, parents) = steps.split_last()?;
    let mut table = value;
    for step in parents {
        table = match (table.get_mut(), step) {
            (DeValue::Table(t), Step::Key(k)) => t.get_mut(k)?,
            (DeValue::Array(a), Step::Index(i)) => a.as_mut().get_mut(*i)?,
            _ => return None,
        };
    }
    let table_span = table.span();
    let key = match (table.get_mut(), last) {
        (DeValue::Table(t), Step::Key(k)) => {
            t.remove(k);
            k.get_ref().to_string()
        }
        (DeValue::Array(a), Step::Index(i)) => {
            let mut kept = DeArray::new();
            for (j, v) in std::mem::replace(a, DeArray::new()).into_iter().enumerate() {
                if j != *i {
                    kept.push(v);
                }
            }
            *a = kept;
            String::new()
        }
        _ => return None,
    };
    Some(Removed {
        path,
        key,
        table: table_span,
    })
}

/// The path of the entry [`remove_offending`] would remove, in `value` as it is (the
/// section as written, for the index of an array element).
pub fn locate(value: &Spanned<DeValue<'_>>, target: &Range<usize>) -> Option<String> {
    find(value, target).map(|steps| path_text(&steps))
}

/// Keys whose values are durations, for a hint when one is written as a number.
fn is_duration_key(key: &str) -> bool {
    matches!(
        key,
        "grace_period"
            | "connect"
            | "read"
            | "total"
            | "interval"
            | "timeout"
            | "window"
            | "open_for"
    ) || key.ends_with("_timeout")
        || key.ends_with("_ttl")
        || key.ends_with("_time")
}

/// A hint for a type error, from the key's name and serde's message.
fn type_hint(key: &str, message: &str) -> Option<String> {
    if !message.starts_with("invalid type") {
        return None;
    }
    if is_duration_key(key) {
        return Some("durations are strings with a unit, such as \"10s\" or \"250ms\"".into());
    }
    if message.contains("expected a sequence") {
        return Some(format!(
            "`{key}` is a list: write it in brackets, e.g. [\"...\"], even for one entry"
        ));
    }
    None
}
