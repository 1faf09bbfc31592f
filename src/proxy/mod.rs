//! The pingora `ProxyHttp` implementation: a thin dispatcher over admission, routing,
//! the plugin chain, upstream selection and header policy.
//!
//! Phase by phase:
//! - `new_ctx`: take one runtime snapshot for the whole request and count it in flight.
//! - `request_filter`: request id, client address, trace context; then [`admission`],
//!   [`route::route_request`] and the route's request hooks ([`chain`]). Answers the
//!   request itself (4xx, a plugin's answer) when it must.
//! - `upstream_peer`: on the first attempt, a slot under the in-flight caps
//!   ([`in_flight`]) and the side of a split route ([`split`]); then an
//!   instance of the service, or of the fallback ([`select`]), and take the
//!   service's own token if it has client credentials ([`forward::take_service_token`]).
//! - `upstream_request_filter`: [`forward`]'s edits, then the plugins' upstream hooks, then
//!   the service's token in place of the client's `Authorization`.
//! - `response_filter`: [`forward`]'s edits and the response hooks ([`respond`], the one
//!   way out that gateway-made responses take too).
//! - `fail_to_proxy`: the one place proxying errors become 502/503/504 JSON responses.
//! - `logging`: the attempt's outcome ([`outcome`]), metrics, log hooks, a shadow copy's
//!   hand-off ([`shadow`]), the access log.

pub mod admission;
pub mod chain;
pub mod ctx;
pub mod error;
pub mod fair_share;
pub mod forward;
pub mod headers;
pub mod in_flight;
pub mod log;
pub mod outcome;
pub mod release;
pub mod respond;
pub mod route;
pub mod select;
pub mod shadow;
pub mod split;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{AccessLog, TraceContext};
use crate::ids::{self, TraceParent};
use crate::runtime::Shared;
use ctx::RequestCtx;
use error::{classify, GatewayError};
use outcome::Evidence;
use respond::Reply;
use route::Refusal;

pub use route::route_request;

/// The gateway's proxy logic. Holds only process-wide state; everything reloadable is in
/// the per-request snapshot.
pub struct Gateway {
    pub shared: Arc<Shared>,
    /// The upstream slots of this service's client connections ([`in_flight`]).
    conns: Arc<in_flight::ConnectionSlots>,
    /// The upstream slots of each client address, shared by the gateway's proxy services.
    clients: Arc<in_flight::ClientSlots>,
}

impl Gateway {
    /// `clients` is the one per-client table of the whole gateway (every proxy service
    /// gets the same), so a client cannot double its share by using two listeners.
    pub fn new(shared: Arc<Shared>, clients: Arc<in_flight::ClientSlots>) -> Self {
        Gateway {
            shared,
            conns: Arc::default(),
            clients,
        }
    }
}

/// Takes the request id, the client's address and the trace context from the head.
fn identify(session: &Session, ctx: &mut RequestCtx) {
    let req = session.req_header();
    // The id as a string (logs, error bodies) and as a header value, built once and
    // shared by the upstream request and the response.
    ctx.request_id_value = match req.headers.get(&headers::X_REQUEST_ID) {
        Some(v) if ids::is_acceptable_request_id(v.as_bytes()) => v.clone(),
        _ => ids::new_request_id_value(),
    };
    // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`: it is that IPv4
    // address, in logs, X-Forwarded-For and policies alike.
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical());
    let trusted = &ctx.runtime.config.gateway.trusted_proxies;
    ctx.client.peer_trusted = headers::is_trusted(trusted, peer);
    ctx.client.peer_ip = peer;
    ctx.client.ip = headers::client_ip(trusted, peer, &req.headers);
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
}

/// Admission and routing: the route, or the error to answer with.
fn admit_and_route(req: &RequestHeader, ctx: &RequestCtx) -> Result<route::Routed, Refusal> {
    let config = &ctx.runtime.config;
    if let Err(error) = admission::admit(req, &config.gateway.limits) {
        // An upload declared too large comes from a head that is otherwise sound: it is
        // answered as its route's, so the route's response policies (CORS: a page can
        // read its 413) apply as they do to a body found too large while it streams.
        let route = match error {
            GatewayError::BodyTooLarge => route_request(req, config).ok(),
            _ => None,
        };
        return Err(Refusal { error, route });
    }
    route_request(req, config)
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
        identify(session, ctx);
        let req = session.req_header();
        if req.method == http::Method::OPTIONS && req.raw_path() == b"*" {
            respond::send(session, ctx, Reply::options_asterisk()).await;
            return Ok(true);
        }
        // `Content-Length` next to `Transfer-Encoding`: the request-smuggling pair. RFC
        // 9112 lets a server frame it by the chunked coding; a gateway in front of legacy
        // servers refuses it outright (as Envoy and nginx do), before anything is read or
        // forwarded.
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && session
                .as_downstream()
                .as_http1()
                .is_some_and(|h1| admission::raw_has_content_length(&h1.get_headers_raw_bytes()))
        {
            respond::send_error(session, ctx, GatewayError::BadRequest, true).await;
            return Ok(true);
        }
        match admit_and_route(req, ctx) {
            Ok(routed) => ctx.routed = Some(routed),
            Err(Refusal { error, route }) => {
                // Refused by a rule of the route it matched: answered as that route's.
                ctx.routed = route;
                let close = !admission::keeps_connection(error);
                respond::send_error(session, ctx, error, close).await;
                return Ok(true);
            }
        }
        match chain::run_request(session.req_header(), ctx).await {
            None => {
                shadow::begin(session.req_header(), ctx);
                Ok(false)
            }
            Some(mut answer) => {
                // Why a policy answered, for the access log.
                if let ficus_plugins::Body::Error(message) = &answer.body {
                    ctx.outcome.refusal = Some(message.clone());
                }
                ctx.outcome.detail = answer.log_detail.take().map(String::from);
                let reply = Reply::plugin(answer, ctx.request_id());
                respond::send(session, ctx, reply).await;
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
            ctx.outcome.body_bytes += b.len() as u64;
            if ctx.outcome.body_bytes > ctx.runtime.config.gateway.limits.max_body_bytes {
                return Err(GatewayError::BodyTooLarge.into_pingora());
            }
            if let Some(copy) = &mut ctx.shadow {
                copy.request_chunk(b);
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
        let tables = in_flight::Tables {
            conns: &self.conns,
            clients: &self.clients,
            load: &self.shared.metrics.upstream_load,
        };
        in_flight::hold(session, ctx, &tables)
            .await
            .map_err(GatewayError::into_pingora)?;
        match select::choose(ctx, session.req_header()) {
            Ok(peer) => {
                forward::take_service_token(ctx)
                    .await
                    .map_err(GatewayError::into_pingora)?;
                // Upstream time is only reported in the access log: no clock read without it.
                if ctx.runtime.config.gateway.access_log != AccessLog::Off {
                    ctx.timing.upstream_start = Some(Instant::now());
                }
                Ok(peer)
            }
            Err(e) => Err(e.into_pingora()),
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
        // A split side with its own path rules has its own target.
        if let Some(target) = ctx.upstream.target.as_ref().or(routed.target.as_ref()) {
            upstream
                .set_raw_path(target.as_bytes())
                .map_err(|_| GatewayError::Internal.into_pingora())?;
        }
        let preserve = ctx.runtime.config.gateway.preserve_header_case;
        if !preserve && headers::is_origin_form(upstream) {
            headers::without_case_request(upstream, |h| {
                forward::upstream_headers(h, session, ctx, routed.index)
            });
        } else {
            forward::upstream_headers(upstream, session, ctx, routed.index);
        }
        chain::run_upstream(upstream, ctx).await;
        if let Some(copy) = &mut ctx.shadow {
            copy.upstream_head(upstream);
        }
        forward::service_token(upstream, ctx);
        Ok(())
    }

    /// Adjusts the upstream's response for the client.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some(start) = ctx.timing.upstream_start {
            ctx.timing.upstream_elapsed = Some(start.elapsed());
        }
        // The stall limit: a client that stops reading the body releases its upstream
        // connection within `client_stall_timeout` (an upgraded tunnel keeps `send_timeout`).
        if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
            let limits = &ctx.runtime.config.gateway.limits;
            let t = in_flight::response_write_timeout(limits.send_timeout, &limits.in_flight);
            session.set_write_timeout(Some(t));
        }
        if ctx.draining() {
            session.set_keepalive(None);
        }
        respond::proxied_head(session, ctx, resp).await;
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
            // An answer, however wrong: like any answer, never retried.
            ctx.outcome.invalid_answer = true;
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                format!("invalid upstream response status {status}"),
            )
            .into_up());
        }
        if !resp.status.is_informational() {
            outcome::record(session, ctx, Evidence::Answered(status));
            if let Some(copy) = &mut ctx.shadow {
                copy.answer_head(resp);
            }
        }
        Ok(())
    }

    /// Keeps the primary's answer for a shadow copy's comparison.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        if let (Some(copy), Some(b)) = (&mut ctx.shadow, body) {
            copy.answer_chunk(b);
        }
        Ok(None)
    }

    /// A connect failure: the request was not sent, so it may go to another instance.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        outcome::record(session, ctx, Evidence::ConnectFailed);
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
        if e.etype == ErrorType::ReadTimedout && e.esource == ErrorSource::Upstream {
            match session.response_written().map(|r| r.status.as_u16()) {
                // An upstream that is still waiting for the rest of the request body has
                // nothing to say yet: when its read timeout fires then, the client is the
                // slow one (408), and the instance must not be blamed (a few stalled uploads
                // would open its breaker).
                None if !session.is_body_done() => {
                    e.esource = ErrorSource::Downstream;
                }
                // A WebSocket that stayed silent: neither side failed.
                Some(101) => {
                    ctx.outcome.idle_tunnel = true;
                    e.esource = ErrorSource::Internal;
                }
                _ => {}
            }
        }
        outcome::record(session, ctx, Evidence::Failed(&e));
        let replayable = !session.as_ref().retry_buffer_truncated();
        // A read timeout means the upstream may be working on the request: never retried.
        let timed_out = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        let retry = replayable
            && !timed_out
            && !ctx.outcome.invalid_answer
            && e.esource() == &ErrorSource::Upstream
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
        let (err, kind) = match classify(e) {
            _ if ctx.outcome.idle_tunnel => (GatewayError::TunnelIdle, None),
            classified => classified,
        };
        outcome::record(session, ctx, Evidence::Failed(e));
        if let (Some(kind), Some(route)) = (kind, ctx.route()) {
            let svc = ctx.upstream.service.unwrap_or(route.service);
            ctx.runtime.service_metrics[svc].upstream_error(kind);
        }
        in_flight::count_stall(ctx, &self.shared.metrics.upstream_load, err);
        ctx.outcome.error = Some(err);
        ctx.outcome.detail = Some(e.to_string());
        let downstream_gone = matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        ) && e.esource() == &ErrorSource::Downstream;
        if downstream_gone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if session.response_written().is_none() {
            respond::send_error(session, ctx, err, true).await;
        }
        FailToProxy {
            error_code: err.status(),
            can_reuse_downstream: false,
        }
    }

    /// Metrics and the access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        outcome::record(session, ctx, Evidence::Finished(e));
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.timing.start.elapsed();
        let rt = &ctx.runtime;
        match &ctx.routed {
            Some(r) => {
                // Counted under the service that served it; a request no service
                // served (the gateway answered it) under `service=""`.
                match ctx.upstream.service {
                    Some(s) => rt.route_metrics_for(r.index, s),
                    None => rt.route_gateway_metrics(r.index, &self.shared.metrics),
                }
                .record(status, elapsed);
                split::record(ctx, r.index);
            }
            None => self.shared.metrics.unrouted.record(status, elapsed),
        }
        chain::run_log(ctx, status, elapsed).await;
        if let Some(format) = rt.config.gateway.access_log.format() {
            log::access_log(session, ctx, format, status, elapsed);
        }
        shadow::finish(ctx, e.is_some());
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
