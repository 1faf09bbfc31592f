//! Prometheus metrics: counters and histograms kept in atomics, rendered on scrape.
//!
//! Handles are created when a config is compiled and looked up by name, so counters survive
//! reloads. The request path only touches atomics of handles it already holds; the maps
//! here are locked only at reload and scrape time.
//!
//! This file holds [`Metrics`], the process's handle maps and the lookups that hand a handle
//! out; `handles.rs` the handles themselves (per route, service, split side, credentials,
//! upstream load, reload failures); `render.rs` the Prometheus text of a scrape.

mod handles;
mod render;

pub use handles::{
    CredentialMetrics, Histogram, ReloadFailures, RouteMetrics, ServiceMetrics, SplitSideMetrics,
    UpstreamErrorKind, UpstreamLoad, LATENCY_BUCKETS, RELOAD_FAILURE_REASONS,
};
pub use render::{render_samples, render_service_info, LabelValue};

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// A route's handle key: (route, service).
type RouteKey = (Arc<str>, Arc<str>);

/// All metrics of the process.
#[derive(Default, Debug)]
pub struct Metrics {
    /// By (route, service), the names shared with the running config (see [`Metrics::route`]).
    routes: Mutex<HashMap<RouteKey, Arc<RouteMetrics>>>,
    services: Mutex<HashMap<String, Arc<ServiceMetrics>>>,
    /// Sides of split routes, by (route, service).
    split_sides: Mutex<HashMap<(String, String), Arc<SplitSideMetrics>>>,
    /// Override headers a split route ignored (naming no service of its split), by route.
    overrides_ignored: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Only services that have (or had) `client_credentials`.
    credentials: Mutex<HashMap<String, Arc<CredentialMetrics>>>,
    /// Shadowed routes' records and copies in flight, by route.
    pub shadows: crate::shadow::store::ShadowStates,
    /// Requests that matched no route (or failed before routing).
    pub unrouted: Arc<RouteMetrics>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Failed reloads by why they failed (counted by the config watcher).
    pub reload_failures: ReloadFailures,
    pub upstream_load: Arc<UpstreamLoad>,
}

impl Metrics {
    /// The handle of `route` served by `service`: the one counting since the route first
    /// appeared, or a new one. The key takes the caller's names (those of the config being
    /// applied), so the names of a config that was replaced are not kept alive by the map.
    pub fn route(&self, route: &Arc<str>, service: &Arc<str>) -> Arc<RouteMetrics> {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let key = (route.clone(), service.clone());
        let handle = m.remove(&key).unwrap_or_default();
        m.insert(key, handle.clone());
        handle
    }

    pub fn service(&self, service: &str) -> Arc<ServiceMetrics> {
        let mut m = self.services.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(service.to_string()).or_default().clone()
    }

    pub fn split_side(&self, route: &str, service: &str) -> Arc<SplitSideMetrics> {
        let mut m = self.split_sides.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((route.to_string(), service.to_string()))
            .or_default()
            .clone()
    }

    pub fn override_ignored(&self, route: &str) -> Arc<AtomicU64> {
        let mut m = self
            .overrides_ignored
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.entry(route.to_string()).or_default().clone()
    }

    pub fn client_credentials(&self, service: &str) -> Arc<CredentialMetrics> {
        let mut m = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(service.to_string()).or_default().clone()
    }
}

/// The entries of a handle map, sorted by key, so a scrape lists them in a stable order.
fn sorted<K: Clone + Ord, V>(map: &Mutex<HashMap<K, Arc<V>>>) -> Vec<(K, Arc<V>)> {
    let m = map.lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
