//! [`DnsResolver`]: hickory set up to ask afresh every time, and the lookups it runs: a host
//! name's A/AAAA records with the configured port, or SRV records and their targets. Names are
//! made fully qualified here (`fqdn`), so search domains never apply.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;

use super::records::{addresses_in, lookup_addresses, map_err};
use super::{normalize, DnsAnswer, DnsError, DnsQuery};

/// Per-request timeout given to hickory.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per request (hickory retries a failed request this many times).
const ATTEMPTS: usize = 2;
/// TTL reported for an IP literal given as a host name (no DNS record involved): one day, the
/// largest TTL hickory itself uses; the caller clamps it to its ceiling.
const LITERAL_TTL: Duration = Duration::from_secs(86_400);

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

/// The name as a fully-qualified DNS name (trailing dot added when missing), so that search
/// domains never apply.
pub(super) fn fqdn(name: &str) -> Result<Name, DnsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
