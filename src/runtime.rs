//! The reloadable state of the gateway and the process-wide state around it.
//!
//! [`Runtime`] is one immutable snapshot of a compiled routes.toml plus the metric handles
//! for its routes and services. [`Shared`] holds the current snapshot behind an `ArcSwap`;
//! a request loads it once and keeps it to the end, so a reload never shows it half a
//! config. A failed reload leaves the current snapshot in place.

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::{self, Config, ConfigError};
use crate::metrics::{Metrics, RouteMetrics, ServiceMetrics, SplitSideMetrics};
use crate::registry::{Registry, ServiceState};
use crate::shadow::store::ShadowState;
use crate::upstream::credentials::{OAuth2Endpoint, TokenSource};

/// A route's request metrics with a service other than its own, by service index.
pub type OtherServiceMetrics = (usize, Arc<RouteMetrics>);

/// One compiled config with its metric handles (indexed like the router's routes and the
/// config's services).
pub struct Runtime {
    pub config: Config,
    /// Live service states, indexed like `config.services`.
    pub services: Vec<Arc<ServiceState>>,
    /// The services' names, indexed like `config.services`, shared by the metric handles'
    /// keys and the migration board's pairs (a name per route and service would cost each
    /// route two allocations).
    pub service_names: Vec<Arc<str>>,
    /// Request metrics of each route with its own service; see [`Runtime::route_metrics_for`].
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    /// Request metrics of each route with the other services it can use (split sides,
    /// fallback): a request is counted under the service that served it.
    /// (Boxed slices, empty for most routes: 16 bytes a route rather than a `Vec`'s 24.)
    pub route_other_metrics: Vec<Box<[OtherServiceMetrics]>>,
    /// Request metrics of each route's requests that the gateway answered itself (a
    /// policy's refusal, a preflight, a route rule's 4xx): no service served them, so they
    /// are counted under `service=""` and never in a service's share. Made on a route's
    /// first such answer (most routes never have one in a snapshot's life).
    pub route_gateway_metrics: Box<[OnceLock<Arc<RouteMetrics>>]>,
    /// Split routes' side and override counters, indexed like the router's routes.
    /// (Boxed: 8 bytes for a route without a split.)
    pub split_metrics: Vec<Option<Box<RouteSplitMetrics>>>,
    pub service_metrics: Vec<Arc<ServiceMetrics>>,
    /// Shadowed routes' states (record, copies in flight), indexed like the router's
    /// routes.
    pub shadows: Vec<Option<Arc<ShadowState>>>,
    /// The token source of each service with `client_credentials`, indexed like
    /// `config.services`.
    pub credentials: Vec<Option<Arc<TokenSource>>>,
    /// Monotonic number of this snapshot (1 = the config loaded at start).
    pub generation: u64,
}

impl Runtime {
    /// The snapshot of `config`; `previous` is the one it replaces, whose token sources are
    /// kept for services whose `client_credentials` did not change.
    pub fn new(
        config: Config,
        metrics: &Metrics,
        registry: &Registry,
        generation: u64,
        previous: Option<&Runtime>,
    ) -> Runtime {
        let services = registry.apply(&config.services, config.registry.clone());
        let credentials = config
            .services
            .iter()
            .map(|s| {
                let spec = s.client_credentials.as_ref()?;
                Some(
                    previous
                        .and_then(|p| p.token_source(&s.name))
                        .filter(|kept| kept.spec() == spec)
                        .cloned()
                        .unwrap_or_else(|| {
                            TokenSource::new(
                                &s.name,
                                spec.clone(),
                                Box::new(OAuth2Endpoint::new(spec)),
                                metrics.client_credentials(&s.name),
                            )
                        }),
                )
            })
            .collect();
        let service_names: Vec<Arc<str>> = config
            .services
            .iter()
            .map(|s| Arc::from(s.name.as_str()))
            .collect();
        let route_metrics = config
            .router
            .routes()
            .iter()
            .map(|r| metrics.route(&r.name, &service_names[r.service]))
            .collect();
        let route_other_metrics = config
            .router
            .routes()
            .iter()
            .map(|r| {
                let sides = r
                    .split
                    .iter()
                    .flat_map(|s| s.sides.iter().map(|d| d.service));
                let mut others: Vec<usize> = sides.chain(r.fallback).collect();
                others.retain(|s| *s != r.service);
                others.sort_unstable();
                others.dedup();
                others
                    .into_iter()
                    .map(|s| (s, metrics.route(&r.name, &service_names[s])))
                    .collect()
            })
            .collect();
        let split_metrics = config
            .router
            .routes()
            .iter()
            .map(|r| {
                let split = r.split.as_ref()?;
                Some(Box::new(RouteSplitMetrics {
                    sides: split
                        .sides
                        .iter()
                        .map(|d| metrics.split_side(&r.name, &config.services[d.service].name))
                        .collect(),
                    override_ignored: metrics.override_ignored(&r.name),
                }))
            })
            .collect();
        let service_metrics = config
            .services
            .iter()
            .map(|s| metrics.service(&s.name))
            .collect();
        let shadows: Vec<Option<Arc<ShadowState>>> = config
            .router
            .routes()
            .iter()
            .map(|r| {
                let s = r.shadow.as_ref()?;
                let service = &config.services[s.service].name;
                // Each copy in the queue may hold a request and an answer; requests still
                // being captured share the same budget.
                let budget = s.queue.saturating_mul(s.max_body).saturating_mul(2);
                Some(
                    metrics
                        .shadows
                        .state(&r.name, service, &s.compare, s.queue, budget),
                )
            })
            .collect();
        let route_count = config.router.routes().len();
        let shadowed: Vec<&str> = shadows.iter().flatten().map(|s| s.route.as_str()).collect();
        metrics.shadows.retain(&shadowed);
        Runtime {
            config,
            services,
            service_names,
            route_gateway_metrics: (0..route_count).map(|_| OnceLock::new()).collect(),
            route_metrics,
            route_other_metrics,
            split_metrics,
            service_metrics,
            shadows,
            credentials,
            generation,
        }
    }

    /// The request metrics of route `route` served by `service`.
    pub fn route_metrics_for(&self, route: usize, service: usize) -> &RouteMetrics {
        let own = &self.route_metrics[route];
        if service == self.config.router.route(route).service {
            return own;
        }
        self.route_other_metrics[route]
            .iter()
            .find(|(i, _)| *i == service)
            .map_or(own, |(_, m)| m)
    }

    /// The request metrics of route `route`'s requests answered by the gateway itself
    /// (`service=""`), made from `metrics` on the first one.
    pub fn route_gateway_metrics(&self, route: usize, metrics: &Metrics) -> &RouteMetrics {
        self.route_gateway_metrics[route].get_or_init(|| {
            let name = &self.config.router.route(route).name;
            metrics.route(name, &Arc::from(""))
        })
    }

    /// The token source of the service named `name`, if it has client credentials.
    pub fn token_source(&self, name: &str) -> Option<&Arc<TokenSource>> {
        let i = self.config.service_index(name)?;
        self.credentials[i].as_ref()
    }
}

/// A split route's counters: one per side (indexed like its sides) and the ignored
/// overrides.
pub struct RouteSplitMetrics {
    pub sides: Vec<Arc<SplitSideMetrics>>,
    pub override_ignored: Arc<AtomicU64>,
}

/// Settings that only take effect at start-up, by name, when they differ.
fn restart_only_changes(
    old: &crate::config::GatewaySettings,
    new: &crate::config::GatewaySettings,
) -> Vec<&'static str> {
    let listener_key = |l: &crate::config::Listener| {
        (
            l.addr,
            l.http2,
            l.h2c,
            l.tls
                .iter()
                .map(|c| (c.cert_path.clone(), c.key_path.clone(), c.hosts.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let mut out = Vec::new();
    if old
        .listeners
        .iter()
        .map(listener_key)
        .ne(new.listeners.iter().map(listener_key))
    {
        out.push("`listen` (addresses, TLS certificates, http2, h2c)");
    }
    if old.admin != new.admin {
        out.push("`admin`");
    }
    if old.threads != new.threads {
        out.push("`threads`");
    }
    if old.limits.keepalive_timeout != new.limits.keepalive_timeout {
        out.push(
            "`limits.keepalive_timeout` for HTTP/2 connections (HTTP/1 uses the new value now)",
        );
    }
    out
}

/// Process-wide state shared by the proxy, the admin listener and background tasks.
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    /// The migration board's history of the route counters (written by its sampler).
    pub board: crate::board::Board,
    inflight: AtomicUsize,
    /// Connections accepted whose first request is not finished yet (the TLS handshake,
    /// the first head on its way): a drain waits for them as for requests in flight.
    opening: AtomicUsize,
    draining: AtomicBool,
    listening: AtomicBool,
    /// Set the first time the gateway was ready: later reloads (a new policy, new
    /// instances) do not take a serving gateway out of its load balancer again.
    ready_once: AtomicBool,
    /// Set once a binary upgrade handed the listening sockets to a new process: the admin
    /// listener stops accepting (the new process answers on the same socket).
    handed_over: tokio::sync::watch::Sender<bool>,
    /// The snapshot's generation, readable without touching the snapshot (connection
    /// loops use it to refresh what they cached).
    generation: AtomicU64,
    /// When the process started serving, for [`READY_GRACE`].
    started: std::time::Instant,
    pub config_path: PathBuf,
    /// The admin address at start: a reload cannot move the admin listener.
    admin: std::net::SocketAddr,
}

/// How long `/readyz` waits at start for policies to become ready (an auth policy's first
/// key-set fetch) and for health probes to settle (a first healthy instance, or a verdict
/// on every instance) before it reports ready anyway. An identity provider or a service
/// that is down at start must not keep every gateway out of a load balancer, which would
/// take down the routes that do not need it; the routes that do answer `503` until it is
/// reached.
pub const READY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts a request as in flight until dropped.
pub struct InflightGuard(Arc<Shared>);

impl InflightGuard {
    /// Whether the gateway is draining (its answers then close the connection).
    pub fn draining(&self) -> bool {
        self.0.is_draining()
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a new connection as opening (see [`Shared::begin_opening`]) until dropped.
pub struct OpeningGuard(Arc<Shared>);

impl Drop for OpeningGuard {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Applied { generation: u64, warnings: usize },
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let metrics = Metrics::default();
        let registry = Arc::new(Registry::default());
        let path = config.path.clone();
        let admin = config.gateway.admin;
        let runtime = Runtime::new(config, &metrics, &registry, 1, None);
        // The board's first reading (all zeros) before any request can arrive, so its
        // windows count every request of the process even if its sampler starts late.
        let board = crate::board::Board::from_env();
        board.sample(&runtime);
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            registry,
            board,
            inflight: AtomicUsize::new(0),
            opening: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            ready_once: AtomicBool::new(false),
            handed_over: tokio::sync::watch::Sender::new(false),
            generation: AtomicU64::new(1),
            started: std::time::Instant::now(),
            config_path: path,
            admin,
        })
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The generation of the current snapshot (1 at start, +1 per applied reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current request limits, without taking a reference on the snapshot.
    pub fn limits(&self) -> crate::config::Limits {
        self.runtime.load().config.gateway.limits
    }

    pub fn begin_request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// A connection just accepted: until its first request is done, a drain waits for it
    /// (a client that connected just before the listener closed is served, not reset).
    pub fn begin_opening(self: &Arc<Self>) -> OpeningGuard {
        self.opening.fetch_add(1, Ordering::AcqRel);
        OpeningGuard(self.clone())
    }

    /// What a drain waits for: requests in flight and connections still opening.
    pub fn busy(&self) -> usize {
        self.inflight() + self.opening.load(Ordering::Acquire)
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Records that a new process serves the listening sockets ([`crate::upgrade`]).
    pub fn set_handed_over(&self) {
        self.handed_over.send_replace(true);
    }

    /// Resolves once the listening sockets were handed to a new process.
    pub async fn handed_over(&self) {
        let mut rx = self.handed_over.subscribe();
        let _ = rx.wait_for(|h| *h).await;
    }

    /// Marks the proxy listeners as accepting connections.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// Ready to serve: the proxy listeners accept, the gateway is not draining, and, the
    /// first time, every policy in use is ready (an auth policy has its key set) and every
    /// health-checked service's probes have settled, or [`READY_GRACE`] has passed. Once
    /// ready, only draining makes it not ready again.
    pub fn is_ready(&self) -> bool {
        if !self.listening.load(Ordering::Acquire) || self.is_draining() {
            return false;
        }
        if self.ready_once.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.started.elapsed() >= READY_GRACE
            || (self.unready_policy().is_none() && self.registry.unsettled_service().is_none());
        if ready {
            self.ready_once.store(true, Ordering::Release);
        }
        ready
    }

    /// What start-up readiness still waits for (`policy auth.corp`, `the first health
    /// verdicts of service orders`), if anything.
    pub fn waiting_for(&self) -> Option<String> {
        if let Some(p) = self.unready_policy() {
            return Some(format!("policy {p}"));
        }
        self.registry
            .unsettled_service()
            .map(|s| format!("the first health verdicts of service {s}"))
    }

    /// A policy in use that is not ready yet (`auth.corp`), if any.
    pub fn unready_policy(&self) -> Option<String> {
        let rt = self.runtime.load();
        let unready = rt
            .config
            .policies
            .iter()
            .find(|p| !p.plugin.ready())
            .map(|p| format!("{}.{}", p.kind, p.name));
        unready
    }

    /// Reads, compiles and swaps in the config file. On error nothing changes and the
    /// failure is counted.
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigError> {
        self.reload_from(&self.config_path)
    }

    pub fn reload_from(&self, path: &Path) -> Result<ReloadOutcome, ConfigError> {
        let current = self.runtime.load();
        // Policies whose sections did not change keep their instances (and caches); the
        // registry-write guard judges the admin address actually bound.
        let running = config::Running {
            policies: &current.config.policies,
            admin: self.admin,
            max_config_bytes: current.config.gateway.bounds.max_config_bytes,
        };
        // A panic while compiling (a bug) must not take the watcher thread, and with it
        // every later reload, down: it is a failed reload like any other.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            config::load_with(path, Some(&running))
        }))
        .unwrap_or_else(|_| {
            Err(ConfigError::Internal {
                path: path.display().to_string(),
            })
        });
        match loaded {
            Ok(cfg) => {
                for what in restart_only_changes(&current.config.gateway, &cfg.gateway) {
                    tracing::warn!(
                        "{what} changed in {}; this applies at the next restart",
                        path.display()
                    );
                }
                // The config is applied, but what `ficus check` would warn about is worth
                // seeing in the log too.
                for w in &cfg.warnings {
                    tracing::warn!("{w}");
                }
                let warnings = cfg.warnings.len();
                let generation = current.generation + 1;
                self.runtime.store(Arc::new(Runtime::new(
                    cfg,
                    &self.metrics,
                    &self.registry,
                    generation,
                    Some(&current),
                )));
                self.generation.store(generation, Ordering::Release);
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(ReloadOutcome::Applied {
                    generation,
                    warnings,
                })
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// The policy background service reads the current snapshot's policies from here.
impl crate::policy::tasks::PolicySource for Shared {
    fn generation(&self) -> u64 {
        Shared::generation(self)
    }

    fn policies(&self) -> Vec<Arc<crate::policy::PolicyInstance>> {
        self.runtime
            .load()
            .config
            .policies
            .iter()
            .cloned()
            .collect()
    }
}

/// The credentials background service reads the current snapshot's token sources here.
impl crate::upstream::credentials::CredentialSources for Shared {
    fn token_sources(&self) -> Vec<Arc<TokenSource>> {
        self.runtime
            .load()
            .credentials
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}
