//! Per-request state, grouped by what it is about, and the access log line.

use pingora_proxy::Session;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::respond::GatewayError;
use crate::access_log;
use crate::ids::TraceParent;
use crate::registry::{BulkheadPermit, InstancePermit, Member, ServiceState};
use crate::runtime::{InflightGuard, Runtime, Shared};

/// The routing decision for a request.
#[derive(Debug)]
pub struct Routed {
    /// Index of the route in the snapshot's router.
    pub index: usize,
    /// The normalized path the route was chosen on.
    pub path: String,
    /// The wire-form target (path and query) for the upstream when it differs from the
    /// incoming one.
    pub target: Option<String>,
}

/// One try at an upstream instance.
pub struct Attempt {
    pub service: Arc<ServiceState>,
    pub member: Arc<Member>,
    /// Admitted as a half-open circuit-breaker trial.
    pub trial: bool,
    /// Whether its outcome was already reported to outlier detection and the breaker.
    pub recorded: bool,
    pub _permit: InstancePermit,
}

/// The instances a request already tried: inline for the usual few attempts, so the
/// first pick does not allocate.
pub struct Tried {
    len: usize,
    first: [SocketAddr; TRIED_INLINE],
    more: Vec<SocketAddr>,
}

const TRIED_INLINE: usize = 4;
const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl Default for Tried {
    fn default() -> Self {
        Tried {
            len: 0,
            first: [UNSPECIFIED; TRIED_INLINE],
            more: Vec::new(),
        }
    }
}

impl Tried {
    pub fn push(&mut self, addr: SocketAddr) {
        if self.len < TRIED_INLINE {
            self.first[self.len] = addr;
        } else {
            if self.len == TRIED_INLINE {
                self.more.extend_from_slice(&self.first);
            }
            self.more.push(addr);
        }
        self.len += 1;
    }

    pub fn as_slice(&self) -> &[SocketAddr] {
        if self.len <= TRIED_INLINE {
            &self.first[..self.len]
        } else {
            &self.more
        }
    }
}

/// The upstream side of a request: which service, which tries.
#[derive(Default)]
pub struct Upstream {
    /// Index of the service in use (the route's, or its fallback).
    pub service: Option<usize>,
    pub fell_back: bool,
    pub attempts: u32,
    pub tried: Tried,
    pub current: Option<Attempt>,
    pub bulkhead: Option<BulkheadPermit>,
    pub breaker_trial: bool,
    pub retry_after: Option<Duration>,
}

/// Everything the gateway knows about one request.
pub struct RequestCtx {
    /// The config snapshot this request uses from start to end.
    pub runtime: Arc<Runtime>,
    pub start: Instant,
    /// The request id as a header value (cheap to clone); always visible ASCII, see
    /// [`RequestCtx::request_id`].
    pub request_id_value: http::HeaderValue,
    pub trace: Option<TraceParent>,
    /// The TCP peer and whether it is a trusted proxy.
    pub peer_ip: Option<IpAddr>,
    pub peer_trusted: bool,
    /// The original client (from X-Forwarded-For when the peer is trusted).
    pub client_ip: Option<IpAddr>,
    pub routed: Option<Routed>,
    pub upstream: Upstream,
    pub instance: Option<SocketAddr>,
    pub upstream_start: Option<Instant>,
    pub upstream_elapsed: Option<Duration>,
    pub body_bytes: u64,
    pub gateway_error: Option<GatewayError>,
    /// An upgraded connection ended because its upstream stayed silent (see
    /// [`GatewayError::TunnelIdle`]): says nothing about the instance either way.
    pub idle_tunnel: bool,
    /// Internal error text: logged, never sent to the client.
    pub error_detail: Option<String>,
    _inflight: InflightGuard,
}

impl RequestCtx {
    pub fn new(shared: &Arc<Shared>) -> RequestCtx {
        RequestCtx {
            _inflight: shared.begin_request(),
            runtime: shared.runtime(),
            start: Instant::now(),
            request_id_value: http::HeaderValue::from_static(""),
            trace: None,
            peer_ip: None,
            peer_trusted: false,
            client_ip: None,
            routed: None,
            upstream: Upstream::default(),
            instance: None,
            upstream_start: None,
            upstream_elapsed: None,
            body_bytes: 0,
            gateway_error: None,
            idle_tunnel: false,
            error_detail: None,
        }
    }
}

impl RequestCtx {
    /// The request id for logs and error bodies. Only ids of visible ASCII are accepted or
    /// generated, so the conversion cannot fail in practice.
    pub fn request_id(&self) -> &str {
        self.request_id_value.to_str().unwrap_or("-")
    }
}

/// Emits the access log line for a finished request.
pub fn access_log(session: &Session, ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let req = session.req_header();
    let rt = &ctx.runtime;
    let (route, service) = match &ctx.routed {
        Some(r) => {
            let route = rt.config.router.route(r.index);
            let svc = ctx.upstream.service.unwrap_or(route.service);
            (&*route.name, rt.config.services[svc].name.as_str())
        }
        None => ("", ""),
    };
    let path = ctx.routed.as_ref().map_or_else(
        || String::from_utf8_lossy(req.raw_path()).into_owned(),
        |r| r.path.replace('\0', "%2F"),
    );
    let trace_id = ctx.trace.as_ref().map_or("", |t| t.trace_id());
    let client = ctx
        .client_ip
        .map(DisplayOr::Some)
        .unwrap_or(DisplayOr::Dash);
    let instance = ctx.instance.map(DisplayOr::Some).unwrap_or(DisplayOr::Dash);
    let upstream_ms = ctx
        .upstream_elapsed
        .map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
    let error = ctx.gateway_error.map_or("", |e| e.message());
    tracing::info!(
        target: access_log::TARGET,
        request_id = ctx.request_id(),
        method = req.method.as_str(),
        path = path.as_str(),
        status,
        route,
        service,
        instance = %instance,
        client_ip = %client,
        bytes = session.body_bytes_sent() as u64,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms,
        attempts = ctx.upstream.attempts,
        fallback = ctx.upstream.fell_back,
        trace_id,
        error,
        detail = ctx.error_detail.as_deref().unwrap_or(""),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tried_keeps_every_address_in_order_past_the_inline_part() {
        let mut t = Tried::default();
        assert!(t.as_slice().is_empty());
        let addrs: Vec<SocketAddr> = (1..=7)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            t.push(*a);
            assert_eq!(t.as_slice(), &addrs[..=i]);
        }
    }
}
