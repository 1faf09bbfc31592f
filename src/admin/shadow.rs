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
    let route = percent_decoded(path.strip_prefix("/shadow/")?);
    let route = route.as_str();
    Some(match metrics.shadows.get(route) {
        Some(state) => json_reply(StatusCode::OK, &RouteShadowView::of(&state)),
        None => error_reply(
            StatusCode::NOT_FOUND,
            &format!("no shadowed route named `{route}` (GET /shadow lists them)"),
        ),
    })
}

/// A route name as written in a request target (`%XX` escapes decoded; an invalid escape
/// is kept as written, and names no route).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn route_names_are_percent_decoded() {
        assert_eq!(percent_decoded("orders%20v2"), "orders v2");
        assert_eq!(percent_decoded("a%2Fb"), "a/b");
        assert_eq!(percent_decoded("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decoded("plain"), "plain");
    }
}
