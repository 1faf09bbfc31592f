//! The migration board on the admin listener: `GET /migration` (the page) and
//! `GET /migration.json` (what it draws, and what `ficus status` prints), plus the
//! `ficus_service_info` lines of `/metrics` that let PromQL tell the legacy apart.
//!
//! Read-only. The figures are built by `crate::board`; this file only answers.

use http::{Response, StatusCode};

use crate::runtime::{Runtime, Shared};

/// The page (no build step, no CDN: everything is in this one file).
const PAGE: &str = include_str!("migration.html");

/// The answer for `path` if it is one of the board's, else `None`.
pub fn handle(shared: &Shared, path: &str) -> Option<Response<Vec<u8>>> {
    match path {
        "/migration" | "/migration/" => Some(super::reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            PAGE,
        )),
        "/migration.json" => {
            let board = shared
                .board
                .view(&shared.runtime(), &shared.metrics.shadows);
            Some(super::json_reply(StatusCode::OK, &board))
        }
        _ => None,
    }
}

/// Appends `ficus_service_info` for every configured service.
pub fn service_info(rt: &Runtime, out: &mut String) {
    let legacy = &rt.config.gateway.legacy;
    crate::metrics::render_service_info(
        rt.config
            .services
            .iter()
            .map(|s| (s.name.as_str(), legacy.contains(&s.name))),
        out,
    );
}
