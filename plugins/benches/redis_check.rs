//! What one rate-limit decision against a local Redis costs: `RedisStore::check` (one
//! EVALSHA round trip over loopback). Starts its own redis-server (Debian `redis-server`,
//! installed by tests/run.sh) on a free loopback port and stops it at the end.
//!
//! `cargo bench -p ficus-plugins --bench redis_check`
//!
//! First a plain measurement, printed: p50/p99 of 20,000 sequential calls (one limit, and
//! two limits), then throughput and p50/p99 with 32 concurrent callers on a 2-thread
//! runtime for 3 s. Then criterion's sequential latency of one call. Numbers:
//! docs/rate-limiting.md (One quota across gateways: Redis).

use criterion::Criterion;
use ficus_plugins::ratelimit::redis::{RedisLimit, RedisStore};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A redis-server of our own; killed (by pid, it is our child) on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run /usr/bin/redis-server (tests/run.sh installs it)");
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut line = String::new();
        s.write_all(b"PING\r\n").is_ok()
            && BufReader::new(s).read_line(&mut line).is_ok()
            && line.starts_with("+PONG")
    }

    fn store(&self) -> RedisStore {
        let url = format!("redis://127.0.0.1:{}", self.port);
        RedisStore::new(&url, None, Duration::from_secs(1)).expect("store")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A limit that admits everything the bench sends: it measures the call, not refusals.
fn wide(key: &str) -> RedisLimit<'_> {
    RedisLimit {
        key,
        interval: Duration::from_nanos(1),
        burst: 1_000_000_000,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sequential(rt: &tokio::runtime::Runtime, store: &RedisStore, limits: &[RedisLimit<'_>]) {
    const CALLS: usize = 20_000;
    let mut took = Vec::with_capacity(CALLS);
    rt.block_on(async {
        for _ in 0..CALLS {
            let t = Instant::now();
            black_box(store.check(limits).await.expect("check"));
            took.push(t.elapsed());
        }
    });
    took.sort();
    println!(
        "sequential, {} limit(s), {CALLS} calls: p50 {:?}, p99 {:?}, max {:?}",
        limits.len(),
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        took[CALLS - 1]
    );
}

fn concurrent(rt: &tokio::runtime::Runtime, store: &RedisStore) {
    const CALLERS: usize = 32;
    const RUN: Duration = Duration::from_secs(3);
    let calls = Arc::new(AtomicU64::new(0));
    let took = rt.block_on(async {
        let deadline = Instant::now() + RUN;
        let tasks: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (store, calls) = (store.clone(), calls.clone());
                tokio::spawn(async move {
                    let key = format!("bench-{i}");
                    let mut took = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        black_box(store.check(&[wide(&key)]).await.expect("check"));
                        took.push(t.elapsed());
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    took
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("caller"));
        }
        all
    });
    let mut took = took;
    took.sort();
    let n = calls.load(Ordering::Relaxed);
    println!(
        "{CALLERS} concurrent callers, {RUN:?}: {n} calls, {:.0}/s; p50 {:?}, p99 {:?}",
        n as f64 / RUN.as_secs_f64(),
        percentile(&took, 0.50),
        percentile(&took, 0.99)
    );
}

fn main() {
    let server = Server::start();
    let store = server.store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    sequential(&rt, &store, &[wide("seq")]);
    sequential(&rt, &store, &[wide("seq-a"), wide("seq-b")]);
    concurrent(&rt, &store);

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("redis_check");
    group.bench_function("one limit, sequential", |b| {
        b.iter(|| rt.block_on(store.check(black_box(&[wide("crit")]))))
    });
    group.finish();
    c.final_summary();
}
