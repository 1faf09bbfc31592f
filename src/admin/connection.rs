//! One admin connection, from accept to close, under deadlines.
//!
//! pingora's HTTP/1 session bounds each socket read (60 s) but not a whole request head,
//! so a client trickling one byte a second held an admin connection for as long as it
//! liked. Here every request head must be complete within `header_read_timeout` (from the
//! accept for the first request, from its first byte for later ones), a kept-alive
//! connection may sit idle for at most `keepalive_timeout`, and reading a request body and
//! writing the answer must end within `body_read_timeout + send_timeout`. The limits are
//! the proxy's own (`[gateway.limits]`), read from the running config for each request.
//!
//! The head is read here, then given back to pingora (its stream's rewind buffer) to parse
//! as usual. What the admin answers is `mod.rs`; which connections are admitted at all is
//! `guard.rs`.

use bytes::BytesMut;
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::guard::Admitted;
use super::Admin;

/// How long a refusal (408, 431) may take to write before the connection is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The smallest head size limit, whatever `max_header_bytes` says (as on the proxy).
const MIN_HEAD_LIMIT: usize = 64 * 1024;

/// How reading one request head ended.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The buffer holds a complete head (and maybe more).
    Ready,
    /// The peer closed, or sent nothing before the idle deadline.
    Gone,
    /// Part of a head arrived, but not all of it before the head deadline.
    TooSlow,
    /// No end of head within the size limit.
    Oversized,
}

/// Whether `buf` holds the end of a request head.
fn has_head_end(buf: &[u8]) -> bool {
    memchr::memmem::find(buf, b"\r\n\r\n").is_some() || memchr::memmem::find(buf, b"\n\n").is_some()
}

/// Reads one request head into `buf`: its first byte before `first_byte_by`, all of it
/// before `head_by` (or, when `head_by` is `None`, within `head_time` of its first byte).
async fn read_head(
    stream: &mut L4Stream,
    buf: &mut BytesMut,
    first_byte_by: Instant,
    head_by: Option<Instant>,
    head_time: Duration,
    max: usize,
) -> Head {
    match timeout_at(first_byte_by, stream.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return Head::Gone,
    }
    let head_by = head_by.unwrap_or_else(|| Instant::now() + head_time);
    loop {
        if has_head_end(buf) {
            return Head::Ready;
        }
        if buf.len() > max {
            return Head::Oversized;
        }
        match timeout_at(head_by, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Head::Gone,
            Err(_) => return Head::TooSlow,
        }
    }
}

/// Writes a short JSON refusal and closes (the client may not be reading at all).
async fn refuse(stream: &mut L4Stream, status: u16, reason: &str, message: &str) {
    let body = format!("{}\n", super::to_json(&super::ErrorBody { error: message }));
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
}

/// Serves one admitted connection until the client closes it, a deadline passes, or
/// pingora will not reuse it. `admitted` holds the connection's place under the cap.
pub(super) async fn serve(
    app: Arc<Admin>,
    tcp: tokio::net::TcpStream,
    never: ShutdownWatch,
    admitted: Admitted,
) {
    let _admitted = admitted;
    let accepted_at = Instant::now();
    let mut stream = Box::new(L4Stream::from(tcp));
    let mut buf = BytesMut::with_capacity(1024);
    let mut first = true;
    loop {
        let limits = app.shared.limits();
        // The first head's whole deadline runs from the accept; later ones may wait the
        // keep-alive time for their first byte, then have the head deadline from it.
        let (first_byte_by, head_by) = if first {
            let by = accepted_at + limits.header_read_timeout;
            (by, Some(by))
        } else {
            (Instant::now() + limits.keepalive_timeout, None)
        };
        let max = limits
            .max_header_bytes
            .saturating_mul(2)
            .max(MIN_HEAD_LIMIT);
        let head = read_head(
            &mut stream,
            &mut buf,
            first_byte_by,
            head_by,
            limits.header_read_timeout,
            max,
        )
        .await;
        match head {
            Head::Ready => {}
            Head::Gone => return,
            Head::TooSlow => {
                app.guard.head_timed_out();
                let message = format!(
                    "the request head did not arrive within {:?} (gateway.limits.header_read_timeout)",
                    limits.header_read_timeout
                );
                refuse(&mut stream, 408, "Request Timeout", &message).await;
                return;
            }
            Head::Oversized => {
                refuse(
                    &mut stream,
                    431,
                    "Request Header Fields Too Large",
                    "the request head is too large",
                )
                .await;
                return;
            }
        }
        stream.rewind(&buf);
        buf.clear();
        let session = ServerSession::new_http1(stream);
        let exchange_by = Instant::now() + limits.body_read_timeout + limits.send_timeout;
        let reused = match timeout_at(exchange_by, app.process_new_http(session, &never)).await {
            Ok(Some(reused)) => reused,
            Ok(None) => return,
            Err(_) => {
                app.guard.exchange_timed_out();
                return;
            }
        };
        let (reused, _settings) = reused.consume();
        // The connection comes back as the stream it was handed over as; anything else
        // cannot be read under the deadlines again, so it is closed.
        let Ok(l4) = reused.into_any().downcast::<L4Stream>() else {
            return;
        };
        stream = l4;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::has_head_end;

    #[test]
    fn a_head_ends_at_an_empty_line() {
        assert!(has_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(has_head_end(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(!has_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!has_head_end(b"GET / HTTP/1.1\r\nHo"));
    }
}
