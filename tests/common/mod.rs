//! Shared test harness for the ficus integration tests.
//!
//! * [`Origin`]  – a tiny hand-written HTTP/1.1 origin server (keep-alive, chunked bodies,
//!   delays, fixed status, "hang" mode, websocket echo), running on its own tokio runtime so
//!   that tests may freely block.
//! * [`Gateway`] – spawns the `ficus` binary with a generated `routes.toml`.
//! * [`raw_request`] – sends exact bytes over TCP and parses one HTTP/1.1 response.
//! * [`ficus`] – runs the CLI and captures exit code / stdout / stderr.
//! * [`TestCa`] – rcgen based CA issuing leaf certificates for TLS tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The binary under test: `$FICUS_BIN` if set (e.g. a release build), else cargo's build.
pub fn bin() -> String {
    std::env::var("FICUS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ficus").to_string())
}

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

fn origin_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-origin")
            .enable_all()
            .build()
            .expect("origin runtime")
    })
}

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    /// Raw request target exactly as received (path + query).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Clone, Debug)]
struct OriginConfig {
    name: String,
    delay: Duration,
    status: u16,
    hang: bool,
    websocket: bool,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct OriginState {
    requests: AtomicUsize,
    log: Mutex<Vec<ReceivedRequest>>,
}

pub struct OriginBuilder {
    cfg: OriginConfig,
}

impl OriginBuilder {
    /// Sleep this long before responding.
    pub fn delay(mut self, d: Duration) -> Self {
        self.cfg.delay = d;
        self
    }
    /// Respond with this status (body is still the JSON echo).
    pub fn status(mut self, status: u16) -> Self {
        self.cfg.status = status;
        self
    }
    /// Never respond (the connection is held open until the peer closes it).
    pub fn hang(mut self) -> Self {
        self.cfg.hang = true;
        self
    }
    /// Complete websocket handshakes and echo frames back.
    pub fn websocket(mut self) -> Self {
        self.cfg.websocket = true;
        self
    }
    /// Add an extra response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.cfg.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn start(self) -> Origin {
        let rt = origin_runtime();
        let std_listener = StdTcpListener::bind("127.0.0.1:0").expect("bind origin");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(OriginState::default());
        let cfg = Arc::new(self.cfg);
        let task = {
            let _guard = rt.enter();
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            let state = state.clone();
            let cfg = cfg.clone();
            rt.spawn(async move {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(_) => continue,
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle_origin_conn(stream, cfg.clone(), state.clone()));
                }
            })
        };
        Origin {
            name: cfg.name.clone(),
            addr,
            state,
            task: Mutex::new(Some(task)),
        }
    }
}

pub struct Origin {
    name: String,
    addr: SocketAddr,
    state: Arc<OriginState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Origin {
    pub fn builder(name: &str) -> OriginBuilder {
        OriginBuilder {
            cfg: OriginConfig {
                name: name.to_string(),
                delay: Duration::ZERO,
                status: 200,
                hang: false,
                websocket: false,
                headers: vec![("server".into(), "ficus-test-origin".into())],
            },
        }
    }
    /// Default origin: 200 + JSON echo.
    pub fn start(name: &str) -> Origin {
        Self::builder(name).start()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Number of requests (request heads) received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
    /// All fully-received requests so far.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.log.lock().unwrap().clone()
    }
    pub fn last(&self) -> Option<ReceivedRequest> {
        self.state.log.lock().unwrap().last().cloned()
    }
    /// Close the listener so that new connects are refused.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
            // wait until the listener is actually gone
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if StdTcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("origin {} listener did not close", self.name);
        }
    }
    /// Wait until at least `n` request heads have been received.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.requests() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.requests() >= n
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

/// Replace `{origin:NAME}` placeholders by the origins' addresses.
pub fn with_origins(template: &str, origins: &[&Origin]) -> String {
    let mut s = template.to_string();
    for o in origins {
        s = s.replace(&format!("{{origin:{}}}", o.name()), &o.addr().to_string());
    }
    s
}

struct AsyncConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl AsyncConn {
    async fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }
    async fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return Ok(Some(head));
            }
            if self.buf.len() > 4 * 1024 * 1024 {
                return Err(io::Error::other("head too large"));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }
    async fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }
    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let line = String::from_utf8_lossy(&line).to_string();
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    let l = self.read_line().await?;
                    if l.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            body.extend(self.read_n(size).await?);
            self.read_n(2).await?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Head {
    first: String,
    headers: Vec<(String, String)>,
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

fn hget<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        101 => "Switching Protocols",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

async fn handle_origin_conn(stream: TcpStream, cfg: Arc<OriginConfig>, state: Arc<OriginState>) {
    let mut conn = AsyncConn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let head = match conn.read_head().await {
            Ok(Some(h)) => h,
            _ => return,
        };
        let Some(head) = parse_head(&head) else {
            return;
        };
        let mut parts = head.first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        state.requests.fetch_add(1, Ordering::SeqCst);

        let is_upgrade = hget(&head.headers, "upgrade")
            .map(|u| u.eq_ignore_ascii_case("websocket"))
            .unwrap_or(false);
        if cfg.websocket && is_upgrade {
            state.log.lock().unwrap().push(ReceivedRequest {
                method,
                path: target,
                headers: head.headers.clone(),
                body: vec![],
            });
            let key = hget(&head.headers, "sec-websocket-key")
                .unwrap_or("")
                .to_string();
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nx-origin: {}\r\n\r\n",
                ws_accept(&key),
                cfg.name
            );
            if conn.stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            let _ = ws_echo(conn).await;
            return;
        }

        // body
        let te_chunked = hget(&head.headers, "transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let body = if te_chunked {
            match conn.read_chunked().await {
                Ok(b) => b,
                Err(_) => return,
            }
        } else if let Some(cl) = hget(&head.headers, "content-length") {
            let n: usize = cl.parse().unwrap_or(0);
            match conn.read_n(n).await {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            Vec::new()
        };
        let req = ReceivedRequest {
            method: method.clone(),
            path: target.clone(),
            headers: head.headers.clone(),
            body: body.clone(),
        };
        state.log.lock().unwrap().push(req);

        if cfg.hang {
            // hold the connection open until the peer goes away
            let mut tmp = [0u8; 1024];
            loop {
                match conn.stream.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        }
        if !cfg.delay.is_zero() {
            tokio::time::sleep(cfg.delay).await;
        }

        let mut hmap = serde_json::Map::new();
        for (n, v) in &head.headers {
            let k = n.to_ascii_lowercase();
            let nv = match hmap.get(&k) {
                Some(serde_json::Value::String(old)) => format!("{old}, {v}"),
                _ => v.clone(),
            };
            hmap.insert(k, serde_json::Value::String(nv));
        }
        let json = serde_json::json!({
            "origin": cfg.name,
            "method": method,
            "path": target,
            "headers": hmap,
            "body_len": body.len(),
        });
        let body = serde_json::to_vec(&json).unwrap();
        let mut resp = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-origin: {}\r\n",
            cfg.status,
            reason(cfg.status),
            body.len(),
            cfg.name
        );
        for (n, v) in &cfg.headers {
            resp.push_str(&format!("{n}: {v}\r\n"));
        }
        let close = hget(&head.headers, "connection")
            .map(|c| c.to_ascii_lowercase().contains("close"))
            .unwrap_or(false)
            || version == "HTTP/1.0";
        if close {
            resp.push_str("connection: close\r\n");
        }
        resp.push_str("\r\n");
        let mut out = resp.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if conn.stream.write_all(&out).await.is_err() {
            return;
        }
        if close {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

async fn ws_echo(mut conn: AsyncConn) -> io::Result<()> {
    loop {
        let h = conn.read_n(2).await?;
        let b0 = h[0];
        let masked = h[1] & 0x80 != 0;
        let mut len = (h[1] & 0x7f) as u64;
        if len == 126 {
            let b = conn.read_n(2).await?;
            len = u16::from_be_bytes([b[0], b[1]]) as u64;
        } else if len == 127 {
            let b = conn.read_n(8).await?;
            len = u64::from_be_bytes(b.try_into().unwrap());
        }
        let mask = if masked {
            let m = conn.read_n(4).await?;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let mut payload = conn.read_n(len as usize).await?;
        if let Some(m) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= m[i % 4];
            }
        }
        let opcode = b0 & 0x0f;
        match opcode {
            0x8 => {
                conn.stream
                    .write_all(&ws_frame(0x88, &payload, None))
                    .await?;
                let _ = conn.stream.shutdown().await;
                return Ok(());
            }
            0x9 => {
                conn.stream
                    .write_all(&ws_frame(0x8A, &payload, None))
                    .await?;
            }
            _ => {
                conn.stream.write_all(&ws_frame(b0, &payload, None)).await?;
            }
        }
    }
}

/// Encode a websocket frame. `b0` is the first byte (FIN bit | opcode).
pub fn ws_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Read one websocket frame (blocking). Returns (first byte, unmasked payload).
pub fn ws_read_frame(s: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    let mask = if h[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        s.read_exact(&mut m)?;
        Some(m)
    } else {
        None
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Ok((h[0], payload))
}

/// Sec-WebSocket-Accept for a given Sec-WebSocket-Key (RFC 6455 §4.2.2).
pub fn ws_accept(key: &str) -> String {
    let mut data = key.trim().as_bytes().to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&sha1(&data))
}

/// Minimal SHA-1 (FIPS 180-1), only used for the websocket handshake.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | ((!b) & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<StdTcpListener> = (0..n)
        .map(|_| StdTcpListener::bind("127.0.0.1:0").expect("bind free port"))
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn subst_placeholders(
    config: &str,
    listen: SocketAddr,
    listen2: SocketAddr,
    listen3: SocketAddr,
    admin: SocketAddr,
    dir: &Path,
) -> String {
    config
        .replace("{listen}", &listen.to_string())
        .replace("{listen2}", &listen2.to_string())
        .replace("{listen3}", &listen3.to_string())
        .replace("{admin}", &admin.to_string())
        .replace("{admin_port}", &admin.port().to_string())
        .replace("{dir}", &dir.display().to_string())
}

pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    /// `{listen}`
    pub listen: SocketAddr,
    /// `{listen2}`
    pub listen2: SocketAddr,
    /// `{listen3}`
    pub listen3: SocketAddr,
    /// `{admin}`
    pub admin: SocketAddr,
    exit: Option<ExitStatus>,
}

impl Gateway {
    /// Start `ficus run --config <dir>/routes.toml` and wait for `/readyz` == 200.
    ///
    /// Placeholders: `{listen}`, `{listen2}`, `{listen3}`, `{admin}` (free loopback
    /// addresses), `{admin_port}` (the port of `{admin}`, to bind the admin listener to
    /// another address of this host) and `{dir}` (the gateway's temp dir).
    pub fn start(config: &str) -> Gateway {
        Self::start_in(tempfile::tempdir().unwrap(), config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Gateway {
        Self::start_full(dir, config, |p| {
            vec!["run".into(), "--config".into(), p.display().to_string()]
        })
    }

    /// Like [`start`] but with custom command-line arguments built from the config path.
    pub fn start_with_args(config: &str, args: impl Fn(&Path) -> Vec<String>) -> Gateway {
        Self::start_full(tempfile::tempdir().unwrap(), config, args)
    }

    pub fn start_full(
        dir: tempfile::TempDir,
        config: &str,
        args: impl Fn(&Path) -> Vec<String>,
    ) -> Gateway {
        match Self::try_start_full(dir, config, args) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn try_start_full(
        dir: tempfile::TempDir,
        config: &str,
        args: impl Fn(&Path) -> Vec<String>,
    ) -> Result<Gateway, String> {
        Self::try_start_opts(dir, config, args, true)
    }

    /// Start and return as soon as `/readyz` is 200, without waiting for the proxy listeners.
    pub fn start_strict(config: &str) -> Gateway {
        Self::try_start_opts(
            tempfile::tempdir().unwrap(),
            config,
            |p| vec!["run".into(), "--config".into(), p.display().to_string()],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start_opts(
        dir: tempfile::TempDir,
        config: &str,
        args: impl Fn(&Path) -> Vec<String>,
        wait_listeners: bool,
    ) -> Result<Gateway, String> {
        let a = free_addrs(4);
        let config_path = dir.path().join("routes.toml");
        let (listen, listen2, listen3, admin) = (a[0], a[1], a[2], a[3]);
        let text = subst_placeholders(config, listen, listen2, listen3, admin, dir.path());
        std::fs::write(&config_path, &text).unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(bin())
            .args(args(&config_path))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin()))?;
        let mut gw = Gateway {
            child,
            config_path,
            listen,
            listen2,
            listen3,
            admin,
            dir,
            exit: None,
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = gw.child.try_wait() {
                gw.exit = Some(st);
                return Err(format!(
                    "ficus exited during startup with {st}\nconfig:\n{}\nlogs:\n{}",
                    gw.subst(config),
                    gw.logs()
                ));
            }
            if let Ok(r) = try_raw_request(
                gw.admin,
                b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
                Duration::from_secs(2),
            ) {
                if r.status == 200 {
                    if !wait_listeners {
                        return Ok(gw);
                    }
                    // Known race (see tests/readiness.rs): /readyz can answer before the proxy
                    // listeners accept. Wait for the configured listeners so that unrelated tests
                    // don't flake on it; readiness.rs asserts the strict behaviour.
                    let addrs: Vec<SocketAddr> = [
                        ("{listen}", listen),
                        ("{listen2}", listen2),
                        ("{listen3}", listen3),
                    ]
                    .into_iter()
                    .filter(|(ph, _)| config.contains(ph))
                    .map(|(_, a)| a)
                    .collect();
                    let all_up = poll_until(Duration::from_secs(10), || {
                        addrs
                            .iter()
                            .all(|a| {
                                StdTcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok()
                            })
                            .then_some(())
                    });
                    if all_up.is_some() {
                        return Ok(gw);
                    }
                    return Err(format!(
                        "ficus /readyz is 200 but listeners {addrs:?} do not accept\nlogs:\n{}",
                        gw.logs()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "ficus not ready after 30s\nconfig:\n{}\nlogs:\n{}",
                    gw.subst(config),
                    gw.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Replace this gateway's placeholders in a config template.
    pub fn subst(&self, config: &str) -> String {
        subst_placeholders(
            config,
            self.listen,
            self.listen2,
            self.listen3,
            self.admin,
            self.dir.path(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Atomically replace the config file (placeholders are substituted).
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.dir.path().join(".routes.toml.tmp");
        std::fs::write(&tmp, self.subst(config)).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Async-friendly variant of [`wait_exit`].
    pub async fn wait_exit_async(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// stdout + stderr of the gateway so far.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("--- stdout ---\n{out}\n--- stderr ---\n{err}")
    }

    /// GET an admin path (raw TCP, blocking).
    pub fn admin_get(&self, path: &str) -> io::Result<RawResponse> {
        try_raw_request(
            self.admin,
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        )
    }

    /// Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        let r = self.admin_get("/metrics").expect("GET /metrics");
        assert_eq!(r.status, 200, "GET /metrics status");
        r.text()
    }

    /// Simple GET on the main listener via raw TCP.
    pub fn get(&self, path: &str) -> RawResponse {
        get_raw(self.listen, path, "test.local", &[])
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== ficus logs (pid {}) ====\n{}",
                self.child.id(),
                truncate_lines(&self.logs(), 60, 60)
            );
        }
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Keep the first `head` and last `tail` lines of a long text.
pub fn truncate_lines(text: &str, head: usize, tail: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= head + tail {
        return text.to_string();
    }
    format!(
        "{}\n... ({} lines omitted) ...\n{}",
        lines[..head].join("\n"),
        lines.len() - head - tail,
        lines[lines.len() - tail..].join("\n")
    )
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        hget(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
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
    /// Name of the origin that served the request (from the echo body), if any.
    pub fn origin(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("origin").and_then(|o| o.as_str()).map(String::from))
    }
    /// Path the origin received (from the echo body), if any.
    pub fn origin_path(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("path").and_then(|o| o.as_str()).map(String::from))
    }
    /// A header the origin received (from the echo body).
    pub fn origin_header(&self, name: &str) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("headers")
                    .and_then(|h| h.get(name.to_ascii_lowercase()))
                    .and_then(|s| s.as_str())
                    .map(String::from)
            })
    }
}

struct SyncConn<'a> {
    stream: &'a mut StdTcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    eof: bool,
}

impl SyncConn<'_> {
    fn fill(&mut self) -> io::Result<usize> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "raw_request timeout",
            ));
        }
        self.stream.set_read_timeout(Some(self.deadline - now))?;
        let mut tmp = [0u8; 16384];
        let n = match self.stream.read(&mut tmp) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "raw_request timeout",
                ))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }
    fn read_head(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                return Ok(self.buf.drain(..pos + 4).collect());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before response head (got {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }
    fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
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
                let mut l: Vec<u8> = self.buf.drain(..pos + 2).collect();
                l.truncate(pos);
                return Ok(l);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
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
    let mut stream = StdTcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.write_all(bytes);
    read_response(&mut stream, deadline)
}

/// Parse one HTTP/1.1 response from an already-connected stream.
pub fn read_response(stream: &mut StdTcpStream, deadline: Instant) -> io::Result<RawResponse> {
    let mut c = SyncConn {
        stream,
        buf: Vec::new(),
        deadline,
        eof: false,
    };
    loop {
        let head = c.read_head()?;
        let head =
            parse_head(&head).ok_or_else(|| io::Error::other("unparseable response head"))?;
        let status: u16 = head
            .first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {:?}", head.first)))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let chunked = hget(&head.headers, "transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let body = if status == 101 || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let line = String::from_utf8_lossy(&c.read_line()?).to_string();
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
                if size == 0 {
                    loop {
                        if c.read_line()?.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                body.extend(c.read_n(size)?);
                c.read_n(2)?;
            }
            body
        } else if let Some(cl) = hget(&head.headers, "content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::other("bad content-length"))?;
            c.read_n(n)?
        } else {
            while !c.eof {
                c.fill()?;
            }
            std::mem::take(&mut c.buf)
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
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
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

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Parse Prometheus text exposition lines into (name, labels, value).
pub fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = if let Some(brace) = line.find('{') {
            let Some(end) = line.rfind('}') else { continue };
            (
                &line[..brace],
                parse_labels(&line[brace + 1..end]),
                line[end + 1..].trim(),
            )
        } else {
            let mut it = line.splitn(2, char::is_whitespace);
            let n = it.next().unwrap_or("");
            (n, BTreeMap::new(), it.next().unwrap_or("").trim())
        };
        let val_str = rest.split_whitespace().next().unwrap_or("");
        let val = match val_str {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.push((name.to_string(), labels, val));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',') | Some(' ')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => break,
                },
                '"' => break,
                o => val.push(o),
            }
        }
        m.insert(key.trim().to_string(), val);
    }
    m
}

/// Sum of all samples of `name` whose labels include all of `labels`; `None` if no sample matched.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (n, l, v) in parse_metrics(text) {
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, want)| l.get(*k).map(|x| x == want).unwrap_or(false))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

/// Run `ficus ARGS` (30 s timeout) and return (exit code, stdout, stderr).
pub fn ficus(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_p = dir.path().join("out");
    let err_p = dir.path().join("err");
    let mut child = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn ficus");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`ficus {}` did not exit within 30s\nstdout: {}\nstderr: {}",
                args.join(" "),
                std::fs::read_to_string(&out_p).unwrap_or_default(),
                std::fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let code = status.code().unwrap_or(-1);
    (
        code,
        std::fs::read_to_string(&out_p).unwrap_or_default(),
        std::fs::read_to_string(&err_p).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

pub struct IssuedCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ficus test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Issue a leaf certificate for `sans` (DNS names or IP addresses) and write
    /// `<dir>/<name>.pem` and `<dir>/<name>.key`.
    pub fn issue(&self, dir: &Path, name: &str, sans: &[&str]) -> IssuedCert {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            sans.first().copied().unwrap_or(name),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        IssuedCert {
            cert_path,
            key_path,
            cert_pem: cert.pem(),
        }
    }

    pub fn reqwest_cert(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap()
    }
}

/// Poll `f` until it returns `Some`, or `None` after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sanity checks for the harness itself (run from every test binary that includes them).
pub fn selftest() {
    // RFC 6455 example
    assert_eq!(
        ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    // FIPS 180-1 "abc"
    let h = sha1(b"abc");
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fo"), "Zm8=");
}

/// Standard `[gateway]` section using the `{listen}` / `{admin}` placeholders.
pub const GATEWAY: &str = r#"
[gateway]
listen = ["{listen}"]
admin = "{admin}"
threads = 2
access_log = "text"
"#;

/// Build a config where every route gets its own service and origin named after the route.
/// `routes` are (name, extra TOML lines for the route, e.g. `match = { path = "/a/**" }`).
/// Returns (config, origins).
pub fn per_route_config(gateway: &str, routes: &[(&str, &str)]) -> (String, Vec<Origin>) {
    let mut cfg = gateway.to_string();
    let mut origins = Vec::new();
    for (name, _) in routes {
        let o = Origin::start(name);
        cfg.push_str(&format!(
            "\n[services.{name}]\ninstances = [\"{}\"]\n",
            o.addr()
        ));
        origins.push(o);
    }
    for (name, body) in routes {
        cfg.push_str(&format!(
            "\n[[routes]]\nname = \"{name}\"\nservice = \"{name}\"\n{body}\n"
        ));
    }
    (cfg, origins)
}

/// A gateway in front of `o` with one catch-all route `all` to service `o`. `gateway_extra`
/// is appended to the `[gateway]` table (keys, or a sub-table such as `[gateway.limits]`);
/// `route_extra` to the route.
pub fn catch_all_gateway(o: &Origin, gateway_extra: &str, route_extra: &str) -> Gateway {
    let cfg = format!(
        "{GATEWAY}{gateway_extra}\n[services.{name}]\ninstances = [\"{addr}\"]\n\n[[routes]]\nname = \"all\"\nmatch = {{ path = \"/**\" }}\nservice = \"{name}\"\n{route_extra}\n",
        name = o.name(),
        addr = o.addr(),
    );
    Gateway::start(&cfg)
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

/// A bare TCP origin on a free loopback port: every accepted connection is handed to
/// `serve` on its own thread (for upstream behaviour the HTTP origins cannot produce).
pub fn raw_origin(serve: fn(StdTcpStream)) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}
