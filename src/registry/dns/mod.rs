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
//!
//! This file holds what a lookup asks and answers ([`DnsQuery`], [`DnsAnswer`], [`DnsError`])
//! and the TTL clamp; `resolver.rs` the resolver and its host and SRV lookups; `records.rs`
//! the A/AAAA lookups of one name and the reading of hickory's records and errors.

mod records;
mod resolver;

pub use resolver::DnsResolver;

use std::net::SocketAddr;
use std::time::Duration;

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

/// Clamps a record TTL into `[floor, ceiling]`. If `floor > ceiling`, the ceiling wins.
pub fn clamp_ttl(ttl: Duration, floor: Duration, ceiling: Duration) -> Duration {
    ttl.max(floor).min(ceiling)
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
    fn normalize_sorts_and_keeps_largest_weight_per_address() {
        let a: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.1:81".parse().unwrap();
        let got = normalize(vec![(a, 1), (b, 3), (a, 7), (c, 2), (b, 3)]);
        assert_eq!(got, vec![(b, 3), (c, 2), (a, 7)]);
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
}
