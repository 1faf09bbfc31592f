//! `ficus status`: the migration board in the terminal. Reads `/migration.json` from a
//! running gateway's admin listener (the address given with `--admin`, else the `admin` of
//! the routes file, else the default) and prints the headline and a table of the routes.
//!
//! Only reads; the figures are the gateway's (see `crate::board`), never recomputed here.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

use crate::board::model::{MigrationBoard, RouteBoard, SideFacts};
use crate::config::DEFAULT_ADMIN;

/// How long `status` waits to connect and for the answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The sparkline's width in characters (the newest samples).
const SPARK_WIDTH: usize = 60;

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("`{0}` is not an address (write e.g. 127.0.0.1:9901)")]
    BadAddress(String),
    #[error("the gateway's admin listener at {addr} is not reachable ({source}); is ficus running, and is that its `[gateway] admin` address? Use --admin ADDR to name another")]
    Unreachable {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} did not answer GET /migration.json like a ficus admin listener: {why}")]
    BadAnswer { addr: String, why: String },
}

/// Where `status` asks: `--admin`, else the config's admin address, else [`DEFAULT_ADMIN`].
/// Returns the address and where it came from.
pub fn admin_address(config: &Path, admin: Option<&str>) -> (String, String) {
    if let Some(a) = admin {
        return (a.to_string(), "--admin".into());
    }
    match crate::config::load(config) {
        Ok(cfg) => {
            let mut addr = cfg.gateway.admin;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (addr.to_string(), format!("`admin` in {}", config.display()))
        }
        Err(_) => (
            DEFAULT_ADMIN.to_string(),
            format!("the default ({} not loadable)", config.display()),
        ),
    }
}

/// `ficus status`: the report to print, or why there is none.
pub fn status(config: &Path, admin: Option<&str>) -> Result<String, StatusError> {
    let (addr, from) = admin_address(config, admin);
    let board = fetch(&addr)?;
    Ok(render(&board, &addr, &from))
}

/// GET /migration.json from `addr`.
pub fn fetch(addr: &str) -> Result<MigrationBoard, StatusError> {
    let sock: SocketAddr = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StatusError::BadAddress(addr.to_string()))?;
    let unreachable = |source| StatusError::Unreachable {
        addr: addr.to_string(),
        source,
    };
    let mut s = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(unreachable)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    // The admin listener only answers IP-literal or loopback hosts (DNS rebinding guard).
    let request = format!(
        "GET /migration.json HTTP/1.1\r\nHost: {sock}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(unreachable)?;
    let bad = |why: String| StatusError::BadAnswer {
        addr: addr.to_string(),
        why,
    };
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no HTTP response".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(bad(format!("`{status_line}`")));
    }
    serde_json::from_str(body).map_err(|e| bad(format!("unexpected JSON ({e})")))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.1}ms"))
}

/// The legacy share per sample as block characters (the newest [`SPARK_WIDTH`]); a space
/// for a sample without requests.
fn sparkline(board: &MigrationBoard) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let series = &board.legacy_share_series;
    series[series.len().saturating_sub(SPARK_WIDTH)..]
        .iter()
        .map(|p| match p.legacy_share {
            Some(s) => BLOCKS[((s * 7.0).round() as usize).min(7)],
            None => ' ',
        })
        .collect()
}

fn where_to(r: &RouteBoard) -> String {
    let mut s = r.target.label().to_string();
    let sides: Vec<String> = r
        .services
        .iter()
        .map(|d| {
            if r.services.len() > 1 {
                format!("{} {:.0}%", d.service, d.weight_percent)
            } else {
                d.service.clone()
            }
        })
        .collect();
    let _ = write!(s, " {}", sides.join(" / "));
    if let Some(sh) = &r.shadow {
        let _ = write!(s, " +shadow {}", sh.service);
    }
    s
}

fn sides(legacy: &SideFacts, new: &SideFacts, f: fn(&SideFacts) -> String) -> String {
    format!("{} / {}", f(legacy), f(new))
}

/// The report: headline, sparkline, one line per route.
pub fn render(board: &MigrationBoard, addr: &str, from: &str) -> String {
    let mut out = String::new();
    let t = &board.total;
    let _ = writeln!(out, "ficus migration board (admin {addr}, from {from})");
    if let Some(n) = &board.notice {
        let _ = writeln!(out, "note: {n}");
    }
    let who = if board.legacy.is_empty() {
        "the legacy".to_string()
    } else {
        format!("the legacy ({})", board.legacy.join(", "))
    };
    let _ = writeln!(
        out,
        "{who} still serves {} of all traffic over the last 5 min ({} requests), {} over the last hour ({} requests)",
        pct(t.legacy_share_5m),
        t.requests_5m,
        pct(t.legacy_share_1h),
        t.requests_1h
    );
    let _ = writeln!(
        out,
        "5xx legacy/new: {}   p99 legacy/new: {}   fallbacks 5 min/1 h: {}/{}",
        sides(&t.legacy, &t.new, |s| pct(s.error_rate)),
        sides(&t.legacy, &t.new, |s| ms(s.p99_ms)),
        t.fallbacks_5m,
        t.fallbacks_1h
    );
    let spark = sparkline(board);
    if !spark.trim().is_empty() {
        let _ = writeln!(
            out,
            "legacy share per {}s sample: {spark}",
            board.sample_period_seconds
        );
    }
    out.push('\n');
    let header = [
        "ROUTE",
        "PATH",
        "TRAFFIC GOES TO",
        "NEW 5M",
        "NEW 1H",
        "REQ 5M",
        "5XX L/N",
        "P99 L/N",
        "FALLBACKS",
        "SHADOW MATCH",
        "TOP MISMATCHES",
    ];
    let rows: Vec<[String; 11]> = board
        .routes
        .iter()
        .map(|r| {
            let (matched, fields) = match &r.shadow {
                None => ("-".to_string(), String::new()),
                Some(s) => (
                    format!("{} of {}", pct(s.match_rate), s.compared),
                    s.top_fields
                        .iter()
                        .map(|f| format!("{} x{}", f.field, f.count))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            [
                r.name.clone(),
                r.path.clone(),
                where_to(r),
                pct(r.new_share_5m),
                pct(r.new_share_1h),
                r.requests_5m.to_string(),
                sides(&r.legacy, &r.new, |s| pct(s.error_rate)),
                sides(&r.legacy, &r.new, |s| ms(s.p99_ms)),
                format!("{}/{}", r.fallbacks_5m, r.fallbacks_1h),
                matched,
                fields,
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(widths.iter()) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
