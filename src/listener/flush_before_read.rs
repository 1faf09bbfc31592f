//! A client connection that sends what was written to it before it waits for the client.
//!
//! pingora's HTTP/1 server does not flush a response that has a `Content-Length` until its
//! last byte is written: the head and the body wait in the listener's write buffer
//! (1,460 bytes) until it fills or the response ends. A response the upstream produces
//! slowly (a long poll, a progress feed, the first bytes of a slow download) would reach
//! the client all at once at the end. Responses without a length are flushed write by
//! write, and HTTP/2 flushes itself, so only HTTP/1 with a known length is affected.
//!
//! The fix sits where the gateway starts to wait. pingora's proxy loop waits for the
//! upstream and the client together, and every time it goes back to waiting it reads from
//! the client connection (to notice a client that closes). [`FlushBeforeRead`] flushes
//! what was written since the last flush before each such read. So what came from the
//! upstream in one go (a head and the body that arrived with it) still leaves in one
//! write, and nothing stays in the buffer while the gateway waits for more. It must not
//! buffer anything itself: a write goes straight to the inner stream.
//!
//! One wait has no read: while a request body is still coming and the upstream has
//! stopped taking it, pingora waits for room in the body pipe instead of reading, so a
//! response started meanwhile goes out when the upload moves on or the response ends.
//! `tests/streaming.rs` checks the common cases, so a pingora that stops reading while it
//! waits is noticed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hold_next::HoldNext;
use super::replay::{forward_details, forward_peek};

/// The client connection of one HTTP/1 request, as pingora's session gets it. It wraps the
/// [`HoldNext`] of the request by value: one allocation per request for both layers.
#[derive(Debug)]
pub struct FlushBeforeRead {
    inner: HoldNext,
    /// Bytes were written since the last successful flush.
    unflushed: bool,
}

impl FlushBeforeRead {
    pub fn new(inner: HoldNext) -> FlushBeforeRead {
        FlushBeforeRead {
            inner,
            unflushed: false,
        }
    }

    pub fn into_inner(self) -> HoldNext {
        self.inner
    }

    /// Notes a write, if it put bytes into the inner stream.
    fn note(&mut self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.unflushed = true;
        }
    }
}

impl AsyncRead for FlushBeforeRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unflushed {
            match Pin::new(&mut this.inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => this.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The client is not taking bytes right now. The read still goes ahead (a
                // client that stops reading may still be sending); this task is woken when
                // the connection can take more, and the next read flushes again.
                Poll::Pending => {}
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlushBeforeRead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.unflushed = false;
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

forward_details!(FlushBeforeRead);

forward_peek!(FlushBeforeRead);
