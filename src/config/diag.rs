//! Config diagnostics: errors and warnings that point at `file:line:column` with a hint.

use crate::router::Location;
use std::fmt;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in routes.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The dotted key the problem is about, e.g. `routes[2].service`.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.key.is_empty() {
            write!(f, " (key `{}`)", self.key)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file, turning byte spans into line and column.
pub struct Diagnostics<'a> {
    /// The file's name, shared with every compiled route's [`Location`].
    file: std::sync::Arc<str>,
    source: &'a str,
    /// Byte offset where each line starts, so a position is a binary search rather than a
    /// scan from the top of the file (a file with 20,000 routes asks for one per route).
    line_starts: Vec<usize>,
    /// Whether each line is plain ASCII: its columns are then byte offsets, found without
    /// counting (a generated file with thousands of entries on one line would otherwise
    /// make every diagnostic on it a scan of the line).
    ascii_lines: Vec<bool>,
    pub items: Vec<Diagnostic>,
}

/// A UTF-8 byte order mark: spans count it, editors do not show it.
const BOM: &str = "\u{feff}";

impl<'a> Diagnostics<'a> {
    pub fn new(file: &str, source: &'a str) -> Self {
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let ascii_lines = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = line_starts.get(i + 1).copied().unwrap_or(source.len());
                source.as_bytes()[start..end].is_ascii()
            })
            .collect();
        Diagnostics {
            file: file.into(),
            source,
            line_starts,
            ascii_lines,
            items: Vec::new(),
        }
    }

    /// 1-based line and column of a byte offset. The column counts characters, as editors
    /// do, and a leading byte order mark does not count.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let mut start = self.line_starts[line - 1];
        if start == 0 && self.source.starts_with(BOM) {
            start = BOM.len().min(offset);
        }
        if self.ascii_lines[line - 1] {
            return (line, offset - start + 1);
        }
        // Count characters by their first bytes; this cannot panic on an offset inside one.
        let col = self.source.as_bytes()[start..offset]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count();
        (line, col + 1)
    }

    pub fn location(&self, span: &Range<usize>) -> String {
        let (l, c) = self.line_col(span.start);
        format!("{}:{l}:{c}", self.file)
    }

    /// Where `span` starts, as a compiled route keeps it (the file name shared).
    pub fn place(&self, span: &Range<usize>) -> Location {
        let (line, column) = self.line_col(span.start);
        Location {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    pub fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, column) = self.line_col(span.start);
        self.items.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
            hint,
        });
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, span, key, message, None);
    }

    pub fn error_hint(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Error, span, key, message, Some(hint.into()));
    }

    pub fn warning(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Warning, span, key, message, hint);
    }

    /// Records a serde/toml error (syntax, unknown key, wrong type) with its span; `hint`
    /// is used when the message itself suggests none.
    pub fn toml_error(
        &mut self,
        err: &toml::de::Error,
        key: &str,
        hint: Option<String>,
        fallback: Range<usize>,
    ) {
        let span = err.span().unwrap_or(fallback);
        let (msg, number_hint) = plain_words(err.message().trim());
        let hint = if msg.contains("unknown field") {
            Some(unknown_field_hint(&msg))
        } else if msg.contains("did not match any variant") {
            Some("expected an address string like \"127.0.0.1:8080\" or a table with `addr`".into())
        } else {
            hint.or(number_hint.map(String::from))
        };
        self.push(Severity::Error, span, key, msg, hint);
    }

    /// Errors reported so far (a step's own errors are the growth across it).
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
}

/// serde's message with the Rust type it expected said in plain words ("expected usize"
/// → "expected a whole number, 0 or more"), and for a whole number a hint on writing one.
fn plain_words(msg: &str) -> (String, Option<&'static str>) {
    const UNSIGNED: &str = "write digits only: no quotes, sign or decimal point, e.g. `10`";
    const SIGNED: &str = "write a whole number without quotes or a decimal point, e.g. `10`";
    let Some((head, ty)) = msg.rsplit_once(", expected ") else {
        return (msg.to_string(), None);
    };
    let (words, hint) = match ty {
        "usize" | "u64" | "u128" => ("a whole number, 0 or more", Some(UNSIGNED)),
        "u32" => ("a whole number from 0 to 4294967295", Some(UNSIGNED)),
        "u16" => ("a whole number from 0 to 65535", Some(UNSIGNED)),
        "u8" => ("a whole number from 0 to 255", Some(UNSIGNED)),
        "i64" | "i32" | "isize" | "i128" => ("a whole number", Some(SIGNED)),
        "f64" | "f32" => ("a number", None),
        "a boolean" => ("`true` or `false`", None),
        _ => return (msg.to_string(), None),
    };
    let head = head.replacen("floating point", "decimal number", 1);
    (format!("{head}, expected {words}"), hint)
}

/// "unknown field `servce`, expected one of `name`, `service`" → a did-you-mean hint.
fn unknown_field_hint(msg: &str) -> String {
    let got = msg.split('`').nth(1).unwrap_or("");
    let expected: Vec<&str> = msg
        .split("expected")
        .nth(1)
        .map(|rest| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    match did_you_mean(got, expected.iter().copied()) {
        Some(s) => {
            format!("did you mean `{s}`? unknown keys are errors so a typo never goes unnoticed")
        }
        None => "remove the key or check its spelling against docs/configuration.md".to_string(),
    }
}

/// Levenshtein distance, for did-you-mean hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small edit distance, if any.
/// The name `got` most likely meant among `known`: the same but for case, else the
/// closest by [`did_you_mean`].
pub fn closest_name<'c>(got: &str, known: &[&'c str]) -> Option<&'c str> {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(got))
        .copied()
        .or_else(|| did_you_mean(got, known.iter().copied()))
}

pub fn did_you_mean<'c>(got: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    // Edit distance is quadratic; a name this long is not a typo of anything.
    const LONGEST_SUGGESTABLE: usize = 256;
    if got.len() > LONGEST_SUGGESTABLE {
        return None;
    }
    let limit = (got.len() / 3).max(2);
    candidates
        // The distance is at least the difference in length: skip hopeless ones cheaply.
        .filter(|c| c.len().abs_diff(got.len()) <= limit)
        .map(|c| (edit_distance(got, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let d = Diagnostics::new("f", "a\nbc\nd");
        assert_eq!(d.line_col(0), (1, 1));
        assert_eq!(d.line_col(3), (2, 2));
        assert_eq!(d.line_col(5), (3, 1));
    }

    #[test]
    fn columns_count_characters_and_skip_a_bom() {
        let d = Diagnostics::new("f", "x = \"\u{e9}\u{e9}\"\ny");
        // The closing quote is the 8th character but the 10th byte.
        assert_eq!(d.line_col(9), (1, 8));
        assert_eq!(d.line_col(11), (2, 1));
        let d = Diagnostics::new("f", "\u{feff}a = 1");
        assert_eq!(d.line_col(3), (1, 1));
        assert_eq!(d.line_col(7), (1, 5));
    }

    #[test]
    fn rust_type_names_become_plain_words() {
        assert_eq!(
            plain_words("invalid value: integer `-1`, expected usize"),
            (
                "invalid value: integer `-1`, expected a whole number, 0 or more".into(),
                Some("write digits only: no quotes, sign or decimal point, e.g. `10`")
            )
        );
        assert_eq!(
            plain_words("invalid type: floating point `1.5`, expected u32").0,
            "invalid type: decimal number `1.5`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_words("invalid type: string \"x\", expected a boolean").0,
            "invalid type: string \"x\", expected `true` or `false`"
        );
        let other = "invalid type: integer `1`, expected a string";
        assert_eq!(plain_words(other), (other.to_string(), None));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("order", ["orders", "monolith"].into_iter()),
            Some("orders")
        );
        assert_eq!(did_you_mean("zzz", ["orders"].into_iter()), None);
        assert!(
            unknown_field_hint("unknown field `servce`, expected one of `name`, `service`")
                .contains("`service`")
        );
    }
}
