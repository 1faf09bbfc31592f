mod common;
use common::*;

/// A config where every route gets its own service and origin, named after the route:
/// (name, `match` value). Returns the config and the origins, in the same order.
fn per_route_config(routes: &[(&str, &str)]) -> (String, Vec<Origin>) {
    let mut cfg = ConfigBuilder::new();
    let mut origins = Vec::new();
    for (name, _) in routes {
        let o = Origin::start(name);
        cfg = cfg.service(name, &[o.addr()]);
        origins.push(o);
    }
    for (name, matcher) in routes {
        cfg = cfg.route_with(name, "/", name, |r| {
            r.set("match", matcher);
        });
    }
    (cfg.build(), origins)
}

fn served_by(
    gw: &Gateway,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let r = raw_request(gw.listen, req.as_bytes());
    if r.status == 200 {
        r.origin()
            .unwrap_or_else(|| format!("<200 without origin: {}>", r.text()))
    } else {
        format!("<{}>", r.status)
    }
}

/// (method, host, path, headers, expected origin)
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

fn check_cases(gw: &Gateway, cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (method, path, host, headers, want) in cases {
        let got = served_by(gw, method, path, host, headers);
        if got != *want {
            failures.push(format!(
                "{method} {path} (Host: {host}, headers {headers:?}): expected {want}, got {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "routing mismatches:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn priority_table_from_spec() {
    // file order deliberately least-specific first
    let (cfg, _o) = per_route_config(&[
        ("catchall", r#"{ path = "/**" }"#),
        ("orders_glob", r#"{ path = "/orders/**" }"#),
        ("orders_param", r#"{ path = "/orders/{id}" }"#),
        ("orders_exact", r#"{ path = "/orders/42" }"#),
    ]);
    let gw = Gateway::start(&cfg);
    check_cases(
        &gw,
        &[
            ("GET", "/orders/42", "t", &[], "orders_exact"),
            ("GET", "/orders/43", "t", &[], "orders_param"),
            ("GET", "/orders/43/items", "t", &[], "orders_glob"),
            ("GET", "/orders", "t", &[], "orders_glob"),
            ("GET", "/other", "t", &[], "catchall"),
            ("GET", "/", "t", &[], "catchall"),
        ],
    );
}

#[test]
fn priority_literals_globs_predicates_and_file_order() {
    let (cfg, _o) = per_route_config(&[
        // more literal segments wins
        ("a_two_params", r#"{ path = "/a/{x}/{y}" }"#),
        ("a_b_param", r#"{ path = "/a/b/{y}" }"#),
        // a pattern without ** beats one with ** (same literal count)
        ("x_glob", r#"{ path = "/x/**" }"#),
        ("x_param", r#"{ path = "/x/{p}" }"#),
        // more predicates win
        ("p_any", r#"{ path = "/p/**" }"#),
        ("p_post", r#"{ path = "/p/**", methods = ["POST"] }"#),
        ("m_get", r#"{ path = "/m/**", methods = ["GET"] }"#),
        (
            "m_get_host",
            r#"{ path = "/m/**", methods = ["GET"], host = "api.example.com" }"#,
        ),
        // file order breaks ties
        ("t_first", r#"{ path = "/t/{a}" }"#),
        ("t_second", r#"{ path = "/t/{b}" }"#),
        // exact pattern beats wildcard pattern even when the latter has more predicates
        (
            "e_param_preds",
            r#"{ path = "/e/{id}", methods = ["GET"], host = "api.example.com" }"#,
        ),
        ("e_exact", r#"{ path = "/e/1" }"#),
        // single-segment wildcard
        ("s_star", r#"{ path = "/s/*/x" }"#),
    ]);
    let gw = Gateway::start(&cfg);
    check_cases(
        &gw,
        &[
            ("GET", "/a/b/c", "t", &[], "a_b_param"),
            ("GET", "/a/z/c", "t", &[], "a_two_params"),
            ("GET", "/x/1", "t", &[], "x_param"),
            ("GET", "/x/1/2", "t", &[], "x_glob"),
            ("GET", "/x", "t", &[], "x_glob"),
            ("POST", "/p/1", "t", &[], "p_post"),
            ("GET", "/p/1", "t", &[], "p_any"),
            ("GET", "/m/1", "api.example.com", &[], "m_get_host"),
            ("GET", "/m/1", "other.example.org", &[], "m_get"),
            ("POST", "/m/1", "api.example.com", &[], "<404>"),
            ("GET", "/t/1", "t", &[], "t_first"),
            ("GET", "/e/1", "api.example.com", &[], "e_exact"),
            ("GET", "/e/2", "api.example.com", &[], "e_param_preds"),
            ("GET", "/e/2", "other.example.org", &[], "<404>"),
            ("GET", "/s/anything/x", "t", &[], "s_star"),
            ("GET", "/s/a/b/x", "t", &[], "<404>"),
            ("GET", "/s/a", "t", &[], "<404>"),
        ],
    );
}

#[test]
fn host_and_header_predicates() {
    let (cfg, _o) = per_route_config(&[
        ("h_any", r#"{ path = "/h/**" }"#),
        ("h_exact", r#"{ path = "/h/**", host = "api.example.com" }"#),
        ("h_wild", r#"{ path = "/h/**", host = "*.example.com" }"#),
        ("hd_any", r#"{ path = "/hd/**" }"#),
        (
            "hd_canary",
            r#"{ path = "/hd/**", headers = { "x-canary" = "1" } }"#,
        ),
        (
            "hd_beta",
            r#"{ path = "/hd/**", headers = { "x-beta" = "*" } }"#,
        ),
    ]);
    let gw = Gateway::start(&cfg);
    check_cases(
        &gw,
        &[
            ("GET", "/h/1", "api.example.com", &[], "h_exact"),
            ("GET", "/h/1", "www.example.com", &[], "h_wild"),
            ("GET", "/h/1", "a.b.example.com", &[], "h_wild"),
            ("GET", "/h/1", "example.com", &[], "h_any"),
            ("GET", "/h/1", "evilexample.com", &[], "h_any"),
            ("GET", "/h/1", "other.org", &[], "h_any"),
            ("GET", "/hd/1", "t", &[("x-canary", "1")], "hd_canary"),
            ("GET", "/hd/1", "t", &[("X-Canary", "1")], "hd_canary"),
            ("GET", "/hd/1", "t", &[("x-canary", "2")], "hd_any"),
            ("GET", "/hd/1", "t", &[("x-beta", "whatever")], "hd_beta"),
            ("GET", "/hd/1", "t", &[], "hd_any"),
        ],
    );
}

/// Clients always send the port in Host for non-default ports; host predicates must still match.
#[test]
fn host_predicate_ignores_port_and_case() {
    let (cfg, _o) = per_route_config(&[
        ("h_any", r#"{ path = "/h/**" }"#),
        ("h_exact", r#"{ path = "/h/**", host = "api.example.com" }"#),
    ]);
    let gw = Gateway::start(&cfg);
    check_cases(
        &gw,
        &[
            ("GET", "/h/1", "api.example.com:8080", &[], "h_exact"),
            ("GET", "/h/1", "API.Example.COM", &[], "h_exact"),
        ],
    );
}

#[test]
fn no_route_is_404_json_with_request_id() {
    let (cfg, origins) = per_route_config(&[("only", r#"{ path = "/only/**" }"#)]);
    let gw = Gateway::start(&cfg);
    let r = gw.get("/nope");
    assert_eq!(r.status, 404, "body: {}", r.text());
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let j = r.json();
    assert!(j["error"].is_string(), "error field missing: {j}");
    let rid = j["request_id"].as_str().expect("request_id in body");
    assert!(!rid.is_empty());
    assert_eq!(
        r.header("x-request-id"),
        Some(rid),
        "x-request-id header must equal body request_id"
    );
    assert_eq!(origins[0].requests(), 0);
    // sanity: the route itself works
    assert_eq!(gw.get("/only/x").origin().as_deref(), Some("only"));
}

#[test]
fn strip_prefix_and_rewrite() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .route_with("strip", "/orders/**", "o", |r| {
            r.set_str("strip_prefix", "/orders");
        })
        .route_with("rw_param", "/search/{q}", "o", |r| {
            r.set_str("rewrite", "/find?q={q}");
        })
        .route_with("rw_swap", "/legacy/{a}/{b}", "o", |r| {
            r.set_str("rewrite", "/new/{b}/{a}");
        })
        .route_with("rw_tail", "/v1/users/{id}/**", "o", |r| {
            r.set_str("rewrite", "/api/users/{id}/{**}");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let cases = [
        ("/orders/42", "/42"),
        ("/orders/42/items?x=1&y=%2F", "/42/items?x=1&y=%2F"),
        ("/orders", "/"),
        ("/orders?a=1", "/?a=1"),
        // normalization happens before strip_prefix
        ("/x/../orders/42", "/42"),
        ("/orders//42/./items", "/42/items"),
        ("/orders/%34%32", "/42"),
        ("/search/shoes", "/find?q=shoes"),
        ("/legacy/x/y", "/new/y/x"),
        ("/v1/users/7/posts/3", "/api/users/7/posts/3"),
    ];
    let mut failures = Vec::new();
    for (req, want) in cases {
        let r = gw.get(req);
        let got = if r.status == 200 {
            r.origin_path().unwrap_or_default()
        } else {
            format!("<{}>", r.status)
        };
        if got != want {
            failures.push(format!(
                "GET {req}: upstream path expected {want:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn request_and_response_header_rules() {
    let o = Origin::builder("o")
        .fallback(
            Handler::echo()
                .header("x-c", "from-origin")
                .header("x-keep", "yes"),
        )
        .start();
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .route_with("hdr", "/**", "o", |r| {
            r.set(
                "request_headers",
                r#"{ set = { "x-a" = "b" }, remove = ["x-b"] }"#,
            )
            .set(
                "response_headers",
                r#"{ set = { "x-c" = "d" }, remove = ["server"] }"#,
            );
        })
        .build();
    let gw = Gateway::start(&cfg);
    let r = get_raw(
        gw.listen,
        "/x",
        "t",
        &[("x-a", "client"), ("x-b", "secret"), ("x-other", "1")],
    );
    assert_eq!(r.status, 200);
    let seen = o.last().expect("origin saw request");
    assert_eq!(
        seen.header_all("x-a"),
        vec!["b"],
        "x-a must be replaced by the configured value"
    );
    assert!(
        seen.header("x-b").is_none(),
        "x-b must be removed, origin saw {:?}",
        seen.header("x-b")
    );
    assert_eq!(seen.header("x-other"), Some("1"), "other headers untouched");
    assert_eq!(
        r.header_all("x-c"),
        vec!["d"],
        "response x-c must be set (replacing the origin's)"
    );
    assert!(
        r.header("server").is_none(),
        "server header must be removed, got {:?}",
        r.header("server")
    );
    assert_eq!(r.header("x-keep"), Some("yes"));
    assert_eq!(r.header("x-origin"), Some("o"));
}

#[test]
fn methods_predicate_without_fallback_is_404() {
    let (cfg, origins) =
        per_route_config(&[("get_only", r#"{ path = "/g/**", methods = ["GET"] }"#)]);
    let gw = Gateway::start(&cfg);
    assert_eq!(gw.get("/g/1").origin().as_deref(), Some("get_only"));
    let r = raw_request(
        gw.listen,
        b"DELETE /g/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(origins[0].requests(), 1);
}
