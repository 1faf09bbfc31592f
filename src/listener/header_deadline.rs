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
//! ([`TlsListeners`]).

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::flush_before_read::FlushBeforeRead;
use super::h2_guard::H2Guard;
use super::hold_next::HoldNext;
use super::replay::Replay;
use super::request_end::{head_fields, request_len, to_proxy_now};
use super::tls_handshake::TlsListeners;
use crate::ids;
use crate::proxy::error::GatewayError;
use crate::proxy::respond::{gateway_head, Reply};
use crate::runtime::Shared;

/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// What every HTTP/2 connection sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Wraps the proxy app with the header deadline.
pub struct HeaderDeadline<A> {
    pub inner: Arc<A>,
    pub shared: Arc<Shared>,
    /// The service's TLS listeners, whose handshakes this layer does.
    pub tls: TlsListeners,
}

pub(crate) enum Head {
    /// A complete request head (and maybe more) was read; it ends at this offset.
    Ready(usize),
    /// Too large to be a valid head: no end of head within the limit.
    Oversized,
    /// The peer closed, or stayed idle past the keep-alive time without sending anything.
    Gone,
    /// Part of a head arrived, but not all of it in time.
    TooSlow,
}

/// Where the request head ends (just past `\r\n\r\n` or `\n\n`), if it is complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    // Only line ends matter: jump between them with a vectorized search.
    for i in memchr::memchr_iter(b'\n', buf) {
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// Drops empty lines before a request line: RFC 9112 §2.2 asks servers to ignore at
/// least one, and a client may send a stray CRLF after a body.
pub(crate) fn skip_empty_lines(buf: &mut BytesMut) {
    let n = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if n > 0 {
        let _ = buf.split_to(n);
    }
}

/// Room for a request line's method, spaces and version around its target.
const REQUEST_LINE_EXTRA: usize = 64;

/// What to answer before the proxy sees the request, when the head breaks a limit the
/// proxy's parser would only report as a generic 400: a request line too long for
/// `max_uri_bytes` (414), more header lines than allowed, or no end of head within the
/// size limit (431). Decided from the bytes alone, so the answer to the same bytes does
/// not depend on how they were split into packets.
pub(crate) fn head_violation(
    buf: &[u8],
    head: &Head,
    max_headers: usize,
    max_uri: usize,
) -> Option<GatewayError> {
    let within = match *head {
        Head::Ready(end) => &buf[..end],
        Head::Oversized => buf,
        _ => return None,
    };
    let line = memchr::memchr(b'\n', within).unwrap_or(within.len());
    if line > max_uri.saturating_add(REQUEST_LINE_EXTRA) {
        return Some(GatewayError::UriTooLong);
    }
    match *head {
        // Each header line is at least 4 bytes (`a:\r\n`), so short heads cannot have
        // too many: the common case costs no count.
        Head::Ready(end) if end > max_headers.saturating_mul(4) => {
            let lines = memchr::memchr_iter(b'\n', &buf[..end]).count();
            // The request line and the empty line that ends the head are not headers.
            (lines.saturating_sub(2) > max_headers).then_some(GatewayError::HeadersTooLarge)
        }
        Head::Oversized => Some(GatewayError::HeadersTooLarge),
        _ => None,
    }
}

/// One read, or `None` when the connection's timer fires first.
async fn read_or_timeout<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    timer: Pin<&mut Sleep>,
) -> Option<std::io::Result<usize>> {
    tokio::select! {
        biased;
        r = stream.read_buf(buf) => Some(r),
        _ = timer => None,
    }
}

/// Waits for the first byte of a request: `None` when the idle time runs out, or when the
/// gateway is shutting down and nothing has arrived (an idle connection is closed then;
/// no request is lost, none was sent). Bytes that are already there are read first, so a
/// request that arrived before the shutdown is still served (with `Connection: close`).
async fn read_idle<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    timer: Pin<&mut Sleep>,
    shutdown: &mut ShutdownWatch,
) -> Option<std::io::Result<usize>> {
    let shutting_down = async {
        // A dropped sender is no shutdown: wait on the other branches only.
        if shutdown.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        r = stream.read_buf(buf) => Some(r),
        _ = timer => None,
        _ = shutting_down => None,
    }
}

/// Reads one request head. The connection's single timer is moved forward for each wait
/// instead of arming a new timer per request: pushing a tokio timer's deadline later is
/// one atomic update, and the timer wheel only sees it again when the old deadline comes.
async fn read_head<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    mut timer: Pin<&mut Sleep>,
    idle: Duration,
    deadline: Duration,
    max: usize,
    shutdown: &mut ShutdownWatch,
) -> Head {
    // `buf` may already hold the start of a pipelined request (see `split_pipelined`).
    if buf.is_empty() {
        // Waiting for the first byte is keep-alive idleness, not slowness.
        timer.as_mut().reset(Instant::now() + idle);
        match read_idle(stream, buf, timer.as_mut(), shutdown).await {
            Some(Ok(0)) | Some(Err(_)) | None => return Head::Gone,
            Some(Ok(_)) => {}
        }
    }
    skip_empty_lines(buf);
    // A TLS handshake record (a TLS client on a plain listener) can never become a request
    // head: close at once rather than after the head deadline.
    if buf.first() == Some(&TLS_HANDSHAKE) {
        return Head::Gone;
    }
    // The common case: the whole head arrived in the first read.
    if let Some(end) = head_end(buf) {
        return Head::Ready(end);
    }
    timer.as_mut().reset(Instant::now() + deadline);
    loop {
        if let Some(end) = head_end(buf) {
            return Head::Ready(end);
        }
        if buf.len() > max {
            return Head::Oversized;
        }
        match read_or_timeout(stream, buf, timer.as_mut()).await {
            Some(Ok(0)) | Some(Err(_)) => return Head::Gone,
            Some(Ok(_)) => skip_empty_lines(buf),
            None => return Head::TooSlow,
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

/// How the first bytes of a connection on an `h2c` listener turned out.
#[derive(Debug, PartialEq)]
enum Opening {
    /// The HTTP/2 preface, complete.
    H2,
    /// Anything else: HTTP/1 (the bytes stay in the buffer as the start of the request).
    Http1,
    /// Closed, silent or stalled before the kind was known.
    Gone,
}

/// Reads until the buffer either holds the whole HTTP/2 preface or cannot be its start.
/// `timer` must already be armed with the deadline.
async fn read_opening<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    mut timer: Pin<&mut Sleep>,
) -> Opening {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Opening::Http1;
        }
        if n == H2_PREFACE.len() {
            return Opening::H2;
        }
        match read_or_timeout(stream, buf, timer.as_mut()).await {
            Some(Ok(0)) | Some(Err(_)) | None => return Opening::Gone,
            Some(Ok(_)) => {}
        }
    }
}

/// What the head layer needs from a connection.
trait HeadIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> HeadIo for T {}

/// The client's own `X-Request-Id` in the (maybe partial) head read so far, if it is one
/// the gateway would accept; only looked for when the gateway answers the head itself.
pub(crate) fn client_request_id(head: &[u8]) -> Option<String> {
    head_fields(head).find_map(|(name, value)| {
        (name.eq_ignore_ascii_case(b"x-request-id") && ids::is_acceptable_request_id(value))
            .then(|| String::from_utf8_lossy(value).into_owned())
    })
}

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
        // The limits, refreshed only when a reload applied a new snapshot.
        let mut generation = self.shared.generation();
        let mut limits = self.shared.limits();
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
                        let replay: Stream = Box::new(Replay::new(&buf, s));
                        self.inner
                            .process_new(Box::new(H2Guard::new(replay)), shutdown)
                            .await
                    }
                    Opening::Http1 | Opening::Gone => None,
                };
            }
            Accepted::Unknown(s) => return self.inner.process_new(s, shutdown).await,
        };
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if h2c && matches!(conn, Conn::Plain(_)) {
            match read_opening(conn.io(), &mut buf, timer.as_mut()).await {
                // pingora reads the preface again (from the rewind buffer) and speaks h2.
                Opening::H2 => {
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
            // waiting for another request (see `read_idle`); a request already read is
            // served, with `Connection: close`.
            let head = read_head(
                conn.io(),
                &mut buf,
                timer.as_mut(),
                idle,
                limits.header_read_timeout,
                max,
                &mut watch,
            )
            .await;
            if let Some(err) = head_violation(&buf, &head, limits.max_headers, limits.max_uri_bytes)
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
            let reused = self.inner.process_new_http(session, shutdown).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_request_id_is_kept_when_the_head_is_refused() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-REQUEST-ID:  abc-1 \r\nx-h: v";
        assert_eq!(client_request_id(head).as_deref(), Some("abc-1"));
        assert_eq!(
            client_request_id(b"GET / HTTP/1.1\r\nx-request-id: a\"b\r\n"),
            None
        );
        assert_eq!(client_request_id(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn empty_lines_before_a_request_line_are_skipped() {
        let mut buf = BytesMut::from(&b"\r\n\r\n\nGET / HTTP/1.1\r\n\r\n"[..]);
        skip_empty_lines(&mut buf);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n\r\n");
        let mut buf = BytesMut::from(&b"GET"[..]);
        skip_empty_lines(&mut buf);
        assert_eq!(&buf[..], b"GET");
    }

    /// The vectorized search agrees with a plain byte-by-byte scan on random inputs made
    /// of the bytes that matter.
    #[test]
    fn head_end_matches_a_plain_scan() {
        fn plain(buf: &[u8]) -> Option<usize> {
            (0..buf.len()).find_map(|i| match (buf[i], buf.get(i + 1), buf.get(i + 2)) {
                (b'\n', Some(b'\n'), _) => Some(i + 2),
                (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
                _ => None,
            })
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| [b'\r', b'\n', b'a', b':'][((x >> (i % 60)) & 3) as usize])
                .collect();
            assert_eq!(head_end(&buf), plain(&buf), "{buf:?}");
        }
    }

    #[test]
    fn head_end_finds_crlf_and_bare_lf_heads() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn too_many_header_lines_are_431_and_a_huge_request_line_is_414() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..300 {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let end = head_end(&head).unwrap();
        assert_eq!(
            head_violation(&head, &Head::Ready(end), 100, 8192),
            Some(GatewayError::HeadersTooLarge)
        );
        assert_eq!(head_violation(&head, &Head::Ready(end), 300, 8192), None);
        let short = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            head_violation(short, &Head::Ready(short.len()), 1, 8192),
            None
        );
        assert_eq!(
            head_violation(&[b'a'; 100], &Head::Oversized, 100, 8),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(b"GET / HTTP/1.1\r\nx: aaaa", &Head::Oversized, 100, 8192),
            Some(GatewayError::HeadersTooLarge)
        );
        // A request line over the URI limit is 414 whether or not its end arrived with it.
        let long = format!("GET /x?q={} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let b = long.as_bytes();
        assert_eq!(
            head_violation(b, &Head::Ready(b.len()), 100, 8192),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(b, &Head::Oversized, 100, 8192),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(&b[..5000], &Head::Oversized, 100, 8192),
            Some(GatewayError::HeadersTooLarge),
            "a line that may still fit is not judged on its start"
        );
    }
}
