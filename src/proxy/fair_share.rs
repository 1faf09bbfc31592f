//! Who may take one more upstream slot when the gateway's slots are contended: the
//! per-address rules beyond the fixed per-client cap, so that a handful of addresses
//! cannot take the whole gateway-wide cap between them (issue 13, re-check: with the cap
//! per address at a quarter, four addresses took all 2,048 slots).
//!
//! Two rules, both judged with what a request already knows (the count of its address's
//! entry, the gateway's count in use, the number of addresses holding a slot), O(1):
//! - **Fair share.** Once half the gateway-wide cap is in use, an address may take another
//!   slot only while it holds fewer than `max_upstream_requests ÷ addresses holding a
//!   slot`, and never fewer than the floor below.
//! - **Reserve.** The last quarter of the gateway-wide cap is taken only by addresses that
//!   hold fewer than the floor. An address that holds the floor or more never gets one of
//!   those slots, so N busy addresses, whatever N, fill three quarters at most and a client
//!   holding a few requests still finds room. The reserve is exhausted only by many
//!   addresses each holding a few: at least `reserve ÷ floor` of them (32 by default), which
//!   the per-address rules cannot tell from real users.
//!
//! The floor is one connection's worth (`max_upstream_requests_per_connection`, 16 by
//! default: a browser page's dozen requests at once), never more than the reserve.
//! Nothing here counts or locks: `in_flight.rs` calls these while it holds the address's
//! entry and while it takes the gateway's count.

use crate::config::InFlightLimits;

/// The gateway-wide cap is contended from this fraction of it in use (one half).
const CONTENDED_DIVISOR: usize = 2;

/// The reserve is this fraction of the gateway-wide cap (a quarter).
const RESERVE_DIVISOR: usize = 4;

/// The per-address rules of one config, derived once per request from its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairShare {
    cap: usize,
    contended_from: usize,
    /// Slots at or above this count are the reserve.
    reserve_from: usize,
    /// An address holding fewer than this is "small": it passes the fair-share rule and
    /// may take the reserve.
    floor: usize,
}

impl FairShare {
    pub fn new(limits: &InFlightLimits) -> FairShare {
        let cap = limits.max_upstream_requests;
        let reserve = cap / RESERVE_DIVISOR;
        FairShare {
            cap,
            contended_from: cap / CONTENDED_DIVISOR,
            reserve_from: cap - reserve,
            floor: limits
                .max_upstream_requests_per_connection
                .min(reserve)
                .max(1),
        }
    }

    /// Whether an address holding `holding` slots may take one more by the fair-share
    /// rule, with `in_use` slots in use gateway-wide and `holders` addresses holding one.
    pub fn within_share(&self, holding: usize, in_use: usize, holders: usize) -> bool {
        if in_use < self.contended_from || holding < self.floor {
            return true;
        }
        holding < (self.cap / holders.max(1)).max(self.floor)
    }

    /// Whether the gateway's count may go from `in_use` to one more for an address that
    /// held `holding` slots before this one: the gateway-wide cap, and its reserve for
    /// addresses holding fewer than the floor.
    pub fn gateway_admits(&self, in_use: usize, holding: usize) -> bool {
        in_use < self.cap && (in_use < self.reserve_from || holding < self.floor)
    }

    /// The slots that only addresses holding fewer than the floor may take.
    pub fn reserve(&self) -> usize {
        self.cap - self.reserve_from
    }

    pub fn floor(&self) -> usize {
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(cap: usize, per_conn: usize) -> FairShare {
        FairShare::new(&InFlightLimits {
            max_upstream_requests: cap,
            max_upstream_requests_per_connection: per_conn,
            ..InFlightLimits::default()
        })
    }

    #[test]
    fn defaults_reserve_a_quarter_for_addresses_under_one_connection() {
        let r = FairShare::new(&InFlightLimits::default());
        assert_eq!((r.reserve(), r.floor()), (512, 16));
        // Tiny caps: the floor never exceeds the reserve, and is at least one.
        assert_eq!(rules(8, 16).floor(), 2);
        assert_eq!(rules(2, 16).floor(), 1);
    }

    #[test]
    fn the_share_applies_only_under_contention_and_above_the_floor() {
        let r = rules(2048, 16);
        // Uncontended: anything (the per-client cap is the limit then).
        assert!(r.within_share(1000, 1023, 2));
        // Contended, 4 holders: 512 each.
        assert!(r.within_share(511, 1024, 4));
        assert!(!r.within_share(512, 1024, 4));
        // Many holders: the share never falls below the floor.
        assert!(r.within_share(15, 2000, 1000));
        assert!(!r.within_share(16, 2000, 1000));
    }

    #[test]
    fn the_reserve_is_for_small_holders_only() {
        let r = rules(2048, 16);
        assert!(r.gateway_admits(1535, 500));
        assert!(!r.gateway_admits(1536, 16));
        assert!(r.gateway_admits(1536, 15));
        assert!(r.gateway_admits(2047, 0));
        assert!(!r.gateway_admits(2048, 0));
    }

    /// Whatever N busy addresses do (here: take in turns until nobody can take more), a
    /// client holding fewer than the floor still finds a slot while N is under
    /// `reserve ÷ floor` (32 by default).
    #[test]
    fn busy_addresses_leave_the_reserve() {
        for n in [1, 2, 4, 8, 16, 31] {
            let r = rules(2048, 16);
            let mut holding = vec![0usize; n];
            let mut in_use = 0;
            let mut progress = true;
            while progress {
                progress = false;
                for i in 0..n {
                    let holders = holding.iter().filter(|h| **h > 0).count();
                    let h = holding[i];
                    if r.within_share(h, in_use, holders) && r.gateway_admits(in_use, h) {
                        holding[i] += 1;
                        in_use += 1;
                        progress = true;
                    }
                }
            }
            assert!(in_use >= 1536, "{n} addresses took only {in_use}");
            for h in 0..16 {
                assert!(r.gateway_admits(in_use, h), "{n} addresses took {in_use}");
            }
        }
    }
}
