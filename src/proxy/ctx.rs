//! Per-request state, grouped by what it is about.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::GatewayError;
use super::route::Routed;
use super::split::Chosen;
use crate::ids::TraceParent;
use crate::registry::{BulkheadPermit, InstancePermit, Member, ServiceState};
use crate::router::Route;
use crate::runtime::{InflightGuard, Runtime, Shared};

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
    /// Index of the service in use (the route's or its chosen split side's, or the
    /// fallback).
    pub service: Option<usize>,
    /// The split side chosen for this request (split routes only), decided once before
    /// the first attempt.
    pub split: Option<Chosen>,
    /// The upstream target when the service used has path rules of its own (a split side
    /// with `rewrite`/`strip_prefix`); else the route's target applies.
    pub target: Option<String>,
    pub fell_back: bool,
    pub attempts: u32,
    pub tried: Tried,
    pub current: Option<Attempt>,
    pub bulkhead: Option<BulkheadPermit>,
    /// The request's place under the caps on requests holding an upstream connection,
    /// taken before the first attempt.
    pub slot: Option<super::in_flight::UpstreamSlot>,
    pub breaker_trial: bool,
    pub retry_after: Option<Duration>,
    /// The instance of the current (last) attempt.
    pub instance: Option<SocketAddr>,
    /// `Bearer <token>` of the service's client credentials, taken for the current
    /// attempt: the upstream gets it in place of the client's `Authorization`.
    pub authorization: Option<http::HeaderValue>,
}

/// Who sent the request.
#[derive(Default)]
pub struct Client {
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// Whether the peer is a configured trusted proxy.
    pub peer_trusted: bool,
    /// The original client (from X-Forwarded-For when the peer is trusted).
    pub ip: Option<IpAddr>,
}

/// When things happened.
pub struct Timing {
    pub start: Instant,
    /// When the current upstream attempt began (only measured with an access log).
    pub upstream_start: Option<Instant>,
    pub upstream_elapsed: Option<Duration>,
}

/// How the request ended, for the log and metrics.
#[derive(Default)]
pub struct Outcome {
    /// The error the gateway answered (or would have answered) with.
    pub error: Option<GatewayError>,
    /// Internal error text: logged, never sent to the client.
    pub detail: Option<String>,
    /// The message of a policy's refusal (`token expired`, `rate limit exceeded`): the
    /// access log's `error` when the gateway's own `error` is not set.
    pub refusal: Option<std::borrow::Cow<'static, str>>,
    /// An upgraded connection ended because its upstream stayed silent (see
    /// [`GatewayError::TunnelIdle`]): says nothing about the instance either way.
    pub idle_tunnel: bool,
    /// The upstream answered with a status it may not send (over 599, or `101` to a
    /// request that asked for no upgrade): an answer all the same, so never retried.
    pub invalid_answer: bool,
    /// Request body bytes received so far.
    pub body_bytes: u64,
}

/// What the route's plugins know about the request.
#[derive(Default)]
pub struct PluginCtx {
    /// Typed results shared along the chain (an `Identity`, a rate-limit status).
    pub state: ficus_plugins::RequestState,
    /// Edits the request hooks asked for on the upstream request.
    pub upstream_edits: ficus_plugins::HeaderEdits,
}

/// Everything the gateway knows about one request, in named parts.
pub struct RequestCtx {
    /// The config snapshot this request uses from start to end.
    pub runtime: Arc<Runtime>,
    /// The request id as a header value (cheap to clone); always visible ASCII, see
    /// [`RequestCtx::request_id`].
    pub request_id_value: http::HeaderValue,
    pub trace: Option<TraceParent>,
    pub client: Client,
    pub timing: Timing,
    pub routed: Option<Routed>,
    pub upstream: Upstream,
    pub plugins: PluginCtx,
    pub outcome: Outcome,
    /// What is kept of a request chosen for a shadow copy (shadowed routes only).
    pub shadow: Option<Box<super::shadow::Capture>>,
    _inflight: InflightGuard,
}

impl RequestCtx {
    pub fn new(shared: &Arc<Shared>) -> RequestCtx {
        RequestCtx {
            _inflight: shared.begin_request(),
            runtime: shared.runtime(),
            request_id_value: http::HeaderValue::from_static(""),
            trace: None,
            client: Client::default(),
            timing: Timing {
                start: Instant::now(),
                upstream_start: None,
                upstream_elapsed: None,
            },
            routed: None,
            upstream: Upstream::default(),
            plugins: PluginCtx::default(),
            outcome: Outcome::default(),
            shadow: None,
        }
    }

    /// The request id for logs and error bodies. Only ids of visible ASCII are accepted or
    /// generated, so the conversion cannot fail in practice.
    /// Whether the gateway is draining: an answer then says `Connection: close` (RFC 9112
    /// §9.6), so a client does not send another request on a connection about to close.
    pub fn draining(&self) -> bool {
        self._inflight.draining()
    }

    pub fn request_id(&self) -> &str {
        self.request_id_value.to_str().unwrap_or("-")
    }

    /// The route the request matched, if routing succeeded.
    pub fn route(&self) -> Option<&Route> {
        self.routed
            .as_ref()
            .map(|r| self.runtime.config.router.route(r.index))
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
