//! The admin listener: liveness, readiness, Prometheus metrics, the service registry API
//! and its dashboard.
//!
//! Served by pingora's simple `ServeHttp` app on its own address (loopback by default).
//! It never changes routing; registry writes (self-registration) need the bearer token
//! when one is configured.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;

use crate::runtime::Shared;

/// The admin HTTP application.
pub struct Admin {
    pub shared: Arc<Shared>,
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
    /// Routes an admin request. Kept separate from the session for unit tests.
    pub fn handle(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if path == "/registry" {
            let body = crate::registry::api::snapshot(&self.shared.registry);
            return reply(StatusCode::OK, "application/json", format!("{body}\n"));
        }
        if path == "/registry/ui" || path == "/" {
            return reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD);
        }
        if method != http::Method::GET && method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "application/json",
                "{\"error\":\"method not allowed\"}\n",
            );
        }
        match path {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                if self.shared.is_draining() {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
                } else {
                    reply(StatusCode::OK, "text/plain", "ready\n")
                }
            }
            "/metrics" => {
                let mut text = self.shared.metrics.render(self.shared.inflight());
                crate::registry::api::metrics(&self.shared.registry, &mut text);
                reply(StatusCode::OK, "text/plain; version=0.0.4", text)
            }
            "/config" => {
                let rt = self.shared.runtime();
                let routes: Vec<String> = rt
                    .config
                    .router
                    .routes()
                    .iter()
                    .map(|r| {
                        format!(
                            "{{\"name\":{},\"path\":{},\"service\":{}}}",
                            json_str(&r.name),
                            json_str(&r.pattern.source),
                            json_str(&rt.config.services[r.service].name)
                        )
                    })
                    .collect();
                reply(
                    StatusCode::OK,
                    "application/json",
                    format!(
                        "{{\"generation\":{},\"routes\":[{}]}}\n",
                        rt.generation,
                        routes.join(",")
                    ),
                )
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "application/json",
                "{\"error\":\"not found\"}\n",
            ),
        }
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
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
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        if path.starts_with("/registry/services/") {
            let auth = req
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            if !crate::registry::api::authorized(&self.shared.registry, auth.as_deref()) {
                let mut r = reply(
                    StatusCode::UNAUTHORIZED,
                    "application/json",
                    "{\"error\":\"registry writes need a valid bearer token\"}\n",
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
            let body = match read_body(session).await {
                Ok(b) => b,
                Err(status) => {
                    return reply(
                        status,
                        "application/json",
                        "{\"error\":\"bad request body\"}\n",
                    )
                }
            };
            if let Some(api) =
                crate::registry::api::write(&self.shared.registry, method.as_str(), &path, &body)
            {
                let status =
                    StatusCode::from_u16(api.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return reply(status, "application/json", format!("{}\n", api.body));
            }
        }
        self.handle(&method, &path)
    }
}
