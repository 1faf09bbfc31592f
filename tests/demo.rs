//! `ficus demo`: what a newcomer runs first.
mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// The repository's routes.toml with its addresses moved to free ports. The harness has
/// three listener placeholders; the sample orders service gets a port picked here.
fn demo_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "{listen}")
        .replace("127.0.0.1:9901", "{admin}")
        .replace("127.0.0.1:8081", "{listen2}")
        .replace("127.0.0.1:8082", "{listen3}")
        .replace("127.0.0.1:8083", &free_addr().to_string())
}

/// Attempts at starting the demo when the orders port picked here was taken in between
/// (the harness retries its own placeholders itself).
const ORDERS_PORT_ATTEMPTS: usize = 5;

/// `ficus demo` on the repository's routes.toml, on free ports.
fn start_demo() -> Gateway {
    let mut last = String::new();
    for _ in 0..ORDERS_PORT_ATTEMPTS {
        match demo(&demo_config()).try_start() {
            Ok(gw) => return gw,
            Err(e) if e.contains("sample orders service address") && e.contains("in use") => {
                last = e
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the orders port was taken {ORDERS_PORT_ATTEMPTS} times: {last}")
}

/// `ficus demo` on the config. Its sample origins listen where the config says, so the
/// config names real ports (picked free by the fixture, retried if one was taken).
fn demo(config: &str) -> GatewayBuilder {
    Gateway::builder(config)
        .args(|p| vec!["demo".into(), "--config".into(), p.display().to_string()])
        .fixed_ports()
}

/// The demo's sample monolith answers what is not migrated, its sample deliveries service
/// answers the migrated path with the rewritten path, an encoded slash is refused, and the
/// banner shows runnable commands.
#[test]
fn demo_routes_between_the_sample_monolith_and_the_new_service() {
    let mut gw = start_demo();
    let r = gw.get("/products/7");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["served_by"], "legacy-monolith");
    assert_eq!(r.json()["path"], "/products/7");
    let r = gw.get("/deliveries/42");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["served_by"], "deliveries-service");
    assert_eq!(r.json()["path"], "/v2/deliveries/42");
    assert_eq!(r.header("x-served-by"), Some("deliveries-service"));
    assert_eq!(
        r.json()["request_id"].as_str(),
        r.header("x-request-id"),
        "the service got the request id the client sees"
    );
    assert_eq!(gw.get("/a%2Fb").status, 400);
    // The back office is for loopback's own address only.
    assert_eq!(gw.get("/admin/users").status, 200);
    let outsider = send_from(
        "127.0.0.2".parse().unwrap(),
        gw.listen,
        b"GET /admin/users HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(outsider.status, 403, "{}", outsider.text());
    let banner = poll_until(Duration::from_secs(5), || {
        let logs = gw.logs();
        logs.contains("explain --config").then_some(logs)
    })
    .expect("the banner");
    let explain = banner
        .lines()
        .find(|l| l.contains("explain --config"))
        .unwrap()
        .trim()
        .to_string();
    let exe = explain.split_whitespace().next().unwrap();
    assert!(
        std::path::Path::new(exe).exists(),
        "the banner's explain command names a binary that exists: {explain}"
    );
    gw.signal(libc::SIGINT);
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
}

/// When one of the demo's addresses is taken the demo says which and exits 1, instead of
/// proxying to a stranger.
#[test]
fn demo_refuses_to_start_on_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = demo_config().replace("{listen2}", &taken.local_addr().unwrap().to_string());
    let err = demo(&cfg)
        .try_start()
        .err()
        .expect("the demo must not start");
    assert!(
        err.contains("exited (exit status: 1) before it was ready"),
        "{err}"
    );
    assert!(err.contains("sample monolith address"), "{err}");
    assert!(err.contains("is in use"), "{err}");
}

/// The monolith's total for the demo's order (VAT rounded per line), and the new orders
/// service's (VAT rounded once): the one real difference.
const MONOLITH_TOTAL: f64 = 37.16;
const ORDERS_TOTAL: f64 = 37.15;
/// Requests sent at most while waiting for noise to be learned. With `noise_sample = 0.2`
/// the chance that none of them teaches it is 0.8^300, nil.
const MAX_ORDER_REQUESTS: usize = 300;

/// GET `/orders/42`: the client always gets the monolith's order, whatever the shadow does.
fn get_order(gw: &Gateway) {
    let r = gw.get("/orders/42");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-sample-origin"), Some("legacy-monolith"));
    let order = r.json();
    assert_eq!(order["id"], 42);
    assert_eq!(order["total"], MONOLITH_TOTAL, "{order}");
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["items"].as_array().map(Vec::len), Some(3), "{order}");
    assert!(order["generated_at"].as_str().is_some(), "{order}");
}

fn shadow_record(gw: &Gateway) -> Value {
    let r = gw.admin_get("/shadow/orders").expect("GET /shadow/orders");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn noise_fields(record: &Value) -> Vec<String> {
    record["noise"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["noise"] == true)
        .filter_map(|f| f["field"].as_str().map(str::to_owned))
        .collect()
}

/// Every copy sent so far is accounted for in the record: compared, or failed.
fn wait_compared(gw: &Gateway, sent: u64) -> Value {
    poll_until(Duration::from_secs(10), || {
        let r = shadow_record(gw);
        let settled = ["compared", "shadow_errors", "shadow_timeouts", "dropped"]
            .iter()
            .map(|k| r[*k].as_u64().unwrap_or(0))
            .sum::<u64>();
        (settled >= sent).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "{sent} copies not accounted for: {}\n{}",
            shadow_record(gw),
            gw.logs()
        )
    })
}

/// The demo's shadowed route: clients get the monolith's orders, copies go to the new
/// orders service, and the record shows what a newcomer should see: every copy compared,
/// one real mismatching field (`$.total`, VAT rounded differently), the timestamp learned
/// as noise rather than counted, and `ficus shadow orders` printing the same.
#[test]
fn demo_shadows_orders_with_one_real_mismatch_and_learned_noise() {
    let gw = start_demo();
    let mut sent = 0u64;
    // Until a second monolith answer has taught the timestamp as noise.
    while noise_fields(&wait_compared(&gw, sent)).is_empty() {
        assert!(
            (sent as usize) < MAX_ORDER_REQUESTS,
            "no noise learned after {sent} requests: {}",
            shadow_record(&gw)
        );
        for _ in 0..10 {
            get_order(&gw);
            sent += 1;
        }
    }
    // A few more, compared with the noise known.
    for _ in 0..5 {
        get_order(&gw);
        sent += 1;
    }
    let record = wait_compared(&gw, sent);
    assert_eq!(record["service"], "orders");
    assert_eq!(record["compared"], sent, "every copy compared: {record}");
    for k in [
        "shadow_errors",
        "shadow_timeouts",
        "dropped",
        "too_large_answers",
    ] {
        assert_eq!(record[k], 0, "{k}: {record}");
    }
    // Every order's total differs, so nothing matches.
    assert_eq!(record["mismatched"], sent, "{record}");
    assert_eq!(record["matched"], 0, "{record}");
    assert_eq!(noise_fields(&record), ["$.generated_at"], "{record}");
    // The one real mismatching field: in every mismatch. The timestamp may be listed from
    // mismatches recorded before it was learned, marked as noise.
    let fields = record["fields"].as_array().expect("fields");
    let real: Vec<&Value> = fields.iter().filter(|f| f["noise"] != true).collect();
    assert_eq!(
        real.len(),
        1,
        "exactly one real mismatching field: {record}"
    );
    assert_eq!(real[0]["field"], "$.total");
    assert_eq!(real[0]["count"], sent);
    for f in fields.iter().filter(|f| f["noise"] == true) {
        assert_eq!(f["field"], "$.generated_at", "{record}");
    }
    // The newest sample, compared with the noise known: the total alone.
    let sample = &record["samples"][0];
    assert_eq!(sample["method"], "GET");
    assert_eq!(sample["path"], "/orders/42");
    let diffs = sample["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{sample}");
    assert_eq!(diffs[0]["kind"], "value_changed");
    assert_eq!(diffs[0]["path"], "$.total");
    assert_eq!(diffs[0]["primary"], MONOLITH_TOTAL.to_string());
    assert_eq!(diffs[0]["shadow"], ORDERS_TOTAL.to_string());
    // The admin listing and the metrics say the same.
    let all = gw.admin_get("/shadow").expect("GET /shadow").json();
    let orders = all
        .as_array()
        .and_then(|a| a.iter().find(|r| r["route"] == "orders"))
        .unwrap_or_else(|| panic!("orders in /shadow: {all}"));
    assert_eq!(orders["top_fields"][0], "$.total", "{all}");
    assert_eq!(orders["noise_fields"], 1, "{all}");
    let metrics = gw.metrics();
    let line = format!(
        "ficus_shadow_requests_total{{route=\"orders\",service=\"orders\",result=\"mismatched\"}} {sent}"
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    // The terminal view.
    let admin = gw.admin.to_string();
    let (code, out, err) = ficus(&["shadow", "orders", "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "compared {sent}: matched 0 (0.0%), mismatched {sent}"
        )),
        "{out}"
    );
    let total_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("$.total ") && !l.contains("value changed"))
        .unwrap_or_else(|| panic!("$.total among the mismatching fields: {out}"));
    assert!(total_line.trim_end().ends_with(&sent.to_string()), "{out}");
    assert!(!total_line.contains("noise"), "{out}");
    let noise_line = out
        .lines()
        .find(|l| l.starts_with("noise learned from"))
        .unwrap_or_else(|| panic!("a noise line: {out}"));
    assert!(noise_line.ends_with(": $.generated_at"), "{out}");
    assert!(
        out.contains(&format!(
            "$.total value changed: {MONOLITH_TOTAL} -> {ORDERS_TOTAL}"
        )),
        "{out}"
    );
}
