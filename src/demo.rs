//! `ficus demo`: a small shop's legacy monolith and its new "deliveries" service, both
//! in-process on loopback, with the gateway in front using the repository's routes.toml.
//!
//! The sample origins answer every path with a JSON note of who served it, so a newcomer
//! can watch requests land on one side of the migration or the other.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use std::path::Path;

use crate::config::{self, ConfigError};

/// A sample origin that says who it is.
pub struct SampleOrigin {
    pub name: &'static str,
}

#[async_trait]
impl ServeHttp for SampleOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let target = String::from_utf8_lossy(req.raw_path()).into_owned();
        let method = req.method.to_string();
        let header = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let body = serde_json::json!({
            "served_by": self.name,
            "method": method,
            "path": target,
            "request_id": header("x-request-id"),
            "x_forwarded_for": header("x-forwarded-for"),
        });
        let mut body = body.to_string();
        body.push('\n');
        let mut resp = Response::new(body.into_bytes());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        resp
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the demo needs services `monolith` and `deliveries` with one instance each in {0}")]
    MissingService(String),
    #[error("{0}")]
    Server(#[from] crate::server::ServerError),
    #[error("{what} address {addr} is in use: stop what listens there, or change it in {file}")]
    PortInUse {
        what: &'static str,
        addr: std::net::SocketAddr,
        file: String,
    },
}

/// The demo's own sample origins would lose a port race silently (the gateway would proxy
/// to whatever else listens there): every address must be free before anything starts.
fn check_free(
    addrs: &[(&'static str, std::net::SocketAddr)],
    file: &Path,
) -> Result<(), DemoError> {
    for &(what, addr) in addrs {
        if std::net::TcpListener::bind(addr).is_err() {
            return Err(DemoError::PortInUse {
                what,
                addr,
                file: file.display().to_string(),
            });
        }
    }
    Ok(())
}

/// How to run this binary again, as the user would type it: relative to the working
/// directory when it is below it.
fn this_binary() -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| "ficus".into());
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or(exe);
    shown.display().to_string()
}

/// Runs the demo until Ctrl-C. `ready_file` is as for `ficus run`.
pub fn run(path: &Path, ready_file: Option<crate::sockets::ReadyFile>) -> Result<(), DemoError> {
    let cfg = config::load(path)?;
    let addr_of = |name: &str| {
        cfg.service_index(name)
            .and_then(|i| cfg.services[i].statics.first())
            .map(|inst| inst.addr)
            .ok_or_else(|| DemoError::MissingService(path.display().to_string()))
    };
    let monolith = addr_of("monolith")?;
    let deliveries = addr_of("deliveries")?;
    let listen = cfg
        .gateway
        .listeners
        .first()
        .map(|l| l.addr)
        .ok_or_else(|| DemoError::MissingService(path.display().to_string()))?;
    let admin = cfg.gateway.admin;
    check_free(
        &[
            ("gateway", listen),
            ("admin", admin),
            ("sample monolith", monolith),
            ("sample deliveries service", deliveries),
        ],
        path,
    )?;
    let ficus = this_binary();
    println!(
        "ficus demo\n  gateway          http://{listen}\n  legacy monolith  http://{monolith}  (sample)\n  deliveries svc   http://{deliveries}  (sample, the first migrated path)\n  admin            http://{admin}\n\nTry:\n  curl -s http://{listen}/products/7        # not migrated: the monolith answers\n  curl -s http://{listen}/orders/42         # not migrated: the monolith answers\n  curl -s http://{listen}/deliveries/42     # migrated: the deliveries service answers (path rewritten)\n  curl -s --path-as-is http://{listen}/public/../deliveries/1   # normalized before routing\n  curl -s 'http://{listen}/a%2Fb'           # refused: encoded slash (400)\n  curl -s --interface 127.0.0.2 http://{listen}/admin/users   # refused by the access policy (403)\n  curl -s http://{admin}/metrics | grep ficus_requests_total\n  {ficus} explain --config {} GET http://{listen}/deliveries/42\n\nEdit {} while this runs: changes apply without a restart. Ctrl-C stops.\n",
        path.display(),
        path.display()
    );
    crate::server::run(cfg, ready_file, |server| {
        let mut m = Service::new(
            "demo monolith".to_string(),
            SampleOrigin {
                name: "legacy-monolith",
            },
        );
        m.threads = Some(1);
        m.add_tcp(&monolith.to_string());
        server.add_service(m);
        let mut d = Service::new(
            "demo deliveries".to_string(),
            SampleOrigin {
                name: "deliveries-service",
            },
        );
        d.threads = Some(1);
        d.add_tcp(&deliveries.to_string());
        server.add_service(d);
    })?;
    Ok(())
}
