//! `compare = { … }` as written in a route's `shadow`, and its compile step.
//!
//! ```toml
//! shadow = { service = "orders-v2", sample = 0.25, compare = {
//!     ignore = ["$.timestamp", "$.items[*].etag"], tolerance = 0.001,
//!     headers = ["content-type"], redact = ["$.card.number"], noise_sample = 0.05 } }
//! ```
//!
//! Every problem is collected before failing, so `ficus check` lists them all at once.

use http::header::HeaderName;
use serde::Deserialize;
use thiserror::Error;

use super::compare::{CompareLimits, ShadowComparison};
use super::path::{PathError, PathPattern, PathSet};

/// `compare = { … }` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Body fields not compared (path patterns, see `docs/shadow-compare.md`).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Relative tolerance for numbers written as floats (`0.001` = 0.1 %); integers are
    /// always compared exactly.
    #[serde(default)]
    pub tolerance: f64,
    /// Response headers compared (none by default).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Body fields whose values never appear in samples.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Share of shadowed requests also sent a second time to the primary, to learn noise
    /// (0 = never).
    #[serde(default)]
    pub noise_sample: f64,
}

/// A problem in `compare = { … }`; `key` says which entry (`ignore[1]`).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CompareConfigError {
    #[error("compare.{key} `{path}`: {error}")]
    Path {
        key: String,
        path: String,
        error: PathError,
    },
    #[error(
        "compare.tolerance = {0}: a relative tolerance is between 0 and 1 (0.001 allows 0.1 %)"
    )]
    Tolerance(f64),
    #[error("compare.noise_sample = {0}: a share of requests is between 0 and 1 (0.05 = 5 %)")]
    NoiseSample(f64),
    #[error("compare.headers[{index}] `{name}` is not a header name")]
    HeaderName { index: usize, name: String },
    #[error("compare.headers lists `{0}` twice (names are case-insensitive)")]
    DuplicateHeader(String),
}

impl CompareConfig {
    /// Checks everything and builds the comparison, or returns every problem found.
    pub fn compile(&self) -> Result<ShadowComparison, Vec<CompareConfigError>> {
        let mut errors = Vec::new();
        let ignore = paths("ignore", &self.ignore, &mut errors);
        let redact = paths("redact", &self.redact, &mut errors);
        // `!(… contains …)` also refuses NaN.
        if !(0.0..1.0).contains(&self.tolerance) {
            errors.push(CompareConfigError::Tolerance(self.tolerance));
        }
        if !(0.0..=1.0).contains(&self.noise_sample) {
            errors.push(CompareConfigError::NoiseSample(self.noise_sample));
        }
        let mut headers: Vec<(HeaderName, String)> = Vec::new();
        for (index, name) in self.headers.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if headers.iter().any(|(seen, _)| *seen == h) => {
                    errors.push(CompareConfigError::DuplicateHeader(h.as_str().to_owned()))
                }
                Ok(h) => {
                    let field = format!("header:{}", h.as_str());
                    headers.push((h, field));
                }
                Err(_) => errors.push(CompareConfigError::HeaderName {
                    index,
                    name: name.clone(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ShadowComparison {
            ignore,
            redact,
            tolerance: self.tolerance,
            headers,
            noise_sample: self.noise_sample,
            limits: CompareLimits::default(),
        })
    }
}

fn paths(key: &str, written: &[String], errors: &mut Vec<CompareConfigError>) -> PathSet {
    let mut set = Vec::new();
    for (i, path) in written.iter().enumerate() {
        match PathPattern::parse(path) {
            Ok(p) => set.push(p),
            Err(error) => errors.push(CompareConfigError::Path {
                key: format!("{key}[{i}]"),
                path: path.clone(),
                error,
            }),
        }
    }
    PathSet::new(set)
}

impl ShadowComparison {
    /// The share of shadowed requests also sent to the primary a second time to learn
    /// noise (0 to 1).
    pub fn noise_sample(&self) -> f64 {
        self.noise_sample
    }

    /// The relative tolerance for float-valued numbers.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The compared headers.
    pub fn headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.headers.iter().map(|(h, _)| h)
    }

    /// The ignore patterns as written.
    pub fn ignored(&self) -> impl Iterator<Item = &str> {
        self.ignore.patterns().map(PathPattern::as_str)
    }

    /// The redact patterns as written.
    pub fn redacted(&self) -> impl Iterator<Item = &str> {
        self.redact.patterns().map(PathPattern::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_the_documented_example() {
        let cfg: CompareConfig = toml::from_str(
            r#"ignore = ["$.timestamp", "$.items[*].etag"]
               tolerance = 0.001
               headers = ["Content-Type"]
               redact = ["$.card.number"]
               noise_sample = 0.05"#,
        )
        .unwrap();
        let c = cfg.compile().unwrap();
        assert_eq!(c.tolerance(), 0.001);
        assert_eq!(c.noise_sample(), 0.05);
        assert_eq!(
            c.headers().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["content-type"]
        );
        assert_eq!(
            c.ignored().collect::<Vec<_>>(),
            ["$.timestamp", "$.items[*].etag"]
        );
        assert_eq!(c.redacted().collect::<Vec<_>>(), ["$.card.number"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<CompareConfig>("ignore_paths = []").unwrap_err();
        assert!(err.to_string().contains("ignore_paths"), "{err}");
    }

    #[test]
    fn collects_every_problem() {
        let cfg = CompareConfig {
            ignore: vec!["$.ok".into(), "timestamp".into(), "$.a[".into()],
            tolerance: 1.5,
            headers: vec!["ETag".into(), "etag".into(), "bad header".into()],
            redact: vec!["$.card..number".into()],
            noise_sample: f64::NAN,
        };
        let errors = cfg.compile().unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 7, "{text:#?}");
        assert!(text[0].starts_with("compare.ignore[1] `timestamp`: a path starts with `$`"));
        assert!(text[1].starts_with("compare.ignore[2] `$.a[`: at column 4"));
        assert!(text[2].starts_with("compare.redact[0] `$.card..number`: at column 7"));
        assert!(text[3].contains("compare.tolerance = 1.5"));
        assert!(text[4].contains("compare.noise_sample = NaN"));
        assert_eq!(
            text[5],
            "compare.headers lists `etag` twice (names are case-insensitive)"
        );
        assert_eq!(
            text[6],
            "compare.headers[2] `bad header` is not a header name"
        );
        assert!(CompareConfig {
            tolerance: -0.1,
            ..Default::default()
        }
        .compile()
        .is_err());
    }
}
