//! `ficus check` (and so start and reload) against keys that cannot work on their route: a
//! split's `sticky` header, a rate limit's `header:` key and a service's `hash_on` header
//! that name an identity header (clients' copies are removed, so the key would read a value
//! the client chose), a sticky claim on a route without `auth`, a CORS policy that refuses
//! its own route's token header; and the hint for a section's key written at the top.

mod common;
use common::*;
use std::time::Duration;

/// An auth policy that sets `X-User-Id` from `sub`, two services and a split route
/// `orders` with `auth`; `route_keys` are added to the route, `extra` after it.
fn config(route_keys: &str, extra: &str) -> String {
    format!(
        r#"[gateway]
listen = ["127.0.0.1:18080"]
legacy = "monolith"
[auth.corp]
issuer = "https://issuer.local"
secret_file = "hmac.key"
algorithms = ["HS256"]
audience = "api"
claims_to_headers = {{ sub = "X-User-Id" }}
[services.monolith]
instances = ["127.0.0.1:1"]
[services.orders]
instances = ["127.0.0.1:2"]
[[routes]]
name = "orders"
match = {{ path = "/orders/**" }}
split = [{{ service = "monolith", weight = 50 }}, {{ service = "orders", weight = 50 }}]
auth = "corp"
{route_keys}
{extra}"#
    )
}

/// `ficus check` on `text` with the auth policy's secret beside it.
fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "hmac.key", random_hex(32));
    let p = dir.path().join("routes.toml");
    std::fs::write(&p, text).unwrap();
    let (code, out, err) = ficus(&["check", p.to_str().unwrap()]);
    (code, format!("{out}\n{err}"))
}

const IDENTITY: &str = "is an identity header set by auth policy `corp` (claim `sub`): clients' copies are removed before the upstream, so this key would read a value the client chose";

#[test]
fn keys_naming_an_identity_header_are_refused_at_their_position() {
    let cases = [
        (
            config("sticky = { header = \"x-user-id\" }", ""),
            "sticky = {",
            "routes[0].sticky.header",
            "use `sticky = { claim = \"sub\" }`",
        ),
        (
            config(
                "rate_limit = \"per_user\"",
                "[rate_limits.per_user]\nlimits = [{ key = \"header:X-User-Id\", rate = \"5/s\" }]\n",
            ),
            "limits = [",
            "rate_limits.per_user.limits[0].key",
            "use `claim:sub`",
        ),
        (
            config(
                "",
                "[services.pool]\ninstances = [\"127.0.0.1:3\"]\nlb = \"hash\"\nhash_on = \"header:X-USER-ID\"\n[[routes]]\nname = \"pool\"\nmatch = { path = \"/pool/**\" }\nservice = \"pool\"\n",
            ),
            "hash_on =",
            "services.pool.hash_on",
            "`hash_on` reads no claims",
        ),
    ];
    for (text, line_text, key, hint) in cases {
        let (code, out) = check(&text);
        assert_eq!(code, 2, "{out}");
        let line = text.lines().position(|l| l.contains(line_text)).unwrap() + 1;
        assert!(
            out.contains(&format!("routes.toml:{line}:"))
                && out.contains(IDENTITY)
                && out.contains(&format!("(key `{key}`)"))
                && out.contains(hint),
            "{key}: wanted line {line}, the identity message and `{hint}` in\n{out}"
        );
    }
    // Other headers are still fine.
    let (code, out) = check(&config("sticky = { header = \"X-Session\" }", ""));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_sticky_claim_without_auth_is_refused() {
    let text = config("sticky = { claim = \"sub\" }", "").replace("auth = \"corp\"\n", "");
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`sticky = { claim = \"sub\" }` on a route without `auth`: no request has a verified claim, so every request would be placed at random (key `routes[0].sticky.claim`)"),
        "{out}"
    );
    // With the route's auth it is the documented use.
    let (code, out) = check(&config("sticky = { claim = \"sub\" }", ""));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_cors_policy_without_the_token_header_is_a_warning() {
    let cors = "[cors.shop]\norigins = [\"https://shop.example.com\"]\nheaders = [\"Content-Type\", \"X-Custom\"]\n";
    let (code, out) = check(&config("cors = \"shop\"", cors));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("auth policy `corp` reads its token from the `authorization` header, which CORS policy `shop` does not allow")
            && out.contains("add \"Authorization\" to `headers` of `[cors.shop]`"),
        "{out}"
    );
    let (code, out) = check(&config(
        "cors = \"shop\"",
        &cors.replace("\"X-Custom\"", "\"X-Custom\", \"Authorization\""),
    ));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_section_key_at_the_top_says_where_it_belongs() {
    let (code, out) = check_text("breaker = { consecutive_failures = 5 }\n");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("hint: `breaker` is a key of `[services.NAME]`: put it under that section"),
        "{out}"
    );
    let (_, out) = check_text("nonsense_section = 1\n");
    assert!(
        out.contains(
            "the policies `[access.NAME]`, `[auth.NAME]`, `[cors.NAME]`, `[rate_limits.NAME]`"
        ),
        "{out}"
    );
}

#[test]
fn a_reload_that_keys_a_split_on_an_identity_header_is_refused_and_the_old_config_kept() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path(), "hmac.key", random_hex(32));
    let mono = Origin::start("monolith");
    let orders = Origin::start("orders");
    let build = |sticky: &str| {
        ConfigBuilder::new()
            .table("auth.corp", |t| {
                t.set_str("issuer", "https://issuer.local")
                    .set("secret_file", toml_path(&secret))
                    .set("algorithms", r#"["HS256"]"#)
                    .set_str("audience", "api")
                    .set("claims_to_headers", r#"{ sub = "X-User-Id" }"#);
            })
            .service("monolith", &[mono.addr()])
            .service("orders", &[orders.addr()])
            .route("open", "/open/**", "monolith")
            .route_with("orders", "/orders/**", "monolith", |r| {
                r.remove("service");
                r.set(
                    "split",
                    r#"[{ service = "monolith", weight = 50 }, { service = "orders", weight = 50 }]"#,
                );
                r.set_str("auth", "corp");
            })
            .raw(sticky)
            .build()
    };
    let gw = Gateway::start(&build("sticky = { claim = \"sub\" }\n"));
    let generation = gw.generation();
    let failed = |gw: &Gateway| {
        metric_sum(
            &gw.metrics(),
            "ficus_config_reload_failures_total",
            &[("reason", "invalid")],
        )
        .unwrap_or(0.0)
    };
    let failed0 = failed(&gw);
    gw.rewrite_config(&build("sticky = { header = \"X-User-Id\" }\n"));
    poll_until(Duration::from_secs(10), || {
        (failed(&gw) > failed0).then_some(())
    })
    .unwrap_or_else(|| panic!("the reload was not refused\n{}", gw.logs()));
    poll_until(Duration::from_secs(3), || {
        gw.logs()
            .contains("is an identity header set by auth policy `corp`")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the refusal was not logged:\n{}", gw.logs()));
    assert_eq!(
        gw.generation(),
        generation,
        "the refused config was applied"
    );
    // The old config still serves (and still asks for a token on the split route).
    assert_eq!(gw.get("/open/1").origin().as_deref(), Some("monolith"));
    assert_eq!(gw.get("/orders/1").status, 401);
}
