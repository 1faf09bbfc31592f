//! Field paths in JSON bodies: the pattern syntax of `ignore` and `redact`, and how a
//! concrete position in a body is written out.
//!
//! Patterns are parsed and checked once, when the route table is compiled; matching walks
//! a small set of "how far along each pattern are we" states down the body, so a body is
//! never compared against a pattern string.
//!
//! Syntax (a small JSONPath subset):
//!
//! | written        | means                                             |
//! |----------------|---------------------------------------------------|
//! | `$`            | the whole body                                    |
//! | `.name`        | member `name` (letters, digits, `_`, `-`)         |
//! | `["odd key"]`  | member with any name (`'…'` quotes work too; `\"`, `\'` and `\\` escape) |
//! | `[3]`          | element 3 of an array                             |
//! | `[*]` or `.*`  | every element of an array or every member of an object |
//!
//! A pattern covers the value it names and everything under it: ignoring `$.meta`
//! ignores `$.meta.generated_at` too.

use std::fmt::{self, Write as _};
use thiserror::Error;

/// Why a path pattern was refused (`ficus check` shows these).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("a path is empty; write `$` for the whole body or `$.field`")]
    Empty,
    #[error("a path starts with `$` (the body), as in `$.{0}`")]
    NoRoot(String),
    #[error("at column {0}: `.` must be followed by a member name or `*`")]
    EmptyName(usize),
    #[error("at column {col}: `{found}` cannot start a step; a step is `.name`, `[N]`, `[*]` or `[\"name\"]`")]
    Unexpected { col: usize, found: char },
    #[error("at column {0}: `[` is not closed by `]`")]
    Unclosed(usize),
    #[error("at column {0}: the quoted name is not closed")]
    UnclosedQuote(usize),
    #[error("at column {col}: `{text}` is not an array index (a whole number, or `*`)")]
    BadIndex { col: usize, text: String },
    #[error("at column {col}: unknown escape `\\{found}` in a quoted name (only `\\\"`, `\\'` and `\\\\`)")]
    BadEscape { col: usize, found: char },
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member, by name.
    Key(String),
    /// An array element, by index.
    Index(usize),
    /// Any member or element.
    Any,
}

impl Step {
    fn matches(&self, seg: &Segment<'_>) -> bool {
        match (self, seg) {
            (Step::Any, _) => true,
            (Step::Key(k), Segment::Key(s)) => k == s,
            (Step::Index(i), Segment::Index(j)) => i == j,
            _ => false,
        }
    }
}

/// A parsed pattern such as `$.items[*].etag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    steps: Vec<Step>,
}

impl PathPattern {
    /// Parses a pattern; the error names the column (1-based) where it went wrong.
    pub fn parse(text: &str) -> Result<PathPattern, PathError> {
        let mut chars = text.char_indices().peekable();
        match chars.next() {
            None => return Err(PathError::Empty),
            Some((_, '$')) => {}
            Some(_) => return Err(PathError::NoRoot(text.trim_start_matches('.').to_owned())),
        }
        let mut steps = Vec::new();
        while let Some((at, c)) = chars.next() {
            let col = at + 1;
            match c {
                '.' => {
                    if chars.next_if(|&(_, c)| c == '*').is_some() {
                        steps.push(Step::Any);
                        continue;
                    }
                    let mut name = String::new();
                    while let Some((_, c)) = chars.next_if(|&(_, c)| is_name_char(c)) {
                        name.push(c);
                    }
                    if name.is_empty() {
                        return Err(PathError::EmptyName(col));
                    }
                    steps.push(Step::Key(name));
                }
                '[' => match chars.peek().map(|&(_, c)| c) {
                    Some(q @ ('"' | '\'')) => {
                        chars.next();
                        let mut name = String::new();
                        loop {
                            match chars.next() {
                                None => return Err(PathError::UnclosedQuote(col)),
                                Some((_, c)) if c == q => break,
                                Some((at, '\\')) => match chars.next() {
                                    Some((_, e @ ('"' | '\'' | '\\'))) => name.push(e),
                                    Some((_, e)) => {
                                        return Err(PathError::BadEscape {
                                            col: at + 1,
                                            found: e,
                                        })
                                    }
                                    None => return Err(PathError::UnclosedQuote(col)),
                                },
                                Some((_, c)) => name.push(c),
                            }
                        }
                        if chars.next_if(|&(_, c)| c == ']').is_none() {
                            return Err(PathError::Unclosed(col));
                        }
                        steps.push(Step::Key(name));
                    }
                    _ => {
                        let mut inner = String::new();
                        let mut closed = false;
                        for (_, c) in chars.by_ref() {
                            if c == ']' {
                                closed = true;
                                break;
                            }
                            inner.push(c);
                        }
                        if !closed {
                            return Err(PathError::Unclosed(col));
                        }
                        let inner_trimmed = inner.trim();
                        if inner_trimmed == "*" {
                            steps.push(Step::Any);
                        } else if let Ok(i) = inner_trimmed.parse::<usize>() {
                            steps.push(Step::Index(i));
                        } else {
                            return Err(PathError::BadIndex { col, text: inner });
                        }
                    }
                },
                found => return Err(PathError::Unexpected { col, found }),
            }
        }
        Ok(PathPattern {
            source: text.to_owned(),
            steps,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// One step of a concrete position in a body, borrowed from the parsed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// A set of patterns compiled for matching while walking a body.
///
/// Matching keeps, per level of the walk, the list of (pattern, steps matched so far)
/// pairs that can still match; a level without any is free (one length check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathSet {
    patterns: Vec<PathPattern>,
}

/// How far one pattern has matched: the pattern's index and the next step to match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pattern: u32,
    step: u32,
}

impl PathSet {
    /// A set of already-parsed patterns.
    pub fn new(patterns: Vec<PathPattern>) -> PathSet {
        PathSet { patterns }
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written.
    pub fn patterns(&self) -> impl Iterator<Item = &PathPattern> {
        self.patterns.iter()
    }

    /// Pushes the states for the root onto `stack`; true when a pattern is `$` (the
    /// whole body is covered).
    pub(crate) fn start(&self, stack: &mut Vec<Progress>) -> bool {
        let mut covered = false;
        for (i, p) in self.patterns.iter().enumerate() {
            if p.steps.is_empty() {
                covered = true;
            } else {
                stack.push(Progress {
                    pattern: i as u32,
                    step: 0,
                });
            }
        }
        covered
    }

    /// Pushes onto `stack` the states for the child `seg` of a node whose states are
    /// `stack[from..to]`; true when some pattern ends exactly at the child (the child and
    /// everything under it is covered).
    pub(crate) fn advance(
        &self,
        stack: &mut Vec<Progress>,
        from: usize,
        to: usize,
        seg: &Segment<'_>,
    ) -> bool {
        let mut covered = false;
        for i in from..to {
            let state = stack[i];
            let steps = &self.patterns[state.pattern as usize].steps;
            if steps[state.step as usize].matches(seg) {
                let next = state.step + 1;
                if next as usize == steps.len() {
                    covered = true;
                } else {
                    stack.push(Progress {
                        pattern: state.pattern,
                        step: next,
                    });
                }
            }
        }
        covered
    }

    /// Whether the concrete position `path` is covered by a pattern (it or an ancestor is
    /// named). For one-off checks; walks use `start`/`advance`.
    pub fn covers(&self, path: &[Segment<'_>]) -> bool {
        self.patterns.iter().any(|p| {
            p.steps.len() <= path.len() && p.steps.iter().zip(path).all(|(s, g)| s.matches(g))
        })
    }
}

/// Writes a concrete position: `$.items[3].etag`, or with `normalized` every index as
/// `[*]` (`$.items[*].etag`), which is the form differences are counted under.
pub fn write_path(out: &mut String, path: &[Segment<'_>], normalized: bool) {
    out.push('$');
    for seg in path {
        write_segment(out, seg, normalized);
    }
}

/// Writes one segment of a path (see [`write_path`]).
pub fn write_segment(out: &mut String, seg: &Segment<'_>, normalized: bool) {
    match seg {
        Segment::Key(k) if !k.is_empty() && k.chars().all(is_name_char) => {
            out.push('.');
            out.push_str(k);
        }
        Segment::Key(k) => {
            out.push('[');
            // A JSON string literal is also a valid quoted name in the pattern syntax
            // for every name the pattern escapes can express.
            let _ = write!(out, "{}", Quoted(k));
            out.push(']');
        }
        Segment::Index(_) if normalized => out.push_str("[*]"),
        Segment::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
    }
}

/// A name in double quotes with `"` and `\` escaped, as the pattern syntax reads it.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        PathPattern::parse(text).unwrap().steps
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(steps("$"), vec![]);
        assert_eq!(steps("$.timestamp"), vec![Step::Key("timestamp".into())]);
        assert_eq!(
            steps("$.items[*].etag"),
            vec![
                Step::Key("items".into()),
                Step::Any,
                Step::Key("etag".into())
            ]
        );
        assert_eq!(
            steps("$.a.b[2]"),
            vec![Step::Key("a".into()), Step::Key("b".into()), Step::Index(2)]
        );
        assert_eq!(steps("$.*.id"), vec![Step::Any, Step::Key("id".into())]);
        assert_eq!(
            steps(r#"$["odd key"]['it\'s'][ * ]"#),
            vec![
                Step::Key("odd key".into()),
                Step::Key("it's".into()),
                Step::Any
            ]
        );
        assert_eq!(steps(r#"$["a\"b\\c"]"#), vec![Step::Key("a\"b\\c".into())]);
        assert_eq!(steps("$.x-y_z9"), vec![Step::Key("x-y_z9".into())]);
    }

    #[test]
    fn refuses_bad_paths_with_the_column() {
        assert_eq!(PathPattern::parse(""), Err(PathError::Empty));
        assert_eq!(
            PathPattern::parse("timestamp"),
            Err(PathError::NoRoot("timestamp".into()))
        );
        assert_eq!(PathPattern::parse("$.a..b"), Err(PathError::EmptyName(4)));
        assert_eq!(PathPattern::parse("$.items["), Err(PathError::Unclosed(8)));
        assert_eq!(
            PathPattern::parse("$.items[x]"),
            Err(PathError::BadIndex {
                col: 8,
                text: "x".into()
            })
        );
        assert_eq!(
            PathPattern::parse("$.items[-1]"),
            Err(PathError::BadIndex {
                col: 8,
                text: "-1".into()
            })
        );
        assert_eq!(
            PathPattern::parse(r#"$["abc"#),
            Err(PathError::UnclosedQuote(2))
        );
        assert_eq!(
            PathPattern::parse(r#"$["abc"x"#),
            Err(PathError::Unclosed(2))
        );
        assert_eq!(
            PathPattern::parse("$ .a"),
            Err(PathError::Unexpected { col: 2, found: ' ' })
        );
        assert_eq!(
            PathPattern::parse(r#"$["a\n"]"#),
            Err(PathError::BadEscape { col: 5, found: 'n' })
        );
        // Messages are meant for `ficus check`: they name the place and the fix.
        let msg = PathPattern::parse("$.a[").unwrap_err().to_string();
        assert!(msg.contains("column 4"), "{msg}");
    }

    #[test]
    fn covers_a_named_path_and_everything_under_it() {
        let set = PathSet::new(vec![
            PathPattern::parse("$.items[*].etag").unwrap(),
            PathPattern::parse("$.meta").unwrap(),
        ]);
        let k = Segment::Key;
        assert!(set.covers(&[k("items"), Segment::Index(4), k("etag")]));
        assert!(set.covers(&[k("meta"), k("generated_at")]));
        assert!(!set.covers(&[k("items"), Segment::Index(4), k("price")]));
        assert!(!set.covers(&[k("items")]));

        // The incremental form agrees with `covers`.
        let mut stack = Vec::new();
        assert!(!set.start(&mut stack));
        let root = stack.len();
        assert!(!set.advance(&mut stack, 0, root, &k("items")));
        let items = stack.len();
        assert!(!set.advance(&mut stack, root, items, &Segment::Index(0)));
        let elem = stack.len();
        assert!(set.advance(&mut stack, items, elem, &k("etag")));
        assert!(!set.advance(&mut stack, items, elem, &k("price")));
    }

    #[test]
    fn writes_concrete_and_normalized_paths() {
        let path = [
            Segment::Key("items"),
            Segment::Index(3),
            Segment::Key("odd \"key\""),
            Segment::Key("etag"),
        ];
        let mut s = String::new();
        write_path(&mut s, &path, false);
        assert_eq!(s, r#"$.items[3]["odd \"key\""].etag"#);
        s.clear();
        write_path(&mut s, &path, true);
        assert_eq!(s, r#"$.items[*]["odd \"key\""].etag"#);
        // What is written parses back to a pattern naming the same place.
        let back = PathPattern::parse(&s).unwrap();
        assert_eq!(back.steps()[2], Step::Key("odd \"key\"".into()));
    }
}
