//! HTTP/2 clients that stop reading (window 0, never released) cannot multiply the
//! gateway's upstream connections and memory (issue 13): requests holding an upstream
//! connection are capped per client connection, per client address and for the whole
//! gateway, requests waiting for one are bounded gateway-wide (503 with
//! `Retry-After` and a request id when full, counted), a response that makes no progress
//! for `client_stall_timeout` is reset and its upstream connection closed, and the
//! gateway's memory comes back near where it started once the attack ends.
//!
//! The default run is scaled down (10 connections × 100 streams); the attack as reported
//! (120 connections × 100 streams of a 10 MiB answer) is an ignored test, run with
//! `--run-ignored only`.

mod common;
use bytes::Bytes;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 10 * 1024 * 1024;

/// An origin with a 10 MiB answer at `/big` (echo elsewhere).
fn origin() -> Origin {
    Origin::builder("o")
        .route("/big", Reply::ok().repeat_body(b'x', BIG))
        .start()
}

/// A gateway with one h2c listener in front of `o`, and `/small` served by an origin of
/// its own (returned), so normal requests measure the gateway, not the attacked origin's
/// accept queue; `limits` edits `[gateway.limits]`.
fn gateway(o: &Origin, limits: impl FnOnce(&mut Table)) -> (Gateway, Origin) {
    let n = Origin::start("n");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("listen", r#"[{ addr = "{listen}", h2c = true }]"#)
                .set("access_log", r#""off""#);
        })
        .limits(limits)
        .service("o", &[o.addr()])
        .service("n", &[n.addr()])
        .route("small", "/small", "n")
        .catch_all("o")
        .build();
    (Gateway::start(&cfg), n)
}

/// Established TCP connections whose local end is `addr`'s port on loopback: the origin's
/// side of the gateway's upstream connections.
fn established_at(addr: SocketAddr) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{:04X}", addr.port());
    // The kernel lists the table in pieces while it changes: an entry can show up twice.
    let peers: std::collections::HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[1].ends_with(&port) && f[3] == "01").then_some(f[2])
        })
        .collect();
    peers.len()
}

/// Resident memory of process `pid`, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The source address of the attacking clients (the default one of loopback connections).
const ATTACKER: &str = "127.0.0.1";
/// The source address of the normal client: another client for the per-address cap.
const OTHER_CLIENT: &str = "127.0.0.2";

/// An HTTP/2 (prior knowledge) connection from [`ATTACKER`]'s address. `stalled`: the
/// client's stream window is 0 and it never releases capacity, so no response body byte
/// can ever reach it.
async fn h2_conn(addr: SocketAddr, stalled: bool) -> h2::client::SendRequest<Bytes> {
    h2_conn_from(ATTACKER, addr, stalled).await
}

/// [`h2_conn`] from the loopback address `from` (the socket is bound to it first).
async fn h2_conn_from(
    from: &str,
    addr: SocketAddr,
    stalled: bool,
) -> h2::client::SendRequest<Bytes> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let from: IpAddr = from.parse().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut b = h2::client::Builder::new();
    if stalled {
        b.initial_window_size(0);
    }
    let (client, conn) = b.handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

fn get(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// What happened to one stalled stream.
#[derive(Debug, Default, Clone)]
struct Stalled {
    /// The status of the head, if one came.
    status: Option<u16>,
    /// From sending the request to its head.
    head_after: Option<Duration>,
    retry_after: bool,
    request_id: bool,
    /// From the head to the end of the stream (reset, or error), if it ended in time.
    ended_after_head: Option<Duration>,
}

/// Opens `streams` stalled requests for `/big` on one new connection and follows each one
/// until it ends or `give_up` passes.
async fn stalled_connection(addr: SocketAddr, streams: usize, give_up: Duration) -> Vec<Stalled> {
    stalled_connection_from(ATTACKER, addr, streams, give_up).await
}

/// [`stalled_connection`] from the loopback address `from`.
async fn stalled_connection_from(
    from: &'static str,
    addr: SocketAddr,
    streams: usize,
    give_up: Duration,
) -> Vec<Stalled> {
    let client = h2_conn_from(from, addr, true).await;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Stalled::default();
            let follow = async {
                let mut client = client.ready().await.ok()?;
                let (resp, _) = client.send_request(get(addr, "/big"), true).ok()?;
                let sent = Instant::now();
                let resp = resp.await.ok()?;
                let head_at = Instant::now();
                out.head_after = Some(head_at - sent);
                out.status = Some(resp.status().as_u16());
                out.retry_after = resp.headers().contains_key("retry-after");
                out.request_id = resp.headers().contains_key("x-request-id");
                let mut body = resp.into_body();
                // No byte can arrive (window 0): this returns only when the stream ends.
                let _ = body.data().await;
                out.ended_after_head = Some(head_at.elapsed());
                Some(())
            };
            let _ = tokio::time::timeout(give_up, follow).await;
            out
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    // Keep the connection open until every stream was followed.
    drop(client);
    out
}

/// Normal requests from a client that reads, from [`OTHER_CLIENT`]'s address: `n` GETs
/// of a small answer, one after the other, on one HTTP/2 connection; (statuses, slowest).
async fn normal_requests(addr: SocketAddr, n: usize) -> (Vec<u16>, Duration) {
    let mut client = h2_conn_from(OTHER_CLIENT, addr, false).await;
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        let status = async {
            client = client.clone().ready().await.ok()?;
            let (resp, _) = client.send_request(get(addr, "/small"), true).ok()?;
            let resp = resp.await.ok()?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.ok()?;
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Some(status)
        };
        let status = tokio::time::timeout(Duration::from_secs(10), status)
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        slowest = slowest.max(started.elapsed());
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (statuses, slowest)
}

/// The attack, measured: `conns` connections × `streams` stalled streams, normal requests
/// alongside, upstream connections sampled at the origin, RSS before, at the peak and
/// after.
struct Attack {
    results: Vec<Stalled>,
    normal: (Vec<u16>, Duration),
    peak_upstream: usize,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
}

async fn attack(gw: &Gateway, o: &Origin, conns: usize, streams: usize, stall: Duration) -> Attack {
    let addr = gw.listen;
    let pid = gw.pid();
    // Warm up (pools, runtime threads) so the baseline is the gateway at work, not cold.
    let (warm, _) = normal_requests(addr, 20).await;
    assert!(warm.iter().all(|&s| s == 200), "{warm:?}");
    let rss_before = rss_kib(pid);

    let peak_upstream = Arc::new(AtomicUsize::new(0));
    let rss_peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak_upstream, rss_peak, done) =
            (peak_upstream.clone(), rss_peak.clone(), done.clone());
        let origin = o.addr();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak_upstream.fetch_max(established_at(origin), Ordering::SeqCst);
                rss_peak.fetch_max(rss_kib(pid) as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Every stream ends within a few rounds of the stall limit; give up well after.
    let give_up = stall * 8 + Duration::from_secs(20);
    let mut attackers = Vec::new();
    for _ in 0..conns {
        attackers.push(tokio::spawn(stalled_connection(addr, streams, give_up)));
    }
    // Normal requests while the attack is on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let normal = normal_requests(addr, 20).await;
    let mut results = Vec::new();
    for a in attackers {
        results.extend(a.await.unwrap());
    }
    // Memory once the attack is over: the gateway holds nothing for it any more.
    let settled = poll_until(Duration::from_secs(30), || {
        let m = gw.metrics();
        (metric_sum(&m, "ficus_upstream_requests_in_flight", &[]) == Some(0.0)).then_some(())
    });
    assert!(
        settled.is_some(),
        "requests still hold upstream connections"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let attack = Attack {
        results,
        normal,
        peak_upstream: peak_upstream.load(Ordering::SeqCst),
        rss_before,
        rss_peak: rss_peak.load(Ordering::SeqCst) as u64,
        rss_after,
    };
    eprintln!(
        "{conns}x{streams}: peak upstream connections {}, RSS before {} KiB, peak {} KiB, after {} KiB; normal requests {:?}, slowest {:?}",
        attack.peak_upstream,
        attack.rss_before,
        attack.rss_peak,
        attack.rss_after,
        attack.normal.0,
        attack.normal.1
    );
    attack
}

/// How an attack must be contained: `per_conn` is the per-connection cap, `slowest` the
/// longest a normal request may take meanwhile.
struct Bounds {
    conns: usize,
    per_conn: usize,
    stall: Duration,
    /// How late after the stall limit a stalled stream may end (the gateway's two threads
    /// are busy while thousands of streams start).
    slack: Duration,
    slowest: Duration,
}

/// Checks what every run of the attack must show.
fn assert_contained(a: &Attack, gw: &Gateway, b: Bounds) {
    let Bounds {
        conns,
        per_conn,
        stall,
        slack,
        slowest,
    } = b;
    // Upstream connections: at most the per-connection cap for each attacking connection
    // (plus the normal client's and pooled ones).
    assert!(
        a.peak_upstream <= conns * per_conn + 4,
        "{} upstream connections at the origin for {conns} connections",
        a.peak_upstream
    );
    // Other clients are served, promptly.
    assert!(
        a.normal.0.iter().all(|&s| s == 200),
        "normal requests during the attack: {:?}",
        a.normal.0
    );
    assert!(a.normal.1 < slowest, "slowest {:?}", a.normal.1);
    // Every stalled stream got a head and ended within the stall limit and some slack: a
    // 200 that was cut, or a 503 for a stream that waited too long for a slot.
    let cut: Vec<&Stalled> = a.results.iter().filter(|r| r.status == Some(200)).collect();
    assert!(!cut.is_empty(), "no stream reached the upstream");
    for r in &a.results {
        let ended = r.ended_after_head;
        assert!(
            matches!(r.status, Some(200 | 503)) && ended.is_some_and(|d| d <= stall + slack),
            "a stalled stream: {r:?}"
        );
        if r.status == Some(503) {
            assert!(r.retry_after && r.request_id, "{r:?}");
        }
    }
    let m = gw.metrics();
    let stalls = metric_sum(&m, "ficus_client_stalls_total", &[]).unwrap_or(0.0);
    assert!(
        stalls >= cut.len() as f64,
        "{stalls} stalls counted for {} cut",
        cut.len()
    );
}

/// 10 connections × 100 stalled streams of a 10 MiB answer, with the default caps and a
/// 2 s stall limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_readers_are_capped_cut_and_release_memory() {
    let o = origin();
    let stall = Duration::from_secs(2);
    let (gw, _n) = gateway(&o, |l| {
        l.set_str("client_stall_timeout", "2s");
    });
    let a = attack(&gw, &o, 10, 100, stall).await;
    let bounds = Bounds {
        conns: 10,
        per_conn: 16,
        stall,
        slack: Duration::from_millis(2500),
        slowest: Duration::from_secs(2),
    };
    assert_contained(&a, &gw, bounds);
    // Nothing is held for the attack any more: upstream connections closed (not pooled
    // mid-body), memory near where it started.
    let left = poll_until(Duration::from_secs(10), || {
        (established_at(o.addr()) <= 4).then_some(())
    });
    assert!(
        left.is_some(),
        "{} upstream connections left",
        established_at(o.addr())
    );
    // Without the release after the burst, 25-75 MiB stayed (the allocator keeps freed
    // pages of threads that went quiet); with it, 5-8 MiB.
    assert!(
        a.rss_after <= a.rss_before + 24 * 1024,
        "RSS {} KiB after the attack, {} KiB before",
        a.rss_after,
        a.rss_before
    );
    let m = gw.metrics();
    assert_eq!(
        metric_sum(&m, "ficus_memory_releases_total", &[]),
        Some(1.0)
    );
}

/// The whole gateway's cap: with room for 20 requests holding an upstream, stalled streams
/// beyond it, and a normal client's request, get 503 at once with `Retry-After`, a request
/// id and the JSON body; the refusals are counted. Once the stalled ones are cut, the
/// normal client is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_gateway_answers_503_with_retry_after() {
    let o = origin();
    let (gw, _n) = gateway(&o, |l| {
        // One address plays both the attacker and the client here: no per-client cap.
        l.set("max_upstream_requests", 20)
            .set("max_upstream_requests_per_client", 0)
            .set("max_upstream_requests_per_connection", 100)
            .set_str("client_stall_timeout", "3s");
    });
    let addr = gw.listen;
    let attackers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(stalled_connection(addr, 30, Duration::from_secs(20))))
        .collect();
    // Wait until the cap is full.
    let full = poll_until(Duration::from_secs(5), || {
        let m = gw.metrics();
        (metric_sum(&m, "ficus_upstream_requests_in_flight", &[]) == Some(20.0)).then_some(())
    });
    assert!(full.is_some(), "the cap never filled");
    let mut client = h2_conn(addr, false).await.ready().await.unwrap();
    let (resp, _) = client.send_request(get(addr, "/small"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(json["request_id"], id.as_str());
    assert_eq!(
        json["error"],
        "the gateway is at its limit of requests in flight"
    );

    let mut results = Vec::new();
    for a in attackers {
        results.extend(a.await.unwrap());
    }
    let served = results.iter().filter(|r| r.status == Some(200)).count();
    let refused = results.iter().filter(|r| r.status == Some(503)).count();
    assert_eq!(served, 20, "{results:?}");
    assert_eq!(refused, 40, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.status != Some(503) || r.retry_after));
    let m = gw.metrics();
    let counted = metric_sum(
        &m,
        "ficus_upstream_requests_refused_total",
        &[("cap", "gateway")],
    );
    assert_eq!(counted, Some(41.0), "{m}");
    // The cut streams gave their slots back.
    let freed = poll_until(Duration::from_secs(10), || {
        let m = gw.metrics();
        (metric_sum(&m, "ficus_upstream_requests_in_flight", &[]) == Some(0.0)).then_some(())
    });
    assert!(freed.is_some(), "slots not given back");
    let (statuses, _) = normal_requests(addr, 3).await;
    assert_eq!(statuses, [200, 200, 200]);
}

/// Waits until `gw` reports `want` for the gauge `name`.
fn gauge_reaches(gw: &Gateway, name: &str, want: f64) -> bool {
    poll_until(Duration::from_secs(5), || {
        (metric_sum(&gw.metrics(), name, &[]) == Some(want)).then_some(())
    })
    .is_some()
}

/// One address with more connections than its share needs (12 connections × 4 stalled
/// streams, 48 requests against a gateway-wide cap of 40) holds its share only (a quarter
/// of 40 by default): the rest of its requests get 503 at once with `Retry-After` and a
/// request id, counted as `cap="client"`, and a client from another address is served.
/// Without the per-client cap the attacker took all 40 slots and the other client got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_every_slot() {
    let o = origin();
    let (gw, _n) = gateway(&o, |l| {
        l.set("max_upstream_requests", 40)
            .set("max_upstream_requests_per_connection", 4)
            .set_str("client_stall_timeout", "3s");
    });
    let addr = gw.listen;
    let attackers: Vec<_> = (0..12)
        .map(|_| tokio::spawn(stalled_connection(addr, 4, Duration::from_secs(10))))
        .collect();
    // Every attacking request is decided (holding or refused; they hold until the stall
    // limit cuts them).
    let decided = poll_until(Duration::from_secs(5), || {
        let m = gw.metrics();
        let holding = metric_sum(&m, "ficus_upstream_requests_in_flight", &[])?;
        let refused = metric_sum(&m, "ficus_upstream_requests_refused_total", &[])?;
        (holding + refused >= 48.0).then_some(holding)
    });
    let (statuses, slowest) = normal_requests(addr, 10).await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "the other client during the attack: {statuses:?}"
    );
    assert_eq!(decided, Some(10.0), "the attacker's holding requests");
    assert!(slowest < Duration::from_secs(2), "slowest {slowest:?}");
    let mut results = Vec::new();
    for a in attackers {
        results.extend(a.await.unwrap());
    }
    let served = results.iter().filter(|r| r.status == Some(200)).count();
    let refused: Vec<_> = results.iter().filter(|r| r.status == Some(503)).collect();
    assert_eq!(served, 10, "{results:?}");
    assert_eq!(refused.len(), 38, "{results:?}");
    assert!(refused.iter().all(|r| r.retry_after && r.request_id));
    // A refused stream whose client cannot take its body does not linger for the stall
    // limit (3 s): it is cut after 200 ms (memory must not grow with such streams).
    assert!(
        refused.iter().all(|r| r
            .ended_after_head
            .is_some_and(|d| d < Duration::from_secs(1))),
        "{refused:?}"
    );
    let m = gw.metrics();
    let by_client = metric_sum(
        &m,
        "ficus_upstream_requests_refused_total",
        &[("cap", "client")],
    );
    assert_eq!(by_client, Some(38.0), "{m}");
    assert_eq!(
        metric_sum(
            &m,
            "ficus_upstream_requests_refused_total",
            &[("cap", "gateway")]
        ),
        Some(0.0)
    );
}

/// Loopback addresses for `n` attacking clients: 127.0.0.10 and up.
fn attacker_addresses(n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|i| &*Box::leak(format!("127.0.0.{}", 10 + i).into_boxed_str()))
        .collect()
}

/// `n` attacker addresses, each with enough stalled streams to fill the gateway by itself
/// (a per-client cap of a quarter used to let 4 of them take every slot), against a
/// gateway-wide cap of 160 (reserve 40, floor 2: one connection's slots): the attackers
/// hold at most the 120 unreserved slots, refusals are counted as `fair_share`/`reserve`,
/// and a normal client on another address gets 200 for every request meanwhile.
async fn many_addresses_leave_room_for_others(n: usize) {
    let o = origin();
    let (gw, _n) = gateway(&o, |l| {
        l.set("max_upstream_requests", 160)
            .set("max_upstream_requests_per_connection", 2)
            .set_str("client_stall_timeout", "8s");
    });
    let addr = gw.listen;
    // Together they ask for more than the whole cap (each address more than its share),
    // and a stream per connection more than its 2 slots, waiting.
    let conns = 160 / (2 * n) + 2;
    let mut attackers = Vec::new();
    for from in attacker_addresses(n) {
        for _ in 0..conns {
            attackers.push(tokio::spawn(stalled_connection_from(
                from,
                addr,
                3,
                Duration::from_secs(20),
            )));
        }
    }
    // The attack holds what it can: no refusal counter moves for a while.
    let held = poll_until(Duration::from_secs(10), || {
        let m = gw.metrics();
        let holding = metric_sum(&m, "ficus_upstream_requests_in_flight", &[])?;
        (holding >= 100.0).then_some(holding)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holding_then = metric_sum(&gw.metrics(), "ficus_upstream_requests_in_flight", &[]);
    let (statuses, slowest) = normal_requests(addr, 12).await;
    let m = gw.metrics();
    let holding_after = metric_sum(&m, "ficus_upstream_requests_in_flight", &[]);
    eprintln!(
        "{n} addresses: holding {held:?} / {holding_then:?} / {holding_after:?}, normal {statuses:?}, slowest {slowest:?}"
    );
    assert!(held.is_some(), "the attack never filled the gateway: {m}");
    assert!(
        statuses.iter().all(|&s| s == 200),
        "the other client during the attack of {n} addresses: {statuses:?}\n{m}"
    );
    // The attack still held while the normal client was served: the 120 unreserved slots,
    // plus what addresses holding fewer than the floor (2) took of the reserve.
    let most = (120 + 2 * n) as f64;
    assert!(
        holding_after.is_some_and(|h| (100.0..=most).contains(&h)),
        "{holding_after:?}"
    );
    let refused = |cap| metric_sum(&m, "ficus_upstream_requests_refused_total", &[("cap", cap)]);
    assert_eq!(refused("gateway"), Some(0.0), "{m}");
    assert!(
        refused("reserve").unwrap_or(0.0) + refused("fair_share").unwrap_or(0.0) > 0.0,
        "{m}"
    );
    drop(attackers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_addresses_leave_room_for_others() {
    many_addresses_leave_room_for_others(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_addresses_leave_room_for_others() {
    many_addresses_leave_room_for_others(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_addresses_leave_room_for_others() {
    many_addresses_leave_room_for_others(16).await;
}

/// Behind a trusted proxy the per-client cap counts the `X-Forwarded-For` client, not the
/// proxy: with a cap of 1, a second request of the client holding a slow request gets 503,
/// a request of another client through the same proxy gets 200 (HTTP/1).
#[test]
fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_client() {
    let o = Origin::builder("o")
        .route("/slow", Reply::ok().delay(Duration::from_secs(3)))
        .start();
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("trusted_proxies", r#"["127.0.0.1"]"#);
        })
        .limits(|l| {
            l.set("max_upstream_requests_per_client", 1);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::start(&cfg);
    let addr = gw.listen;
    let holder = std::thread::spawn(move || {
        get_raw(addr, "/slow", "x", &[("X-Forwarded-For", "198.51.100.1")]).status
    });
    let holding = poll_until(Duration::from_secs(5), || {
        let m = gw.metrics();
        (metric_sum(&m, "ficus_upstream_requests_in_flight", &[]) == Some(1.0)).then_some(())
    });
    assert!(holding.is_some(), "{}", gw.metrics());
    let same = get_raw(addr, "/x", "x", &[("X-Forwarded-For", "198.51.100.1")]);
    assert_eq!(same.status, 503);
    assert_eq!(same.header("retry-after"), Some("1"));
    assert!(same.header("x-request-id").is_some());
    let other = get_raw(addr, "/x", "x", &[("X-Forwarded-For", "198.51.100.2")]);
    assert_eq!(other.status, 200);
    assert_eq!(holder.join().unwrap(), 200);
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_upstream_requests_refused_total",
            &[("cap", "client")]
        ),
        Some(1.0)
    );
}

/// Requests waiting for a slot of their connection are bounded gateway-wide: with 2 slots
/// per connection and room for 5 waiting, a connection's 20 stalled streams give 2
/// holding, 5 waiting and 13 answered 503 at once (not after `client_stall_timeout`),
/// counted as `cap="waiting"`; another client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_beyond_the_bound_is_refused_at_once() {
    let o = origin();
    let stall = Duration::from_secs(3);
    let (gw, _n) = gateway(&o, |l| {
        l.set("max_upstream_requests_per_connection", 2)
            .set("max_waiting_upstream_requests", 5)
            .set_str("client_stall_timeout", "3s");
    });
    let addr = gw.listen;
    let attacker = tokio::spawn(stalled_connection(addr, 20, Duration::from_secs(15)));
    assert!(
        gauge_reaches(&gw, "ficus_upstream_requests_waiting", 5.0),
        "{}",
        gw.metrics()
    );
    let m = gw.metrics();
    assert_eq!(
        metric_sum(&m, "ficus_upstream_requests_in_flight", &[]),
        Some(2.0),
        "{m}"
    );
    let (statuses, _) = normal_requests(addr, 3).await;
    assert_eq!(statuses, [200, 200, 200]);
    let results = attacker.await.unwrap();
    let at_once: Vec<_> = results
        .iter()
        .filter(|r| r.status == Some(503) && r.head_after.is_some_and(|d| d < stall / 2))
        .collect();
    assert_eq!(at_once.len(), 13, "{results:?}");
    assert!(at_once.iter().all(|r| r.retry_after && r.request_id));
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_upstream_requests_refused_total",
            &[("cap", "waiting")]
        ),
        Some(13.0),
        "{m}"
    );
    assert!(gauge_reaches(&gw, "ficus_upstream_requests_waiting", 0.0));
}

/// A client that reads slowly but steadily (64 KiB, then a pause) is not cut, although the
/// whole download takes several times the stall limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_progressing_download_is_not_cut() {
    let o = Origin::builder("o")
        .route("/big", Reply::ok().repeat_body(b'x', 2 * 1024 * 1024))
        .start();
    let (gw, _n) = gateway(&o, |l| {
        l.set_str("client_stall_timeout", "1s");
    });
    let addr = gw.listen;
    let mut client = h2_conn(addr, false).await.ready().await.unwrap();
    let started = Instant::now();
    let (resp, _) = client.send_request(get(addr, "/big"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the download is not cut");
        got += chunk.len();
        // About 64 KiB per 150 ms (~430 KiB/s): 2 MiB take ~5 s, five stall limits.
        tokio::time::sleep(Duration::from_millis(150 * chunk.len() as u64 / 65536)).await;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let took = started.elapsed();
    assert_eq!(got, 2 * 1024 * 1024);
    assert!(
        took > Duration::from_secs(3),
        "took {took:?}: not slow enough to mean anything"
    );
    let m = gw.metrics();
    assert_eq!(metric_sum(&m, "ficus_client_stalls_total", &[]), Some(0.0));
}

/// The gateway advertises its stream cap in its SETTINGS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_is_advertised() {
    let o = origin();
    let (gw, _n) = gateway(&o, |l| {
        l.set("h2_max_concurrent_streams", 7);
    });
    let tcp = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let addr = gw.listen;
    let request = async move {
        let mut client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(get(addr, "/small"), true).unwrap();
        resp.await.unwrap().status()
    };
    // The connection is driven here, so its settings can be read once the answer came.
    let status = tokio::select! {
        s = request => s,
        r = &mut conn => panic!("connection ended first: {r:?}"),
    };
    assert_eq!(status, 200);
    assert_eq!(conn.max_concurrent_send_streams(), 7);
}

/// The attack as reported: 120 connections × 100 stalled streams of a 10 MiB answer, with
/// every default (stall limit 15 s). A long run that takes GiB of memory: run it with
/// `cargo nextest run --test h2_stall --run-ignored only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "full-scale attack (1 GiB, a minute): cargo nextest run --test h2_stall --run-ignored only"]
async fn full_scale_attack_is_contained() {
    let o = origin();
    let stall = Duration::from_secs(15);
    let (gw, _n) = gateway(&o, |_| {});
    let a = attack(&gw, &o, 120, 100, stall).await;
    // 12,000 streams and 1,920 upstream connections opened at once keep the gateway's two
    // threads busy for seconds (measured: 5-9 s for the slowest normal request with a
    // debug build on a loaded 2-core box); what must not happen is a failed request.
    let bounds = Bounds {
        conns: 120,
        per_conn: 16,
        stall,
        // Measured up to 6.6 s late at full scale with a debug build on a loaded box; well
        // short of the 60 s `send_timeout` that held such streams before.
        slack: Duration::from_secs(12),
        slowest: Duration::from_secs(10),
    };
    assert_contained(&a, &gw, bounds);
    assert!(
        a.rss_after <= a.rss_before + 64 * 1024,
        "RSS {} KiB after the attack, {} KiB before (peak {} KiB)",
        a.rss_after,
        a.rss_before,
        a.rss_peak
    );
}
