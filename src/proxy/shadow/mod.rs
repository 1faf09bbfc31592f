//! Shadow copies on the request path: which requests are copied, and what is kept of them
//! (the upstream request as the primary got it, its body, the primary's answer), each
//! bounded by the route's `max_body_bytes`. Once the client has its response, the copy is
//! handed to [`job`], off the request path, if the route's queue has room.
//!
//! Nothing here can fail or delay the client's request: every step only copies bytes it
//! already has, and gives up on the copy (counted) when a bound is reached.

mod exchange;
mod job;
pub mod pool;

use bytes::Bytes;
use http::HeaderMap;
use pingora_http::{RequestHeader, ResponseHeader};

use super::ctx::RequestCtx;
use crate::shadow::store::Reservation;

pub use exchange::{exchange, Answer, ExchangeError};

/// What is kept of one request chosen for a shadow copy.
pub struct Capture {
    /// The body bytes kept, counted against the route's budget.
    held: Reservation,
    max_body: usize,
    /// The client's path (without the query), for mismatch samples.
    path: String,
    /// The shadow's own upstream target, when its path rules differ from the primary's.
    shadow_target: Option<String>,
    /// The upstream request as the primary got it, before a service's own token replaced
    /// the client's `Authorization`.
    head: Option<RequestHeader>,
    request_body: Vec<u8>,
    /// The primary's final answer: status and headers.
    answer: Option<(u16, HeaderMap)>,
    answer_body: Vec<u8>,
    request_too_large: bool,
    answer_too_large: bool,
    /// The route's copies already hold all the memory they may: this one is dropped.
    over_budget: bool,
}

/// Chooses the request for a copy (its route has a shadow, the method is copied, the
/// sample draws it). Called once the request is known to go upstream.
pub fn begin(req: &RequestHeader, ctx: &mut RequestCtx) {
    let Some(routed) = &ctx.routed else {
        return;
    };
    let route = ctx.runtime.config.router.route(routed.index);
    let Some(shadow) = &route.shadow else {
        return;
    };
    if !shadow.copies(&req.method) || (shadow.sample < 1.0 && fastrand::f64() >= shadow.sample) {
        return;
    }
    let Some(state) = ctx.runtime.shadows[routed.index].clone() else {
        return;
    };
    // An upgrade turns into a tunnel: there is no answer to compare.
    if req.headers.contains_key(http::header::UPGRADE) {
        return;
    }
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shadow.max_body as u64) {
        state.record.dropped();
        return;
    }
    let shadow_target = route.shadow_target(shadow, &routed.path, req.uri.query());
    ctx.shadow = Some(Box::new(Capture {
        held: Reservation::new(state),
        max_body: shadow.max_body,
        path: req.uri.path().to_owned(),
        shadow_target,
        head: None,
        request_body: Vec::new(),
        answer: None,
        answer_body: Vec::new(),
        request_too_large: false,
        answer_too_large: false,
        over_budget: false,
    }));
}

impl Capture {
    /// Keeps a chunk of the request body, up to the bound.
    pub fn request_chunk(&mut self, chunk: &Bytes) {
        self.keep(chunk, Body::Request);
    }

    /// Keeps the upstream request as sent to the primary (the last attempt's).
    pub fn upstream_head(&mut self, head: &RequestHeader) {
        self.head = Some(head.clone());
    }

    /// Keeps the primary's final answer head.
    pub fn answer_head(&mut self, resp: &ResponseHeader) {
        self.answer = Some((resp.status.as_u16(), resp.headers.clone()));
        // A retry's answer replaces an earlier one.
        self.held.release(self.answer_body.len());
        self.answer_body = Vec::new();
        self.answer_too_large = false;
    }

    /// Keeps a chunk of the primary's answer body, up to the bound.
    pub fn answer_chunk(&mut self, chunk: &Bytes) {
        self.keep(chunk, Body::Answer);
    }

    /// Keeps a chunk, or gives the body up (and its bytes back) when it would pass the
    /// copy's bound or the route's memory budget.
    fn keep(&mut self, chunk: &Bytes, which: Body) {
        let (buf, over) = match which {
            Body::Request => (&mut self.request_body, &mut self.request_too_large),
            Body::Answer => (&mut self.answer_body, &mut self.answer_too_large),
        };
        if *over || self.over_budget {
            return;
        }
        let fits = buf.len() + chunk.len() <= self.max_body;
        if fits && self.held.grow(chunk.len()) {
            buf.extend_from_slice(chunk);
            return;
        }
        if fits {
            self.over_budget = true;
        } else {
            *over = true;
        }
        self.held.release(buf.len());
        *buf = Vec::new();
    }
}

#[derive(Clone, Copy)]
enum Body {
    Request,
    Answer,
}

/// Hands a complete copy to a shadow job, once the client has its answer. A request the
/// primary did not answer (the gateway answered it, or the upstream failed) is not copied:
/// there is nothing to compare with.
pub fn finish(ctx: &mut RequestCtx, failed: bool) {
    let Some(capture) = ctx.shadow.take() else {
        return;
    };
    let Capture {
        held,
        path,
        shadow_target,
        head,
        request_body,
        answer,
        answer_body,
        request_too_large,
        answer_too_large,
        over_budget,
        ..
    } = *capture;
    let state = held.state().clone();
    let (Some(head), Some((status, headers)), Some(routed), Some(served)) =
        (head, answer, &ctx.routed, ctx.upstream.service)
    else {
        return;
    };
    if failed || ctx.outcome.error.is_some() {
        return;
    }
    let route = ctx.runtime.config.router.route(routed.index);
    let Some(shadow) = &route.shadow else {
        return;
    };
    // A request served by the shadow service itself (a fallback to it) has nothing to be
    // compared with.
    if served == shadow.service {
        return;
    }
    if request_too_large || over_budget {
        state.record.dropped();
        return;
    }
    if answer_too_large {
        state.record.answer_too_large();
        return;
    }
    let Some(slot) = state.try_slot() else {
        state.record.dropped();
        return;
    };
    tokio::spawn(job::run(job::Job {
        slot,
        _held: held,
        runtime: ctx.runtime.clone(),
        route: routed.index,
        primary_service: served,
        path,
        head,
        shadow_target,
        request_body: request_body.into(),
        primary: Answer {
            status,
            headers,
            body: answer_body,
        },
        request_id: ctx.request_id_value.clone(),
    }));
}
