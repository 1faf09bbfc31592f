//! How terminal commands (`ficus shadow`, `ficus status`) read a running gateway: a GET to
//! its admin listener, found from `--admin`, else the routes file's `[gateway] admin`,
//! else the default address. When the environment has [`TOKEN_ENV`], its value is sent as
//! the bearer token (an admin listener other hosts can reach answers reads only with it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

use crate::config::DEFAULT_ADMIN;

/// The environment variable whose value, when set, is sent as the admin bearer token.
pub const TOKEN_ENV: &str = "FICUS_ADMIN_TOKEN";

/// How long a command waits for the admin listener.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Admin answers are JSON documents of a few hundred kilobytes at most.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why the admin listener could not be read.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("`{0}` is not an address (use HOST:PORT, e.g. 127.0.0.1:9901)")]
    Address(String),
    #[error(
        "cannot read the admin address from {path}: {error} (--admin HOST:PORT names it directly)"
    )]
    Config { path: String, error: String },
    #[error("the gateway's admin listener at {addr} is not reachable ({error}); is ficus running? (--admin HOST:PORT names another address)")]
    Unreachable { addr: SocketAddr, error: String },
    #[error("the admin listener at {addr} answered {status}: {message}")]
    Status {
        addr: SocketAddr,
        status: u16,
        message: String,
    },
    #[error("the admin listener at {addr} sent an answer that is not JSON: {error}")]
    Invalid { addr: SocketAddr, error: String },
}

/// The admin listener's address: `explicit`, else `[gateway] admin` of the routes file
/// (read without compiling the rest, so a file the gateway is not running yet does not
/// matter), else the default. An unspecified address (`0.0.0.0`) is reached on loopback.
pub fn admin_addr(explicit: Option<&str>, config: &Path) -> Result<SocketAddr, AdminError> {
    let written = match explicit {
        Some(a) => a.to_owned(),
        None => configured_admin(config)?,
    };
    let mut addr = written
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| AdminError::Address(written.clone()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// `[gateway] admin` of the routes file, or the default when the file has none.
fn configured_admin(config: &Path) -> Result<String, AdminError> {
    let unusable = |error: String| AdminError::Config {
        path: config.display().to_string(),
        error,
    };
    let text = std::fs::read_to_string(config).map_err(|e| unusable(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| unusable(e.message().trim().to_owned()))?;
    match table.get("gateway").and_then(|g| g.get("admin")) {
        None => Ok(DEFAULT_ADMIN.to_owned()),
        Some(toml::Value::String(a)) => Ok(a.clone()),
        Some(_) => Err(unusable("`gateway.admin` is not a string".into())),
    }
}

/// `GET path` on the admin listener, as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, AdminError> {
    get_json_within(addr, path, TIMEOUT)
}

/// [`get_json`], waiting at most `timeout` for each step.
pub fn get_json_within(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<serde_json::Value, AdminError> {
    let unreachable = |e: std::io::Error| AdminError::Unreachable {
        addr,
        error: e.to_string(),
    };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    s.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    s.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let authorization = match std::env::var(TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => {
            format!("Authorization: Bearer {}\r\n", token.trim())
        }
        _ => String::new(),
    };
    // The admin listener answers IP-address hosts only (DNS rebinding).
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{authorization}Connection: close\r\n\r\n"
    )
    .map_err(unreachable)?;
    let mut buf = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut buf)
        .map_err(unreachable)?;
    let text = String::from_utf8_lossy(&buf);
    let invalid = |error: String| AdminError::Invalid { addr, error };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no HTTP answer".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line".into()))?;
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| invalid(e.to_string()))?;
    if status != 200 {
        let mut message = json["error"].as_str().unwrap_or("(no message)").to_owned();
        if status == 401 {
            message.push_str(&format!(
                " (set {TOKEN_ENV} to the gateway's registry token; `[registry] token_env` names where the gateway reads it)"
            ));
        }
        return Err(AdminError::Status {
            addr,
            status,
            message,
        });
    }
    Ok(json)
}
