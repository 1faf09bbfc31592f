//! The rate limiter's shared store: GCRA buckets kept in Redis, so that every gateway
//! pointed at one Redis enforces one limit between them.
//!
//! [`RedisStore::check`] decides one request against one or more limits in a single Lua
//! script call (EVALSHA, falling back to EVAL when Redis answers NOSCRIPT), one round trip,
//! bounded by the store's timeout. The script (`redis.lua`, next to this file) reads the
//! time from Redis (`TIME`), so gateways with skewed clocks agree; it admits the request
//! only when every limit has room, and then updates every bucket, or none. A bucket is one
//! key, `ficus:rl:` + the caller's key, holding its theoretical arrival time (TAT) and
//! expiring at it: an idle bucket costs Redis nothing.
//!
//! The connection is made on first use, not by [`RedisStore::new`]: a store can be built
//! (a config compiled) while Redis is down. One multiplexed connection serves every
//! caller. When it drops, the next call reconnects; while Redis stays down, calls fail at
//! once ([`StoreError::Unreachable`]) and one reconnect attempt at a time is made, paused
//! 100 ms, then twice as long after each failure, up to 1 s. A Redis that accepts but does
//! not answer (hung, paused) costs each call its timeout ([`StoreError::Timeout`]).
//!
//! This module owns the store and its wire format. What a refusal means for the request
//! (fail open or closed, the 429, the headers) is the caller's business.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, ErrorKind, IntoConnectionInfo, RedisError};
use tokio::sync::watch;

/// Put before every caller key: the store's keys are recognisable and cannot collide with
/// other users of the same Redis.
pub const KEY_PREFIX: &str = "ficus:rl:";

/// The longest `burst * interval` a limit may have. The script computes in nanoseconds
/// with Lua's doubles, exact below 2^53 ns (about 104 days).
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The GCRA script; see the comments at its top for its arguments and reply.
const SCRIPT: &str = include_str!("redis.lua");

/// Pause after the first failed connection attempt; doubled after each further failure.
const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two attempts: Redis back is found within about this long.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// TCP_USER_TIMEOUT: a request unacknowledged this long (Redis's host gone, a network
/// black hole) closes the connection, so it is replaced instead of timing out forever.
/// A paused Redis process still has its kernel acknowledge, and keeps its connection.
#[cfg(target_os = "linux")]
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands queued toward the connection's writer before callers wait for room (the
/// crate's default, 50, is small for a gateway's concurrency).
const PIPELINE_BUFFER: usize = 1024;

/// One limit of a request: the bucket's key (without [`KEY_PREFIX`]), the emission
/// interval `T` (period / N) and the burst `B` (requests admitted at once from a full
/// bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisLimit<'a> {
    pub key: &'a str,
    pub interval: Duration,
    pub burst: u32,
}

/// One limit's state after a decision: the same fields the local store reports, so the
/// rate-limit headers mean the same whichever store decided. With several limits the
/// request is admitted only when every limit had room ([`RedisDecision::admitted`]).
pub use super::store::LimitState;

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisDecision {
    /// Every limit had room, and every bucket was updated. When false, none was.
    pub admitted: bool,
    /// One per [`RedisLimit`], in the order given.
    pub limits: Vec<LimitState>,
}

/// A Redis URL the store will not use. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("not a Redis URL: {0}")]
    BadUrl(String),
    #[error(
        "the Redis URL has a password in it: write the URL without it and give the password from a file or an environment variable"
    )]
    InlinePassword,
    #[error(
        "`{0}://` (TLS) is not supported: ficus is built without a TLS client for Redis; reach Redis over a private network or through a local TLS tunnel, with a redis:// URL"
    )]
    TlsUnsupported(String),
    #[error("unsupported URL scheme `{0}`: use redis:// (or redis+unix:// for a socket)")]
    Scheme(String),
    #[error("the Redis timeout must be more than zero")]
    ZeroTimeout,
}

/// Why a check got no decision. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No answer within the store's timeout (Redis hung or overloaded, or a connection
    /// attempt that did not complete).
    #[error("Redis did not answer in time")]
    Timeout,
    /// No connection: refused, dropped, or waiting before the next reconnect attempt.
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    /// Redis refused the credentials, or wants some (NOAUTH, WRONGPASS, NOPERM).
    #[error("Redis refused the credentials: {0}")]
    Auth(String),
    /// Redis answered with an error or with a reply the script never gives.
    #[error("unexpected answer from Redis: {0}")]
    Protocol(String),
    /// A limit the store cannot apply (a caller's bug: config compilation checks these).
    #[error("invalid rate limit: {0}")]
    InvalidLimit(String),
}

/// The shared GCRA store; clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    connection: AsyncConnectionConfig,
    timeout: Duration,
    /// The URL, for messages (it has no password: those are refused).
    target: String,
    /// Only to scrub it from error text, should Redis or the client ever echo it.
    password: Option<String>,
    script_hash: String,
    link: Mutex<LinkState>,
    healthy: AtomicBool,
}

struct LinkState {
    link: Link,
    /// The pause after the next failed attempt.
    pause: Duration,
    /// Numbers connections, so that a failed call drops only the connection it used.
    next_id: u64,
}

enum Link {
    /// No connection and no attempt: the next call connects, and waits for it.
    Idle,
    /// One attempt in flight; `done` fires when it ends. `wait`: callers wait for it
    /// (first use, or a connection that just dropped); after a failed attempt they do not.
    Connecting {
        done: watch::Receiver<()>,
        wait: bool,
    },
    Up {
        conn: MultiplexedConnection,
        id: u64,
    },
    /// The last attempt failed; calls fail with `error` until `retry_at`.
    Down {
        error: StoreError,
        retry_at: Instant,
    },
}

impl RedisStore {
    /// A store for `url` (`redis://host:port/db`, `redis+unix:///path`), authenticating with
    /// `password` (read by the caller from a file or an environment variable), each call
    /// bounded by `timeout`. Does not connect: the first [`check`](Self::check) does, and
    /// the store reconnects by itself. Fails only on a URL it cannot use: unparseable, with
    /// an inline password, or `rediss://` (no TLS support).
    pub fn new(
        url: &str,
        password: Option<String>,
        timeout: Duration,
    ) -> Result<RedisStore, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let parsed = url::Url::parse(url).map_err(|e| ConfigError::BadUrl(e.to_string()))?;
        // `redis://user:PASSWORD@host`, or `redis+unix:///path?pass=PASSWORD`.
        if parsed.password().is_some() || parsed.query_pairs().any(|(k, _)| k == "pass") {
            return Err(ConfigError::InlinePassword);
        }
        match parsed.scheme() {
            "redis" | "valkey" | "redis+unix" | "unix" => {}
            tls @ ("rediss" | "valkeys") => return Err(ConfigError::TlsUnsupported(tls.into())),
            other => return Err(ConfigError::Scheme(other.into())),
        }
        let mut info = url
            .into_connection_info()
            .map_err(|e| ConfigError::BadUrl(e.to_string()))?;
        let password = password.filter(|p| !p.is_empty());
        if let Some(p) = &password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let tcp = TcpSettings::default().set_nodelay(true);
        #[cfg(target_os = "linux")]
        let tcp = tcp.set_user_timeout(DEAD_PEER_TIMEOUT);
        let info = info.set_tcp_settings(tcp);
        let client = Client::open(info).map_err(|e| ConfigError::BadUrl(e.to_string()))?;
        // The connection attempt (TCP, AUTH, SELECT) runs in a task of its own, outside
        // any call's timeout: it gets the same bound. Commands are bounded per call by
        // `check`, so the connection needs no response timeout of its own.
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_pipeline_buffer_size(PIPELINE_BUFFER);
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                connection,
                timeout,
                target: url.to_string(),
                password,
                script_hash: redis::Script::new(SCRIPT).get_hash().to_string(),
                link: Mutex::new(LinkState {
                    link: Link::Idle,
                    pause: FIRST_RECONNECT_PAUSE,
                    next_id: 0,
                }),
                healthy: AtomicBool::new(false),
            }),
        })
    }

    /// Decides one request against `limits`: admitted only when every limit has room,
    /// and then every bucket is updated; otherwise none is. One script call, one round
    /// trip, bounded by the store's timeout. Must run on a tokio runtime.
    pub async fn check(&self, limits: &[RedisLimit<'_>]) -> Result<RedisDecision, StoreError> {
        if limits.is_empty() {
            return Ok(RedisDecision {
                admitted: true,
                limits: Vec::new(),
            });
        }
        let args = ScriptArgs::new(limits)?;
        let result = match tokio::time::timeout(self.inner.timeout, self.inner.run(&args)).await {
            Ok(Ok(reply)) => parse_reply(&reply, limits.len()),
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Err(StoreError::Timeout),
        };
        self.inner.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Whether the last call got a decision from Redis (false before the first call).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// The store's URL (it holds no password).
    pub fn url(&self) -> &str {
        &self.inner.target
    }

    /// The bound on each call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.target)
            .field(
                "password",
                &self.inner.password.as_ref().map(|_| "redacted"),
            )
            .field("timeout", &self.inner.timeout)
            .field("healthy", &self.healthy())
            .finish()
    }
}

/// The script's keys and arguments, checked and encoded once per call.
struct ScriptArgs {
    keys: Vec<String>,
    /// Per limit: interval in nanoseconds, burst.
    args: Vec<u64>,
}

impl ScriptArgs {
    fn new(limits: &[RedisLimit<'_>]) -> Result<ScriptArgs, StoreError> {
        let mut keys = Vec::with_capacity(limits.len());
        let mut args = Vec::with_capacity(2 * limits.len());
        for l in limits {
            // The key stays out of the message: it may be made of a client's identity.
            if l.interval.is_zero() {
                return Err(StoreError::InvalidLimit("the interval is zero".into()));
            }
            if l.burst == 0 {
                return Err(StoreError::InvalidLimit("the burst is zero".into()));
            }
            let window = l.interval.as_nanos() * u128::from(l.burst);
            if window > MAX_WINDOW.as_nanos() {
                return Err(StoreError::InvalidLimit(format!(
                    "burst × interval is over {} days",
                    MAX_WINDOW.as_secs() / 86_400
                )));
            }
            keys.push(format!("{KEY_PREFIX}{}", l.key));
            // Below MAX_WINDOW, so within u64.
            args.push(l.interval.as_nanos() as u64);
            args.push(u64::from(l.burst));
        }
        Ok(ScriptArgs { keys, args })
    }

    /// `EVALSHA sha` or `EVAL script`, with the keys and arguments.
    fn command(&self, verb: &str, script: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(script).arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k);
        }
        for a in &self.args {
            cmd.arg(*a);
        }
        cmd
    }
}

impl Inner {
    /// The script's reply. Unbounded: `check` puts the timeout around it.
    async fn run(self: &Arc<Self>, args: &ScriptArgs) -> Result<Vec<i64>, StoreError> {
        let (mut conn, id) = self.connection().await?;
        let evalsha = args.command("EVALSHA", &self.script_hash);
        match evalsha.query_async::<Vec<i64>>(&mut conn).await {
            Ok(reply) => Ok(reply),
            // Not cached (a restarted or flushed Redis): EVAL runs it and caches it.
            Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => args
                .command("EVAL", SCRIPT)
                .query_async::<Vec<i64>>(&mut conn)
                .await
                .map_err(|e| self.failed(e, Some(id))),
            Err(e) => Err(self.failed(e, Some(id))),
        }
    }

    /// The current connection, connecting when there is none (see [`Link`]).
    async fn connection(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64), StoreError> {
        loop {
            let mut done = {
                let mut state = self.lock();
                // The attempt's task records its result before it lets `done` go; gone
                // without a result, it was dropped (its runtime shut down): start over.
                if matches!(&state.link, Link::Connecting { done, .. } if done.has_changed().is_err())
                {
                    state.link = Link::Idle;
                }
                match &state.link {
                    Link::Up { conn, id } => return Ok((conn.clone(), *id)),
                    Link::Connecting { done, wait: true } => done.clone(),
                    Link::Connecting { wait: false, .. } => {
                        return Err(StoreError::Unreachable("reconnecting".into()))
                    }
                    Link::Down { error, retry_at } if Instant::now() < *retry_at => {
                        return Err(error.clone())
                    }
                    // After a failure only the caller that starts the attempt waits for
                    // it; the others fail at once.
                    Link::Down { .. } => self.start_connecting(&mut state, false),
                    Link::Idle => self.start_connecting(&mut state, true),
                }
            };
            // Fires when the attempt ends (its sender is dropped): look again.
            let _ = done.changed().await;
        }
    }

    /// Starts the one connection attempt in a task of its own: a caller that times out
    /// does not cancel it.
    fn start_connecting(
        self: &Arc<Self>,
        state: &mut LinkState,
        wait: bool,
    ) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        state.link = Link::Connecting {
            done: rx.clone(),
            wait,
        };
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let result = inner
                .client
                .get_multiplexed_async_connection_with_config(&inner.connection)
                .await;
            inner.connected(result);
            drop(tx);
        });
        rx
    }

    fn connected(&self, result: Result<MultiplexedConnection, RedisError>) {
        let error = result.as_ref().err().map(|e| self.classify(e));
        let mut state = self.lock();
        match (result, error) {
            (Ok(conn), _) => {
                let id = state.next_id;
                state.next_id += 1;
                state.pause = FIRST_RECONNECT_PAUSE;
                state.link = Link::Up { conn, id };
            }
            (Err(_), error) => {
                let pause = state.pause;
                state.pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                state.link = Link::Down {
                    error: error.unwrap_or(StoreError::Unreachable("connection failed".into())),
                    retry_at: Instant::now() + pause,
                };
                self.healthy.store(false, Ordering::Relaxed);
            }
        }
    }

    /// A failed command: the connection `id` it used is dropped when the error says the
    /// connection is gone (the next call reconnects).
    fn failed(&self, e: RedisError, id: Option<u64>) -> StoreError {
        let gone = e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error();
        if let (true, Some(id)) = (gone, id) {
            let mut state = self.lock();
            if matches!(state.link, Link::Up { id: current, .. } if current == id) {
                state.link = Link::Idle;
            }
        }
        self.classify(&e)
    }

    fn classify(&self, e: &RedisError) -> StoreError {
        let text = redact(&e.to_string(), self.password.as_deref());
        let auth_code = matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if e.kind() == ErrorKind::AuthenticationFailed || auth_code {
            StoreError::Auth(text)
        } else if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            StoreError::Unreachable(text)
        } else {
            StoreError::Protocol(text)
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent state.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `text` with every occurrence of `password` replaced.
fn redact(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() && text.contains(p) => text.replace(p, "<redacted>"),
        _ => text.to_string(),
    }
}

/// The script's reply: `[admitted, (admitted_i, remaining, reset_ns, retry_after_ns) * n]`.
fn parse_reply(reply: &[i64], n: usize) -> Result<RedisDecision, StoreError> {
    if reply.len() != 1 + 4 * n {
        return Err(StoreError::Protocol(format!(
            "the rate-limit script answered {} numbers for {n} limits",
            reply.len()
        )));
    }
    let nanos = |v: i64| Duration::from_nanos(v.max(0) as u64);
    let limits = reply[1..]
        .chunks_exact(4)
        .map(|c| LimitState {
            admitted: c[0] == 1,
            remaining: c[1].max(0) as u64,
            reset: nanos(c[2]),
            retry_after: nanos(c[3]),
        })
        .collect();
    Ok(RedisDecision {
        admitted: reply[0] == 1,
        limits,
    })
}

#[cfg(test)]
mod tests;
