//! Bounded config compilation: size and route limits that refuse a reload (and keep the
//! running config), bounded header values, header-predicate routes that share a path,
//! and memory per route.
//!
//! The header-route and memory tests run with 20,000 routes, and with 100,000 when
//! `FICUS_LONG_TESTS=1`.

mod common;
use common::*;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// `n` plain routes `{prefix}{i}` on `/{prefix}{i}/**` to service `app` (as
/// `benches/gen_routes.py`).
fn plain_routes(n: usize, prefix: &str) -> String {
    plain_routes_at(n, prefix, "")
}

/// `plain_routes` with every path under `/{under}`.
fn plain_routes_at(n: usize, prefix: &str, under: &str) -> String {
    let mut out = String::with_capacity(n * 80);
    for i in 0..n {
        let _ = write!(
            out,
            "[[routes]]\nname = \"{prefix}{i}\"\nmatch = {{ path = \"{under}/{prefix}{i}/**\" }}\nservice = \"app\"\n\n"
        );
    }
    out
}

/// What routes sharing `/shared/**` are told apart by.
#[derive(Clone, Copy, Debug)]
enum TenantBy {
    /// `headers = { x-tenant = "t{i}" }`
    Header,
    /// `host = "t{i}.example"`, plus a host-less `/**` fallback route.
    Host,
}

/// `n` routes on `/shared/**` told apart only by their tenant (`t{i}`); the last one
/// rewrites to `/last/...`, so a client can see it was chosen. With hosts, a `/**` route
/// rewriting to `/fallback/...` takes any other Host.
fn tenant_routes(n: usize, by: TenantBy) -> String {
    let mut out = String::with_capacity(n * 110);
    for i in 0..n {
        let predicate = match by {
            TenantBy::Header => format!("headers = {{ x-tenant = \"t{i}\" }}"),
            TenantBy::Host => format!("host = \"t{i}.example\""),
        };
        let _ = write!(
            out,
            "[[routes]]\nname = \"t{i}\"\nmatch = {{ path = \"/shared/**\", {predicate} }}\nservice = \"app\"\n"
        );
        if i == n - 1 {
            out.push_str("rewrite = \"/last/{**}\"\n");
        }
        out.push('\n');
    }
    if let TenantBy::Host = by {
        out.push_str("[[routes]]\nname = \"fallback\"\nmatch = { path = \"/**\" }\nservice = \"app\"\nrewrite = \"/fallback/{**}\"\n");
    }
    out
}

fn long_tests() -> bool {
    std::env::var("FICUS_LONG_TESTS").is_ok_and(|v| v == "1")
}

fn reload_failures(gw: &Gateway, reason: &str) -> f64 {
    metric_sum(
        &gw.metrics(),
        "ficus_config_reload_failures_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Waits for a failed reload of `reason` after `before`, then checks that the old routes
/// still answer and the new file's do not.
fn assert_refused(gw: &Gateway, reason: &str, before: f64, log_text: &str) {
    poll_until(Duration::from_secs(10), || {
        (reload_failures(gw, reason) > before).then_some(())
    })
    .unwrap_or_else(|| panic!("no {reason} reload failure counted\n{}", gw.logs()));
    poll_until(Duration::from_secs(3), || {
        gw.logs().contains(log_text).then_some(())
    })
    .unwrap_or_else(|| panic!("`{log_text}` not logged\n{}", gw.logs()));
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("app"), "old route");
    assert_eq!(gw.get("/new0/x").status, 404, "the refused file's route");
    assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);
}

#[test]
fn a_file_over_max_config_bytes_is_refused_on_reload_and_the_old_config_kept() {
    let o = Origin::start("app");
    let base = ConfigBuilder::new()
        .gateway(|g| {
            g.set("max_config_bytes", "4096");
        })
        .service("app", &[o.addr()])
        .route("a", "/a/**", "app");
    let gw = Gateway::start(&base.clone().build());
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("app"));
    let before = reload_failures(&gw, "too_large");
    // The new file raises its own limit, but the running config's limit judges it.
    let big = base
        .gateway(|g| {
            g.set("max_config_bytes", "10000000");
        })
        .raw(&plain_routes(60, "new"))
        .build();
    assert!(big.len() > 4096);
    gw.rewrite_config(&big);
    assert_refused(
        &gw,
        "too_large",
        before,
        "more than `max_config_bytes` (4096)",
    );
}

#[test]
fn more_routes_than_max_routes_are_refused_on_reload_and_the_old_config_kept() {
    let o = Origin::start("app");
    let base = ConfigBuilder::new()
        .gateway(|g| {
            g.set("max_routes", "3");
        })
        .service("app", &[o.addr()])
        .route("a", "/a/**", "app");
    let gw = Gateway::start(&base.clone().build());
    let before = reload_failures(&gw, "too_many_routes");
    gw.rewrite_config(&base.clone().raw(&plain_routes(3, "new")).build());
    assert_refused(
        &gw,
        "too_many_routes",
        before,
        "has 4 routes, more than `max_routes` (3)",
    );
    // Within the limit, the same kind of file is applied.
    gw.reload(&base.raw(&plain_routes(2, "new")).build());
    assert_eq!(gw.get("/new0/x").origin().as_deref(), Some("app"));
}

#[test]
fn check_reports_the_config_bounds() {
    let head = "[gateway]\nmax_routes = 2\n[services.app]\ninstances = [\"127.0.0.1:1\"]\n";
    let (code, out) = check_text(&format!("{head}{}", plain_routes(3, "r")));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("has 3 routes, more than `max_routes` (2)"),
        "{out}"
    );
    assert!(out.contains("raise `[gateway] max_routes`"), "{out}");
    let head =
        "[gateway]\nmax_config_bytes = 1000\n[services.app]\ninstances = [\"127.0.0.1:1\"]\n";
    let text = format!("{head}{}", plain_routes(20, "r"));
    let (code, out) = check_text(&text);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "is {} bytes, more than `max_config_bytes` (1000)",
            text.len()
        )),
        "{out}"
    );
    let (code, out) = check_text("[gateway]\nmax_routes = 0\nmax_config_bytes = -1\n");
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("`max_routes` must be a positive number"),
        "{out}"
    );
    assert!(
        out.contains("`max_config_bytes` must be a positive number"),
        "{out}"
    );
}

#[test]
fn check_refuses_a_huge_file_before_parsing_it() {
    // 220,000 routes, about 17 MiB: parsing alone would take minutes in a dev build and
    // gigabytes at 1,000,000 routes; both refusals come from reading the text.
    let routes = plain_routes(220_000, "r");
    let services = "[services.app]\ninstances = [\"127.0.0.1:1\"]\n";
    let text = format!("[gateway]\nthreads = 1\n{services}{routes}");
    let t = Instant::now();
    let (code, out) = check_text(&text);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("more than `max_config_bytes` (16777216)"),
        "{out}"
    );
    let text = format!("[gateway]\nmax_config_bytes = 100000000\n{services}{routes}");
    let (code, out) = check_text(&text);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("has 220000 routes, more than `max_routes` (100000)"),
        "{out}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[test]
fn check_bounds_header_values_a_route_sets() {
    let head = "[services.app]\ninstances = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"r\"\nmatch = { path = \"/**\" }\nservice = \"app\"\n";
    let long = "v".repeat(9000);
    let (code, out) = check_text(&format!(
        "{head}response_headers = {{ set = {{ x-big = \"{long}\" }} }}\n"
    ));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("routes.toml:8:")
            && out.contains(
                "header value is 9000 bytes; a route may set at most 8192 bytes per value"
            )
            && out.contains("routes[0].response_headers.set.x-big"),
        "{out}"
    );
    // Each value within the bound, together over the route's bound.
    let v = "v".repeat(6000);
    let (code, out) = check_text(&format!(
        "{head}request_headers = {{ set = {{ x-a = \"{v}\", x-b = \"{v}\" }} }}\nresponse_headers = {{ add = {{ x-c = \"{v}\" }} }}\n"
    ));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(
            "the route's header edits add 18009 bytes of headers; at most 16384 bytes per route"
        ),
        "{out}"
    );
    // Just under both bounds: fine.
    let v = "v".repeat(8000);
    let (code, out) = check_text(&format!(
        "{head}response_headers = {{ set = {{ x-a = \"{v}\", x-b = \"{v}\" }} }}\n"
    ));
    assert_eq!(code, 0, "{out}");
}

/// The median of `d`.
fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// `ficus check` on many header-predicate routes sharing a path finishes in linear time,
/// and the last of them is routed as fast as the first.
fn tenant_routes_case(n: usize, by: TenantBy, check_within: Duration) {
    let o = Origin::start("app");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("app", &[o.addr()])
        .raw(&tenant_routes(n, by))
        .build();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        cfg.replace("{listen}", "127.0.0.1:1")
            .replace("{admin}", "127.0.0.1:2"),
    )
    .unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(bin())
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(
        took < check_within,
        "check of {n} {by:?} routes took {took:?}"
    );

    let gw = Gateway::start(&cfg);
    let last = format!("t{}", n - 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, last, unknown) = rt.block_on(async {
        let c = client();
        let get = |tenant: &str| {
            let req = c.get(gw.url("/shared/x"));
            let req = match by {
                TenantBy::Header => req.header("x-tenant", tenant.to_string()),
                TenantBy::Host => req.header("host", format!("{tenant}.example")),
            };
            async move {
                let t = Instant::now();
                let r = req.send().await.unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                (t.elapsed(), status, body)
            }
        };
        let (_, status, body) = get(&last).await;
        assert_eq!(status, 200);
        assert!(body.contains("\"path\":\"/last/x\""), "{body}");
        let (_, _, body) = get("t0").await;
        assert!(body.contains("\"path\":\"/shared/x\""), "{body}");
        let (_, status, body) = get("nobody").await;
        match by {
            TenantBy::Header => assert_eq!(status, 404, "{body}"),
            TenantBy::Host => assert!(body.contains("\"path\":\"/fallback/shared/x\""), "{body}"),
        }
        // Interleaved, so load on the machine hits all alike.
        let (mut first, mut last_times, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..200 {
            first.push(get("t0").await.0);
            last_times.push(get(&last).await.0);
            unknown.push(get("nobody").await.0);
        }
        (median(first), median(last_times), median(unknown))
    });
    eprintln!(
        "{n} {by:?} routes: check {took:?}, median request: first {first:?}, last {last:?}, unknown {unknown:?}"
    );
    // End to end through a dev build on a shared machine: about 1–1.5 ms for any tenant;
    // the scan made the last of 20,000 take 18 ms (headers) or 9–10 ms (hosts), and an
    // unknown host as much. The comparison with the first tenant is the sharper check.
    for (what, took) in [("last", last), ("unknown", unknown)] {
        assert!(
            took < Duration::from_millis(5),
            "the {what} of {n} {by:?} routes takes {took:?} (first: {first:?})"
        );
        assert!(
            took < first + Duration::from_micros(500),
            "the {what} of {n} {by:?} routes takes {took:?}, the first {first:?}"
        );
    }
}

/// 20,000 routes; 40,000 with `FICUS_LONG_TESTS=1` (a dev build must start within the
/// harness's 30 s; 100,000 and 1,000,000 are measured with `benches/config_compile.sh`).
fn routes_for_this_run() -> usize {
    if long_tests() {
        40_000
    } else {
        20_000
    }
}

#[test]
fn many_header_routes_sharing_a_path() {
    let n = routes_for_this_run();
    // Linear: about 3 s for 20,000 in a dev build on a loaded machine; the pairwise
    // never-matching check took 256 s.
    tenant_routes_case(
        n,
        TenantBy::Header,
        Duration::from_secs(15) * (n / 20_000) as u32,
    );
}

#[test]
fn many_host_routes_sharing_a_path() {
    let n = routes_for_this_run();
    tenant_routes_case(
        n,
        TenantBy::Host,
        Duration::from_secs(15) * (n / 20_000) as u32,
    );
}

/// The resident set of a process, in bytes, from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// The gateway's resident set once compiling garbage has been returned: the lowest of a
/// few readings over a second.
fn settled_rss(gw: &Gateway) -> u64 {
    let mut low = u64::MAX;
    for _ in 0..10 {
        low = low.min(rss(gw.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    low
}

/// Bytes of resident memory per plain route: after start, and after reloading a config
/// with as many different routes.
fn memory_case(n: usize, max_started: u64, max_reloaded: u64) {
    let o = Origin::start("app");
    let cfg = |routes: &str| {
        ConfigBuilder::new()
            .service("app", &[o.addr()])
            .route("a", "/a/**", "app")
            .raw(routes)
            .build()
    };
    let base = {
        let gw = Gateway::start(&cfg(""));
        settled_rss(&gw)
    };
    let gw = Gateway::start(&cfg(&plain_routes(n, "r")));
    assert_eq!(gw.get(&format!("/r{}/x", n - 1)).status, 200);
    let started = settled_rss(&gw);
    // Every route edited (its path), as a reload of a changed file would.
    let generation = gw.generation();
    gw.rewrite_config(&cfg(&plain_routes_at(n, "r", "/v2")));
    poll_until(Duration::from_secs(120), || {
        (gw.generation() > generation).then_some(())
    })
    .unwrap_or_else(|| panic!("reload not applied\n{}", gw.logs()));
    assert_eq!(gw.get(&format!("/v2/r{}/x", n - 1)).status, 200);
    assert_eq!(gw.get("/r0/x").status, 404);
    let reloaded = settled_rss(&gw);
    let per_route = |rss: u64| rss.saturating_sub(base) / n as u64;
    eprintln!(
        "{n} routes: base {} KiB, after start {} B/route, after a reload {} B/route",
        base / 1024,
        per_route(started),
        per_route(reloaded)
    );
    assert!(
        per_route(started) <= max_started,
        "{} bytes per route after start",
        per_route(started)
    );
    assert!(
        per_route(reloaded) <= max_reloaded,
        "{} bytes per route after a reload",
        per_route(reloaded)
    );
}

/// Resident bytes per plain route after a reload, dev build. Before any bound: 8–9 KiB (the
/// compile's garbage stayed resident); then 2.5–3.3 KiB, of which about 0.5 KiB were the
/// route's request counters and their map entry (two owned names). With the counters
/// allocated on a route's first request, names shared, a 280-byte route and the compile's
/// freed segments purged at once: 1.1–1.4 KiB.
const MAX_BYTES_PER_ROUTE: u64 = 2048;

/// After start: measured 3.9–4.3 KiB a route before the work above, 1.1–1.2 KiB after.
const MAX_BYTES_PER_ROUTE_AT_START: u64 = 2048;

#[test]
fn memory_per_plain_route_is_bounded() {
    memory_case(
        routes_for_this_run(),
        MAX_BYTES_PER_ROUTE_AT_START,
        MAX_BYTES_PER_ROUTE,
    );
}

/// The migration board's history does not grow with idle routes: a pair (route, service)
/// keeps a ring of readings only while it serves traffic. Before, every pair kept a reading
/// per sample (24 bytes of counts for the hour, 112 bytes of histogram for five minutes),
/// idle or not: 20,000 plain routes sampled every 100 ms went from 114 MiB at start to
/// 274 MiB after 45 s.
fn board_memory_case(n: usize, run_for: Duration, max_growth: u64) {
    // Read by the gateway process this test starts (it inherits the environment).
    std::env::set_var("FICUS_BOARD_SAMPLE_PERIOD", "100ms");
    let o = Origin::start("app");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("app", &[o.addr()])
        .raw(&plain_routes(n, "r"))
        .build();
    let gw = Gateway::start(&cfg);
    // One busy route among the idle ones.
    assert_eq!(gw.get("/r1/x").status, 200);
    let started = settled_rss(&gw);
    let t = Instant::now();
    let mut peak = started;
    while t.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(rss(gw.pid()));
    }
    let after = settled_rss(&gw);
    let board: serde_json::Value = {
        let r = gw
            .admin_get("/migration.json")
            .expect("GET /migration.json");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).expect("/migration.json is JSON")
    };
    let samples = run_for.as_millis() / 100;
    eprintln!(
        "{n} routes, ~{samples} samples: RSS {} KiB at start, {} KiB after {run_for:?} (peak {} KiB)",
        started / 1024,
        after / 1024,
        peak / 1024
    );
    // Idle routes still have their row, at zero; the busy one its request.
    let routes = board["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), n, "{:#}", board["total"]);
    let row = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    assert_eq!(row("r1")["requests_1h"], 1);
    assert_eq!(row("r0")["requests_1h"], 0);
    assert_eq!(row(&format!("r{}", n - 1))["requests_5m"], 0);
    assert_eq!(board["total"]["requests_1h"], 1);
    assert!(
        after.saturating_sub(started) <= max_growth,
        "RSS grew by {} KiB over {run_for:?} with {n} idle routes",
        after.saturating_sub(started) / 1024
    );
}

#[test]
fn board_history_does_not_grow_with_idle_routes() {
    if long_tests() {
        // The measurement of issue 13: 20,000 routes for 45 s (450 samples).
        board_memory_case(20_000, Duration::from_secs(45), 16 << 20);
    } else {
        // 5,000 routes for 8 s: the old history grew by about 50 MiB in that time.
        board_memory_case(5_000, Duration::from_secs(8), 8 << 20);
    }
}
