//! A budget for HTTP/2 control frames on each client connection.
//!
//! `WINDOW_UPDATE`, `PRIORITY`, `PING`, `SETTINGS`, `RST_STREAM`, empty `DATA` and frames
//! of unknown types cost the server work but need no request, and the h2 crate under
//! pingora has no limit on most of them: one connection sending them as fast as it can
//! took 84% of a core and made other clients' requests 100 times slower. [`H2Guard`] sits
//! between the client connection and pingora's HTTP/2 server and reads the frame headers
//! of both directions as they pass ([`FrameScanner`]). Each control frame from the client
//! costs a token of a [`ControlBudget`]; progress earns tokens: a request (`HEADERS`), a
//! request body's `DATA`, and each `DATA` frame the gateway sends (a client acknowledges
//! those with `WINDOW_UPDATE`s). A connection that runs out is cut: a `GOAWAY` with
//! `ENHANCE_YOUR_CALM` goes out at the next frame boundary of what the gateway writes (if
//! the connection can take it at once) and the connection is closed.
//!
//! It also notices the `GOAWAY`s h2 itself sends when a client breaks one of its limits
//! (rapid reset) or the protocol, and counts those cuts ([`super::h2_cuts`]), and it sends
//! the `GOAWAY` pingora leaves out when it drops an idle connection (see its `Drop`). It
//! never changes or delays a byte of either direction; it only adds a `GOAWAY` between
//! frames and ends the connection.

use pingora_core::protocols::Stream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h2_cuts::{self, CutReason};
use super::h2_frames::{
    goaway, FrameHead, FrameScanner, Seen, CONTINUATION, DATA, END_STREAM, ENHANCE_YOUR_CALM,
    GOAWAY, HEADERS, NO_ERROR,
};
use super::replay::{forward_details, forward_peek};

/// Control frames a connection may send in a row without any progress. A browser sends a
/// handful (`SETTINGS`, a `WINDOW_UPDATE`, a few `PRIORITY`) when it connects and a few per
/// request; a flood sends thousands per millisecond.
pub const CONTROL_BURST: u32 = 1000;
/// Tokens a request earns: room for the `PRIORITY`, `WINDOW_UPDATE` and `RST_STREAM`
/// frames a client may send around one request.
pub const CREDIT_PER_REQUEST: u32 = 10;
/// Tokens each `DATA` frame the gateway sends earns: a client may acknowledge each one
/// with a `WINDOW_UPDATE` for the stream and one for the connection.
pub const CREDIT_PER_DATA_SENT: u32 = 4;
/// Tokens each non-empty `DATA` frame from the client earns.
pub const CREDIT_PER_DATA_RECEIVED: u32 = 1;
/// Tokens a connection earns per second by itself (keep-alive `PING`s on a quiet
/// connection are fine; the refill is only looked at when the budget runs out).
pub const REFILL_PER_SECOND: u32 = 100;

/// The debug data of the guard's `GOAWAY`, for whoever reads the client's logs.
const GOAWAY_DEBUG: &[u8] = b"control_flood";

/// The control-frame tokens of one connection.
#[derive(Debug)]
pub struct ControlBudget {
    tokens: u32,
    /// When the time-based refill was last added.
    refilled: Instant,
}

impl ControlBudget {
    pub fn new(now: Instant) -> ControlBudget {
        ControlBudget {
            tokens: CONTROL_BURST,
            refilled: now,
        }
    }

    /// Adds tokens for progress, up to [`CONTROL_BURST`].
    pub fn earn(&mut self, n: u32) {
        self.tokens = self.tokens.saturating_add(n).min(CONTROL_BURST);
    }

    /// Takes a token for a control frame; `false` when there is none left, even after the
    /// refill for the time since the last one.
    pub fn spend(&mut self, now: impl FnOnce() -> Instant) -> bool {
        if self.tokens == 0 {
            let now = now();
            let ms = now.saturating_duration_since(self.refilled).as_millis();
            let refill = ms.saturating_mul(u128::from(REFILL_PER_SECOND)) / 1000;
            if refill == 0 {
                return false;
            }
            self.tokens = u32::try_from(refill).unwrap_or(u32::MAX).min(CONTROL_BURST);
            self.refilled = now;
        }
        self.tokens -= 1;
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Out of budget: the `GOAWAY` goes out at the next read, which then fails.
    OverBudget,
    /// Cut: every read and write fails.
    Closed,
}

/// An HTTP/2 client connection with a control-frame budget (see the module docs).
#[derive(Debug)]
pub struct H2Guard {
    inner: Stream,
    from_client: FrameScanner,
    to_client: FrameScanner,
    budget: ControlBudget,
    /// The highest stream the client opened, for the `GOAWAY`.
    last_client_stream: u32,
    /// A `GOAWAY` that ends the connection was seen (and counted) already.
    counted: bool,
    /// A `GOAWAY` of any kind went out (h2's graceful shutdown sends one).
    goaway_sent: bool,
    /// The client closed its side, or reading failed.
    client_gone: bool,
    state: State,
}

impl H2Guard {
    /// Guards `inner`, whose first bytes to read are the client's connection preface.
    pub fn new(inner: Stream) -> H2Guard {
        H2Guard {
            inner,
            from_client: FrameScanner::after_preface(),
            to_client: FrameScanner::frames(),
            budget: ControlBudget::new(Instant::now()),
            last_client_stream: 0,
            counted: false,
            goaway_sent: false,
            client_gone: false,
            state: State::Open,
        }
    }

    /// Accounts for the frames in bytes just read from the client.
    fn scan_from_client(&mut self, bytes: &[u8]) {
        let (budget, last) = (&mut self.budget, &mut self.last_client_stream);
        let mut within = true;
        self.from_client.feed(bytes, |seen| {
            if let Seen::Head(h) = seen {
                within &= on_client_frame(budget, last, h);
            }
        });
        if !within && self.state == State::Open {
            self.state = State::OverBudget;
        }
    }

    /// Accounts for the frames in bytes the gateway just wrote.
    fn scan_to_client(&mut self, bytes: &[u8]) {
        let (budget, counted) = (&mut self.budget, &mut self.counted);
        let goaway_sent = &mut self.goaway_sent;
        self.to_client.feed(bytes, |seen| match seen {
            Seen::Head(h) if h.kind == DATA => budget.earn(CREDIT_PER_DATA_SENT),
            Seen::Head(_) => {}
            Seen::GoAway { code, debug } => {
                *goaway_sent = true;
                if let Some(reason) = CutReason::of_goaway(code, debug) {
                    if !*counted {
                        *counted = true;
                        h2_cuts::record(reason);
                    }
                }
            }
        });
    }

    /// Cuts the connection: a `GOAWAY` if it can go out now, then the end of writing.
    fn cut(&mut self, cx: &mut Context<'_>) {
        self.state = State::Closed;
        if !self.counted {
            self.counted = true;
            h2_cuts::record(CutReason::ControlFlood);
        }
        if self.send_goaway_now(cx, ENHANCE_YOUR_CALM, GOAWAY_DEBUG) {
            let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        }
    }

    /// Writes a `GOAWAY` if the connection takes it at once; whether it went out. Only
    /// between frames: half-way through one of h2's frames the client would read the
    /// `GOAWAY` as part of it. A client that does not read does not get it.
    fn send_goaway_now(&mut self, cx: &mut Context<'_>, code: u32, debug: &[u8]) -> bool {
        if !self.to_client.at_boundary() {
            return false;
        }
        self.goaway_sent = true;
        let frame = goaway(self.last_client_stream, code, debug);
        let mut at = 0;
        while at < frame.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &frame[at..]) {
                Poll::Ready(Ok(n)) if n > 0 => at += n,
                _ => return false,
            }
        }
        matches!(
            Pin::new(&mut self.inner).poll_flush(cx),
            Poll::Ready(Ok(()))
        )
    }
}

/// pingora drops an HTTP/2 connection that had no stream open for `keepalive_timeout`
/// without telling the client why (no `GOAWAY`), so a client could send a request into a
/// connection that is closing and see it fail. When the connection goes away without a
/// `GOAWAY` from h2 or the guard, one with `NO_ERROR` and the last stream the client
/// opened is written now if the socket takes it without waiting (an idle connection's
/// does), so the client knows that later streams were never processed and retries them.
impl Drop for H2Guard {
    fn drop(&mut self) {
        if self.goaway_sent || self.client_gone || self.state != State::Open {
            return;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.send_goaway_now(&mut cx, NO_ERROR, b"");
    }
}

/// Whether a frame from the client is within the budget (progress always is).
fn on_client_frame(budget: &mut ControlBudget, last_stream: &mut u32, h: FrameHead) -> bool {
    match h.kind {
        // An empty DATA frame only means something when it ends a body.
        DATA if h.len == 0 => h.flags & END_STREAM != 0 || budget.spend(Instant::now),
        DATA => {
            budget.earn(CREDIT_PER_DATA_RECEIVED);
            true
        }
        HEADERS => {
            // Client streams have odd ids.
            if h.stream % 2 == 1 {
                *last_stream = (*last_stream).max(h.stream);
            }
            budget.earn(CREDIT_PER_REQUEST);
            true
        }
        CONTINUATION | GOAWAY => true,
        // PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE (never valid from a client), PING,
        // WINDOW_UPDATE and unknown types.
        _ => budget.spend(Instant::now),
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 connection cut: control frames without progress",
    )
}

impl AsyncRead for H2Guard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Open => {}
            State::OverBudget => {
                this.cut(cx);
                return Poll::Ready(Err(cut_error()));
            }
            State::Closed => return Poll::Ready(Err(cut_error())),
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                this.client_gone = true;
            }
            Poll::Ready(Ok(())) => this.scan_from_client(&buf.filled()[before..]),
            Poll::Ready(Err(_)) => this.client_gone = true,
            Poll::Pending => {}
        }
        // What was read is h2's even when it broke the budget: h2 handles it and reads
        // again, and that read cuts the connection.
        polled
    }
}

impl AsyncWrite for H2Guard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state == State::Closed {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.scan_to_client(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state == State::Closed {
            return Poll::Ready(Err(cut_error()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                this.scan_to_client(&b[..take]);
                left -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

forward_details!(H2Guard);

forward_peek!(H2Guard);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn head(kind: u8, flags: u8, stream: u32, len: u32) -> FrameHead {
        FrameHead {
            len,
            kind,
            flags,
            stream,
        }
    }

    #[test]
    fn a_flood_of_window_updates_runs_out_and_progress_refills() {
        let t0 = Instant::now();
        let mut b = ControlBudget::new(t0);
        let mut last = 0;
        let wu = head(0x8, 0, 0, 4);
        for _ in 0..CONTROL_BURST {
            assert!(on_client_frame(&mut b, &mut last, wu));
        }
        assert!(!b.spend(|| t0), "the burst is spent");
        // A request earns room for a few more.
        assert!(on_client_frame(&mut b, &mut last, head(HEADERS, 5, 7, 10)));
        assert_eq!(last, 7);
        for _ in 0..CREDIT_PER_REQUEST {
            assert!(b.spend(|| t0));
        }
        assert!(!b.spend(|| t0));
        // Time refills slowly.
        assert!(b.spend(|| t0 + Duration::from_millis(100)));
        let mut more = 0;
        while b.spend(|| t0 + Duration::from_millis(100)) {
            more += 1;
        }
        assert_eq!(more, REFILL_PER_SECOND / 10 - 1);
    }

    #[test]
    fn empty_data_without_end_stream_is_a_control_frame() {
        let mut b = ControlBudget::new(Instant::now());
        let mut last = 0;
        b.tokens = 1;
        assert!(on_client_frame(&mut b, &mut last, head(DATA, 0, 1, 0)));
        assert_eq!(b.tokens, 0);
        assert!(on_client_frame(
            &mut b,
            &mut last,
            head(DATA, END_STREAM, 1, 0)
        ));
        assert!(on_client_frame(&mut b, &mut last, head(DATA, 0, 1, 100)));
        assert_eq!(b.tokens, CREDIT_PER_DATA_RECEIVED);
    }

    #[test]
    fn earned_tokens_are_capped_at_the_burst() {
        let mut b = ControlBudget::new(Instant::now());
        b.earn(u32::MAX);
        assert_eq!(b.tokens, CONTROL_BURST);
    }
}
