//! Policy kinds: how a plugin is configured and built.
//!
//! A routes.toml policy section (`[access.office]`) names one instance of a kind; routes
//! refer to it by name (`access = "office"`). A [`PolicyKind`] says which section it reads,
//! where in the fixed order it runs ([`Stage`]), how its typed config is checked and
//! compiled, and how an instance is built from the compiled settings.
//!
//! The gateway deserializes the section into [`PolicyKind::Config`] itself (unknown keys
//! and wrong types are reported at their `file:line:column` with did-you-mean hints, like
//! every other key of routes.toml), then calls [`PolicyKind::compile`] for the checks on
//! values. A kind reports problems through [`CompileContext`] with the span of the
//! offending value (keep `toml::Spanned` on the fields you check) and never panics.
//!
//! Settings are compared on reload: when a section compiles to settings equal to the ones
//! of the running instance, that instance is kept. A kind that reads files must put what it
//! read into its settings, so a changed file is a changed policy.

use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Plugin;

/// Where a policy runs in a route's chain. The order is fixed by the gateway, not by the
/// order of keys in routes.toml: CORS preflights are answered first (a browser's preflight
/// carries no credentials), then IP access, then authentication, then rate limits (which
/// may key on the identity authentication verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Preflight,
    Access,
    Auth,
    RateLimit,
}

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config is refused.
    Error,
    /// The config is accepted; `ficus check` prints the warning.
    Warning,
}

/// A problem found in a policy section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// Byte range in routes.toml of the offending value (a `toml::Spanned`'s span);
    /// `None` for the section as a whole.
    pub span: Option<Range<usize>>,
    /// The key within the section (`allow[2]`); empty for the section itself.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

/// What a kind's compile step may use and report to.
pub struct CompileContext<'a> {
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

impl<'a> CompileContext<'a> {
    /// `base_dir`: the directory of routes.toml, against which relative paths resolve.
    pub fn new(base_dir: &'a Path) -> CompileContext<'a> {
        CompileContext {
            base_dir,
            problems: Vec::new(),
        }
    }

    /// A file name from the config, resolved against the directory of routes.toml.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    pub fn error(&mut self, span: Option<Range<usize>>, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, key, message.into(), None);
    }

    pub fn error_hint(
        &mut self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            span,
            key,
            message.into(),
            Some(hint.into()),
        );
    }

    pub fn warning(&mut self, span: Option<Range<usize>>, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, span, key, message.into(), None);
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        key: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.problems.push(Problem {
            severity,
            span,
            key: key.to_string(),
            message,
            hint,
        });
    }

    /// Whether an error has been reported.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// Everything reported, in order.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// One kind of policy section.
pub trait PolicyKind: 'static {
    /// The routes.toml table (`access` for `[access.NAME]`), which is also the route key
    /// that names a policy (`access = "NAME"`).
    const SECTION: &'static str;
    /// Where policies of this kind run in a route's chain.
    const STAGE: Stage;
    /// The section as written: `#[serde(deny_unknown_fields)]`, `toml::Spanned` on values
    /// that [`PolicyKind::compile`] checks.
    type Config: DeserializeOwned;
    /// The checked, compiled settings an instance is built from. Compared on reload.
    type Settings: PartialEq + Send + Sync + 'static;

    /// Checks values and compiles them; reports every problem found (not just the first)
    /// to `cx`, and returns `None` when there was an error.
    fn compile(config: Self::Config, cx: &mut CompileContext<'_>) -> Option<Self::Settings>;

    /// Builds an instance named `name` (`office` for `[access.office]`).
    fn build(name: &str, settings: Arc<Self::Settings>) -> Arc<dyn Plugin>;
}
