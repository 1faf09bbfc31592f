//! The one way out: every response head the client gets passes the gateway's own edits
//! ([`own_edits`]) and the plugins' response hooks here.
//!
//! Proxied responses come from `response_filter` to [`proxied_head`] (which, where no
//! spellings are kept, makes both in one pass over the head's plain map, else calls
//! [`finish_head`]); responses the gateway writes itself (its errors, plugin answers,
//! `OPTIONS *`) are built as a [`Reply`] and sent by [`send`], which calls [`own_edits`] and
//! [`finish_head`] too. So the request id, the route's `response_headers` edits and the
//! plugins' response hooks are on every answer, whoever made it, and no path can forget
//! them. (The connection-level head layer refuses heads pingora never parses; it builds
//! its answer with [`gateway_head`], the same head a [`Reply`] starts from.)

use bytes::Bytes;
use ficus_plugins::Source;
use http::{HeaderName, HeaderValue, StatusCode};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::Duration;

use super::chain;
use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::forward;
use super::headers::{self, HeaderSink};

/// The methods the gateway proxies: its answer to `OPTIONS *`.
pub const METHODS_PROXIED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// A response the gateway writes itself.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Close the connection afterwards (the request's framing is doubtful).
    pub close: bool,
}

impl Reply {
    /// The JSON error body for `err`, with `Retry-After` on a 503.
    pub fn error(err: GatewayError, request_id: &str, retry_after: Option<Duration>) -> Reply {
        let mut reply = Reply::error_message(err.status(), err.message(), request_id);
        if err.status() == 503 {
            // Whole seconds, rounded up, at least 1.
            let secs = retry_after.map_or(1, |d| d.as_millis().div_ceil(1000).max(1) as u64);
            reply
                .headers
                .push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        reply
    }

    /// The gateway's JSON error shape with any fixed message.
    fn error_message(status: u16, message: &str, request_id: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: error_body(message, request_id),
            close: false,
        }
    }

    /// A plugin's answer.
    pub fn plugin(resp: ficus_plugins::Response, request_id: &str) -> Reply {
        let mut reply = match resp.body {
            ficus_plugins::Body::Error(message) => {
                Reply::error_message(resp.status.as_u16(), &message, request_id)
            }
            ficus_plugins::Body::Bytes(body) => Reply {
                status: resp.status,
                headers: Vec::new(),
                body,
                close: false,
            },
        };
        reply.headers.extend(
            resp.headers
                .into_iter()
                .filter(|(n, _)| !chain::is_framing(n)),
        );
        reply
    }

    /// `OPTIONS *` asks what the server as a whole supports (RFC 9110 §9.3.7). No single
    /// upstream speaks for the whole gateway, so the gateway answers: the methods it
    /// proxies.
    pub fn options_asterisk() -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: vec![(
                http::header::ALLOW,
                HeaderValue::from_static(METHODS_PROXIED),
            )],
            body: Bytes::new(),
            close: false,
        }
    }
}

/// Builds the JSON error body. `message` is fixed text (never from the request); request
/// ids are validated to hold no quotes or backslashes.
pub fn error_body(message: &str, request_id: &str) -> Bytes {
    let mut s = String::with_capacity(32 + message.len() + request_id.len());
    s.push_str("{\"error\":\"");
    for c in message.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => {}
            c => s.push(c),
        }
    }
    s.push_str("\",\"request_id\":\"");
    s.push_str(request_id);
    s.push_str("\"}\n");
    Bytes::from(s)
}

/// The head of a gateway-made response before [`finish_head`]: status, the reply's own
/// headers and the body's length.
pub fn gateway_head(
    status: StatusCode,
    extra: &[(HeaderName, HeaderValue)],
    body_len: usize,
) -> Option<ResponseHeader> {
    let mut head = ResponseHeader::build(status, Some(extra.len() + 4)).ok()?;
    for (n, v) in extra {
        head.add(n, v.clone());
    }
    head.put(
        &http::header::CONTENT_LENGTH,
        "Content-Length",
        HeaderValue::from(body_len),
    );
    Some(head)
}

/// Room kept for each response hook of the route, in the same step: a CORS policy adds up
/// to four headers to an actual response (`Access-Control-Allow-Origin`, `-Allow-Credentials`,
/// `-Expose-Headers`, `Vary`), a rate limit with `headers = "always"` two to five.
const ROOM_PER_RESPONSE_HOOK: usize = 4;

/// The gateway's own edits of every response head: the request id and the route's
/// `response_headers`.
pub fn own_edits(h: &mut impl HeaderSink, ctx: &RequestCtx) {
    let route = ctx.route();
    // X-Request-Id, the route's own, the response hooks' and one free slot: pingora then
    // sets Date and Connection, and even an insert that replaces a value grows a full map.
    // One reservation grows a map at most once.
    h.reserve(
        2 + route.map_or(0, |r| {
            r.response_headers().additions() + ROOM_PER_RESPONSE_HOOK * r.chain.response.len()
        }),
    );
    h.put(
        &headers::X_REQUEST_ID,
        "X-Request-Id",
        ctx.request_id_value.clone(),
    );
    if let Some(route) = route {
        if !route.response_headers().is_empty() {
            headers::edit(h, route.response_headers());
        }
    }
}

/// Everything every response head gets, after the gateway's own edits: the plugins'
/// response hooks.
pub async fn finish_head(
    session: &Session,
    ctx: &mut RequestCtx,
    head: &mut ResponseHeader,
    source: Source,
) {
    let status = head.status;
    chain::run_response(session.req_header(), ctx, status, head, source).await;
}

/// A proxied response's head made ready for the client: hop-by-hop removal and the
/// gateway's own edits ([`forward::response_headers`]), then the plugins' response hooks.
///
/// Where spellings are kept (`preserve_header_case`, an HTTP/1 client) every edit goes
/// through pingora's case-keeping API (a name is parsed and entered in two maps per
/// header). Elsewhere the head's spellings are dropped (HTTP/2 sends every name in
/// lowercase anyway), and all of the edits, the hooks' too, run on its plain header map in
/// one window: one map, no name parsing, room reserved once ([`own_edits`]).
pub async fn proxied_head(session: &Session, ctx: &mut RequestCtx, resp: &mut ResponseHeader) {
    let switching = resp.status == StatusCode::SWITCHING_PROTOCOLS;
    let h1 = !session.is_http2();
    if h1 && ctx.runtime.config.gateway.preserve_header_case {
        forward::response_headers(resp, ctx, switching, h1);
        finish_head(session, ctx, resp, Source::Upstream).await;
        return;
    }
    // Should this future be dropped before the end (the request is being torn down), the
    // head left behind is empty; nothing sends it then.
    let mut parts = headers::response_parts(resp);
    forward::response_headers(&mut parts.headers, ctx, switching, h1);
    let req = session.req_header();
    chain::run_response(req, ctx, parts.status, &mut parts.headers, Source::Upstream).await;
    *resp = ResponseHeader::from(parts);
}

/// Sends a gateway-made response through the one way out. Errors writing to a client that
/// went away are ignored: there is nobody left to tell.
pub async fn send(session: &mut Session, ctx: &mut RequestCtx, reply: Reply) {
    let Some(mut head) = gateway_head(reply.status, &reply.headers, reply.body.len()) else {
        return;
    };
    own_edits(&mut head, ctx);
    finish_head(session, ctx, &mut head, Source::Gateway).await;
    if reply.close || ctx.draining() {
        session.set_keepalive(None);
    }
    let end = reply.body.is_empty();
    if session
        .write_response_header(Box::new(head), end)
        .await
        .is_ok()
        && !end
    {
        let _ = session.write_response_body(Some(reply.body), true).await;
    }
}

/// Sends the error answer for `err` and records it as the request's outcome.
pub async fn send_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: GatewayError,
    close: bool,
) {
    ctx.outcome.error = Some(err);
    let mut reply = Reply::error(err, ctx.request_id(), ctx.upstream.retry_after);
    reply.close = close;
    send(session, ctx, reply).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let b = error_body(GatewayError::UpstreamUnreachable.message(), "abc");
        assert_eq!(
            &b[..],
            b"{\"error\":\"upstream service unreachable\",\"request_id\":\"abc\"}\n"
        );
        let b = error_body("say \"no\"\\\n", "r");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"], "say \"no\"\\");
    }

    #[test]
    fn a_plugin_cannot_set_framing_headers() {
        let resp = ficus_plugins::Response::json(StatusCode::IM_A_TEAPOT, "{}")
            .with_header(http::header::CONTENT_LENGTH, HeaderValue::from_static("99"))
            .with_header(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        let reply = Reply::plugin(resp, "id");
        assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
        assert_eq!(reply.headers.len(), 1);
        let head = gateway_head(reply.status, &reply.headers, reply.body.len()).unwrap();
        assert_eq!(head.headers.get("content-length").unwrap(), "2");
    }

    #[test]
    fn retry_after_on_503_only() {
        let r = Reply::error(
            GatewayError::CircuitOpen,
            "id",
            Some(Duration::from_millis(1500)),
        );
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == http::header::RETRY_AFTER && v == "2"));
        let r = Reply::error(GatewayError::NoRoute, "id", None);
        assert!(!r
            .headers
            .iter()
            .any(|(n, _)| n == http::header::RETRY_AFTER));
    }
}
