//! The registry's background service: active probes, DNS refresh and registration expiry.
//!
//! One loop per process, ticking every 50 ms (`TICK`). Each tick it looks at the *current*
//! services and instances and starts whatever work is due, so a reload can never leave a
//! probe running twice or orphaned: an instance that left the set is simply no longer
//! visited, and an instance already being probed is skipped until its probe returns.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::now_ms;
use super::dns::{clamp_ttl, DnsResolver};
use super::{health, Registry, ServiceState};

/// How often due work is looked for.
const TICK: Duration = Duration::from_millis(50);
/// Retry delay after a failed DNS lookup when the service's min TTL is shorter.
const DNS_RETRY_FLOOR: Duration = Duration::from_millis(500);

pub struct RegistryTasks {
    registry: Arc<Registry>,
    resolvers: Mutex<HashMap<Option<SocketAddr>, Arc<DnsResolver>>>,
}

impl RegistryTasks {
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryTasks {
            registry,
            resolvers: Mutex::new(HashMap::new()),
        }
    }

    fn resolver(&self, server: Option<SocketAddr>) -> Option<Arc<DnsResolver>> {
        let mut map = self.resolvers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(&server) {
            return Some(r.clone());
        }
        match DnsResolver::new(server) {
            Ok(r) => {
                let r = Arc::new(r);
                map.insert(server, r.clone());
                Some(r)
            }
            Err(e) => {
                tracing::error!(?server, "cannot create DNS resolver: {e}");
                None
            }
        }
    }

    /// Starts whatever is due for one service.
    fn tick_service(&self, svc: &Arc<ServiceState>, now: u64) {
        self.registry.registrations().sweep(svc, now);
        let spec = svc.spec();
        if let Some(dns) = &spec.dns {
            let due = {
                let mut st = svc.dns_status.lock().unwrap_or_else(|p| p.into_inner());
                let due = !st.in_flight && st.next_ms <= now;
                if due {
                    st.in_flight = true;
                }
                due
            };
            if due {
                let server = dns.resolver.or(self.registry.settings().dns_resolver);
                if let Some(resolver) = self.resolver(server) {
                    let svc = svc.clone();
                    let dns = dns.clone();
                    tokio::spawn(async move {
                        let result = resolver.lookup(&dns.query).await;
                        let now = now_ms();
                        let mut st = svc
                            .dns_status
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone();
                        st.in_flight = false;
                        match result {
                            Ok(answer) => {
                                let ttl = clamp_ttl(answer.ttl, dns.min_ttl, dns.max_ttl);
                                if let Some(p) = &answer.partial {
                                    tracing::warn!(service = %svc.name, "DNS lookup partly failed, using the family that answered: {}", p.error);
                                }
                                let changed = svc.set_dns(answer.merged_with(&svc.dns_instances()));
                                if changed {
                                    tracing::info!(service = %svc.name, "DNS instance set changed");
                                }
                                st.last_ok_ms = Some(now);
                                st.last_error = None;
                                st.next_ms = now + ttl.as_millis() as u64;
                            }
                            Err(e) => {
                                // Keep the last good set; try again soon.
                                tracing::warn!(service = %svc.name, "DNS lookup failed, keeping the last good instances: {e}");
                                st.last_error = Some(e.to_string());
                                st.failures += 1;
                                st.next_ms =
                                    now + dns.min_ttl.max(DNS_RETRY_FLOOR).as_millis() as u64;
                            }
                        }
                        *svc.dns_status.lock().unwrap_or_else(|p| p.into_inner()) = st;
                    });
                } else {
                    let mut st = svc.dns_status.lock().unwrap_or_else(|p| p.into_inner());
                    st.in_flight = false;
                    st.next_ms = now + 5_000;
                }
            }
        }
        let Some(h) = spec.health.clone() else { return };
        for m in svc.members().instances.iter() {
            let live = &m.live;
            if live.next_probe_ms.load(Ordering::Acquire) > now
                || live.probing.swap(true, Ordering::AcqRel)
            {
                continue;
            }
            let live = live.clone();
            let addr = m.addr;
            let h = h.clone();
            let name = svc.name.clone();
            tokio::spawn(async move {
                let rec = health::probe(addr, &h.kind, h.timeout).await;
                live.apply_probe(rec, h.healthy_after, h.unhealthy_after, addr, &name);
                let jitter_ms = (h.interval.as_millis() as f64 * h.jitter.clamp(0.0, 1.0)) as u64;
                let jitter = if jitter_ms > 0 {
                    crate::ids::random_u64() % jitter_ms
                } else {
                    0
                };
                live.next_probe_ms.store(
                    now_ms() + h.interval.as_millis() as u64 + jitter,
                    Ordering::Release,
                );
                live.probing.store(false, Ordering::Release);
            });
        }
    }
}

#[async_trait]
impl BackgroundService for RegistryTasks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::periodic::every(TICK, &mut shutdown, || {
            let now = now_ms();
            for svc in self.registry.services() {
                self.tick_service(&svc, now);
            }
        })
        .await;
    }
}
