//! Entry points for the fuzz targets in `fuzz/` (see docs/fuzzing.md), and nothing else.
//!
//! The request-head layer's scanners are private to `listener::head` and
//! `listener::request_end`; this
//! module hands them to the fuzz crate without making them part of ficus's API. Hidden
//! from the docs and not covered by any compatibility promise: the signatures follow the
//! internals they wrap.

use bytes::BytesMut;

use crate::listener::head::{self, Head};
use crate::listener::request_end::{self as end_of, Framing};
use crate::proxy::error::GatewayError;

/// How a request head frames its body, as the head layer reads it to split pipelined
/// requests (a copy of the private enum, so that one can stay private).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    Unknown,
}

/// Where the request head in `buf` ends (just past its empty line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    head::head_end(buf)
}

/// The refusal the head layer answers itself (414, 431) for `buf`: a complete head that
/// ends at `end`, or with `end = None` a head with no end within the size limit
/// (`max_head` bytes).
pub fn head_violation(
    buf: &[u8],
    end: Option<usize>,
    max_headers: usize,
    max_uri: usize,
    max_head: usize,
) -> Option<GatewayError> {
    let h = match end {
        Some(end) => Head::Ready(end),
        None => Head::Oversized,
    };
    head::head_violation(buf, &h, max_headers, max_uri, max_head)
}

/// How many bytes of `buf` (a complete head ending at `end`, and what followed it) go to
/// the proxy as one request; the rest is the next pipelined request.
pub fn to_proxy_now(buf: &[u8], end: usize) -> usize {
    end_of::to_proxy_now(buf, end)
}

/// The body framing a raw head declares.
pub fn body_framing(head_bytes: &[u8]) -> BodyFraming {
    match end_of::body_framing(head_bytes) {
        Framing::None => BodyFraming::None,
        Framing::Length(n) => BodyFraming::Length(n),
        Framing::Chunked => BodyFraming::Chunked,
        Framing::Unknown => BodyFraming::Unknown,
    }
}

/// Where a chunked body starting at `body[0]` ends, if all of it is there.
pub fn chunked_end(body: &[u8]) -> Option<usize> {
    end_of::chunked_end(body)
}

/// Drops the empty lines a client may send before a request line.
pub fn skip_empty_lines(buf: &mut BytesMut) {
    head::skip_empty_lines(buf)
}

/// The client's acceptable `X-Request-Id` in a (maybe partial) raw head.
pub fn client_request_id(head_bytes: &[u8]) -> Option<String> {
    head::client_request_id(head_bytes)
}
