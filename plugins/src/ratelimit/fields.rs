//! The response fields of a decision: `Retry-After`, the IETF `RateLimit-Policy` and
//! `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers), and optionally the legacy
//! `X-RateLimit-*` trio.
//!
//! How a GCRA limit (rate `N/period`, burst `B`, emission interval `T = period / N`) maps
//! onto the draft's quota model, one item per limit, named after the limit:
//! - `RateLimit-Policy: "NAME";q=B;w=W`: a full bucket holds `q = B` requests, and an
//!   empty one takes `W = ⌈B·T⌉` seconds to fill, so `q/w` is the sustained rate (rounded
//!   down when `B·T` is not whole) and `q` the most that can go at once. Precomputed once.
//! - `RateLimit: "NAME";r=R;t=S`: `R` requests would be admitted right now; `S` is the
//!   whole seconds (rounded up) until `R` grows by one (the next unit, never the time to
//!   a full bucket: the draft's `t` is "until additional quota is made available"). On a
//!   refused limit `R = 0` and `S` is its retry time, so `Retry-After` is never earlier than
//!   any `t`. `t` is left out when the bucket is full (nothing to wait for).
//! - No partition key (`pk`): it would echo the client's address or API key.
//!
//! Legacy fields describe one limit: the refusing one with the longest wait, else the one
//! with the fewest requests left: `X-RateLimit-Limit: B`, `X-RateLimit-Remaining: R`,
//! `X-RateLimit-Reset: ⌈time until the bucket is full⌉` in seconds.

use http::{HeaderName, HeaderValue};
use std::fmt::Write;
use std::time::Duration;

use super::config::Limit;
use super::rate::ceil_secs;
use super::store::{Decision, LimitState};

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One limit as the fields describe it.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    burst: u64,
    t: Duration,
}

/// A policy's fields: the fixed `RateLimit-Policy` value and what is needed to write the
/// others for a decision.
#[derive(Debug, Clone)]
pub struct Fields {
    items: Vec<Item>,
    policy: HeaderValue,
}

impl Fields {
    /// The fields of policy `policy` (limits without a `name` are named after it).
    pub fn new(policy: &str, limits: &[Limit]) -> Fields {
        let single = limits.len() == 1;
        let items: Vec<Item> = limits
            .iter()
            .map(|l| Item {
                name: l.field_name(policy, single),
                burst: u64::from(l.burst),
                t: l.rate.emission_interval(),
            })
            .collect();
        let mut policy = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                policy.push_str(", ");
            }
            let fill = item
                .t
                .saturating_mul(u32::try_from(item.burst).unwrap_or(u32::MAX));
            let _ = write!(
                policy,
                "\"{}\";q={};w={}",
                item.name,
                item.burst,
                ceil_secs(fill).max(1)
            );
        }
        Fields {
            // Names are checked to be printable ASCII without quotes: always a valid value.
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            items,
        }
    }

    /// `RateLimit-Policy`.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// `RateLimit` for a decision.
    pub fn ratelimit(&self, d: &Decision) -> HeaderValue {
        let mut out = String::with_capacity(32 * self.items.len());
        for (i, (item, state)) in self.items.iter().zip(&d.limits).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "\"{}\";r={}", item.name, state.remaining);
            if let Some(next) = next_unit(item, state) {
                let _ = write!(out, ";t={}", ceil_secs(next));
            }
        }
        HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
    }

    /// `Retry-After` for a refused decision: whole seconds, rounded up, at least 1.
    pub fn retry_after(d: &Decision) -> HeaderValue {
        HeaderValue::from(ceil_secs(d.retry_after()).max(1))
    }

    /// The legacy trio for a decision.
    pub fn legacy(&self, d: &Decision) -> [(HeaderName, HeaderValue); 3] {
        let pick = self.items.iter().zip(&d.limits).max_by(|(_, a), (_, b)| {
            a.retry_after
                .cmp(&b.retry_after)
                .then(b.remaining.cmp(&a.remaining))
        });
        let (burst, remaining, reset) = pick.map_or((0, 0, Duration::ZERO), |(item, s)| {
            (item.burst, s.remaining, s.reset)
        });
        [
            (X_LIMIT, HeaderValue::from(burst)),
            (X_REMAINING, HeaderValue::from(remaining)),
            (X_RESET, HeaderValue::from(ceil_secs(reset))),
        ]
    }
}

/// Time until a limit admits one more request than `remaining` says; `None` when its
/// bucket is full. With `d = tat - t`, `remaining = ⌊(B·T - d) / T⌋` grows when `d` falls
/// to `(B - remaining - 1)·T`: for a refused limit that is its retry time.
fn next_unit(item: &Item, state: &LimitState) -> Option<Duration> {
    if state.remaining >= item.burst {
        return None;
    }
    let units_left = u32::try_from(item.burst - state.remaining - 1).unwrap_or(u32::MAX);
    Some(
        state
            .reset
            .saturating_sub(item.t.saturating_mul(units_left)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::key::{KeyPart, KeySpec};
    use crate::ratelimit::rate::Rate;
    use smallvec::smallvec;

    fn limit(name: &str, rate: &str, burst: u32) -> Limit {
        Limit {
            name: Some(name.into()),
            key: KeySpec {
                parts: vec![KeyPart::ClientIp],
            },
            rate: Rate::parse(rate).unwrap(),
            burst,
        }
    }

    #[test]
    fn policy_maps_burst_and_fill_time() {
        let f = Fields::new(
            "p",
            &[
                limit("per_client", "100/s", 200),
                limit("partners", "6000/min", 100),
                limit("slow", "3/s", 2),
                limit("hourly", "1/h", 1),
            ],
        );
        assert_eq!(
            f.policy(),
            "\"per_client\";q=200;w=2, \"partners\";q=100;w=1, \"slow\";q=2;w=1, \"hourly\";q=1;w=3600"
        );
    }

    #[test]
    fn exhausted_and_partly_used_buckets() {
        let f = Fields::new("p", &[limit("per_client", "100/s", 200)]);
        // 200 requests at once: empty, full again in 2 s, the next unit in 10 ms.
        let refused = Decision {
            admitted: false,
            limits: smallvec![LimitState {
                admitted: false,
                remaining: 0,
                reset: Duration::from_secs(2),
                retry_after: Duration::from_millis(10),
            }],
        };
        assert_eq!(f.ratelimit(&refused), "\"per_client\";r=0;t=1");
        assert_eq!(Fields::retry_after(&refused), "1");
        let legacy = f.legacy(&refused);
        assert_eq!(legacy[0].1, "200");
        assert_eq!(legacy[1].1, "0");
        assert_eq!(legacy[2].1, "2");

        let f = Fields::new("p", &[limit("hourly", "10/h", 5)]);
        // T = 360 s. Two used a minute ago: d = 2T - 60 s; r = 3; the next unit in 300 s.
        let used = Decision {
            admitted: true,
            limits: smallvec![LimitState {
                admitted: true,
                remaining: 3,
                reset: Duration::from_secs(660),
                retry_after: Duration::ZERO,
            }],
        };
        assert_eq!(f.ratelimit(&used), "\"hourly\";r=3;t=300");
        let full = Decision {
            admitted: true,
            limits: smallvec![LimitState {
                admitted: true,
                remaining: 5,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            }],
        };
        assert_eq!(f.ratelimit(&full), "\"hourly\";r=5");
    }
}
