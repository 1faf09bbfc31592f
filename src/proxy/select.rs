//! Upstream selection for one request: circuit breaker, bulkhead, fallback service,
//! instance choice, retries, and reporting each attempt's outcome.
//!
//! Called from the proxy phases; everything here is atomics and small vectors, no locks
//! and no I/O.

use http::{HeaderMap, Method};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

use super::ctx::{Attempt, RequestCtx};
use super::error::GatewayError;
use super::split;
use crate::registry::breaker::Admission;
use crate::registry::spec::{HashKey, LbPolicy};
use crate::registry::{stable_hash, NoPick, PickContext};
use crate::router::Route;
use crate::upstream::peer_with_timeouts;

/// Admits the request to a service: breaker, then bulkhead.
fn admit(ctx: &mut RequestCtx, service: usize) -> Result<(), GatewayError> {
    let svc = ctx.runtime.services[service].clone();
    let spec = svc.spec();
    let mut trial = false;
    if let Some(b) = &spec.breaker {
        match svc.breaker.admit(b) {
            Admission::Allowed => {}
            Admission::Trial => trial = true,
            Admission::Rejected(left) => {
                ctx.upstream.retry_after = Some(left);
                return Err(GatewayError::CircuitOpen);
            }
        }
    }
    let permit = match spec.max_concurrent {
        Some(max) => match svc.try_acquire(max) {
            Some(p) => p,
            None => {
                if trial {
                    // This request never reaches the upstream: its trial proves nothing.
                    svc.breaker.release_trial();
                }
                return Err(GatewayError::AtCapacity);
            }
        },
        None => svc.enter(),
    };
    svc.budget.request();
    ctx.upstream.service = Some(service);
    ctx.upstream.bulkhead = Some(permit);
    ctx.upstream.breaker_trial = trial;
    Ok(())
}

fn hash_key(policy: &LbPolicy, headers: &HeaderMap, ctx: &RequestCtx) -> Option<u64> {
    let LbPolicy::Hash(key) = policy else {
        return None;
    };
    match key {
        HashKey::Header(name) => headers.get(name).map(|v| stable_hash(v.as_bytes())),
        HashKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| stable_hash(v.as_bytes())),
        HashKey::ClientIp => ctx
            .client
            .ip
            .map(|ip| stable_hash(ip.to_string().as_bytes())),
    }
}

/// The route's fallback for a request whose service is unavailable: not when the request
/// already fell back, nor when the fallback is the service that failed.
fn fallback_for(route: &Route, ctx: &RequestCtx, failed: usize) -> Option<usize> {
    route
        .fallback
        .filter(|fb| !ctx.upstream.fell_back && *fb != failed)
}

/// Sets the upstream target for `service` when it is a split side with path rules of its
/// own; otherwise the route's target (computed when routing) applies.
fn set_target(ctx: &mut RequestCtx, route: &Route, service: usize, req: &RequestHeader) {
    let side = route
        .split
        .as_ref()
        .and_then(|s| s.side_of_service(service))
        .filter(|s| s.has_own_path_rules());
    ctx.upstream.target = match (side, &ctx.routed) {
        (Some(side), Some(routed)) => Some(route.side_target(side, &routed.path, req.uri.query())),
        _ => None,
    };
}

/// Chooses the instance for the next attempt and returns its peer. The first attempt also
/// decides the service: the route's (or its split side's), or the fallback.
pub fn choose(ctx: &mut RequestCtx, req: &RequestHeader) -> Result<Box<HttpPeer>, GatewayError> {
    let Some(routed) = &ctx.routed else {
        return Err(GatewayError::Internal);
    };
    let rt = ctx.runtime.clone();
    let route = rt.config.router.route(routed.index);
    let headers = &req.headers;
    if ctx.upstream.attempts == 0 {
        let primary = split::primary_service(route, headers, ctx);
        let mut used = primary;
        if let Err(e) = admit(ctx, primary) {
            let fallback = fallback_for(route, ctx, primary).ok_or(e)?;
            ctx.upstream.fell_back = true;
            admit(ctx, fallback)?;
            used = fallback;
        }
        if route.split.is_some() {
            set_target(ctx, route, used, req);
        }
    }
    ctx.upstream.attempts += 1;
    loop {
        let service = ctx.upstream.service.unwrap_or(route.service);
        let svc = rt.services[service].clone();
        let spec = svc.spec();
        let hash = hash_key(&spec.lb, headers, ctx);
        let zone = rt.config.registry.zone.as_deref();
        let picked = svc.pick(&PickContext {
            exclude: ctx.upstream.tried.as_slice(),
            hash,
            zone,
        });
        match picked {
            Ok((member, permit)) => {
                ctx.upstream.tried.push(member.addr);
                ctx.upstream.instance = Some(member.addr);
                let timeouts = route.timeouts().or(spec.timeouts);
                let peer = peer_with_timeouts(&member.peer, timeouts, ctx.timing.start);
                let trial = std::mem::take(&mut ctx.upstream.breaker_trial);
                ctx.upstream.current = Some(Attempt {
                    service: svc,
                    member,
                    trial,
                    recorded: false,
                    _permit: permit,
                });
                return Ok(peer);
            }
            Err(NoPick::Empty | NoPick::NoneHealthy) => {
                if std::mem::take(&mut ctx.upstream.breaker_trial) {
                    svc.breaker.release_trial();
                }
                // The strangler's safety net: an unavailable new service falls back.
                if ctx.upstream.attempts == 1 {
                    if let Some(fb) = fallback_for(route, ctx, service) {
                        ctx.upstream.fell_back = true;
                        ctx.upstream.bulkhead = None;
                        admit(ctx, fb)?;
                        if route.split.is_some() {
                            set_target(ctx, route, fb, req);
                        }
                        continue;
                    }
                }
                return Err(GatewayError::NoInstance);
            }
        }
    }
}

/// Whether a failed attempt may be tried again on another instance: the route allows more
/// attempts, the method is idempotent (or the route opts in), and the service's retry
/// budget has room.
pub fn may_retry(ctx: &RequestCtx, method: &Method) -> bool {
    let Some(routed) = &ctx.routed else {
        return false;
    };
    let route = ctx.runtime.config.router.route(routed.index);
    if ctx.upstream.attempts >= route.retries.attempts {
        return false;
    }
    if !method.is_idempotent() && !route.retries.non_idempotent {
        return false;
    }
    let Some(a) = &ctx.upstream.current else {
        return false;
    };
    let spec = a.service.spec();
    if a.service.budget.try_retry(&spec.retry_budget) {
        a.service
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    } else {
        tracing::debug!(service = %a.service.name, "retry budget exhausted");
        false
    }
}
