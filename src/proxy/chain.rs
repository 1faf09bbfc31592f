//! Runs a route's plugin hooks at the phase boundaries and applies the header edits they
//! ask for. The hooks and their order are documented on `ficus_plugins::Plugin`; this
//! module only builds what each hook sees and applies what it returns.

use ficus_plugins::{
    HeaderEdits, HeaderOp, LogRecord, Outcome, RequestView, ResponseHead, Source, UpstreamRequest,
};
use http::HeaderName;
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::Duration;

use super::ctx::RequestCtx;
use super::headers::HeaderSink;
use crate::router::normalize;

/// Headers that frame the message: the gateway's alone. A plugin's edit of one is ignored
/// (a wrong `Content-Length` would desynchronize the connection).
pub fn is_framing(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH
        || name == http::header::TRANSFER_ENCODING
        || name == http::header::CONNECTION
        || name == http::header::UPGRADE
}

/// Applies edits in order, skipping framing headers.
pub fn apply(h: &mut impl HeaderSink, ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Set(n, v) if !is_framing(n) => h.put_named(n, v.clone()),
            HeaderOp::Append(n, v) if !is_framing(n) => h.add(n, v.clone()),
            HeaderOp::Remove(n) if !is_framing(n) => h.del(n),
            _ => {}
        }
    }
}

/// The route's request hooks; `Some` when a plugin answers the request itself.
pub async fn run_request(
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Option<ficus_plugins::Response> {
    let RequestCtx {
        runtime,
        routed,
        plugins,
        client,
        request_id_value,
        ..
    } = ctx;
    let routed = routed.as_ref()?;
    let route = runtime.config.router.route(routed.index);
    if route.chain.request.is_empty() {
        return None;
    }
    let query = normalize::split_target(req.raw_path())
        .1
        .and_then(|q| std::str::from_utf8(q).ok());
    let mut view = RequestView {
        method: &req.method,
        path: &routed.path,
        query,
        headers: &req.headers,
        client_ip: client.ip,
        route: &route.name,
        request_id: request_id_value.to_str().unwrap_or("-"),
        preflight: routed.preflight,
        state: &mut plugins.state,
        upstream: &mut plugins.upstream_edits,
    };
    match ficus_plugins::run_request_hooks(&route.chain.request, &mut view).await {
        Outcome::Continue => None,
        Outcome::Respond(r) => Some(r),
    }
}

/// The edits request hooks asked for, then the upstream-request hooks, on one attempt's
/// request head.
pub async fn run_upstream(upstream: &mut RequestHeader, ctx: &RequestCtx) {
    let Some(route) = ctx.route() else { return };
    apply(upstream, ctx.plugins.upstream_edits.ops());
    if route.chain.upstream_request.is_empty() {
        return;
    }
    let mut edits = HeaderEdits::default();
    for p in route.chain.upstream_request.iter() {
        let mut req = UpstreamRequest {
            headers: &upstream.headers,
            route: &route.name,
            attempt: ctx.upstream.attempts,
            state: &ctx.plugins.state,
            edits: &mut edits,
        };
        p.on_upstream_request(&mut req).await;
        apply(upstream, &edits.take());
    }
}

/// The response hooks, on any response head.
pub async fn run_response(
    req: &RequestHeader,
    ctx: &RequestCtx,
    head: &mut ResponseHeader,
    source: Source,
) {
    let Some(route) = ctx.route() else { return };
    if route.chain.response.is_empty() {
        return;
    }
    let mut edits = HeaderEdits::default();
    for p in route.chain.response.iter() {
        let mut view = ResponseHead {
            status: head.status,
            headers: &head.headers,
            source,
            method: &req.method,
            request_headers: &req.headers,
            route: &route.name,
            state: &ctx.plugins.state,
            edits: &mut edits,
        };
        p.on_response(&mut view).await;
        apply(head, &edits.take());
    }
}

/// The log hooks, once the request is over.
pub async fn run_log(ctx: &RequestCtx, status: u16, duration: Duration) {
    let Some(route) = ctx.route() else { return };
    if route.chain.log.is_empty() {
        return;
    }
    let record = LogRecord {
        status,
        route: &route.name,
        client_ip: ctx.client.ip,
        duration,
        state: &ctx.plugins.state,
    };
    for p in route.chain.log.iter() {
        p.on_log(&record).await;
    }
}
