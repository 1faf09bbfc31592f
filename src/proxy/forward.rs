//! The gateway's own edits of what it forwards: the upstream request's headers
//! (hop-by-hop removal, X-Forwarded-*, request id, trace context, the route's
//! `request_headers`, the service's own token) and a proxied response's (hop-by-hop
//! removal, then the edits every response gets).

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::headers::{self, HeaderSink};
use super::respond;
use crate::config::TraceContext;

/// The gateway's changes to the upstream request's headers: hop-by-hop removal,
/// X-Forwarded-*, request id, trace context, the route's edits.
pub fn upstream_headers(
    h: &mut impl HeaderSink,
    session: &Session,
    ctx: &RequestCtx,
    route: usize,
) {
    // Only WebSocket upgrades are passed on (as pingora's own policy does).
    let websocket = session.is_upgrade_req()
        && session
            .req_header()
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    headers::strip_hop_by_hop_request(h, websocket, !ctx.client.peer_trusted);
    headers::strip_identity_headers(h, &ctx.runtime.config.identity_headers);
    let route = ctx.runtime.config.router.route(route);
    h.reserve(UPSTREAM_ADDED + route.request_headers().additions());
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let host = headers::forwarded_host(session.req_header());
    headers::set_forwarded(h, ctx.client.peer_ip, ctx.client.peer_trusted, tls, host);
    let req = session.req_header();
    // Every HTTP/1.1 request needs a Host (RFC 9112 §3.2); an HTTP/1.0 client may have sent
    // none: the absolute-form target's authority, else the instance's address.
    if req.version == http::Version::HTTP_10 && !h.map().contains_key(http::header::HOST) {
        if let Some(v) = headers::absolute_authority(req.raw_path())
            .and_then(|a| http::HeaderValue::from_bytes(a).ok())
            .or_else(|| {
                ctx.upstream
                    .instance
                    .and_then(|a| a.to_string().try_into().ok())
            })
        {
            h.put(&http::header::HOST, "Host", v);
        }
    }
    // HTTP/2 clients may split cookies into several fields; HTTP/1 wants one line, joined
    // with "; " (RFC 9113 §8.2.3).
    if session.is_http2() {
        headers::join_cookies(h);
    }
    h.put(
        &headers::X_REQUEST_ID,
        "X-Request-Id",
        ctx.request_id_value.clone(),
    );
    match &ctx.trace {
        Some(tp) => h.put(&headers::TRACEPARENT, "traceparent", tp.child_header()),
        // `continue` without a valid incoming trace: nothing (an invalid one is dropped).
        None if ctx.runtime.config.gateway.trace_context == TraceContext::Continue
            && h.map().contains_key(&headers::TRACEPARENT) =>
        {
            h.del(&headers::TRACEPARENT)
        }
        None => {}
    }
    if !route.request_headers().is_empty() {
        headers::edit(h, route.request_headers());
    }
}

/// Takes the token of the service the current attempt goes to, when the service has
/// client credentials: the cached one, or one fetched now (waited for at most the
/// credentials' `timeout`). Called for every attempt, retries included, before its
/// instance is contacted; `UpstreamCredentials` (503, with the time until the next fetch
/// as `Retry-After`) when there is none.
pub async fn take_service_token(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let Some(service) = ctx.upstream.service else {
        return Ok(());
    };
    let Some(source) = &ctx.runtime.credentials[service] else {
        return Ok(());
    };
    match source.authorization().await {
        Ok(v) => {
            ctx.upstream.authorization = Some(v);
            Ok(())
        }
        Err(unavailable) => {
            ctx.upstream.retry_after = Some(unavailable.retry_after);
            Err(GatewayError::UpstreamCredentials)
        }
    }
}

/// Puts the service's token (see [`take_service_token`]) in place of any `Authorization`
/// the client sent or a plugin set: applied last, so nothing else can change it.
pub fn service_token(upstream: &mut RequestHeader, ctx: &RequestCtx) {
    if let Some(v) = &ctx.upstream.authorization {
        upstream.put(&http::header::AUTHORIZATION, "Authorization", v.clone());
    }
}

/// Headers the gateway adds to every upstream request: X-Forwarded-For, -Proto and -Host,
/// X-Request-Id and traceparent.
const UPSTREAM_ADDED: usize = 5;

/// The gateway's changes to a proxied response's headers: hop-by-hop removal, then what
/// every response gets (request id, the route's edits).
/// `switching`: the response is a `101 Switching Protocols`, which keeps its upgrade
/// headers; `h1`: the client speaks HTTP/1 (pingora then sets `Connection` itself).
pub fn response_headers(h: &mut impl HeaderSink, ctx: &RequestCtx, switching: bool, h1: bool) {
    headers::strip_hop_by_hop_response(h, switching, h1);
    respond::own_edits(h, ctx);
}
