mod common;
use common::*;
use std::path::PathBuf;

const BASE: &str = r#"[gateway]
listen = ["127.0.0.1:18080"]
admin = "127.0.0.1:19901"

[services.orders]
instances = ["127.0.0.1:8082", { addr = "127.0.0.1:8083", weight = 2 }]
"#;

/// BASE plus one route `orders` on `/orders/**` with extra keys.
fn with_orders_route(extra: &str) -> String {
    format!(
        "{BASE}\n[[routes]]\nname = \"orders\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"orders\"\n{extra}"
    )
}

fn write_cfg(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("routes.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// 1-based line number of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}

fn check(text: &str) -> (i32, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = write_cfg(&dir, text);
    let (code, out, err) = ficus(&["check", p.to_str().unwrap()]);
    (code, format!("{out}\n{err}"), p, dir)
}

/// Output must contain `PATH:LINE:COL` for the given line.
fn assert_location(output: &str, path: &std::path::Path, line: usize) {
    let prefix = format!("{}:{}:", path.display(), line);
    let ok = output.match_indices(&prefix).any(|(i, _)| {
        output[i + prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    assert!(
        ok,
        "expected a location `{prefix}<col>` in output:\n{output}"
    );
}

#[test]
fn check_clean_config_exits_0() {
    let cfg = BASE.to_string()
        + r#"
[[routes]]
name = "orders"
match = { path = "/orders/**", methods = ["GET", "POST"] }
service = "orders"
strip_prefix = "/orders"
"#;
    let (code, out, _, _d) = check(&cfg);
    assert_eq!(code, 0, "output:\n{out}");
}

#[test]
fn check_unused_service_is_warning_exit_1() {
    let cfg = BASE.to_string()
        + r#"
[services.legacy]
instances = ["127.0.0.1:9000"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "orders"
"#;
    let (code, out, _, _d) = check(&cfg);
    assert_eq!(code, 1, "output:\n{out}");
    assert!(
        out.contains("legacy"),
        "warning should name the unused service:\n{out}"
    );
}

#[test]
fn check_shadowed_route_is_warning_exit_1() {
    let cfg = BASE.to_string()
        + r#"
[[routes]]
name = "first"
match = { path = "/x/**" }
service = "orders"

[[routes]]
name = "second"
match = { path = "/x/**" }
service = "orders"
"#;
    let (code, out, _, _d) = check(&cfg);
    assert_eq!(code, 1, "output:\n{out}");
    assert!(
        out.contains("second"),
        "warning should name the unreachable route:\n{out}"
    );
}

#[test]
fn check_unknown_service_suggests_closest() {
    let cfg = BASE.to_string()
        + r#"
[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "order"
"#;
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(out.contains("unknown service"), "{out}");
    assert!(out.contains("did you mean"), "{out}");
    assert!(out.contains("orders"), "{out}");
    assert_location(&out, &path, line_of(&cfg, "service = \"order\""));
}

#[test]
fn check_unknown_key_is_error() {
    let cfg = with_orders_route("colour = \"red\"\n");
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(out.contains("colour"), "{out}");
    assert_location(&out, &path, line_of(&cfg, "colour"));
}

/// An admin listener other hosts can reach, with self-registration on and no registry
/// token, would let anyone who reaches it put an instance into a service's pool: `check`
/// refuses it at the `admin` key and names the fixes.
#[test]
fn check_refuses_a_reachable_admin_listener_without_a_registry_token() {
    let cfg = with_orders_route("").replace("127.0.0.1:19901", "0.0.0.0:19901");
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(
        out.contains("the admin listener 0.0.0.0:19901 can be reached from other hosts"),
        "{out}"
    );
    assert!(
        out.contains("token_env") && out.contains("127.0.0.1:19901"),
        "{out}"
    );
    assert_location(&out, &path, line_of(&cfg, "admin = "));
    // With a token it is accepted.
    let (code, out, _, _d) = check(&format!("{cfg}\n[registry]\ntoken = \"s3cret\"\n"));
    assert_eq!(code, 0, "output:\n{out}");
}

/// An instance table is checked like every other table: a misspelled key is named at its
/// own position with a suggestion (it used to vanish into "did not match any variant").
#[test]
fn check_names_a_misspelled_key_in_an_instance_table() {
    let cfg = with_orders_route("").replace(
        "{ addr = \"127.0.0.1:8083\", weight = 2 }",
        "{ addr = \"127.0.0.1:8083\", wieght = 2 }",
    );
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(out.contains("unknown field `wieght`"), "{out}");
    assert!(out.contains("did you mean `weight`?"), "{out}");
    let line = line_of(&cfg, "wieght");
    let column = cfg.lines().nth(line - 1).unwrap().find("wieght").unwrap() + 1;
    assert!(
        out.contains(&format!("{}:{line}:{column}:", path.display())),
        "expected {line}:{column} in:\n{out}"
    );
    // Both forms are still accepted.
    let (code, out, _, _d) = check(&with_orders_route(""));
    assert_eq!(code, 0, "output:\n{out}");
}

#[test]
fn check_reports_every_error() {
    let cfg = BASE.to_string()
        + r#"
[[routes]]
name = "one"
match = { path = "/one/**" }
service = "order"

[[routes]]
name = "two"
match = { path = "/two/**" }
service = "orders"
colour = "red"

[[routes]]
name = "three"
match = { path = "/three/**" }
service = "nope-nothing-like-it"
"#;
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert_location(&out, &path, line_of(&cfg, "service = \"order\""));
    assert_location(&out, &path, line_of(&cfg, "colour"));
    assert_location(&out, &path, line_of(&cfg, "nope-nothing-like-it"));
}

#[test]
fn check_invalid_values_are_errors_with_location() {
    let cases: &[(&str, &str)] = &[
        ("syntax", "match = { path = \"/a/**\" \n"),
        ("glob in the middle", "match = { path = \"/a/**/b\" }\n"),
        (
            "bad duration",
            "match = { path = \"/a/**\" }\ntimeouts = { read = \"10 parsecs\" }\n",
        ),
        (
            "unknown allow item",
            "match = { path = \"/a/**\" }\nallow = [\"dotdot\"]\n",
        ),
        (
            "unknown match key",
            "match = { path = \"/a/**\", colour = \"red\" }\n",
        ),
    ];
    let mut failures = Vec::new();
    for (what, route_body) in cases {
        let cfg =
            BASE.to_string() + "\n[[routes]]\nname = \"r\"\nservice = \"orders\"\n" + route_body;
        let (code, out, path, _d) = check(&cfg);
        if code != 2 {
            failures.push(format!("{what}: exit {code}, expected 2; output: {out}"));
            continue;
        }
        if !out.contains(&format!("{}:", path.display())) {
            failures.push(format!("{what}: no file location in output: {out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_missing_file_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.toml");
    let (code, out, err) = ficus(&["check", p.to_str().unwrap()]);
    assert_eq!(code, 2, "stdout {out} stderr {err}");
}

const EXPLAIN_CFG: &str = r#"
[services.legacy]
instances = ["127.0.0.1:9000"]

[[routes]]
name = "legacy"
match = { path = "/**" }
service = "legacy"

[[routes]]
name = "orders-canary"
match = { path = "/orders/**", headers = { "x-canary" = "1" } }
service = "orders"
strip_prefix = "/orders"

[[routes]]
name = "orders-post"
match = { path = "/orders/**", methods = ["POST"] }
service = "orders"
"#;

#[test]
fn explain_matched_route() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_cfg(&dir, &(BASE.to_string() + EXPLAIN_CFG));
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        p.to_str().unwrap(),
        "GET",
        "http://api.example.com/orders/42?x=1",
        "-H",
        "x-canary: 1",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("matched route: orders-canary"), "{out}");
    assert!(out.contains("upstream path: /42"), "{out}");
    assert!(out.contains("orders"), "{out}");
    assert!(
        out.contains("127.0.0.1:8082") && out.contains("127.0.0.1:8083"),
        "instances missing:\n{out}"
    );
    assert!(
        out.contains("orders-post"),
        "closest non-matching route missing:\n{out}"
    );
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("method"),
        "reason for orders-post should mention the method:\n{out}"
    );
}

#[test]
fn explain_fallback_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_cfg(&dir, &(BASE.to_string() + EXPLAIN_CFG));
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        p.to_str().unwrap(),
        "GET",
        "http://api.example.com/orders/42",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("matched route: legacy"), "{out}");
    assert!(out.contains("upstream path: /orders/42"), "{out}");
    assert!(out.contains("127.0.0.1:9000"), "{out}");
    assert!(
        out.contains("orders-canary"),
        "closest non-matching route missing:\n{out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("x-canary"),
        "reason should mention the header:\n{out}"
    );
}

#[test]
fn explain_uses_normalized_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_cfg(&dir, &(BASE.to_string() + EXPLAIN_CFG));
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        p.to_str().unwrap(),
        "GET",
        "http://api.example.com/foo/../orders/%34%32",
        "-H",
        "X-Canary: 1",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("matched route: orders-canary"), "{out}");
    assert!(out.contains("upstream path: /42"), "{out}");
}

#[test]
fn run_without_subcommand() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::builder(&cfg)
        .args(|p| vec!["--config".into(), p.display().to_string()])
        .start();
    assert_eq!(gw.get("/x").origin().as_deref(), Some("o"));
}

#[test]
fn check_huge_duration_is_an_error_not_a_crash() {
    let cfg = with_orders_route("timeouts = { read = \"3000000000000000h\", connect = \"0s\" }\n")
        .replace(
            "[gateway]\n",
            "[gateway]\ngrace_period = \"999999999999999999999h\"\n",
        );
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(out.contains("at most one year"), "{out}");
    assert!(out.contains("is zero"), "{out}");
    assert_location(&out, &path, line_of(&cfg, "grace_period"));
    assert_location(&out, &path, line_of(&cfg, "timeouts = "));
}

#[test]
fn check_colliding_listeners_exit_2() {
    let cfg = BASE
        .replace(
            "listen = [\"127.0.0.1:18080\"]",
            "listen = [\"127.0.0.1:18080\", \"0.0.0.0:18080\"]",
        )
        .replace("admin = \"127.0.0.1:19901\"", "admin = \"127.0.0.1:18080\"")
        + "\n[[routes]]\nname = \"o\"\nmatch = { path = \"/o/**\" }\nservice = \"orders\"\n";
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert!(out.contains("collides with listener"), "{out}");
    assert_location(&out, &path, line_of(&cfg, "admin = "));
}

#[test]
fn check_reports_every_error_in_one_route_without_follow_ons() {
    let cfg = with_orders_route("strip_prefx = \"/x\"\nretires = { attempts = 3 }\n");
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "output:\n{out}");
    assert_location(&out, &path, line_of(&cfg, "strip_prefx"));
    assert_location(&out, &path, line_of(&cfg, "retires"));
    assert!(!out.contains("no routes"), "{out}");
    assert!(!out.contains("not used"), "{out}");
    assert!(out.contains(": 2 error(s)"), "{out}");
}

#[test]
fn check_routeless_files() {
    for (text, want_code, want) in [
        ("# only a comment\n", 2, "the config is empty"),
        ("[gateway]\n", 1, "no routes: every request gets 404"),
        (BASE, 1, "no routes: every request gets 404"),
    ] {
        let (code, out, _, _d) = check(text);
        assert_eq!(code, want_code, "{text:?}:\n{out}");
        assert!(out.contains(want), "{text:?}:\n{out}");
    }
}

#[test]
fn explain_malformed_url_exits_2_and_host_mismatch_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_cfg(&dir, &(BASE.to_string() + EXPLAIN_CFG));
    let config = p.to_str().unwrap();
    for url in ["http://[::1/y", "ftp://x/y"] {
        let (code, out, err) = ficus(&["explain", "--config", config, "GET", url]);
        assert_eq!(code, 2, "{url}: stdout {out}\nstderr {err}");
        assert!(err.contains("invalid URL"), "{url}: {err}");
    }
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        config,
        "GET",
        "http://eu.example/orders/1",
        "-H",
        "Host: api.example",
    ]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("result: 400 Bad Request"), "{out}");
}

/// A config with one TLS listener whose certificate entries are `entries` (TOML lines of
/// `[[gateway.listen.tls.certificates]]` tables), and one route.
fn tls_listener_config(entries: &str) -> String {
    format!(
        r#"[gateway]
admin = "127.0.0.1:19901"

[[gateway.listen]]
addr = "127.0.0.1:18443"
{entries}
[services.orders]
instances = ["127.0.0.1:8082"]

[[routes]]
name = "orders"
match = {{ path = "/orders/**" }}
service = "orders"
"#
    )
}

fn cert_entry(cert: &std::path::Path, key: &std::path::Path, hosts: &str) -> String {
    format!(
        "[[gateway.listen.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\nhosts = {hosts}\n",
        cert.display(),
        key.display()
    )
}

/// QA obs #2: a certificate served with a key it was not issued for made every handshake
/// fail while `check` said ok. Now it is an error at the certificate entry, and so is a key
/// file that holds no key (reported as a key, not as a "certificate").
#[test]
fn check_listener_certificate_key_mismatch_is_an_error() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let shop = ca.issue(certs.path(), "shop", &["shop.example"]);
    let other = ca.issue(certs.path(), "other", &["other.example"]);

    let (code, out, _, _d) = check(&tls_listener_config(&cert_entry(
        &shop.cert_path,
        &shop.key_path,
        r#"["shop.example"]"#,
    )));
    assert_eq!(code, 0, "a matching pair is fine:\n{out}");

    let cfg = tls_listener_config(&cert_entry(
        &shop.cert_path,
        &other.key_path,
        r#"["shop.example"]"#,
    ));
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("do not match"), "{out}");
    assert!(
        out.contains("shop.pem") && out.contains("other.key"),
        "{out}"
    );
    assert_location(
        &out,
        &path,
        line_of(&cfg, "[[gateway.listen.tls.certificates]]"),
    );

    let garbage = certs.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let (code, out, _, _d) = check(&tls_listener_config(&cert_entry(
        &shop.cert_path,
        &garbage,
        "[]",
    )));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("key file") && out.contains("holds no PEM private key"),
        "{out}"
    );
}

/// An expired certificate, or one whose names do not cover its `hosts`, is a warning that
/// names the file (and the notAfter date).
#[test]
fn check_warns_about_expired_or_uncovering_listener_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["old.example".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 3, 4);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (exp_cert, exp_key) = (certs.path().join("exp.pem"), certs.path().join("exp.key"));
    std::fs::write(&exp_cert, cert.pem()).unwrap();
    std::fs::write(&exp_key, key.serialize_pem()).unwrap();

    let (code, out, _, _d) = check(&tls_listener_config(&cert_entry(
        &exp_cert,
        &exp_key,
        r#"["old.example"]"#,
    )));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("warning") && out.contains("exp.pem") && out.contains("2020-03-04"),
        "{out}"
    );

    let ca = TestCa::new();
    let api = ca.issue(certs.path(), "api", &["api.example", "*.api.example"]);
    let cfg = tls_listener_config(&cert_entry(
        &api.cert_path,
        &api.key_path,
        r#"["api.example", "v1.api.example", "shop.example"]"#,
    ));
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("api.pem") && out.contains("does not cover shop.example"),
        "{out}"
    );
    assert!(
        !out.contains("v1.api.example"),
        "a wildcard SAN covers it:\n{out}"
    );
    assert_location(
        &out,
        &path,
        line_of(&cfg, "[[gateway.listen.tls.certificates]]"),
    );
}

/// QA obs #9: `hosts` entries no SNI name can match are errors at the entry; a trailing dot
/// (normalised) and a name claimed twice are warnings.
#[test]
fn check_listener_hosts_that_can_never_match() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let shop = ca.issue(certs.path(), "shop", &["shop.example", "*.shop.example"]);
    let bad = [
        "*",
        "a*.shop.example",
        "*.*.shop.example",
        "sh op.example",
        "",
        "127.0.0.1",
    ];
    for h in bad {
        let cfg = tls_listener_config(&cert_entry(
            &shop.cert_path,
            &shop.key_path,
            &format!("[\n  \"shop.example\",\n  \"{h}\",\n]"),
        ));
        let (code, out, path, _d) = check(&cfg);
        assert_eq!(code, 2, "{h:?} accepted:\n{out}");
        assert!(out.contains("hint:"), "{out}");
        assert_location(&out, &path, line_of(&cfg, &format!("  \"{h}\",")));
    }

    let entries = cert_entry(
        &shop.cert_path,
        &shop.key_path,
        r#"["shop.example.", "*.shop.example"]"#,
    ) + &cert_entry(&shop.cert_path, &shop.key_path, r#"["SHOP.example"]"#);
    let (code, out, _, _d) = check(&tls_listener_config(&entries));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ends in a dot"), "{out}");
    assert!(
        out.contains("`shop.example` is listed for certificates 1 and 2"),
        "{out}"
    );
}

/// A wrong value in a `[header]` table (whose span is the header's, not the body's) is
/// reported under its full key, every one of them, in plain words rather than Rust type
/// names (QA15 #6).
#[test]
fn check_names_the_full_key_of_a_bad_number_in_plain_words() {
    let cfg = format!(
        "{BASE}\n[gateway.limits]\nmax_connections_per_client = -1\n\
         new_connections_per_client_per_second = 1.5\nmax_body_bytes = \"many\"\n\
         h2_max_concurrent_streams = 99999999999999\n"
    );
    let (code, out, path, _d) = check(&cfg);
    assert_eq!(code, 2, "{out}");
    for (key, line, words) in [
        (
            "max_connections_per_client",
            "max_connections_per_client = -1",
            "integer `-1`, expected a whole number, 0 or more",
        ),
        (
            "new_connections_per_client_per_second",
            "= 1.5",
            "decimal number `1.5`, expected a whole number from 0 to 4294967295",
        ),
        (
            "max_body_bytes",
            "\"many\"",
            "string \"many\", expected a whole number, 0 or more",
        ),
        (
            "h2_max_concurrent_streams",
            "99999999999999",
            "expected a whole number from 0 to 4294967295",
        ),
    ] {
        let at = format!("{}:{}:", path.display(), line_of(&cfg, line));
        let diag = out
            .lines()
            .find(|l| l.starts_with(&at))
            .unwrap_or_else(|| panic!("no diagnostic at {at} in:\n{out}"));
        assert!(
            diag.contains(&format!("(key `gateway.limits.{key}`)")),
            "{diag}"
        );
        assert!(diag.contains(words), "{diag}");
    }
    assert!(
        !out.contains("usize") && !out.contains("u32") && !out.contains("u64"),
        "{out}"
    );
    assert!(out.contains("hint: write digits only"), "{out}");
}
