//! Compiled service settings from routes.toml: pure data, no live state.

use http::{HeaderName, Method};
use std::net::SocketAddr;
use std::time::Duration;

use super::dns::DnsQuery;
use crate::upstream::credentials::ClientCredentialsSpec;
use crate::upstream::{Timeouts, UpstreamTls};

/// A static instance from routes.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticInstance {
    pub addr: SocketAddr,
    pub weight: u32,
    pub zone: Option<String>,
}

/// DNS discovery settings of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    pub query: DnsQuery,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// DNS server to ask; `None` = system resolver.
    pub resolver: Option<SocketAddr>,
}

/// What an active probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Tcp,
    Http {
        method: Method,
        path: String,
        host: Option<String>,
        /// Inclusive status range that counts as healthy.
        status: (u16, u16),
        body_contains: Option<String>,
    },
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSpec {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: f64,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
    /// A new instance is eligible before its first probes complete.
    pub start_healthy: bool,
}

/// Passive outlier detection (Istio/Envoy style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSpec {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
            half_open_requests: 3,
        }
    }
}

/// Where a consistent hash takes its key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// Load-balancing policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Hash(HashKey),
}

impl LbPolicy {
    pub fn label(&self) -> String {
        match self {
            LbPolicy::RoundRobin => "round_robin".into(),
            LbPolicy::LeastRequest => "least_request".into(),
            LbPolicy::Hash(HashKey::Header(h)) => format!("hash(header:{h})"),
            LbPolicy::Hash(HashKey::Cookie(c)) => format!("hash(cookie:{c})"),
            LbPolicy::Hash(HashKey::ClientIp) => "hash(client_ip)".into(),
        }
    }
}

/// Retry budget: retries may add at most `ratio` of the requests in the last window, plus
/// `min_retries` so a quiet service can still retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetSpec {
    pub ratio: f64,
    pub min_retries: u32,
}

impl Default for RetryBudgetSpec {
    fn default() -> Self {
        RetryBudgetSpec {
            ratio: 0.2,
            min_retries: 10,
        }
    }
}

/// Everything routes.toml says about one service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub statics: Vec<StaticInstance>,
    pub dns: Option<DnsSpec>,
    pub registration: bool,
    pub tls: Option<UpstreamTls>,
    pub timeouts: Timeouts,
    pub health: Option<HealthSpec>,
    pub outlier: Option<OutlierSpec>,
    pub breaker: Option<BreakerSpec>,
    pub max_concurrent: Option<usize>,
    pub lb: LbPolicy,
    pub prefer_zone: bool,
    pub panic_threshold: Option<f64>,
    pub retry_budget: RetryBudgetSpec,
    /// Idle time after which a pooled upstream connection is closed; `None` keeps it until
    /// the upstream closes it (no per-request timer).
    pub pool_idle_timeout: Option<Duration>,
    /// The OAuth2 client credentials ficus gets its own token with, sent upstream in place
    /// of the client's `Authorization`.
    pub client_credentials: Option<ClientCredentialsSpec>,
}

impl ServiceSpec {
    /// A service with static instances and default settings (tests, benches).
    pub fn with_instances(name: &str, instances: &[(SocketAddr, u32)]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            statics: instances
                .iter()
                .map(|&(addr, weight)| StaticInstance {
                    addr,
                    weight,
                    zone: None,
                })
                .collect(),
            dns: None,
            registration: true,
            tls: None,
            timeouts: Timeouts::default(),
            health: None,
            outlier: Some(OutlierSpec::default()),
            breaker: None,
            max_concurrent: None,
            lb: LbPolicy::RoundRobin,
            prefer_zone: false,
            panic_threshold: None,
            pool_idle_timeout: None,
            retry_budget: RetryBudgetSpec::default(),
            client_credentials: None,
        }
    }
}

/// `[registry]`, compiled.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub registration: bool,
    pub token: Option<String>,
    pub dns_resolver: Option<SocketAddr>,
    pub default_ttl: Duration,
    pub zone: Option<String>,
    /// Accept registrations of link-local addresses (`169.254.0.0/16`, `fe80::/10`: where
    /// cloud metadata services answer); off by default.
    pub allow_link_local: bool,
    /// The gateway's own listener and admin addresses: a registration there would send
    /// traffic back into the gateway.
    pub own_addrs: Vec<std::net::SocketAddr>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            registration: true,
            token: None,
            dns_resolver: None,
            default_ttl: Duration::from_secs(30),
            zone: None,
            allow_link_local: false,
            own_addrs: Vec::new(),
        }
    }
}
