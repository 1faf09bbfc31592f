//! A real Redis for the rate limiter's tests: Debian's `redis-server` (tests/run.sh
//! installs it) on a free loopback port, through the process fixture. Never the system's
//! service: each test starts its own instance, without persistence, in a temp directory.
//!
//! ```ignore
//! let mut redis = Redis::start();             // or Redis::start_with_password("pw")
//! let store = RedisStore::new(&redis.url(), None, Duration::from_secs(1)).unwrap();
//! redis.command(&["TTL", "ficus:rl:k"]);       // a raw command, as a test checks state
//! redis.stop();                                // the port refuses connections
//! redis.start_again();                         // same port, empty data
//! redis.pause();                               // SIGSTOP: connections hang
//! redis.resume();                              // SIGCONT
//! ```
//!
//! Ready once it answers `PING` on its port (`+PONG`, or `-NOAUTH` when it wants a
//! password). Stopped with SIGTERM by pid on drop (resumed first when paused).

use super::process::{start_on_free_port, Process, ProcessBuilder};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long one probe or raw command may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a restart may wait for its port to be free again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server; stopped by pid on drop.
pub struct Redis {
    /// `None` while stopped ([`Redis::stop`]).
    process: Option<Process>,
    port: u16,
    password: Option<String>,
    paused: bool,
    /// Its working directory (`--dir`): nothing is written, but never into the repository.
    dir: tempfile::TempDir,
}

/// A reply to a raw command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisReply {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None` for the null bulk string (a missing key).
    Bulk(Option<String>),
    Array(Vec<RedisReply>),
}

impl RedisReply {
    /// The integer, panicking otherwise.
    pub fn int(&self) -> i64 {
        match self {
            RedisReply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The bulk string (`None` for null), panicking on any other reply.
    pub fn bulk(&self) -> Option<String> {
        match self {
            RedisReply::Bulk(b) => b.clone(),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }
}

fn command(port: u16, password: Option<&str>, dir: &std::path::Path) -> ProcessBuilder {
    let mut b = ProcessBuilder::new("redis", REDIS_SERVER)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.as_os_str())
        .ready(move |_| ping(port));
    if let Some(p) = password {
        b = b.args(["--requirepass", p]);
    }
    b
}

/// Whether something on `port` answers PING like a Redis does.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok()
        && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
}

impl Redis {
    /// A Redis without a password.
    pub fn start() -> Redis {
        Redis::launch(None)
    }

    /// A Redis that wants `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch(Some(password.to_string()))
    }

    fn launch(password: Option<String>) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("redis-data-")
            .tempdir()
            .expect("tempdir for redis");
        let (process, port) =
            start_on_free_port(|port| command(port, password.as_deref(), dir.path()));
        Redis {
            process: Some(process),
            port,
            password,
            paused: false,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT` (never with the password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    fn process(&self) -> &Process {
        self.process.as_ref().expect("redis is stopped")
    }

    /// Stops the server (SIGTERM, by pid): its port refuses connections, its data is gone.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Starts a new, empty server on the same port (after [`stop`](Self::stop)), with the
    /// same password. Retries while the port is still taken (up to 10 s).
    pub fn start_again(&mut self) {
        self.stop();
        let deadline = Instant::now() + RESTART_TIMEOUT;
        let process = loop {
            match command(self.port, self.password.as_deref(), self.dir.path()).spawn() {
                Ok(p) => break p,
                Err(e) if e.exited && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
        };
        self.process = Some(process);
    }

    /// SIGSTOP: the kernel still accepts connections and data, nothing answers.
    pub fn pause(&mut self) {
        self.process().signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        if self.paused {
            if let Some(p) = &self.process {
                p.signal(libc::SIGCONT);
            }
            self.paused = false;
        }
    }

    /// Runs one command on a connection of its own (authenticated when the server has a
    /// password) and returns the reply. Panics when the server does not answer.
    pub fn command(&self, args: &[&str]) -> RedisReply {
        let mut s = TcpStream::connect_timeout(&self.addr(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to redis on {}: {e}", self.addr()));
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        let mut r = BufReader::new(s.try_clone().expect("clone the stream"));
        if let Some(p) = &self.password {
            s.write_all(&encode(&["AUTH", p])).expect("send AUTH");
            let reply = read_reply(&mut r);
            assert_eq!(reply, RedisReply::Simple("OK".into()), "AUTH");
        }
        s.write_all(&encode(args)).expect("send the command");
        read_reply(&mut r)
    }

    /// `command`, panicking on an error reply.
    pub fn ok(&self, args: &[&str]) -> RedisReply {
        match self.command(args) {
            RedisReply::Error(e) => panic!("redis {args:?}: {e}"),
            reply => reply,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped process would hold SIGTERM until SIGKILL: let it go first.
        self.resume();
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(r: &mut impl BufRead) -> RedisReply {
    let mut line = String::new();
    let n = r.read_line(&mut line).expect("read a reply from redis");
    assert!(n > 0, "redis closed the connection instead of answering");
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => RedisReply::Simple(rest.into()),
        "-" => RedisReply::Error(rest.into()),
        ":" => RedisReply::Int(rest.parse().expect("an integer reply")),
        "$" => {
            let len: i64 = rest.parse().expect("a bulk length");
            if len < 0 {
                return RedisReply::Bulk(None);
            }
            let mut buf = vec![0; len as usize + 2];
            r.read_exact(&mut buf).expect("a bulk string");
            buf.truncate(len as usize);
            RedisReply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let len: i64 = rest.parse().expect("an array length");
            RedisReply::Array((0..len.max(0)).map(|_| read_reply(r)).collect())
        }
        _ => panic!("not a RESP reply: {line:?}"),
    }
}
