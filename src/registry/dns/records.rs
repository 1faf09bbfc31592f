//! Reading DNS records: the A and AAAA lookups of one name (asked concurrently, one family
//! allowed to fail), the addresses in an answer or additional section, and hickory's errors
//! mapped to [`DnsError`].

use std::net::IpAddr;

use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;

use super::{DnsError, PartialAnswer};

/// What [`lookup_addresses`] found.
pub(super) struct Addresses {
    pub(super) ips: Vec<IpAddr>,
    pub(super) ttl: u32,
    pub(super) partial: Option<PartialAnswer>,
}

/// The A and AAAA records of `name`, asked concurrently. Whichever family answered with
/// addresses is used, even if the other failed (servers that refuse or drop AAAA queries are
/// common); the failure is then reported as [`PartialAnswer`]. The lookup fails only when no
/// address came back: with the first failure if a query failed, else as no records.
pub(super) async fn lookup_addresses(
    resolver: &TokioResolver,
    name: Name,
) -> Result<Addresses, DnsError> {
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
pub(super) fn addresses_in(records: &[Record], target: &Name) -> (Vec<IpAddr>, u32) {
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

pub(super) fn map_err(name: &Name, kind: &str, e: NetError) -> DnsError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::dns::resolver::fqdn;

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
}
