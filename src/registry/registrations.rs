//! Self-registered instances: what registrants added through the admin API, with their
//! TTLs, and the rules for changing them (the registration switches, the bearer token,
//! address and weight checks, the per-service cap, the TTL bounds).
//!
//! Every change to registration state goes through [`Registrations`]: [`add`], [`renew`],
//! [`remove`], [`sweep`] (TTL expiry) and eviction when registration is turned off. The
//! entries live in memory today; the API is shaped so that a shared store can back it later
//! (with etcd: `add` is a put under a lease of the TTL, `renew` a lease keep-alive, `remove`
//! a delete, `sweep` lease expiry). After each change the service's instance set is rebuilt;
//! the rebuild reads the entries back through [`Registrations::for_each`].
//!
//! This file knows nothing about HTTP (the admin listener parses requests) or about config
//! files (it is handed compiled [`RegistrySettings`]).
//!
//! [`add`]: Registrations::add
//! [`renew`]: Registrations::renew
//! [`remove`]: Registrations::remove
//! [`sweep`]: Registrations::sweep

use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::clock::now_ms;
use super::instance::unusable_instance_addr;
use super::spec::{RegistrySettings, ServiceSpec};
use super::{lock, RegistryError, ServiceState};

/// Most self-registrations one service holds. Each costs memory and a line in `/registry`
/// (which every open dashboard fetches each second); a registrant stuck in a loop, or any
/// local process when no token is set, must not be able to grow the gateway without bound.
/// Re-registering an address that is already registered does not count twice.
pub const MAX_REGISTRATIONS_PER_SERVICE: usize = 1000;

/// The TTL bounds a registration is clamped to: a shorter TTL would need a heartbeat more
/// often than the 50 ms expiry sweep can follow reliably, a longer one leaves a dead
/// registrant in the pool for too long.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The heaviest weight a registrant may ask for.
const MAX_WEIGHT: u32 = 10_000;

/// The most bytes an instance's `zone`, `version` and `metadata` keys and values may hold
/// together: what a registry read serves for every instance (a dashboard polls it every
/// second), so a registrant cannot make it large.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// What a registrant sends.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub addr: SocketAddr,
    pub weight: u32,
    pub zone: Option<String>,
    pub version: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// `None` = the registry's default TTL.
    pub ttl: Option<Duration>,
}

impl NewInstance {
    pub fn new(addr: SocketAddr, ttl: Option<Duration>) -> NewInstance {
        NewInstance {
            addr,
            weight: 1,
            zone: None,
            version: None,
            metadata: BTreeMap::new(),
            ttl,
        }
    }
}

/// A self-registered instance: what the registrant sent, with its effective TTL.
#[derive(Debug, Clone)]
pub struct Registration {
    pub instance: NewInstance,
    pub ttl: Duration,
    pub expires_at_ms: u64,
}

/// The `[registry]` settings that govern registration writes.
#[derive(Debug)]
struct Policy {
    enabled: bool,
    token: Option<String>,
    default_ttl: Duration,
    allow_link_local: bool,
    own_addrs: Vec<SocketAddr>,
}

impl From<&RegistrySettings> for Policy {
    fn from(s: &RegistrySettings) -> Policy {
        Policy {
            enabled: s.registration,
            token: s.token.clone(),
            default_ttl: s.default_ttl,
            allow_link_local: s.allow_link_local,
            own_addrs: s.own_addrs.clone(),
        }
    }
}

/// The self-registrations of every service, and the only way to change them.
#[derive(Debug)]
pub struct Registrations {
    policy: ArcSwap<Policy>,
    /// Service name → registration id → registration.
    entries: Mutex<HashMap<String, BTreeMap<String, Registration>>>,
}

impl Default for Registrations {
    fn default() -> Self {
        Registrations {
            policy: ArcSwap::from_pointee(Policy::from(&RegistrySettings::default())),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl Registrations {
    /// Takes the `[registry]` settings of a (re)loaded config.
    pub(super) fn configure(&self, settings: &RegistrySettings) {
        self.policy
            .store(std::sync::Arc::new(Policy::from(settings)));
    }

    /// Whether `[registry] registration` and the service's own switch are both on.
    /// Why a registrant may not name `addr` under this gateway's settings, if it may not:
    /// a link-local address (unless allowed), or one of the gateway's own listeners.
    fn refused_addr(&self, addr: SocketAddr) -> Option<&'static str> {
        let policy = self.policy.load();
        let ip = addr.ip().to_canonical();
        let link_local = match ip {
            std::net::IpAddr::V4(v4) => v4.is_link_local(),
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local && !policy.allow_link_local {
            return Some("a link-local address (where cloud metadata services answer, 169.254.169.254) is refused; `[registry] allow_link_local = true` allows it");
        }
        // A listener on the unspecified address answers on every local address, loopback
        // included.
        let own = policy.own_addrs.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip().to_canonical() == ip
                    || (own.ip().is_unspecified() && ip.is_loopback()))
        });
        own.then_some("this is the gateway's own listener or admin address: traffic sent there would come back into the gateway")
    }

    pub fn accepts(&self, spec: &ServiceSpec) -> bool {
        self.policy.load().enabled && spec.registration
    }

    /// Whether a registry write may proceed: always when no token is configured, otherwise
    /// only with `Authorization: Bearer <token>` (`authorization` is the raw header value).
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let policy = self.policy.load();
        let Some(token) = &policy.token else {
            return true;
        };
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        match authorization {
            Some(v) if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") => {
                token_matches(&v[7..], token.as_bytes())
            }
            _ => false,
        }
    }

    /// Registers an instance with `service`; returns its registration id and effective TTL
    /// (the registrant's, or the default, clamped to [`MIN_TTL`]–[`MAX_TTL`]). Registering
    /// an address that is already registered replaces that registration and keeps its id.
    pub fn add(
        &self,
        service: &ServiceState,
        new: NewInstance,
    ) -> Result<(String, Duration), RegistryError> {
        let name = service.name.as_str();
        if !self.accepts(&service.spec()) {
            return Err(RegistryError::RegistrationDisabled(name.to_string()));
        }
        let addr = new.addr;
        if let Some(why) = unusable_instance_addr(addr) {
            return Err(RegistryError::Invalid(format!("`{addr}`: {why}")));
        }
        if let Some(why) = self.refused_addr(addr) {
            return Err(RegistryError::Invalid(format!("`{addr}`: {why}")));
        }
        let described = new.zone.as_ref().map_or(0, String::len)
            + new.version.as_ref().map_or(0, String::len)
            + new
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if described > MAX_DESCRIPTION_BYTES {
            return Err(RegistryError::Invalid(format!(
                "zone, version and metadata hold {described} bytes together; at most {MAX_DESCRIPTION_BYTES} are kept per instance"
            )));
        }
        if new.weight == 0 || new.weight > MAX_WEIGHT {
            return Err(RegistryError::Invalid(format!(
                "weight must be between 1 and {MAX_WEIGHT}"
            )));
        }
        let ttl = new
            .ttl
            .unwrap_or(self.policy.load().default_ttl)
            .clamp(MIN_TTL, MAX_TTL);
        let id = {
            let mut entries = lock(&self.entries);
            let registered = entries.entry(name.to_string()).or_default();
            let existing = registered
                .iter()
                .find(|(_, r)| r.instance.addr == addr)
                .map(|(id, _)| id.clone());
            if existing.is_none() && registered.len() >= MAX_REGISTRATIONS_PER_SERVICE {
                return Err(RegistryError::TooManyRegistrations(
                    name.to_string(),
                    MAX_REGISTRATIONS_PER_SERVICE,
                ));
            }
            let id = existing.unwrap_or_else(|| new_id(name, addr));
            registered.insert(
                id.clone(),
                Registration {
                    instance: new,
                    ttl,
                    expires_at_ms: now_ms() + ttl.as_millis() as u64,
                },
            );
            id
        };
        service.rebuild();
        // A reload that turned registration off between the check above and the insert may
        // have evicted before this registration existed: take it back out.
        if !self.accepts(&service.spec()) {
            self.take_out(service, &id);
            return Err(RegistryError::RegistrationDisabled(name.to_string()));
        }
        tracing::info!(service = name, id, instance = %addr, ?ttl, "instance registered");
        Ok((id, ttl))
    }

    /// Renews a registration for another TTL; returns the TTL.
    pub fn renew(&self, service: &ServiceState, id: &str) -> Result<Duration, RegistryError> {
        if !self.accepts(&service.spec()) {
            return Err(RegistryError::RegistrationDisabled(service.name.clone()));
        }
        let mut entries = lock(&self.entries);
        let r = entries
            .get_mut(&service.name)
            .and_then(|registered| registered.get_mut(id))
            .ok_or_else(|| RegistryError::UnknownInstance(service.name.clone(), id.to_string()))?;
        r.expires_at_ms = now_ms() + r.ttl.as_millis() as u64;
        Ok(r.ttl)
    }

    /// Removes a registration (the registrant deregisters).
    pub fn remove(&self, service: &ServiceState, id: &str) -> Result<(), RegistryError> {
        if self.take_out(service, id) {
            tracing::info!(service = %service.name, id, "instance deregistered");
            Ok(())
        } else {
            Err(RegistryError::UnknownInstance(
                service.name.clone(),
                id.to_string(),
            ))
        }
    }

    /// Drops the registrations of `service` whose TTL lapsed by `now` (ms); returns how many.
    pub fn sweep(&self, service: &ServiceState, now: u64) -> usize {
        let mut entries = lock(&self.entries);
        let Some(registered) = entries.get_mut(&service.name) else {
            return 0;
        };
        let before = registered.len();
        registered.retain(|id, r| {
            let keep = r.expires_at_ms > now;
            if !keep {
                tracing::info!(service = %service.name, id, instance = %r.instance.addr, "registration expired");
            }
            keep
        });
        let n = before - registered.len();
        drop(entries);
        if n > 0 {
            service.rebuild();
        }
        n
    }

    /// Drops every registration of `service` (registration was turned off); returns how
    /// many.
    pub(super) fn evict(&self, service: &ServiceState) -> usize {
        let n = lock(&self.entries)
            .remove(&service.name)
            .map_or(0, |registered| registered.len());
        if n > 0 {
            tracing::info!(service = %service.name, evicted = n, "registration turned off: registered instances removed");
            service.rebuild();
        }
        n
    }

    /// Forgets the registrations of services that are no longer configured.
    pub(super) fn retain_services(&self, specs: &[ServiceSpec]) {
        lock(&self.entries).retain(|name, _| specs.iter().any(|s| &s.name == name));
    }

    /// A copy of the registrations of `service` (for the dashboard).
    pub fn of(&self, service: &str) -> BTreeMap<String, Registration> {
        lock(&self.entries)
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Calls `f` with each registration of `service`, in id order. `f` runs under the lock:
    /// it must not call back into `Registrations`.
    pub(super) fn for_each(&self, service: &str, mut f: impl FnMut(&str, &Registration)) {
        if let Some(registered) = lock(&self.entries).get(service) {
            for (id, r) in registered {
                f(id, r);
            }
        }
    }

    /// Removes one registration and rebuilds the set; returns whether it existed.
    fn take_out(&self, service: &ServiceState, id: &str) -> bool {
        let removed = lock(&self.entries)
            .get_mut(&service.name)
            .and_then(|registered| registered.remove(id))
            .is_some();
        if removed {
            service.rebuild();
        }
        removed
    }
}

/// A new registration id: unpredictable, so one registrant cannot renew or remove another's
/// registration by guessing.
fn new_id(service: &str, addr: SocketAddr) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (service, addr, now_ms(), crate::ids::random_u64()).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Compares in constant time so a token cannot be guessed byte by byte from timings.
fn token_matches(given: &[u8], want: &[u8]) -> bool {
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::super::{test_addr as addr, Registry};
    use super::*;

    #[test]
    fn registrations_merge_by_address_and_expire() {
        let r = Registry::default();
        let states = r.apply(
            &[ServiceSpec::with_instances("s", &[(addr(1), 1)])],
            RegistrySettings::default(),
        );
        let s = &states[0];
        let (id, _) = r
            .register("s", NewInstance::new(addr(1), Some(Duration::from_secs(1))))
            .unwrap();
        assert_eq!(s.members().instances.len(), 1);
        assert_eq!(
            s.members().instances[0].source_names(),
            vec!["static", "registered"]
        );
        r.register(
            "s",
            NewInstance {
                zone: Some("z".into()),
                ..NewInstance::new(addr(2), Some(Duration::from_secs(1)))
            },
        )
        .unwrap();
        assert_eq!(s.members().instances.len(), 2);
        assert!(r.heartbeat("s", &id).is_ok());
        assert_eq!(
            r.heartbeat("s", "nope"),
            Err(RegistryError::UnknownInstance("s".into(), "nope".into()))
        );
        assert_eq!(r.registrations().sweep(s, now_ms() + 5_000), 2);
        assert_eq!(s.members().instances.len(), 1);
        assert!(matches!(
            r.register("x", NewInstance::new(addr(3), None)),
            Err(RegistryError::UnknownService(_))
        ));
    }

    #[test]
    fn link_local_and_the_gateways_own_addresses_are_refused() {
        use super::super::ServiceState;
        let r = Registry::default();
        r.apply(
            &[ServiceSpec::with_instances("s", &[])],
            RegistrySettings {
                own_addrs: vec![
                    "127.0.0.1:8080".parse().unwrap(),
                    "0.0.0.0:9901".parse().unwrap(),
                ],
                ..RegistrySettings::default()
            },
        );
        let svc: std::sync::Arc<ServiceState> = r.service("s").unwrap();
        let add = |a: &str| {
            r.registrations()
                .add(&svc, NewInstance::new(a.parse().unwrap(), None))
        };
        for refused in [
            "169.254.169.254:80",
            "[fe80::1]:80",
            "127.0.0.1:8080",
            "127.0.0.2:9901",
            "[::1]:9901",
        ] {
            let err = add(refused).expect_err(refused);
            assert!(matches!(err, RegistryError::Invalid(_)), "{refused}: {err}");
        }
        for ok in ["127.0.0.1:8081", "127.0.0.2:8080", "10.0.0.1:80"] {
            assert!(add(ok).is_ok(), "{ok}");
        }
        r.apply(
            &[ServiceSpec::with_instances("s", &[])],
            RegistrySettings {
                allow_link_local: true,
                ..RegistrySettings::default()
            },
        );
        assert!(add("169.254.169.254:80").is_ok());
    }

    #[test]
    fn a_token_is_needed_only_when_one_is_set() {
        let r = Registrations::default();
        assert!(r.authorized(None));
        r.configure(&RegistrySettings {
            token: Some("s3cret".into()),
            ..RegistrySettings::default()
        });
        assert!(!r.authorized(None));
        assert!(!r.authorized(Some(b"Bearer wrong!")));
        assert!(!r.authorized(Some(b"s3cret")));
        assert!(r.authorized(Some(b"Bearer s3cret")));
        assert!(r.authorized(Some(b"bearer s3cret")));
    }
}
