//! Load balancing: which usable instance of a service a request goes to (round robin on
//! the smooth weighted schedule, least request by two random choices, or a consistent-hash
//! ring), with zone preference, retries kept off instances already tried, and the panic
//! threshold.
//!
//! Runs on the request path: it reads the published instance set and atomics only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::clock::now_ms;
use super::instance::{InstancePermit, Member, Members};
use super::spec::{LbPolicy, ServiceSpec};
use super::ServiceState;

/// Virtual nodes per unit of weight on the consistent-hash ring.
const RING_POINTS_PER_WEIGHT: u32 = 64;

/// Why `pick` found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// The service has no instances at all.
    Empty,
    /// Instances exist but none is healthy (or all are ejected).
    NoneHealthy,
}

/// What the request knows that selection may use.
#[derive(Default)]
pub struct PickContext<'a> {
    /// Instances already tried by this request (retries go elsewhere).
    pub exclude: &'a [SocketAddr],
    /// Consistent-hash key, for `lb = "hash"`.
    pub hash: Option<u64>,
    /// The gateway's zone, for `prefer_zone`.
    pub zone: Option<&'a str>,
}

/// splitmix64, for ring points and P2C choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of bytes (the same in every process, unlike `RandomState`).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    // FNV-1a, then mixed: cheap and stable across processes and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The consistent-hash ring of an instance set: (point, instance index), sorted by point.
/// Only `lb = "hash"` reads the ring; building it for every registration of a large pool
/// would make registering quadratic, so other policies get an empty one (a reload to `hash`
/// rebuilds the set).
pub(super) fn hash_ring(instances: &[Arc<Member>], lb: &LbPolicy) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    if !matches!(lb, LbPolicy::Hash(_)) {
        return ring;
    }
    for (i, m) in instances.iter().enumerate() {
        let key = stable_hash(m.addr.to_string().as_bytes());
        for p in 0..m.weight.clamp(1, 100) * RING_POINTS_PER_WEIGHT {
            ring.push((mix(key ^ u64::from(p).wrapping_mul(0x9E37_79B9)), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

impl ServiceState {
    /// Chooses an instance for a request.
    pub fn pick(&self, cx: &PickContext<'_>) -> Result<(Arc<Member>, InstancePermit), NoPick> {
        let members = self.members.load();
        if members.instances.is_empty() {
            return Err(NoPick::Empty);
        }
        let spec = self.spec.load();
        let now = now_ms();
        let panic = spec.panic_threshold.is_some_and(|t| {
            let ok = members
                .instances
                .iter()
                .filter(|m| m.live.usable(&spec, now))
                .count();
            (ok as f64) < t * members.instances.len() as f64
        });
        let zone = cx.zone.filter(|_| spec.prefer_zone);
        // Passes: preferred zone first (if any), then anywhere; excluded instances are only
        // used again when nothing else is left.
        let passes: &[(Option<&str>, bool)] = if zone.is_some() {
            &[(zone, true), (None, true), (zone, false), (None, false)]
        } else {
            &[(None, true), (None, false)]
        };
        for &(zone, exclude) in passes {
            let ok = |m: &Member| {
                m.weight > 0
                    && (!exclude || !cx.exclude.contains(&m.addr))
                    && zone.is_none_or(|z| m.zone.as_deref() == Some(z))
                    && (panic || m.live.usable(&spec, now))
            };
            if let Some(m) = self.choose(&members, &spec, cx, &ok) {
                let permit = InstancePermit::new(m.live.clone());
                return Ok((m.clone(), permit));
            }
        }
        Err(NoPick::NoneHealthy)
    }

    fn choose<'m>(
        &self,
        members: &'m Members,
        spec: &ServiceSpec,
        cx: &PickContext<'_>,
        ok: &dyn Fn(&Member) -> bool,
    ) -> Option<&'m Arc<Member>> {
        let all = &members.instances;
        match (&spec.lb, cx.hash) {
            (LbPolicy::Hash(_), Some(h)) if !members.ring.is_empty() => {
                let start = members.ring.partition_point(|(p, _)| *p < h);
                let n = members.ring.len();
                (0..n)
                    .map(|k| &all[members.ring[(start + k) % n].1 as usize])
                    .find(|m| ok(m))
            }
            (LbPolicy::LeastRequest, _) => {
                // Power of two choices without collecting candidates: two random starting
                // points, each moved forward to the next usable instance.
                let n = all.len();
                let r = mix(self.cursor.fetch_add(1, Ordering::Relaxed) as u64);
                let usable_from =
                    |start: usize| (0..n).map(|k| &all[(start + k) % n]).find(|m| ok(m));
                let a = usable_from((r % n as u64) as usize)?;
                let mut second = ((r >> 32) % n as u64) as usize;
                if std::ptr::eq(&all[second], a) {
                    second = (second + 1) % n;
                }
                let b = usable_from(second).unwrap_or(a);
                // Compare load per unit of weight: inflight / weight.
                let load =
                    |m: &Member| (m.live.inflight() as u64 + 1) * 1000 / u64::from(m.weight.max(1));
                Some(if load(b) < load(a) { b } else { a })
            }
            _ => {
                let sched = &members.schedule;
                if sched.is_empty() {
                    return all.iter().find(|m| ok(m));
                }
                // A retry scans on from the cursor without moving it, so retries do not push
                // the next request's first attempt onto the instance that just failed.
                let n = if cx.exclude.is_empty() {
                    self.cursor.fetch_add(1, Ordering::Relaxed)
                } else {
                    self.cursor.load(Ordering::Relaxed)
                };
                (0..sched.len())
                    .map(|k| &all[sched[(n + k) % sched.len()] as usize])
                    .find(|m| ok(m))
                    .or_else(|| all.iter().find(|m| ok(m)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_addr as addr, test_state as state};
    use super::*;
    use crate::registry::spec::{self, HashKey};
    use std::collections::HashMap;

    #[test]
    fn round_robin_follows_weights_and_skips_excluded() {
        let s = state(ServiceSpec::with_instances(
            "s",
            &[(addr(1), 1), (addr(2), 2)],
        ));
        let mut counts = HashMap::new();
        for _ in 0..300 {
            let (m, _p) = s.pick(&PickContext::default()).unwrap();
            *counts.entry(m.addr).or_insert(0) += 1;
        }
        assert_eq!(counts[&addr(1)], 100);
        assert_eq!(counts[&addr(2)], 200);
        let ex = [addr(2)];
        for _ in 0..10 {
            let (m, _p) = s
                .pick(&PickContext {
                    exclude: &ex,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(m.addr, addr(1));
        }
    }

    #[test]
    fn consistent_hash_is_sticky_and_spreads() {
        let mut spec =
            ServiceSpec::with_instances("s", &[(addr(1), 1), (addr(2), 1), (addr(3), 1)]);
        spec.lb = LbPolicy::Hash(HashKey::ClientIp);
        let s = state(spec);
        let mut seen = std::collections::HashSet::new();
        for user in 0..50u64 {
            let h = stable_hash(format!("user-{user}").as_bytes());
            let first = s
                .pick(&PickContext {
                    hash: Some(h),
                    ..Default::default()
                })
                .unwrap()
                .0
                .addr;
            for _ in 0..5 {
                assert_eq!(
                    s.pick(&PickContext {
                        hash: Some(h),
                        ..Default::default()
                    })
                    .unwrap()
                    .0
                    .addr,
                    first
                );
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn zone_preference() {
        let mut spec = ServiceSpec::with_instances("s", &[]);
        spec.statics = vec![
            spec::StaticInstance {
                addr: addr(1),
                weight: 1,
                zone: Some("a".into()),
            },
            spec::StaticInstance {
                addr: addr(2),
                weight: 1,
                zone: Some("b".into()),
            },
        ];
        spec.prefer_zone = true;
        let s = state(spec);
        for _ in 0..5 {
            let (m, _) = s
                .pick(&PickContext {
                    zone: Some("b"),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(m.addr, addr(2));
        }
    }
}
