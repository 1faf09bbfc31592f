//! The CORS plugin: answers preflights at the edge and puts the policy's headers on every
//! response of its routes (proxied ones, and the gateway's own errors and plugin answers).
//!
//! The decisions are `settings.rs`'s; this file only turns them into a response or header
//! edits. Per request it allocates nothing beyond the edit list and, for an upstream
//! `Vary` that does not name `Origin` yet, the merged `Vary` value.

use async_trait::async_trait;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::settings::{CorsSettings, OriginCheck, PreflightRefusal};
use super::SECTION;
use crate::{
    HeaderEdits, Hooks, MetricSample, Outcome, Plugin, RequestView, Response, ResponseHead, Source,
};

const TRUE: HeaderValue = HeaderValue::from_static("true");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
/// A preflight's answer depends on all three request headers.
const VARY_PREFLIGHT: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

/// Left in the request state when the policy answered a preflight: that answer is complete
/// as built, and the response hook leaves it alone.
#[derive(Debug, Clone, Copy)]
struct PreflightAnswered;

/// A CORS policy instance.
pub struct CorsPlugin {
    name: Arc<str>,
    settings: Arc<CorsSettings>,
    preflights_answered: AtomicU64,
    preflights_refused: [AtomicU64; 3],
}

impl CorsPlugin {
    pub fn new(name: &str, settings: Arc<CorsSettings>) -> CorsPlugin {
        CorsPlugin {
            name: name.into(),
            settings,
            preflights_answered: AtomicU64::new(0),
            preflights_refused: Default::default(),
        }
    }

    /// The `204` for an admitted preflight, or the `403` (no CORS headers) for a refused one.
    fn answer_preflight(&self, request: &HeaderMap) -> Response {
        let s = &self.settings;
        let grant = match s.check_preflight(request) {
            Ok(grant) => grant,
            Err(why) => {
                self.preflights_refused[why as usize].fetch_add(1, Ordering::Relaxed);
                return Response::error(StatusCode::FORBIDDEN, why.message())
                    .with_header(VARY, VARY_PREFLIGHT)
                    .with_log_detail(format!("cors policy \"{}\"", self.name));
            }
        };
        self.preflights_answered.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::empty(StatusCode::NO_CONTENT);
        r.headers.reserve(6);
        let origin = grant.origin.cloned().unwrap_or(ANY_ORIGIN);
        r.headers.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin));
        r.headers
            .push((ACCESS_CONTROL_ALLOW_METHODS, s.allow_methods.clone()));
        if let Some(h) = grant.headers {
            r.headers.push((ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        if let Some(age) = &s.max_age_value {
            r.headers.push((ACCESS_CONTROL_MAX_AGE, age.clone()));
        }
        if s.credentials {
            r.headers.push((ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
        }
        r.headers.push((VARY, VARY_PREFLIGHT));
        r
    }

    /// The headers of an actual (non-preflight) response; the gateway's own answers expose
    /// their retry and refusal fields too.
    fn actual_response(
        &self,
        response: &HeaderMap,
        request: &HeaderMap,
        source: Source,
        edits: &mut HeaderEdits,
    ) {
        remove_access_control(response, edits);
        let s = &self.settings;
        let origin = match s.check_origin(request) {
            // The answer is the same for every origin (and for none): no `Vary`.
            OriginCheck::Any => ANY_ORIGIN,
            OriginCheck::Allowed(v) => {
                vary_on_origin(response, edits);
                v.clone()
            }
            // The answer would differ for another origin: a cache must know.
            OriginCheck::Refused | OriginCheck::Absent => {
                vary_on_origin(response, edits);
                return;
            }
        };
        // Every `Access-Control-*` on the response is removed above: appending (no look for
        // values to replace) ends the same as setting.
        edits.append(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if s.credentials {
            edits.append(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        match source {
            Source::Gateway => edits.append(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                s.expose_on_gateway_answers.clone(),
            ),
            Source::Upstream => {
                if let Some(expose) = &s.expose_value {
                    edits.append(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                }
            }
        }
    }
}

/// Removes every `Access-Control-*` header already on the response (the upstream's, or a
/// route's `response_headers`): on a route with a CORS policy, the policy alone speaks.
fn remove_access_control(response: &HeaderMap, edits: &mut HeaderEdits) {
    for name in response.keys() {
        if is_access_control(name) {
            edits.remove(name.clone());
        }
    }
}

fn is_access_control(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

/// Adds `Origin` to the response's `Vary`, unless it is there already (or `Vary: *`).
fn vary_on_origin(response: &HeaderMap, edits: &mut HeaderEdits) {
    let all = response.get_all(VARY);
    let mut existing = all.iter().peekable();
    if existing.peek().is_none() {
        // None there: appending ends the same as setting.
        edits.append(VARY, VARY_ORIGIN);
        return;
    }
    let covered = all.iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(b"origin"))
    });
    if covered {
        return;
    }
    let mut merged = Vec::with_capacity(64);
    for v in existing {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            merged.extend_from_slice(v);
            merged.extend_from_slice(b", ");
        }
    }
    merged.extend_from_slice(b"Origin");
    // Built from valid header values and ASCII: always valid.
    if let Ok(v) = HeaderValue::from_bytes(&merged) {
        edits.set(VARY, v);
    }
}

#[async_trait]
impl Plugin for CorsPlugin {
    fn kind(&self) -> &'static str {
        SECTION
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            request: true,
            upstream_request: false,
            response: true,
            log: false,
        }
    }

    /// Answers a preflight (never forwarded, never authenticated: it runs before the
    /// access, auth and rate-limit stages); lets every other request through.
    async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
        if !req.preflight {
            return Outcome::Continue;
        }
        req.state.insert(PreflightAnswered);
        Outcome::Respond(self.answer_preflight(req.headers))
    }

    async fn on_response(&self, resp: &mut ResponseHead<'_>) {
        if resp.state.get::<PreflightAnswered>().is_some() {
            return;
        }
        self.actual_response(resp.headers, resp.request_headers, resp.source, resp.edits);
    }

    fn metrics(&self, out: &mut Vec<MetricSample>) {
        let sample = |result: &'static str, value: u64| {
            MetricSample::counter(
                "ficus_cors_preflights_total",
                "CORS preflights answered by the gateway, by policy and result.",
                vec![("policy", self.name.to_string()), ("result", result.into())],
                value,
            )
        };
        out.push(sample(
            "allowed",
            self.preflights_answered.load(Ordering::Relaxed),
        ));
        for why in PreflightRefusal::ALL {
            let n = self.preflights_refused[why as usize].load(Ordering::Relaxed);
            out.push(sample(why.metric_result(), n));
        }
    }
}
