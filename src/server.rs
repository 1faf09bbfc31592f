//! Wires ficus into a pingora server: proxy listeners (plain, h2c, TLS with SNI), the admin
//! listener, background services, and our own signal handling ([`crate::signals`]). The
//! listening sockets are bound by ficus ([`crate::sockets`]) or, in a binary upgrade, taken
//! over from the running process ([`crate::upgrade`]).

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

use crate::admin::{AdminServer, Readiness};
use crate::config::{Certificate, Config, Listener};
use crate::listener::tls_handshake::TlsListeners;
use crate::listener::HeaderDeadline;
use crate::policy::tasks::PolicyTasks;
use crate::proxy::Gateway;
use crate::registry::background::RegistryTasks;
use crate::reload::ConfigWatcher;
use crate::runtime::Shared;
use crate::signals::Signals;
use crate::sockets::{BoundSocket, BoundSockets, PreBound, ReadyFile};
use crate::upgrade::{HandOver, ReadyAck};
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

/// How this process takes part in a binary upgrade ([`crate::upgrade`]).
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// `--upgrade-socket`: where the sockets are handed over. Without it, SIGQUIT drains.
    pub socket: Option<PathBuf>,
    /// `--upgrade`: take the listening sockets over from the process running now.
    pub take_over: bool,
}

/// Builds and runs the server until a signal stops it. Extra services (the demo's sample
/// origins) can be added by the caller through `extra`. With a `ready_file`, the actual
/// listening addresses are written there once every listener accepts.
pub fn run(
    config: Config,
    ready_file: Option<ReadyFile>,
    extra: impl FnOnce(&mut Server),
) -> Result<(), ServerError> {
    run_upgradable(config, ready_file, UpgradeOptions::default(), extra)
}

/// [`run`], taking part in binary upgrades as `upgrade` says.
pub fn run_upgradable(
    config: Config,
    ready_file: Option<ReadyFile>,
    upgrade: UpgradeOptions,
    extra: impl FnOnce(&mut Server),
) -> Result<(), ServerError> {
    let gateway = config.gateway.clone();
    if let Some(f) = &ready_file {
        f.clear()?;
    }
    let (sockets, ack) = listening_sockets(&gateway, &upgrade)?;
    let handover = match &upgrade.socket {
        Some(path) => Some(Arc::new(
            HandOver::new(path.clone(), &sockets)
                .map_err(|e| ServerError::Start(format!("upgrade: {e}")))?,
        )),
        None => None,
    };
    let bound = sockets.addresses();
    let shared = Shared::new(config);
    // This thread built the first snapshot and the board's first sample (their garbage:
    // the sample's readings, the tables grown along the way) and from here on mostly waits:
    // mimalloc would keep what it freed resident until it allocates again.
    crate::config::return_freed_memory();

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
    // One per-client table for both proxy services (see `proxy::in_flight`).
    let clients = Arc::new(crate::proxy::in_flight::ClientSlots::default());
    for (listeners, h2c, name) in [
        (plain, false, "ficus proxy"),
        (h2c, true, "ficus proxy (h2c)"),
    ] {
        if listeners.is_empty() {
            continue;
        }
        let mut inner = pingora_proxy::http_proxy(
            &server.configuration,
            Gateway::new(shared.clone(), clients.clone()),
        );
        let mut opts = pingora_core::apps::HttpServerOptions::default();
        opts.h2c = h2c;
        // An HTTP/2 connection with no stream open is closed after the keep-alive time,
        // as an idle HTTP/1 connection is (the value from start; reloads do not change it).
        opts.h2_idle_timeout = Some(gateway.limits.keepalive_timeout);
        inner.server_options = Some(opts);
        // TLS listeners reach pingora as plain TCP: the head layer does their handshakes,
        // under `tls_handshake_timeout` (see `listener::tls_handshake`).
        let mut tls = TlsListeners::default();
        for (l, socket) in &listeners {
            if let Some(settings) = tls_settings(l)? {
                tls.add(socket.addr, settings);
            }
        }
        inner.h2_options = Some(h2_options(&gateway.limits.in_flight));
        let mut proxy = Service::new(
            name.to_string(),
            HeaderDeadline {
                inner: Arc::new(inner),
                shared: shared.clone(),
                tls,
            },
        );
        let mut bound_sockets: Vec<BoundSocket> = Vec::new();
        for (_, socket) in listeners {
            // The key under which `PreBound` hands pingora the socket.
            proxy.add_tcp(&socket.addr.to_string());
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
    let signals = Signals::install(shared.clone(), handover)?;
    crate::upgrade::announce_when_ready(shared, ack);
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
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

/// The listening sockets: bound here, not by pingora (an address in use fails the start at
/// once, where pingora would retry for 30 s, and port 0 gets a real port that the ready
/// file reports), or taken over from the running process in an upgrade, with the answer
/// it waits for.
fn listening_sockets(
    gateway: &crate::config::GatewaySettings,
    upgrade: &UpgradeOptions,
) -> Result<(BoundSockets, Option<ReadyAck>), ServerError> {
    if !upgrade.take_over {
        return Ok((BoundSockets::bind(gateway)?, None));
    }
    let path = upgrade
        .socket
        .as_ref()
        .ok_or_else(|| ServerError::Start("--upgrade needs --upgrade-socket".into()))?;
    let inherited = crate::upgrade::take_over(path, crate::upgrade::TAKEOVER_WAIT)
        .map_err(|e| ServerError::Start(format!("upgrade: {e}")))?;
    let sockets = BoundSockets::inherit(gateway, inherited.listeners, inherited.admin)?;
    Ok((sockets, Some(inherited.ack)))
}

/// The TLS settings of listener `l` (certificates by SNI, ALPN), `None` for plain TCP.
fn tls_settings(l: &Listener) -> Result<Option<TlsSettings>, ServerError> {
    if l.tls.is_empty() {
        return Ok(None);
    }
    let resolver = SniResolver::load(&l.tls)?;
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| ServerError::Start(e.to_string()))?;
    settings.set_cert_resolver(Arc::new(resolver));
    // HTTP/2 is on by default on TLS listeners (`http2 = false` opts out).
    if l.http2 {
        settings.enable_h2();
    }
    Ok(Some(settings))
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
