//! `GET /policies`: the policy instances of the running config, for operators (which
//! policies are loaded, which routes use them) and to see that a reload kept an instance
//! (its `id` and `built` stay the same) or replaced it.

use serde::Serialize;
use std::time::UNIX_EPOCH;

use crate::runtime::Runtime;

#[derive(Serialize)]
struct PolicyView<'a> {
    kind: &'a str,
    name: &'a str,
    /// Unique per built instance; unchanged while a reload keeps the instance.
    id: u64,
    /// When the instance was built, in milliseconds since the Unix epoch.
    built_unix_ms: u128,
    /// The routes that use it, in priority order.
    routes: Vec<&'a str>,
}

/// The listing.
#[derive(Serialize)]
pub struct PoliciesView<'a> {
    generation: u64,
    policies: Vec<PolicyView<'a>>,
}

impl<'a> PoliciesView<'a> {
    pub fn of(rt: &'a Runtime) -> PoliciesView<'a> {
        let routes = rt.config.router.routes();
        let policies = rt
            .config
            .policies
            .iter()
            .map(|p| PolicyView {
                kind: p.kind,
                name: &p.name,
                id: p.id,
                built_unix_ms: p
                    .built
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
                routes: routes
                    .iter()
                    .filter(|r| r.chain.policies.iter().any(|q| q.id == p.id))
                    .map(|r| &*r.name)
                    .collect(),
            })
            .collect();
        PoliciesView {
            generation: rt.generation,
            policies,
        }
    }
}
