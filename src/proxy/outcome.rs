//! What an upstream attempt says about its instance, decided in one place.
//!
//! pingora tells the gateway about an attempt at several phases (an answer's head, a
//! connect failure, an error on the connection, the end of the request). Each phase hands
//! what it saw to [`record`] as [`Evidence`]; `record` decides whether that is a success,
//! a failure or nothing, and reports it to outlier detection and the circuit breaker once
//! per attempt (decisions.md #16).

use pingora_error::{Error, ErrorSource};
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::error::{classify, GatewayError};

/// What a phase saw of the current attempt.
pub enum Evidence<'e> {
    /// The upstream answered with this final (non-1xx) status.
    Answered(u16),
    /// Connecting to the instance failed.
    ConnectFailed,
    /// An error while proxying (its source already set to whose fault it was).
    Failed(&'e Error),
    /// The request is over, with or without an error.
    Finished(Option<&'e Error>),
}

/// Records what `evidence` says about the current attempt (once per attempt: later
/// evidence about an attempt already recorded is ignored).
pub fn record(session: &mut Session, ctx: &mut RequestCtx, evidence: Evidence<'_>) {
    match evidence {
        // A 5xx is the instance failing; anything else is it working.
        Evidence::Answered(status) => finish_attempt(ctx, status < 500),
        Evidence::ConnectFailed => finish_attempt(ctx, false),
        // Only upstream failures count against the instance; a client that went away or
        // sent a body that was too large or too slow says nothing about the upstream.
        Evidence::Failed(e) => {
            if e.esource() == &ErrorSource::Upstream {
                finish_attempt(ctx, false);
            }
        }
        Evidence::Finished(e) => match finished(session, e, ctx) {
            Some(ok) => finish_attempt(ctx, ok),
            None => finish_attempt_neutral(ctx),
        },
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
fn finished(session: &mut Session, e: Option<&Error>, ctx: &RequestCtx) -> Option<bool> {
    let Some(e) = e else { return Some(true) };
    if ctx.outcome.idle_tunnel {
        return None;
    }
    match e.esource() {
        ErrorSource::Upstream => Some(false),
        _ if session.response_written().is_none() && session.is_body_done() => {
            matches!(classify(e).0, GatewayError::ClientClosed).then_some(false)
        }
        _ => None,
    }
}

/// Reports the current attempt's outcome to outlier detection and the circuit breaker
/// (once per attempt).
fn finish_attempt(ctx: &mut RequestCtx, ok: bool) {
    let Some(a) = ctx.upstream.current.as_mut() else {
        return;
    };
    if a.recorded {
        return;
    }
    a.recorded = true;
    a.service.record(&a.member, ok);
    let spec = a.service.spec();
    if let Some(b) = &spec.breaker {
        a.service.breaker.record(b, ok, a.trial);
    }
}

/// Closes the attempt without an outcome: the request said nothing about the instance. A
/// half-open breaker's trial slot is given back, so a new trial can take it.
fn finish_attempt_neutral(ctx: &mut RequestCtx) {
    let Some(a) = ctx.upstream.current.as_mut() else {
        return;
    };
    if a.recorded {
        return;
    }
    a.recorded = true;
    if a.trial {
        a.service.breaker.release_trial();
    }
}
