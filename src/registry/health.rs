//! Active health probes: HTTP (method, path, status range, body substring, Host) or a plain
//! TCP connect. Run by the registry's background service, never on the request path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::clock::now_ms;
use super::spec::ProbeKind;

/// Probe responses are read up to this many bytes; enough for any health body.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// When it finished (registry clock).
    pub at_ms: u64,
}

/// Probes one instance.
pub async fn probe(addr: SocketAddr, kind: &ProbeKind, timeout: Duration) -> ProbeRecord {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, run(addr, kind)).await;
    let latency = start.elapsed();
    let (ok, status, error) = match result {
        Err(_) => (false, None, Some(format!("timed out after {timeout:?}"))),
        Ok(Err(e)) => (false, None, Some(e)),
        Ok(Ok((status, problem))) => (problem.is_none(), status, problem),
    };
    ProbeRecord {
        ok,
        status,
        latency,
        error,
        at_ms: now_ms(),
    }
}

/// Returns (status, problem): `problem` is `None` when healthy.
async fn run(addr: SocketAddr, kind: &ProbeKind) -> Result<(Option<u16>, Option<String>), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let ProbeKind::Http {
        method,
        path,
        host,
        status: (lo, hi),
        body_contains,
    } = kind
    else {
        return Ok((None, None));
    };
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ficus-health/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_PROBE_RESPONSE || response_complete(&buf) {
            break;
        }
    }
    let status = parse_status(&buf).ok_or_else(|| "not an HTTP response".to_string())?;
    if status < *lo || status > *hi {
        return Ok((
            Some(status),
            Some(format!("status {status} not in {lo}-{hi}")),
        ));
    }
    if let Some(needle) = body_contains {
        let body_start = find(&buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
        if find(&buf[body_start..], needle.as_bytes()).is_none() {
            return Ok((
                Some(status),
                Some(format!("body does not contain `{needle}`")),
            ));
        }
    }
    Ok((Some(status), None))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_status(buf: &[u8]) -> Option<u16> {
    let line_end = find(buf, b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// True once a response with a Content-Length body (or no body) is fully read.
fn response_complete(buf: &[u8]) -> bool {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(len) => buf.len() >= head_end + 4 + len,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(resp: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    fn http(body: Option<&str>) -> ProbeKind {
        ProbeKind::Http {
            method: http::Method::GET,
            path: "/health".into(),
            host: None,
            status: (200, 299),
            body_contains: body.map(String::from),
        }
    }

    #[tokio::test]
    async fn http_probe_checks_status_and_body() {
        let ok = server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let r = probe(ok, &http(Some("ok")), Duration::from_secs(1)).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.status, Some(200));
        let r = probe(ok, &http(Some("ready")), Duration::from_secs(1)).await;
        assert!(!r.ok);
        let bad = server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
        let r = probe(bad, &http(None), Duration::from_secs(1)).await;
        assert!(!r.ok);
        assert_eq!(r.status, Some(503));
    }

    #[tokio::test]
    async fn tcp_probe_and_refused() {
        let ok = server("").await;
        assert!(probe(ok, &ProbeKind::Tcp, Duration::from_secs(1)).await.ok);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let r = probe(closed, &ProbeKind::Tcp, Duration::from_secs(1)).await;
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("connect"));
    }
}
