//! `ficus status`: the migration board in the terminal. Reads `/migration.json` from a
//! running gateway's admin listener (found by `admin_client::admin_addr`: `--admin`, else
//! the `admin` of the routes file, else the default) and prints the headline and a table
//! of the routes.
//!
//! Only reads; the figures are the gateway's (see `crate::board`), never recomputed here.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::admin_client::{get_json, AdminError};
use crate::board::model::{MigrationBoard, RouteBoard, SideFacts};

/// The sparkline's width in characters (the newest samples).
const SPARK_WIDTH: usize = 60;

/// `ficus status`: the report of the gateway whose admin listener is `admin`, or why there
/// is none.
pub fn status(admin: SocketAddr) -> Result<String, AdminError> {
    let json = get_json(admin, "/migration.json")?;
    let board: MigrationBoard = serde_json::from_value(json).map_err(|e| AdminError::Invalid {
        addr: admin,
        error: format!("not a migration board ({e})"),
    })?;
    Ok(render(&board, admin))
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
pub fn render(board: &MigrationBoard, admin: SocketAddr) -> String {
    let mut out = String::new();
    let t = &board.total;
    let _ = writeln!(out, "ficus migration board (admin listener {admin})");
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
