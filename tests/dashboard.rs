//! The registry dashboard (`GET /registry/ui` on the admin listener) in a real headless
//! browser: the page fetches `/registry`, renders one row per instance with its health, and
//! colours the health badges so that a person sees an unhealthy instance at a glance.

mod common;

use common::browser;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Health badge backgrounds, as in src/admin/dashboard.html.
const HEALTHY_GREEN: [u8; 3] = [0x1a, 0x7f, 0x37];
const UNHEALTHY_RED: [u8; 3] = [0xcf, 0x22, 0x2e];
/// Per channel: anti-aliasing at the badge edges and colour management may shift a little.
const TOLERANCE: u8 = 8;
/// One badge is roughly 80x18 pixels, about 1000 of them in the badge colour; ask for 40 % of one.
const MIN_BADGE_PIXELS: usize = 400;

fn config(a: SocketAddr, b: SocketAddr) -> String {
    ConfigBuilder::new()
        .service_with("orders", &[a, b], |s| {
            s.set(
                "health",
                r#"{ path = "/health", interval = "200ms", timeout = "200ms", healthy_after = 2, unhealthy_after = 2 }"#,
            );
        })
        .route("orders", "/orders/**", "orders")
        .build()
}

/// The `health` of `addr` in service `service` of a `/registry` document.
fn health_of<'a>(registry: &'a Value, service: &str, addr: SocketAddr) -> Option<&'a str> {
    registry["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == service)?["instances"]
        .as_array()?
        .iter()
        .find(|i| i["addr"] == addr.to_string().as_str())?["health"]
        .as_str()
}

/// `(data-addr, data-health)` of every `<tr class="instance-row" ...>` in serialized HTML.
fn instance_rows(dom: &str) -> Vec<(String, String)> {
    fn attr(tag: &str, name: &str) -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    }
    dom.match_indices("<tr")
        .filter_map(|(i, _)| {
            let tag = &dom[i..i + dom[i..].find('>')?];
            let classes = attr(tag, "class")?;
            classes
                .split_whitespace()
                .any(|c| c == "instance-row")
                .then(|| {
                    (
                        attr(tag, "data-addr").unwrap_or_default(),
                        attr(tag, "data-health").unwrap_or_default(),
                    )
                })
        })
        .collect()
}

#[test]
fn dashboard_shows_healthy_and_unhealthy_instances() {
    let up = Origin::start("up");
    let down = Origin::start("down");
    down.stop();
    let (a, b) = (up.addr(), down.addr());
    let gw = Gateway::start(&config(a, b));

    // Wait until the health checks have settled: `up` healthy, `down` unhealthy.
    let mut last = Value::Null;
    let settled = poll_until(Duration::from_secs(15), || {
        let r = gw.admin_get("/registry").ok()?;
        if r.status != 200 {
            return None;
        }
        last = serde_json::from_slice(&r.body).ok()?;
        (health_of(&last, "orders", a) == Some("healthy")
            && health_of(&last, "orders", b) == Some("unhealthy"))
        .then_some(())
    });
    assert!(
        settled.is_some(),
        "after 15 s /registry does not show {a} healthy and {b} unhealthy:\n{last:#}"
    );

    let ui = gw.admin_url("/registry/ui");
    let page = gw.admin_get("/registry/ui").expect("GET /registry/ui");
    assert_eq!(page.status, 200, "GET /registry/ui: {}", page.text());
    assert!(
        page.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/html")),
        "content-type of /registry/ui: {:?}",
        page.header("content-type")
    );

    // The DOM after the page's scripts ran: one row per instance, with its health.
    let dom = browser::dump_dom(&ui);
    let mut rows = instance_rows(&dom);
    rows.sort();
    let mut want = vec![
        (a.to_string(), "healthy".to_string()),
        (b.to_string(), "unhealthy".to_string()),
    ];
    want.sort();
    assert_eq!(rows, want, "instance rows of the rendered page:\n{dom}");
    let banner = browser::element_text(&dom, "banner").expect("error banner element in the page");
    assert!(banner.is_empty(), "the page shows a fetch error: {banner}");

    // What a person sees: a green and a red health badge.
    // Kept after the run (target/tmp) so that a failure can be looked at.
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser::screenshot(&ui, &png);
    let shot = browser::Image::load_png(&png);
    assert_eq!(
        (shot.width, shot.height),
        browser::WINDOW_SIZE,
        "screenshot size"
    );
    let green = shot.count_near(HEALTHY_GREEN, TOLERANCE);
    let red = shot.count_near(UNHEALTHY_RED, TOLERANCE);
    assert!(
        green >= MIN_BADGE_PIXELS,
        "healthy badge: only {green} pixels near #1a7f37 in {} (red: {red})",
        png.display()
    );
    assert!(
        red >= MIN_BADGE_PIXELS,
        "unhealthy badge: only {red} pixels near #cf222e in {} (green: {green})",
        png.display()
    );
}
