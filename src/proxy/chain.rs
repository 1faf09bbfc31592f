//! Runs a route's plugin hooks at the phase boundaries and applies the header edits they
//! ask for. The hooks and their order are documented on `ficus_plugins::Plugin`; this
//! module only builds what each hook sees and applies what it returns.

use ficus_plugins::{
    HeaderEdits, HeaderOp, LogRecord, Outcome, Plugin, RequestState, RequestView, ResponseHead,
    Source, UpstreamRequest,
};
use http::{HeaderName, StatusCode};
use pingora_http::RequestHeader;
use std::sync::Arc;
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
    upstream_hooks(
        &route.chain.upstream_request,
        &ctx.plugins.upstream_edits,
        upstream,
        &route.name,
        ctx.upstream.attempts,
        &ctx.plugins.state,
    )
    .await;
}

async fn upstream_hooks(
    plugins: &[Arc<dyn Plugin>],
    queued: &HeaderEdits,
    upstream: &mut RequestHeader,
    route: &str,
    attempt: u32,
    state: &RequestState,
) {
    apply(upstream, queued.ops());
    let mut edits = HeaderEdits::default();
    for p in plugins {
        let mut req = UpstreamRequest {
            headers: &upstream.headers,
            route,
            attempt,
            state,
            edits: &mut edits,
        };
        p.on_upstream_request(&mut req).await;
        apply(upstream, edits.ops());
        edits.clear();
    }
}

/// The response hooks, on any response head: a pingora head, or the plain map of one taken
/// apart (see `respond::proxied_head`).
pub async fn run_response(
    req: &RequestHeader,
    ctx: &RequestCtx,
    status: StatusCode,
    head: &mut impl HeaderSink,
    source: Source,
) {
    let Some(route) = ctx.route() else { return };
    if !route.chain.response.is_empty() {
        let state = &ctx.plugins.state;
        let hooks = &route.chain.response;
        response_hooks(hooks, req, &route.name, state, status, head, source).await;
    }
}

async fn response_hooks(
    plugins: &[Arc<dyn Plugin>],
    req: &RequestHeader,
    route: &str,
    state: &RequestState,
    status: StatusCode,
    head: &mut impl HeaderSink,
    source: Source,
) {
    let mut edits = HeaderEdits::default();
    for p in plugins {
        let mut view = ResponseHead {
            status,
            headers: head.map(),
            source,
            method: &req.method,
            request_headers: &req.headers,
            route,
            state,
            edits: &mut edits,
        };
        p.on_response(&mut view).await;
        apply(head, edits.ops());
        edits.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{instantiate, Chain, Link};
    use ficus_plugins::{async_trait, CompileContext, Hooks, Identity, PolicyKind, Stage};
    use http::HeaderValue;
    use pingora_http::ResponseHeader;

    /// A test plugin that leaves a trace of every hook in the headers it may edit.
    struct Tracer {
        tag: &'static str,
        /// Answer the request with 401 when an earlier plugin stored an identity.
        refuse_identified: bool,
    }

    #[async_trait]
    impl Plugin for Tracer {
        fn kind(&self) -> &'static str {
            self.tag
        }
        fn hooks(&self) -> Hooks {
            Hooks {
                request: true,
                upstream_request: true,
                response: true,
                log: false,
            }
        }
        async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
            if self.refuse_identified && req.state.get::<Identity>().is_some() {
                return Outcome::Respond(ficus_plugins::Response::error(
                    StatusCode::UNAUTHORIZED,
                    "no",
                ));
            }
            req.state
                .insert(Identity::new(self.tag).with_subject("alice"));
            req.upstream.set(
                HeaderName::from_static("x-user"),
                HeaderValue::from_static("alice"),
            );
            req.upstream.remove(http::header::AUTHORIZATION);
            Outcome::Continue
        }
        async fn on_upstream_request(&self, req: &mut UpstreamRequest<'_>) {
            // Sees what the request hooks queued, and the shared state.
            let seen = req.headers.get("x-user").is_some();
            let who = req.state.get::<Identity>().map_or("-", |i| &*i.policy);
            req.edits.append(
                HeaderName::from_static("x-upstream-trace"),
                HeaderValue::from_str(&format!("{}:{seen}:{who}", self.tag)).unwrap(),
            );
            req.edits.set(
                http::header::CONTENT_LENGTH,
                HeaderValue::from_static("999"),
            );
        }
        async fn on_response(&self, resp: &mut ResponseHead<'_>) {
            resp.edits.append(
                HeaderName::from_static("x-response-trace"),
                HeaderValue::from_static(self.tag),
            );
            resp.edits.remove(HeaderName::from_static("server"));
        }
    }

    macro_rules! tracer_kind {
        ($kind:ident, $section:literal, $stage:expr, $refuse:expr) => {
            struct $kind;
            impl PolicyKind for $kind {
                const SECTION: &'static str = $section;
                const STAGE: Stage = $stage;
                type Config = ();
                type Settings = ();
                fn compile(_: (), _: &mut CompileContext<'_>) -> Option<()> {
                    Some(())
                }
                fn build(_: &str, _: Arc<()>) -> Arc<dyn Plugin> {
                    Arc::new(Tracer {
                        tag: $section,
                        refuse_identified: $refuse,
                    })
                }
            }
        };
    }
    tracer_kind!(AccessTracer, "access-tracer", Stage::Access, false);
    tracer_kind!(AuthTracer, "auth-tracer", Stage::Auth, false);
    tracer_kind!(LimitRefuser, "limit-refuser", Stage::RateLimit, true);

    /// A chain listed out of order: the stage order wins.
    fn chain() -> Chain {
        Chain::new(vec![
            Link::policy(instantiate::<AuthTracer>("b", (), None)),
            Link::policy(instantiate::<AccessTracer>("a", (), None)),
        ])
    }

    fn request() -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("authorization", "Bearer t").unwrap();
        req
    }

    async fn request_hooks(
        chain: &Chain,
        state: &mut RequestState,
        edits: &mut HeaderEdits,
    ) -> Outcome {
        let req = request();
        let mut view = RequestView {
            method: &req.method,
            path: "/x",
            query: None,
            headers: &req.headers,
            client_ip: None,
            route: "r",
            request_id: "id",
            preflight: false,
            state,
            upstream: edits,
        };
        ficus_plugins::run_request_hooks(&chain.request, &mut view).await
    }

    #[tokio::test]
    async fn state_and_edits_flow_along_the_chain_in_stage_order() {
        let chain = chain();
        let mut state = RequestState::new();
        let mut queued = HeaderEdits::default();
        assert_eq!(
            request_hooks(&chain, &mut state, &mut queued).await,
            Outcome::Continue
        );
        // The last request hook to store an Identity was the auth stage's.
        assert_eq!(&*state.get::<Identity>().unwrap().policy, "auth-tracer");

        let mut upstream = request();
        upstream_hooks(
            &chain.upstream_request,
            &queued,
            &mut upstream,
            "r",
            1,
            &state,
        )
        .await;
        assert_eq!(upstream.headers.get("x-user").unwrap(), "alice");
        assert!(upstream.headers.get("authorization").is_none());
        let trace: Vec<_> = upstream
            .headers
            .get_all("x-upstream-trace")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            trace,
            [
                "access-tracer:true:auth-tracer",
                "auth-tracer:true:auth-tracer"
            ]
        );
        // Framing headers are the gateway's.
        assert!(upstream.headers.get("content-length").is_none());

        let mut head = ResponseHeader::build(502, None).unwrap();
        head.insert_header("server", "origin").unwrap();
        head.insert_header("content-length", "10").unwrap();
        let req = request();
        let status = head.status;
        response_hooks(
            &chain.response,
            &req,
            "r",
            &state,
            status,
            &mut head,
            Source::Gateway,
        )
        .await;
        let trace: Vec<_> = head
            .headers
            .get_all("x-response-trace")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        // Response hooks run in reverse stage order.
        assert_eq!(trace, ["auth-tracer", "access-tracer"]);
        assert!(head.headers.get("server").is_none());
        assert_eq!(head.headers.get("content-length").unwrap(), "10");
    }

    #[tokio::test]
    async fn a_later_stage_reads_an_earlier_result_and_may_answer() {
        let chain = Chain::new(vec![
            Link::policy(instantiate::<LimitRefuser>("c", (), None)),
            Link::policy(instantiate::<AccessTracer>("a", (), None)),
        ]);
        let mut state = RequestState::new();
        let mut queued = HeaderEdits::default();
        match request_hooks(&chain, &mut state, &mut queued).await {
            Outcome::Respond(r) => assert_eq!(r.status, StatusCode::UNAUTHORIZED),
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}
