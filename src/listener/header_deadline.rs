//! A deadline on reading request heads, for every client connection.
//!
//! Pingora bounds each socket read (60 s) but not the whole request head, so a client that
//! trickles one header byte at a time can hold a connection open forever (slowloris). This
//! app sits between the listener and the proxy: for every request on an HTTP/1 connection
//! it reads until the end of the head within `header_read_timeout`, then gives the bytes
//! back (pingora's rewind buffer on plain TCP, a [`Replay`] wrapper on TLS) and lets the
//! proxy parse the request as usual. A client that is too slow gets `408` with a JSON body
//! and is closed; heads over the size limits get `431`/`414` the same way.
//!
//! HTTP/2 connections (ALPN `h2`, or the h2c preface on a listener with `h2c`) must send
//! their connection preface within `header_read_timeout`; after that pingora's HTTP/2
//! server runs them (behind an [`H2Guard`], which cuts control-frame floods), closing a
//! connection that has had no stream open for `keepalive_timeout`. On an `h2c` listener,
//! connections that do not start with the preface are HTTP/1 and get everything above.
//! On a TLS listener the TLS handshake comes first, under its own deadline
//! ([`TlsListeners`]). Before anything, a connection over its client address's
//! `max_connections_per_client` is closed ([`client_conns`]).
//!
//! This file holds the layer itself: the per-connection loop, the kinds of connection and
//! how one is handed to pingora and taken back, and the answers it writes. Reading a head
//! and judging its bytes is `head.rs`'s.

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::client_conns::{self, Counted, Refused};
use super::flush_before_read::FlushBeforeRead;
use super::h2_guard::H2Guard;
use super::head::{client_request_id, head_violation, read_head, read_opening, Head, Opening};
use super::hold_next::HoldNext;
use super::replay::Replay;
use super::request_end::{request_len, to_proxy_now};
use super::tls_handshake::TlsListeners;
use crate::ids;
use crate::proxy::error::GatewayError;
use crate::proxy::respond::{gateway_head, Reply};
use crate::runtime::Shared;

/// Wraps the proxy app with the header deadline.
pub struct HeaderDeadline<A> {
    pub inner: Arc<A>,
    pub shared: Arc<Shared>,
    /// The service's TLS listeners, whose handshakes this layer does.
    pub tls: TlsListeners,
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

impl<A> HeaderDeadline<A> {
    /// The new connection's place in its client address's count of open connections
    /// (`None`: not counted, no cap or a trusted proxy); `Err` when the address has its
    /// `max_connections_per_client` open already, or opens connections faster than
    /// `new_connections_per_client_per_second`, and this one must be closed.
    fn count_connection(&self, stream: &Stream) -> Result<Option<Counted>, Refused> {
        let rt = self.shared.runtime();
        let gateway = &rt.config.gateway;
        let cap = gateway.limits.max_connections_per_client;
        let rate = gateway.limits.new_connections_per_client_per_second;
        if cap == 0 && rate == 0 {
            return Ok(None);
        }
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned());
        let Some(PingoraAddr::Inet(peer)) = peer else {
            return Ok(None);
        };
        // An IPv4 client of a dual-stack listener is its IPv4 address, as everywhere else.
        let ip = peer.ip().to_canonical();
        if crate::proxy::headers::is_trusted(&gateway.trusted_proxies, Some(ip)) {
            return Ok(None);
        }
        let table = client_conns::global();
        table.admit_rate(ip, rate)?;
        table.admit(ip, cap)
    }
}

/// Only reachable if `Any::is` and `downcast` disagree, which they cannot.
fn unreachable_stream() -> Stream {
    unreachable!("downcast after a successful type check")
}

/// A downstream HTTP/1 connection between requests.
enum Conn {
    /// Plain TCP: pingora's own stream, which can take bytes back.
    Plain(Box<L4Stream>),
    /// Anything else that speaks HTTP/1 (TLS): bytes go back through a [`Replay`].
    Other(Stream),
}

impl Conn {
    /// What kind of connection a new stream is.
    fn classify(stream: Stream) -> Accepted {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return Accepted::H2(stream);
        }
        match as_l4(stream) {
            Ok(l4) => Accepted::Http(Conn::Plain(l4)),
            Err(s) if s.get_ssl_digest().is_some() => Accepted::Http(Conn::Other(s)),
            Err(s) => Accepted::Unknown(s),
        }
    }

    /// The connection as pingora gets it for one request, starting with `head`.
    fn hand_over(self, head: &[u8]) -> Stream {
        match self {
            Conn::Plain(mut l4) => {
                l4.rewind(head);
                l4
            }
            Conn::Other(s) => Box::new(Replay::new(head, s)),
        }
    }

    /// The connection back from pingora after a request, with the bytes read after the
    /// request appended to `buf`; `None` if it still holds bytes pingora did not read (it
    /// then cannot be reused safely).
    fn take_back(stream: Stream, buf: &mut BytesMut) -> Option<Conn> {
        let stream = if stream.as_any().is::<FlushBeforeRead>() {
            let flushing = stream.into_any().downcast::<FlushBeforeRead>().ok()?;
            let (stream, held) = flushing.into_inner().into_parts();
            // After any pipelined rest already in `buf`: it was read earlier.
            buf.extend_from_slice(&held);
            stream
        } else {
            stream
        };
        let stream = match as_l4(stream) {
            Ok(l4) => return Some(Conn::Plain(l4)),
            Err(s) => s,
        };
        if stream.as_any().is::<Replay>() {
            let replay = stream.into_any().downcast::<Replay>().ok()?;
            return replay.unwrap_drained().ok().map(Conn::Other);
        }
        Some(Conn::Other(stream))
    }

    /// The connection's byte stream, for reading heads and writing refusals.
    fn io(&mut self) -> &mut dyn HeadIo {
        match self {
            Conn::Plain(l4) => &mut **l4,
            Conn::Other(s) => s,
        }
    }
}

/// A new client connection, by what it speaks.
enum Accepted {
    /// HTTP/1, or on an `h2c` listener still to be told apart from h2c by its first bytes.
    Http(Conn),
    /// TLS with ALPN `h2`.
    H2(Stream),
    /// A transport this layer does not know; pingora gets it unchanged.
    Unknown(Stream),
}

/// What the head layer needs from a connection.
trait HeadIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> HeadIo for T {}

/// Answers a request the proxy never sees (slow or oversized head) and closes.
async fn answer_and_close<W: AsyncWrite + Unpin + ?Sized>(
    stream: &mut W,
    head: &[u8],
    err: GatewayError,
    shared: &Shared,
) {
    let id = client_request_id(head).unwrap_or_else(ids::new_request_id);
    // The same reply and head every gateway-made answer starts from (respond.rs); no route
    // is known yet, so only the request id is added.
    let reply = Reply::error(err, &id, None);
    let status = err.status();
    let Some(resp) = gateway_head(reply.status, &reply.headers, reply.body.len()) else {
        return;
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\n",
        reply.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in resp.headers.iter() {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().unwrap_or(""));
        head.push_str("\r\n");
    }
    head.push_str("x-request-id: ");
    head.push_str(&id);
    head.push_str("\r\nconnection: close\r\n\r\n");
    let body = reply.body;
    // Counted before the answer goes out: a client that reads it and then scrapes
    // `/metrics` must find it there.
    shared.metrics.unrouted.record(status, Duration::ZERO);
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.flush().await;
    tracing::info!(request_id = %id, status, "request head rejected: {}", err.message());
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
        // Closed at once (before TLS, before reading) when over its address's cap; counted
        // until this function ends, however the connection ends.
        let _counted = self.count_connection(&stream).ok()?;
        // The limits, refreshed only when a reload applied a new snapshot.
        let mut generation = self.shared.generation();
        let mut limits = self.shared.limits();
        // A drain waits for this connection until its first request is done (HTTP/1) or
        // its protocol is known (HTTP/2 streams count as requests in flight themselves).
        let mut opening = Some(self.shared.begin_opening());
        let stream = self
            .tls
            .handshake(stream, limits.tls_handshake_timeout)
            .await?;
        // One read buffer and one timer per connection, reused for every request head.
        let mut buf = BytesMut::with_capacity(4096);
        let mut timer = Box::pin(tokio::time::sleep(limits.header_read_timeout));
        let mut conn = match Conn::classify(stream) {
            Accepted::Http(c) => c,
            Accepted::H2(mut s) => {
                // ALPN promised HTTP/2: the preface must come in time, or the connection
                // goes (pingora's handshake would otherwise wait for it without a limit).
                return match read_opening(&mut s, &mut buf, timer.as_mut()).await {
                    Opening::H2 => {
                        drop(opening);
                        let replay: Stream = Box::new(Replay::new(&buf, s));
                        self.inner
                            .process_new(Box::new(H2Guard::new(replay)), shutdown)
                            .await
                    }
                    Opening::Http1 | Opening::Gone => None,
                };
            }
            Accepted::Unknown(s) => {
                drop(opening);
                return self.inner.process_new(s, shutdown).await;
            }
        };
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if h2c && matches!(conn, Conn::Plain(_)) {
            match read_opening(conn.io(), &mut buf, timer.as_mut()).await {
                // pingora reads the preface again (from the rewind buffer) and speaks h2.
                Opening::H2 => {
                    drop(opening);
                    let stream = Box::new(H2Guard::new(conn.hand_over(&buf)));
                    return self.inner.process_new(stream, shutdown).await;
                }
                // The bytes read so far stay in `buf` as the start of the first request.
                Opening::Http1 => {}
                Opening::Gone => return None,
            }
        }
        let mut persistent = None;
        // Our own copy of the shutdown signal, to stop waiting on an idle connection.
        let mut watch = shutdown.clone();
        let mut first = true;
        loop {
            let current = self.shared.generation();
            if current != generation {
                generation = current;
                limits = self.shared.limits();
            }
            let idle = if first {
                limits.header_read_timeout
            } else {
                limits.keepalive_timeout
            };
            // A head without its end this far in is refused with 431 (or 414) right here,
            // long before pingora's own 1 MiB limit.
            let max = limits.max_header_bytes.saturating_mul(2).max(64 * 1024);
            // While shutting down, an idle keep-alive connection is closed instead of
            // waiting for another request (see `read_idle`); a request already read, and
            // the first request of a connection accepted just before the listener closed
            // (its client is sending it: a TLS client only after the handshake), are
            // served, with `Connection: close`.
            let head = read_head(
                conn.io(),
                &mut buf,
                timer.as_mut(),
                idle,
                limits.header_read_timeout,
                max,
                (!first).then_some(&mut watch),
            )
            .await;
            if let Some(err) =
                head_violation(&buf, &head, limits.max_headers, limits.max_uri_bytes, max)
            {
                answer_and_close(conn.io(), &buf, err, &self.shared).await;
                return None;
            }
            let stream = match head {
                Head::Ready(end) => {
                    let n = to_proxy_now(&buf, end);
                    // pingora reads this request and no further (see `HoldNext`).
                    let len = request_len(&buf[..end]);
                    let stream = HoldNext::new(conn.hand_over(&buf[..n]), len);
                    if n == buf.len() {
                        buf.clear();
                    } else {
                        // Keep the pipelined rest for the next round.
                        let _ = buf.split_to(n);
                    }
                    stream
                }
                // An oversized head was answered (431/414) just above.
                Head::Oversized | Head::Gone => return None,
                Head::TooSlow => {
                    answer_and_close(conn.io(), &buf, GatewayError::SlowClient, &self.shared).await;
                    return None;
                }
            };
            // pingora leaves a response with a known length in the write buffer until its
            // end; the wrapper sends it whenever the proxy waits (see its module).
            let mut session = ServerSession::new_http1(Box::new(FlushBeforeRead::new(stream)));
            match persistent.take() {
                Some(p) => {
                    pingora_core::apps::HttpPersistentSettings::apply_to_session(p, &mut session)
                }
                None => session.set_keepalive(Some(limits.keepalive_timeout.as_secs().max(1))),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused = self.inner.process_new_http(session, shutdown).await;
            drop(opening.take());
            let reused = reused?;
            let (stream, settings) = reused.consume();
            persistent = settings;
            first = false;
            conn = Conn::take_back(stream, &mut buf)?;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
