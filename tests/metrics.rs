mod common;
use common::*;
use std::time::Duration;

#[test]
fn admin_endpoints_and_metrics_exposition() {
    let o = Origin::start("orders");
    let dead = Origin::start("dead");
    dead.stop();
    let cfg = ConfigBuilder::new()
        .service("orders", &[o.addr()])
        .service("dead", &[dead.addr()])
        .route("orders", "/orders/**", "orders")
        .route("dead", "/dead/**", "dead")
        .build();
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

/// A sample: metric name, decoded labels in order, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses one sample line of the Prometheus text format strictly: `name{k="v",...} value`,
/// with `\\`, `\"` and `\n` the only escapes in a label value. Returns the labels, decoded.
fn strict_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let mut key = String::new();
            let (_, c) = chars.next().ok_or("unterminated label set")?;
            if c == '}' && key.is_empty() && labels.is_empty() {
                rest = &body[1..];
                break;
            }
            let mut c = c;
            while c != '=' {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad label name char {c:?}"));
                }
                key.push(c);
                c = chars.next().ok_or("label without value")?.1;
            }
            if chars.next().map(|x| x.1) != Some('"') {
                return Err(format!("label {key} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\n' => return Err("raw newline in label value".into()),
                    '\\' => match chars.next().ok_or("dangling backslash")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        o => return Err(format!("invalid escape \\{o}")),
                    },
                    o => value.push(o),
                }
            }
            labels.push((key, value));
            match chars.next().ok_or("unterminated label set")? {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &body[i + 1..];
                    break;
                }
                (_, o) => return Err(format!("unexpected {o:?} after a label")),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok((name.to_string(), labels, value))
}

/// QA obs #3: a service or route name with `"`, `\` or a newline must not break the
/// scrape; every family (request counters, and the registry's instance, breaker, retry and
/// ejection gauges) escapes its label values.
#[test]
fn metrics_escape_odd_service_and_route_names() {
    let o = Origin::start("odd");
    // Quoted and escaped in the file: `[services."a\"b\\c\nd"]`.
    let cfg = ConfigBuilder::new()
        .service("a\"b\\c\nd", &[o.addr()])
        .route("r\"1\\", "/**", "a\"b\\c\nd")
        .build();
    let gw = Gateway::start(&cfg);
    assert_eq!(gw.get("/x").status, 200);
    let service = "a\"b\\c\nd";
    let text = poll_until(Duration::from_secs(3), || {
        let t = gw.metrics();
        t.contains("ficus_requests_total{route=\"r\\\"1\\\\\"")
            .then_some(t)
    })
    .unwrap_or_else(|| panic!("request not counted\n{}", gw.metrics()));
    let mut families_with_service = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, labels, _) = strict_sample(line)
            .unwrap_or_else(|e| panic!("unparseable line {line:?}: {e}\n{text}"));
        if labels.iter().any(|(k, v)| k == "service" && v == service) {
            families_with_service.insert(name);
        }
    }
    for family in [
        "ficus_requests_total",
        "ficus_request_duration_seconds_count",
        "ficus_service_instances",
        "ficus_circuit_breaker_open",
        "ficus_retries_total",
        "ficus_outlier_ejections_total",
    ] {
        assert!(
            families_with_service.contains(family),
            "{family} has no sample with service={service:?} (decoded)\n{text}"
        );
    }
}

/// A route that has not served a request yet shows its latency series at zero from start
/// (a `rate()` alert sees the series before the first request) and no status counts; once
/// it serves, its counts appear, and a reload that keeps the route keeps them.
#[test]
fn an_idle_route_s_series_exist_at_zero_and_counts_survive_a_reload() {
    let o = Origin::start("app");
    let cfg = |extra: &str| {
        ConfigBuilder::new()
            .service("app", &[o.addr()])
            .route("busy", "/busy/**", "app")
            .route("idle", "/idle/**", "app")
            .route(extra, &format!("/{extra}/**"), "app")
            .build()
    };
    let gw = Gateway::start(&cfg("first"));
    let idle = [("route", "idle"), ("service", "app")];
    let text = gw.metrics();
    for (name, want) in [
        ("ficus_request_duration_seconds_count", Some(0.0)),
        ("ficus_request_duration_seconds_sum", Some(0.0)),
        ("ficus_requests_total", None),
    ] {
        assert_eq!(metric_sum(&text, name, &idle), want, "{name}\n{text}");
    }
    let buckets = parse_metrics(&text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "ficus_request_duration_seconds_bucket"
                && l.get("route").map(String::as_str) == Some("idle")
        })
        .map(|(_, _, v)| v)
        .collect::<Vec<_>>();
    assert_eq!(buckets, vec![0.0; 14], "{text}");

    for _ in 0..3 {
        assert_eq!(gw.get("/busy/x").status, 200);
    }
    let busy = [("route", "busy"), ("service", "app"), ("status", "200")];
    poll_until(Duration::from_secs(3), || {
        (metric_sum(&gw.metrics(), "ficus_requests_total", &busy) == Some(3.0)).then_some(())
    })
    .unwrap_or_else(|| panic!("busy's requests not counted\n{}", gw.metrics()));
    gw.reload(&cfg("second"));
    assert_eq!(gw.get("/busy/x").status, 200);
    assert_eq!(gw.get("/second/x").status, 200);
    let text = poll_until(Duration::from_secs(3), || {
        let t = gw.metrics();
        (metric_sum(&t, "ficus_requests_total", &busy) == Some(4.0)
            && metric_sum(&t, "ficus_requests_total", &[("route", "second")]) == Some(1.0))
        .then_some(t)
    })
    .unwrap_or_else(|| panic!("busy's counts lost by the reload\n{}", gw.metrics()));
    assert_eq!(
        metric_sum(
            &text,
            "ficus_request_duration_seconds_count",
            &[("route", "busy")]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric_sum(&text, "ficus_request_duration_seconds_count", &idle),
        Some(0.0),
        "{text}"
    );
}

/// Every metric family `/metrics` exposes, with splits, a shadow, a rate limit and the
/// per-address connection limits configured, has a row in configuration.md's metric
/// tables (the reference a dashboard is built from; QA15 #7 found nine missing).
#[test]
fn every_exposed_metric_has_a_row_in_the_reference() {
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("legacy", r#""monolith""#);
        })
        .limits(|l| {
            l.set("max_connections_per_client", 64)
                .set("new_connections_per_client_per_second", 100);
        })
        .service("monolith", &[mono.addr()])
        .service("orders", &[orders.addr()])
        .route_with("split", "/s/**", "monolith", |r| {
            r.remove("service");
            r.set(
                "split",
                r#"[{ service = "monolith", weight = 50 }, { service = "orders", weight = 50 }]"#,
            )
            .set_str("rate_limit", "per_client");
        })
        .route_with("shadowed", "/sh/**", "monolith", |r| {
            r.set("shadow", r#"{ service = "orders", timeout = "2s" }"#);
        })
        .raw("[rate_limits.per_client]\nlimits = [{ key = \"client_ip\", rate = \"100/s\", burst = 200 }]")
        .build();
    let gw = Gateway::start(&cfg);
    assert_eq!(gw.get("/s/x").status, 200);
    assert_eq!(gw.get("/sh/x").status, 200);
    let text = gw.metrics();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for expected in [
        "ficus_connections_refused_total",
        "ficus_split_requests_total",
        "ficus_shadow_requests_total",
        "ficus_rate_limit_requests_total",
    ] {
        assert!(families.contains(&expected), "no {expected} in\n{text}");
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    // A row names its metric(s) in backquotes in its first cell.
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `ficus_"))
        .filter_map(|l| l.split(" | ").next())
        .collect();
    let missing: Vec<&&str> = families
        .iter()
        .filter(|f| !rows.iter().any(|r| r.contains(&format!("`{f}`"))))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics without a row in configuration.md: {missing:?}"
    );
}
