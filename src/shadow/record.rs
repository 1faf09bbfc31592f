//! Per-route shadow records: how many comparisons, how many matched, which fields
//! mismatch and how often, what went wrong with the shadow, and the last few mismatches
//! in detail.
//!
//! One [`ShadowRecord`] per shadowed route, shared by the tasks that finish shadow
//! requests (off the request path). A mutex guards the counters; noise has its own lock,
//! read while comparing, so comparisons of one route run side by side and only the
//! short counter update is serialized. Everything is bounded: distinct fields
//! (`max_fields`, further ones counted in `fields_overflow`) and samples (`max_samples`,
//! oldest dropped). Samples hold no secret: sensitive headers and `redact` fields are
//! replaced by `[redacted]` before they are stored (see `render.rs`), and the request's
//! query string is not kept (queries carry tokens).

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::compare::{BodyMode, Comparison, Difference, Response, ShadowComparison};
use super::noise::{Learned, NoiseModel, NoiseReport};
use super::render;

/// The bounds of one route's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Distinct mismatching fields counted.
    pub max_fields: usize,
    /// Mismatch samples kept (the newest).
    pub max_samples: usize,
    /// Headers kept per message in a sample.
    pub max_sample_headers: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            // Normalized fields collapse array indexes: a few dozen is a large API.
            max_fields: 256,
            // Enough to see a pattern; each sample is at most a few kilobytes.
            max_samples: 20,
            max_sample_headers: 32,
        }
    }
}

/// The request a sample is about.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest<'a> {
    pub method: &'a str,
    /// The path as the client sent it; anything from `?` on is dropped.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// One route's shadow record.
#[derive(Debug, Default)]
pub struct ShadowRecord {
    limits: RecordLimits,
    noise: RwLock<NoiseModel>,
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    compared: u64,
    matched: u64,
    mismatched: u64,
    excused_by_noise: u64,
    invalid_json: u64,
    too_large: u64,
    too_large_answers: u64,
    shadow_errors: u64,
    shadow_timeouts: u64,
    dropped: u64,
    fields: HashMap<String, u64>,
    fields_overflow: u64,
    samples: VecDeque<MismatchSample>,
}

impl ShadowRecord {
    /// An empty record.
    pub fn new(limits: RecordLimits) -> Self {
        ShadowRecord {
            limits,
            noise: RwLock::new(NoiseModel::default()),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// An empty record with its own noise model (another threshold or bound).
    pub fn with_noise(limits: RecordLimits, noise: NoiseModel) -> Self {
        ShadowRecord {
            limits,
            noise: RwLock::new(noise),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Compares the shadow's answer with the primary's, learned noise excused, records
    /// the outcome and returns it.
    pub fn compare(
        &self,
        cmp: &ShadowComparison,
        request: &SampleRequest<'_>,
        primary: &Response<'_>,
        shadow: &Response<'_>,
    ) -> Comparison {
        let comparison = {
            let noise = self.noise.read().unwrap_or_else(PoisonError::into_inner);
            cmp.compare_with_noise(primary, shadow, Some(&noise))
        };
        self.record(request, primary, shadow, &comparison);
        comparison
    }

    /// Records a comparison made by the caller.
    pub fn record(
        &self,
        request: &SampleRequest<'_>,
        primary: &Response<'_>,
        shadow: &Response<'_>,
        comparison: &Comparison,
    ) {
        // Built before taking the lock: the sample is the only costly part.
        let sample =
            (!comparison.matched()).then(|| self.sample(request, primary, shadow, comparison));
        let mut c = self.counters();
        c.compared += 1;
        match comparison.body {
            BodyMode::InvalidJson => c.invalid_json += 1,
            BodyMode::TooLarge => c.too_large += 1,
            BodyMode::Empty | BodyMode::Json | BodyMode::Bytes => {}
        }
        let Some(sample) = sample else {
            c.matched += 1;
            if comparison.noise > 0 {
                c.excused_by_noise += 1;
            }
            return;
        };
        c.mismatched += 1;
        c.fields_overflow += comparison.fields_omitted;
        for field in &comparison.fields {
            if let Some(n) = c.fields.get_mut(field.as_str()) {
                *n += 1;
            } else if c.fields.len() < self.limits.max_fields {
                c.fields.insert(field.clone(), 1);
            } else {
                c.fields_overflow += 1;
            }
        }
        if self.limits.max_samples > 0 {
            if c.samples.len() == self.limits.max_samples {
                c.samples.pop_front();
            }
            c.samples.push_back(sample);
        }
    }

    /// Learns noise from two answers of the primary to the same request.
    pub fn learn_noise(
        &self,
        cmp: &ShadowComparison,
        first: &Response<'_>,
        second: &Response<'_>,
    ) -> Learned {
        let pair = cmp.compare(first, second);
        self.noise
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .learn(&pair)
    }

    /// The shadow failed (connection refused or reset, bad response).
    pub fn shadow_error(&self) {
        self.counters().shadow_errors += 1;
    }

    /// The shadow did not answer in time.
    pub fn shadow_timeout(&self) {
        self.counters().shadow_timeouts += 1;
    }

    /// An answer (the primary's or the shadow's) was over the copy limit: not compared.
    pub fn answer_too_large(&self) {
        self.counters().too_large_answers += 1;
    }

    /// A shadow copy was not sent (queue full, body over the copy limit).
    pub fn dropped(&self) {
        self.counters().dropped += 1;
    }

    /// The record as served on `/shadow/{route}`.
    pub fn report(&self) -> ShadowReport {
        let noise = self
            .noise
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let c = self.counters();
        let mut fields: Vec<FieldCount> = c
            .fields
            .iter()
            .map(|(field, &count)| FieldCount {
                field: field.clone(),
                count,
                noise: noise.is_noise(field),
            })
            .collect();
        fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.field.cmp(&b.field)));
        ShadowReport {
            compared: c.compared,
            matched: c.matched,
            mismatched: c.mismatched,
            match_rate: (c.compared > 0).then(|| c.matched as f64 / c.compared as f64),
            excused_by_noise: c.excused_by_noise,
            invalid_json: c.invalid_json,
            too_large: c.too_large,
            too_large_answers: c.too_large_answers,
            shadow_errors: c.shadow_errors,
            shadow_timeouts: c.shadow_timeouts,
            dropped: c.dropped,
            fields,
            fields_overflow: c.fields_overflow,
            noise: noise.report(),
            samples: c.samples.iter().rev().cloned().collect(),
        }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        // Counters stay meaningful after a panic elsewhere: every update is a few
        // additions that cannot be left half done in a harmful way.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sample(
        &self,
        request: &SampleRequest<'_>,
        primary: &Response<'_>,
        shadow: &Response<'_>,
        comparison: &Comparison,
    ) -> MismatchSample {
        let max = self.limits.max_sample_headers;
        let path = request.path.split('?').next().unwrap_or_default();
        MismatchSample {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            method: render::cut(request.method.to_owned()),
            path: render::cut(path.to_owned()),
            request_headers: render::headers(request.headers, max),
            primary: SampledResponse::of(primary, max),
            shadow: SampledResponse::of(shadow, max),
            body: comparison.body,
            differences: comparison.differences.clone(),
            omitted: comparison.omitted,
        }
    }
}

/// A route's shadow record, as JSON on the admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Shadow answers compared with the primary's.
    pub compared: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// `matched / compared`, absent before the first comparison.
    pub match_rate: Option<f64>,
    /// Matches that had differences, all at learned-noise fields.
    pub excused_by_noise: u64,
    /// Comparisons made byte for byte because a JSON body did not parse.
    pub invalid_json: u64,
    /// Comparisons made byte for byte because a body was over the size limit.
    pub too_large: u64,
    /// Copies not compared because an answer was over the copy limit (`max_body_bytes`).
    pub too_large_answers: u64,
    pub shadow_errors: u64,
    pub shadow_timeouts: u64,
    /// Shadow copies not sent.
    pub dropped: u64,
    /// Mismatching fields, most frequent first: in how many mismatches each differed.
    pub fields: Vec<FieldCount>,
    /// Field observations not counted (the table was full).
    pub fields_overflow: u64,
    pub noise: NoiseReport,
    /// The last mismatches, newest first.
    pub samples: Vec<MismatchSample>,
}

/// One mismatching field and how many mismatches it was part of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCount {
    pub field: String,
    pub count: u64,
    /// Learned as noise since (later differences there are excused).
    pub noise: bool,
}

/// One recorded mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchSample {
    pub at_unix_ms: u64,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub primary: SampledResponse,
    pub shadow: SampledResponse,
    pub body: BodyMode,
    pub differences: Vec<Difference>,
    /// Differences beyond those listed.
    pub omitted: u64,
}

/// A response as a sample shows it: status, headers (redacted), body length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_bytes: usize,
}

impl SampledResponse {
    fn of(r: &Response<'_>, max_headers: usize) -> Self {
        SampledResponse {
            status: r.status,
            headers: render::headers(r.headers, max_headers),
            body_bytes: r.body.len(),
        }
    }
}
