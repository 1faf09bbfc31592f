//! Comparing a primary response with the shadow's answer to the same request.
//!
//! Pure and bounded: no I/O, no locks, no clock. The caller (the shadow request path)
//! hands over two complete responses; [`ShadowComparison::compare`] returns the typed
//! differences. What counts as equal:
//!
//! - **Status**: equal codes.
//! - **Headers**: only the configured names, case-insensitively; all values of a name in
//!   order, byte for byte.
//! - **Body**: JSON structurally when both sides parse as JSON and at least one says it
//!   is JSON (`application/json`, `…+json`) or both look like it (first byte `{` or
//!   `[`): member order ignored, arrays by index, numbers with the relative tolerance,
//!   ignored paths skipped. Any other body, a body over `max_body`, or JSON that does not
//!   parse on one side: byte for byte, shown as length and SHA-256.
//!
//! Numbers: two integers (no fraction, no exponent) must be equal, whatever the
//! tolerance: integers are ids, counts and cents, where "close" is wrong. When either
//! side is written as a float, they match when `|a - b| <= tolerance * max(|a|, |b|)`
//! (so `1` and `1.0` always match, and `0` matches only `0`).
//!
//! Work is bounded: past `max_depth` levels a subtree is compared as a whole (exactly,
//! without tolerance or ignores); at most `max_differences` differences are kept with
//! their values (the rest are counted), and at most `max_fields` distinct fields are
//! listed.

use http::header::{HeaderMap, HeaderName, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

use super::noise::NoiseModel;
use super::path::{write_path, write_segment, PathSet, Progress, Segment};
use super::render;

/// One response as the comparison sees it: complete, already read.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The bounds on one comparison's work and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareLimits {
    /// Bodies longer than this (either side) are compared byte for byte, not parsed.
    pub max_body: usize,
    /// Levels of nesting compared field by field; deeper subtrees are compared whole.
    pub max_depth: usize,
    /// Differences kept with their values; further ones are only counted.
    pub max_differences: usize,
    /// Distinct fields listed per comparison; further ones are only counted.
    pub max_fields: usize,
}

impl Default for CompareLimits {
    fn default() -> Self {
        CompareLimits {
            // Parsing a megabyte of JSON into a tree takes a few milliseconds and a few
            // megabytes; a shadow body larger than that is rarely an API answer.
            max_body: 1024 * 1024,
            // API bodies nest a handful of levels; serde_json itself stops at 128.
            max_depth: 32,
            // A sample is for a person: twenty differences say what broke.
            max_differences: 20,
            max_fields: 64,
        }
    }
}

/// A compiled `compare = { … }`: what to compare and how (built by
/// [`CompareConfig::compile`](super::CompareConfig::compile)).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowComparison {
    pub(crate) ignore: PathSet,
    pub(crate) redact: PathSet,
    pub(crate) tolerance: f64,
    /// Each compared header with its field name (`header:NAME`), built once.
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) noise_sample: f64,
    pub limits: CompareLimits,
}

impl Default for ShadowComparison {
    /// Compares status and body exactly (no ignores, no tolerance, no headers).
    fn default() -> Self {
        ShadowComparison {
            ignore: PathSet::default(),
            redact: PathSet::default(),
            tolerance: 0.0,
            headers: Vec::new(),
            noise_sample: 0.0,
            limits: CompareLimits::default(),
        }
    }
}

/// What kind of difference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Different status codes.
    Status,
    /// A compared header differs, or is on one side only.
    Header,
    /// Bodies compared byte for byte differ.
    Body,
    /// Same JSON type, different value.
    ValueChanged,
    /// Different JSON types (`"1"` against `1`, `null` against an object).
    TypeChanged,
    /// In the primary's body, not in the shadow's.
    Missing,
    /// In the shadow's body, not in the primary's.
    Extra,
    /// Arrays of different lengths (their common elements are still compared).
    ArrayLength,
}

/// One difference, ready to show: values are rendered, cut and redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub kind: DifferenceKind,
    /// Where, with array indexes as `[*]` (`$.items[*].price`), `status`,
    /// `header:NAME` or `body`: the key differences are counted under.
    pub field: String,
    /// Where exactly (`$.items[3].price`).
    pub path: String,
    /// The primary's side (absent for `extra`, or a header the primary lacks).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub primary: Option<String>,
    /// The shadow's side.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shadow: Option<String>,
}

/// How the bodies were compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyMode {
    /// Both empty.
    Empty,
    /// Field by field.
    Json,
    /// Byte for byte: neither side is JSON.
    Bytes,
    /// Byte for byte: JSON was expected but one side does not parse.
    InvalidJson,
    /// Byte for byte: a body is larger than `max_body`.
    TooLarge,
}

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub body: BodyMode,
    /// The first `max_differences` differences.
    pub differences: Vec<Difference>,
    /// Differences found beyond those.
    pub omitted: u64,
    /// Every distinct field that differed (up to `max_fields`), in the order found.
    pub fields: Vec<String>,
    /// Differences whose field did not fit in `fields`.
    pub fields_omitted: u64,
    /// For each entry of `fields`: whether a difference there concerned the value as a
    /// whole (any kind but `array_length`). Noise learned at such a field also covers
    /// what is under it; noise learned from a length alone does not.
    #[serde(skip)]
    pub(crate) whole: Vec<bool>,
    /// Differences not counted because their field is learned noise.
    pub noise: u64,
}

impl Comparison {
    /// Whether the responses match (learned noise aside).
    pub fn matched(&self) -> bool {
        self.differences.is_empty() && self.omitted == 0
    }

    fn new(body: BodyMode) -> Self {
        Comparison {
            body,
            differences: Vec::new(),
            omitted: 0,
            fields: Vec::new(),
            fields_omitted: 0,
            whole: Vec::new(),
            noise: 0,
        }
    }
}

impl ShadowComparison {
    /// Compares `shadow` against `primary`, every difference counted.
    pub fn compare(&self, primary: &Response<'_>, shadow: &Response<'_>) -> Comparison {
        self.compare_with_noise(primary, shadow, None)
    }

    /// Compares `shadow` against `primary`; a difference whose field (or an ancestor of
    /// it) is noise in `noise` is counted in [`Comparison::noise`] instead.
    pub fn compare_with_noise(
        &self,
        primary: &Response<'_>,
        shadow: &Response<'_>,
        noise: Option<&NoiseModel>,
    ) -> Comparison {
        let mut out = Comparison::new(BodyMode::Empty);
        let mut sink = Sink {
            cmp: self,
            noise,
            out: &mut out,
        };
        if primary.status != shadow.status {
            sink.note(
                DifferenceKind::Status,
                "status",
                &[],
                || "status".to_owned(),
                || {
                    (
                        Some(primary.status.to_string()),
                        Some(shadow.status.to_string()),
                    )
                },
            );
        }
        for (name, field) in &self.headers {
            let a = primary.headers.get_all(name);
            let b = shadow.headers.get_all(name);
            if !a.iter().eq(b.iter()) {
                sink.note(
                    DifferenceKind::Header,
                    field,
                    &[],
                    || field.clone(),
                    || {
                        (
                            render::header(primary.headers, name),
                            render::header(shadow.headers, name),
                        )
                    },
                );
            }
        }
        out.body = self.compare_bodies(primary, shadow, noise, &mut out);
        out
    }

    fn compare_bodies(
        &self,
        primary: &Response<'_>,
        shadow: &Response<'_>,
        noise: Option<&NoiseModel>,
        out: &mut Comparison,
    ) -> BodyMode {
        let (a, b) = (primary.body, shadow.body);
        if a.is_empty() && b.is_empty() {
            return BodyMode::Empty;
        }
        let mode = if a.len() > self.limits.max_body || b.len() > self.limits.max_body {
            BodyMode::TooLarge
        } else if (declares_json(primary.headers) || declares_json(shadow.headers))
            || (looks_like_json(a) && looks_like_json(b))
        {
            match (
                serde_json::from_slice::<Value>(a),
                serde_json::from_slice::<Value>(b),
            ) {
                (Ok(a), Ok(b)) => {
                    let mut walk = Walk {
                        sink: Sink {
                            cmp: self,
                            noise,
                            out,
                        },
                        path: Vec::new(),
                        states: Vec::new(),
                        field: String::new(),
                        ends: Vec::new(),
                    };
                    if !self.ignore.start(&mut walk.states) {
                        let to = walk.states.len();
                        walk.node(&a, &b, 0, to);
                    }
                    return BodyMode::Json;
                }
                _ => BodyMode::InvalidJson,
            }
        } else {
            BodyMode::Bytes
        };
        if a != b {
            let mut sink = Sink {
                cmp: self,
                noise,
                out,
            };
            sink.note(
                DifferenceKind::Body,
                "body",
                &[],
                || "body".to_owned(),
                || (Some(describe_bytes(a)), Some(describe_bytes(b))),
            );
        }
        mode
    }
}

/// Where differences go: noise filtered out, fields listed, the first few kept in full.
struct Sink<'c, 'o> {
    cmp: &'c ShadowComparison,
    noise: Option<&'c NoiseModel>,
    out: &'o mut Comparison,
}

impl Sink<'_, '_> {
    /// Notes one difference at `field`; `ancestors` are the ends of `field`'s proper
    /// prefixes that are fields themselves (for learned noise on a parent). Paths and
    /// values are built only for the differences that are kept.
    fn note(
        &mut self,
        kind: DifferenceKind,
        field: &str,
        ancestors: &[usize],
        path: impl FnOnce() -> String,
        values: impl FnOnce() -> (Option<String>, Option<String>),
    ) {
        if let Some(noise) = self.noise {
            if noise.covers(field, ancestors) {
                self.out.noise += 1;
                return;
            }
        }
        let out = &mut *self.out;
        let whole = kind != DifferenceKind::ArrayLength;
        match out.fields.iter().position(|f| f == field) {
            Some(i) => out.whole[i] |= whole,
            None if out.fields.len() < self.cmp.limits.max_fields => {
                out.fields.push(field.to_owned());
                out.whole.push(whole);
            }
            None => out.fields_omitted += 1,
        }
        if out.differences.len() < self.cmp.limits.max_differences.max(1) {
            let (primary, shadow) = values();
            out.differences.push(Difference {
                kind,
                field: field.to_owned(),
                path: path(),
                primary,
                shadow,
            });
        } else {
            out.omitted += 1;
        }
    }
}

/// One side of a member or element.
enum Pair<'v> {
    Both(&'v Value, &'v Value),
    Missing(&'v Value),
    Extra(&'v Value),
}

/// The walk over two JSON trees.
struct Walk<'c, 'o, 'v> {
    sink: Sink<'c, 'o>,
    /// Where the walk is.
    path: Vec<Segment<'v>>,
    /// Ignore-pattern progress; each level's states are a range of this stack.
    states: Vec<Progress>,
    /// Scratch for the normalized field of a difference, reused.
    field: String,
    ends: Vec<usize>,
}

impl<'v> Walk<'_, '_, 'v> {
    /// Compares two values at `self.path`, whose live ignore states are
    /// `states[from..to]`.
    fn node(&mut self, a: &'v Value, b: &'v Value, from: usize, to: usize) {
        if self.path.len() >= self.sink.cmp.limits.max_depth {
            if a != b {
                self.difference(DifferenceKind::ValueChanged, Some(a), Some(b));
            }
            return;
        }
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                for (k, va) in ma {
                    let pair = match mb.get(k) {
                        Some(vb) => Pair::Both(va, vb),
                        None => Pair::Missing(va),
                    };
                    self.child(Segment::Key(k), pair, from, to);
                }
                for (k, vb) in mb {
                    if !ma.contains_key(k) {
                        self.child(Segment::Key(k), Pair::Extra(vb), from, to);
                    }
                }
            }
            (Value::Array(xa), Value::Array(xb)) => {
                for (i, (va, vb)) in xa.iter().zip(xb).enumerate() {
                    self.child(Segment::Index(i), Pair::Both(va, vb), from, to);
                }
                if xa.len() != xb.len() {
                    let (la, lb) = (Value::from(xa.len()), Value::from(xb.len()));
                    self.difference(DifferenceKind::ArrayLength, Some(&la), Some(&lb));
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                if !numbers_match(x, y, self.sink.cmp.tolerance) {
                    self.difference(DifferenceKind::ValueChanged, Some(a), Some(b));
                }
            }
            (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Null, Value::Null) => {
                if a != b {
                    self.difference(DifferenceKind::ValueChanged, Some(a), Some(b));
                }
            }
            _ => self.difference(DifferenceKind::TypeChanged, Some(a), Some(b)),
        }
    }

    fn child(&mut self, seg: Segment<'v>, pair: Pair<'v>, from: usize, to: usize) {
        let start = self.states.len();
        let ignore = &self.sink.cmp.ignore;
        if from < to && ignore.advance(&mut self.states, from, to, &seg) {
            self.states.truncate(start);
            return;
        }
        let end = self.states.len();
        self.path.push(seg);
        match pair {
            Pair::Both(a, b) => self.node(a, b, start, end),
            Pair::Missing(a) => self.difference(DifferenceKind::Missing, Some(a), None),
            Pair::Extra(b) => self.difference(DifferenceKind::Extra, None, Some(b)),
        }
        self.path.pop();
        self.states.truncate(start);
    }

    /// Notes a difference at `self.path`.
    fn difference(&mut self, kind: DifferenceKind, a: Option<&Value>, b: Option<&Value>) {
        self.field.clear();
        self.ends.clear();
        self.field.push('$');
        for seg in &self.path {
            self.ends.push(self.field.len());
            write_segment(&mut self.field, seg, true);
        }
        let path = &self.path;
        let cmp: &ShadowComparison = self.sink.cmp;
        let redact = &cmp.redact;
        self.sink.note(
            kind,
            &self.field,
            &self.ends,
            || {
                let mut s = String::new();
                write_path(&mut s, path, false);
                s
            },
            || {
                (
                    a.map(|v| render::value(v, path, redact)),
                    b.map(|v| render::value(v, path, redact)),
                )
            },
        );
    }
}

/// Numbers equal under the rules in the module doc.
fn numbers_match(x: &Number, y: &Number, tolerance: f64) -> bool {
    if x == y {
        return true;
    }
    if !x.is_f64() && !y.is_f64() {
        // Both integers: exact, and `==` above said no.
        return false;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= tolerance * a.abs().max(b.abs()),
        _ => false,
    }
}

/// `Content-Type: application/json` or any `…+json` type, parameters aside.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

/// Whether a body starts (after whitespace) like a JSON object or array.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// `N bytes, sha256 0123456789abcdef…`: enough to tell bodies apart in a sample.
fn describe_bytes(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut s = format!("{} bytes, sha256 ", body.len());
    for b in &digest[..8] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('…');
    s
}
