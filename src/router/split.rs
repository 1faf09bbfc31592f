//! Weighted traffic splits between services (`split = [...]` on a route): the compiled
//! split, and the pure arithmetic that maps a request to a side.
//!
//! A request is mapped to a point in `[0, total weight)`; the sides own consecutive ranges of
//! that interval in config order (`[0, w0)`, `[w0, w0 + w1)`, ...). A sticky key is hashed
//! to its point with a fixed, seedless hash, so every gateway (and every restart) puts a
//! key at the same point, and a weight change moves exactly the keys whose point lies in
//! the range that changed hands. Without a key the point is random.
//!
//! This module reads nothing from a request: the proxy extracts the key (cookie, header,
//! claim, client address) and the override, then calls [`Split::side_at`].

use http::HeaderName;

use super::rewrite::Rewrite;

/// One side of a split: a service, its weight and its own path rules.
#[derive(Debug, Clone)]
pub struct Side {
    /// Index of the service in the runtime's service list.
    pub service: usize,
    pub weight: u32,
    /// This side's `strip_prefix`; `None` with no `rewrite` either means the route's.
    pub strip_prefix: Option<String>,
    /// This side's `rewrite`; see `strip_prefix`.
    pub rewrite: Option<Rewrite>,
}

impl Side {
    /// Whether the side has path rules of its own (else the route's apply).
    pub fn has_own_path_rules(&self) -> bool {
        self.strip_prefix.is_some() || self.rewrite.is_some()
    }
}

/// What keeps a user on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Cookie(String),
    Header(HeaderName),
    /// A claim of the verified identity, by dotted path (`sub`, `org.id`).
    Claim(String),
    ClientIp,
}

impl std::fmt::Display for StickyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StickyKey::Cookie(c) => write!(f, "cookie `{c}`"),
            StickyKey::Header(h) => write!(f, "header `{h}`"),
            StickyKey::Claim(c) => write!(f, "claim `{c}` of the verified identity"),
            StickyKey::ClientIp => f.write_str("client address"),
        }
    }
}

/// A compiled `split`: at least one side with a weight above zero.
#[derive(Debug, Clone)]
pub struct Split {
    /// In config order, which fixes the ranges (see the module comment).
    pub sides: Vec<Side>,
    pub sticky: Option<StickyKey>,
    /// The header a tester may name a side's service in.
    pub override_header: Option<HeaderName>,
    /// Sum of the weights; above zero (checked when compiling).
    total: u64,
}

impl Split {
    /// A split of `sides`; `None` when no side has a weight.
    pub fn new(
        sides: Vec<Side>,
        sticky: Option<StickyKey>,
        override_header: Option<HeaderName>,
    ) -> Option<Split> {
        let total: u64 = sides.iter().map(|s| u64::from(s.weight)).sum();
        (total > 0).then_some(Split {
            sides,
            sticky,
            override_header,
            total,
        })
    }

    /// Sum of the weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A side's share of the traffic, in percent.
    pub fn percent(&self, side: usize) -> f64 {
        self.sides
            .get(side)
            .map_or(0.0, |s| f64::from(s.weight) * 100.0 / self.total as f64)
    }

    /// The side whose range holds `unit` (a 64-bit fraction of the whole interval: the
    /// point is `unit / 2^64` of the total weight).
    pub fn side_at(&self, unit: u64) -> usize {
        // floor(unit * total / 2^64) is below `total`, and an integer boundary `b` holds
        // `point < b` exactly when the fraction does, so ranges are exact.
        let point = ((u128::from(unit) * u128::from(self.total)) >> 64) as u64;
        let mut end = 0u64;
        for (i, s) in self.sides.iter().enumerate() {
            end += u64::from(s.weight);
            if point < end {
                return i;
            }
        }
        // Unreachable while `point < total`; the last weighted side is the safe answer.
        self.sides.iter().rposition(|s| s.weight > 0).unwrap_or(0)
    }

    /// The side of a sticky key's value.
    pub fn side_of_key(&self, key: &[u8]) -> usize {
        self.side_at(key_point(key))
    }

    /// The side for a request without a key.
    pub fn random_side(&self) -> usize {
        self.side_at(fastrand::u64(..))
    }

    /// The side whose service is called `name` (the override's value), given the service
    /// names of the runtime.
    pub fn side_named<'n>(
        &self,
        name: &[u8],
        service_name: impl Fn(usize) -> &'n str,
    ) -> Option<usize> {
        self.sides
            .iter()
            .position(|s| service_name(s.service).as_bytes() == name)
    }

    /// The side that sends to `service`, if any.
    pub fn side_of_service(&self, service: usize) -> Option<&Side> {
        self.sides.iter().find(|s| s.service == service)
    }
}

/// The point of a sticky key: FNV-1a over the bytes from a split-specific offset, then a
/// splitmix64 finalizer. Fixed constants only, so every process agrees; the offset keeps
/// it independent of the load balancer's hash of the same cookie (otherwise the keys
/// sent to one side would all sit on one arc of that side's hash ring).
pub fn key_point(key: &[u8]) -> u64 {
    const SPLIT_OFFSET: u64 = 0x6669_6375_735f_7370; // "ficus_sp"
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ SPLIT_OFFSET;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u32]) -> Split {
        let sides = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Side {
                service: i,
                weight: *w,
                strip_prefix: None,
                rewrite: None,
            })
            .collect();
        Split::new(sides, None, None).unwrap()
    }

    #[test]
    fn all_zero_is_no_split() {
        assert!(Split::new(vec![], None, None).is_none());
        let zero = Side {
            service: 0,
            weight: 0,
            strip_prefix: None,
            rewrite: None,
        };
        assert!(Split::new(vec![zero], None, None).is_none());
    }

    #[test]
    fn ranges_follow_config_order_and_skip_zero_weights() {
        let s = split(&[90, 10]);
        assert_eq!(s.side_at(0), 0);
        assert_eq!(s.side_at(u64::MAX), 1);
        // 0.9 of the interval is the boundary.
        let boundary = (u64::MAX / 10) * 9;
        assert_eq!(s.side_at(boundary - 1000), 0);
        assert_eq!(s.side_at(boundary + 1000), 1);
        let z = split(&[0, 5, 0]);
        for u in [0, 1 << 63, u64::MAX] {
            assert_eq!(z.side_at(u), 1);
        }
    }

    #[test]
    fn raising_a_weight_moves_only_keys_in_the_shifted_range() {
        let before = split(&[90, 10]);
        let after = split(&[80, 20]);
        let mut moved = 0;
        for i in 0..10_000u32 {
            let key = format!("user-{i}");
            let (b, a) = (
                before.side_of_key(key.as_bytes()),
                after.side_of_key(key.as_bytes()),
            );
            assert!(!(b == 1 && a == 0), "{key} moved back to the old side");
            if b != a {
                moved += 1;
            }
        }
        assert!((800..1200).contains(&moved), "moved {moved} of 10000");
    }

    #[test]
    fn key_points_are_fixed_and_spread() {
        // Pinned: another gateway (or a later build) must put a user on the same side.
        assert_eq!(key_point(b"alice"), 0x8959_c4d2_1a07_45e2);
        assert_ne!(key_point(b"alice"), key_point(b"bob"));
        let s = split(&[50, 50]);
        let ones = (0..10_000)
            .filter(|i| s.side_of_key(format!("{i}").as_bytes()) == 1)
            .count();
        assert!((4_700..5_300).contains(&ones), "{ones}");
    }

    #[test]
    fn random_sides_follow_the_weights() {
        let s = split(&[75, 25]);
        let ones = (0..20_000).filter(|_| s.random_side() == 1).count();
        assert!((4_600..5_400).contains(&ones), "{ones}");
    }
}
