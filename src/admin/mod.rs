//! The admin listener: liveness, readiness, Prometheus metrics, the service registry API
//! and its dashboard.
//!
//! Served by pingora's simple `ServeHttp` app on its own address (loopback by default),
//! each connection under deadlines (`connection.rs`) and only while the connection cap and
//! the descriptors reserved for the proxy allow (`guard.rs`). Its only writes are registry
//! writes (self-registration), which change where traffic goes: they need the bearer token
//! when one is configured. Its reads need the token too when this listener is not on
//! loopback (the config compiler then requires one), except `/healthz` and `/readyz`
//! (`access.rs`). Requests whose `Host` is a dotted name other than `localhost` are
//! refused (421) so a DNS-rebinding web page cannot read or write through it.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;

use crate::runtime::{Runtime, Shared};
use serde::Serialize;

mod access;
pub mod board;
mod connection;
pub mod guard;
pub mod policies;
pub mod registry_api;
pub mod registry_pages;
pub mod registry_view;
pub mod shadow;
mod tls_probe;

use guard::AdminGuard;
use registry_pages::Page;

/// The admin HTTP application.
pub struct Admin {
    pub shared: Arc<Shared>,
    /// Open-connection count and the admin listener's counters.
    pub guard: Arc<AdminGuard>,
    /// Whether the admin listener is bound to a loopback address (only local clients
    /// reach it); otherwise its reads need the token.
    pub loopback_only: bool,
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

impl Admin {
    /// Routes an admin request (`query` is the part after `?`). Kept separate from the
    /// session for unit tests.
    pub fn handle(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            let mut r = error_reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        if path == "/registry" || path == "/registry/summary" {
            let page = if path == "/registry/summary" {
                Ok(Page::summary())
            } else {
                Page::from_query(query)
            };
            return match page {
                Err(e) => error_reply(StatusCode::BAD_REQUEST, &e.to_string()),
                Ok(page) => match registry_view::snapshot(&self.shared.registry, &page) {
                    Some(view) => json_reply(StatusCode::OK, &view),
                    None => error_reply(StatusCode::NOT_FOUND, "no such service"),
                },
            };
        }
        if let Some(r) = board::handle(&self.shared, path) {
            return r;
        }
        if let Some(r) = shadow::handle(&self.shared.metrics, path) {
            return r;
        }
        if path == "/registry/ui" || path == "/" {
            return reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD);
        }
        match path {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                if self.shared.is_ready() {
                    reply(StatusCode::OK, "text/plain", "ready\n")
                } else if self.shared.is_draining() {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
                } else if let Some(what) = self.shared.waiting_for() {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("starting: waiting for {what}\n"),
                    )
                } else {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
                }
            }
            "/metrics" => {
                let mut text = self.shared.metrics.render(self.shared.inflight());
                registry_view::metrics(&self.shared.registry, &mut text);
                board::service_info(&self.shared.runtime(), &mut text);
                let mut samples = Vec::new();
                for p in self.shared.runtime().config.policies.iter() {
                    p.plugin.metrics(&mut samples);
                }
                crate::metrics::render_samples(&samples, &mut text);
                self.guard.render(&mut text);
                reply(StatusCode::OK, "text/plain; version=0.0.4", text)
            }
            "/policies" => {
                let rt = self.shared.runtime();
                json_reply(StatusCode::OK, &policies::PoliciesView::of(&rt))
            }
            "/config" => json_reply(StatusCode::OK, &ConfigView::of(&self.shared.runtime())),
            _ => error_reply(StatusCode::NOT_FOUND, "not found"),
        }
    }
}

/// The body of every admin error: `{"error": "..."}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
}

/// `GET /config`: the generation of the running config and its routes in priority order.
#[derive(Debug, Serialize)]
pub struct ConfigView<'a> {
    pub generation: u64,
    pub routes: Vec<RouteView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct RouteView<'a> {
    pub name: &'a str,
    pub path: &'a str,
    /// The route's service; for a split, its first side's.
    pub service: &'a str,
    /// A split route's sides and weights, in config order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<SideView<'a>>>,
}

#[derive(Debug, Serialize)]
pub struct SideView<'a> {
    pub service: &'a str,
    pub weight: u32,
}

impl<'a> ConfigView<'a> {
    pub fn of(rt: &'a Runtime) -> ConfigView<'a> {
        let routes = rt
            .config
            .router
            .routes()
            .iter()
            .map(|r| RouteView {
                name: &r.name,
                path: &r.pattern.source,
                service: &rt.config.services[r.service].name,
                split: r.split.as_ref().map(|sp| {
                    sp.sides
                        .iter()
                        .map(|d| SideView {
                            service: &rt.config.services[d.service].name,
                            weight: d.weight,
                        })
                        .collect()
                }),
            })
            .collect();
        ConfigView {
            generation: rt.generation,
            routes,
        }
    }
}

/// An admin answer as JSON text. The views are plain structs with string keys, which
/// serde_json always serializes; should that ever fail, the client gets an error body rather
/// than a panic.
pub fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).unwrap_or_else(|e| {
        tracing::error!("admin: cannot serialize an answer: {e}");
        String::from(r#"{"error":"the answer could not be serialized"}"#)
    })
}

/// A JSON answer (with a final newline, for people reading it with curl).
fn json_reply(status: StatusCode, body: &impl Serialize) -> Response<Vec<u8>> {
    let mut text = to_json(body);
    text.push('\n');
    reply(status, "application/json", text)
}

/// A JSON error answer.
fn error_reply(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_reply(status, &ErrorBody { error: message })
}

/// Runs the admin listener as a background service rather than a pingora listening
/// service, so it keeps answering while the proxy drains after SIGTERM (`/readyz` then says
/// 503 and load balancers take the gateway out of rotation).
pub struct AdminServer {
    app: Arc<Admin>,
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    readiness: std::sync::Mutex<Option<Readiness>>,
}

/// What the gateway waits for before it reports ready, and where it reports it.
pub struct Readiness {
    /// Each proxy listener's actual address, and for TLS listeners the SNI name to ask for.
    pub probes: Vec<(std::net::SocketAddr, Option<String>)>,
    /// The actual addresses of every listener, for the ready file.
    pub addresses: crate::sockets::BoundAddresses,
    pub ready_file: Option<crate::sockets::ReadyFile>,
}

impl AdminServer {
    /// Serves on `listener` (bound and non-blocking, see [`crate::sockets`]) and, once
    /// started, reports ready when `readiness` says so.
    pub fn new(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        readiness: Readiness,
    ) -> AdminServer {
        // Only local clients reach a loopback listener; any other address (the unspecified
        // one included) may be reached from other hosts.
        let loopback_only = listener
            .local_addr()
            .is_ok_and(|a| a.ip().to_canonical().is_loopback());
        guard::raise_fd_limit();
        let guard = Arc::new(AdminGuard::new());
        AdminServer {
            app: Arc::new(Admin {
                shared,
                guard,
                loopback_only,
            }),
            listener: std::sync::Mutex::new(Some(listener)),
            readiness: std::sync::Mutex::new(Some(readiness)),
        }
    }
}

#[async_trait]
impl pingora_core::services::background::BackgroundService for AdminServer {
    async fn start(&self, _shutdown: pingora_core::server::ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin listener: {e}");
                return;
            }
        };
        if let Some(readiness) = self.readiness.lock().ok().and_then(|mut r| r.take()) {
            tokio::spawn(wait_for_listeners(self.app.shared.clone(), readiness));
        }
        // Never signalled: the admin listener lives until the process exits.
        let (_keep, never) = tokio::sync::watch::channel(false);
        // After a binary upgrade the new process answers on this socket.
        let handed_over = self.app.shared.handed_over();
        tokio::pin!(handed_over);
        let mut failures = 0u32;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut handed_over => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE) or kernel memory: retrying at once would
                    // spin a core for as long as it lasts. The connection waits in the
                    // listen queue meanwhile.
                    let pause = self.app.guard.accept_failed(&e, failures);
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            failures = 0;
            let limits = self.app.shared.limits();
            let Ok(admitted) = self
                .app
                .guard
                .admit(limits.admin_connections, limits.admin_reserved_fds)
            else {
                // Closed at once (counted and logged by the guard).
                drop(stream);
                continue;
            };
            // The response head and body are written separately: without TCP_NODELAY,
            // Nagle holds the body back until the client's delayed ACK (~40 ms) on every
            // keep-alive request.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("admin connection: cannot set TCP_NODELAY: {e}");
            }
            tokio::spawn(connection::serve(
                self.app.clone(),
                stream,
                never.clone(),
                admitted,
            ));
        }
    }
}

/// The longest readiness waits for the first DNS lookups.
const FIRST_DNS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Marks the gateway ready once every proxy listener accepts a connection, and writes the
/// ready file if one was asked for. A plain listener accepts from the moment it is bound
/// (the kernel queues connections until pingora's accept loop takes them); a TLS listener
/// must complete a handshake, which needs pingora's accept loop to run.
async fn wait_for_listeners(shared: Arc<Shared>, readiness: Readiness) {
    for (addr, sni) in readiness.probes {
        let addr = loopback_for(addr);
        // Backs off up to 1 s: each failed TLS probe costs the server an error log line.
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let up = match &sni {
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
                Some(sni) => {
                    let sni = sni.clone();
                    tokio::task::spawn_blocking(move || {
                        tls_probe::handshake(addr, &sni, std::time::Duration::from_secs(2))
                    })
                    .await
                    .unwrap_or(false)
                }
            };
            if up {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }
    // Services discovered through DNS have no instances until their first lookup: wait for
    // it (successful or not), but never longer than FIRST_DNS_WAIT.
    let deadline = tokio::time::Instant::now() + FIRST_DNS_WAIT;
    while tokio::time::Instant::now() < deadline {
        let pending = shared.registry.services().iter().any(|s| {
            s.spec().dns.is_some()
                && s.dns_status
                    .lock()
                    .map(|d| d.last_ok_ms.is_none() && d.failures == 0)
                    .unwrap_or(false)
        });
        if !pending {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shared.set_listening();
    if let Some(file) = readiness.ready_file {
        match file.write(&readiness.addresses) {
            Ok(()) => tracing::info!(path = %file.path.display(), "ready file written"),
            Err(e) => tracing::error!("cannot write the ready file {}: {e}", file.path.display()),
        }
    }
}

/// A wildcard listen address (`0.0.0.0`, `[::]`) is probed on loopback.
fn loopback_for(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// The dashboard page (no build step, no CDN: everything is in this one file).
const DASHBOARD: &str = include_str!("dashboard.html");

/// Registry write bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, StatusCode> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        // Probes and scrapers (Kubernetes, Prometheus, load balancers) address the gateway
        // by whatever name they know it under, and what they read is not worth a DNS
        // rebinding attack; the registry (which can be written) and the dashboard are.
        let probe = matches!(req.uri.path(), "/healthz" | "/readyz" | "/metrics");
        if !probe
            && !access::host_allowed(req.headers.get(http::header::HOST).map(|v| v.as_bytes()))
        {
            return error_reply(
                StatusCode::MISDIRECTED_REQUEST,
                "the admin listener only answers requests for an IP address, localhost or a single-label host name",
            );
        }
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let method = req.method.clone();
        let authorized = || {
            let auth = req.headers.get(http::header::AUTHORIZATION);
            self.shared
                .registry
                .registrations()
                .authorized(auth.map(|v| v.as_bytes()))
        };
        let reads_need_token =
            !self.loopback_only || self.shared.runtime().config.gateway.admin_reads_need_token;
        let read = method == http::Method::GET || method == http::Method::HEAD;
        if read && reads_need_token && access::read_needs_token(&path) && !authorized() {
            return access::unauthorized("admin reads need a valid bearer token");
        }
        if path.starts_with("/registry/services/") {
            let content_type = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes().to_vec());
            if !authorized() {
                return access::unauthorized("registry writes need a valid bearer token");
            }
            let body = match read_body(session).await {
                Ok(b) => b,
                Err(StatusCode::PAYLOAD_TOO_LARGE) => {
                    return error_reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("a registry request body may be at most {MAX_BODY} bytes"),
                    )
                }
                Err(status) => return error_reply(status, "bad request body"),
            };
            let write = registry_api::WriteRequest {
                method: method.as_str(),
                path: &path,
                content_type: content_type.as_deref(),
                body: &body,
            };
            if let Some(api) = registry_api::write(&self.shared.registry, &write) {
                let status =
                    StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut body = api.body;
                body.push('\n');
                let mut r = reply(status, "application/json", body);
                if let Some(allow) = api.allow {
                    r.headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                }
                return r;
            }
        }
        self.handle(&method, &path, query.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::{to_json, ErrorBody};

    /// Error messages are escaped by serde, whatever they contain.
    #[test]
    fn error_bodies_are_json() {
        let text = to_json(&ErrorBody {
            error: "a \"quoted\" name\nand a line",
        });
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["error"], "a \"quoted\" name\nand a line");
    }
}
