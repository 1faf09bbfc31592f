//! The pingora `ProxyHttp` implementation: a thin dispatcher over the router, upstream
//! selection and header policy.
//!
//! Phase by phase:
//! - `new_ctx`: take one runtime snapshot for the whole request and count it in flight.
//! - `request_filter`: request id, limits, path normalization, routing, plugins. Answers
//!   the request itself (4xx) when it must.
//! - `upstream_peer`: pick an instance of the route's service.
//! - `upstream_request_filter`: forwarded path, hop-by-hop removal, X-Forwarded-*,
//!   request id, traceparent, route header edits.
//! - `response_filter`: hop-by-hop removal, request id, route header edits.
//! - `fail_to_proxy`: the one place upstream errors become 502/503/504 JSON responses.
//! - `logging`: metrics and the access log line.

pub mod ctx;
pub mod headers;
pub mod respond;
pub mod select;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{AccessLog, TraceContext};
use crate::ids::{self, TraceParent};
use crate::metrics::UpstreamErrorKind;
use crate::router::normalize;
use crate::router::RequestView;
use crate::runtime::Shared;
use ctx::{RequestCtx, Routed};
use headers::HeaderSink;
use respond::{classify, write_error, GatewayError};

/// The gateway's proxy logic. Holds only process-wide state; everything reloadable is in
/// the per-request snapshot.
pub struct Gateway {
    pub shared: Arc<Shared>,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Gateway { shared }
    }

    /// Checks limits, normalizes, and routes. Returns the routed request or the error to
    /// answer with.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Result<Routed, GatewayError> {
        let rt = &ctx.runtime;
        let limits = &rt.config.gateway.limits;
        let req = session.req_header();
        let raw = req.raw_path();
        if raw.len() > limits.max_uri_bytes {
            return Err(GatewayError::UriTooLong);
        }
        if req.headers.len() > limits.max_headers {
            return Err(GatewayError::HeadersTooLarge);
        }
        if !host_is_sound(req) || !headers::connection_is_sound(&req.headers) {
            return Err(GatewayError::BadRequest);
        }
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > limits.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge);
        }
        // One `Content-Length` line: two, even equal ones, are refused (as nginx does), an
        // upstream could read them differently. (Next to `Transfer-Encoding` pingora has
        // already dropped it and will close the connection after the answer, RFC 9112 §6.1.)
        let mut cl = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
        match (cl.next(), cl.next()) {
            (None, _) => {}
            (Some(len), None) => {
                if content_length(len.as_bytes())? > limits.max_body_bytes {
                    return Err(GatewayError::BodyTooLarge);
                }
            }
            _ => return Err(GatewayError::BadRequest),
        }
        // Only one plain `chunked` is forwarded: any other coding (or `chunked` twice, in
        // two header lines) would reach the upstream as something pingora did not frame.
        let mut te = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
        match (te.next(), te.next()) {
            (None, _) => {}
            (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => {}
            _ => return Err(GatewayError::UnsupportedTransferCoding),
        }
        // Absolute form (`GET http://host/path`, RFC 9112 §3.2.2): routed on its path and
        // sent upstream in origin form.
        // (pingora keeps the whole target as the raw path and only its path in the URI.)
        let absolute = !raw.starts_with(b"/") && raw.windows(3).any(|w| w == b"://");
        let raw = if absolute {
            req.uri
                .path_and_query()
                .map_or(&b"/"[..], |pq| pq.as_str().as_bytes())
        } else {
            raw
        };
        let (raw_path, query) = normalize::split_target(raw);
        let raw_path: &[u8] = if raw_path.is_empty() { b"/" } else { raw_path };
        let normalized = normalize::normalize(raw_path).map_err(GatewayError::BadPath)?;
        let view = RequestView {
            method: &req.method,
            host: headers::request_host(req),
            path: &normalized.path,
            headers: &req.headers,
        };
        let Some(index) = rt.config.router.find(&view) else {
            return Err(GatewayError::NoRoute);
        };
        let route = rt.config.router.route(index);
        // TRACE echoes the request, credentials included (cross-site tracing): only routes
        // that list it get it.
        if is_trace(&req.method) && !route.methods.contains(&req.method) {
            return Err(GatewayError::TraceNotAllowed);
        }
        if !normalized.flags.without(route.allow).is_empty() {
            return Err(GatewayError::PathNotAllowed);
        }
        // The target sent upstream: only rebuilt when it differs from what arrived.
        let target = (absolute || route.changes_target(&normalized.path, raw_path)).then(|| {
            let query = query.map(String::from_utf8_lossy);
            route.upstream_target(&normalized.path, query.as_deref())
        });
        Ok(Routed {
            index,
            path: normalized.path,
            target,
        })
    }
}

/// A `Content-Length` must be one plain decimal number. RFC 9110 §8.6 lets a recipient
/// either refuse a list like `5, 5` or forward one number in its place; pingora forwards
/// the list unchanged, which an upstream could read differently, so it is refused.
fn content_length(v: &[u8]) -> Result<u64, GatewayError> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(GatewayError::BadRequest);
    }
    // Twenty digits or more overflow; no body is that large.
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(GatewayError::BodyTooLarge)
}

/// `TRACE`, and IIS's `TRACK`, which does the same.
fn is_trace(m: &http::Method) -> bool {
    *m == http::Method::TRACE || m.as_str() == "TRACK"
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one `Host` (unless its target carries
/// the authority), and its value must be a plain `host[:port]`. A gateway that let the
/// others through would route on one reading of the host while the upstream sees another.
fn host_is_sound(req: &RequestHeader) -> bool {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => false,
        (Some(h), None) => headers::host_value_is_sound(h.as_bytes()),
        // HTTP/2 `:authority`, or an HTTP/1.0 absolute-form target without `Host`: the same
        // rules for the authority it carries.
        (None, _) => match req.uri.authority() {
            Some(a) => headers::host_value_is_sound(a.as_str().as_bytes()),
            None if req.version == http::Version::HTTP_11 => false,
            None => headers::absolute_target_authority(req.raw_path())
                .is_none_or(headers::host_value_is_sound),
        },
    }
}

/// Runs the route's plugins; `Some` when one answers the request itself. Headers the
/// plugins add for the upstream are applied to the downstream request header, which
/// pingora copies to the upstream request.
fn run_plugins(
    session: &mut Session,
    ctx: &RequestCtx,
    index: usize,
    path: &str,
) -> Option<ficus_plugins::Response> {
    let route = ctx.runtime.config.router.route(index);
    let req = session.req_header();
    let query = std::str::from_utf8(
        normalize::split_target(req.raw_path())
            .1
            .unwrap_or_default(),
    )
    .ok();
    let mut info = ficus_plugins::RequestInfo {
        method: &req.method,
        path,
        query,
        headers: &req.headers,
        client_ip: ctx.client_ip,
        route: &route.name,
        upstream_headers: Vec::new(),
    };
    for p in route.plugins.iter() {
        if let ficus_plugins::Outcome::Respond(r) = p.on_request(&mut info) {
            return Some(r);
        }
    }
    let add = std::mem::take(&mut info.upstream_headers);
    for (n, v) in add {
        let _ = session.req_header_mut().insert_header(n, v);
    }
    None
}

/// The gateway's changes to the upstream request's headers: hop-by-hop removal,
/// X-Forwarded-*, request id, trace context, the route's edits.
fn upstream_headers(h: &mut impl HeaderSink, session: &Session, ctx: &RequestCtx, route: usize) {
    // Only WebSocket upgrades are passed on (as pingora's own policy does).
    let websocket = session.is_upgrade_req()
        && session
            .req_header()
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    headers::strip_hop_by_hop_request(h, websocket, !ctx.peer_trusted);
    let route = ctx.runtime.config.router.route(route);
    h.reserve(UPSTREAM_ADDED + route.request_headers.additions());
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let host = headers::forwarded_host(session.req_header());
    headers::set_forwarded(h, ctx.peer_ip, ctx.peer_trusted, tls, host);
    let req = session.req_header();
    // Every HTTP/1.1 request needs a Host (RFC 9112 §3.2); an HTTP/1.0 client may have sent
    // none: the absolute-form target's authority, else the instance's address.
    if req.version == http::Version::HTTP_10 && !h.map().contains_key(http::header::HOST) {
        if let Some(v) = headers::absolute_authority(req.raw_path())
            .and_then(|a| http::HeaderValue::from_bytes(a).ok())
            .or_else(|| ctx.instance.and_then(|a| a.to_string().try_into().ok()))
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
    if !route.request_headers.is_empty() {
        headers::edit(h, &route.request_headers);
    }
}

/// Headers the gateway adds to every upstream request: X-Forwarded-For, -Proto and -Host,
/// X-Request-Id and traceparent.
const UPSTREAM_ADDED: usize = 5;

/// The gateway's changes to the response's headers.
/// `switching`: the response is a `101 Switching Protocols`, which keeps its upgrade
/// headers; `h1`: the client speaks HTTP/1 (pingora then sets `Connection` itself).
fn response_headers(h: &mut impl HeaderSink, ctx: &RequestCtx, switching: bool, h1: bool) {
    headers::strip_hop_by_hop_response(h, switching, h1);
    let route = ctx
        .routed
        .as_ref()
        .map(|r| ctx.runtime.config.router.route(r.index));
    // X-Request-Id, the route's own, and one free slot: pingora then sets Date and
    // Connection, and even an insert that replaces a value grows a full map.
    h.reserve(2 + route.map_or(0, |r| r.response_headers.additions()));
    h.put(
        &headers::X_REQUEST_ID,
        "X-Request-Id",
        ctx.request_id_value.clone(),
    );
    if let Some(route) = route {
        if !route.response_headers.is_empty() {
            headers::edit(h, &route.response_headers);
        }
    }
}

/// What a request says about the instance it went to, once it is over (when the upstream
/// answer has not already said it): `None` when it says nothing.
/// - no error: success;
/// - an upstream failure: failure;
/// - the client gave up while waiting for the response head, its request complete: a
///   failure too, so a hanging service still trips its breaker when clients lose patience
///   before the `read` timeout;
/// - the client stalled or broke its own request body, or a WebSocket went idle: nothing.
fn attempt_outcome(session: &mut Session, e: Option<&Error>, ctx: &RequestCtx) -> Option<bool> {
    let Some(e) = e else { return Some(true) };
    if ctx.idle_tunnel {
        return None;
    }
    match e.esource() {
        pingora_error::ErrorSource::Upstream => Some(false),
        _ if session.response_written().is_none() && session.is_body_done() => {
            matches!(classify(e).0, GatewayError::ClientClosed).then_some(false)
        }
        _ => None,
    }
}

/// `OPTIONS *` asks what the server as a whole supports (RFC 9110 §9.3.7). No single
/// upstream speaks for the whole gateway, so the gateway answers: the methods it proxies.
async fn write_options_asterisk(
    session: &mut Session,
    request_id: http::HeaderValue,
) -> Result<bool> {
    let mut head = ResponseHeader::build(200, Some(3))?;
    head.insert_header("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")?;
    head.insert_header("Content-Length", "0")?;
    head.insert_header("X-Request-Id", request_id)?;
    session.write_response_header(Box::new(head), true).await?;
    Ok(true)
}

async fn write_plugin_response(
    session: &mut Session,
    resp: ficus_plugins::Response,
    request_id: &str,
) -> Result<bool> {
    let mut head = ResponseHeader::build(resp.status.as_u16(), Some(resp.headers.len() + 2))?;
    for (n, v) in resp.headers {
        let _ = head.append_header(n, v);
    }
    let _ = head.insert_header("content-length", resp.body.len().to_string());
    let _ = head.insert_header("x-request-id", request_id);
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(resp.body), true).await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: pingora keeps the context inside its per-request futures, which are moved
    /// a few times per request; a pointer moves cheaper than the whole context.
    type CTX = Box<RequestCtx>;

    /// No downstream modules. pingora's default registers its response-compression module
    /// switched off, which still builds, calls and drops a module context on every request;
    /// ficus does not compress.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(&self.shared))
    }

    /// Runs before anything is sent upstream. `Ok(true)` means the gateway answered.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        let limits = ctx.runtime.config.gateway.limits;
        session.set_read_timeout(Some(limits.body_read_timeout));
        // A client that stops reading would otherwise hold the request, its upstream
        // connection and its bulkhead slot for as long as it likes (slow-read attack).
        session.set_write_timeout(Some(limits.send_timeout));
        let req = session.req_header();
        // The id as a string (logs, error bodies) and as a header value, built once and
        // shared by the upstream request and the response.
        ctx.request_id_value = match req.headers.get(&headers::X_REQUEST_ID) {
            Some(v) if ids::is_acceptable_request_id(v.as_bytes()) => v.clone(),
            _ => ids::new_request_id_value(),
        };
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted = &ctx.runtime.config.gateway.trusted_proxies;
        ctx.peer_trusted = headers::is_trusted(trusted, peer);
        ctx.peer_ip = peer;
        ctx.client_ip = headers::client_ip(trusted, peer, &req.headers);
        let incoming = || {
            req.headers
                .get(&headers::TRACEPARENT)
                .and_then(|v| TraceParent::parse(v.as_bytes()))
        };
        ctx.trace = match ctx.runtime.config.gateway.trace_context {
            TraceContext::Start => Some(incoming().unwrap_or_else(TraceParent::new_root)),
            TraceContext::Continue => incoming(),
            TraceContext::Off => None,
        };
        if req.method == http::Method::OPTIONS && req.raw_path() == b"*" {
            return write_options_asterisk(session, ctx.request_id_value.clone()).await;
        }
        match self.route(session, ctx) {
            Ok(routed) => {
                let route = ctx.runtime.config.router.route(routed.index);
                if !route.plugins.is_empty() {
                    if let Some(resp) = run_plugins(session, ctx, routed.index, &routed.path) {
                        ctx.routed = Some(routed);
                        return write_plugin_response(session, resp, ctx.request_id()).await;
                    }
                }
                ctx.routed = Some(routed);
                Ok(false)
            }
            Err(e) => {
                ctx.gateway_error = Some(e);
                // After a refusal whose body framing is doubtful (or too large to read),
                // the connection is closed rather than reused.
                let keepalive = !matches!(
                    e,
                    GatewayError::BodyTooLarge
                        | GatewayError::BadRequest
                        | GatewayError::UnsupportedTransferCoding
                );
                write_error(session, e, ctx.request_id(), keepalive, None).await;
                Ok(true)
            }
        }
    }

    /// Counts request body bytes and stops bodies above the limit (for chunked uploads
    /// whose size is not known up front).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > ctx.runtime.config.gateway.limits.max_body_bytes {
                return Err(GatewayError::BodyTooLarge.into_pingora());
            }
        }
        Ok(())
    }

    /// Picks an instance (breaker, bulkhead, fallback, load balancing). Called again for
    /// each retry.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        match select::choose(ctx, &session.req_header().headers) {
            Ok(peer) => {
                // Upstream time is only reported in the access log: no clock read without it.
                if ctx.runtime.config.gateway.access_log != AccessLog::Off {
                    ctx.upstream_start = Some(Instant::now());
                }
                Ok(peer)
            }
            Err(e) => {
                ctx.gateway_error = Some(e);
                Err(e.into_pingora())
            }
        }
    }

    /// Rewrites the request for the upstream.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let Some(routed) = &ctx.routed else {
            return Ok(());
        };
        if let Some(target) = &routed.target {
            upstream
                .set_raw_path(target.as_bytes())
                .map_err(|_| GatewayError::Internal.into_pingora())?;
        }
        let preserve = ctx.runtime.config.gateway.preserve_header_case;
        if !preserve && headers::is_origin_form(upstream) {
            headers::without_case_request(upstream, |h| {
                upstream_headers(h, session, ctx, routed.index)
            });
        } else {
            upstream_headers(upstream, session, ctx, routed.index);
        }
        Ok(())
    }

    /// Adjusts the upstream's response for the client.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some(start) = ctx.upstream_start {
            ctx.upstream_elapsed = Some(start.elapsed());
        }
        let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
        let h1 = !session.is_http2();
        if ctx.runtime.config.gateway.preserve_header_case {
            response_headers(resp, ctx, switching, h1);
        } else {
            headers::without_case_response(resp, |h| response_headers(h, ctx, switching, h1));
        }
        Ok(())
    }

    /// Records the attempt's outcome as soon as the upstream answers.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        // Status codes are three digits, 100-599 (RFC 9110 §15); a `101` answers only an
        // upgrade request, else it would turn the connection into a tunnel the client never
        // asked for. Either is an invalid upstream response (502).
        let status = resp.status.as_u16();
        if status > 599 || (status == 101 && !session.is_upgrade_req()) {
            return Err(pingora_error::Error::explain(
                pingora_error::ErrorType::InvalidHTTPHeader,
                format!("invalid upstream response status {status}"),
            )
            .into_up());
        }
        if !resp.status.is_informational() {
            select::finish_attempt(ctx, status < 500);
        }
        Ok(())
    }

    /// A connect failure: the request was not sent, so it may go to another instance.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        select::finish_attempt(ctx, false);
        let retry = select::may_retry(ctx, &session.req_header().method);
        e.set_retry(retry);
        e
    }

    /// A failure on an established upstream connection before the response: retried only
    /// for idempotent requests (or routes that opt in) whose body can be replayed.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if e.etype == pingora_error::ErrorType::ReadTimedout
            && e.esource == pingora_error::ErrorSource::Upstream
        {
            match session.response_written().map(|r| r.status.as_u16()) {
                // An upstream that is still waiting for the rest of the request body has
                // nothing to say yet: when its read timeout fires then, the client is the
                // slow one (408), and the instance must not be blamed (a few stalled uploads
                // would open its breaker).
                None if !session.is_body_done() => {
                    e.esource = pingora_error::ErrorSource::Downstream;
                }
                // A WebSocket that stayed silent: neither side failed.
                Some(101) => {
                    ctx.idle_tunnel = true;
                    e.esource = pingora_error::ErrorSource::Internal;
                }
                _ => {}
            }
        }
        if e.esource() == &pingora_error::ErrorSource::Upstream {
            select::finish_attempt(ctx, false);
        }
        let replayable = !session.as_ref().retry_buffer_truncated();
        // A read timeout means the upstream may be working on the request: never retried.
        let timed_out = matches!(
            e.etype(),
            pingora_error::ErrorType::ReadTimedout | pingora_error::ErrorType::WriteTimedout
        );
        let retry = replayable
            && !timed_out
            && e.esource() == &pingora_error::ErrorSource::Upstream
            && session.response_written().is_none()
            && select::may_retry(ctx, &session.req_header().method);
        e.set_retry(retry);
        e
    }

    /// The one place a proxying error becomes a client response.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let (classified, kind) = classify(e);
        // Errors decided by the gateway itself (breaker, bulkhead, no instance) were recorded
        // when they happened; everything else is classified from pingora's error.
        let (err, kind) = match ctx.gateway_error {
            Some(own) if matches!(e.etype(), pingora_error::ErrorType::HTTPStatus(_)) => {
                let kind = match own {
                    GatewayError::CircuitOpen => Some(UpstreamErrorKind::CircuitOpen),
                    GatewayError::AtCapacity => Some(UpstreamErrorKind::AtCapacity),
                    GatewayError::NoInstance => Some(UpstreamErrorKind::NoInstance),
                    _ => kind,
                };
                (own, kind)
            }
            _ if ctx.idle_tunnel => (GatewayError::TunnelIdle, None),
            _ => (classified, kind),
        };
        // Only upstream failures count against the instance; a client that went away or sent
        // a body that was too large or too slow says nothing about the upstream.
        if e.esource() == &pingora_error::ErrorSource::Upstream {
            select::finish_attempt(ctx, false);
        }
        if let (Some(kind), Some(routed)) = (kind, &ctx.routed) {
            let route = ctx.runtime.config.router.route(routed.index);
            let svc = ctx.upstream.service.unwrap_or(route.service);
            ctx.runtime.service_metrics[svc].upstream_error(kind);
        }
        ctx.gateway_error = Some(err);
        ctx.error_detail = Some(e.to_string());
        let downstream_gone = matches!(
            e.etype(),
            pingora_error::ErrorType::ConnectionClosed
                | pingora_error::ErrorType::ReadError
                | pingora_error::ErrorType::WriteError
        ) && e.esource() == &pingora_error::ErrorSource::Downstream;
        if downstream_gone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if session.response_written().is_none() {
            write_error(
                session,
                err,
                ctx.request_id(),
                false,
                ctx.upstream.retry_after,
            )
            .await;
        }
        FailToProxy {
            error_code: err.status(),
            can_reuse_downstream: false,
        }
    }

    /// Metrics and the access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        match attempt_outcome(session, e, ctx) {
            Some(ok) => select::finish_attempt(ctx, ok),
            None => select::finish_attempt_neutral(ctx),
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let rt = &ctx.runtime;
        match &ctx.routed {
            Some(r) => rt.route_metrics[r.index].record(status, elapsed),
            None => self.shared.metrics.unrouted.record(status, elapsed),
        }
        if rt.config.gateway.access_log != AccessLog::Off {
            ctx::access_log(session, ctx, status, elapsed);
        }
    }

    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &Box<RequestCtx>,
        _error: &Error,
    ) -> bool {
        // Upstream failures are already in the access log line with their request id.
        true
    }
}
