//! A load loop for the zero-downtime tests (`tests/upgrade.rs`, `tests/reload_soak.rs`):
//! client threads that send GETs back to back, some on keep-alive connections, some on a
//! new connection per request, and count what they see.
//!
//! What counts as a failure: a refused connection, any error on a new connection, any
//! status but the expected one, a request that fails again after its one retry. The one
//! retry is the client behaviour RFC 9112 section 9.3.1 allows for idempotent requests: a
//! GET on a *reused* keep-alive connection that the server closed before sending a byte
//! of its answer (an idle connection closed while the request was on its way) is sent
//! again on a new connection, as browsers and curl do. Those retries are counted and
//! reported, never hidden.

#![allow(dead_code)]

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::read_response;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures kept word for word for the report.
const KEEP_FAILURES: usize = 20;

/// One request the load sends: a path and extra header lines (`Name: value\r\n` each).
#[derive(Clone)]
pub struct Request {
    pub path: String,
    pub headers: String,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            path: path.to_string(),
            headers: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push_str(&format!("{name}: {value}\r\n"));
        self
    }
}

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    /// Connections refused (`ECONNREFUSED`): the listening socket was closed.
    pub refused: u64,
    /// Requests that failed (refused ones included), with the first few reasons.
    pub failed: u64,
    pub reasons: Vec<String>,
    /// GETs sent again after a reused keep-alive connection closed before any answer.
    pub retried: u64,
    /// New connections made.
    pub connections: u64,
}

impl Tally {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.reasons.len() < KEEP_FAILURES {
            self.reasons.push(why);
        }
    }

    fn add(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.refused += o.refused;
        self.failed += o.failed;
        self.retried += o.retried;
        self.connections += o.connections;
        for r in &o.reasons {
            if self.reasons.len() < KEEP_FAILURES {
                self.reasons.push(r.clone());
            }
        }
    }
}

/// Client threads running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
    live: Vec<Arc<Mutex<Tally>>>,
}

impl Load {
    /// `keepalive` threads that reuse their connection and `fresh` threads that open one
    /// per request, each cycling through `requests`, expecting `status`.
    pub fn start(
        addr: SocketAddr,
        requests: Vec<Request>,
        status: u16,
        keepalive: usize,
        fresh: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut live = Vec::new();
        for i in 0..keepalive + fresh {
            let reuse = i < keepalive;
            let stop = stop.clone();
            let requests = requests.clone();
            let tally = Arc::new(Mutex::new(Tally::default()));
            live.push(tally.clone());
            threads.push(std::thread::spawn(move || {
                client(addr, &requests, status, reuse, &stop, &tally);
                let t = tally.lock().unwrap().clone();
                t
            }));
        }
        Load {
            stop,
            threads,
            live,
        }
    }

    /// The totals so far, while the clients run.
    pub fn snapshot(&self) -> Tally {
        let mut total = Tally::default();
        for t in &self.live {
            total.add(&t.lock().unwrap());
        }
        total
    }

    /// Stops the clients and returns the totals.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for t in self.threads {
            total.add(&t.join().expect("load thread panicked"));
        }
        total
    }
}

/// What became of one request on one connection.
enum Outcome {
    Status(u16, bool),
    /// No byte of an answer before the connection closed.
    ClosedEarly(String),
    Error(String),
}

fn client(
    addr: SocketAddr,
    requests: &[Request],
    status: u16,
    reuse: bool,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let req = &requests[n % requests.len()];
        n += 1;
        let reused = conn.is_some();
        let mut outcome = send(addr, &mut conn, req, reuse, tally);
        if reused {
            if let Outcome::ClosedEarly(_) = outcome {
                conn = None;
                tally.lock().unwrap().retried += 1;
                outcome = send(addr, &mut conn, req, reuse, tally);
            }
        }
        let mut t = tally.lock().unwrap();
        match outcome {
            Outcome::Status(s, keep) => {
                if s == status {
                    t.ok += 1;
                } else {
                    t.fail(format!("{} -> {s}", req.path));
                }
                if !keep || !reuse {
                    conn = None;
                }
            }
            Outcome::ClosedEarly(e) | Outcome::Error(e) => {
                t.fail(format!("{} -> {e}", req.path));
                conn = None;
            }
        }
    }
}

fn send(
    addr: SocketAddr,
    conn: &mut Option<TcpStream>,
    req: &Request,
    reuse: bool,
    tally: &Mutex<Tally>,
) -> Outcome {
    if conn.is_none() {
        tally.lock().unwrap().connections += 1;
        match TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(REQUEST_TIMEOUT));
                *conn = Some(s);
            }
            Err(e) => {
                if e.kind() == ErrorKind::ConnectionRefused {
                    tally.lock().unwrap().refused += 1;
                }
                return Outcome::Error(format!("connect: {e}"));
            }
        }
    }
    let Some(stream) = conn.as_mut() else {
        return Outcome::Error("no connection".into());
    };
    let close = if reuse { "" } else { "Connection: close\r\n" };
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: load.test\r\n{}{close}\r\n",
        req.path, req.headers
    );
    if let Err(e) = stream.write_all(head.as_bytes()) {
        return Outcome::ClosedEarly(format!("write: {e}"));
    }
    match read_response(stream, Instant::now() + REQUEST_TIMEOUT) {
        Ok(r) => {
            let keep = !r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            Outcome::Status(r.status, keep)
        }
        // A reset arrives before any byte of these small answers; an end of stream counts
        // only before the head (mid-body it is a failure).
        Err(e)
            if e.kind() == ErrorKind::ConnectionReset
                || e.to_string().contains("before response head") =>
        {
            Outcome::ClosedEarly(format!("read: {e}"))
        }
        Err(e) => Outcome::Error(format!("read: {e}")),
    }
}
