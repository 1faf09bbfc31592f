//! The migration board (`GET /migration.json`, the `/migration` page, `ficus status`,
//! `ficus_service_info`): a gateway with a legacy origin (`monolith`) and a new one
//! (`catalog`), a split route, a legacy-only and a new-only route, and known traffic; what
//! the board reports, the page rendered in headless Chromium, and `ficus check` on
//! `[gateway] legacy`.
//!
//! The sampler runs every 200 ms here (`FICUS_BOARD_SAMPLE_PERIOD`, read by the gateway at
//! start) so that the sparkline has points within the test; the windows themselves end at
//! the moment of the request, so the shares do not depend on the sample period.

mod common;

use common::browser;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// The page's legacy and new colours (src/admin/migration.html).
const LEGACY_ORANGE: [u8; 3] = [0xbc, 0x4c, 0x00];
const NEW_BLUE: [u8; 3] = [0x09, 0x69, 0xda];
const TOLERANCE: u8 = 10;
/// Bars are ~18 px high and a few hundred wide: a route bar or the legend alone is not
/// enough, the bars must be drawn.
const MIN_BAR_PIXELS: usize = 2000;

/// Known traffic: requests per (route, side) sent by [`send_traffic`].
const ORDERS_TO_MONOLITH: usize = 4;
const ORDERS_TO_CATALOG: usize = 6;
const LEGACY_ROUTE: usize = 10;
const NEW_ROUTE_OK: usize = 4;
/// Of the new-only route's requests, answered 500 by the origin.
const NEW_ROUTE_FAILING: usize = 1;
const TOTAL: usize =
    ORDERS_TO_MONOLITH + ORDERS_TO_CATALOG + LEGACY_ROUTE + NEW_ROUTE_OK + NEW_ROUTE_FAILING;
const LEGACY_TOTAL: usize = ORDERS_TO_MONOLITH + LEGACY_ROUTE;

fn sample_fast() {
    // Read by the gateway processes this test starts (they inherit the environment).
    std::env::set_var("FICUS_BOARD_SAMPLE_PERIOD", "200ms");
}

fn origins() -> (Origin, Origin) {
    let mono = Origin::start("monolith");
    let catalog = Origin::builder("catalog")
        .route("/catalog/fail", Handler::echo().status(500))
        .fallback(Handler::echo())
        .start();
    (mono, catalog)
}

/// `monolith` (the legacy) and `catalog` (new); `orders` split 50/50 with an override
/// header (so the test places each request), `account` legacy-only (shadowed to catalog),
/// `catalog` new-only.
fn board_config(mono: &Origin, catalog: &Origin) -> ConfigBuilder {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("legacy", r#""monolith""#);
        })
        .service("monolith", &[mono.addr()])
        .service("catalog", &[catalog.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 50 }, { service = "catalog", weight = 50 }]"#,
            );
            r.set("override", r#"{ header = "X-Ficus-Target" }"#);
        })
        .route_with("account", "/account/**", "monolith", |r| {
            r.set("shadow", r#"{ service = "catalog" }"#);
        })
        .route("catalog", "/catalog/**", "catalog")
}

fn send_traffic(gw: &Gateway) {
    let send = |path: &str, target: Option<&str>, want: u16| {
        let headers: Vec<(&str, &str)> =
            target.map(|t| ("X-Ficus-Target", t)).into_iter().collect();
        let r = get_raw(gw.listen, path, "test.local", &headers);
        assert_eq!(r.status, want, "{path}: {}", r.text());
    };
    for i in 0..ORDERS_TO_MONOLITH {
        send(&format!("/orders/m{i}"), Some("monolith"), 200);
    }
    for i in 0..ORDERS_TO_CATALOG {
        send(&format!("/orders/c{i}"), Some("catalog"), 200);
    }
    for i in 0..LEGACY_ROUTE {
        send(&format!("/account/{i}"), None, 200);
    }
    for i in 0..NEW_ROUTE_OK {
        send(&format!("/catalog/{i}"), None, 200);
    }
    for _ in 0..NEW_ROUTE_FAILING {
        send("/catalog/fail", None, 500);
    }
}

fn board(gw: &Gateway) -> Value {
    let r = gw
        .admin_get("/migration.json")
        .expect("GET /migration.json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    serde_json::from_slice(&r.body).expect("/migration.json is JSON")
}

/// The board once every request sent has been counted (requests are counted when logged,
/// just after the client has its answer) and the sparkline has at least `points` samples
/// with traffic.
fn settled_board(gw: &Gateway, points: usize) -> Value {
    let mut last = Value::Null;
    let ok = poll_until(Duration::from_secs(10), || {
        last = board(gw);
        let with_traffic = last["legacy_share_series"]
            .as_array()?
            .iter()
            .filter(|p| !p["legacy_share"].is_null())
            .count();
        (last["total"]["requests_5m"] == TOTAL && with_traffic >= points).then_some(())
    });
    assert!(ok.is_some(), "the board never settled:\n{last:#}");
    last
}

/// The board once the `account` route's shadow copies (one per request, compared off the
/// request path) have all been compared.
fn shadows_compared(gw: &Gateway) -> Value {
    let mut last = Value::Null;
    let ok = poll_until(Duration::from_secs(10), || {
        last = board(gw);
        (route(&last, "account")["shadow"]["compared"] == LEGACY_ROUTE).then_some(())
    });
    assert!(
        ok.is_some(),
        "the shadow copies were never all compared:\n{last:#}"
    );
    last
}

fn route<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no route {name} on the board:\n{b:#}"))
}

fn approx(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

/// A gateway on [`board_config`] that has served [`send_traffic`].
fn start_with_traffic() -> (Origin, Origin, Gateway) {
    sample_fast();
    let (mono, catalog) = origins();
    let gw = Gateway::start(&board_config(&mono, &catalog).build());
    send_traffic(&gw);
    (mono, catalog, gw)
}

#[test]
fn board_json_reports_the_legacy_share_per_route_and_in_total() {
    let (_mono, _catalog, gw) = start_with_traffic();
    let b = settled_board(&gw, 1);
    assert_eq!(b["legacy"], serde_json::json!(["monolith"]));
    assert!(b["notice"].is_null(), "{b:#}");
    assert!(approx(&b["sample_period_seconds"], 0.2), "{b:#}");

    // The headline: 14 of 25 requests served by the monolith.
    let t = &b["total"];
    let want = LEGACY_TOTAL as f64 / TOTAL as f64;
    assert!(approx(&t["legacy_share_5m"], want), "{t:#}");
    assert!(approx(&t["legacy_share_1h"], want), "{t:#}");
    assert_eq!(t["requests_1h"], TOTAL);
    assert_eq!(t["legacy"]["requests"], LEGACY_TOTAL);
    assert_eq!(t["new"]["requests"], TOTAL - LEGACY_TOTAL);
    assert_eq!(t["legacy"]["errors"], 0);
    assert_eq!(t["new"]["errors"], NEW_ROUTE_FAILING);
    assert!(
        approx(
            &t["new"]["error_rate"],
            NEW_ROUTE_FAILING as f64 / (TOTAL - LEGACY_TOTAL) as f64
        ),
        "{t:#}"
    );
    for side in ["legacy", "new"] {
        let p99 = t[side]["p99_ms"].as_f64();
        assert!(
            p99.is_some_and(|ms| ms > 0.0 && ms < 10_000.0),
            "{side} p99: {t:#}"
        );
    }

    // One entry per route, in priority order of the config.
    let names: Vec<&str> = b["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["account", "catalog", "orders"], "{b:#}");

    let orders = route(&b, "orders");
    assert_eq!(orders["target"], "split");
    assert_eq!(orders["path"], "/orders/**");
    assert_eq!(orders["services"][0]["service"], "monolith");
    assert_eq!(orders["services"][0]["legacy"], true);
    assert!(approx(&orders["services"][0]["weight_percent"], 50.0));
    assert_eq!(orders["services"][1]["service"], "catalog");
    assert_eq!(orders["services"][1]["legacy"], false);
    assert_eq!(
        orders["requests_5m"],
        ORDERS_TO_MONOLITH + ORDERS_TO_CATALOG
    );
    let orders_new = ORDERS_TO_CATALOG as f64 / (ORDERS_TO_MONOLITH + ORDERS_TO_CATALOG) as f64;
    assert!(approx(&orders["new_share_5m"], orders_new), "{orders:#}");
    assert!(approx(&orders["new_share_1h"], orders_new), "{orders:#}");
    assert!(orders["shadow"].is_null());

    let account = route(&b, "account");
    assert_eq!(account["target"], "legacy");
    assert!(approx(&account["new_share_5m"], 0.0), "{account:#}");
    assert_eq!(account["new"]["requests"], 0);
    assert!(
        account["new"]["error_rate"].is_null(),
        "no traffic is no rate: {account:#}"
    );
    assert_eq!(account["shadow"]["service"], "catalog", "{account:#}");
    // Every copy differs from the monolith's answer where the echo names its origin.
    let b = shadows_compared(&gw);
    let shadow = &route(&b, "account")["shadow"];
    assert_eq!(shadow["matched"], 0, "{shadow:#}");
    assert_eq!(shadow["mismatched"], LEGACY_ROUTE, "{shadow:#}");
    assert!(approx(&shadow["match_rate"], 0.0), "{shadow:#}");
    assert!(
        shadow["top_fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "$.origin" && f["count"] == LEGACY_ROUTE),
        "{shadow:#}"
    );
    // Shadow copies are not requests of the route: the shares are unchanged.
    assert_eq!(b["total"]["requests_5m"], TOTAL);

    let catalog = route(&b, "catalog");
    assert_eq!(catalog["target"], "new");
    assert!(approx(&catalog["new_share_5m"], 1.0), "{catalog:#}");
    assert!(
        approx(
            &catalog["new"]["error_rate"],
            1.0 / (NEW_ROUTE_OK + NEW_ROUTE_FAILING) as f64
        ),
        "{catalog:#}"
    );
    assert_eq!(catalog["fallbacks_5m"], 0);

    // Prometheus can tell the legacy apart.
    let metrics = gw.metrics();
    assert!(
        metrics.contains("ficus_service_info{service=\"monolith\",legacy=\"true\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ficus_service_info{service=\"catalog\",legacy=\"false\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_sparkline_follows_the_legacy_share_sample_by_sample() {
    sample_fast();
    let (mono, catalog) = origins();
    let gw = Gateway::start(&board_config(&mono, &catalog).build());
    // Only legacy traffic, then (a few samples later) only new traffic.
    for i in 0..5 {
        assert_eq!(
            get_raw(gw.listen, &format!("/account/{i}"), "t", &[]).status,
            200
        );
    }
    let mut last = Value::Null;
    let counted = |last: &mut Value, n: usize| {
        poll_until(Duration::from_secs(10), || {
            *last = board(&gw);
            let samples = last["legacy_share_series"].as_array()?.len();
            (last["total"]["requests_5m"] == n && samples >= 2).then_some(())
        })
        .is_some()
    };
    assert!(counted(&mut last, 5), "{last:#}");
    // Several sample periods without traffic.
    std::thread::sleep(Duration::from_millis(700));
    for i in 0..5 {
        assert_eq!(
            get_raw(gw.listen, &format!("/catalog/{i}"), "t", &[]).status,
            200
        );
    }
    assert!(counted(&mut last, 10), "{last:#}");
    // Each burst may straddle samples (on a busy machine even with empty samples inside
    // it), but the series reads: legacy only, then after a gap (intervals without requests
    // are gaps, not 0 %) new only.
    let series = last["legacy_share_series"].as_array().unwrap();
    let shares: Vec<Option<f64>> = series.iter().map(|p| p["legacy_share"].as_f64()).collect();
    let last_legacy = shares.iter().rposition(|s| *s == Some(1.0));
    let first_new = shares.iter().position(|s| *s == Some(0.0));
    let (Some(last_legacy), Some(first_new)) = (last_legacy, first_new) else {
        panic!("no legacy-only or no new-only interval:\n{last:#}");
    };
    assert!(
        last_legacy + 1 < first_new,
        "the legacy burst, a gap, then the new burst:\n{last:#}"
    );
    assert!(
        shares[last_legacy + 1..first_new]
            .iter()
            .all(Option::is_none),
        "{last:#}"
    );
    assert!(
        shares
            .iter()
            .all(|s| s.is_none() || *s == Some(1.0) || *s == Some(0.0)),
        "{last:#}"
    );
    let requests: u64 = series.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 10, "{last:#}");
    for p in series.iter().filter(|p| p["legacy_share"].is_null()) {
        assert_eq!(p["requests"], 0, "{p}");
    }
    // Both bursts are in the 5-minute window: 5 of 10.
    assert!(approx(&last["total"]["legacy_share_5m"], 0.5), "{last:#}");
}

#[test]
fn routes_removed_by_a_reload_leave_the_board() {
    sample_fast();
    let (mono, catalog) = origins();
    let gw = Gateway::start(&board_config(&mono, &catalog).build());
    send_traffic(&gw);
    settled_board(&gw, 1);
    let before = gw.generation();
    gw.reload(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set("legacy", r#""monolith""#);
            })
            .service("monolith", &[mono.addr()])
            .service("catalog", &[catalog.addr()])
            .route("catalog", "/catalog/**", "catalog")
            .build(),
    );
    assert!(gw.generation() > before);
    let b = board(&gw);
    let names: Vec<&str> = b["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["catalog"], "{b:#}");
    // What is left is the new-only route: the legacy serves none of what remains.
    assert_eq!(b["total"]["requests_5m"], NEW_ROUTE_OK + NEW_ROUTE_FAILING);
    assert!(approx(&b["total"]["legacy_share_5m"], 0.0), "{b:#}");
}

#[test]
fn without_legacy_the_board_says_so_instead_of_guessing() {
    sample_fast();
    let (mono, catalog) = origins();
    let gw = Gateway::start(
        &board_config(&mono, &catalog)
            .gateway(|g| {
                g.remove("legacy");
            })
            .build(),
    );
    send_traffic(&gw);
    let mut b = Value::Null;
    let ok = poll_until(Duration::from_secs(10), || {
        b = board(&gw);
        (b["total"]["requests_5m"] == TOTAL).then_some(())
    });
    assert!(ok.is_some(), "{b:#}");
    assert!(
        b["notice"]
            .as_str()
            .is_some_and(|n| n.contains("[gateway] legacy")),
        "{b:#}"
    );
    assert!(b["total"]["legacy_share_5m"].is_null(), "{b:#}");
    assert_eq!(route(&b, "account")["target"], "unknown");
    assert!(route(&b, "orders")["new_share_5m"].is_null());
    assert!(gw
        .metrics()
        .contains("ficus_service_info{service=\"monolith\",legacy=\"false\"} 1"));
}

#[test]
fn status_prints_the_headline_and_one_line_per_route() {
    let (_mono, _catalog, gw) = start_with_traffic();
    settled_board(&gw, 1);
    shadows_compared(&gw);
    let admin = gw.admin.to_string();
    let (code, out, err) = ficus(&["status", "--admin", &admin]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // 14 of 25.
    assert!(
        out.contains("the legacy (monolith) still serves 56.0% of all traffic over the last 5 min (25 requests)"),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    let orders = line("orders");
    assert!(
        orders.contains("split monolith 50% / catalog 50%"),
        "{orders}"
    );
    assert!(orders.contains("60.0%"), "{orders}");
    let account = line("account");
    assert!(
        account.contains("legacy monolith +shadow catalog"),
        "{account}"
    );
    assert!(account.contains(" 0.0% "), "{account}");
    assert!(account.contains("0.0% of 10"), "shadow match: {account}");
    assert!(
        account.contains("$.origin x10"),
        "top mismatches: {account}"
    );
    let catalog = line("catalog");
    assert!(catalog.contains("new catalog"), "{catalog}");
    assert!(catalog.contains("100.0%"), "{catalog}");
    assert!(catalog.contains("- / 20.0%"), "5xx legacy/new: {catalog}");
    assert!(out.lines().any(|l| l.starts_with("ROUTE ")), "{out}");
    assert!(out.contains("legacy share per 0.2s sample: "), "{out}");

    // The admin address from the config file when --admin is not given.
    std::fs::write(
        gw.dir().join("status.toml"),
        ConfigBuilder::new()
            .gateway(|g| {
                g.set("admin", format!("\"{admin}\""));
                g.set("listen", "[\"127.0.0.1:1\"]");
            })
            .service("monolith", &[gw.admin])
            .catch_all("monolith")
            .build(),
    )
    .unwrap();
    let cfg = gw.dir().join("status.toml");
    let (code, out, err) = ficus(&["status", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("(admin listener {admin})")), "{out}");
    assert!(out.contains("56.0%"), "{out}");
}

#[test]
fn status_says_clearly_when_the_gateway_is_not_reachable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = ficus(&["status", "--admin", &port.to_string()]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("admin listener at {port} is not reachable"))
            && err.contains("--admin"),
        "{err}"
    );
    let (code, _, err) = ficus(&["status", "--admin", "not an address"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not an address"), "{err}");
    // Something else listening there: said so, not shown as an empty board.
    let other = Origin::start("other");
    let (code, _, err) = ficus(&["status", "--admin", &other.addr().to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("not a migration board"), "{err}");
}

/// `(data-route)` of every element with class `class` in serialized HTML.
fn rows_with_class(dom: &str, tag: &str, class: &str) -> Vec<String> {
    dom.match_indices(&format!("<{tag} "))
        .filter_map(|(i, _)| {
            let head = &dom[i..i + dom[i..].find('>')?];
            head.contains(&format!("class=\"{class}\"")).then(|| {
                let start = head.find("data-route=\"")? + "data-route=\"".len();
                Some(head[start..start + head[start..].find('"')?].to_string())
            })?
        })
        .collect()
}

#[test]
fn the_board_page_in_chromium_shows_the_headline_routes_and_sparkline() {
    let (_mono, _catalog, gw) = start_with_traffic();
    settled_board(&gw, 1);
    shadows_compared(&gw);

    let page = gw.admin_get("/migration").expect("GET /migration");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("text/html")));
    let url = gw.admin_url("/migration");

    let dom = browser::dump_dom(&url);
    assert_eq!(
        browser::element_text(&dom, "legacy-share"),
        Some("56.0%"),
        "{dom}"
    );
    assert_eq!(
        browser::element_text(&dom, "legacy-share-1h"),
        Some("56.0%"),
        "{dom}"
    );
    let banner = browser::element_text(&dom, "banner").expect("banner element");
    assert!(banner.is_empty(), "the page shows a fetch error: {banner}");
    let mut rows = rows_with_class(&dom, "tr", "route-row");
    rows.sort();
    assert_eq!(rows, ["account", "catalog", "orders"], "{dom}");
    // The shadowed route's row: its match rate and the field that differed.
    let account = &dom[dom
        .find("data-route=\"account\" data-target")
        .expect("account row")..];
    let account = &account[..account.find("</tr>").unwrap()];
    assert!(account.contains("10 compared"), "{account}");
    assert!(account.contains("$.origin × 10"), "{account}");
    let mut bars = rows_with_class(&dom, "div", "bar-row");
    bars.sort();
    assert_eq!(bars, ["account", "catalog", "orders"], "{dom}");
    // The sparkline: an SVG polyline with at least two points (a step per sample).
    let svg_start = dom.find("<svg id=\"sparkline\"").expect("svg#sparkline");
    let svg = &dom[svg_start..svg_start + dom[svg_start..].find("</svg>").unwrap()];
    let points: Vec<&str> = svg
        .match_indices("points=\"")
        .flat_map(|(i, _)| {
            let s = &svg[i + 8..];
            s[..s.find('"').unwrap()].split_whitespace()
        })
        .collect();
    assert!(points.len() >= 2, "sparkline points: {svg}");
    assert!(
        points
            .iter()
            .all(|p| p.split(',').count() == 2 && p.split(',').all(|n| n.parse::<f64>().is_ok())),
        "{points:?}"
    );

    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("migration-board.png");
    browser::screenshot(&url, &png);
    let shot = browser::Image::load_png(&png);
    assert_eq!((shot.width, shot.height), browser::WINDOW_SIZE);
    let orange = shot.count_near(LEGACY_ORANGE, TOLERANCE);
    let blue = shot.count_near(NEW_BLUE, TOLERANCE);
    assert!(
        orange >= MIN_BAR_PIXELS,
        "legacy bars: only {orange} pixels near #bc4c00 in {} (blue: {blue})",
        png.display()
    );
    assert!(
        blue >= MIN_BAR_PIXELS,
        "new bars: only {blue} pixels near #0969da in {} (orange: {orange})",
        png.display()
    );
}

#[test]
fn check_refuses_unknown_legacy_names_and_warns_when_legacy_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (mono, catalog) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let base = || {
        ConfigBuilder::new()
            .service("monolith", &[mono])
            .service("catalog", &[catalog])
            .route_with("orders", "/orders/**", "monolith", |r| {
                r.remove("service");
                r.set(
                    "split",
                    r#"[{ service = "monolith", weight = 90 }, { service = "catalog", weight = 10 }]"#,
                );
            })
    };
    let check = |name: &str, cfg: String| {
        let path = dir.path().join(name);
        let cfg = cfg
            .replace("{listen}", "127.0.0.1:0")
            .replace("{admin}", "127.0.0.1:0");
        std::fs::write(&path, cfg).unwrap();
        ficus(&["check", path.to_str().unwrap()])
    };

    let (code, out, err) = check(
        "typo.toml",
        base()
            .gateway(|g| {
                g.set("legacy", r#"["monolit", "catalog"]"#);
            })
            .build(),
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("unknown legacy service `monolit`"), "{out}");
    assert!(out.contains("did you mean `monolith`?"), "{out}");
    assert!(out.contains("gateway.legacy"), "{out}");

    let (code, out, err) = check(
        "empty.toml",
        base()
            .gateway(|g| {
                g.set("legacy", "[]");
            })
            .build(),
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("`legacy` lists no service"), "{out}");

    let (code, out, err) = check(
        "type.toml",
        base()
            .gateway(|g| {
                g.set("legacy", "3");
            })
            .build(),
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("a service name or a list of service names"),
        "{out}"
    );

    let (code, out, err) = check("unset.toml", base().build());
    assert_eq!(code, 1, "warnings only: stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("`[gateway] legacy` does not say which"),
        "{out}"
    );

    let (code, out, err) = check(
        "ok.toml",
        base()
            .gateway(|g| {
                g.set("legacy", r#""monolith""#);
            })
            .build(),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

#[test]
fn the_grafana_dashboard_is_well_formed_and_uses_the_gateway_s_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/migration-board.json"
    );
    let text = std::fs::read_to_string(path).expect("docs/grafana/migration-board.json");
    let d: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let panels = d["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 5, "{exprs:?}");
    // Every metric the dashboard reads is one the gateway exports.
    for metric in [
        "ficus_requests_total",
        "ficus_service_info",
        "ficus_shadow_requests_total",
        "ficus_split_fallbacks_total",
        "ficus_request_duration_seconds_bucket",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel reads {metric}: {exprs:?}"
        );
    }
    for e in &exprs {
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ficus_"))
        {
            assert!(
                [
                    "ficus_requests_total",
                    "ficus_service_info",
                    "ficus_shadow_requests_total",
                    "ficus_shadow_field_mismatches_total",
                    "ficus_split_fallbacks_total",
                    "ficus_request_duration_seconds_bucket",
                ]
                .contains(&name),
                "unknown metric {name} in {e}"
            );
        }
        // Balanced brackets: a typo there is a panel that never loads.
        for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
            assert_eq!(
                e.matches(open).count(),
                e.matches(close).count(),
                "unbalanced {open}{close} in {e}"
            );
        }
    }
}

#[test]
fn fallbacks_and_the_new_side_s_failures_show_on_the_board() {
    sample_fast();
    let mono = Origin::start("monolith");
    let fresh = Origin::start("fresh");
    let gw = Gateway::start(
        &ConfigBuilder::new()
            .gateway(|g| {
                g.set("legacy", r#""monolith""#);
            })
            .service("monolith", &[mono.addr()])
            .service_with("fresh", &[fresh.addr()], |s| {
                s.set(
                    "breaker",
                    r#"{ consecutive_failures = 2, open_for = "60s" }"#,
                );
            })
            .route_with("orders", "/orders/**", "monolith", |r| {
                r.remove("service");
                r.set(
                    "split",
                    r#"[{ service = "monolith", weight = 0 }, { service = "fresh", weight = 100 }]"#,
                );
                r.set_str("fallback", "monolith");
            })
            .route_with("search", "/search/**", "fresh", |r| {
                r.set_str("fallback", "monolith");
            })
            .build(),
    );
    assert_eq!(gw.get("/orders/1").origin().as_deref(), Some("fresh"));
    fresh.stop();
    // Requests fail on the new side until its breaker opens; then the monolith serves them.
    let opened = poll_until(Duration::from_secs(10), || {
        let r = gw.get("/orders/1");
        (r.status == 200 && r.origin().as_deref() == Some("monolith")).then_some(())
    });
    assert!(opened.is_some(), "the breaker never opened:\n{}", gw.logs());
    for i in 0..3 {
        assert_eq!(
            gw.get(&format!("/orders/{i}")).origin().as_deref(),
            Some("monolith")
        );
        assert_eq!(
            gw.get(&format!("/search/{i}")).origin().as_deref(),
            Some("monolith")
        );
    }
    // The board agrees with the Prometheus counters once every request is counted.
    let mut last = Value::Null;
    let ok = poll_until(Duration::from_secs(10), || {
        let metrics = gw.metrics();
        let fell_back = metric_sum(
            &metrics,
            "ficus_split_fallbacks_total",
            &[("route", "orders")],
        )?;
        let requests = metric_sum(&metrics, "ficus_requests_total", &[])?;
        last = board(&gw);
        (last["total"]["requests_5m"].as_f64() == Some(requests)
            && route(&last, "orders")["fallbacks_5m"].as_f64() == Some(fell_back))
        .then_some(())
    });
    assert!(ok.is_some(), "{last:#}\n{}", gw.metrics());
    let orders = route(&last, "orders");
    assert!(orders["fallbacks_5m"].as_u64().unwrap() >= 4, "{orders:#}");
    // The new side's failures before the breaker opened: 5xx only there.
    assert!(orders["new"]["errors"].as_u64().unwrap() >= 1, "{orders:#}");
    assert!(approx(&orders["legacy"]["error_rate"], 0.0), "{orders:#}");
    // A plain route's fallbacks: the requests its fallback service served.
    let search = route(&last, "search");
    assert_eq!(search["fallbacks_5m"], 3, "{search:#}");
    assert_eq!(search["legacy"]["requests"], 3, "{search:#}");
    assert_eq!(search["target"], "new");
    assert_eq!(
        last["total"]["fallbacks_5m"].as_u64(),
        Some(orders["fallbacks_5m"].as_u64().unwrap() + 3)
    );
}

/// Answers the gateway gives itself on a route (CORS preflights, refused ones) are no
/// service's traffic: on a split whose first side is the legacy they used to count as
/// legacy traffic, so the headline share followed the order of the sides in the file.
#[test]
fn gateway_answers_are_no_sides_traffic() {
    sample_fast();
    let (mono, catalog) = origins();
    let cfg = board_config(&mono, &catalog)
        .table("cors.app", |t| {
            t.set("origins", r#"["https://app.example"]"#);
        })
        .edit_route("orders", |r| {
            r.set_str("cors", "app");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let preflight = |origin: &str| {
        raw_request(
            gw.listen,
            format!(
                "OPTIONS /orders/1 HTTP/1.1\r\nHost: test.local\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    for _ in 0..3 {
        assert_eq!(preflight("https://app.example").status, 204);
    }
    for _ in 0..2 {
        assert_eq!(preflight("https://evil.example").status, 403);
    }
    for i in 0..4 {
        let r = get_raw(
            gw.listen,
            &format!("/orders/{i}"),
            "test.local",
            &[("X-Ficus-Target", "catalog")],
        );
        assert_eq!(r.status, 200);
    }
    let mut last = Value::Null;
    let ok = poll_until(Duration::from_secs(10), || {
        last = board(&gw);
        (last["total"]["requests_5m"] == 4).then_some(())
    });
    assert!(
        ok.is_some(),
        "the board counts 4 served requests:\n{last:#}"
    );
    assert!(
        approx(&last["total"]["legacy_share_5m"], 0.0),
        "the monolith served none of them:\n{last:#}"
    );
    let m = gw.metrics();
    for line in [
        "ficus_requests_total{route=\"orders\",service=\"\",status=\"204\"} 3",
        "ficus_requests_total{route=\"orders\",service=\"\",status=\"403\"} 2",
        "ficus_requests_total{route=\"orders\",service=\"catalog\",status=\"200\"} 4",
    ] {
        assert!(m.contains(line), "no `{line}` in\n{m}");
    }
    assert!(
        !m.contains("ficus_requests_total{route=\"orders\",service=\"monolith\""),
        "the monolith served nothing on `orders`:\n{m}"
    );
    assert_eq!(mono.requests(), 0);
}
