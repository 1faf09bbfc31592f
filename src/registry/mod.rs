//! The built-in service registry: live instance sets, health, outlier ejection, circuit
//! breaking, bulkheads and load balancing.
//!
//! A [`ServiceState`] outlives config reloads (it is looked up by name), so health, ejections
//! and breaker state survive an edit of routes.toml. Its instances come from three sources,
//! merged by address (the same address from two sources is one instance): static entries
//! in routes.toml, self-registrations through the admin API, and DNS. The merged set is
//! published through an `ArcSwap`, so the request path reads it without a lock.
//!
//! What runs where:
//! - request path: [`ServiceState::pick`], [`ServiceState::record`], breaker admission and the
//!   bulkhead counter — atomics only;
//! - background ([`background`]): probes, DNS refresh, registration expiry;
//! - admin API ([`api`]): registration writes and the JSON/HTML views.

pub mod api;
pub mod background;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod dns;
pub mod health;
pub mod spec;

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;

use crate::upstream::{make_peer, smooth_wrr_schedule};
use breaker::Breaker;
use budget::RetryBudget;
use clock::now_ms;
use health::ProbeRecord;
use spec::{LbPolicy, RegistrySettings, ServiceSpec};

/// Source flags of an instance.
pub const SOURCE_STATIC: u8 = 1;
pub const SOURCE_REGISTERED: u8 = 2;
pub const SOURCE_DNS: u8 = 4;

/// Most self-registrations one service holds. Each costs memory and a line in `/registry`
/// (which every open dashboard fetches each second); a registrant stuck in a loop, or any
/// local process when no token is set, must not be able to grow the gateway without bound.
/// Re-registering an address that is already registered does not count twice.
pub const MAX_REGISTRATIONS_PER_SERVICE: usize = 1000;

/// Virtual nodes per unit of weight on the consistent-hash ring.
const RING_POINTS_PER_WEIGHT: u32 = 64;

const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_HEALTHY: u8 = 1;
const HEALTH_UNHEALTHY: u8 = 2;

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

    fn usable(&self, spec: &ServiceSpec, now: u64) -> bool {
        self.passes_health(spec) && self.ejected_until_ms.load(Ordering::Acquire) <= now
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
    schedule: Vec<u32>,
    /// Consistent-hash ring: (point, instance index), sorted by point.
    ring: Vec<(u64, u32)>,
}

/// What a registrant sends.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub addr: SocketAddr,
    pub weight: u32,
    pub zone: Option<String>,
    pub version: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// `None` = the registry's default TTL.
    pub ttl: Option<Duration>,
}

impl NewInstance {
    pub fn new(addr: SocketAddr, ttl: Option<Duration>) -> NewInstance {
        NewInstance {
            addr,
            weight: 1,
            zone: None,
            version: None,
            metadata: BTreeMap::new(),
            ttl,
        }
    }
}

/// A self-registered instance: what the registrant sent, with its effective TTL.
#[derive(Debug, Clone)]
pub struct Registration {
    pub instance: NewInstance,
    pub ttl: Duration,
    pub expires_at_ms: u64,
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
    registered: BTreeMap<String, Registration>,
    dns: Vec<(SocketAddr, u32)>,
}

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

/// Counts a request against a service's bulkhead until dropped.
pub struct BulkheadPermit(Arc<ServiceState>);

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a request against an instance until dropped (least-request balancing, dashboard).
pub struct InstancePermit(Arc<InstanceLive>);

impl Drop for InstancePermit {
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

impl ServiceState {
    fn new(spec: ServiceSpec) -> ServiceState {
        let s = ServiceState {
            name: spec.name.clone(),
            spec: ArcSwap::from_pointee(spec),
            members: ArcSwap::from_pointee(Members::default()),
            sources: Mutex::new(Sources::default()),
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
                l.health.store(HEALTH_HEALTHY, Ordering::Release);
            }
        }
        self.spec.store(Arc::new(spec));
        if dns_changed {
            lock(&self.sources).dns.clear();
            *lock(&self.dns_status) = DnsStatus::default();
        }
        self.rebuild();
    }

    /// Recomputes the published instance set from all sources.
    pub fn rebuild(&self) {
        let spec = self.spec.load_full();
        let sources = lock(&self.sources);
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
        for (id, reg) in &sources.registered {
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
            e.registrations.push(id.clone());
            if e.zone.is_none() {
                e.zone = r.zone.clone();
            }
            if e.version.is_none() {
                e.version = r.version.clone();
            }
            for (k, v) in &r.metadata {
                e.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
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
        let mut ring = Vec::new();
        // Only `lb = "hash"` reads the ring; building it for every registration of a large
        // pool would make registering quadratic. A reload to `hash` rebuilds it.
        let needs_ring = matches!(spec.lb, LbPolicy::Hash(_));
        for (i, m) in instances.iter().enumerate().filter(|_| needs_ring) {
            let key = stable_hash(m.addr.to_string().as_bytes());
            for p in 0..m.weight.clamp(1, 100) * RING_POINTS_PER_WEIGHT {
                ring.push((mix(key ^ u64::from(p).wrapping_mul(0x9E37_79B9)), i as u32));
            }
        }
        ring.sort_unstable();
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
                m.live.inflight.fetch_add(1, Ordering::AcqRel);
                let permit = InstancePermit(m.live.clone());
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

    fn register(&self, id: String, reg: Registration) {
        lock(&self.sources).registered.insert(id, reg);
        self.rebuild();
    }

    /// Drops every self-registration (registration was turned off); returns how many.
    fn evict_registrations(&self) -> usize {
        let n = std::mem::take(&mut lock(&self.sources).registered).len();
        if n > 0 {
            tracing::info!(service = %self.name, evicted = n, "registration turned off: registered instances removed");
            self.rebuild();
        }
        n
    }

    fn heartbeat(&self, id: &str) -> Option<Duration> {
        let mut s = lock(&self.sources);
        let r = s.registered.get_mut(id)?;
        r.expires_at_ms = now_ms() + r.ttl.as_millis() as u64;
        Some(r.ttl)
    }

    fn deregister(&self, id: &str) -> bool {
        let removed = lock(&self.sources).registered.remove(id).is_some();
        if removed {
            self.rebuild();
        }
        removed
    }

    /// Drops registrations whose TTL lapsed; returns how many.
    pub fn expire_registrations(&self, now: u64) -> usize {
        let mut s = lock(&self.sources);
        let before = s.registered.len();
        s.registered.retain(|id, r| {
            let keep = r.expires_at_ms > now;
            if !keep {
                tracing::info!(service = %self.name, id, instance = %r.instance.addr, "registration expired");
            }
            keep
        });
        let n = before - s.registered.len();
        drop(s);
        if n > 0 {
            self.rebuild();
        }
        n
    }

    fn registration_id_of(&self, addr: SocketAddr) -> Option<String> {
        lock(&self.sources)
            .registered
            .iter()
            .find(|(_, r)| r.instance.addr == addr)
            .map(|(id, _)| id.clone())
    }

    fn registration_count(&self) -> usize {
        lock(&self.sources).registered.len()
    }

    /// Registrations with their time left (for the dashboard).
    pub fn registrations(&self) -> BTreeMap<String, Registration> {
        lock(&self.sources).registered.clone()
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

/// All services of the process, by name.
#[derive(Debug)]
pub struct Registry {
    services: RwLock<HashMap<String, Arc<ServiceState>>>,
    settings: ArcSwap<RegistrySettings>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            services: RwLock::new(HashMap::new()),
            settings: ArcSwap::from_pointee(RegistrySettings::default()),
        }
    }
}

impl Registry {
    /// Applies a compiled config and returns the states in `specs` order. State of services
    /// that remain is kept; services no longer configured are dropped.
    pub fn apply(
        &self,
        specs: &[ServiceSpec],
        settings: RegistrySettings,
    ) -> Vec<Arc<ServiceState>> {
        self.settings.store(Arc::new(settings));
        let mut map = self.services.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| specs.iter().any(|s| &s.name == name));
        specs
            .iter()
            .map(|spec| {
                let state = match map.get(&spec.name) {
                    Some(state) => {
                        state.set_spec(spec.clone());
                        state.clone()
                    }
                    None => {
                        let state = Arc::new(ServiceState::new(spec.clone()));
                        map.insert(spec.name.clone(), state.clone());
                        state
                    }
                };
                // The pool holds registrations only while registration is on: turning it off
                // must shut out a registrant at once, not when its TTL lapses.
                if !self.accepts_registrations(spec) {
                    state.evict_registrations();
                }
                state
            })
            .collect()
    }

    /// Whether `[registry] registration` and the service's own switch are both on.
    fn accepts_registrations(&self, spec: &ServiceSpec) -> bool {
        self.settings.load().registration && spec.registration
    }

    pub fn settings(&self) -> Arc<RegistrySettings> {
        self.settings.load_full()
    }

    pub fn service(&self, name: &str) -> Option<Arc<ServiceState>> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
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

    /// Registers an instance; returns its registration id and TTL.
    pub fn register(
        &self,
        service: &str,
        new: NewInstance,
    ) -> Result<(String, Duration), RegistryError> {
        let state = self
            .service(service)
            .ok_or_else(|| RegistryError::UnknownService(service.to_string()))?;
        let settings = self.settings();
        if !self.accepts_registrations(&state.spec()) {
            return Err(RegistryError::RegistrationDisabled(service.to_string()));
        }
        let addr = new.addr;
        if let Some(why) = unusable_instance_addr(addr) {
            return Err(RegistryError::Invalid(format!("`{addr}`: {why}")));
        }
        if new.weight == 0 || new.weight > 10_000 {
            return Err(RegistryError::Invalid(
                "weight must be between 1 and 10000".into(),
            ));
        }
        let ttl = new
            .ttl
            .unwrap_or(settings.default_ttl)
            .clamp(api::MIN_TTL, api::MAX_TTL);
        // Re-registering the same address replaces the earlier registration.
        let existing = state.registration_id_of(addr);
        if existing.is_none() && state.registration_count() >= MAX_REGISTRATIONS_PER_SERVICE {
            return Err(RegistryError::TooManyRegistrations(
                service.to_string(),
                MAX_REGISTRATIONS_PER_SERVICE,
            ));
        }
        let id = existing.unwrap_or_else(|| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (service, addr, now_ms(), crate::ids::random_u64()).hash(&mut h);
            format!("{:016x}", h.finish())
        });
        state.register(
            id.clone(),
            Registration {
                instance: new,
                ttl,
                expires_at_ms: now_ms() + ttl.as_millis() as u64,
            },
        );
        // A reload that turned registration off between the check above and the insert may
        // have evicted before this registration existed: take it back out.
        if !self.accepts_registrations(&state.spec()) {
            state.deregister(&id);
            return Err(RegistryError::RegistrationDisabled(service.to_string()));
        }
        tracing::info!(service, id, instance = %addr, ?ttl, "instance registered");
        Ok((id, ttl))
    }

    pub fn heartbeat(&self, service: &str, id: &str) -> Result<Duration, RegistryError> {
        let state = self
            .service(service)
            .ok_or_else(|| RegistryError::UnknownService(service.to_string()))?;
        if !self.accepts_registrations(&state.spec()) {
            return Err(RegistryError::RegistrationDisabled(service.to_string()));
        }
        state
            .heartbeat(id)
            .ok_or_else(|| RegistryError::UnknownInstance(service.to_string(), id.to_string()))
    }

    pub fn deregister(&self, service: &str, id: &str) -> Result<(), RegistryError> {
        let state = self
            .service(service)
            .ok_or_else(|| RegistryError::UnknownService(service.to_string()))?;
        if state.deregister(id) {
            tracing::info!(service, id, "instance deregistered");
            Ok(())
        } else {
            Err(RegistryError::UnknownInstance(
                service.to_string(),
                id.to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::{HashKey, HealthSpec, OutlierSpec, ProbeKind};

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn state(spec: ServiceSpec) -> Arc<ServiceState> {
        let r = Registry::default();
        r.apply(&[spec], RegistrySettings::default()).remove(0)
    }

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
    fn registrations_merge_by_address_and_expire() {
        let r = Registry::default();
        let states = r.apply(
            &[ServiceSpec::with_instances("s", &[(addr(1), 1)])],
            RegistrySettings::default(),
        );
        let s = &states[0];
        let (id, _) = r
            .register("s", NewInstance::new(addr(1), Some(Duration::from_secs(1))))
            .unwrap();
        assert_eq!(s.members().instances.len(), 1);
        assert_eq!(
            s.members().instances[0].source_names(),
            vec!["static", "registered"]
        );
        r.register(
            "s",
            NewInstance {
                zone: Some("z".into()),
                ..NewInstance::new(addr(2), Some(Duration::from_secs(1)))
            },
        )
        .unwrap();
        assert_eq!(s.members().instances.len(), 2);
        assert!(r.heartbeat("s", &id).is_ok());
        assert_eq!(
            r.heartbeat("s", "nope"),
            Err(RegistryError::UnknownInstance("s".into(), "nope".into()))
        );
        assert_eq!(s.expire_registrations(now_ms() + 5_000), 2);
        assert_eq!(s.members().instances.len(), 1);
        assert!(matches!(
            r.register("x", NewInstance::new(addr(3), None)),
            Err(RegistryError::UnknownService(_))
        ));
    }

    #[test]
    fn bulkhead_limits_concurrency() {
        let s = state(ServiceSpec::with_instances("s", &[(addr(1), 1)]));
        let a = s.try_acquire(2).unwrap();
        let _b = s.try_acquire(2).unwrap();
        assert!(s.try_acquire(2).is_none());
        drop(a);
        assert!(s.try_acquire(2).is_some());
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
