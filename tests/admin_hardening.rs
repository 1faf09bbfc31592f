//! The admin listener cannot starve the proxy (issue 13): slow and idle admin connections
//! are closed at their deadlines, connections past the cap or into the descriptors reserved
//! for the proxy are closed at once and counted, registry reads come in bounded pages, and
//! reads need the token when they are guarded.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Slack on a deadline: timers, scheduling on a shared two-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn gateway(o: &Origin, limits: impl FnOnce(&mut Table)) -> Gateway {
    Gateway::start(
        &ConfigBuilder::new()
            .limits(limits)
            .service("orders", &[o.addr()])
            .route("orders", "/orders/**", "orders")
            .build(),
    )
}

/// Reads until the peer closes (or `within` passes): what it sent, and when it closed.
/// `trickle` sends one byte of a request head every 200 ms meanwhile.
fn until_closed(s: &mut TcpStream, within: Duration, trickle: bool) -> (String, Option<Instant>) {
    let deadline = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if trickle {
            // The server may have closed already: a failed write is not the test's concern.
            let _ = s.write_all(b"x");
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(Instant::now()),
                )
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                return (
                    String::from_utf8_lossy(&got).into_owned(),
                    Some(Instant::now()),
                )
            }
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), None)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A client that sends its request head one byte at a time is answered 408 and closed
/// at `header_read_timeout`, and so is one that sends nothing; both are counted.
#[test]
fn a_trickling_admin_client_is_closed_at_the_head_deadline() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        l.set_str("header_read_timeout", "1s");
    });
    let deadline = Duration::from_secs(1);

    let start = Instant::now();
    let mut s = connect(gw.admin);
    s.write_all(b"GET /registry HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
        .expect("write");
    let (answer, closed) = until_closed(&mut s, Duration::from_secs(10), true);
    let closed = closed.unwrap_or_else(|| panic!("a trickling client is still open after 10 s"));
    let took = closed - start;
    assert!(
        took >= deadline - Duration::from_millis(100) && took <= deadline + SLACK,
        "closed after {took:?}, want about {deadline:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408 "), "answer: {answer:?}");
    assert!(answer.contains("header_read_timeout"), "answer: {answer:?}");

    // Silence counts from the accept too.
    let start = Instant::now();
    let mut silent = connect(gw.admin);
    let (_, closed) = until_closed(&mut silent, Duration::from_secs(10), false);
    let took = closed.expect("a silent client is closed") - start;
    assert!(
        took <= deadline + SLACK,
        "silent client closed after {took:?}"
    );

    let m = gw.metrics();
    let timeouts = metric_sum(&m, "ficus_admin_timeouts_total", &[("phase", "head")]);
    assert_eq!(timeouts, Some(1.0), "{m}");
}

/// A registry write whose body stops half-way is cut at `body_read_timeout + send_timeout`
/// and counted, instead of holding the connection for pingora's per-read timeout.
#[test]
fn a_stalled_admin_body_is_cut_at_the_exchange_deadline() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        l.set_str("body_read_timeout", "1s")
            .set_str("send_timeout", "1s");
    });
    let start = Instant::now();
    let mut s = connect(gw.admin);
    s.write_all(
        b"POST /registry/services/orders/instances HTTP/1.1\r\nHost: admin\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"addr\":",
    )
    .expect("write");
    let (_, closed) = until_closed(&mut s, Duration::from_secs(10), false);
    let took = closed.expect("the stalled body is cut") - start;
    assert!(
        took >= Duration::from_millis(1900) && took <= Duration::from_secs(2) + SLACK,
        "closed after {took:?}, want about 2 s"
    );
    let m = gw.metrics();
    let cut = metric_sum(&m, "ficus_admin_timeouts_total", &[("phase", "exchange")]);
    assert_eq!(cut, Some(1.0), "{m}");
}

/// A kept-alive admin connection is closed after `keepalive_timeout` without a request.
#[test]
fn an_idle_kept_alive_admin_connection_is_closed() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        l.set_str("keepalive_timeout", "1s");
    });
    let mut s = connect(gw.admin);
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .expect("write");
        let r = read_response(&mut s, Instant::now() + Duration::from_secs(5))
            .expect("an answer on the kept-alive connection");
        assert_eq!(r.status, 200);
    }
    let idle_from = Instant::now();
    let (_, closed) = until_closed(&mut s, Duration::from_secs(10), false);
    let idle = closed.expect("the idle connection is closed") - idle_from;
    assert!(
        idle >= Duration::from_millis(900) && idle <= Duration::from_secs(1) + SLACK,
        "closed after {idle:?} idle, want about 1 s"
    );
}

/// Past `admin_connections`, new admin connections are closed as soon as they are
/// accepted and counted; the proxy is not affected, and the admin listener answers again
/// once the holders are gone.
#[test]
fn admin_connections_past_the_cap_are_closed_at_once() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        l.set("admin_connections", 4)
            .set_str("header_read_timeout", "30s");
    });
    let holders: Vec<TcpStream> = (0..4).map(|_| connect(gw.admin)).collect();
    // Let the gateway accept the holders before the extra ones arrive.
    poll_until(Duration::from_secs(5), || {
        let mut probe = connect(gw.admin);
        let (_, closed) = until_closed(&mut probe, Duration::from_millis(500), false);
        closed.map(|_| ())
    })
    .expect("the cap is reached");
    let mut closed_at_once = 0;
    for _ in 0..16 {
        let mut extra = connect(gw.admin);
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
        let (answer, closed) = until_closed(&mut extra, Duration::from_secs(2), false);
        if closed.is_some() && answer.is_empty() {
            closed_at_once += 1;
        }
    }
    assert_eq!(
        closed_at_once, 16,
        "extra admin connections answered or kept open"
    );
    for i in 0..5 {
        let r = gw.get(&format!("/orders/{i}"));
        assert_eq!(
            r.status, 200,
            "proxy request {i} while the admin cap is reached"
        );
    }
    drop(holders);
    let (refused, m) = admin_refusals(&gw, "connection_cap", Duration::from_secs(5))
        .expect("the admin listener answers again once the holders are gone");
    assert!(refused >= 17.0, "refusals counted: {refused}\n{m}");
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// A thousand trickling admin connections against a gateway whose descriptor limit was
/// lowered (`prlimit`) cannot take the descriptors the proxy needs: the admin listener
/// stops accepting at the reserve (counted), every proxy request succeeds, and the admin
/// listener works again once the attackers are gone.
#[test]
fn trickling_admin_connections_leave_the_proxy_its_descriptors() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        // The cap is out of the way: the descriptor reserve is what is tested.
        l.set("admin_connections", 100_000)
            .set("admin_reserved_fds", 64)
            .set_str("header_read_timeout", "60s");
    });
    assert_eq!(gw.get("/orders/warm").status, 200);
    let limit = open_fds(gw.pid()) + 200;
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &gw.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A connection the gateway does not take waits in the listen queue; once that is full,
    // connecting fails, and a few failures in a row end the attack.
    let mut attackers = Vec::new();
    let mut failures = 0;
    for _ in 0..1000 {
        match TcpStream::connect_timeout(&gw.admin, Duration::from_millis(200)) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /registry HTTP/1.1\r\nHost: admin\r\nX-Slow: ");
                attackers.push(s);
                failures = 0;
            }
            Err(_) if failures < 20 => failures += 1,
            Err(_) => break,
        }
    }
    // The gateway accepted what its reserve allowed and closed the rest.
    let held = poll_until(Duration::from_secs(10), || {
        let open = open_fds(gw.pid());
        (open + 64 >= limit - 10).then_some(open)
    });
    assert!(
        held.is_some(),
        "the admin side never came near the reserve: {} of {limit} open",
        open_fds(gw.pid())
    );
    for i in 0..5 {
        let r = try_raw_request(
            gw.listen,
            format!("GET /orders/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        );
        match r {
            Ok(r) => assert_eq!(r.status, 200, "proxy request {i}: {}", r.text()),
            Err(e) => panic!(
                "proxy request {i} failed during the attack: {e}\n{}",
                gw.logs()
            ),
        }
    }
    assert!(
        open_fds(gw.pid()) < limit,
        "the gateway reached its descriptor limit"
    );
    drop(attackers);
    let (refused, m) = admin_refusals(&gw, "fd_reserve", Duration::from_secs(10))
        .expect("the admin listener answers once the attackers are gone");
    assert!(refused >= 500.0, "reserve refusals: {refused}\n{m}");
    assert_eq!(gw.admin_get("/healthz").expect("healthz").status, 200);
    let logs = gw.logs();
    assert!(
        logs.matches("admin listener: closing new connections")
            .count()
            <= 2,
        "refusals are logged at most once per 10 s:\n{logs}"
    );
}

/// CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which may hold spaces) start after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `)`.
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// With no descriptor reserve, admin connections exhaust the descriptors and `accept`
/// fails: the admin accept loop pauses instead of retrying at once (the process stays
/// nearly idle while connections wait), counts the errors, and serves again afterwards.
#[test]
fn failed_admin_accepts_back_off_instead_of_spinning() {
    let o = Origin::start("orders");
    let gw = gateway(&o, |l| {
        l.set("admin_connections", 100_000)
            .set("admin_reserved_fds", 0)
            .set_str("header_read_timeout", "60s");
    });
    let limit = open_fds(gw.pid()) + 50;
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &gw.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // More connections than descriptors: the rest wait in the listen queue.
    let attackers: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect_timeout(&gw.admin, Duration::from_millis(200)).ok())
        .collect();
    poll_until(Duration::from_secs(5), || {
        (open_fds(gw.pid()) >= limit - 1).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "descriptors not exhausted: {} of {limit}",
            open_fds(gw.pid())
        )
    });
    let before = cpu_ticks(gw.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(gw.pid()) - before;
    // A spinning accept loop takes a whole core: about 200 ticks in 2 s.
    assert!(used < 40, "{used} ticks of CPU in 2 s while accept fails");
    drop(attackers);
    let m = poll_until(Duration::from_secs(10), || {
        gw.admin_get("/metrics").ok().filter(|r| r.status == 200)
    })
    .expect("the admin listener answers once the connections are gone")
    .text();
    let errors = metric_sum(&m, "ficus_admin_accept_errors_total", &[]).unwrap_or(0.0);
    assert!(errors >= 1.0, "accept errors: {errors}\n{m}");
    assert_eq!(gw.get("/orders/after").status, 200);
}

/// A service with `n` static instances on made-up ports (never probed).
fn many_instances(n: u16) -> String {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i)))
        .collect();
    ConfigBuilder::new()
        .service("orders", &addrs)
        .service("users", &addrs[..3])
        .route("orders", "/orders/**", "orders")
        .build()
}

/// `/registry` shows at most `limit` instances per service, with a `next` link; following
/// the links gives every instance once. The summary the dashboard reads is shorter still
/// and leaves metadata out; a bad query is 400, an unknown service 404.
#[test]
fn registry_reads_come_in_pages() {
    let gw = Gateway::start(&many_instances(260));
    let get = |path: &str| {
        let r = gw.admin_get(path).expect("admin GET");
        (r.status, r.json())
    };

    let (status, first) = get("/registry");
    assert_eq!(status, 200);
    let orders = &first["services"][0];
    assert_eq!(orders["name"], "orders");
    assert_eq!(orders["total"], 260);
    assert_eq!(orders["instances"].as_array().map(Vec::len), Some(100));
    assert_eq!(
        first["services"][1]["instances"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(first["services"][1]["next"].is_null());

    let mut seen = std::collections::BTreeSet::new();
    let mut next = Some("/registry?service=orders&limit=120".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let (status, page) = get(&path);
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["services"].as_array().map(Vec::len), Some(1), "{path}");
        let svc = &page["services"][0];
        for i in svc["instances"].as_array().expect("instances") {
            assert!(
                seen.insert(i["addr"].as_str().unwrap_or("").to_string()),
                "{i} twice"
            );
        }
        next = svc["next"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!((pages, seen.len()), (3, 260));

    let (status, summary) = get("/registry/summary");
    assert_eq!(status, 200);
    assert_eq!(
        summary["services"][0]["instances"].as_array().map(Vec::len),
        Some(50)
    );
    assert_eq!(summary["services"][0]["total"], 260);

    for bad in [
        "/registry?limit=501",
        "/registry?limit=0",
        "/registry?page=2",
    ] {
        let (status, body) = get(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    assert_eq!(get("/registry?service=nope").0, 404);
}

/// A read of every service shows at most 500 instances in all, however many services hold
/// them: the services past the budget show their counts and a `next` link from where they
/// stop, and following every service's links gives every instance once.
#[test]
fn a_read_of_every_service_is_bounded_as_a_whole() {
    const SERVICES: usize = 6;
    const EACH: usize = 150;
    let addrs: Vec<SocketAddr> = (0..EACH as u16)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i)))
        .collect();
    let mut cfg = ConfigBuilder::new();
    for s in 0..SERVICES {
        cfg = cfg.service(&format!("s{s}"), &addrs);
    }
    let gw = Gateway::start(&cfg.route("s0", "/s0/**", "s0").build());
    let get = |path: &str| {
        let r = gw.admin_get(path).expect("admin GET");
        assert_eq!(r.status, 200, "{path}");
        r.json()
    };
    let shown = |v: &serde_json::Value| -> Vec<usize> {
        v["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| s["instances"].as_array().map_or(0, Vec::len))
            .collect()
    };

    // Default limit (100 per service): five services fill the 500.
    let all = get("/registry");
    assert_eq!(shown(&all), [100, 100, 100, 100, 100, 0]);
    assert_eq!(all["services"][5]["total"], EACH);
    assert_eq!(
        all["services"][5]["next"],
        "/registry?service=s5&offset=0&limit=100"
    );
    // The largest limit: three whole services and a third of the fourth.
    let all = get("/registry?limit=500");
    assert_eq!(shown(&all), [150, 150, 150, 50, 0, 0]);
    assert!(all["services"][2]["next"].is_null());
    assert_eq!(
        all["services"][3]["next"],
        "/registry?service=s3&offset=50&limit=500"
    );

    let mut seen = std::collections::BTreeSet::new();
    for svc in all["services"].as_array().expect("services") {
        let name = svc["name"].as_str().expect("name").to_string();
        let mut page = svc.clone();
        loop {
            for i in page["instances"].as_array().expect("instances") {
                let addr = i["addr"].as_str().unwrap_or("");
                assert!(seen.insert(format!("{name} {addr}")), "{name} {addr} twice");
            }
            let Some(next) = page["next"].as_str() else {
                break;
            };
            page = get(next)["services"][0].clone();
        }
    }
    assert_eq!(seen.len(), SERVICES * EACH);

    // The summary the dashboard draws still shows every service.
    assert_eq!(shown(&get("/registry/summary")), [50; SERVICES]);
}

const TOKEN_ENV: &str = "FICUS_TEST_ADMIN_READ_TOKEN";

/// With `admin_reads_need_token = true`, every admin read but the probes and the two pages
/// needs the registry token; `ficus status` sends it from `FICUS_ADMIN_TOKEN`, and the
/// dashboard asks for it.
#[test]
fn admin_reads_need_the_token_when_guarded() {
    let token = "read-token-0123456789";
    // The gateway inherits the variable; nothing else in this test process reads it.
    std::env::set_var(TOKEN_ENV, token);
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set("admin_reads_need_token", true);
            })
            .table("registry", |t| {
                t.set_str("token_env", TOKEN_ENV);
            })
            .service("orders", &[o.addr()])
            .route("orders", "/orders/**", "orders")
            .build(),
    );
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        get_raw(gw.admin, path, "admin", &headers)
    };
    for open in ["/healthz", "/readyz", "/registry/ui", "/migration"] {
        assert_eq!(get(open, None).status, 200, "{open} without a token");
    }
    for guarded in [
        "/registry",
        "/registry/summary",
        "/registry?service=orders",
        "/metrics",
        "/migration.json",
        "/shadow",
        "/config",
        "/policies",
    ] {
        let r = get(guarded, None);
        assert_eq!(r.status, 401, "{guarded} without a token: {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{guarded}");
        assert_eq!(
            get(guarded, Some("wrong")).status,
            401,
            "{guarded}, wrong token"
        );
        assert_eq!(
            get(guarded, Some(token)).status,
            200,
            "{guarded} with the token"
        );
    }

    let admin = gw.admin.to_string();
    let (code, _, err) = ficus(&["status", "--admin", &admin]);
    assert_ne!(code, 0, "`ficus status` without the token");
    assert!(err.contains("FICUS_ADMIN_TOKEN"), "{err}");
    std::env::set_var("FICUS_ADMIN_TOKEN", token);
    let (code, out, err) = ficus(&["status", "--admin", &admin]);
    std::env::remove_var("FICUS_ADMIN_TOKEN");
    assert_eq!(code, 0, "`ficus status` with the token:\n{out}\n{err}");

    // The dashboard holds no data itself: it asks for the token.
    let dom = browser::dump_dom(&gw.admin_url("/registry/ui"));
    assert!(
        dom.contains(r#"id="token-form" class="show""#),
        "the dashboard does not ask for the token:\n{dom}"
    );
}

/// `ficus_admin_connections_refused_total{reason}` once the admin listener answers
/// `/metrics` again (within `wait`), with the metrics text; `None` if it never does.
fn admin_refusals(gw: &Gateway, reason: &str, wait: Duration) -> Option<(f64, String)> {
    let m = poll_until(wait, || {
        gw.admin_get("/metrics").ok().filter(|r| r.status == 200)
    })?
    .text();
    let refused = metric_sum(
        &m,
        "ficus_admin_connections_refused_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0);
    Some((refused, m))
}
