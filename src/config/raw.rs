//! The raw serde model of routes.toml: a one-to-one mirror of the file.
//!
//! Nothing here is used on the request path. `compile` turns these types into runtime types.
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[gateway]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    #[serde(default)]
    pub listen: Vec<Spanned<RawListen>>,
    pub admin: Option<Spanned<String>>,
    pub threads: Option<Spanned<usize>>,
    pub grace_period: Option<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    /// This gateway's zone, for zone-aware load balancing.
    pub zone: Option<String>,
    /// Send header names with the spelling the client or upstream used (default true).
    pub preserve_header_case: Option<bool>,
    /// W3C trace context: "start" (default), "continue" or "off".
    pub trace_context: Option<Spanned<String>>,
    /// The `[cors.NAME]` policy of routes that name none.
    pub cors: Option<Spanned<String>>,
    /// The `[rate_limits.NAME]` policy of routes that name none.
    pub rate_limit: Option<Spanned<String>>,
    /// The services the migration board counts as the legacy: a name or a list of names.
    pub legacy: Option<Spanned<RawLegacy>>,
    /// Admin reads (registry, metrics, board, shadow) need the registry token even on a
    /// loopback admin listener (always true for one other hosts can reach).
    pub admin_reads_need_token: Option<bool>,
    /// The largest routes.toml a reload accepts (signed so a negative number gets a clear
    /// error rather than serde's).
    pub max_config_bytes: Option<Spanned<i64>>,
    /// The most `[[routes]]` a config may hold.
    pub max_routes: Option<Spanned<i64>>,
}

/// `legacy = "monolith"` or `legacy = ["monolith", "old-billing"]`; each name with its
/// position (the single-string form: the whole value's, set by the caller).
#[derive(Debug)]
pub struct RawLegacy(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for RawLegacy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = RawLegacy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a service name or a list of service names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawLegacy, E> {
                Ok(RawLegacy(vec![Spanned::new(0..0, v.to_string())]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawLegacy, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<Spanned<String>>()? {
                    names.push(n);
                }
                Ok(RawLegacy(names))
            }
        }
        d.deserialize_any(Names)
    }
}

/// `[registry]`: the embedded service registry.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Accept self-registration through the admin API (default true).
    pub registration: Option<bool>,
    /// Bearer token required for registry writes.
    pub token: Option<Spanned<String>>,
    /// Environment variable holding the bearer token (keeps secrets out of the file).
    pub token_env: Option<Spanned<String>>,
    /// DNS server for `dns` discovery (default: the system resolver).
    pub dns_resolver: Option<Spanned<String>>,
    /// TTL of a registration when the registrant gives none.
    pub default_ttl: Option<Spanned<String>>,
    /// Accept registrations of link-local addresses (default false).
    pub allow_link_local: Option<bool>,
}

/// A `listen` entry: an address string or a listener table.
#[derive(Debug)]
pub enum RawListen {
    Addr(String),
    Table(RawListener),
}

impl<'de> StringOrTable<'de> for RawListen {
    type Table = RawListener;
    const EXPECTING: &'static str =
        "an address string like \"127.0.0.1:8080\" or a table with `addr`";
    fn from_string(s: &str) -> Self {
        RawListen::Addr(s.to_string())
    }
    fn from_table(t: RawListener) -> Self {
        RawListen::Table(t)
    }
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_table(d)
    }
}

/// An entry that may be written as a string or as a table (`listen`, `instances`).
///
/// Such entries dispatch on the TOML type instead of using `#[serde(untagged)]`: untagged
/// buffers the value and so loses the spans the table's `Spanned` fields need (certificate
/// entries and their `hosts` are reported at their own position), and it hides an unknown
/// key in the table behind "did not match any variant", so a typo such as `wieght` would
/// not be named.
pub trait StringOrTable<'de>: Sized {
    /// The table form, with `deny_unknown_fields`.
    type Table: Deserialize<'de>;
    /// What the entry should look like, for the error about any other type.
    const EXPECTING: &'static str;
    fn from_string(s: &str) -> Self;
    fn from_table(t: Self::Table) -> Self;
}

/// Deserializes a [`StringOrTable`] entry.
fn string_or_table<'de, T: StringOrTable<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    struct Entry<T>(std::marker::PhantomData<T>);
    impl<'de, T: StringOrTable<'de>> serde::de::Visitor<'de> for Entry<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            Ok(T::from_string(v))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(T::from_table)
        }
    }
    d.deserialize_any(Entry(std::marker::PhantomData))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    pub tls: Option<RawListenerTls>,
    /// Offer HTTP/2 by ALPN; on by default on TLS listeners.
    pub http2: Option<bool>,
    #[serde(default)]
    pub h2c: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub certificates: Vec<Spanned<RawCertificate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
}

/// `[gateway.limits]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub body_read_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub send_timeout: Option<Spanned<String>>,
    /// The most connections the admin listener holds open at once.
    pub admin_connections: Option<Spanned<usize>>,
    /// File descriptors the admin listener leaves to the proxy.
    pub admin_reserved_fds: Option<usize>,
    pub tls_handshake_timeout: Option<Spanned<String>>,
    /// Connections one client address may hold open on the proxy listeners (0: no cap).
    pub max_connections_per_client: Option<usize>,
    pub new_connections_per_client_per_second: Option<u32>,
    // What requests may hold in flight (compiled in `in_flight.rs`).
    pub h2_max_concurrent_streams: Option<Spanned<u32>>,
    pub max_upstream_requests: Option<Spanned<usize>>,
    pub max_upstream_requests_per_connection: Option<Spanned<usize>>,
    pub max_upstream_requests_per_client: Option<Spanned<usize>>,
    pub max_waiting_upstream_requests: Option<Spanned<usize>>,
    pub client_stall_timeout: Option<Spanned<String>>,
}

/// `[services.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub instances: Vec<Spanned<RawInstance>>,
    pub tls: Option<RawUpstreamTls>,
    pub timeouts: Option<RawTimeouts>,
    pub dns: Option<Spanned<RawDns>>,
    /// Accept self-registrations for this service (default: `[registry] registration`).
    pub registration: Option<bool>,
    pub health: Option<Spanned<RawHealth>>,
    pub outlier: Option<Spanned<RawOutlier>>,
    pub breaker: Option<Spanned<RawBreaker>>,
    pub max_concurrent: Option<Spanned<usize>>,
    pub lb: Option<Spanned<String>>,
    pub hash_on: Option<Spanned<String>>,
    #[serde(default)]
    pub prefer_zone: bool,
    pub panic_threshold: Option<Spanned<f64>>,
    pub retry_budget: Option<RawRetryBudget>,
    /// Close pooled upstream connections idle this long (default: keep them until the
    /// upstream closes them; dead peers are found by TCP keep-alive).
    pub pool_idle_timeout: Option<Spanned<String>>,
    /// ficus's own OAuth2 token for this service, sent in place of the client's
    /// `Authorization`.
    pub client_credentials: Option<Spanned<RawClientCredentials>>,
}

/// `client_credentials = { ... }` of a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCredentials {
    pub token_url: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret_file: Option<Spanned<String>>,
    pub client_secret_env: Option<Spanned<String>>,
    /// Accepted only to be refused with a hint: secrets never stand in routes.toml. Its
    /// value is not kept.
    pub client_secret: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    pub resource: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// A/AAAA name (needs `port`).
    pub name: Option<String>,
    pub port: Option<u16>,
    /// SRV name, e.g. `_http._tcp.orders.example`.
    pub srv: Option<String>,
    pub min_ttl: Option<Spanned<String>>,
    pub max_ttl: Option<Spanned<String>>,
    /// DNS server for this service (overrides `[registry] dns_resolver`).
    pub resolver: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// `http` (default when `path` is set) or `tcp`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    /// Expected status range, e.g. `"200-399"` or `"200"`.
    pub expect_status: Option<String>,
    pub body_contains: Option<String>,
    pub host: Option<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Random extra delay as a fraction of `interval` (default 0.1).
    pub jitter: Option<f64>,
    pub healthy_after: Option<u32>,
    pub unhealthy_after: Option<u32>,
    /// Whether a new instance gets traffic before its first successful probes.
    #[serde(default)]
    pub start_healthy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_failures: Option<u32>,
    pub base_ejection_time: Option<Spanned<String>>,
    pub max_ejection_time: Option<Spanned<String>>,
    pub max_ejection_percent: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<Spanned<f64>>,
    pub min_requests: Option<u32>,
    pub window: Option<Spanned<String>>,
    pub open_for: Option<Spanned<String>>,
    pub half_open_requests: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    pub ratio: Option<f64>,
    pub min_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    /// Total tries including the first (1 = no retry).
    pub attempts: Option<Spanned<u32>>,
    /// Also retry non-idempotent methods (POST, PATCH). Retries happen only after a connect
    /// failure or a broken connection before the response, never after a timeout or a 5xx.
    #[serde(default)]
    pub non_idempotent: bool,
}

/// An `instances` entry: an address string or a table with `addr`, `weight`, `zone`.
#[derive(Debug)]
pub enum RawInstance {
    Addr(String),
    Table(RawInstanceTable),
}

impl<'de> StringOrTable<'de> for RawInstance {
    type Table = RawInstanceTable;
    const EXPECTING: &'static str =
        "an address string like \"127.0.0.1:8081\" or a table with `addr`";
    fn from_string(s: &str) -> Self {
        RawInstance::Addr(s.to_string())
    }
    fn from_table(t: RawInstanceTable) -> Self {
        RawInstance::Table(t)
    }
}

impl<'de> Deserialize<'de> for RawInstance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_table(d)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceTable {
    pub addr: String,
    pub weight: Option<u32>,
    pub zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Spanned<String>>,
    pub read: Option<Spanned<String>>,
    pub total: Option<Spanned<String>>,
}

/// `[[routes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Spanned<RawMatch>,
    /// The one service of the route; a route has this or `split`.
    pub service: Option<Spanned<String>>,
    /// Services sharing the route's traffic by weight.
    pub split: Option<Spanned<Vec<Spanned<RawSplitSide>>>>,
    /// What keeps a user on one side of the split.
    pub sticky: Option<Spanned<RawSticky>>,
    /// A header testers may name a split's service in, to force that side.
    #[serde(rename = "override")]
    pub split_override: Option<Spanned<RawOverride>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<String>>,
    #[serde(default)]
    pub request_headers: RawHeaderEdits,
    #[serde(default)]
    pub response_headers: RawHeaderEdits,
    pub timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Service to use when this route's service is unavailable (breaker open, no instance).
    pub fallback: Option<Spanned<String>>,
    pub retries: Option<RawRetries>,
    /// The `[access.NAME]` policy for this route.
    pub access: Option<Spanned<String>>,
    /// The `[auth.NAME]` policies for this route: one name, or a list any one of which may
    /// accept the token.
    pub auth: Option<Spanned<NameList>>,
    /// Scopes a verified token must carry (every one).
    pub scopes: Option<Spanned<Vec<Spanned<String>>>>,
    /// Rules on the verified token's claims (every one must hold).
    #[serde(default)]
    pub claims: Vec<Spanned<ficus_plugins::auth::requirements::ClaimRuleConfig>>,
    /// `[cors.NAME]` for this route, or `false` to opt out of `[gateway] cors`.
    pub cors: Option<Spanned<PolicyRef>>,
    /// `[rate_limits.NAME]` for this route, or `false` to opt out of `[gateway] rate_limit`.
    pub rate_limit: Option<Spanned<PolicyRef>>,
    /// Copies of the route's requests sent to another service and compared.
    pub shadow: Option<Spanned<RawShadow>>,
}

/// `shadow = { service = "orders-v2", sample = 0.25, compare = { … } }`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { service = \"NAME\", sample = 0.25 }"
)]
pub struct RawShadow {
    pub service: Spanned<String>,
    pub sample: Option<Spanned<f64>>,
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub timeout: Option<Spanned<String>>,
    /// Signed so a negative number gets a clear error rather than serde's.
    pub max_body_bytes: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<String>>,
    pub compare: Option<Spanned<crate::shadow::CompareConfig>>,
}

/// A `split` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitSide {
    pub service: Spanned<String>,
    /// Signed so a negative weight gets a clear error rather than serde's "expected u32".
    pub weight: Spanned<i64>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<String>>,
}

/// `sticky = { cookie = "uid" }` and its siblings: exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub cookie: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
    pub claim: Option<Spanned<String>>,
    pub client_ip: Option<Spanned<bool>>,
}

/// `override = { header = "X-Ficus-Target" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    pub header: Spanned<String>,
}

/// A route's reference to a policy that may have a gateway-wide default: a name, or
/// `false` for none (not even the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    Name(String),
    Off,
}

impl PolicyRef {
    /// The policy a route uses: its own reference, else the gateway's default. `None` when
    /// the route opts out or neither names one. The name keeps the position it was written
    /// at, for errors.
    pub fn effective(
        route: Option<&Spanned<PolicyRef>>,
        default: Option<&Spanned<String>>,
    ) -> Option<Spanned<String>> {
        match route {
            Some(r) => match r.get_ref() {
                PolicyRef::Name(n) => Some(Spanned::new(r.span(), n.clone())),
                PolicyRef::Off => None,
            },
            None => default.cloned(),
        }
    }
}

impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ref;
        impl<'de> serde::de::Visitor<'de> for Ref {
            type Value = PolicyRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a policy name, or `false` for none")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PolicyRef, E> {
                Ok(PolicyRef::Name(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<PolicyRef, E> {
                if v {
                    Err(E::custom(
                        "`true` names no policy: write a policy name, or `false` to opt out of the gateway's default",
                    ))
                } else {
                    Ok(PolicyRef::Off)
                }
            }
        }
        d.deserialize_any(Ref)
    }
}

/// A policy name or a list of them (`auth = "corp"`, `auth = ["corp", "partners"]`).
#[derive(Debug)]
pub enum NameList {
    One(String),
    List(Vec<Spanned<String>>),
}

impl NameList {
    /// The names with their positions; a single name takes the position of the key's value.
    pub fn names(list: &Spanned<NameList>) -> Vec<Spanned<String>> {
        match list.get_ref() {
            NameList::One(n) => vec![Spanned::new(list.span(), n.clone())],
            NameList::List(l) => l.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = NameList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a policy name or a list of names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NameList, E> {
                Ok(NameList::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NameList, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = seq.next_element::<Spanned<String>>()? {
                    out.push(n);
                }
                Ok(NameList::List(out))
            }
        }
        d.deserialize_any(Names)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Spanned<String>,
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub add: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}
