//! Policy instances and the per-route plugin chains built from them.
//!
//! A policy section of routes.toml (`[access.office]`) compiles to one
//! [`PolicyInstance`]: the plugin built from its settings. Routes name policies; each route
//! gets a [`Chain`], its policies in the fixed stage order, split per hook so a request
//! only visits the plugins that implement the phase it is in.
//!
//! Instances outlive a reload when their section compiles to the same settings
//! ([`instantiate`] looks in the previous snapshot's [`Policies`]), so caches and counters
//! inside a plugin survive edits elsewhere in routes.toml. Their background work is run by
//! [`tasks::PolicyTasks`]. This module does not parse routes.toml (that is `config`'s job)
//! and does not run hooks (that is the proxy's).

pub mod tasks;

use ficus_plugins::{Plugin, PolicyKind, Stage};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// One configured policy: a plugin instance and what it was built from.
pub struct PolicyInstance {
    /// The section kind (`access`).
    pub kind: &'static str,
    /// The policy's name (`office` for `[access.office]`).
    pub name: Arc<str>,
    pub stage: Stage,
    /// Unique per built instance in this process: unchanged across a reload that keeps
    /// the instance.
    pub id: u64,
    /// When this instance was built.
    pub built: SystemTime,
    pub plugin: Arc<dyn Plugin>,
    /// The compiled settings (a `K::Settings`), compared on reload.
    settings: Arc<dyn Any + Send + Sync>,
}

impl PolicyInstance {
    /// The compiled settings when they are an `S` (the kind's `Settings`): for tools that
    /// describe a policy (`ficus explain`) from the values its plugin decides on.
    pub fn settings<S: 'static>(&self) -> Option<&S> {
        self.settings.downcast_ref()
    }
}

impl std::fmt::Debug for PolicyInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}#{}", self.kind, self.name, self.id)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The instance for policy `name` of kind `K` with these settings: the previous
/// snapshot's when its settings are equal, else a new one.
pub fn instantiate<K: PolicyKind>(
    name: &str,
    settings: K::Settings,
    previous: Option<&Policies>,
) -> Arc<PolicyInstance> {
    if let Some(old) = previous.and_then(|p| p.get(K::SECTION, name)) {
        if old
            .settings
            .downcast_ref::<K::Settings>()
            .is_some_and(|s| *s == settings)
        {
            return old.clone();
        }
    }
    let settings = Arc::new(settings);
    Arc::new(PolicyInstance {
        kind: K::SECTION,
        name: name.into(),
        stage: K::STAGE,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        built: SystemTime::now(),
        plugin: K::build(name, settings.clone()),
        settings,
    })
}

/// Every policy of one config snapshot.
#[derive(Default, Debug)]
pub struct Policies {
    list: Vec<Arc<PolicyInstance>>,
}

impl Policies {
    pub fn insert(&mut self, p: Arc<PolicyInstance>) {
        self.list.push(p);
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Arc<PolicyInstance>> {
        self.list
            .iter()
            .find(|p| p.kind == kind && &*p.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<PolicyInstance>> {
        self.list.iter()
    }

    /// Every header an auth policy sets from a verified identity, once each.
    pub fn identity_headers(&self) -> Box<[http::HeaderName]> {
        let mut out: Vec<http::HeaderName> = Vec::new();
        for a in self
            .list
            .iter()
            .filter_map(|p| p.plugin.clone().authenticator())
        {
            for h in a.common().identity_headers() {
                if !out.contains(h) {
                    out.push(h.clone());
                }
            }
        }
        out.into_boxed_slice()
    }
}

/// One step of a route's chain: a plugin at a stage, and the policies it stands for (a
/// policy's own plugin, or a route-bound plugin over several policies, like the auth gate
/// over a route's `auth` list).
pub struct Link {
    pub stage: Stage,
    pub plugin: Arc<dyn Plugin>,
    pub policies: Vec<Arc<PolicyInstance>>,
}

impl Link {
    /// A policy whose plugin runs as it is.
    pub fn policy(p: Arc<PolicyInstance>) -> Link {
        Link {
            stage: p.stage,
            plugin: p.plugin.clone(),
            policies: vec![p],
        }
    }
}

/// A route's plugins, in stage order, split by hook. Most routes have none: those hold
/// no allocation and 8 bytes (the hooks are read through `Deref`, an empty set for them).
#[derive(Default, Clone)]
pub struct Chain(Option<Box<ChainHooks>>);

/// The plugins of a [`Chain`] by hook.
#[derive(Default, Clone)]
pub struct ChainHooks {
    /// Every policy of the route, in stage order.
    pub policies: Box<[Arc<PolicyInstance>]>,
    pub request: Box<[Arc<dyn Plugin>]>,
    pub upstream_request: Box<[Arc<dyn Plugin>]>,
    /// Response hooks run in reverse stage order: the outermost policy (CORS) edits last
    /// and sees the head as the others left it.
    pub response: Box<[Arc<dyn Plugin>]>,
    pub log: Box<[Arc<dyn Plugin>]>,
}

/// What a route without policies runs: nothing.
static NO_HOOKS: std::sync::LazyLock<ChainHooks> = std::sync::LazyLock::new(ChainHooks::default);

impl std::ops::Deref for Chain {
    type Target = ChainHooks;

    fn deref(&self) -> &ChainHooks {
        self.0.as_deref().unwrap_or(&NO_HOOKS)
    }
}

impl Chain {
    /// The chain for these links, whatever order they come in.
    pub fn new(mut links: Vec<Link>) -> Chain {
        if links.is_empty() {
            return Chain(None);
        }
        links.sort_by_key(|l| l.stage);
        let with = |f: fn(&ficus_plugins::Hooks) -> bool| -> Box<[Arc<dyn Plugin>]> {
            links
                .iter()
                .filter(|l| f(&l.plugin.hooks()))
                .map(|l| l.plugin.clone())
                .collect()
        };
        let request = with(|h| h.request);
        let upstream_request = with(|h| h.upstream_request);
        let mut response = with(|h| h.response).into_vec();
        response.reverse();
        let log = with(|h| h.log);
        Chain(Some(Box::new(ChainHooks {
            policies: links.into_iter().flat_map(|l| l.policies).collect(),
            request,
            upstream_request,
            response: response.into_boxed_slice(),
            log,
        })))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.policies.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_plugins::access::{Access, AccessSettings};
    use ficus_plugins::net::Cidr;

    fn settings(allow: &str) -> AccessSettings {
        AccessSettings {
            allow: vec![Cidr::parse(allow).unwrap()],
            deny: vec![],
        }
    }

    #[test]
    fn unchanged_settings_keep_the_instance_changed_ones_get_a_new_one() {
        let mut first = Policies::default();
        first.insert(instantiate::<Access>(
            "office",
            settings("10.0.0.0/8"),
            None,
        ));
        first.insert(instantiate::<Access>("vpn", settings("10.8.0.0/16"), None));
        let kept = instantiate::<Access>("office", settings("10.0.0.0/8"), Some(&first));
        assert!(Arc::ptr_eq(&kept, first.get("access", "office").unwrap()));
        let changed = instantiate::<Access>("vpn", settings("10.9.0.0/16"), Some(&first));
        assert!(!Arc::ptr_eq(&changed, first.get("access", "vpn").unwrap()));
        assert_ne!(changed.id, first.get("access", "vpn").unwrap().id);
        // Same settings under another name is another policy.
        let other = instantiate::<Access>("lab", settings("10.0.0.0/8"), Some(&first));
        assert_ne!(other.id, kept.id);
    }

    #[test]
    fn chain_is_split_by_hook() {
        let a = instantiate::<Access>("a", settings("10.0.0.0/8"), None);
        let chain = Chain::new(vec![Link::policy(a.clone())]);
        assert_eq!(chain.request.len(), 1);
        assert!(chain.upstream_request.is_empty());
        assert!(chain.response.is_empty());
        assert!(chain.log.is_empty());
        assert!(!chain.is_empty());
    }
}
