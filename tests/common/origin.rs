//! [`Origin`]: the in-process HTTP/1.1 origin every test proxies to, with per-path handlers.
//!
//! ```ignore
//! let o = Origin::builder("api")
//!     .route("/slow", Handler::echo().delay(Duration::from_secs(2)))
//!     .route("/jwks", Reply::json(serde_json::json!({ "keys": [] })))
//!     .route("/files/**", |r: &Request| Reply::text(format!("file {}", r.path)))
//!     .route("/stream", Reply::ok().chunk(Duration::ZERO, "a").chunk(Duration::from_millis(300), "b"))
//!     .route("/broken", Reply::reset())
//!     .start();
//! // ... requests through the gateway ...
//! assert_eq!(o.last().unwrap().header("x-request-id"), Some("abc"));
//! ```
//!
//! * **Routes**: a pattern is an exact path (the query is ignored) or a prefix ending in
//!   `/**`; the first route that matches answers, else the fallback, which is
//!   [`Handler::echo`] unless set. [`Origin::set_route`] and [`Origin::set_fallback`] swap a
//!   handler while the origin runs (an instance that starts failing, then recovers).
//! * **Handlers** get the [`Request`] and return a [`Reply`]: status, headers and a body
//!   (fixed, streamed in timed chunks, or a large generated one), after an optional delay;
//!   or no answer at all ([`Reply::hang`], [`Reply::close`], [`Reply::reset`]); or exact
//!   bytes for malformed upstream answers ([`Reply::raw`]); or a WebSocket echo
//!   ([`Handler::websocket_echo`]). A [`Reply`] is a handler that always answers the same.
//! * **The echo**: `{"origin","method","path","headers","body_len"}` as JSON, headers
//!   lowercased (repeated ones joined with `, `); [`crate::common::RawResponse::origin`]
//!   and friends read it back. Every HTTP answer carries `x-origin: NAME`.
//! * **Health**: `/health` is the probe path and is not routed: it answers `200 ok` (or
//!   what [`Origin::set_health`] and friends say) and is counted apart
//!   ([`Origin::health_checks`]), so probes never show up in [`Origin::requests`] or
//!   [`Origin::received`].
//! * **Records**: every other request is kept (method, target, headers, body) for
//!   assertions: [`Origin::received`], [`Origin::last`], [`Origin::requests`] (request
//!   heads, counted before the body is read).
//! * **Stop and restart**: [`Origin::stop`] closes the listener and every open connection
//!   (new connects are refused); [`Origin::restart`] listens again on the same address.
//!
//! One thread accepts, one thread serves each connection (keep-alive, pipelining), so a
//! handler may block, and tests may block too, without a runtime in the way.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::wire::{header, header_all, Wire};
use crate::common::ws::{websocket_echo, ws_accept};

/// The path that answers health probes.
pub const HEALTH_PATH: &str = "/health";

/// Pieces a generated body ([`Reply::repeat_body`]) is written in.
const REPEAT_PIECE: usize = 64 * 1024;

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target exactly as received (path and query).
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The name of the origin that received it.
    pub origin: String,
}

/// The old name of [`Request`], kept for the tests that spell it out.
pub type ReceivedRequest = Request;

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
    /// Whether the request asks for a WebSocket upgrade.
    pub fn wants_websocket(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }
    fn wants_close(&self) -> bool {
        self.version == "HTTP/1.0"
            || self
                .header("connection")
                .is_some_and(|c| c.to_ascii_lowercase().contains("close"))
    }
}

/// What the origin does with a request: see the module docs.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    delay: Duration,
    action: Action,
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// Chunked transfer coding: each chunk is written after its pause.
    Chunks(Vec<(Duration, Vec<u8>)>),
    /// `len` copies of one byte, with a Content-Length, written in pieces.
    Repeat(u8, usize),
}

#[derive(Debug, Clone)]
enum Action {
    Respond,
    Hang,
    Close,
    Reset,
    Raw(Vec<u8>),
    WebSocket,
}

impl Reply {
    /// `status` with an empty body.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            delay: Duration::ZERO,
            action: Action::Respond,
        }
    }

    /// `200` with an empty body.
    pub fn ok() -> Reply {
        Reply::new(200)
    }

    /// `200` with a JSON body.
    pub fn json(value: serde_json::Value) -> Reply {
        Reply::ok()
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// `200` with a plain-text body.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::ok()
            .header("content-type", "text/plain")
            .body(text.into())
    }

    /// `200` with the echo of `req` (see the module docs).
    pub fn echo(req: &Request) -> Reply {
        let mut headers = serde_json::Map::new();
        for (n, v) in &req.headers {
            let k = n.to_ascii_lowercase();
            let joined = match headers.get(&k) {
                Some(serde_json::Value::String(old)) => format!("{old}, {v}"),
                _ => v.clone(),
            };
            headers.insert(k, serde_json::Value::String(joined));
        }
        Reply::json(serde_json::json!({
            "origin": req.origin,
            "method": req.method,
            "path": req.path,
            "headers": headers,
            "body_len": req.body.len(),
        }))
        .header("server", "ficus-test-origin")
    }

    /// Never answers; holds the connection until the peer closes it.
    pub fn hang() -> Reply {
        Reply::ok().action(Action::Hang)
    }

    /// Closes the connection without answering.
    pub fn close() -> Reply {
        Reply::ok().action(Action::Close)
    }

    /// Resets the connection (TCP RST) without answering.
    pub fn reset() -> Reply {
        Reply::ok().action(Action::Reset)
    }

    /// Writes exactly `bytes` (anything, valid HTTP or not) and reads the next request.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::ok().action(Action::Raw(bytes.into()))
    }

    fn action(mut self, action: Action) -> Reply {
        self.action = action;
        self
    }

    pub fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    /// Adds a response header (also to a WebSocket handshake answer).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Waits this long before answering (or hanging up).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Streams the body with chunked coding: this chunk is written `after` the previous
    /// one (or the head).
    pub fn chunk(mut self, after: Duration, bytes: impl Into<Vec<u8>>) -> Reply {
        let chunk = (after, bytes.into());
        match &mut self.body {
            Body::Chunks(chunks) => chunks.push(chunk),
            _ => self.body = Body::Chunks(vec![chunk]),
        }
        self
    }

    /// A body of `len` copies of `byte`, with its Content-Length, written in 64 KiB pieces
    /// (a large answer without holding it in memory).
    pub fn repeat_body(mut self, byte: u8, len: usize) -> Reply {
        self.body = Body::Repeat(byte, len);
        self
    }

    fn has_header(&self, name: &str) -> bool {
        header(&self.headers, name).is_some()
    }
}

/// Answers requests: a function of the [`Request`]. Made from a closure, or a [`Reply`]
/// (the same answer every time).
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(&Request) -> Reply + Send + Sync>);

impl Handler {
    pub fn new(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Handler {
        Handler(Arc::new(f))
    }

    /// The echo (see the module docs); the default fallback.
    pub fn echo() -> Handler {
        Handler::new(Reply::echo)
    }

    /// Completes WebSocket handshakes and echoes frames; other requests get the echo.
    pub fn websocket_echo() -> Handler {
        Handler::new(|r| {
            if r.wants_websocket() {
                Reply::new(101).action(Action::WebSocket)
            } else {
                Reply::echo(r)
            }
        })
    }

    /// This handler, answering with `status` instead.
    pub fn status(self, status: u16) -> Handler {
        self.map(move |r| r.status(status))
    }

    /// This handler, answering after `delay`.
    pub fn delay(self, delay: Duration) -> Handler {
        self.map(move |r| r.delay(delay))
    }

    /// This handler, with an extra response header.
    pub fn header(self, name: &str, value: &str) -> Handler {
        let (name, value) = (name.to_string(), value.to_string());
        self.map(move |r| r.header(&name, &value))
    }

    fn map(self, f: impl Fn(Reply) -> Reply + Send + Sync + 'static) -> Handler {
        Handler::new(move |req| f((self.0)(req)))
    }

    fn answer(&self, req: &Request) -> Reply {
        (self.0)(req)
    }
}

impl<F: Fn(&Request) -> Reply + Send + Sync + 'static> From<F> for Handler {
    fn from(f: F) -> Handler {
        Handler::new(f)
    }
}

impl From<Reply> for Handler {
    fn from(reply: Reply) -> Handler {
        Handler::new(move |_| reply.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealthMode {
    Status(u16),
    /// ok, fail, ok, fail, ... (one step per probe).
    Alternate {
        ok: u16,
        fail: u16,
    },
}

/// How the origin answers: routes, fallback, health.
struct Behaviour {
    routes: Mutex<Vec<(String, Handler)>>,
    fallback: Mutex<Handler>,
    health: Mutex<HealthMode>,
    health_body: Mutex<Option<String>>,
    alternate: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    requests: AtomicUsize,
    health: AtomicUsize,
    connections: AtomicUsize,
    log: Mutex<Vec<Request>>,
}

struct Shared {
    name: String,
    behaviour: Behaviour,
    counters: Counters,
}

/// One listening period (between start or restart and stop).
struct Run {
    stopped: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

struct Running {
    run: Arc<Run>,
    accept: JoinHandle<()>,
}

/// How to start an [`Origin`].
pub struct OriginBuilder {
    name: String,
    routes: Vec<(String, Handler)>,
    fallback: Handler,
    addr: SocketAddr,
}

impl OriginBuilder {
    /// Answers requests whose path matches `pattern` (exact, or a prefix ending in `/**`).
    pub fn route(mut self, pattern: &str, handler: impl Into<Handler>) -> Self {
        self.routes.push((pattern.to_string(), handler.into()));
        self
    }

    /// Answers requests no route matches (default [`Handler::echo`]).
    pub fn fallback(mut self, handler: impl Into<Handler>) -> Self {
        self.fallback = handler.into();
        self
    }

    /// Listens on exactly `addr` (port 0: any free port). Default `127.0.0.1:0`; any
    /// 127.0.0.0/8 address works on Linux.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    pub fn try_start(self) -> io::Result<Origin> {
        let listener = TcpListener::bind(self.addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: self.name,
            behaviour: Behaviour {
                routes: Mutex::new(self.routes),
                fallback: Mutex::new(self.fallback),
                health: Mutex::new(HealthMode::Status(200)),
                health_body: Mutex::new(None),
                alternate: AtomicUsize::new(0),
            },
            counters: Counters::default(),
        });
        let o = Origin {
            addr,
            shared,
            running: Mutex::new(None),
        };
        o.run_with(listener);
        Ok(o)
    }

    pub fn start(self) -> Origin {
        let (name, addr) = (self.name.clone(), self.addr);
        self.try_start()
            .unwrap_or_else(|e| panic!("start origin {name} on {addr}: {e}"))
    }
}

/// A running in-process origin; see the module docs.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Origin {
    pub fn builder(name: &str) -> OriginBuilder {
        OriginBuilder {
            name: name.to_string(),
            routes: Vec::new(),
            fallback: Handler::echo(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// An origin that echoes every request, on 127.0.0.1 and a free port.
    pub fn start(name: &str) -> Origin {
        Origin::builder(name).start()
    }

    /// One echo origin per IP, all on the same port (e.g. 127.0.0.1 and 127.0.0.2 for
    /// A-record discovery, where the port comes from the config).
    pub fn start_same_port(names_ips: &[(&str, IpAddr)]) -> Vec<Origin> {
        'attempt: for _ in 0..50 {
            let (name, ip) = names_ips[0];
            let first = Origin::builder(name).bind(SocketAddr::new(ip, 0)).start();
            let port = first.addr().port();
            let mut out = vec![first];
            for (name, ip) in &names_ips[1..] {
                let at = SocketAddr::new(*ip, port);
                match Origin::builder(name).bind(at).try_start() {
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
                .name(format!("origin-{}", self.shared.name))
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

    /// Replaces the handler of `pattern`, or adds a route for it.
    pub fn set_route(&self, pattern: &str, handler: impl Into<Handler>) {
        let handler = handler.into();
        let mut routes = lock(&self.shared.behaviour.routes);
        match routes.iter_mut().find(|(p, _)| p == pattern) {
            Some((_, h)) => *h = handler,
            None => routes.push((pattern.to_string(), handler)),
        }
    }

    /// Replaces the handler for requests no route matches.
    pub fn set_fallback(&self, handler: impl Into<Handler>) {
        *lock(&self.shared.behaviour.fallback) = handler.into();
    }

    /// `/health` answers with this status from now on.
    pub fn set_health(&self, status: u16) {
        *lock(&self.shared.behaviour.health) = HealthMode::Status(status);
    }

    /// `/health` alternates 200, 503, 200, 503, ... starting with 200.
    pub fn set_health_alternating(&self) {
        self.shared.behaviour.alternate.store(0, Ordering::SeqCst);
        *lock(&self.shared.behaviour.health) = HealthMode::Alternate { ok: 200, fail: 503 };
    }

    /// Overrides the `/health` body (`None` = `ok`/`fail` by status).
    pub fn set_health_body(&self, body: Option<&str>) {
        *lock(&self.shared.behaviour.health_body) = body.map(String::from);
    }

    /// Request heads received, `/health` probes not included.
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

    /// Every request received in full so far (not `/health`), oldest first.
    pub fn received(&self) -> Vec<Request> {
        lock(&self.shared.counters.log).clone()
    }

    /// The latest request received in full (not `/health`).
    pub fn last(&self) -> Option<Request> {
        lock(&self.shared.counters.log).last().cloned()
    }

    /// Waits until at least `n` request heads (not `/health`) arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || self.requests() >= n)
    }

    /// Waits until at least `n` health probes arrived.
    pub fn wait_health_checks(&self, n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || self.health_checks() >= n)
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
        let closed = wait_for(Duration::from_secs(5), || {
            TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err()
        });
        assert!(
            closed,
            "origin {} still accepts connections after stop",
            self.name()
        );
    }

    /// Listens again on the same address (after [`Origin::stop`]).
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
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    crate::common::poll_until(timeout, || done().then_some(())).is_some()
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
            .name("origin-conn".into())
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = serve(stream, &shared, &run2);
                lock(&run2.conns).remove(&id);
            });
    }
}

impl Shared {
    fn health_reply(&self) -> Reply {
        let b = &self.behaviour;
        let (status, ok) = match *lock(&b.health) {
            HealthMode::Status(s) => (s, (200..300).contains(&s)),
            HealthMode::Alternate { ok, fail } => {
                if b.alternate.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    (ok, true)
                } else {
                    (fail, false)
                }
            }
        };
        let body = lock(&b.health_body)
            .clone()
            .unwrap_or_else(|| if ok { "ok" } else { "fail" }.to_string());
        Reply::text(body).status(status)
    }

    fn handler_for(&self, path: &str) -> Handler {
        let routes = lock(&self.behaviour.routes);
        let matched = routes
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix("/**") {
                Some(prefix) => {
                    path == prefix
                        || path.starts_with(prefix) && path[prefix.len()..].starts_with('/')
                }
                None => path == pattern,
            });
        match matched {
            Some((_, h)) => h.clone(),
            None => lock(&self.behaviour.fallback).clone(),
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared, run: &Run) -> io::Result<()> {
    let mut wire = Wire::new(stream);
    loop {
        let Some(head) = wire.read_head()? else {
            return Ok(());
        };
        let mut parts = head.first.split(' ');
        let mut req = Request {
            method: parts.next().unwrap_or("").to_string(),
            path: parts.next().unwrap_or("").to_string(),
            version: parts.next().unwrap_or("").to_string(),
            headers: head.headers,
            body: Vec::new(),
            origin: shared.name.clone(),
        };
        let probe = req.path_only() == HEALTH_PATH;
        let counter = if probe {
            &shared.counters.health
        } else {
            &shared.counters.requests
        };
        counter.fetch_add(1, Ordering::SeqCst);
        req.body = wire.read_body(&req.headers, false)?;
        let reply = if probe {
            shared.health_reply()
        } else {
            lock(&shared.counters.log).push(req.clone());
            shared.handler_for(req.path_only()).answer(&req)
        };
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        if run.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let stream = &mut wire.stream;
        match &reply.action {
            Action::Respond => {}
            Action::Hang => {
                let mut tmp = [0u8; 1024];
                while matches!(stream.read(&mut tmp), Ok(n) if n > 0) {}
                return Ok(());
            }
            Action::Close => {
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            Action::Reset => {
                reset(stream);
                return Ok(());
            }
            Action::Raw(bytes) => {
                stream.write_all(bytes)?;
                continue;
            }
            Action::WebSocket => {
                let key = req.header("sec-websocket-key").unwrap_or("");
                let mut head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nx-origin: {}\r\n",
                    ws_accept(key),
                    shared.name
                );
                for (n, v) in &reply.headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes())?;
                return websocket_echo(stream);
            }
        }
        let close = req.wants_close();
        write_reply(stream, &reply, &shared.name, &req.method, close)?;
        if close {
            let _ = stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    origin: &str,
    method: &str,
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    match &reply.body {
        Body::Bytes(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
        Body::Repeat(_, len) => head.push_str(&format!("content-length: {len}\r\n")),
        Body::Chunks(_) => head.push_str("transfer-encoding: chunked\r\n"),
    }
    if !reply.has_header("x-origin") {
        head.push_str(&format!("x-origin: {origin}\r\n"));
    }
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let with_body = method != "HEAD";
    match &reply.body {
        Body::Bytes(b) => {
            let mut out = head.into_bytes();
            if with_body {
                out.extend_from_slice(b);
            }
            stream.write_all(&out)
        }
        Body::Repeat(byte, len) => {
            stream.write_all(head.as_bytes())?;
            let piece = vec![*byte; REPEAT_PIECE.min(*len)];
            let mut left = if with_body { *len } else { 0 };
            while left > 0 {
                let n = left.min(piece.len());
                stream.write_all(&piece[..n])?;
                left -= n;
            }
            Ok(())
        }
        Body::Chunks(chunks) => {
            stream.write_all(head.as_bytes())?;
            if !with_body {
                return Ok(());
            }
            for (after, bytes) in chunks {
                std::thread::sleep(*after);
                if bytes.is_empty() {
                    continue; // an empty chunk would end the body
                }
                let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
                stream.write_all(&out)?;
            }
            stream.write_all(b"0\r\n\r\n")
        }
    }
}

/// Closes with a TCP RST: SO_LINGER on with a zero timeout, then close.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` (a plain struct of the size given) during the call;
    // the fd is open for as long as `stream` lives.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The RST goes out when the socket's last descriptor closes: ours when `serve` returns,
    // and the clone `stop` keeps, which the connection thread removes right after.
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
