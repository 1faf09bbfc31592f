//! The unit tests of the Redis store that need no Redis: URLs, the password kept out of
//! errors, the limits checked, the script's replies parsed, an abandoned connection
//! attempt replaced, and no limits costing no call. The store against a real Redis is
//! tested by the gateway's tests/redis_store.rs and tests/rate_limit_redis.rs.

use super::*;

const T: Duration = Duration::from_secs(1);

#[test]
fn urls() {
    assert!(RedisStore::new("redis://127.0.0.1:6379/2", None, T).is_ok());
    assert!(RedisStore::new("redis://ficus@10.0.0.5", Some("pw".into()), T).is_ok());
    assert!(RedisStore::new("redis+unix:///run/redis.sock", None, T).is_ok());
    assert_eq!(
        RedisStore::new("redis+unix:///run/redis.sock?pass=hunter2", None, T).unwrap_err(),
        ConfigError::InlinePassword
    );
    assert_eq!(
        RedisStore::new("redis://:hunter2@127.0.0.1", None, T).unwrap_err(),
        ConfigError::InlinePassword
    );
    assert_eq!(
        RedisStore::new("redis://user:hunter2@127.0.0.1", None, T).unwrap_err(),
        ConfigError::InlinePassword
    );
    assert_eq!(
        RedisStore::new("rediss://127.0.0.1", None, T).unwrap_err(),
        ConfigError::TlsUnsupported("rediss".into())
    );
    assert_eq!(
        RedisStore::new("http://127.0.0.1", None, T).unwrap_err(),
        ConfigError::Scheme("http".into())
    );
    assert!(matches!(
        RedisStore::new("127.0.0.1:6379", None, T),
        Err(ConfigError::BadUrl(_) | ConfigError::Scheme(_))
    ));
    assert_eq!(
        RedisStore::new("redis://127.0.0.1", None, Duration::ZERO).unwrap_err(),
        ConfigError::ZeroTimeout
    );
}

#[test]
fn errors_never_show_the_password() {
    let e = RedisStore::new("redis://:hunter2@127.0.0.1", None, T).unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
    let store = RedisStore::new("redis://127.0.0.1", Some("hunter2".into()), T).unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
    assert_eq!(
        redact("AUTH hunter2 failed", Some("hunter2")),
        "AUTH <redacted> failed"
    );
    assert_eq!(redact("refused", None), "refused");
}

#[test]
fn limits_are_checked() {
    let limit = |interval, burst| RedisLimit {
        key: "k",
        interval,
        burst,
    };
    let ms = Duration::from_millis(1);
    assert!(matches!(
        ScriptArgs::new(&[limit(Duration::ZERO, 1)]),
        Err(StoreError::InvalidLimit(_))
    ));
    assert!(matches!(
        ScriptArgs::new(&[limit(ms, 0)]),
        Err(StoreError::InvalidLimit(_))
    ));
    assert!(matches!(
        ScriptArgs::new(&[limit(Duration::from_secs(3600), 24 * 31)]),
        Err(StoreError::InvalidLimit(_))
    ));
    let a = ScriptArgs::new(&[limit(Duration::from_secs(1) / 6000, 10)]).unwrap();
    assert_eq!(a.keys, ["ficus:rl:k"]);
    assert_eq!(a.args, [166_666, 10]);
}

#[test]
fn replies() {
    let d = parse_reply(&[0, 1, 3, 2_000, 0, 0, 0, 5_000, 1_500], 2).unwrap();
    assert!(!d.admitted);
    assert_eq!(
        d.limits,
        [
            LimitState {
                admitted: true,
                remaining: 3,
                reset: Duration::from_micros(2),
                retry_after: Duration::ZERO
            },
            LimitState {
                admitted: false,
                remaining: 0,
                reset: Duration::from_micros(5),
                retry_after: Duration::from_nanos(1_500)
            }
        ]
    );
    assert!(matches!(
        parse_reply(&[1, 1, 0], 1),
        Err(StoreError::Protocol(_))
    ));
}

/// A connection attempt whose runtime shuts down does not leave the store waiting for
/// it forever: the next call, on another runtime, connects again.
#[test]
fn an_abandoned_connection_attempt_is_replaced() {
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;
    // Accepts connections and never answers: the handshake hangs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for s in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(s);
        }
    });
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}"), None, T).unwrap();
    let l = [RedisLimit {
        key: "k",
        interval: T,
        burst: 1,
    }];
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    // Shut down while the attempt is under way (it would give up after T).
    first.block_on(async {
        tokio::select! {
            r = store.check(&l) => panic!("the handshake cannot finish: {r:?}"),
            _ = async {
                while accepted.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } => {}
        }
    });
    drop(first);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let r = runtime().block_on(store.check(&l));
    assert_eq!(r, Err(StoreError::Timeout));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a second attempt was made"
    );
}

#[tokio::test]
async fn no_limits_no_redis() {
    // Nothing listens on port 1: a call that went to Redis would fail.
    let store = RedisStore::new("redis://127.0.0.1:1", None, T).unwrap();
    let d = store.check(&[]).await.unwrap();
    assert!(d.admitted && d.limits.is_empty());
}
