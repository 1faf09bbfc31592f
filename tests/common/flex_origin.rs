//! [`FlexOrigin`]: a controllable HTTP/1.1 origin for the service-registry tests.
//!
//! Plain std threads (one accept thread, one thread per connection), keep-alive, bound to an
//! exact loopback address (127.0.0.1 by default; any 127.0.0.0/8 address works on Linux).
//!
//! * `GET /health` answers with a programmable status ([`FlexOrigin::set_health`]) or
//!   alternates ok/fail on every probe ([`FlexOrigin::set_health_alternating`]); the body is
//!   `ok` for a passing answer and `fail` otherwise, unless [`FlexOrigin::set_health_body`]
//!   overrides it.
//! * Every other path answers `{"origin": NAME, "method": .., "path": ..}` with header
//!   `x-origin: NAME`, status 200 or [`FlexOrigin::set_status`], after an optional
//!   [`FlexOrigin::set_delay`]. [`FlexOrigin::set_drop`] makes it close the connection after
//!   reading a request, without answering.
//! * [`FlexOrigin::stop`] closes the listener *and* every open connection, so new connects are
//!   refused; [`FlexOrigin::restart`] listens again on the same address.
//! * Counters: [`FlexOrigin::requests`] (non-health), [`FlexOrigin::health_checks`],
//!   [`FlexOrigin::path_count`].
//!
//! Include with `#[path = "common/flex_origin.rs"] mod flex_origin;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The path that answers health probes.
pub const HEALTH_PATH: &str = "/health";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthMode {
    Status(u16),
    /// ok, fail, ok, fail, ... (one step per probe).
    Alternate {
        ok: u16,
        fail: u16,
    },
}

struct Behaviour {
    health: Mutex<HealthMode>,
    health_body: Mutex<Option<String>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    drop_requests: AtomicBool,
}

#[derive(Default)]
struct Counters {
    requests: AtomicUsize,
    health: AtomicUsize,
    alternate: AtomicUsize,
    connections: AtomicUsize,
    per_path: Mutex<HashMap<String, usize>>,
}

struct Shared {
    name: String,
    behaviour: Behaviour,
    counters: Counters,
}

/// One listening period (between start/restart and stop).
struct Run {
    stopped: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

struct Running {
    run: Arc<Run>,
    accept: JoinHandle<()>,
}

pub struct FlexOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FlexOrigin {
    /// Starts on 127.0.0.1 and a free port.
    pub fn start(name: &str) -> FlexOrigin {
        Self::try_start_at(name, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap_or_else(|e| panic!("start origin {name}: {e}"))
    }

    /// Starts on exactly `addr` (port 0 = any free port).
    pub fn start_at(name: &str, addr: SocketAddr) -> FlexOrigin {
        Self::try_start_at(name, addr)
            .unwrap_or_else(|e| panic!("start origin {name} at {addr}: {e}"))
    }

    pub fn try_start_at(name: &str, addr: SocketAddr) -> io::Result<FlexOrigin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behaviour: Behaviour {
                health: Mutex::new(HealthMode::Status(200)),
                health_body: Mutex::new(None),
                status: AtomicU16::new(200),
                delay_ms: AtomicU64::new(0),
                drop_requests: AtomicBool::new(false),
            },
            counters: Counters::default(),
        });
        let o = FlexOrigin {
            addr,
            shared,
            running: Mutex::new(None),
        };
        o.run_with(listener);
        Ok(o)
    }

    /// Starts one origin per IP, all on the same port (e.g. 127.0.0.1 and 127.0.0.2 for
    /// A-record discovery, where the port comes from the config).
    pub fn start_same_port(names_ips: &[(&str, IpAddr)]) -> Vec<FlexOrigin> {
        'attempt: for _ in 0..50 {
            let first = FlexOrigin::start_at(names_ips[0].0, SocketAddr::new(names_ips[0].1, 0));
            let port = first.addr().port();
            let mut out = vec![first];
            for (name, ip) in &names_ips[1..] {
                match FlexOrigin::try_start_at(name, SocketAddr::new(*ip, port)) {
                    Ok(o) => out.push(o),
                    Err(_) => continue 'attempt,
                }
            }
            return out;
        }
        panic!("no port free on all of {names_ips:?}");
    }

    fn run_with(&self, listener: TcpListener) {
        let run = Arc::new(Run {
            stopped: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let accept = {
            let run = run.clone();
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name(format!("flex-{}", self.shared.name))
                .spawn(move || accept_loop(listener, run, shared))
                .expect("spawn accept thread")
        };
        *lock(&self.running) = Some(Running { run, accept });
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Closes the listener and every open connection. Returns once new connects are refused.
    pub fn stop(&self) {
        let Some(Running { run, accept }) = lock(&self.running).take() else {
            return;
        };
        run.stopped.store(true, Ordering::SeqCst);
        // Wake the accept thread: it sees `stopped` and returns, dropping the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        let _ = accept.join();
        let conns: Vec<TcpStream> = lock(&run.conns).drain().map(|(_, s)| s).collect();
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "origin {} still accepts connections after stop",
                self.name()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Listens again on the same address (after [`FlexOrigin::stop`]).
    pub fn restart(&self) {
        if self.is_running() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "origin {} cannot listen again on {}: {e}",
                        self.name(),
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        self.run_with(listener);
    }

    /// `/health` answers with this status from now on.
    pub fn set_health(&self, status: u16) {
        *lock(&self.shared.behaviour.health) = HealthMode::Status(status);
    }

    /// `/health` alternates 200, 503, 200, 503, ... starting with 200.
    pub fn set_health_alternating(&self) {
        self.shared.counters.alternate.store(0, Ordering::SeqCst);
        *lock(&self.shared.behaviour.health) = HealthMode::Alternate { ok: 200, fail: 503 };
    }

    /// Overrides the `/health` body (`None` = `ok`/`fail` by status).
    pub fn set_health_body(&self, body: Option<&str>) {
        *lock(&self.shared.behaviour.health_body) = body.map(String::from);
    }

    /// Status for every non-health request.
    pub fn set_status(&self, status: u16) {
        self.shared.behaviour.status.store(status, Ordering::SeqCst);
    }

    /// Delay before answering non-health requests.
    pub fn set_delay(&self, d: Duration) {
        self.shared
            .behaviour
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Close the connection after reading a non-health request, without answering.
    pub fn set_drop(&self, drop: bool) {
        self.shared
            .behaviour
            .drop_requests
            .store(drop, Ordering::SeqCst);
    }

    /// Non-health requests received (request heads).
    pub fn requests(&self) -> usize {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// `/health` requests received.
    pub fn health_checks(&self) -> usize {
        self.shared.counters.health.load(Ordering::SeqCst)
    }

    /// TCP connections accepted (all runs).
    pub fn connections(&self) -> usize {
        self.shared.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests for `path` (without query).
    pub fn path_count(&self, path: &str) -> usize {
        lock(&self.shared.counters.per_path)
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until at least `n` non-health requests arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.requests() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits until at least `n` health probes arrived.
    pub fn wait_health_checks(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.health_checks() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for FlexOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, run: Arc<Run>, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                if run.stopped.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if run.stopped.load(Ordering::SeqCst) {
            return;
        }
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let id = run.next_conn.fetch_add(1, Ordering::SeqCst);
        {
            let mut conns = lock(&run.conns);
            // Checked under the lock: `stop` drains the map after setting `stopped`.
            if run.stopped.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(c) = stream.try_clone() {
                conns.insert(id, c);
            }
        }
        let run2 = run.clone();
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("flex-conn".into())
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = serve(stream, &shared, &run2);
                lock(&run2.conns).remove(&id);
            });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 8192];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }
    fn head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..p + 4).collect()));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }
    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..p + 2).collect();
                return Ok(String::from_utf8_lossy(&l[..p]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
    fn chunked(&mut self) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let size_line = self.line()?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(total);
            }
            total += self.take(size)?.len();
            self.take(2)?;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve(stream: TcpStream, shared: &Shared, run: &Run) -> io::Result<()> {
    let mut c = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let Some(head) = c.head()? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or("");
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        let mut content_length = 0usize;
        let mut chunked = false;
        let mut close = version == "HTTP/1.0";
        for l in lines {
            let Some((n, v)) = l.split_once(':') else {
                continue;
            };
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match n.as_str() {
                "content-length" => content_length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close |= v.contains("close"),
                _ => {}
            }
        }
        let body_len = if chunked {
            c.chunked()?
        } else {
            c.take(content_length)?.len()
        };
        let path = target.split('?').next().unwrap_or("").to_string();
        *lock(&shared.counters.per_path)
            .entry(path.clone())
            .or_insert(0) += 1;

        let (status, content_type, body) = if path == HEALTH_PATH {
            shared.counters.health.fetch_add(1, Ordering::SeqCst);
            let mode = *lock(&shared.behaviour.health);
            let (status, ok) = match mode {
                HealthMode::Status(s) => (s, (200..300).contains(&s)),
                HealthMode::Alternate { ok, fail } => {
                    if shared
                        .counters
                        .alternate
                        .fetch_add(1, Ordering::SeqCst)
                        .is_multiple_of(2)
                    {
                        (ok, true)
                    } else {
                        (fail, false)
                    }
                }
            };
            let body = lock(&shared.behaviour.health_body)
                .clone()
                .unwrap_or_else(|| if ok { "ok" } else { "fail" }.to_string());
            (status, "text/plain", body.into_bytes())
        } else {
            shared.counters.requests.fetch_add(1, Ordering::SeqCst);
            if shared.behaviour.drop_requests.load(Ordering::SeqCst) {
                let _ = c.stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            let delay = shared.behaviour.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            if run.stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            let json = serde_json::json!({
                "origin": shared.name,
                "method": method,
                "path": target,
                "body_len": body_len,
            });
            (
                shared.behaviour.status.load(Ordering::SeqCst),
                "application/json",
                serde_json::to_vec(&json).unwrap(),
            )
        };
        let mut resp = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-origin: {}\r\n",
            reason(status),
            body.len(),
            shared.name
        );
        if close {
            resp.push_str("connection: close\r\n");
        }
        resp.push_str("\r\n");
        let mut out = resp.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&body);
        }
        c.stream.write_all(&out)?;
        if close {
            let _ = c.stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registry helpers (admin API and /registry JSON), shared by the tests/registry_*.rs files.
// They need the including crate to also have `mod common;`.
// ---------------------------------------------------------------------------------------------

use crate::common::{metric_sum, try_raw_request, Gateway, RawResponse};
use serde_json::Value;

/// `GET /registry` as JSON (panics with the gateway logs on failure).
pub fn registry(gw: &Gateway) -> Value {
    let r = gw
        .admin_get("/registry")
        .unwrap_or_else(|e| panic!("GET /registry: {e}\n{}", gw.logs()));
    assert_eq!(r.status, 200, "GET /registry: {}", r.text());
    r.json()
}

/// The service named `name` in a `/registry` document.
pub fn service_of(doc: &Value, name: &str) -> Option<Value> {
    doc["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// The live service entry from `/registry` (panics if absent).
pub fn service(gw: &Gateway, name: &str) -> Value {
    let doc = registry(gw);
    service_of(&doc, name).unwrap_or_else(|| panic!("service {name} not in /registry: {doc:#}"))
}

/// The instance `addr` of service `svc`, if present.
pub fn instance(gw: &Gateway, svc: &str, addr: SocketAddr) -> Option<Value> {
    let doc = registry(gw);
    let s = service_of(&doc, svc)?;
    s["instances"]
        .as_array()?
        .iter()
        .find(|i| i["addr"] == addr.to_string())
        .cloned()
}

/// Instance addresses of `svc` in `/registry`, sorted.
pub fn instance_addrs(gw: &Gateway, svc: &str) -> Vec<String> {
    let mut v: Vec<String> = service(gw, svc)["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["addr"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Polls `/registry` until instance `addr` of `svc` has `health` (e.g. "healthy"); panics with
/// the registry and logs after `timeout`.
pub fn wait_health(gw: &Gateway, svc: &str, addr: SocketAddr, health: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let inst = instance(gw, svc, addr);
        if inst.as_ref().is_some_and(|i| i["health"] == health) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "instance {addr} of {svc} not {health} after {timeout:?}; last: {inst:#?}\nregistry: {:#}\n{}",
                registry(gw),
                gw.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A request to the admin listener with an optional bearer token and JSON body.
pub fn admin_request(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("Content-Length: 0\r\n\r\n");
    }
    try_raw_request(gw.admin, req.as_bytes(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path} on admin: {e}\n{}", gw.logs()))
}

/// Registers `addr` with service `svc` (expects 201) and returns the registration id.
pub fn register(gw: &Gateway, svc: &str, token: Option<&str>, body: &str) -> String {
    let r = admin_request(
        gw,
        "POST",
        &format!("/registry/services/{svc}/instances"),
        token,
        Some(body),
    );
    assert_eq!(r.status, 201, "register {body}: {} {}", r.status, r.text());
    r.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.text()))
        .to_string()
}

/// Sum of a metric's samples with these labels (0 when absent).
pub fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&gw.metrics(), name, labels).unwrap_or(0.0)
}

/// `GET path` on the gateway's main listener, `Connection: close`, with extra headers; panics
/// on I/O errors.
pub fn get_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    crate::common::get_raw(gw.listen, path, "test.local", headers)
}

/// Like [`get_with`] but returns I/O errors.
pub fn try_get(gw: &Gateway, path: &str, timeout: Duration) -> io::Result<RawResponse> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n");
    try_raw_request(gw.listen, req.as_bytes(), timeout)
}

/// The origin name that served a response (`x-origin` header), or "-".
pub fn served_by(r: &RawResponse) -> String {
    r.header("x-origin").unwrap_or("-").to_string()
}
