//! `[access.NAME]` IP allow/deny policies, end to end: clients connect from different
//! loopback addresses (Linux routes all of 127.0.0.0/8 to lo), through an untrusted or a
//! trusted proxy, over IPv4 and IPv6, and the lists are edited while the gateway runs.

mod common;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A request sent from the local address `from` to `to`.
fn get_from(from: IpAddr, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    send_from(from, to, req.as_bytes())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The config template with origin `o`'s address in place of `{origin:o}`.
fn with_origin(template: &str, o: &Origin) -> String {
    template.replace("{origin:o}", &o.addr().to_string())
}

const CONFIG: &str = r#"
[gateway]
listen = ["{listen}"]
admin = "{admin}"
threads = 2
access_log = "text"
trusted_proxies = ["127.0.0.9"]

[access.office]
allow = ["127.0.0.0/29", "10.0.0.0/8"]
deny = ["127.0.0.3"]

[services.o]
instances = ["{origin:o}"]

[[routes]]
name = "office"
match = { path = "/office/**" }
service = "o"
access = "office"
response_headers = { set = { "x-route" = "office" } }

[[routes]]
name = "open"
match = { path = "/**" }
service = "o"
"#;

fn policy_id(gw: &Gateway, name: &str) -> u64 {
    let j = gw.admin_get("/policies").unwrap().json();
    j["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_u64())
        .unwrap_or_else(|| panic!("no policy {name} in {j}"))
}

#[test]
fn allowed_and_denied_addresses() {
    let o = Origin::start("o");
    let gw = Gateway::start(&with_origin(CONFIG, &o));
    let to = gw.listen;

    let ok = get_from(ip("127.0.0.2"), to, "/office/a", &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(o.requests(), 1);

    // Deny wins over allow; an address outside the allow list is refused too.
    for from in ["127.0.0.3", "127.0.0.8"] {
        let r = get_from(ip(from), to, "/office/a", &[("X-Request-Id", "req-123")]);
        assert_eq!(r.status, 403, "{from}: {}", r.text());
        let j = r.json();
        assert_eq!(j["error"], "client address not allowed", "{j}");
        assert_eq!(j["request_id"], "req-123");
        assert_eq!(r.header("x-request-id"), Some("req-123"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The route's response edits are on the gateway's own answer too.
        assert_eq!(r.header("x-route"), Some("office"));
    }
    assert_eq!(o.requests(), 1, "a refused request reached the origin");

    // Routes without the policy are not affected.
    assert_eq!(get_from(ip("127.0.0.8"), to, "/elsewhere", &[]).status, 200);
    assert_eq!(o.requests(), 2);
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let o = Origin::start("o");
    let gw = Gateway::start(&with_origin(CONFIG, &o));
    let spoofs: [&[(&str, &str)]; 4] = [
        &[("X-Forwarded-For", "127.0.0.2")],
        &[("X-Forwarded-For", "10.1.2.3, 127.0.0.2")],
        &[("X-Real-IP", "127.0.0.2")],
        &[("Forwarded", "for=127.0.0.2")],
    ];
    for headers in spoofs {
        let r = get_from(ip("127.0.0.8"), gw.listen, "/office/a", headers);
        assert_eq!(r.status, 403, "{headers:?} let an outsider in");
    }
    // And an allowed client cannot be locked out by someone naming it.
    let r = get_from(
        ip("127.0.0.2"),
        gw.listen,
        "/office/a",
        &[("X-Forwarded-For", "127.0.0.3")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(o.requests(), 1);
}

#[test]
fn behind_a_trusted_proxy_the_right_most_untrusted_address_decides() {
    let o = Origin::start("o");
    let gw = Gateway::start(&with_origin(CONFIG, &o));
    let proxy = ip("127.0.0.9");
    let at = |xff: &str| get_from(proxy, gw.listen, "/office/a", &[("X-Forwarded-For", xff)]);
    assert_eq!(at("10.1.2.3").status, 200);
    // A client behind the proxy that prepends an allowed address is judged on its own.
    assert_eq!(at("10.1.2.3, 192.0.2.1").status, 403);
    assert_eq!(at("192.0.2.1, 10.1.2.3").status, 200);
    // The proxy itself (no forwarding header) is 127.0.0.9: not in the allow list.
    assert_eq!(get_from(proxy, gw.listen, "/office/a", &[]).status, 403);
}

#[test]
fn ipv6_clients() {
    let o = Origin::start("o");
    let config = |list: &str| {
        with_origin(
            &format!(
                r#"
[gateway]
listen = ["{{listen}}", "[::1]:0"]
admin = "{{admin}}"
threads = 2

[access.v6]
{list}

[services.o]
instances = ["{{origin:o}}"]

[[routes]]
name = "r"
match = {{ path = "/**" }}
service = "o"
access = "v6"
"#
            ),
            &o,
        )
    };
    let gw = Gateway::start(&config(r#"allow = ["::1/128", "2001:db8::/32"]"#));
    let v6_addr = gw.listeners[1];
    assert!(v6_addr.is_ipv6(), "{:?}", gw.listeners);
    let loopback6 = ip("::1");
    assert_eq!(get_from(loopback6, v6_addr, "/x", &[]).status, 200);
    // An IPv4 client is not in an IPv6-only allow list.
    assert_eq!(get_from(ip("127.0.0.1"), gw.listen, "/x", &[]).status, 403);
    gw.reload(&config(r#"deny = ["::1"]"#));
    assert_eq!(get_from(loopback6, v6_addr, "/x", &[]).status, 403);
    assert_eq!(get_from(ip("127.0.0.1"), gw.listen, "/x", &[]).status, 200);
}

#[test]
fn lists_reload_and_unchanged_policies_keep_their_instance() {
    let o = Origin::start("o");
    let gw = Gateway::start(&with_origin(CONFIG, &o));
    let first = policy_id(&gw, "office");
    let j = gw.admin_get("/policies").unwrap().json();
    assert_eq!(j["policies"][0]["kind"], "access");
    assert_eq!(j["policies"][0]["routes"], serde_json::json!(["office"]));

    // An edit elsewhere in the file: the policy instance is the same one.
    let unrelated = CONFIG.replace("name = \"open\"", "name = \"open-renamed\"");
    gw.reload(&with_origin(&unrelated, &o));
    assert_eq!(policy_id(&gw, "office"), first, "unchanged policy rebuilt");
    assert_eq!(
        get_from(ip("127.0.0.2"), gw.listen, "/office/a", &[]).status,
        200
    );

    // Its lists change: a new instance, and the new lists apply at once.
    let tightened = unrelated.replace(
        r#"deny = ["127.0.0.3"]"#,
        r#"deny = ["127.0.0.2", "127.0.0.3"]"#,
    );
    gw.reload(&with_origin(&tightened, &o));
    assert_ne!(policy_id(&gw, "office"), first);
    assert_eq!(
        get_from(ip("127.0.0.2"), gw.listen, "/office/a", &[]).status,
        403
    );
    assert_eq!(
        get_from(ip("127.0.0.4"), gw.listen, "/office/a", &[]).status,
        200
    );

    // A broken list is refused and the running policy stays.
    let broken = tightened.replace("10.0.0.0/8", "10.0.0.0/88");
    let before = gw.generation();
    gw.rewrite_config(&with_origin(&broken, &o));
    poll_until(Duration::from_secs(10), || {
        gw.logs().contains("10.0.0.0/88").then_some(())
    })
    .unwrap_or_else(|| panic!("reload error not logged\n{}", gw.logs()));
    assert_eq!(gw.generation(), before);
    assert_eq!(
        get_from(ip("127.0.0.2"), gw.listen, "/office/a", &[]).status,
        403
    );
    assert_eq!(
        get_from(ip("127.0.0.4"), gw.listen, "/office/a", &[]).status,
        200
    );
}

#[test]
fn a_cors_preflight_reaches_a_get_only_route() {
    let o = Origin::start("o");
    let gw = Gateway::start(&with_origin(
        r#"
[gateway]
listen = ["{listen}"]
admin = "{admin}"
threads = 2

[services.o]
instances = ["{origin:o}"]

[[routes]]
name = "reads"
match = { path = "/api/**", methods = ["GET"] }
service = "o"
"#,
        &o,
    ));
    let preflight = |headers: &[(&str, &str)]| {
        let mut req = "OPTIONS /api/items HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n"
            .to_string();
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw_request(gw.listen, req.as_bytes())
    };
    let r = preflight(&[
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "GET"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(o.last().unwrap().method, "OPTIONS");
    // Asking about a method the route does not take, or a plain OPTIONS: no route.
    let r = preflight(&[
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "DELETE"),
    ]);
    assert_eq!(r.status, 404);
    assert_eq!(preflight(&[]).status, 404);
    assert_eq!(
        preflight(&[("Access-Control-Request-Method", "GET")]).status,
        404,
        "without Origin it is not a preflight"
    );
    assert_eq!(o.requests(), 1);
}

#[test]
fn check_reports_policy_errors_with_positions_and_hints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        r#"[services.o]
instances = ["127.0.0.1:9"]

[access.office]
allow = ["10.0.0.0/8", "10.0.0.300"]
dney = ["1.2.3.4"]

[access.empty]

[access.unused]
deny = ["10.1.2.3/8"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"
access = "ofice"

[[routes]]
name = "b"
match = { path = "/b/**" }
service = "o"
access = "lab"
"#,
    )
    .unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(
        all.contains("routes.toml:5:24")
            && all.contains("`10.0.0.300` is not an IP address or network"),
        "{all}"
    );
    assert!(
        all.contains("routes.toml:6:1")
            && all.contains("unknown field `dney`")
            && all.contains("did you mean `deny`?"),
        "{all}"
    );
    assert!(
        all.contains("an access policy needs `allow` or `deny`"),
        "{all}"
    );
    assert!(
        all.contains("routes.toml:17:10")
            && all.contains("unknown access policy `ofice`")
            && all.contains("did you mean `office`?"),
        "{all}"
    );
    assert!(
        all.contains("unknown access policy `lab`") && all.contains("known access policies:"),
        "{all}"
    );
    // Fixing the errors leaves the warnings: host bits set, and a policy no route uses.
    let fixed = std::fs::read_to_string(&path)
        .unwrap()
        .replace(", \"10.0.0.300\"", "")
        .replace("dney", "deny")
        .replace("[access.empty]\n", "")
        .replace("\"ofice\"", "\"office\"")
        .replace("access = \"lab\"\n", "");
    std::fs::write(&path, fixed).unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "warnings only: {all}");
    assert!(all.contains("it means the network 10.0.0.0/8"), "{all}");
    assert!(
        all.contains("access policy `unused` is not used by any route"),
        "{all}"
    );
}

#[test]
fn explain_names_the_policies_and_the_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        r#"[services.o]
instances = ["127.0.0.1:9"]

[access.office]
allow = ["10.0.0.0/8"]

[[routes]]
name = "reads"
match = { path = "/api/**", methods = ["GET"] }
service = "o"
access = "office"

[[routes]]
name = "any"
match = { path = "/**" }
service = "o"
"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        p,
        "OPTIONS",
        "http://shop.example/api/x",
        "-H",
        "Origin: https://app.example",
        "-H",
        "Access-Control-Request-Method: GET",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("CORS preflight"), "{out}");
    assert!(out.contains("matched route: reads"), "{out}");
    assert!(out.contains("access = \"office\""), "{out}");
    // The TRACE rule is the proxy's, so explain reports it too.
    let (_, out, _) = ficus(&[
        "explain",
        "--config",
        p,
        "TRACE",
        "http://shop.example/other",
    ]);
    assert!(out.contains("matched route: any"), "{out}");
    assert!(
        out.contains("405 (TRACE is not allowed on this route)"),
        "{out}"
    );
}

/// A gateway where requests for `host` need the `office` policy (only 127.0.0.2 passes)
/// and every other request goes through unguarded.
fn host_scoped_gateway(o: &Origin, host: &str) -> Gateway {
    let config = r#"
[gateway]
listen = ["{listen}"]
admin = "{admin}"
threads = 2

[access.office]
allow = ["127.0.0.2"]

[services.o]
instances = ["{origin:o}"]

[[routes]]
name = "guarded"
match = { path = "/**", host = "HOST" }
service = "o"
access = "office"

[[routes]]
name = "rest"
match = { path = "/**" }
service = "o"
"#;
    Gateway::start(&with_origin(&config.replace("HOST", host), o))
}

#[test]
fn a_host_scoped_policy_holds_for_absolute_form_targets() {
    let o = Origin::start("o");
    let gw = host_scoped_gateway(&o, "admin.example");
    let outsider = ip("127.0.0.8");
    // HTTP/1.0 needs no Host: the target's authority is the host routed on.
    let r = send_from(
        outsider,
        gw.listen,
        b"GET http://admin.example/secret HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = send_from(
        outsider,
        gw.listen,
        b"GET http://ADMIN.example:80/secret HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // Only the schemes the gateway serves.
    let r = send_from(
        outsider,
        gw.listen,
        b"GET ftp://admin.example/secret HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A bracketed name is no IPv6 literal, and no label is empty: refused, not routed as
    // a request without a host.
    for host in ["[admin.example]", "admin.example..", ".admin.example"] {
        let req = format!("GET /secret HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            send_from(outsider, gw.listen, req.as_bytes()).status,
            400,
            "{host}"
        );
    }
    // A Host that names another site than the target is refused, not routed on.
    let r = send_from(
        outsider,
        gw.listen,
        b"GET http://admin.example/secret HTTP/1.0\r\nHost: other.example\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(o.requests(), 0);
    let r = send_from(
        ip("127.0.0.2"),
        gw.listen,
        b"GET http://admin.example/secret HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(o.last().unwrap().header("host"), Some("admin.example"));
    assert_eq!(
        o.last().unwrap().header("x-forwarded-host"),
        Some("admin.example")
    );
}

#[test]
fn an_ipv6_literal_host_route_holds_in_every_spelling() {
    let o = Origin::start("o");
    let gw = host_scoped_gateway(&o, "[::1]");
    for host in ["[::1]", "[0::1]", "[0:0:0:0:0:0:0:1]", "[::0001]"] {
        let req = format!("GET /s HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = send_from(ip("127.0.0.4"), gw.listen, req.as_bytes());
        assert_eq!(r.status, 403, "{host}: {}", r.text());
    }
    let r = send_from(
        ip("127.0.0.4"),
        gw.listen,
        b"GET http://[0::1]/s HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(o.requests(), 0);
}
