//! A deadline on reading request headers, for cleartext HTTP/1 connections.
//!
//! Pingora bounds each socket read (60 s) but not the whole request head, so a client that
//! trickles one header byte at a time can hold a connection open forever (slowloris). This
//! app sits between the listener and the proxy: for every request on a cleartext HTTP/1
//! connection it reads until the end of the head within `header_read_timeout`, then puts
//! the bytes back into the stream (pingora's rewind buffer) and lets the proxy parse the
//! request as usual. A client that is too slow gets `408` with a JSON body and is closed.
//!
//! TLS, HTTP/2 and h2c connections are handed to the proxy unchanged; for them pingora's
//! per-read timeouts apply (documented in docs/configuration.md).

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::respond::{error_body, GatewayError};
use crate::ids;
use crate::runtime::Shared;

/// How long an idle keep-alive connection may wait for its next request.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// pingora's keep-alive setting for a fresh connection, in seconds.
const KEEPALIVE_SECS: u64 = 60;

/// Wraps the proxy app with the header deadline.
pub struct HeaderDeadline<A> {
    pub inner: Arc<A>,
    pub shared: Arc<Shared>,
}

enum Head {
    /// A complete request head (and maybe more) was read.
    Ready,
    /// Too large to be a valid head: let the proxy reject it with its own status.
    Oversized,
    /// The peer closed, or stayed idle past the keep-alive time without sending anything.
    Gone,
    /// Part of a head arrived, but not all of it in time.
    TooSlow,
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

async fn read_head(
    stream: &mut L4Stream,
    buf: &mut BytesMut,
    idle: Duration,
    deadline: Duration,
    max: usize,
) -> Head {
    buf.clear();
    // Waiting for the first byte is keep-alive idleness, not slowness. pingora's timer
    // wheel is much cheaper per request than tokio's timers.
    match fast_timeout(idle, stream.read_buf(buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Head::Gone,
        Ok(Ok(_)) => {}
    }
    // The common case: the whole head arrived in the first read.
    if head_complete(buf) {
        return Head::Ready;
    }
    let until = Instant::now() + deadline;
    loop {
        if head_complete(buf) {
            return Head::Ready;
        }
        if buf.len() > max {
            return Head::Oversized;
        }
        let left = until.saturating_duration_since(Instant::now());
        match fast_timeout(left, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Head::Gone,
            Ok(Ok(_)) => {}
            Err(_) => return Head::TooSlow,
        }
    }
}

fn as_l4(stream: Stream) -> Result<Box<L4Stream>, Stream> {
    if stream.as_any().is::<L4Stream>() {
        // Checked just above, so the downcast cannot fail.
        stream
            .into_any()
            .downcast::<L4Stream>()
            .map_err(|_| unreachable_stream())
    } else {
        Err(stream)
    }
}

/// Only reachable if `Any::is` and `downcast` disagree, which they cannot.
fn unreachable_stream() -> Stream {
    unreachable!("downcast after a successful type check")
}

async fn answer_408(mut stream: Box<L4Stream>) {
    let id = ids::new_request_id();
    let body = error_body(GatewayError::SlowClient, &id);
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.flush().await;
    tracing::info!(request_id = %id, "request head not received in time: answered 408");
}

#[async_trait]
impl<A> ServerApp for HeaderDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if h2c || stream.get_ssl_digest().is_some() {
            return self.inner.process_new(stream, shutdown).await;
        }
        let mut l4 = match as_l4(stream) {
            Ok(s) => s,
            Err(other) => return self.inner.process_new(other, shutdown).await,
        };
        let mut persistent = None;
        let mut first = true;
        // One read buffer per connection, reused for every request head.
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            let limits = self.shared.runtime().config.gateway.limits;
            let idle = if first {
                limits.header_read_timeout
            } else {
                KEEPALIVE_IDLE
            };
            // Pingora refuses heads over 1 MiB itself; reading a little past our own limit is
            // enough for the proxy to answer 431.
            let max = limits.max_header_bytes.saturating_mul(2).max(64 * 1024);
            // While shutting down, a keep-alive connection is closed instead of waiting for
            // (or serving) another request; clients retry on a fresh connection.
            if !first && *shutdown.borrow() {
                return None;
            }
            let head = read_head(&mut l4, &mut buf, idle, limits.header_read_timeout, max).await;
            if !first && *shutdown.borrow() {
                return None;
            }
            match head {
                Head::Ready | Head::Oversized => l4.rewind(&buf),
                Head::Gone => return None,
                Head::TooSlow => {
                    answer_408(l4).await;
                    return None;
                }
            }
            let mut session = ServerSession::new_http1(l4);
            match persistent.take() {
                Some(p) => {
                    pingora_core::apps::HttpPersistentSettings::apply_to_session(p, &mut session)
                }
                None => {
                    if *shutdown.borrow() {
                        session.set_keepalive(None);
                    } else {
                        session.set_keepalive(Some(KEEPALIVE_SECS));
                    }
                }
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (stream, settings) = reused.consume();
            persistent = settings;
            first = false;
            l4 = match as_l4(stream) {
                Ok(s) => s,
                Err(other) => return self.inner.process_new(other, shutdown).await,
            };
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
