//! `GET /shadow` (every shadowed route's figures) and `GET /shadow/{route}` (one route's
//! record: counts, mismatching fields, learned noise, the last mismatch samples).

use http::{Response, StatusCode};
use serde::Serialize;

use super::{error_reply, json_reply};
use crate::metrics::Metrics;
use crate::shadow::store::ShadowState;
use crate::shadow::ShadowReport;

/// One route's record with where its copies go.
#[derive(Debug, Serialize)]
pub struct RouteShadowView {
    pub route: String,
    pub service: String,
    pub in_flight: usize,
    pub queue: usize,
    #[serde(flatten)]
    pub report: ShadowReport,
}

impl RouteShadowView {
    fn of(state: &ShadowState) -> Self {
        RouteShadowView {
            route: state.route.clone(),
            service: state.service.clone(),
            in_flight: state.in_flight(),
            queue: state.queue(),
            report: state.record.report(),
        }
    }
}

/// One line of `GET /shadow`.
#[derive(Debug, Serialize)]
pub struct ShadowSummary {
    pub route: String,
    pub service: String,
    pub compared: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub match_rate: Option<f64>,
    pub shadow_errors: u64,
    pub shadow_timeouts: u64,
    pub dropped: u64,
    pub too_large_answers: u64,
    /// The most frequent mismatching fields (at most five).
    pub top_fields: Vec<String>,
    pub noise_fields: usize,
}

/// `GET /shadow` and `GET /shadow/{route}`; `None` for other paths.
pub fn handle(metrics: &Metrics, path: &str) -> Option<Response<Vec<u8>>> {
    if path == "/shadow" {
        let all: Vec<ShadowSummary> = metrics
            .shadows
            .all()
            .iter()
            .map(|s| {
                let r = s.record.report();
                ShadowSummary {
                    route: s.route.clone(),
                    service: s.service.clone(),
                    compared: r.compared,
                    matched: r.matched,
                    mismatched: r.mismatched,
                    match_rate: r.match_rate,
                    shadow_errors: r.shadow_errors,
                    shadow_timeouts: r.shadow_timeouts,
                    dropped: r.dropped,
                    too_large_answers: r.too_large_answers,
                    top_fields: r.fields.iter().take(5).map(|f| f.field.clone()).collect(),
                    noise_fields: r.noise.fields.len(),
                }
            })
            .collect();
        return Some(json_reply(StatusCode::OK, &all));
    }
    let route = path.strip_prefix("/shadow/")?;
    Some(match metrics.shadows.get(route) {
        Some(state) => json_reply(StatusCode::OK, &RouteShadowView::of(&state)),
        None => error_reply(
            StatusCode::NOT_FOUND,
            &format!("no shadowed route named `{route}` (GET /shadow lists them)"),
        ),
    })
}
