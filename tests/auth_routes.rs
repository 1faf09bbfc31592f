//! The route side of authentication, end to end against a real OpenID provider: a route's
//! `auth` (one policy or a list any of which may accept), its `scopes` and `claims` rules,
//! the identity headers the upstream gets (and the spoofed ones it never gets), the
//! `WWW-Authenticate` challenges, CORS preflights, and what `ficus check` says about it.
//! The tokens are opaque ones checked by introspection; the JWT checks have their own file.

mod common;
use common::*;
use std::time::Duration;

fn config(idp: &OidcProvider, o: &Origin, route_extra: &str, secret_file: &str) -> String {
    format!(
        r#"
[gateway]
listen = ["{{listen}}"]
admin = "{{admin}}"
threads = 2
access_log = "text"

[auth.partners]
type = "introspection"
introspection_url = "{url}"
client_id = "ficus-test"
client_secret_file = "{secret_file}"
claims_to_headers = {{ sub = "X-User-Id", client_id = "X-Client-Id", scope = "X-Scopes" }}

[auth.other]
type = "introspection"
introspection_url = "http://127.0.0.1:9/closed"
client_id = "x"
client_secret_file = "{secret_file}"
timeout = "300ms"
claims_to_headers = {{ sub = "X-Other-User" }}

[services.o]
instances = ["{origin}"]

[[routes]]
name = "orders"
match = {{ path = "/orders/**" }}
service = "o"
{route_extra}

[[routes]]
name = "open"
match = {{ path = "/**" }}
service = "o"
"#,
        url = idp.introspection_endpoint(),
        origin = o.addr(),
    )
}

fn secret_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "ficus-test-secret\n").unwrap();
    let p = path.display().to_string();
    (dir, p)
}

fn opaque(idp: &OidcProvider, scope: &str) -> String {
    idp.client_credentials_token(scope, &idp.options().opaque_resource.clone())
}

fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    get_raw(gw.listen, path, "shop.example", headers)
}

#[test]
fn a_token_with_the_scopes_passes_and_the_upstream_gets_its_identity_not_the_clients() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("o");
    let (_d, secret) = secret_file();
    let gw = Gateway::start(&config(
        &idp,
        &o,
        "auth = \"partners\"\nscopes = [\"orders:read\"]",
        &secret,
    ));
    let token = opaque(&idp, "orders:read orders:write");
    let bearer = format!("Bearer {token}");
    let r = get(
        &gw,
        "/orders/1",
        &[
            ("authorization", &bearer),
            ("x-user-id", "admin"),
            ("x_user_id", "admin"),
            ("X-CLIENT-ID", "spoof"),
            ("x-other-user", "spoof"),
        ],
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.logs());
    let seen = o.last().unwrap();
    assert_eq!(seen.header("x-client-id"), Some("ficus-test"));
    assert_eq!(
        seen.header_all("x-user-id").len(),
        0,
        "client credentials tokens have no sub"
    );
    assert!(
        seen.header("x_user_id").is_none(),
        "underscore spelling reached the upstream"
    );
    assert_eq!(seen.header("x-scopes"), Some("orders:read orders:write"));
    assert!(
        seen.header("x-other-user").is_none(),
        "another policy's header reached the upstream"
    );
    assert_eq!(seen.header("authorization"), Some(bearer.as_str()));
    // The open route has no auth, yet the gateway owns the identity headers there too: a
    // service reached by both routes must never read a client's choice.
    let r = get(
        &gw,
        "/open",
        &[
            ("x-user-id", "admin"),
            ("X_Other_User", "x"),
            ("x-kept", "1"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = o.last().unwrap();
    assert!(seen.header("x-user-id").is_none());
    assert!(seen.header("x_other_user").is_none());
    assert_eq!(seen.header("x-kept"), Some("1"));
    // The access log names the client, never the token (lines are written off the
    // request path: wait for them).
    let logs = poll_until(Duration::from_secs(5), || {
        let l = gw.logs();
        l.contains("client_id=ficus-test").then_some(l)
    })
    .unwrap_or_else(|| panic!("no access log line with the client id\n{}", gw.logs()));
    assert!(!logs.contains(&token), "the token is in the log");
}

#[test]
fn refusals_carry_rfc6750_challenges() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("o");
    let (_d, secret) = secret_file();
    let gw = Gateway::start(&config(
        &idp,
        &o,
        "auth = \"partners\"\nscopes = [\"orders:write\", \"orders:read\"]",
        &secret,
    ));
    let before = o.requests();
    // No token: a bare challenge.
    let r = get(&gw, "/orders/1", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"ficus\""));
    assert!(r.json()["request_id"].is_string());
    // Another scheme carries no bearer token.
    let r = get(&gw, "/orders/1", &[("authorization", "Basic Zm9vOmJhcg==")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"ficus\""));
    // A JWT, which the provider's introspection refuses to judge (`unsupported_token_type`):
    // the endpoint works, so this is a refusal, not an outage.
    let jwt = idp.client_credentials_token("orders:read", "urn:api:shop");
    let r = bearer(&gw, "/orders/1", &jwt);
    assert_eq!(r.status, 401, "{}", r.text());
    // An unknown token: inactive.
    let r = get(
        &gw,
        "/orders/1",
        &[("authorization", "Bearer not-a-real-token")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"ficus\", error=\"invalid_token\", error_description=\"token inactive\""
        )
    );
    // A token without every scope.
    let token = opaque(&idp, "orders:read");
    let r = bearer(&gw, "/orders/1", &token);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"ficus\", error=\"insufficient_scope\", scope=\"orders:write orders:read\"")
    );
    assert_eq!(
        o.requests(),
        before,
        "a refused request reached the upstream"
    );
    // A CORS preflight is never refused for lack of credentials.
    let pre = raw_request(
        gw.listen,
        b"OPTIONS /orders/1 HTTP/1.1\r\nHost: shop.example\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nAuthorization: Bearer forged\r\nConnection: close\r\n\r\n",
    );
    assert_ne!(pre.status, 401, "{}", pre.text());
    assert_ne!(pre.status, 403);
    // It reached the upstream (no CORS policy answers it here), without the unchecked token.
    let seen = o.last().unwrap();
    assert_eq!(seen.method, "OPTIONS");
    assert!(
        seen.header("authorization").is_none(),
        "an unchecked token went upstream"
    );
    // Metrics count the outcomes.
    let m = gw.metrics();
    let count = |outcome: &str| {
        metric_sum(
            &m,
            "ficus_auth_requests_total",
            &[("policy", "partners"), ("outcome", outcome)],
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(count("no_token"), 2.0, "{m}");
    assert_eq!(count("inactive"), 2.0);
    assert_eq!(count("provider_unavailable"), 0.0);
    assert_eq!(count("insufficient_scope"), 1.0);
}

#[test]
fn any_of_a_list_may_accept_and_an_unavailable_policy_is_never_a_pass() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("o");
    let (_d, secret) = secret_file();
    // `other` points at a closed port: it can never answer.
    let gw = Gateway::start(&config(
        &idp,
        &o,
        "auth = [\"other\", \"partners\"]",
        &secret,
    ));
    let token = opaque(&idp, "orders:read");
    let r = bearer(&gw, "/orders/1", &token);
    assert_eq!(r.status, 200, "the second policy accepts: {}", r.text());
    // A token neither accepts: one policy could not answer, so 503, not 401.
    let r = get(&gw, "/orders/1", &[("authorization", "Bearer nope")]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    // Only the broken policy: 503 for every token.
    let gw2 = Gateway::start(&config(&idp, &o, "auth = \"other\"", &secret));
    let r = bearer(&gw2, "/orders/1", &token);
    assert_eq!(r.status, 503);
    assert!(r.json()["request_id"].is_string());
}

#[test]
fn introspection_answers_are_cached_and_claim_rules_apply() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("o");
    let (_d, secret) = secret_file();
    let gw = Gateway::start(&config(
        &idp,
        &o,
        "auth = \"partners\"\nclaims = [{ claim = \"client_id\", one_of = [\"ficus-test\", \"other\"] }, { claim = \"client_id\", contains = \"ficus-test\" }]\nscopes = [\"orders:read\"]",
        &secret,
    ));
    let token = opaque(&idp, "orders:read");
    for _ in 0..5 {
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_auth_introspection_calls_total",
            &[("policy", "partners")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "ficus_auth_cache_total", &[("result", "hit")]),
        Some(4.0)
    );
    // A token without the scope is refused.
    let token = opaque(&idp, "orders:write");
    let r = bearer(&gw, "/orders/1", &token);
    assert_eq!(r.status, 403);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
}

#[test]
fn check_reports_route_auth_mistakes_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let cfg = r#"
[services.o]
instances = ["127.0.0.1:9"]

[auth.partners]
type = "introspection"
introspection_url = "http://127.0.0.1:9/introspect"
client_id = "gw"
client_secret = "inline-secret"

[auth.corp]
type = "introspektion"

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"
auth = "partner"

[[routes]]
name = "b"
match = { path = "/b/**" }
service = "o"
scopes = ["orders:read"]

[[routes]]
name = "c"
match = { path = "/c/**" }
service = "o"
auth = ["partners"]
claims = [{ claim = "tenant", equals = "a", contains = "b" }]
"#;
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, cfg).unwrap();
    let (code, out, err) = ficus(&["check", "--config", path.to_str().unwrap()]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(
        all.contains("`client_secret` is never written in routes.toml"),
        "{all}"
    );
    assert!(
        !all.contains("inline-secret"),
        "the secret was echoed: {all}"
    );
    assert!(all.contains("`introspektion` is not an auth type"), "{all}");
    assert!(all.contains("did you mean `introspection`?"), "{all}");
    assert!(all.contains("routes[1].scopes"), "{all}");
    assert!(all.contains("`scopes` needs `auth`"), "{all}");
    assert!(
        all.contains("exactly one of `equals`, `one_of` or `contains`"),
        "{all}"
    );
    assert!(
        all.contains("routes.toml:18:8: error: unknown auth policy `partner`"),
        "{all}"
    );
}

#[test]
fn an_unchanged_auth_policy_keeps_its_cache_across_a_reload_and_a_changed_one_starts_afresh() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("o");
    let (_d, secret) = secret_file();
    let cfg = config(&idp, &o, "auth = \"partners\"", &secret);
    let gw = Gateway::start(&cfg);
    let token = opaque(&idp, "orders:read");
    let bearer = format!("Bearer {token}");
    let calls = |gw: &Gateway| {
        metric_sum(
            &gw.metrics(),
            "ficus_auth_introspection_calls_total",
            &[("policy", "partners")],
        )
    };
    assert_eq!(
        get(&gw, "/orders/1", &[("authorization", &bearer)]).status,
        200
    );
    assert_eq!(calls(&gw), Some(1.0));
    // An edit elsewhere in the file: same instance, same cache, no new call.
    gw.reload(&cfg.replace("name = \"open\"", "name = \"open2\""));
    assert_eq!(
        get(&gw, "/orders/1", &[("authorization", &bearer)]).status,
        200
    );
    assert_eq!(
        calls(&gw),
        Some(1.0),
        "the cache did not survive the reload"
    );
    // The policy itself changed: a new instance asks the provider again.
    gw.reload(&cfg.replace(
        "client_id = \"ficus-test\"",
        "client_id = \"ficus-test\"\ncache_ttl = \"30s\"",
    ));
    assert_eq!(
        get(&gw, "/orders/1", &[("authorization", &bearer)]).status,
        200
    );
    assert_eq!(
        calls(&gw),
        Some(1.0),
        "a new instance starts its counters at zero"
    );
    let m = gw.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "ficus_auth_cache_total",
            &[("policy", "partners"), ("result", "miss")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn explain_lists_a_routes_auth_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let path = dir.path().join("routes.toml");
    let policy = |name: &str| {
        format!(
            "[auth.{name}]\ntype = \"introspection\"\nintrospection_url = \"http://127.0.0.1:9/i\"\nclient_id = \"gw\"\nclient_secret_file = \"secret\"\n"
        )
    };
    let cfg = format!(
        "{}{}[services.o]\ninstances = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"orders\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"o\"\nauth = [\"corp\", \"partners\"]\nscopes = [\"orders:read\"]\n",
        policy("corp"),
        policy("partners")
    );
    std::fs::write(&path, cfg).unwrap();
    let (code, out, err) = ficus(&[
        "explain",
        "--config",
        path.to_str().unwrap(),
        "GET",
        "http://shop.example/orders/1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("auth = [\"corp\", \"partners\"] (any one may accept)"),
        "{out}"
    );
}
