//! Idle HTTP/1 connections kept for shadow exchanges, by the copy tasks themselves.
//!
//! pingora's connection pool watches every idle connection with a task of its own: giving
//! a connection back spawns the watcher (a task, a channel, a timer), taking it again
//! wakes and ends it. For the primary request that is pingora's business; for a shadow
//! copy, which is pure overhead on the gateway's CPU, it was about a third of what a copy
//! costs (callgrind: ~15k of ~54k instructions per copy). Here an idle connection is a
//! stream in a list with the time it went idle; whether it is still usable is checked
//! when it is taken (a read that must find nothing to read), and a sweeper closes those
//! idle too long, so no socket is held for a server that went away.
//!
//! Bounded: at most [`PER_PEER`] idle connections per upstream (what the copies of one
//! route need at once), [`TOTAL`] in all. HTTP/2 sessions are not kept here: pingora
//! multiplexes them itself.

use pingora_core::protocols::http::v1::client::HttpSession as Http1Session;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Idle connections kept per upstream (a peer: address, TLS settings and the rest that
/// decide whether a connection fits).
pub const PER_PEER: usize = 64;
/// Idle connections kept in all.
pub const TOTAL: usize = 1024;
/// How long a connection may stay idle when the peer sets no idle timeout.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
/// How often the sweeper looks for connections idle too long.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct Idle {
    stream: Stream,
    since: Instant,
    idle_for: Duration,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= self.idle_for
    }
}

#[derive(Default)]
struct Kept {
    by_peer: HashMap<u64, Vec<Idle>>,
    total: usize,
}

/// The process's idle connections for shadow exchanges.
#[derive(Default)]
pub struct Pool {
    kept: Mutex<Kept>,
}

/// The process's pool; its sweeper starts with the first connection kept.
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

impl Pool {
    /// A usable idle connection to `peer`, if one is kept: the most recently used first
    /// (the one least likely to have been closed by the server).
    pub fn take(&self, peer: &HttpPeer) -> Option<Http1Session> {
        let stream = self.take_stream(peer.reuse_hash())?;
        Some(Http1Session::new_with_options(stream, peer))
    }

    fn take_stream(&self, key: u64) -> Option<Stream> {
        let now = Instant::now();
        loop {
            let idle = {
                let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
                let list = kept.by_peer.get_mut(&key)?;
                let idle = list.pop();
                if list.is_empty() {
                    kept.by_peer.remove(&key);
                }
                let idle = idle?;
                kept.total -= 1;
                idle
            };
            // Dropped (closed) outside the lock when it is not usable.
            let Idle {
                mut stream,
                since,
                idle_for,
            } = idle;
            if now.saturating_duration_since(since) < idle_for && still_open(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps a connection whose exchange is complete, if it may be reused and there is
    /// room; otherwise it is closed.
    pub async fn put(&'static self, mut session: Http1Session, peer: &HttpPeer) {
        session.respect_keepalive();
        let Some(stream) = session.reuse().await else {
            return;
        };
        let idle_for = peer.options.idle_timeout.unwrap_or(DEFAULT_IDLE);
        if idle_for.is_zero() {
            return;
        }
        if self.keep(peer.reuse_hash(), stream, idle_for) {
            self.start_sweeper();
        }
    }

    /// Keeps `stream` under `key` if there is room; `true` when the pool was empty before
    /// (its sweeper has to be started).
    fn keep(&self, key: u64, stream: Stream, idle_for: Duration) -> bool {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = kept.total == 0;
        if kept.total >= TOTAL {
            return false;
        }
        let list = kept.by_peer.entry(key).or_default();
        if list.len() >= PER_PEER {
            return false;
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
            idle_for,
        });
        kept.total += 1;
        was_empty
    }

    /// Closes connections idle too long or closed by their server. Returns how many are
    /// still kept.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut closed = Vec::new();
        let left = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let mut removed = 0;
            kept.by_peer.retain(|_, list| {
                let before = list.len();
                let mut i = 0;
                while i < list.len() {
                    if list[i].expired(now) || !still_open(&mut list[i].stream) {
                        closed.push(list.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                removed += before - list.len();
                !list.is_empty()
            });
            kept.total -= removed;
            kept.total
        };
        drop(closed);
        left
    }

    /// Idle connections kept now.
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// One sweeper task while connections are kept: it ends when the pool is empty and the
    /// next connection kept starts another.
    fn start_sweeper(&'static self) {
        static RUNNING: Mutex<bool> = Mutex::new(false);
        {
            let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            if *running {
                return;
            }
            *running = true;
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                // Decided under the flag's lock: a `put` that finds the pool empty after
                // this sweep starts a new sweeper only once this one has said it ends.
                let done = {
                    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
                    let done = self.sweep() == 0;
                    if done {
                        *running = false;
                    }
                    done
                };
                if done {
                    return;
                }
            }
        });
    }
}

/// Whether an idle connection can carry another request: its server has neither closed it
/// nor sent anything unasked (which would be read as the next answer).
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // Unconstrained: a task out of its cooperative budget would see "pending" even when
    // the read is ready, and keep a closed connection. Polled once, with a waker that
    // does nothing: the connection is idle, no task waits on it.
    let read = pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    read.poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::protocols::l4::stream::Stream as L4Stream;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected client stream and its server end.
    async fn pair(l: &TcpListener) -> (Stream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Box::new(L4Stream::from(client)), server)
    }

    #[tokio::test]
    async fn a_kept_connection_is_taken_unless_closed_or_idle_too_long() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let (a, _a_server) = pair(&l).await;
        assert!(pool.keep(1, a, Duration::from_secs(60)), "first one kept");
        assert!(pool.take_stream(1).is_some());
        assert!(pool.take_stream(1).is_none(), "taken once");
        assert!(pool.take_stream(2).is_none(), "another peer's key");

        // Closed by the server while idle: not handed out, and gone from the pool.
        let (b, b_server) = pair(&l).await;
        pool.keep(1, b, Duration::from_secs(60));
        drop(b_server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take_stream(1).is_none());
        assert_eq!(pool.kept(), 0);

        // Idle past its time: swept.
        let (c, _c_server) = pair(&l).await;
        pool.keep(1, c, Duration::from_millis(10));
        let (d, _d_server) = pair(&l).await;
        pool.keep(2, d, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(pool.sweep(), 1, "the expired one closed, the other kept");
        assert!(pool.take_stream(1).is_none());
        assert!(pool.take_stream(2).is_some());
    }

    #[tokio::test]
    async fn the_pool_is_bounded_per_peer() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::default();
        let mut servers = Vec::new();
        for _ in 0..PER_PEER + 3 {
            let (s, server) = pair(&l).await;
            servers.push(server);
            pool.keep(7, s, Duration::from_secs(60));
        }
        assert_eq!(pool.kept(), PER_PEER);
    }
}
