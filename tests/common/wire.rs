//! HTTP/1.1 on the wire, by hand, so that tests send and see exact bytes: the raw client
//! ([`raw_request`], [`get_raw`], [`RawResponse`]) and the message reader ([`Wire`]) that
//! the in-process origin uses for requests too.

use std::borrow::BorrowMut;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response as the client received it.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
    /// A string field of the origin's echo body ([`crate::common::Handler::echo`]), if any.
    fn echo_field(&self, pointer: &str) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .pointer(pointer)?
            .as_str()
            .map(String::from)
    }
    /// Name of the origin that served the request (from the echo body), if any.
    pub fn origin(&self) -> Option<String> {
        self.echo_field("/origin")
    }
    /// Path the origin received (from the echo body), if any.
    pub fn origin_path(&self) -> Option<String> {
        self.echo_field("/path")
    }
    /// A header the origin received (from the echo body).
    pub fn origin_header(&self, name: &str) -> Option<String> {
        self.echo_field(&format!("/headers/{}", name.to_ascii_lowercase()))
    }
}

/// The first header `name` (any case) in a header list.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every header `name` (any case) in a header list, in order.
pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Send `bytes` to `addr` and parse one HTTP/1.1 response (10 s timeout). Panics on I/O errors.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    try_raw_request(addr, bytes, Duration::from_secs(10)).unwrap_or_else(|e| {
        panic!(
            "raw request to {addr} failed: {e}\nrequest: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}

/// Send `bytes` and parse one response. Write errors are ignored (the server may answer and
/// close before reading everything, e.g. 413/431).
pub fn try_raw_request(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<RawResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.write_all(bytes);
    read_response(&mut stream, deadline)
}

/// Parse one HTTP/1.1 response from an already-connected stream (1xx other than 101 are
/// skipped).
pub fn read_response(stream: &mut TcpStream, deadline: Instant) -> io::Result<RawResponse> {
    let mut wire = Wire::new(stream).with_deadline(deadline);
    loop {
        let head = wire.read_head()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before response head",
            )
        })?;
        let status: u16 = head
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {:?}", head.first)))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = if status == 101 || status == 204 || status == 304 {
            Vec::new()
        } else {
            wire.read_body(&head.headers, true)?
        };
        return Ok(RawResponse {
            status,
            headers: head.headers,
            body,
        });
    }
}

/// `GET path` with the given Host header and extra headers; `Connection: close`.
pub fn get_raw(addr: SocketAddr, path: &str, host: &str, headers: &[(&str, &str)]) -> RawResponse {
    request_raw(addr, "GET", path, host, headers)
}

/// `METHOD path` with the given Host header and extra headers, no body; `Connection: close`.
pub fn request_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_request(addr, req.as_bytes())
}

/// reqwest client that ignores proxy environment variables.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Everything a peer sends until it closes the connection or goes quiet for the stream's
/// read timeout (set one before calling).
pub fn read_until_close(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A message head: the request or status line, and the header fields as received.
pub struct Head {
    pub first: String,
    pub headers: Vec<(String, String)>,
}

/// Heads larger than this are refused by the reader (a test sends at most a few MiB).
const MAX_HEAD: usize = 4 * 1024 * 1024;

/// Reads HTTP/1.1 messages from a stream, keeping what it read past one message for the
/// next (pipelining). With a deadline, every read is bounded by it.
pub struct Wire<S: BorrowMut<TcpStream>> {
    pub stream: S,
    buf: Vec<u8>,
    eof: bool,
    deadline: Option<Instant>,
}

impl<S: BorrowMut<TcpStream>> Wire<S> {
    pub fn new(stream: S) -> Wire<S> {
        Wire {
            stream,
            buf: Vec::new(),
            eof: false,
            deadline: None,
        }
    }

    pub fn with_deadline(mut self, deadline: Instant) -> Wire<S> {
        self.deadline = Some(deadline);
        self
    }

    fn fill(&mut self) -> io::Result<usize> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "read timed out");
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            self.stream.borrow_mut().set_read_timeout(Some(left))?;
        }
        let mut tmp = [0u8; 16384];
        let n = match self.stream.borrow_mut().read(&mut tmp) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// The next head, or `None` if the peer closed the connection before sending one.
    pub fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return parse_head(&raw)
                    .map(Some)
                    .ok_or_else(|| io::Error::other("unparseable head"));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::other("head too large"));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed inside a head (got {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    pub fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = String::from_utf8_lossy(&self.read_line()?).to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_n(size)?);
            self.read_n(2)?;
        }
    }

    /// The body framed by `headers`: chunked, `Content-Length`, or else empty (a request)
    /// or everything until the peer closes (`until_close`, a response).
    pub fn read_body(
        &mut self,
        headers: &[(String, String)],
        until_close: bool,
    ) -> io::Result<Vec<u8>> {
        let chunked = header(headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked();
        }
        if let Some(cl) = header(headers, "content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::other(format!("bad content-length {cl:?}")))?;
            return self.read_n(n);
        }
        if !until_close {
            return Ok(Vec::new());
        }
        while !self.eof {
            self.fill()?;
        }
        Ok(std::mem::take(&mut self.buf))
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next()?.to_string();
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Some(Head { first, headers })
}

/// Raw request bytes sent from the local address `from` (any of 127.0.0.0/8 reaches the
/// loopback interface, so a test can be several clients) to `to`; the response.
pub fn send_from(from: IpAddr, to: SocketAddr, request: &[u8]) -> RawResponse {
    let domain = match from {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(request).unwrap();
    read_response(&mut stream, Instant::now() + Duration::from_secs(10)).unwrap()
}
