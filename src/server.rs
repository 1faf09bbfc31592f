//! Wires ficus into a pingora server: proxy listeners (plain, h2c, TLS with SNI), the admin
//! listener, background services, and our own signal handling.
//!
//! Pingora's stock SIGTERM handling sleeps for the whole grace period even when nothing is
//! in flight. ficus instead stops accepting, waits until in-flight requests reach zero or the
//! configured grace period ends, and exits. SIGINT exits at once.

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

use crate::admin::{AdminServer, Readiness};
use crate::config::{Certificate, Config, Listener};
use crate::listener::HeaderDeadline;
use crate::policy::tasks::PolicyTasks;
use crate::proxy::Gateway;
use crate::registry::background::RegistryTasks;
use crate::reload::ConfigWatcher;
use crate::runtime::Shared;
use crate::sockets::{BoundSocket, BoundSockets, PreBound, ReadyFile};
use crate::upstream::credentials::CredentialTasks;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("cannot start the server: {0}")]
    Start(String),
}

/// pingora's own post-SIGTERM wait; never reached in practice (see `Signals::drain`).
const PINGORA_GRACE_BACKSTOP_SECS: u64 = 24 * 3600;

/// How often the drain watcher checks the in-flight count after SIGTERM.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Builds and runs the server until a signal stops it. Extra services (the demo's sample
/// origins) can be added by the caller through `extra`. With a `ready_file`, the actual
/// listening addresses are written there once every listener accepts.
pub fn run(
    config: Config,
    ready_file: Option<ReadyFile>,
    extra: impl FnOnce(&mut Server),
) -> Result<(), ServerError> {
    let gateway = config.gateway.clone();
    if let Some(f) = &ready_file {
        f.clear()?;
    }
    // Bound here, not by pingora: an address in use fails the start at once (pingora would
    // retry for 30 s), and port 0 gets a real port that the ready file reports.
    let sockets = BoundSockets::bind(&gateway)?;
    let bound = sockets.addresses();
    let shared = Shared::new(config);

    let conf = ServerConf {
        threads: gateway.threads,
        work_stealing: false,
        // Our drain watcher exits the process when the drain is done or `grace_period` (read
        // at signal time, so it follows reloads) is over; pingora's own wait is only a
        // backstop.
        grace_period_seconds: Some(PINGORA_GRACE_BACKSTOP_SECS),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Each listener with its socket; TLS listeners are probed for readiness by handshake.
    let mut probes = Vec::new();
    let (mut h2c, mut plain) = (Vec::new(), Vec::new());
    for (l, socket) in gateway.listeners.iter().zip(sockets.proxy) {
        probes.push((socket.addr, tls_probe_name(l)));
        if l.h2c {
            h2c.push((l, socket));
        } else {
            plain.push((l, socket));
        }
    }
    // Every listener gets the request-head layer (slowloris guard, head limits, HTTP/2
    // preface deadline); listeners with h2c get a proxy that also speaks cleartext HTTP/2.
    for (listeners, h2c, name) in [
        (plain, false, "ficus proxy"),
        (h2c, true, "ficus proxy (h2c)"),
    ] {
        if listeners.is_empty() {
            continue;
        }
        let mut inner =
            pingora_proxy::http_proxy(&server.configuration, Gateway::new(shared.clone()));
        let mut opts = pingora_core::apps::HttpServerOptions::default();
        opts.h2c = h2c;
        // An HTTP/2 connection with no stream open is closed after the keep-alive time,
        // as an idle HTTP/1 connection is (the value from start; reloads do not change it).
        opts.h2_idle_timeout = Some(gateway.limits.keepalive_timeout);
        inner.server_options = Some(opts);
        inner.h2_options = Some(h2_options(&gateway.limits.in_flight));
        let mut proxy = Service::new(
            name.to_string(),
            HeaderDeadline {
                inner: Arc::new(inner),
                shared: shared.clone(),
            },
        );
        let mut bound_sockets: Vec<BoundSocket> = Vec::new();
        for (l, socket) in listeners {
            add_listener(&mut proxy, l, socket.addr)?;
            bound_sockets.push(socket);
        }
        server.add_service(PreBound::new(proxy, bound_sockets));
    }

    let readiness = Readiness {
        probes,
        addresses: bound.clone(),
        ready_file,
    };
    let admin = AdminServer::new(sockets.admin.socket, shared.clone(), readiness);
    server.add_service(background_service("admin listener", admin));

    server.add_service(background_service(
        "config watcher",
        ConfigWatcher::new(shared.clone()),
    ));
    server.add_service(background_service(
        "service registry",
        RegistryTasks::new(shared.registry.clone()),
    ));
    server.add_service(background_service(
        "policy tasks",
        PolicyTasks::new(shared.clone()),
    ));
    server.add_service(background_service(
        "client credentials",
        CredentialTasks::new(shared.clone()),
    ));
    server.add_service(background_service(
        "migration board sampler",
        crate::board::sampler::BoardSampler::new(shared.clone()),
    ));
    extra(&mut server);

    tracing::info!(
        listen = ?bound.listeners.iter().map(ToString::to_string).collect::<Vec<_>>(),
        admin = %bound.admin,
        threads = gateway.threads,
        "ficus started"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { shared }),
    });
    Ok(())
}

/// What one HTTP/2 stream may have buffered toward a client that does not read: h2's own
/// default is 400 KiB per stream, 40 MiB for one connection of 100 streams. 64 KiB is one
/// piece of an upstream body, so a reading client still gets whole pieces.
const H2_SEND_BUFFER_BYTES: usize = 64 * 1024;

/// HTTP/2 settings for client connections: pingora's bounded defaults (header list size,
/// streams) with ficus's stream cap and a bounded send buffer per stream.
fn h2_options(
    limits: &crate::config::InFlightLimits,
) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut h2 = pingora_core::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(limits.h2_max_concurrent_streams);
    h2.max_send_buffer_size(H2_SEND_BUFFER_BYTES);
    h2
}

/// Adds listener `l`, already bound at `addr` (its configured address with the actual port).
fn add_listener<A>(svc: &mut Service<A>, l: &Listener, addr: SocketAddr) -> Result<(), ServerError>
where
    A: pingora_core::apps::ServerApp + Send + Sync + 'static,
{
    // The key under which `PreBound` hands pingora the socket.
    let addr = addr.to_string();
    if l.tls.is_empty() {
        svc.add_tcp(&addr);
        return Ok(());
    }
    let resolver = SniResolver::load(&l.tls)?;
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| ServerError::Start(e.to_string()))?;
    settings.set_cert_resolver(Arc::new(resolver));
    if l.http2 {
        settings.enable_h2();
    }
    svc.add_tls_with_settings(&addr, None, settings);
    Ok(())
}

/// The SNI name a readiness probe asks a TLS listener for (`None`: plain TCP).
fn tls_probe_name(l: &Listener) -> Option<String> {
    l.tls.first().map(|c| {
        c.hosts
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// Chooses a listener certificate by SNI: exact names, then `*.suffix` names, then the
/// first certificate.
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<rustls::sign::CertifiedKey>,
    exact: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    wildcard: Vec<(String, Arc<rustls::sign::CertifiedKey>)>,
}

impl SniResolver {
    pub fn load(certs: &[Certificate]) -> Result<SniResolver, ServerError> {
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut default = None;
        for c in certs {
            let key = Arc::new(load_certified_key(&c.cert_path, &c.key_path)?);
            if default.is_none() {
                default = Some(key.clone());
            }
            for h in &c.hosts {
                match h.strip_prefix("*.") {
                    Some(suffix) => wildcard.push((format!(".{suffix}"), key.clone())),
                    None => {
                        exact.insert(h.clone(), key.clone());
                    }
                }
            }
        }
        let default = default.ok_or_else(|| ServerError::Certificate {
            path: String::new(),
            message: "a TLS listener needs at least one certificate".into(),
        })?;
        Ok(SniResolver {
            default,
            exact,
            wildcard,
        })
    }

    fn pick(&self, sni: Option<&str>) -> Arc<rustls::sign::CertifiedKey> {
        if let Some(name) = sni.map(str::to_ascii_lowercase) {
            if let Some(k) = self.exact.get(&name) {
                return k.clone();
            }
            if let Some((_, k)) = self
                .wildcard
                .iter()
                .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |p: &Path, m: String| ServerError::Certificate {
        path: p.display().to_string(),
        message: m,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(cert, "no PEM certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| err(key, e.to_string()))?;
    Ok(rustls::sign::CertifiedKey::new(chain, signing))
}

/// ficus's signal handling (see the module docs).
struct Signals {
    shared: Arc<Shared>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let signal = tokio::select! {
            _ = int.recv() => stop_now(),
            _ = term.recv() => self.drain("SIGTERM"),
            _ = quit.recv() => self.drain("SIGQUIT"),
        };
        // Ctrl-C still means "stop now" while draining. pingora's server runtime is a
        // multi-thread one, so this task keeps running after `recv` has returned.
        tokio::spawn(async move {
            int.recv().await;
            stop_now();
        });
        signal
    }
}

/// Exits directly: pingora's fast shutdown can leave accept loops spinning on a runtime that
/// is shutting down. Ctrl-C means "stop now".
fn stop_now() -> ShutdownSignal {
    tracing::info!("SIGINT: stopping now");
    crate::logging::flush();
    std::process::exit(0);
}

impl Signals {
    /// Marks the gateway as draining and starts the watcher that exits the process once the
    /// last in-flight request is done or the grace period is over. Pingora closes the
    /// listeners when this returns.
    fn drain(&self, signal: &str) -> ShutdownSignal {
        let grace = self.shared.runtime().config.gateway.grace_period;
        tracing::info!(
            ?grace,
            inflight = self.shared.inflight(),
            "{signal}: draining"
        );
        self.shared.set_draining();
        let shared = self.shared.clone();
        let deadline = Instant::now() + grace;
        std::thread::spawn(move || {
            // Give pingora a moment to close the listening sockets before the first check, so
            // a request accepted just before the signal is counted.
            std::thread::sleep(DRAIN_POLL * 5);
            loop {
                let inflight = shared.inflight();
                if inflight == 0 {
                    tracing::info!("drained: no requests in flight, exiting");
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        inflight,
                        "grace period over, exiting with requests in flight"
                    );
                    break;
                }
                std::thread::sleep(DRAIN_POLL);
            }
            crate::logging::flush();
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}
