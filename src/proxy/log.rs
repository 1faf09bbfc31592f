//! The access log line of a finished request.

use ficus_plugins::Identity;
use pingora_proxy::Session;
use std::time::Duration;

use super::ctx::RequestCtx;
use crate::access_log::{self, Fields, Format};

/// Emits the access log line for a finished request.
pub fn access_log(
    session: &Session,
    ctx: &RequestCtx,
    format: Format,
    status: u16,
    elapsed: Duration,
) {
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
    // Who the request was verified to come from (an authentication plugin's result).
    let identity = ctx.plugins.state.get::<Identity>();
    access_log::log(
        format,
        &Fields {
            request_id: ctx.request_id(),
            method: req.method.as_str(),
            path: ctx
                .routed
                .as_ref()
                .map_or(req.raw_path(), |r| r.path.as_bytes()),
            status,
            route,
            service,
            side,
            instance: ctx.upstream.instance,
            client_ip: ctx.client.ip,
            bytes: session.body_bytes_sent() as u64,
            duration: elapsed,
            upstream: ctx.timing.upstream_elapsed,
            attempts: ctx.upstream.attempts,
            fallback: ctx.upstream.fell_back,
            trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id()),
            subject: identity.and_then(|i| i.subject.as_deref()).unwrap_or(""),
            client_id: identity.and_then(|i| i.client_id.as_deref()).unwrap_or(""),
            error: ctx.outcome.error.map_or("", |e| e.message()),
            detail: ctx.outcome.detail.as_deref().unwrap_or(""),
        },
    );
}
