//! Learned noise, the Diffy way: what differs between two answers of the *primary* to
//! the same request is not the shadow's fault.
//!
//! For a share of shadowed requests (`noise_sample`) the caller asks the primary a second
//! time and hands both primary answers to [`NoiseModel::learn`]. Every field that differs
//! between them (normalized: `$.items[*].etag`, `header:date`, `status`, `body`) is
//! counted; a field seen differing in at least `threshold` pairs (default 1: one
//! primary disagreeing with itself is proof enough that the field is not deterministic)
//! is noise from then on. A primary-vs-shadow difference at a noise field, or under one
//! (noise at `$.meta` covers `$.meta.generated_at`), is not a mismatch. One exception:
//! an array seen only with different lengths (`array_length`) excuses its length, not
//! its elements, which are still compared one by one: a feed that grows between two
//! calls must not excuse every wrong item in it.
//!
//! A pair whose two statuses differ teaches nothing and is only counted as discarded: a
//! primary that answered 200 then 503 had a failure, not a noisy field, and learning
//! from it would hide every later status mismatch. Noise is never unlearned while the
//! process runs; the record lists it, so a person can see what is being excused.
//!
//! Bounded: at most `max_fields` distinct fields are kept; further ones are counted.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::compare::{Comparison, DifferenceKind};

/// Pairs a field must differ in before it counts as noise, by default.
pub const DEFAULT_THRESHOLD: u64 = 1;

/// Distinct noise fields kept per route, by default. Normalized paths collapse array
/// indexes, so a real API rarely has more than a few dozen.
pub const DEFAULT_MAX_FIELDS: usize = 256;

/// What one pair of primary answers taught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The answers matched: nothing is noise.
    Nothing,
    /// `new` fields became noise with this pair (0 when all were known already).
    Differences { new: usize },
    /// The statuses differed: the pair was not used.
    Discarded,
}

/// The fields known to differ between primary answers, for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseModel {
    threshold: u64,
    max_fields: usize,
    /// Pairs each field differed in, and whether it covers its subtree.
    seen: HashMap<String, Seen>,
    /// How many fields have reached the threshold (a quick "no noise at all").
    noisy: usize,
    pairs: u64,
    discarded: u64,
    overflow: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    pairs: u64,
    /// Some pair differed at this field as a whole (not only in an array's length).
    subtree: bool,
}

impl Default for NoiseModel {
    fn default() -> Self {
        NoiseModel::new(DEFAULT_THRESHOLD, DEFAULT_MAX_FIELDS)
    }
}

impl NoiseModel {
    /// A model where a field is noise after differing in `threshold` pairs (at least 1),
    /// keeping at most `max_fields` fields.
    pub fn new(threshold: u64, max_fields: usize) -> Self {
        NoiseModel {
            threshold: threshold.max(1),
            max_fields,
            seen: HashMap::new(),
            noisy: 0,
            pairs: 0,
            discarded: 0,
            overflow: 0,
        }
    }

    /// Learns from a comparison of two primary answers to the same request (made with
    /// [`ShadowComparison::compare`](super::ShadowComparison::compare), without noise).
    pub fn learn(&mut self, pair: &Comparison) -> Learned {
        if pair
            .differences
            .iter()
            .any(|d| d.kind == DifferenceKind::Status)
        {
            self.discarded += 1;
            return Learned::Discarded;
        }
        self.pairs += 1;
        if pair.fields.is_empty() {
            return Learned::Nothing;
        }
        let mut new = 0;
        for (i, field) in pair.fields.iter().enumerate() {
            if !self.seen.contains_key(field.as_str()) {
                if self.seen.len() >= self.max_fields {
                    self.overflow += 1;
                    continue;
                }
                let fresh = Seen {
                    pairs: 0,
                    subtree: false,
                };
                self.seen.insert(field.clone(), fresh);
            }
            let Some(seen) = self.seen.get_mut(field.as_str()) else {
                continue;
            };
            seen.pairs += 1;
            // Without the flag (a comparison read back from JSON), excuse less.
            seen.subtree |= pair.whole.get(i).copied().unwrap_or(false);
            if seen.pairs == self.threshold {
                self.noisy += 1;
                new += 1;
            }
        }
        Learned::Differences { new }
    }

    /// Whether `field` is noise.
    pub fn is_noise(&self, field: &str) -> bool {
        self.seen
            .get(field)
            .is_some_and(|s| s.pairs >= self.threshold)
    }

    /// Whether `field` is noise, or one of its ancestors (`field[..end]` for each end in
    /// `ancestors`) is noise as a whole.
    pub fn covers(&self, field: &str, ancestors: &[usize]) -> bool {
        if self.noisy == 0 {
            return false;
        }
        self.is_noise(field)
            || ancestors.iter().any(|&end| {
                field
                    .get(..end)
                    .and_then(|f| self.seen.get(f))
                    .is_some_and(|s| s.subtree && s.pairs >= self.threshold)
            })
    }

    /// The model for the admin endpoint and the board.
    pub fn report(&self) -> NoiseReport {
        let mut fields: Vec<NoiseField> = self
            .seen
            .iter()
            .map(|(field, s)| NoiseField {
                field: field.clone(),
                pairs: s.pairs,
                noise: s.pairs >= self.threshold,
                covers_subtree: s.subtree,
            })
            .collect();
        fields.sort_by(|a, b| b.pairs.cmp(&a.pairs).then_with(|| a.field.cmp(&b.field)));
        NoiseReport {
            pairs: self.pairs,
            discarded: self.discarded,
            threshold: self.threshold,
            fields,
            fields_overflow: self.overflow,
        }
    }
}

/// What noise learning has seen, as served on `/shadow/{route}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// Pairs of primary answers compared.
    pub pairs: u64,
    /// Pairs not used because their statuses differed.
    pub discarded: u64,
    /// Pairs a field must differ in to be noise.
    pub threshold: u64,
    /// Fields seen differing, most often first.
    pub fields: Vec<NoiseField>,
    /// Field observations not kept (the field table was full).
    pub fields_overflow: u64,
}

/// One field seen differing between primary answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseField {
    pub field: String,
    /// Pairs it differed in.
    pub pairs: u64,
    /// Whether it has reached the threshold (and so is excused).
    pub noise: bool,
    /// Whether, as noise, it also excuses what is under it (false for an array seen
    /// only with different lengths).
    pub covers_subtree: bool,
}
