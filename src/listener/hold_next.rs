//! A client connection that gives pingora one HTTP/1 request and keeps what follows it.
//!
//! While pingora proxies a request it keeps reading the client connection (to notice a
//! client that closes). A pipelined next request that arrives in a later packet would be
//! read there, and pingora 0.9's HTTP/1 server either fails the current request (`400`)
//! or drops the connection after it. pingora has an opt-in for pipelining
//! (`set_pipelining_enabled`), but it hands the bytes it read ahead straight to its own
//! parser for the next request, past the request-head layer: no head deadline, no
//! `414`/`431` from the bytes, and the prefix cannot be taken back out of pingora's
//! persistent settings.
//!
//! [`HoldNext`] instead lets pingora read exactly the current request (head and a body of
//! known length) and keeps whatever comes after it, up to [`HOLD_MAX`] bytes (past that it
//! stops reading until the response is done: ordinary back-pressure). When the session is
//! over, the head layer takes the kept bytes back as the start of the next request. A
//! request whose end cannot be told in advance (a chunked body, an upgrade such as
//! WebSocket) is not limited: everything passes as before.

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

use super::replay::{forward_details, forward_peek, forward_write};

/// The most bytes kept after the current request: a head layer's worth of the next
/// requests.
pub const HOLD_MAX: usize = 64 * 1024;

/// The client connection of one HTTP/1 request (see the module docs).
#[derive(Debug)]
pub struct HoldNext {
    inner: Stream,
    /// Bytes of the current request pingora has yet to read; `None`: unknown, no limit.
    left: Option<u64>,
    held: BytesMut,
}

impl HoldNext {
    /// `inner` starts with a request of `len` bytes (head and body), if known.
    pub fn new(inner: Stream, len: Option<u64>) -> HoldNext {
        HoldNext {
            inner,
            left: len,
            held: BytesMut::new(),
        }
    }

    /// The connection and the bytes read after the request.
    pub fn into_parts(self) -> (Stream, BytesMut) {
        (self.inner, self.held)
    }

    /// Reads past the end of the request into `held`; pingora sees only the connection
    /// closing or failing.
    fn hold(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Not zeroed: pingora polls this read once or twice per request, and clearing 4 KiB
        // each time cost more than the rest of the gateway's work on a request's headers.
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            if self.held.len() >= HOLD_MAX {
                // Nothing wakes this read; the proxy waits for the upstream meanwhile,
                // and the session ends with the response.
                return Poll::Pending;
            }
            let room = (HOLD_MAX - self.held.len()).min(chunk.len());
            let mut rb = ReadBuf::uninit(&mut chunk[..room]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => self.held.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for HoldNext {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(left) = this.left else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if left == 0 {
            return this.hold(cx);
        }
        if (buf.remaining() as u64) <= left {
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            this.left = Some(left - (buf.filled().len() - before) as u64);
            return polled;
        }
        // Only the rest of the request goes into pingora's buffer.
        let limit = usize::try_from(left).unwrap_or(usize::MAX);
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit));
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut part);
        let n = part.filled().len();
        buf.advance(n);
        this.left = Some(left - n as u64);
        polled
    }
}

forward_write!(HoldNext);

forward_details!(HoldNext);

forward_peek!(HoldNext);
