//! The admin listener: liveness, readiness and Prometheus metrics.
//!
//! Served by pingora's simple `ServeHttp` app on its own address (loopback by default).
//! It reads process state; it never changes routing. Later work adds the registry API and
//! dashboard here.

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
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.shared.metrics.render(self.shared.inflight()),
            ),
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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        self.handle(&method, &path)
    }
}
