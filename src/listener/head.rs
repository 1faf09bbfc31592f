//! Reading a request head off a client connection, and judging it from its bytes alone:
//! where the head ends, the empty lines before it, the limits it breaks (414, 431), the
//! client's own request id, and whether an `h2c` listener's connection opens with the
//! HTTP/2 preface. Every wait is on the connection's single timer. What to do with a head
//! (hand it to pingora, answer it) is `header_deadline.rs`'s.

use bytes::BytesMut;
use pingora_core::server::ShutdownWatch;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, Sleep};

use super::request_end::head_fields;
use crate::ids;
use crate::proxy::error::GatewayError;

/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// What every HTTP/2 connection sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

/// The target of a complete request line (`GET /x HTTP/1.1`, with or without its `\r`):
/// what lies between the first and the last space; the whole line when there are not two.
fn request_target(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match (memchr::memchr(b' ', line), memchr::memrchr(b' ', line)) {
        (Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => line,
    }
}

/// What to answer before the proxy sees the request, when the head breaks a limit the
/// proxy's parser would only report as a generic 400: a request line too long for
/// `max_uri_bytes` (414), more header lines than allowed, or no end of head within the
/// size limit (431). Decided from the bytes alone, so the answer to the same bytes does
/// not depend on how they were split into packets.
///
/// A complete request line whose target is over `max_uri` is 414 whatever follows it (the
/// rule the proxy applies to a head it reads); a head over `max_head` bytes is 431 whether
/// its end came with it (`Ready`) or not (`Oversized`).
pub(crate) fn head_violation(
    buf: &[u8],
    head: &Head,
    max_headers: usize,
    max_uri: usize,
    max_head: usize,
) -> Option<GatewayError> {
    // A head over the size limit is judged on its first `max_head + 1` bytes only, whether
    // its end came with them or later: the answer must not depend on where the packets
    // were cut.
    let within = match *head {
        Head::Ready(end) if end <= max_head => &buf[..end],
        Head::Ready(end) => &buf[..end.min(max_head.saturating_add(1))],
        Head::Oversized => &buf[..buf.len().min(max_head.saturating_add(1))],
        _ => return None,
    };
    let line_end = memchr::memchr(b'\n', within);
    let line = &within[..line_end.unwrap_or(within.len())];
    if line.len() > max_uri.saturating_add(REQUEST_LINE_EXTRA)
        || (line_end.is_some() && request_target(line).len() > max_uri)
    {
        return Some(GatewayError::UriTooLong);
    }
    match *head {
        Head::Ready(end) if end > max_head => Some(GatewayError::HeadersTooLarge),
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

/// Waits for the first byte of a request: `None` when the idle time runs out, or, with a
/// `shutdown` watch, when the gateway is shutting down and nothing has arrived (an idle
/// keep-alive connection is closed then; no request is lost, none was sent, and a client
/// may send it again on a new connection). Bytes that are already there are read first, so
/// a request that arrived before the shutdown is still served (with `Connection: close`).
/// Without a watch (a new connection's first request: its client connected to send one,
/// and closing now would fail it) the wait is bounded by the timer alone.
async fn read_idle<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    timer: Pin<&mut Sleep>,
    shutdown: Option<&mut ShutdownWatch>,
) -> Option<std::io::Result<usize>> {
    let shutting_down = async {
        // A dropped sender is no shutdown: wait on the other branches only.
        let signalled = match shutdown {
            Some(w) => w.wait_for(|s| *s).await.is_ok(),
            None => false,
        };
        if !signalled {
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
/// `shutdown`: see [`read_idle`] (`None` for a new connection's first request).
pub(super) async fn read_head<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut BytesMut,
    mut timer: Pin<&mut Sleep>,
    idle: Duration,
    deadline: Duration,
    max: usize,
    shutdown: Option<&mut ShutdownWatch>,
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

/// How the first bytes of a connection on an `h2c` listener turned out.
#[derive(Debug, PartialEq)]
pub(super) enum Opening {
    /// The HTTP/2 preface, complete.
    H2,
    /// Anything else: HTTP/1 (the bytes stay in the buffer as the start of the request).
    Http1,
    /// Closed, silent or stalled before the kind was known.
    Gone,
}

/// Reads until the buffer either holds the whole HTTP/2 preface or cannot be its start.
/// `timer` must already be armed with the deadline.
pub(super) async fn read_opening<R: AsyncRead + Unpin + ?Sized>(
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
/// The client's own `X-Request-Id` in the (maybe partial) head read so far, if it is one
/// the gateway would accept; only looked for when the gateway answers the head itself.
pub(crate) fn client_request_id(head: &[u8]) -> Option<String> {
    head_fields(head).find_map(|(name, value)| {
        (name.eq_ignore_ascii_case(b"x-request-id") && ids::is_acceptable_request_id(value))
            .then(|| String::from_utf8_lossy(value).into_owned())
    })
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
            head_violation(&head, &Head::Ready(end), 100, 8192, 65536),
            Some(GatewayError::HeadersTooLarge)
        );
        assert_eq!(
            head_violation(&head, &Head::Ready(end), 300, 8192, 65536),
            None
        );
        let short = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            head_violation(short, &Head::Ready(short.len()), 1, 8192, 65536),
            None
        );
        assert_eq!(
            head_violation(&[b'a'; 100], &Head::Oversized, 100, 8, 65536),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(
                b"GET / HTTP/1.1\r\nx: aaaa",
                &Head::Oversized,
                100,
                8192,
                65536
            ),
            Some(GatewayError::HeadersTooLarge)
        );
        // A request line over the URI limit is 414 whether or not its end arrived with it.
        let long = format!("GET /x?q={} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let b = long.as_bytes();
        assert_eq!(
            head_violation(b, &Head::Ready(b.len()), 100, 8192, 65536),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(b, &Head::Oversized, 100, 8192, 65536),
            Some(GatewayError::UriTooLong)
        );
        assert_eq!(
            head_violation(&b[..5000], &Head::Oversized, 100, 8192, 65536),
            Some(GatewayError::HeadersTooLarge),
            "a line that may still fit is not judged on its start"
        );
        // A target just over the limit with a big header after it: 414 whether the whole
        // head arrived at once or the size limit was reached first (QA F1).
        let both = format!(
            "GET /x?q={} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(8193),
            "b".repeat(60_000)
        );
        let b = both.as_bytes();
        for (bytes, head) in [(b, Head::Ready(b.len())), (&b[..65_537], Head::Oversized)] {
            assert_eq!(
                head_violation(bytes, &head, 100, 8192, 65_536),
                Some(GatewayError::UriTooLong)
            );
        }
        // A request line longer than the size limit: judged on the same first bytes whether
        // the end came with them or not (found by the request_head fuzz target).
        let line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(300));
        let b = line.as_bytes();
        assert_eq!(
            head_violation(b, &Head::Ready(b.len()), 100, 250, 256),
            head_violation(&b[..257], &Head::Oversized, 100, 250, 256)
        );
        // A head over the size limit is 431 also when its end arrived with it.
        let name = format!(
            "GET /a HTTP/1.1\r\nHost: x\r\n{}: v\r\n\r\n",
            "n".repeat(71_680)
        );
        let b = name.as_bytes();
        assert_eq!(
            head_violation(b, &Head::Ready(b.len()), 100, 8192, 65_536),
            Some(GatewayError::HeadersTooLarge)
        );
        assert_eq!(
            head_violation(&b[..65_537], &Head::Oversized, 100, 8192, 65_536),
            Some(GatewayError::HeadersTooLarge)
        );
    }
}
