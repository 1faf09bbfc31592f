mod common;
use common::*;
use std::time::Duration;

#[test]
fn admin_endpoints_and_metrics_exposition() {
    let o = Origin::start("orders");
    let dead = Origin::start("dead");
    dead.stop();
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.orders]
instances = ["{origin:orders}"]

[services.dead]
instances = ["{origin:dead}"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "orders"

[[routes]]
name = "dead"
match = { path = "/dead/**" }
service = "dead"
"#),
        &[&o, &dead],
    );
    let gw = Gateway::start(&cfg);
    assert_eq!(gw.admin_get("/healthz").unwrap().status, 200);
    assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);

    for i in 0..5 {
        assert_eq!(gw.get(&format!("/orders/{i}")).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(gw.get("/dead/x").status, 502);
    }
    assert_eq!(gw.get("/nowhere").status, 404);

    let labels = [
        ("route", "orders"),
        ("service", "orders"),
        ("status", "200"),
    ];
    // metrics are recorded after the response is sent: poll until all of them have landed
    let text = poll_until(Duration::from_secs(3), || {
        let t = gw.metrics();
        (metric_sum(&t, "ficus_requests_total", &labels) == Some(5.0)
            && metric_sum(&t, "ficus_requests_total", &[("status", "502")]) == Some(2.0)
            && metric_sum(&t, "ficus_requests_total", &[("status", "404")]) == Some(1.0))
        .then_some(t)
    })
    .unwrap_or_else(|| {
        let t = gw.metrics();
        panic!(
            "expected ficus_requests_total: orders/200 = 5, 502 = 2, 404 = 1 (orders/200 got {:?})\n{t}",
            metric_sum(&t, "ficus_requests_total", &labels)
        )
    });
    let r = gw.admin_get("/metrics").unwrap();
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "content-type {:?}",
        r.header("content-type")
    );
    assert!(
        text.contains("# TYPE ficus_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ficus_request_duration_seconds histogram"),
        "{text}"
    );

    // latency histogram: +Inf bucket counts every request of the orders route
    let inf = parse_metrics(&text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "ficus_request_duration_seconds_bucket"
                && l.get("le").map(String::as_str) == Some("+Inf")
                && l.get("route").map(|r| r == "orders").unwrap_or(true)
        })
        .map(|(_, _, v)| v)
        .sum::<f64>();
    assert!(inf >= 5.0, "histogram +Inf bucket total {inf} < 5\n{text}");
    // buckets are cumulative: some finite bucket exists and is <= +Inf
    assert!(
        parse_metrics(&text)
            .iter()
            .any(|(n, l, _)| n == "ficus_request_duration_seconds_bucket"
                && l.get("le").is_some_and(|le| le != "+Inf")),
        "no finite histogram buckets\n{text}"
    );

    let errs = metric_sum(&text, "ficus_upstream_errors_total", &[("service", "dead")]);
    assert!(
        errs.unwrap_or(0.0) >= 2.0,
        "ficus_upstream_errors_total{{service=\"dead\"}} = {errs:?}\n{text}"
    );
    assert!(
        parse_metrics(&text)
            .iter()
            .any(|(n, l, _)| n == "ficus_upstream_errors_total" && l.contains_key("kind")),
        "upstream errors need a kind label\n{text}"
    );
    let s502 = metric_sum(
        &text,
        "ficus_requests_total",
        &[("route", "dead"), ("status", "502")],
    );
    assert_eq!(s502, Some(2.0), "502s counted per route\n{text}");
    let s404 = metric_sum(&text, "ficus_requests_total", &[("status", "404")]);
    assert_eq!(s404, Some(1.0), "404 counted\n{text}");
    // the reload counters exist from the start
    assert!(text.contains("ficus_config_reloads_total"), "{text}");
}
