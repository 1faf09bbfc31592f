//! The access log line of a finished request.

use ficus_plugins::Identity;
use pingora_proxy::Session;
use std::time::Duration;

use super::ctx::RequestCtx;
use crate::access_log;

/// Emits the access log line for a finished request.
pub fn access_log(session: &Session, ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let req = session.req_header();
    let rt = &ctx.runtime;
    // `service` is the service that served the request; `side` the split side it was
    // placed on (they differ after a fallback), empty on a route without a split.
    let (route, service, side) = match &ctx.routed {
        Some(r) => {
            let route = rt.config.router.route(r.index);
            let svc = ctx.upstream.service.unwrap_or(route.service);
            let side = route
                .split
                .as_ref()
                .zip(ctx.upstream.split)
                .and_then(|(s, c)| s.sides.get(c.side))
                .map_or("", |d| rt.config.services[d.service].name.as_str());
            (&*route.name, rt.config.services[svc].name.as_str(), side)
        }
        None => ("", "", ""),
    };
    let path = ctx.routed.as_ref().map_or_else(
        || String::from_utf8_lossy(req.raw_path()).into_owned(),
        |r| r.path.replace('\0', "%2F"),
    );
    let trace_id = ctx.trace.as_ref().map_or("", |t| t.trace_id());
    let client = ctx
        .client
        .ip
        .map(DisplayOr::Some)
        .unwrap_or(DisplayOr::Dash);
    let instance = ctx
        .upstream
        .instance
        .map(DisplayOr::Some)
        .unwrap_or(DisplayOr::Dash);
    let upstream_ms = ctx
        .timing
        .upstream_elapsed
        .map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
    // Who the request was verified to come from (an authentication plugin's result).
    let identity = ctx.plugins.state.get::<Identity>();
    let subject = identity.and_then(|i| i.subject.as_deref()).unwrap_or("");
    let client_id = identity.and_then(|i| i.client_id.as_deref()).unwrap_or("");
    let error = ctx.outcome.error.map_or("", |e| e.message());
    tracing::info!(
        target: access_log::TARGET,
        request_id = ctx.request_id(),
        method = req.method.as_str(),
        path = path.as_str(),
        status,
        route,
        service,
        side,
        instance = %instance,
        client_ip = %client,
        bytes = session.body_bytes_sent() as u64,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms,
        attempts = ctx.upstream.attempts,
        fallback = ctx.upstream.fell_back,
        trace_id,
        subject,
        client_id,
        error,
        detail = ctx.outcome.detail.as_deref().unwrap_or(""),
    );
}

/// Displays a value or `-`, without allocating.
enum DisplayOr<T> {
    Some(T),
    Dash,
}

impl<T: std::fmt::Display> std::fmt::Display for DisplayOr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisplayOr::Some(v) => v.fmt(f),
            DisplayOr::Dash => f.write_str("-"),
        }
    }
}
