//! Shadow-response comparison: the engine that decides whether a shadow service answered
//! like the primary, learns which fields are noise, and keeps per-route records.
//!
//! Pure and synchronous, with no networking: the shadow request path (sending copies,
//! queues, timeouts) calls it once both answers are in, off the client's request path.
//! See `docs/shadow-compare.md` for the rules.
//!
//! ```
//! use ficus::shadow::{CompareConfig, Response, RecordLimits, SampleRequest, ShadowRecord};
//! use http::HeaderMap;
//!
//! let cmp = CompareConfig { ignore: vec!["$.at".into()], ..Default::default() }
//!     .compile()
//!     .expect("valid config");
//! let record = ShadowRecord::new(RecordLimits::default());
//! let headers = HeaderMap::new();
//! let primary = Response { status: 200, headers: &headers, body: br#"{"id":1,"at":1}"# };
//! let shadow = Response { status: 200, headers: &headers, body: br#"{"at":2,"id":1}"# };
//! let request = SampleRequest { method: "GET", path: "/orders/1", headers: &headers };
//! assert!(record.compare(&cmp, &request, &primary, &shadow).matched());
//! assert_eq!(record.report().matched, 1);
//! ```
//!
//! - [`config`]: `compare = { … }` and its compile step.
//! - [`path`]: the ignore/redact path syntax and how positions are written.
//! - [`compare`]: one comparison, typed differences.
//! - [`noise`]: noise learned from two primary answers.
//! - [`record`]: per-route counters and samples.
//! - `render`: values and headers as samples show them (cut, redacted).

pub mod compare;
pub mod config;
pub mod encoding;
pub mod noise;
pub mod path;
pub mod record;
mod render;
pub mod store;

#[cfg(test)]
mod tests;

pub use compare::{
    BodyMode, CompareLimits, Comparison, Difference, DifferenceKind, Response, ShadowComparison,
};
pub use config::{CompareConfig, CompareConfigError};
pub use noise::{Learned, NoiseField, NoiseModel, NoiseReport};
pub use path::{PathError, PathPattern};
pub use record::{
    FieldCount, MismatchSample, RecordLimits, SampleRequest, SampledResponse, ShadowRecord,
    ShadowReport,
};
pub use render::{REDACTED, SENSITIVE_HEADERS};
