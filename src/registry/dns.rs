//! DNS service discovery: the instances of a service as published in DNS, the way Kubernetes
//! headless services (one A/AAAA record per ready pod, plus SRV records per named port) and
//! Consul's DNS interface (`<service>.service.consul` A/AAAA and SRV) publish them.
//!
//! [`DnsResolver::lookup`] asks the DNS server afresh every time (hickory's cache is disabled),
//! and reports the smallest TTL among the records it used, so the caller can schedule the next
//! lookup with [`clamp_ttl`] and follow changes as soon as the records' TTL allows.
//!
//! Names are always treated as fully qualified (a trailing dot is added when missing), so the
//! search domains of /etc/resolv.conf never apply: `orders.default.svc.cluster.local` is asked
//! as exactly that name, not `orders.default.svc.cluster.local.default.svc.cluster.local.`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;

/// Per-request timeout given to hickory.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per request (hickory retries a failed request this many times).
const ATTEMPTS: usize = 2;
/// TTL reported for an IP literal given as a host name (no DNS record involved): one day, the
/// largest TTL hickory itself uses; the caller clamps it to its ceiling.
const LITERAL_TTL: Duration = Duration::from_secs(86_400);

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// A and AAAA records of `name`, each address with `port`.
    Host { name: String, port: u16 },
    /// SRV records (e.g. `_http._tcp.orders.example`): each target's A/AAAA addresses with the
    /// SRV port.
    Srv { name: String },
}

impl DnsQuery {
    /// The name this query asks about, as configured.
    pub fn name(&self) -> &str {
        match self {
            DnsQuery::Host { name, .. } | DnsQuery::Srv { name } => name,
        }
    }
}

/// The result of a successful lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// Instances found: address and weight (SRV weight, 0 mapped to 1; A/AAAA weight 1).
    /// Sorted by address and deduplicated by address (if several SRV records lead to the same
    /// address and port, the largest weight is kept).
    pub instances: Vec<(SocketAddr, u32)>,
    /// The smallest TTL among the records used (not clamped; the caller clamps).
    pub ttl: Duration,
    /// Set when one address family failed (e.g. the server REFUSED the AAAA query) while the
    /// other answered with addresses: the answer holds only the family that answered.
    pub partial: Option<PartialAnswer>,
}

/// Which family is missing from a partial answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialAnswer {
    /// The family that failed: `true` for IPv6 (AAAA), `false` for IPv4 (A).
    pub missing_ipv6: bool,
    pub error: DnsError,
}

impl DnsAnswer {
    /// The instance set to use, given the set in use so far: a partial answer keeps the
    /// previous instances of the family that failed (a refused or timed-out query says
    /// nothing about whether they are gone), everything else is replaced.
    pub fn merged_with(&self, previous: &[(SocketAddr, u32)]) -> Vec<(SocketAddr, u32)> {
        let Some(p) = &self.partial else {
            return self.instances.clone();
        };
        let mut merged = self.instances.clone();
        merged.extend(
            previous
                .iter()
                .filter(|(addr, _)| addr.is_ipv6() == p.missing_ipv6),
        );
        normalize(merged)
    }
}

/// Why a lookup failed. The messages are meant for an operator reading the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The configured name is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The DNS server answered, but there is no usable record (NXDOMAIN, no data of the asked
    /// type, or no SRV target that resolves to an address).
    #[error("{0}")]
    NoRecords(String),
    /// The lookup itself failed: timeout, unreachable server, SERVFAIL, REFUSED, ...
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup { name: String, reason: String },
    /// The resolver could not be set up (e.g. /etc/resolv.conf unreadable).
    #[error("DNS resolver configuration error: {0}")]
    Config(String),
}

/// Looks up service instances in DNS. Cheap to share behind an `Arc`; every lookup goes to the
/// DNS server (no caching here).
pub struct DnsResolver {
    resolver: TokioResolver,
    server: Option<SocketAddr>,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = match self.server {
            Some(addr) => addr.to_string(),
            None => "system configuration".to_string(),
        };
        f.debug_struct("DnsResolver")
            .field("server", &server)
            .finish()
    }
}

impl DnsResolver {
    /// `server`: a specific DNS server (UDP, falling back to TCP for truncated answers) to ask,
    /// e.g. 127.0.0.1:5353; `None` = the system configuration (/etc/resolv.conf, whose search
    /// domains never apply because names are made fully qualified).
    ///
    /// No caching in hickory, no /etc/hosts when a server is given (with `None`, /etc/hosts is
    /// consulted first, as the system resolver would), request timeout 2 s, 2 attempts.
    pub fn new(server: Option<SocketAddr>) -> Result<Self, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut ns.connections {
                    conn.port = addr.port();
                }
                let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
                let mut builder = TokioResolver::builder_with_config(config, provider);
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => TokioResolver::builder(provider).map_err(|e| {
                DnsError::Config(format!("cannot read the system DNS configuration: {e}"))
            })?,
        };
        let opts = builder.options_mut();
        opts.timeout = REQUEST_TIMEOUT;
        opts.attempts = ATTEMPTS;
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(format!("cannot build the DNS resolver: {e}")))?;
        Ok(DnsResolver { resolver, server })
    }

    /// Looks the query up. An empty instance set is never returned: no records is
    /// [`DnsError::NoRecords`].
    pub async fn lookup(&self, query: &DnsQuery) -> Result<DnsAnswer, DnsError> {
        match query {
            DnsQuery::Host { name, port } => {
                if let Ok(ip) = IpAddr::from_str(name.trim()) {
                    return Ok(DnsAnswer {
                        instances: vec![(SocketAddr::new(ip, *port), 1)],
                        ttl: LITERAL_TTL,
                        partial: None,
                    });
                }
                let fqdn = fqdn(name)?;
                let found = lookup_addresses(&self.resolver, fqdn).await?;
                let instances = found
                    .ips
                    .into_iter()
                    .map(|ip| (SocketAddr::new(ip, *port), 1))
                    .collect();
                Ok(DnsAnswer {
                    instances: normalize(instances),
                    ttl: Duration::from_secs(u64::from(found.ttl)),
                    partial: found.partial,
                })
            }
            DnsQuery::Srv { name } => {
                let fqdn = fqdn(name)?;
                self.lookup_srv(fqdn).await
            }
        }
    }

    async fn lookup_srv(&self, name: Name) -> Result<DnsAnswer, DnsError> {
        let lookup = self
            .resolver
            .lookup(name.clone(), RecordType::SRV)
            .await
            .map_err(|e| map_err(&name, "SRV", e))?;

        let srvs: Vec<(&Record, &SRV)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some((r, srv)),
                _ => None,
            })
            .collect();
        let Some(lowest) = srvs.iter().map(|(_, srv)| srv.priority).min() else {
            return Err(DnsError::NoRecords(format!("no SRV records for {name}")));
        };
        let chosen: Vec<_> = srvs
            .into_iter()
            .filter(|(_, srv)| srv.priority == lowest)
            .collect();
        let mut ttl = chosen.iter().map(|(r, _)| r.ttl).min().unwrap_or(0);

        // Resolve each distinct target once: first from the additional section, else by asking.
        let mut targets: BTreeMap<Name, Option<Vec<IpAddr>>> = BTreeMap::new();
        for (_, srv) in &chosen {
            // RFC 2782: a target of "." means the service is decidedly not available there.
            if !srv.target.is_root() {
                targets.entry(srv.target.clone()).or_insert(None);
            }
        }
        if targets.is_empty() {
            return Err(DnsError::NoRecords(format!(
                "the SRV records of {name} (priority {lowest}) all have target \".\" \
                 (service not available)"
            )));
        }
        let mut to_ask = Vec::new();
        for (target, addrs) in targets.iter_mut() {
            let (ips, min_ttl) = addresses_in(lookup.additionals(), target);
            if ips.is_empty() {
                to_ask.push(target.clone());
            } else {
                ttl = ttl.min(min_ttl);
                *addrs = Some(ips);
            }
        }
        let mut failures = Vec::new();
        let mut transport_failure = false;
        if !to_ask.is_empty() {
            let mut set = tokio::task::JoinSet::new();
            for target in to_ask {
                let resolver = self.resolver.clone();
                set.spawn(async move {
                    let result = lookup_addresses(&resolver, target.clone()).await;
                    (target, result)
                });
            }
            while let Some(joined) = set.join_next().await {
                let (target, result) = joined.map_err(|e| DnsError::Lookup {
                    name: name.to_string(),
                    reason: format!("SRV target lookup task failed: {e}"),
                })?;
                match result {
                    Ok(found) => {
                        if let Some(p) = &found.partial {
                            tracing::debug!(srv = %name, target = %target, error = %p.error,
                                "SRV target: one address family failed; using the other");
                        }
                        ttl = ttl.min(found.ttl);
                        targets.insert(target, Some(found.ips));
                    }
                    Err(e) => {
                        tracing::debug!(srv = %name, target = %target, error = %e,
                            "SRV target does not resolve; skipped");
                        transport_failure |= matches!(e, DnsError::Lookup { .. });
                        failures.push(e.to_string());
                    }
                }
            }
        }

        let mut instances = Vec::new();
        for (_, srv) in &chosen {
            if let Some(Some(ips)) = targets.get(&srv.target) {
                let weight = u32::from(srv.weight.max(1));
                instances.extend(
                    ips.iter()
                        .map(|ip| (SocketAddr::new(*ip, srv.port), weight)),
                );
            }
        }
        if instances.is_empty() {
            let detail = format!(
                "no target of the SRV records of {name} (priority {lowest}) resolves to an \
                 address: {}",
                failures.join("; ")
            );
            return Err(if transport_failure {
                DnsError::Lookup {
                    name: name.to_string(),
                    reason: detail,
                }
            } else {
                DnsError::NoRecords(detail)
            });
        }
        Ok(DnsAnswer {
            instances: normalize(instances),
            ttl: Duration::from_secs(u64::from(ttl)),
            partial: None,
        })
    }
}

/// Clamps a record TTL into `[floor, ceiling]`. If `floor > ceiling`, the ceiling wins.
pub fn clamp_ttl(ttl: Duration, floor: Duration, ceiling: Duration) -> Duration {
    ttl.max(floor).min(ceiling)
}

/// The name as a fully-qualified DNS name (trailing dot added when missing), so that search
/// domains never apply.
fn fqdn(name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: &str| DnsError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(invalid("empty name"));
    }
    if trimmed.contains(char::is_whitespace) {
        return Err(invalid("contains whitespace"));
    }
    let absolute = if trimmed.ends_with('.') {
        trimmed.to_string()
    } else {
        format!("{trimmed}.")
    };
    let parsed = Name::from_str(&absolute).map_err(|e| invalid(&e.to_string()))?;
    if parsed.is_root() || !parsed.is_fqdn() {
        return Err(invalid("not a domain name"));
    }
    Ok(parsed)
}

/// What [`lookup_addresses`] found.
struct Addresses {
    ips: Vec<IpAddr>,
    ttl: u32,
    partial: Option<PartialAnswer>,
}

/// The A and AAAA records of `name`, asked concurrently. Whichever family answered with
/// addresses is used, even if the other failed (servers that refuse or drop AAAA queries are
/// common); the failure is then reported as [`PartialAnswer`]. The lookup fails only when no
/// address came back: with the first failure if a query failed, else as no records.
async fn lookup_addresses(resolver: &TokioResolver, name: Name) -> Result<Addresses, DnsError> {
    let (v4, v6) = tokio::join!(
        resolver.lookup(name.clone(), RecordType::A),
        resolver.lookup(name.clone(), RecordType::AAAA)
    );
    let family = |result: Result<Lookup, NetError>, kind: &str| match result {
        Ok(lookup) => Ok(addresses_of(&lookup)),
        Err(e) if is_no_records(&e) => Ok((Vec::new(), u32::MAX)),
        Err(e) => Err(map_err(&name, kind, e)),
    };
    merge_families(&name, family(v4, "A"), family(v6, "AAAA"))
}

/// Combines the A and AAAA outcomes (addresses and smallest TTL, or the failure).
fn merge_families(
    name: &Name,
    v4: Result<(Vec<IpAddr>, u32), DnsError>,
    v6: Result<(Vec<IpAddr>, u32), DnsError>,
) -> Result<Addresses, DnsError> {
    let mut ips = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut failed: Option<(bool, DnsError)> = None;
    for (result, is_v6) in [(v4, false), (v6, true)] {
        match result {
            Ok((found, min_ttl)) => {
                if !found.is_empty() {
                    ips.extend(found);
                    ttl = Some(ttl.map_or(min_ttl, |t| t.min(min_ttl)));
                }
            }
            Err(e) => {
                failed.get_or_insert((is_v6, e));
            }
        }
    }
    match (ttl, failed) {
        (Some(ttl), failed) => Ok(Addresses {
            ips,
            ttl,
            partial: failed.map(|(missing_ipv6, error)| PartialAnswer {
                missing_ipv6,
                error,
            }),
        }),
        (None, Some((_, e))) => Err(e),
        (None, None) => Err(DnsError::NoRecords(format!(
            "no A or AAAA records for {name}"
        ))),
    }
}

/// The addresses in a lookup's answer section and the smallest TTL of the records on the way
/// (address records and any CNAMEs leading to them).
fn addresses_of(lookup: &Lookup) -> (Vec<IpAddr>, u32) {
    let mut ips = Vec::new();
    let mut ttl = u32::MAX;
    for r in lookup.answers() {
        match &r.data {
            RData::A(a) => {
                ips.push(IpAddr::V4(a.0));
                ttl = ttl.min(r.ttl);
            }
            RData::AAAA(aaaa) => {
                ips.push(IpAddr::V6(aaaa.0));
                ttl = ttl.min(r.ttl);
            }
            RData::CNAME(_) => ttl = ttl.min(r.ttl),
            _ => {}
        }
    }
    (ips, ttl)
}

/// The A/AAAA records of `target` among `records` (an additional section) and their smallest
/// TTL.
fn addresses_in(records: &[Record], target: &Name) -> (Vec<IpAddr>, u32) {
    let mut ips = Vec::new();
    let mut ttl = u32::MAX;
    for r in records.iter().filter(|r| &r.name == target) {
        match &r.data {
            RData::A(a) => ips.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => ips.push(IpAddr::V6(aaaa.0)),
            _ => continue,
        }
        ttl = ttl.min(r.ttl);
    }
    (ips, ttl)
}

fn is_no_records(e: &NetError) -> bool {
    matches!(e, NetError::Dns(HickoryDnsError::NoRecordsFound(_)))
}

fn map_err(name: &Name, kind: &str, e: NetError) -> DnsError {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => {
            let why = if nr.response_code == ResponseCode::NXDomain {
                "the name does not exist (NXDOMAIN)".to_string()
            } else {
                "no records of that type".to_string()
            };
            DnsError::NoRecords(format!("no {kind} records for {name}: {why}"))
        }
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => DnsError::Lookup {
            name: name.to_string(),
            reason: format!("{kind} query answered with {code}"),
        },
        NetError::Timeout => DnsError::Lookup {
            name: name.to_string(),
            reason: format!("{kind} query timed out"),
        },
        other => DnsError::Lookup {
            name: name.to_string(),
            reason: format!("{kind} query: {other}"),
        },
    }
}

/// Sorts by address and keeps one entry per address (the largest weight).
fn normalize(mut instances: Vec<(SocketAddr, u32)>) -> Vec<(SocketAddr, u32)> {
    // Largest weight first within an address, so dedup keeps it.
    instances.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    instances.dedup_by_key(|(addr, _)| *addr);
    instances
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn clamp_ttl_raises_to_floor() {
        assert_eq!(clamp_ttl(S(0), S(1), S(60)), S(1));
        assert_eq!(clamp_ttl(Duration::from_millis(10), S(5), S(60)), S(5));
    }

    #[test]
    fn clamp_ttl_lowers_to_ceiling() {
        assert_eq!(clamp_ttl(S(86_400), S(1), S(60)), S(60));
        assert_eq!(clamp_ttl(Duration::MAX, S(1), S(300)), S(300));
    }

    #[test]
    fn clamp_ttl_keeps_values_inside() {
        assert_eq!(clamp_ttl(S(30), S(1), S(60)), S(30));
        assert_eq!(clamp_ttl(S(1), S(1), S(60)), S(1));
        assert_eq!(clamp_ttl(S(60), S(1), S(60)), S(60));
    }

    #[test]
    fn clamp_ttl_ceiling_wins_when_bounds_cross() {
        assert_eq!(clamp_ttl(S(10), S(30), S(20)), S(20));
    }

    #[test]
    fn names_become_fully_qualified() {
        let n = fqdn("orders.example").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_string(), "orders.example.");
        assert_eq!(n.num_labels(), 2);
    }

    #[test]
    fn fully_qualified_names_are_kept() {
        let n = fqdn("orders.example.").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_string(), "orders.example.");
        assert_eq!(n, fqdn("orders.example").unwrap());
    }

    #[test]
    fn single_label_names_are_not_searched() {
        // A bare label would normally get resolv.conf's search domains; here it is absolute.
        let n = fqdn("orders").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_string(), "orders.");
    }

    #[test]
    fn srv_names_with_underscores_parse() {
        let n = fqdn("_http._tcp.orders.default.svc.cluster.local").unwrap();
        assert_eq!(
            n.to_string(),
            "_http._tcp.orders.default.svc.cluster.local."
        );
        assert_eq!(n.num_labels(), 7);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(
            fqdn("  orders.example \n").unwrap().to_string(),
            "orders.example."
        );
    }

    #[test]
    fn invalid_names_are_rejected_with_the_name_in_the_message() {
        for bad in ["", "   ", ".", "a..b", "orders example", "a.b.."] {
            let err = fqdn(bad).expect_err(bad);
            assert!(
                matches!(&err, DnsError::InvalidName { name, .. } if name == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("invalid DNS name"), "{err}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(fqdn(&long_label).is_err());
    }

    #[test]
    fn normalize_sorts_and_keeps_largest_weight_per_address() {
        let a: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.1:81".parse().unwrap();
        let got = normalize(vec![(a, 1), (b, 3), (a, 7), (c, 2), (b, 3)]);
        assert_eq!(got, vec![(b, 3), (c, 2), (a, 7)]);
    }

    #[test]
    fn a_failed_family_does_not_discard_the_other() {
        let name = fqdn("orders.test").unwrap();
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        let v6: IpAddr = "::2".parse().unwrap();
        let refused = |kind: &str| DnsError::Lookup {
            name: "orders.test.".into(),
            reason: format!("{kind} query answered with Query Refused"),
        };
        // AAAA refused, A answered: the A records are used, the answer marked partial.
        let got = merge_families(&name, Ok((vec![v4], 5)), Err(refused("AAAA"))).unwrap();
        assert_eq!((got.ips, got.ttl), (vec![v4], 5));
        let p = got.partial.unwrap();
        assert!(p.missing_ipv6);
        assert_eq!(p.error, refused("AAAA"));
        // And the other way round.
        let got = merge_families(&name, Err(refused("A")), Ok((vec![v6], 7))).unwrap();
        assert_eq!(got.ips, vec![v6]);
        assert!(!got.partial.unwrap().missing_ipv6);
        // Both answered: complete.
        let got = merge_families(&name, Ok((vec![v4], 9)), Ok((vec![v6], 3))).unwrap();
        assert_eq!((got.ips.len(), got.ttl, got.partial), (2, 3, None));
        // No address anywhere: a failure wins over "no records".
        let err = merge_families(&name, Ok((vec![], u32::MAX)), Err(refused("AAAA")));
        assert_eq!(err.err(), Some(refused("AAAA")));
        let err = merge_families(&name, Ok((vec![], u32::MAX)), Ok((vec![], u32::MAX)));
        assert!(matches!(err, Err(DnsError::NoRecords(_))));
    }

    #[test]
    fn a_partial_answer_keeps_the_previous_instances_of_the_failed_family() {
        let a1: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let a2: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b1: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let answer = DnsAnswer {
            instances: vec![(a2, 1)],
            ttl: S(1),
            partial: Some(PartialAnswer {
                missing_ipv6: true,
                error: DnsError::NoRecords("x".into()),
            }),
        };
        // IPv4 follows the answer (a1 is gone); IPv6 is kept as it was.
        assert_eq!(
            answer.merged_with(&[(a1, 1), (b1, 1)]),
            vec![(a2, 1), (b1, 1)]
        );
        let complete = DnsAnswer {
            partial: None,
            ..answer
        };
        assert_eq!(complete.merged_with(&[(a1, 1), (b1, 1)]), vec![(a2, 1)]);
    }

    #[test]
    fn query_name_accessor() {
        let q = DnsQuery::Host {
            name: "h.example".into(),
            port: 80,
        };
        assert_eq!(q.name(), "h.example");
        let q = DnsQuery::Srv {
            name: "_x._tcp.example".into(),
        };
        assert_eq!(q.name(), "_x._tcp.example");
    }

    #[test]
    fn building_a_resolver_needs_no_runtime_and_no_network() {
        let r = DnsResolver::new(Some("127.0.0.1:53".parse().unwrap())).unwrap();
        assert_eq!(
            format!("{r:?}"),
            r#"DnsResolver { server: "127.0.0.1:53" }"#
        );
    }

    #[tokio::test]
    async fn ip_literals_need_no_dns() {
        // The server address is unroutable: the literal must not cause a query.
        let r = DnsResolver::new(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let got = r
            .lookup(&DnsQuery::Host {
                name: "192.0.2.7".into(),
                port: 8080,
            })
            .await
            .unwrap();
        assert_eq!(got.instances, vec![("192.0.2.7:8080".parse().unwrap(), 1)]);
        let got = r
            .lookup(&DnsQuery::Host {
                name: "2001:db8::1".into(),
                port: 443,
            })
            .await
            .unwrap();
        assert_eq!(
            got.instances,
            vec![("[2001:db8::1]:443".parse().unwrap(), 1)]
        );
    }

    #[tokio::test]
    async fn invalid_name_fails_before_any_query() {
        let r = DnsResolver::new(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let err = r
            .lookup(&DnsQuery::Srv {
                name: "bad..name".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::InvalidName { .. }), "{err:?}");
    }
}
