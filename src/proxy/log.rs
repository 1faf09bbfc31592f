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
            // Empty when no service served it: the gateway answered.
            let service = ctx
                .upstream
                .service
                .map_or("", |s| rt.config.services[s].name.as_str());
            let side = route
                .split
                .as_ref()
                .zip(ctx.upstream.split)
                .and_then(|(s, c)| s.sides.get(c.side))
                .map_or("", |d| rt.config.services[d.service].name.as_str());
            (&*route.name, service, side)
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
                .map_or_else(|| without_query(req.raw_path()), |r| r.path.as_bytes()),
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
            error: match (ctx.outcome.error, &ctx.outcome.refusal) {
                (Some(e), _) => e.message(),
                (None, Some(refusal)) => refusal,
                (None, None) => "",
            },
            detail: ctx.outcome.detail.as_deref().unwrap_or(""),
        },
    );
}

/// A target refused before it was routed, as logged: without its query, which may carry a
/// token (`?access_token=`) or other secrets; the path part is what explains a refusal.
fn without_query(target: &[u8]) -> &[u8] {
    target
        .iter()
        .position(|&b| b == b'?')
        .map_or(target, |q| &target[..q])
}

#[cfg(test)]
mod tests {
    use super::without_query;

    #[test]
    fn an_unrouted_target_is_logged_without_its_query() {
        assert_eq!(
            without_query(b"/orders/%ZZ?access_token=eyJ"),
            b"/orders/%ZZ"
        );
        assert_eq!(without_query(b"/a/../../b"), b"/a/../../b");
        assert_eq!(without_query(b"?x=1"), b"");
    }
}
