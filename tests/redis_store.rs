//! The rate limiter's Redis store (`ficus_plugins::ratelimit::redis`) against a real
//! redis-server: exactness under concurrency from two stores (two gateways), the values a
//! decision reports, several limits all or nothing, sub-millisecond intervals, expiry,
//! and the failures: a paused Redis, a Redis stopped and started again, a flushed script
//! cache, passwords.

mod common;
use common::*;
use ficus_plugins::ratelimit::redis::{
    ConfigError, RedisDecision, RedisLimit, RedisStore, StoreError, KEY_PREFIX,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(1);

fn store(redis: &Redis) -> RedisStore {
    RedisStore::new(&redis.url(), None, TIMEOUT).unwrap()
}

fn limit(key: &str, interval: Duration, burst: u32) -> RedisLimit<'_> {
    RedisLimit {
        key,
        interval,
        burst,
    }
}

async fn check(store: &RedisStore, limits: &[RedisLimit<'_>]) -> RedisDecision {
    store.check(limits).await.unwrap()
}

/// The stored TAT of bucket `key`, as the script wrote it.
fn stored(redis: &Redis, key: &str) -> Option<String> {
    redis.ok(&["GET", &format!("{KEY_PREFIX}{key}")]).bulk()
}

/// What `tasks` tasks on each store admit on one limit, calling as fast as they can for
/// `run`: (admitted, calls, elapsed). The stores are connected first, so that elapsed
/// time is calling time.
async fn hammer(
    stores: &[RedisStore],
    tasks: usize,
    key: &'static str,
    interval: Duration,
    burst: u32,
    run: Duration,
) -> (u64, u64, Duration) {
    for s in stores {
        check(s, &[limit("warm-up", interval, burst)]).await;
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let mut handles = Vec::new();
    for s in stores {
        for _ in 0..tasks {
            let (s, admitted, calls) = (s.clone(), admitted.clone(), calls.clone());
            handles.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let d = check(&s, &[limit(key, interval, burst)]).await;
                    calls.fetch_add(1, Ordering::Relaxed);
                    if d.admitted {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = start.elapsed();
    (
        admitted.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
        elapsed,
    )
}

/// Checks the GCRA bound over a run: at most B + floor(elapsed / T), and at least 99% of
/// it (the callers keep the bucket empty). The client's elapsed time contains Redis's
/// window, so the upper bound holds exactly.
fn assert_exact(admitted: u64, calls: u64, elapsed: Duration, interval: Duration, burst: u32) {
    let bound = u64::from(burst) + (elapsed.as_nanos() / interval.as_nanos()) as u64;
    eprintln!("admitted {admitted} of {calls} calls in {elapsed:?}; bound {bound}");
    assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    assert!(
        admitted * 100 >= bound * 99,
        "admitted {admitted} < 99% of bound {bound} ({calls} calls: {})",
        if calls < 2 * bound {
            "too few to keep the bucket empty, is the machine overloaded?"
        } else {
            "enough to keep the bucket empty"
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_limit_exactly() {
    let redis = Redis::start();
    let stores = [store(&redis), store(&redis)];
    // 1000/s, burst 50, for 3 s: about 3,050 admitted.
    let interval = Duration::from_millis(1);
    let (admitted, calls, elapsed) =
        hammer(&stores, 8, "shared", interval, 50, Duration::from_secs(3)).await;
    assert_exact(admitted, calls, elapsed, interval, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_millisecond_intervals() {
    let redis = Redis::start();
    let s = store(&redis);
    // 6000/s: T = 166.666 µs, kept to the nanosecond (166,666 ns).
    let interval = Duration::from_secs(1) / 6000;
    assert_eq!(interval, Duration::from_nanos(166_666));
    let d = check(&s, &[limit("fine", interval, 10)]).await;
    // From an empty bucket the TAT is now + T exactly: reset is T to the nanosecond, and
    // the stored TAT keeps the nanoseconds below the microsecond.
    assert!(d.admitted);
    assert_eq!(d.limits[0].reset, interval);
    assert_eq!(d.limits[0].remaining, 9);
    let tat = stored(&redis, "fine").unwrap();
    assert!(tat.ends_with(".666"), "stored TAT {tat}");

    // Six requests in one call, at one instant: the TAT moves by exactly 6 T.
    let six = [limit("six", interval, 6); 6];
    let d = check(&s, &six).await;
    assert!(d.admitted);
    assert_eq!(d.limits[5].reset, interval * 6);
    assert_eq!(d.limits[5].remaining, 0);
    // Seven at one instant do not fit in six: refused, one T short, nothing stored.
    let seven = [limit("seven", interval, 6); 7];
    let d = check(&s, &seven).await;
    assert!(!d.admitted && d.limits[5].admitted && !d.limits[6].admitted);
    assert_eq!(d.limits[6].retry_after, interval);
    assert_eq!(stored(&redis, "seven"), None);

    // Under load, from two stores: 2400/s (T = 416.666 µs). Calls reach Redis in batches
    // (one pipelined write per round trip, a millisecond or more apart on a busy machine):
    // a burst of 100 (42 ms) keeps the tokens that accrue between two batches. With a
    // burst of 1, most would be lost by the limit's own definition (a full bucket holds
    // one), and the 99% floor would not hold.
    let interval = Duration::from_secs(1) / 2400;
    let stores = [s.clone(), store(&redis)];
    let (admitted, calls, elapsed) =
        hammer(&stores, 8, "fast", interval, 100, Duration::from_secs(2)).await;
    assert_exact(admitted, calls, elapsed, interval, 100);
}

#[tokio::test]
async fn a_full_bucket_admits_exactly_the_burst() {
    let redis = Redis::start();
    let s = store(&redis);
    // One per minute: nothing comes back during the test.
    let l = [limit("burst", Duration::from_secs(60), 5)];
    let mut admitted = 0;
    for _ in 0..20 {
        if check(&s, &l).await.admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

/// `actual` is `expected` less the time the test took so far (at most `slack`).
fn assert_near(actual: Duration, expected: Duration, slack: Duration, what: &str) {
    assert!(
        actual <= expected && actual + slack >= expected,
        "{what}: {actual:?}, expected {expected:?} (less at most {slack:?})"
    );
}

#[tokio::test]
async fn decisions_report_remaining_reset_and_retry_after() {
    let redis = Redis::start();
    let s = store(&redis);
    let t = Duration::from_secs(10);
    let l = [limit("seq", t, 3)];
    let start = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(check(&s, &l).await);
    }
    let slack = start.elapsed() + Duration::from_millis(1);
    // Admitted three times: remaining 2, 1, 0; the bucket is full again T, 2T, 3T later.
    for (i, d) in seen[..3].iter().enumerate() {
        let st = d.limits[0];
        assert!(d.admitted && st.admitted, "call {i}");
        assert_eq!(st.remaining, 2 - i as u64, "remaining after call {i}");
        assert_near(st.reset, t * (i as u32 + 1), slack, "reset");
        assert_eq!(st.retry_after, Duration::ZERO);
    }
    // Refused: nothing taken, the next request fits T after the first one.
    let refused = &seen[3];
    let st = refused.limits[0];
    assert!(!refused.admitted && !st.admitted);
    assert_eq!(st.remaining, 0);
    assert_near(st.reset, 3 * t, slack, "reset when refused");
    assert_near(st.retry_after, t, slack, "retry_after");
}

#[tokio::test]
async fn several_limits_are_all_or_nothing() {
    let redis = Redis::start();
    let s = store(&redis);
    let minute = Duration::from_secs(60);
    let both = [limit("wide", minute, 10), limit("narrow", minute, 2)];
    assert!(check(&s, &both).await.admitted);
    assert!(check(&s, &both).await.admitted);
    let wide_before = stored(&redis, "wide").unwrap();

    // The narrow limit is spent: refused, and the wide bucket is left as it was.
    for _ in 0..5 {
        let d = check(&s, &both).await;
        assert!(!d.admitted);
        assert!(d.limits[0].admitted, "the wide limit had room");
        assert_eq!(d.limits[0].remaining, 8);
        assert_eq!(d.limits[0].retry_after, Duration::ZERO);
        assert!(!d.limits[1].admitted);
        assert_eq!(d.limits[1].remaining, 0);
        assert!(d.limits[1].retry_after > Duration::ZERO);
    }
    assert_eq!(stored(&redis, "wide").unwrap(), wide_before);
    // Alone, the wide limit still has 8 of its 10: the refusals took nothing.
    let d = check(&s, &both[..1]).await;
    assert!(d.admitted);
    assert_eq!(d.limits[0].remaining, 7);

    // The same bucket twice in one request counts twice.
    let twice = [limit("twice", minute, 3), limit("twice", minute, 3)];
    assert_eq!(check(&s, &twice).await.limits[1].remaining, 1);
    let d = check(&s, &twice).await;
    assert!(!d.admitted && d.limits[0].admitted && !d.limits[1].admitted);
}

#[tokio::test]
async fn buckets_expire_when_full_again() {
    let redis = Redis::start();
    let s = store(&redis);
    let key = format!("{KEY_PREFIX}idle");
    let t = Duration::from_millis(200);
    let l = [limit("idle", t, 3)];
    check(&s, &l).await;
    let pttl = redis.ok(&["PTTL", &key]).int();
    assert!((1..=200).contains(&pttl), "PTTL {pttl} after one request");
    check(&s, &l).await;
    check(&s, &l).await;
    let pttl = redis.ok(&["PTTL", &key]).int();
    assert!((400..=600).contains(&pttl), "PTTL {pttl} after three");
    // A long limit keeps its bucket about as long as it takes to fill.
    check(&s, &[limit("hourly", Duration::from_secs(3600), 1)]).await;
    let ttl = redis.ok(&["TTL", &format!("{KEY_PREFIX}hourly")]).int();
    assert!((3590..=3600).contains(&ttl), "TTL {ttl}");

    // Gone once full again, and then the bucket starts over.
    poll_until(Duration::from_secs(3), || {
        (redis.ok(&["EXISTS", &key]).int() == 0).then_some(())
    })
    .expect("the bucket key expires");
    let d = check(&s, &l).await;
    assert!(d.admitted);
    assert_eq!(d.limits[0].remaining, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_times_out() {
    let mut redis = Redis::start();
    let timeout = Duration::from_millis(200);
    let s = RedisStore::new(&redis.url(), None, timeout).unwrap();
    let l = [limit("paused", Duration::from_millis(1), 1000)];
    check(&s, &l).await;
    assert!(s.healthy());

    redis.pause();
    let calls = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = s
                .check(&[limit("paused", Duration::from_millis(1), 1000)])
                .await;
            (r, start.elapsed())
        })
    });
    for c in calls.collect::<Vec<_>>() {
        let (r, took) = c.await.unwrap();
        assert_eq!(r, Err(StoreError::Timeout));
        assert!(
            took >= timeout && took < 2 * timeout,
            "timed out after {took:?}"
        );
    }
    assert!(!s.healthy());

    redis.resume();
    let back = poll_async(Duration::from_secs(3), || s.check(&l)).await;
    assert!(back.is_some(), "calls succeed again after SIGCONT");
    assert!(s.healthy());
}

/// Calls `f` until it succeeds, for up to `timeout`: the first success, or `None`.
async fn poll_async<F, Fut>(timeout: Duration, mut f: F) -> Option<RedisDecision>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<RedisDecision, StoreError>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(d) = f().await {
            return Some(d);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Calls for `run` while Redis is down: every call fails, each well within the timeout.
async fn assert_fails_fast(s: &RedisStore, l: &[RedisLimit<'_>], run: Duration) {
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < run {
        let t = Instant::now();
        let r = s.check(l).await;
        assert!(
            matches!(r, Err(StoreError::Unreachable(_))),
            "while down: {r:?}"
        );
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "a call took {took:?} while Redis was down"
        );
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(calls > 10);
    assert!(!s.healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back() {
    let mut redis = Redis::start();
    redis.stop();
    // Built while Redis is down: no connection is made, nothing fails.
    let s = store(&redis);
    let l = [limit("down", Duration::from_millis(1), 1000)];
    assert_fails_fast(&s, &l, Duration::from_millis(500)).await;

    redis.start_again();
    let restarted = Instant::now();
    assert!(poll_async(Duration::from_secs(3), || s.check(&l))
        .await
        .is_some());
    eprintln!("first success {:?} after the start", restarted.elapsed());
    assert!(restarted.elapsed() < Duration::from_millis(2_500));
    assert!(s.healthy());

    // The connection drops under a running store, and comes back by itself.
    redis.stop();
    let r = s.check(&l).await;
    assert!(matches!(r, Err(StoreError::Unreachable(_))), "{r:?}");
    assert_fails_fast(&s, &l, Duration::from_secs(2)).await;
    redis.start_again();
    let restarted = Instant::now();
    assert!(poll_async(Duration::from_secs(3), || s.check(&l))
        .await
        .is_some());
    eprintln!("first success {:?} after the restart", restarted.elapsed());
    assert!(restarted.elapsed() < Duration::from_millis(2_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reconnect_storm_while_redis_fails() {
    // A "Redis" that accepts connections and closes them at once: every connection
    // attempt fails, quickly, and is counted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = attempts.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let s = RedisStore::new(&format!("redis://127.0.0.1:{port}"), None, TIMEOUT).unwrap();
    let run = Duration::from_secs(2);
    let deadline = Instant::now() + run;
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = s
                        .check(&[limit("storm", Duration::from_millis(1), 10)])
                        .await;
                    assert!(r.is_err(), "{r:?}");
                    assert!(
                        t.elapsed() < Duration::from_millis(100),
                        "{:?}",
                        t.elapsed()
                    );
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for c in callers {
        calls += c.await.unwrap();
    }
    let attempts = attempts.load(Ordering::SeqCst);
    eprintln!("{calls} calls, {attempts} connection attempts in {run:?}");
    // Pauses of 100, 200, 400, 800 ms, then 1 s: about 6 attempts in 2 s.
    assert!(calls > 1000, "{calls} calls");
    assert!((2..=8).contains(&attempts), "{attempts} attempts");
    assert!(!s.healthy());
}

/// `calls=N` of command `name` in INFO commandstats (0 when never called).
fn command_calls(redis: &Redis, name: &str) -> u64 {
    let info = redis.ok(&["INFO", "commandstats"]).bulk().unwrap();
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flushed_script_cache_is_refilled() {
    let redis = Redis::start();
    let s = store(&redis);
    let l = [limit("flush", Duration::from_secs(60), 10)];
    // The first call finds no script (a new Redis): EVALSHA, then EVAL.
    assert_eq!(check(&s, &l).await.limits[0].remaining, 9);
    assert_eq!(command_calls(&redis, "eval"), 1);
    assert_eq!(check(&s, &l).await.limits[0].remaining, 8);
    assert_eq!(command_calls(&redis, "eval"), 1, "cached: EVALSHA only");
    let evalsha = command_calls(&redis, "evalsha");
    assert_eq!(evalsha, 2);

    assert_eq!(
        redis.ok(&["SCRIPT", "FLUSH"]),
        RedisReply::Simple("OK".into())
    );
    // One call, still one decision: NOSCRIPT, then EVAL, which caches it again.
    assert_eq!(check(&s, &l).await.limits[0].remaining, 7);
    assert_eq!(command_calls(&redis, "eval"), 2);
    assert_eq!(check(&s, &l).await.limits[0].remaining, 6);
    assert_eq!(command_calls(&redis, "eval"), 2);
    assert_eq!(command_calls(&redis, "evalsha"), evalsha + 2);
}

#[tokio::test]
async fn passwords() {
    let redis = Redis::start_with_password("s3cret-pw");
    let l = [limit("auth", Duration::from_secs(60), 10)];

    let good = RedisStore::new(&redis.url(), Some("s3cret-pw".into()), TIMEOUT).unwrap();
    assert!(check(&good, &l).await.admitted);

    let none = store(&redis);
    let r = none.check(&l).await;
    assert!(matches!(r, Err(StoreError::Auth(_))), "{r:?}");

    let wrong = RedisStore::new(&redis.url(), Some("not-it-pw".into()), TIMEOUT).unwrap();
    let e = wrong.check(&l).await.unwrap_err();
    assert!(matches!(e, StoreError::Auth(_)), "{e:?}");
    assert!(!e.to_string().contains("not-it-pw"), "{e}");
    assert!(!format!("{wrong:?}").contains("not-it-pw"));

    let inline = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port());
    let e = RedisStore::new(&inline, None, TIMEOUT).unwrap_err();
    assert_eq!(e, ConfigError::InlinePassword);
    assert!(!e.to_string().contains("s3cret-pw"));
    let e = RedisStore::new(
        &format!("rediss://127.0.0.1:{}", redis.port()),
        None,
        TIMEOUT,
    )
    .unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
}
