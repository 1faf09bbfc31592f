//! The built-in service registry: live instance sets, health, outlier ejection, circuit
//! breaking, bulkheads and load balancing.
//!
//! A [`ServiceState`] outlives config reloads (it is looked up by name), so health, ejections
//! and breaker state survive an edit of routes.toml. Its instances come from three sources,
//! merged by address (the same address from two sources is one instance): static entries
//! in routes.toml, self-registrations ([`Registrations`]), and DNS. The merged set is
//! published through an `ArcSwap`, so the request path reads it without a lock.
//!
//! Where things are: this file holds [`Registry`] and [`ServiceState`] (sources, rebuild,
//! bulkhead); `instance.rs` an instance and its health and ejection state; `balance.rs`
//! instance choice; `registrations.rs` self-registrations; `spec.rs` the compiled settings.
//!
//! What runs where:
//! - request path: [`ServiceState::pick`], [`ServiceState::record`], breaker admission and the
//!   bulkhead counter — atomics only;
//! - background ([`background`]): probes, DNS refresh, registration expiry;
//! - admin listener (`crate::admin`, a higher layer): the registry API and the JSON/HTML
//!   views, through [`Registry`] and [`Registrations`].
//!
//! The registry must not import `config` or `admin`: it is handed compiled specs.

pub mod background;
mod balance;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod dns;
pub mod health;
mod instance;
mod registrations;
pub mod spec;

use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;

use crate::upstream::{make_peer, smooth_wrr_schedule};
use breaker::Breaker;
use budget::RetryBudget;
use clock::now_ms;
use spec::{RegistrySettings, ServiceSpec};

pub use balance::{stable_hash, NoPick, PickContext};
pub use instance::{
    unusable_instance_addr, Health, InstanceLive, InstancePermit, Member, Members, SOURCE_DNS,
    SOURCE_REGISTERED, SOURCE_STATIC,
};
pub use registrations::{
    NewInstance, Registration, Registrations, MAX_REGISTRATIONS_PER_SERVICE, MAX_TTL, MIN_TTL,
};

/// Registry errors returned by the admin API.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("unknown service `{0}`; services are declared in routes.toml")]
    UnknownService(String),
    #[error("self-registration is turned off for service `{0}`")]
    RegistrationDisabled(String),
    #[error("no registration `{1}` in service `{0}`")]
    UnknownInstance(String, String),
    #[error("invalid registration: {0}")]
    Invalid(String),
    #[error(
        "service `{0}` already has {1} registrations, the most it accepts; deregister stale \
         instances or let their TTL lapse"
    )]
    TooManyRegistrations(String, usize),
}

/// DNS discovery status for the dashboard.
#[derive(Debug, Default, Clone)]
pub struct DnsStatus {
    pub last_ok_ms: Option<u64>,
    pub last_error: Option<String>,
    pub next_ms: u64,
    pub in_flight: bool,
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Sources {
    dns: Vec<(SocketAddr, u32)>,
}

/// Counts a request against a service's bulkhead until dropped.
pub struct BulkheadPermit(Arc<ServiceState>);

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The live state of one service.
#[derive(Debug)]
pub struct ServiceState {
    pub name: String,
    spec: ArcSwap<ServiceSpec>,
    members: ArcSwap<Members>,
    sources: Mutex<Sources>,
    /// The registry's self-registrations; the rebuild reads this service's entries.
    registrations: Arc<Registrations>,
    live: Mutex<HashMap<SocketAddr, Arc<InstanceLive>>>,
    pub breaker: Breaker,
    pub budget: RetryBudget,
    inflight: AtomicUsize,
    cursor: AtomicUsize,
    pub dns_status: Mutex<DnsStatus>,
    pub retries: AtomicU64,
    pub ejections_total: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceState {
    fn new(spec: ServiceSpec, registrations: Arc<Registrations>) -> ServiceState {
        let s = ServiceState {
            name: spec.name.clone(),
            spec: ArcSwap::from_pointee(spec),
            members: ArcSwap::from_pointee(Members::default()),
            sources: Mutex::new(Sources::default()),
            registrations,
            live: Mutex::new(HashMap::new()),
            breaker: Breaker::default(),
            budget: RetryBudget::default(),
            inflight: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            dns_status: Mutex::new(DnsStatus::default()),
            retries: AtomicU64::new(0),
            ejections_total: AtomicU64::new(0),
        };
        s.rebuild();
        s
    }

    pub fn spec(&self) -> Arc<ServiceSpec> {
        self.spec.load_full()
    }

    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    fn set_spec(&self, spec: ServiceSpec) {
        let old = self.spec.load_full();
        let dns_changed = old.dns != spec.dns;
        if old.breaker.is_some() != spec.breaker.is_some() {
            // A breaker that is turned off has no state to show, and one that is turned
            // (back) on starts closed rather than resurrecting the old verdict.
            self.breaker.reset();
        }
        if old.health.is_none() && spec.health.is_some() {
            // Instances that were serving a moment ago keep serving until probes say
            // otherwise; only instances that appear later wait for their first probes.
            for l in lock(&self.live).values() {
                l.mark_healthy();
            }
        }
        self.spec.store(Arc::new(spec));
        if dns_changed {
            lock(&self.sources).dns.clear();
            *lock(&self.dns_status) = DnsStatus::default();
        }
        self.rebuild();
    }

    /// Whether active health probes have had their first say: always without probes or
    /// with `start_healthy`, and with no instances; otherwise once some instance is healthy
    /// (there is somewhere to send traffic) or every instance has a verdict (waiting longer
    /// would not help). `/readyz` waits for this at start.
    pub fn probes_settled(&self) -> bool {
        let spec = self.spec();
        match &spec.health {
            None => true,
            Some(h) if h.start_healthy => true,
            Some(_) => {
                let members = self.members();
                let health = || members.instances.iter().map(|m| m.live.health());
                members.instances.is_empty()
                    || health().any(|h| h == Health::Healthy)
                    || health().all(|h| h != Health::Unknown)
            }
        }
    }

    /// Recomputes the published instance set from all sources.
    pub fn rebuild(&self) {
        let spec = self.spec.load_full();
        struct Entry {
            weight: u32,
            zone: Option<String>,
            version: Option<String>,
            metadata: BTreeMap<String, String>,
            sources: u8,
            registrations: Vec<String>,
        }
        let mut by_addr: BTreeMap<SocketAddr, Entry> = BTreeMap::new();
        for s in &spec.statics {
            by_addr.insert(
                s.addr,
                Entry {
                    weight: s.weight,
                    zone: s.zone.clone(),
                    version: None,
                    metadata: BTreeMap::new(),
                    sources: SOURCE_STATIC,
                    registrations: Vec::new(),
                },
            );
        }
        self.registrations.for_each(&self.name, |id, reg| {
            let r = &reg.instance;
            let e = by_addr.entry(r.addr).or_insert_with(|| Entry {
                weight: r.weight,
                zone: None,
                version: None,
                metadata: BTreeMap::new(),
                sources: 0,
                registrations: Vec::new(),
            });
            e.sources |= SOURCE_REGISTERED;
            e.registrations.push(id.to_string());
            if e.zone.is_none() {
                e.zone = r.zone.clone();
            }
            if e.version.is_none() {
                e.version = r.version.clone();
            }
            for (k, v) in &r.metadata {
                e.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        });
        let sources = lock(&self.sources);
        for (addr, weight) in &sources.dns {
            let e = by_addr.entry(*addr).or_insert_with(|| Entry {
                weight: *weight,
                zone: None,
                version: None,
                metadata: BTreeMap::new(),
                sources: 0,
                registrations: Vec::new(),
            });
            e.sources |= SOURCE_DNS;
        }
        drop(sources);
        let mut live = lock(&self.live);
        live.retain(|addr, _| by_addr.contains_key(addr));
        let now = now_ms();
        let instances: Vec<Arc<Member>> = by_addr
            .into_iter()
            .map(|(addr, e)| {
                let l = live
                    .entry(addr)
                    .or_insert_with(|| {
                        let l = InstanceLive::default();
                        // Probe a new instance right away.
                        l.next_probe_ms.store(now, Ordering::Relaxed);
                        Arc::new(l)
                    })
                    .clone();
                Arc::new(Member {
                    addr,
                    weight: e.weight,
                    zone: e.zone,
                    version: e.version,
                    metadata: e.metadata,
                    sources: e.sources,
                    registrations: e.registrations,
                    peer: make_peer(addr, spec.tls.as_ref(), spec.pool_idle_timeout),
                    live: l,
                })
            })
            .collect();
        drop(live);
        let weights: Vec<u32> = instances.iter().map(|m| m.weight).collect();
        let ring = balance::hash_ring(&instances, &spec.lb);
        self.members.store(Arc::new(Members {
            schedule: smooth_wrr_schedule(&weights),
            instances,
            ring,
        }));
    }

    /// Takes a bulkhead slot, or `None` when the service is at `max_concurrent`.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<BulkheadPermit> {
        let prev = self.inflight.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(BulkheadPermit(self.clone()))
    }

    /// Counts a request in flight without a limit (for the dashboard).
    pub fn enter(self: &Arc<Self>) -> BulkheadPermit {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        BulkheadPermit(self.clone())
    }

    /// Registrations with their time left (for the dashboard).
    pub fn registrations(&self) -> BTreeMap<String, Registration> {
        self.registrations.of(&self.name)
    }

    /// The DNS-discovered instances in use.
    pub fn dns_instances(&self) -> Vec<(SocketAddr, u32)> {
        lock(&self.sources).dns.clone()
    }

    /// Replaces the DNS-discovered set; returns whether it changed.
    pub fn set_dns(&self, mut found: Vec<(SocketAddr, u32)>) -> bool {
        found.sort_unstable();
        found.dedup();
        let mut s = lock(&self.sources);
        if s.dns == found {
            return false;
        }
        s.dns = found;
        drop(s);
        self.rebuild();
        true
    }
}

/// All services of the process, by name, and their self-registrations.
#[derive(Debug)]
pub struct Registry {
    services: RwLock<HashMap<String, Arc<ServiceState>>>,
    settings: ArcSwap<RegistrySettings>,
    registrations: Arc<Registrations>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            services: RwLock::new(HashMap::new()),
            settings: ArcSwap::from_pointee(RegistrySettings::default()),
            registrations: Arc::new(Registrations::default()),
        }
    }
}

impl Registry {
    /// Applies a compiled config and returns the states in `specs` order. State of services
    /// that remain is kept; services no longer configured are dropped, with their
    /// registrations.
    pub fn apply(
        &self,
        specs: &[ServiceSpec],
        settings: RegistrySettings,
    ) -> Vec<Arc<ServiceState>> {
        self.registrations.configure(&settings);
        self.settings.store(Arc::new(settings));
        let mut map = self.services.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| specs.iter().any(|s| &s.name == name));
        self.registrations.retain_services(specs);
        specs
            .iter()
            .map(|spec| {
                let state = match map.get(&spec.name) {
                    Some(state) => {
                        state.set_spec(spec.clone());
                        state.clone()
                    }
                    None => {
                        let state =
                            Arc::new(ServiceState::new(spec.clone(), self.registrations.clone()));
                        map.insert(spec.name.clone(), state.clone());
                        state
                    }
                };
                // The pool holds registrations only while registration is on: turning it off
                // must shut out a registrant at once, not when its TTL lapses.
                if !self.registrations.accepts(spec) {
                    self.registrations.evict(&state);
                }
                state
            })
            .collect()
    }

    pub fn settings(&self) -> Arc<RegistrySettings> {
        self.settings.load_full()
    }

    /// Self-registrations: every change to them goes through this.
    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    pub fn service(&self, name: &str) -> Option<Arc<ServiceState>> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The first service (by name) whose health probes have not settled yet, if any
    /// ([`ServiceState::probes_settled`]).
    pub fn unsettled_service(&self) -> Option<String> {
        self.services()
            .into_iter()
            .find(|s| !s.probes_settled())
            .map(|s| s.name.clone())
    }

    /// All services, sorted by name.
    pub fn services(&self) -> Vec<Arc<ServiceState>> {
        let mut v: Vec<_> = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The state of a configured service, or [`RegistryError::UnknownService`].
    fn known_service(&self, service: &str) -> Result<Arc<ServiceState>, RegistryError> {
        self.service(service)
            .ok_or_else(|| RegistryError::UnknownService(service.to_string()))
    }

    /// Registers an instance with a service by name ([`Registrations::add`]); returns its
    /// registration id and TTL.
    pub fn register(
        &self,
        service: &str,
        new: NewInstance,
    ) -> Result<(String, Duration), RegistryError> {
        let state = self.known_service(service)?;
        let (id, ttl) = self.registrations.add(&state, new)?;
        // A reload that removed the service while it was being registered with has already
        // forgotten its registrations: do not leave this one behind.
        if self.service(service).is_none() {
            let _ = self.registrations.remove(&state, &id);
            return Err(RegistryError::UnknownService(service.to_string()));
        }
        Ok((id, ttl))
    }

    /// Renews a registration ([`Registrations::renew`]); returns its TTL.
    pub fn heartbeat(&self, service: &str, id: &str) -> Result<Duration, RegistryError> {
        self.registrations
            .renew(self.known_service(service)?.as_ref(), id)
    }

    /// Removes a registration ([`Registrations::remove`]).
    pub fn deregister(&self, service: &str, id: &str) -> Result<(), RegistryError> {
        self.registrations
            .remove(self.known_service(service)?.as_ref(), id)
    }
}

/// A loopback address with port `port`, for unit tests.
#[cfg(test)]
pub(crate) fn test_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A service state on its own registry, for unit tests.
#[cfg(test)]
pub(crate) fn test_state(spec: ServiceSpec) -> Arc<ServiceState> {
    let r = Registry::default();
    r.apply(&[spec], RegistrySettings::default()).remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{test_addr as addr, test_state as state};

    #[test]
    fn bulkhead_limits_concurrency() {
        let s = state(ServiceSpec::with_instances("s", &[(addr(1), 1)]));
        let a = s.try_acquire(2).unwrap();
        let _b = s.try_acquire(2).unwrap();
        assert!(s.try_acquire(2).is_none());
        drop(a);
        assert!(s.try_acquire(2).is_some());
    }
}
