//! Path normalization and routing-bypass attempts against a policy where `/admin/**` goes to
//! the "admin" origin and `/public/**` to the "public" origin.
mod common;
use common::*;

struct Policy {
    gw: Gateway,
    admin: Origin,
    public: Origin,
    files: Origin,
}

fn policy() -> Policy {
    let admin = Origin::start("admin");
    let public = Origin::start("public");
    let files = Origin::start("files");
    let cfg = ConfigBuilder::new()
        .service("admin", &[admin.addr()])
        .service("public", &[public.addr()])
        .service("files", &[files.addr()])
        .route("admin", "/admin/**", "admin")
        .route("public", "/public/**", "public")
        .route_with("files", "/files/**", "files", |r| {
            r.set("allow", r#"["encoded_slash", "backslash", "semicolon"]"#);
        })
        .build();
    let gw = Gateway::start(&cfg);
    Policy {
        gw,
        admin,
        public,
        files,
    }
}

/// Send a raw request target; return "origin path" for 200 or "<status>".
fn send(gw: &Gateway, target: &str) -> (String, RawResponse) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let r = raw_request(gw.listen, req.as_bytes());
    let s = if r.status == 200 {
        format!(
            "{} {}",
            r.origin().unwrap_or_else(|| "?".into()),
            r.origin_path().unwrap_or_else(|| "?".into())
        )
    } else {
        format!("<{}>", r.status)
    };
    (s, r)
}

fn run_cases(p: &Policy, cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (target, want) in cases {
        let (got, _) = send(&p.gw, target);
        if !want.split('|').any(|w| w == got) {
            failures.push(format!("GET {target}: expected `{want}`, got `{got}`"));
        }
    }
    assert!(
        failures.is_empty(),
        "normalization mismatches:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn plain_paths_route_normally() {
    let p = policy();
    run_cases(
        &p,
        &[
            ("/public/x", "public /public/x"),
            ("/admin/x", "admin /admin/x"),
            ("/public", "public /public"),
            ("/public/x?a=1&b=2", "public /public/x?a=1&b=2"),
            ("/nothing", "<404>"),
        ],
    );
}

#[test]
fn traversal_is_routed_by_normalized_path() {
    let p = policy();
    run_cases(
        &p,
        &[
            ("/public/../admin/x", "admin /admin/x"),
            ("/public/%2e%2e/admin/x", "admin /admin/x"),
            ("/public/%2E%2E/admin/x", "admin /admin/x"),
            ("/public/.%2e/admin/x", "admin /admin/x"),
            ("/public/%2e./admin/x", "admin /admin/x"),
            ("/public/./../admin/x", "admin /admin/x"),
            ("/public/a/b/../../../admin/x", "admin /admin/x"),
            ("//admin/x", "admin /admin/x"),
            ("/public//x", "public /public/x"),
            ("/public/./x", "public /public/x"),
            ("/public/%2e/x", "public /public/x"),
            ("/admin/../public/x", "public /public/x"),
        ],
    );
}

#[test]
fn percent_decoding_once_for_matching_and_forwarding() {
    let p = policy();
    run_cases(
        &p,
        &[
            // unreserved characters stay decoded when forwarded
            ("/public/%78", "public /public/x"),
            ("/public/%41bc", "public /public/Abc"),
            ("/public/a%2Db%5Fc%7Ed%2E", "public /public/a-b_c~d."),
            ("/%61dmin/x", "admin /admin/x"),
            ("/%70ublic/x", "public /public/x"),
            // characters that need it are re-encoded
            ("/public/a%20b", "public /public/a%20b"),
            // query string passed through unchanged (not decoded, not normalized, not rejected)
            (
                "/public/x?a=%2F&b=..%2f&c=%00",
                "public /public/x?a=%2F&b=..%2f&c=%00",
            ),
        ],
    );
}

#[test]
fn always_rejected_with_400() {
    let p = policy();
    run_cases(
        &p,
        &[
            ("/public/%00", "<400>"),
            ("/public/a%00b", "<400>"),
            ("/admin/%00", "<400>"),
            ("/public/a%zz", "<400>"),
            ("/public/a%2", "<400>"),
            ("/public/a%", "<400>"),
            ("/public/%252e%252e/admin/x", "<400>"),
            ("/public/%252f", "<400>"),
            ("/public/%2525", "<400>"),
            ("/files/%00", "<400>"),
            ("/files/%252e%252e/x", "<400>"),
            ("/..", "<400>"),
            ("/../admin/x", "<400>"),
            ("/public/../../admin/x", "<400>"),
            ("/%2e%2e/admin/x", "<400>"),
        ],
    );
    assert_eq!(
        p.admin.requests(),
        0,
        "admin origin must not see any of these"
    );
}

#[test]
fn encoded_slash_backslash_semicolon_rejected_by_default() {
    let p = policy();
    run_cases(
        &p,
        &[
            ("/public/%2F..%2Fadmin/x", "<400>"),
            ("/public/%2f..%2fadmin/x", "<400>"),
            ("/public/a%2Fb", "<400>"),
            // no route may match these at all; either rejection is fine, admin must not serve them
            ("/admin%2Fx", "<400>|<404>"),
            ("/public/a\\b", "<400>"),
            ("/public\\..\\admin/x", "<400>|<404>"),
            ("/public/a%5Cb", "<400>"),
            ("/public/a%5cb", "<400>"),
            ("/public/..%5c..%5cadmin/x", "<400>"),
            ("/public/a;b", "<400>"),
            ("/public/..;/admin/x", "<400>"),
            ("/admin;/x", "<400>|<404>"),
        ],
    );
    assert_eq!(
        p.admin.requests(),
        0,
        "admin origin must not see any of these"
    );
    assert_eq!(
        p.public.requests(),
        0,
        "public origin must not see any of these"
    );
}

#[test]
fn opt_ins_allow_encoded_slash_backslash_semicolon() {
    let p = policy();
    let mut failures = Vec::new();
    // (target, acceptable upstream paths, compared case-insensitively)
    let cases: &[(&str, &[&str])] = &[
        ("/files/a%2Fb", &["/files/a%2Fb"]),
        ("/files/a%2fb", &["/files/a%2Fb"]),
        ("/files/a%5Cb", &["/files/a%5Cb"]),
        ("/files/a\\b", &["/files/a%5Cb"]),
        ("/files/a;b", &["/files/a;b", "/files/a%3Bb"]),
    ];
    for (target, accept) in cases {
        let (got, r) = send(&p.gw, target);
        let ok = r.status == 200
            && r.origin().as_deref() == Some("files")
            && accept
                .iter()
                .any(|a| r.origin_path().unwrap_or_default().eq_ignore_ascii_case(a));
        if !ok {
            failures.push(format!(
                "GET {target}: expected `files` with path in {accept:?}, got `{got}`"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "opt-in mismatches:\n  {}",
        failures.join("\n  ")
    );
    // an encoded slash must not let the request escape the opted-in route
    let (got, _) = send(&p.gw, "/files/..%2F..%2Fadmin/x");
    assert!(
        got == "<400>" || got.starts_with("files "),
        "/files/..%2F..%2Fadmin/x must stay on files or be rejected, got `{got}`"
    );
    assert_eq!(p.admin.requests(), 0);
}

#[test]
fn rejections_are_json_errors_without_internals() {
    let p = policy();
    let (_, r) = send(&p.gw, "/public/%2F..%2Fadmin");
    assert_eq!(r.status, 400);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    let j = r.json();
    assert!(j["error"].is_string());
    let rid = j["request_id"].as_str().expect("request_id");
    assert_eq!(r.header("x-request-id"), Some(rid));
    let body = r.text();
    assert!(
        !body.contains(&p.admin.addr().to_string()) && !body.contains("127.0.0.1"),
        "{body}"
    );
    let _ = &p.files;
}
