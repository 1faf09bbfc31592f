//! One instance of a service: its identity in the published set ([`Member`]), its live
//! state that survives rebuilds and reloads ([`InstanceLive`]: health verdicts, probe
//! record, ejection, requests in flight), and passive outlier detection.
//!
//! Nothing here chooses an instance (that is `balance.rs`) or changes where instances come
//! from (`mod.rs` merges the sources; `registrations.rs` owns self-registrations).

use pingora_core::upstreams::peer::HttpPeer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::now_ms;
use super::health::ProbeRecord;
use super::spec::ServiceSpec;
use super::ServiceState;

/// Source flags of an instance.
pub const SOURCE_STATIC: u8 = 1;
pub const SOURCE_REGISTERED: u8 = 2;
pub const SOURCE_DNS: u8 = 4;

const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_HEALTHY: u8 = 1;
const HEALTH_UNHEALTHY: u8 = 2;

/// Why an address cannot be an instance, or `None` if it can. Addresses that parse but that
/// no connection can usefully go to (`0.0.0.0` reaches whatever listens locally, multicast
/// and broadcast are not unicast peers, port 0 is "any port") would enter the pool as healthy
/// and only fail traffic.
pub fn unusable_instance_addr(addr: SocketAddr) -> Option<&'static str> {
    let ip = addr.ip().to_canonical();
    if addr.port() == 0 {
        Some("port 0 is not a port an instance can listen on")
    } else if ip.is_unspecified() {
        Some("the unspecified address (0.0.0.0 or ::) is not an instance's address")
    } else if ip.is_multicast() {
        Some("a multicast address is not an instance's address")
    } else if ip == std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Some("the broadcast address is not an instance's address")
    } else {
        None
    }
}

/// Health as the dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Live state of one instance, kept across instance-set rebuilds and reloads.
#[derive(Debug, Default)]
pub struct InstanceLive {
    health: AtomicU8,
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    pub(crate) last_probe: Mutex<Option<ProbeRecord>>,
    pub(crate) next_probe_ms: AtomicU64,
    pub(crate) probing: AtomicBool,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    inflight: AtomicUsize,
}

impl InstanceLive {
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Acquire) {
            HEALTH_HEALTHY => Health::Healthy,
            HEALTH_UNHEALTHY => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Time left in the current ejection.
    pub fn ejected_for(&self, now: u64) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Whether health checks allow traffic (ignores ejection).
    fn passes_health(&self, spec: &ServiceSpec) -> bool {
        match &spec.health {
            None => true,
            Some(h) => match self.health.load(Ordering::Acquire) {
                HEALTH_HEALTHY => true,
                HEALTH_UNKNOWN => h.start_healthy,
                _ => false,
            },
        }
    }

    pub(super) fn usable(&self, spec: &ServiceSpec, now: u64) -> bool {
        self.passes_health(spec) && self.ejected_until_ms.load(Ordering::Acquire) <= now
    }

    /// Marks the instance healthy without waiting for probes (health checks were just
    /// turned on for an instance that was serving).
    pub(super) fn mark_healthy(&self) {
        self.health.store(HEALTH_HEALTHY, Ordering::Release);
    }

    /// Applies an active probe result with the healthy/unhealthy thresholds.
    pub fn apply_probe(
        &self,
        rec: ProbeRecord,
        healthy_after: u32,
        unhealthy_after: u32,
        addr: SocketAddr,
        service: &str,
    ) {
        if rec.ok {
            self.fail_streak.store(0, Ordering::Release);
            let n = self.ok_streak.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= healthy_after.max(1)
                && self.health.swap(HEALTH_HEALTHY, Ordering::AcqRel) != HEALTH_HEALTHY
            {
                tracing::info!(service, instance = %addr, "instance healthy");
            }
        } else {
            self.ok_streak.store(0, Ordering::Release);
            let n = self.fail_streak.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= unhealthy_after.max(1)
                && self.health.swap(HEALTH_UNHEALTHY, Ordering::AcqRel) != HEALTH_UNHEALTHY
            {
                tracing::warn!(service, instance = %addr, error = rec.error.as_deref().unwrap_or(""), "instance unhealthy");
            }
        }
        if let Ok(mut last) = self.last_probe.lock() {
            *last = Some(rec);
        }
    }
}

/// One instance of the current set: identity plus a shared live state.
#[derive(Debug)]
pub struct Member {
    pub addr: SocketAddr,
    pub weight: u32,
    pub zone: Option<String>,
    pub version: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub sources: u8,
    /// Registration ids that refer to this address.
    pub registrations: Vec<String>,
    pub peer: HttpPeer,
    pub live: Arc<InstanceLive>,
}

impl Member {
    pub fn source_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.sources & SOURCE_STATIC != 0 {
            v.push("static");
        }
        if self.sources & SOURCE_REGISTERED != 0 {
            v.push("registered");
        }
        if self.sources & SOURCE_DNS != 0 {
            v.push("dns");
        }
        v
    }
}

/// The published instance set of a service.
#[derive(Debug, Default)]
pub struct Members {
    pub instances: Vec<Arc<Member>>,
    pub(super) schedule: Vec<u32>,
    /// Consistent-hash ring: (point, instance index), sorted by point.
    pub(super) ring: Vec<(u64, u32)>,
}

/// Counts a request against an instance until dropped (least-request balancing, dashboard).
pub struct InstancePermit(Arc<InstanceLive>);

impl InstancePermit {
    pub(super) fn new(live: Arc<InstanceLive>) -> InstancePermit {
        live.inflight.fetch_add(1, Ordering::AcqRel);
        InstancePermit(live)
    }
}

impl Drop for InstancePermit {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ServiceState {
    /// Reports one attempt's outcome for passive outlier detection.
    pub fn record(&self, member: &Member, ok: bool) {
        let spec = self.spec.load();
        let Some(o) = spec.outlier else { return };
        let live = &member.live;
        if ok {
            if live.consecutive_failures.load(Ordering::Relaxed) != 0 {
                live.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = live.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let now = now_ms();
        if n < o.consecutive_failures.max(1) || live.ejected_until_ms.load(Ordering::Acquire) > now
        {
            return;
        }
        let members = self.members.load();
        let total = members.instances.len();
        let ejected = members
            .instances
            .iter()
            .filter(|m| m.live.ejected_until_ms.load(Ordering::Acquire) > now)
            .count();
        // Always allow ejecting one instance of a pool of two or more; never the last one.
        let cap = ((total * o.max_ejection_percent as usize) / 100).max(usize::from(total >= 2));
        if ejected >= cap {
            return;
        }
        let count = live.ejections.fetch_add(1, Ordering::AcqRel) + 1;
        let time = (o.base_ejection_time * count).min(o.max_ejection_time);
        live.ejected_until_ms
            .store(now + time.as_millis() as u64, Ordering::Release);
        live.consecutive_failures.store(0, Ordering::Release);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(service = %self.name, instance = %member.addr, failures = n, ejected_for = ?time, "instance ejected");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_addr as addr, test_state as state};
    use super::super::{NoPick, PickContext};
    use super::*;
    use crate::registry::spec::{HealthSpec, OutlierSpec, ProbeKind};

    #[test]
    fn outlier_ejection_respects_cap_and_expires() {
        let mut spec = ServiceSpec::with_instances("s", &[(addr(1), 1), (addr(2), 1)]);
        spec.outlier = Some(OutlierSpec {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_millis(80),
            max_ejection_time: Duration::from_secs(1),
            max_ejection_percent: 50,
        });
        let s = state(spec);
        let members = s.members();
        let (a, b) = (&members.instances[0], &members.instances[1]);
        for _ in 0..3 {
            s.record(a, false);
        }
        assert!(a.live.ejected_for(now_ms()).is_some());
        for _ in 0..20 {
            let (m, _p) = s.pick(&PickContext::default()).unwrap();
            assert_eq!(m.addr, b.addr);
        }
        // The cap (50% of 2) stops the second instance from being ejected too.
        for _ in 0..3 {
            s.record(b, false);
        }
        assert!(b.live.ejected_for(now_ms()).is_none());
        std::thread::sleep(Duration::from_millis(100));
        let picked: Vec<_> = (0..4)
            .map(|_| s.pick(&PickContext::default()).unwrap().0.addr)
            .collect();
        assert!(picked.contains(&a.addr));
    }

    #[test]
    fn health_gates_traffic_and_panic_threshold_overrides() {
        let mut spec = ServiceSpec::with_instances("s", &[(addr(1), 1), (addr(2), 1)]);
        spec.health = Some(HealthSpec {
            kind: ProbeKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            jitter: 0.0,
            healthy_after: 2,
            unhealthy_after: 3,
            start_healthy: false,
        });
        let s = state(spec.clone());
        assert_eq!(
            s.pick(&PickContext::default()).err(),
            Some(NoPick::NoneHealthy)
        );
        let m = s.members();
        let ok = |ok: bool| ProbeRecord {
            ok,
            status: None,
            latency: Duration::ZERO,
            error: None,
            at_ms: now_ms(),
        };
        m.instances[0]
            .live
            .apply_probe(ok(true), 2, 3, addr(1), "s");
        assert_eq!(m.instances[0].live.health(), Health::Unknown);
        m.instances[0]
            .live
            .apply_probe(ok(true), 2, 3, addr(1), "s");
        assert_eq!(m.instances[0].live.health(), Health::Healthy);
        for _ in 0..5 {
            assert_eq!(s.pick(&PickContext::default()).unwrap().0.addr, addr(1));
        }
        // Alternating results never reach either threshold: no flapping.
        for i in 0..10 {
            m.instances[0]
                .live
                .apply_probe(ok(i % 2 == 0), 2, 3, addr(1), "s");
        }
        assert_eq!(m.instances[0].live.health(), Health::Healthy);
        spec.panic_threshold = Some(0.9);
        let s2 = state(spec);
        assert!(s2.pick(&PickContext::default()).is_ok());
    }
}
