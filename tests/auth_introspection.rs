//! `type = "introspection"` policies (RFC 7662; issue 10, /work/auth-spec.md), black box:
//! ficus asks the real OpenID provider (npm oidc-provider) about opaque tokens, or an
//! in-process stand-in where the test needs the provider to misbehave (slow, failing,
//! answering garbage) or to answer something exact.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The provider's client secret, in a file for `client_secret_file`.
fn secret_file(dir: &tempfile::TempDir, secret: &str) -> PathBuf {
    write_secret(dir.path(), "client-secret.txt", secret)
}

/// `[auth.partners]`: introspection at `url` as the provider's client.
fn partners(t: &mut Table, url: &str, secret: &std::path::Path) {
    t.set_str("type", "introspection")
        .set_str("introspection_url", url)
        .set_str("client_id", "ficus-test")
        .set("client_secret_file", toml_path(secret))
        .set_str("timeout", "1s")
        .set(
            "claims_to_headers",
            r#"{ sub = "X-User-Id", client_id = "X-Client-Id", scope = "X-Scope" }"#,
        );
}

/// Service `orders` at `o`, route `orders` on `/orders/**` with `auth = "partners"` and
/// `scopes = ["orders:read"]`, and `[auth.partners]` for `url` (then `policy`).
fn config(
    o: &Origin,
    url: &str,
    secret: &std::path::Path,
    policy: impl FnOnce(&mut Table),
) -> ConfigBuilder {
    ConfigBuilder::new()
        .table("auth.partners", |t| {
            partners(t, url, secret);
            policy(t);
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "partners")
                .set("scopes", r#"["orders:read"]"#);
        })
}

/// The real provider, an echo origin and a gateway introspecting at the provider.
struct Setup {
    idp: OidcProvider,
    o: Origin,
    gw: Gateway,
    _dir: tempfile::TempDir,
}

fn setup(policy: impl FnOnce(&mut Table)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(OidcOptions::default());
    let secret = secret_file(&dir, "ficus-test-secret");
    let o = Origin::start("orders");
    let gw = Gateway::start(&config(&o, &idp.introspection_endpoint(), &secret, policy).build());
    Setup {
        idp,
        o,
        gw,
        _dir: dir,
    }
}

impl Setup {
    /// A new opaque token for `scope`.
    fn opaque(&self, scope: &str) -> String {
        self.idp.client_credentials_token(scope, OPAQUE_AUD)
    }
}

/// A stand-in introspection endpoint: answers per token (default `{"active": false}`),
/// records every request (the origin's log).
struct FakeIntrospection {
    origin: Origin,
    answers: Arc<Mutex<HashMap<String, Value>>>,
}

impl FakeIntrospection {
    fn start() -> FakeIntrospection {
        let answers: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let table = answers.clone();
        let origin = Origin::builder("introspection")
            .route("/introspect", move |r: &Request| {
                let token = form_value(&r.body, "token").unwrap_or_default();
                let answer = table
                    .lock()
                    .unwrap()
                    .get(&token)
                    .cloned()
                    .unwrap_or_else(|| json!({ "active": false }));
                Reply::json(answer)
            })
            .start();
        FakeIntrospection { origin, answers }
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.origin.addr())
    }

    fn answer(&self, token: &str, answer: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_string(), answer);
    }

    /// Introspection calls so far.
    fn calls(&self) -> usize {
        self.origin.requests()
    }
}

/// The value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An active answer for `sub`, valid for `ttl` seconds.
fn active(sub: &str, ttl: u64) -> Value {
    let now = unix_now();
    json!({
        "active": true,
        "sub": sub,
        "client_id": "partner-app",
        "scope": "orders:read",
        "iat": now,
        "exp": now + ttl,
        "token_type": "Bearer",
    })
}

/// A gateway on the stand-in endpoint; the stand-in and the secret file's directory live as
/// long as the test holds them.
fn fake_setup(
    fake: &FakeIntrospection,
    policy: impl FnOnce(&mut Table),
) -> (Origin, Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "s3cret");
    let o = Origin::start("orders");
    let gw = Gateway::start(&config(&o, &fake.url(), &secret, policy).build());
    (o, gw, dir)
}

// --- Active, inactive, revoked ---------------------------------------------------------

#[test]
fn an_active_opaque_token_reaches_the_upstream_with_identity_headers() {
    let s = setup(|_| {});
    let token = s.opaque("orders:read orders:write");
    assert_eq!(token.split('.').count(), 1, "opaque: {token}");
    let auth = format!("Bearer {token}");
    let r = get_with(
        &s.gw,
        "/orders/7",
        &[
            ("Authorization", &auth),
            ("X-User-Id", "root"),
            ("x_client_id", "root-app"),
        ],
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_path().as_deref(), Some("/orders/7"));
    assert_eq!(
        r.origin_header("x-client-id").as_deref(),
        Some("ficus-test")
    );
    assert_eq!(
        r.origin_header("x-scope").as_deref(),
        Some("orders:read orders:write")
    );
    // The provider's answer has no `sub`: no header, and the client's copy is gone.
    assert_eq!(r.origin_header("x-user-id"), None);
    assert_eq!(r.origin_header("x_client_id"), None);
    assert_eq!(r.origin_header("authorization"), Some(auth));
    assert_eq!(
        wait_metric(1.0, || auth_outcomes(&s.gw, "partners", "accepted")),
        1.0
    );
}

#[test]
fn a_revoked_or_unknown_token_is_401_token_inactive() {
    let s = setup(|_| {});
    let revoked = s.opaque("orders:read");
    s.idp.revoke(&revoked);
    assert_invalid_token(&bearer(&s.gw, "/orders/1", &revoked), "token inactive");
    assert_invalid_token(
        &bearer(&s.gw, "/orders/1", "never-issued-by-this-provider"),
        "token inactive",
    );
    assert_no_token(&get_with(&s.gw, "/orders/1", &[]));
    assert_eq!(s.o.requests(), 0);
    assert_eq!(
        wait_metric(2.0, || auth_outcomes(&s.gw, "partners", "inactive")),
        2.0
    );
}

/// A token revoked after it was accepted keeps working only while its answer is cached
/// (`cache_ttl`), then it is refused.
#[test]
fn a_revoked_token_is_refused_once_its_cached_answer_expires() {
    let s = setup(|t| {
        t.set_str("cache_ttl", "1s");
    });
    let token = s.opaque("orders:read");
    assert_eq!(bearer(&s.gw, "/orders/1", &token).status, 200);
    s.idp.revoke(&token);
    let started = Instant::now();
    let r = poll_until(Duration::from_secs(10), || {
        let r = bearer(&s.gw, "/orders/1", &token);
        (r.status != 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("a revoked token still passes after 10 s\n{}", s.gw.logs()));
    assert_invalid_token(&r, "token inactive");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cache_ttl = 1s, but the revoked token passed for {:?}",
        started.elapsed()
    );
}

// --- The cache -------------------------------------------------------------------------

#[test]
fn answers_are_cached() {
    let s = setup(|_| {});
    let token = s.opaque("orders:read");
    let before = s.idp.introspections();
    for _ in 0..5 {
        assert_eq!(bearer(&s.gw, "/orders/1", &token).status, 200);
    }
    assert_eq!(
        s.idp.introspections() - before,
        1,
        "one call for five requests"
    );
    let other = s.opaque("orders:read");
    assert_eq!(bearer(&s.gw, "/orders/1", &other).status, 200);
    assert_eq!(s.idp.introspections() - before, 2);
    let cache = |result: &str| {
        metric(
            &s.gw,
            "ficus_auth_cache_total",
            &[("policy", "partners"), ("result", result)],
        )
    };
    assert_eq!(wait_metric(4.0, || cache("hit")), 4.0);
    assert_eq!(cache("miss"), 2.0);
}

/// An answer is kept until the earlier of the token's `exp` and `cache_ttl`: a token that
/// expires in 2 s is asked about again (or refused) after 2 s even with a 60 s cache.
#[test]
fn a_cached_answer_never_outlives_the_token_exp() {
    let fake = FakeIntrospection::start();
    let (_o, gw, _dir) = fake_setup(&fake, |t| {
        t.set_str("cache_ttl", "60s");
    });
    fake.answer("short-lived", active("alice", 2));
    assert_eq!(bearer(&gw, "/orders/1", "short-lived").status, 200);
    fake.answer("short-lived", json!({ "active": false }));
    assert_eq!(
        bearer(&gw, "/orders/1", "short-lived").status,
        200,
        "cached (the answer changed, the gateway did not ask)"
    );
    assert_eq!(fake.calls(), 1);
    // Time is what is under test: wait for `exp` (2 s, plus a second for rounding).
    std::thread::sleep(Duration::from_secs(3));
    let r = bearer(&gw, "/orders/1", "short-lived");
    assert_invalid_token_one_of(&r, &["token inactive", "token expired"]);
}

#[test]
fn cache_ttl_bounds_how_long_an_answer_is_kept() {
    let fake = FakeIntrospection::start();
    let (_o, gw, _dir) = fake_setup(&fake, |t| {
        t.set_str("cache_ttl", "1s");
    });
    fake.answer("tok", active("alice", 600));
    assert_eq!(bearer(&gw, "/orders/1", "tok").status, 200);
    assert_eq!(fake.calls(), 1);
    poll_until(Duration::from_secs(10), || {
        assert_eq!(bearer(&gw, "/orders/1", "tok").status, 200);
        (fake.calls() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("the answer was never asked for again with cache_ttl = 1s"));
}

// --- The provider down, slow, or answering nonsense ------------------------------------

#[test]
fn the_endpoint_down_is_503_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "s3cret");
    let o = Origin::start("orders");
    let down = closed_addr();
    let gw = Gateway::start(
        &config(
            &o,
            &format!("http://{down}/token/introspection"),
            &secret,
            |_| {},
        )
        .build(),
    );
    assert_unavailable(&bearer(&gw, "/orders/1", "some-opaque-token"));
    assert_eq!(o.requests(), 0);
    assert_eq!(
        wait_metric(1.0, || auth_outcomes(
            &gw,
            "partners",
            "provider_unavailable"
        )),
        1.0
    );
}

#[test]
fn the_provider_going_down_makes_new_tokens_503() {
    let mut s = setup(|_| {});
    let token = s.opaque("orders:read");
    let fresh = s.opaque("orders:read");
    assert_eq!(bearer(&s.gw, "/orders/1", &token).status, 200);
    s.idp.stop();
    assert_unavailable(&bearer(&s.gw, "/orders/1", &fresh));
}

#[test]
fn a_slow_endpoint_is_503_after_the_timeout() {
    let fake = FakeIntrospection::start();
    fake.origin.set_route(
        "/introspect",
        Reply::json(active("alice", 600)).delay(Duration::from_secs(4)),
    );
    let (o, gw, _dir) = fake_setup(&fake, |t| {
        t.set_str("timeout", "1s");
    });
    let started = Instant::now();
    let r = bearer(&gw, "/orders/1", "slow-token");
    let took = started.elapsed();
    assert_unavailable(&r);
    assert!(
        took < Duration::from_millis(3500),
        "timeout = 1s, but the answer took {took:?}"
    );
    assert_eq!(o.requests(), 0);
}

/// 5xx and garbage are 503. An answer whose `active` is not the JSON `true` is never a
/// pass: 401 (inactive) or 503 (garbage) both refuse it.
#[test]
fn error_and_garbage_answers_are_never_a_pass() {
    let fake = FakeIntrospection::start();
    let (o, gw, _dir) = fake_setup(&fake, |_| {});
    let unavailable: [(&str, Reply); 5] = [
        ("500", Reply::json(active("alice", 600)).status(500)),
        ("502", Reply::text("bad gateway").status(502)),
        ("503", Reply::new(503)),
        ("not JSON", Reply::text("<html>welcome</html>")),
        ("a closed connection", Reply::close()),
    ];
    for (i, (what, reply)) in unavailable.into_iter().enumerate() {
        fake.origin.set_route("/introspect", reply);
        let r = bearer(&gw, "/orders/1", &format!("token-{i}"));
        assert_eq!(r.status, 503, "{what}: {}", describe(&r));
        assert_unavailable(&r);
    }
    let refused = [
        json!({ "active": "true", "sub": "alice", "scope": "orders:read" }),
        json!({ "active": 1, "sub": "alice", "scope": "orders:read" }),
        json!({ "sub": "alice", "scope": "orders:read" }),
        json!([{ "active": true }]),
        json!({ "active": null }),
    ];
    for (i, answer) in refused.iter().enumerate() {
        fake.origin
            .set_route("/introspect", Reply::json(answer.clone()));
        let r = bearer(&gw, "/orders/1", &format!("odd-{i}"));
        assert!(
            r.status == 401 || r.status == 503,
            "{answer}: {}",
            describe(&r)
        );
    }
    assert_eq!(
        o.requests(),
        0,
        "a failed introspection let a request through"
    );
}

/// ficus authenticates to the endpoint as its own client (the provider refuses anyone
/// else), and sends the token in the POST body, never in the URL. A wrong client secret is
/// the gateway's misconfiguration: never a pass (503 would tell the operator; 401 blames
/// the client; the spec does not say, so either passes here).
#[test]
fn introspection_is_authenticated_with_the_gateway_credentials() {
    let fake = FakeIntrospection::start();
    let (_o, gw, _dir) = fake_setup(&fake, |_| {});
    fake.answer("tok/with+chars=", active("alice", 600));
    let r = bearer(&gw, "/orders/1", "tok/with+chars=");
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        r.origin_header("x-client-id").as_deref(),
        Some("partner-app")
    );

    let call = fake.origin.last().unwrap();
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/introspect", "the token in the URL");
    assert!(
        call.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        call.headers
    );
    assert_eq!(
        form_value(&call.body, "token").as_deref(),
        Some("tok/with+chars=")
    );
    let basic = format!("Basic {}", base64_encode(b"ficus-test:s3cret"));
    let by_header = call.header("authorization") == Some(basic.as_str());
    let by_form = form_value(&call.body, "client_id").as_deref() == Some("ficus-test")
        && form_value(&call.body, "client_secret").as_deref() == Some("s3cret");
    assert!(
        by_header || by_form,
        "no client credentials: {:?} {}",
        call.headers,
        String::from_utf8_lossy(&call.body)
    );

    // The real provider with a wrong secret.
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(OidcOptions::default());
    let wrong = secret_file(&dir, "not-the-secret");
    let o = Origin::start("orders");
    let gw = Gateway::start(&config(&o, &idp.introspection_endpoint(), &wrong, |_| {}).build());
    let token = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    let r = bearer(&gw, "/orders/1", &token);
    assert!(r.status == 503 || r.status == 401, "{}", describe(&r));
    assert_eq!(o.requests(), 0);
}

// --- Scopes, issuer, audience ----------------------------------------------------------

#[test]
fn scopes_issuer_and_audience_apply_to_introspection_answers() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(OidcOptions::default());
    let secret = secret_file(&dir, "ficus-test-secret");
    let url = idp.introspection_endpoint();
    let o = Origin::start("orders");
    let cfg = config(&o, &url, &secret, |t| {
        t.set_str("issuer", &idp.issuer())
            .set_str("audience", OPAQUE_AUD);
    })
    .table("auth.other_aud", |t| {
        partners(t, &url, &secret);
        t.set_str("audience", "urn:api:other");
    })
    .table("auth.other_iss", |t| {
        partners(t, &url, &secret);
        t.set_str("issuer", "http://127.0.0.1:1");
    })
    .route_with("write", "/write/**", "orders", |r| {
        r.set_str("auth", "partners")
            .set("scopes", r#"["orders:write"]"#);
    })
    .route_with("aud", "/aud/**", "orders", |r| {
        r.set_str("auth", "other_aud");
    })
    .route_with("iss", "/iss/**", "orders", |r| {
        r.set_str("auth", "other_iss");
    })
    .build();
    let gw = Gateway::start(&cfg);
    let read = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    assert_eq!(bearer(&gw, "/orders/1", &read).status, 200);
    assert_insufficient_scope(&bearer(&gw, "/write/1", &read), "orders:write");
    assert_invalid_token(&bearer(&gw, "/aud/1", &read), "wrong audience");
    assert_invalid_token(&bearer(&gw, "/iss/1", &read), "wrong issuer");
}

// --- JWTs and opaque tokens on one route -----------------------------------------------

/// `auth = ["corp", "partners"]`: JWT access tokens are verified locally (no introspection
/// call), opaque ones are introspected.
#[test]
fn jwt_resource_tokens_and_opaque_tokens_on_one_route() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(OidcOptions::default());
    let secret = secret_file(&dir, "ficus-test-secret");
    let o = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.corp", |t| {
            t.set_str("issuer", &idp.issuer())
                .set_str("jwks", &idp.jwks_uri())
                .set_str("audience", AUD)
                .set("claims_to_headers", r#"{ client_id = "X-Client-Id" }"#);
        })
        .table("auth.partners", |t| {
            partners(t, &idp.introspection_endpoint(), &secret);
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set("auth", r#"["corp", "partners"]"#)
                .set("scopes", r#"["orders:read"]"#);
        })
        .build();
    let gw = Gateway::start(&cfg);
    let jwt = idp.client_credentials_token("orders:read", AUD);
    assert_eq!(wait_for_keys(&gw, "/orders/1", &jwt).status, 200);

    let before = idp.introspections();
    let r = bearer(&gw, "/orders/2", &jwt);
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(
        r.origin_header("x-client-id").as_deref(),
        Some("ficus-test")
    );
    assert_eq!(idp.introspections(), before, "a JWT was introspected");

    let opaque = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    let r = bearer(&gw, "/orders/3", &opaque);
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(
        r.origin_header("x-client-id").as_deref(),
        Some("ficus-test")
    );
    assert_eq!(idp.introspections(), before + 1);

    let revoked = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    idp.revoke(&revoked);
    let r = bearer(&gw, "/orders/4", &revoked);
    assert_eq!(r.status, 401, "{}", describe(&r));
    assert_eq!(o.requests(), 2 + 1);
}

// --- The access log --------------------------------------------------------------------

#[test]
fn the_access_log_has_the_client_id_and_never_the_opaque_token() {
    let dir = tempfile::tempdir().unwrap();
    let idp = OidcProvider::start(OidcOptions::default());
    let secret = secret_file(&dir, "ficus-test-secret");
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(&o, &idp.introspection_endpoint(), &secret, |_| {})
            .gateway(|g| {
                g.set_str("access_log", "json");
            })
            .build(),
    );
    let token = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    let auth = format!("Bearer {token}");
    let r = get_with(
        &gw,
        "/orders/1",
        &[("Authorization", &auth), ("X-Request-Id", "opaque-ok")],
    );
    assert_eq!(r.status, 200);
    let revoked = idp.client_credentials_token("orders:read", OPAQUE_AUD);
    idp.revoke(&revoked);
    let auth = format!("Bearer {revoked}");
    let r = get_with(
        &gw,
        "/orders/1",
        &[("Authorization", &auth), ("X-Request-Id", "opaque-revoked")],
    );
    assert_eq!(r.status, 401);

    let line = access_line(&gw, "opaque-ok");
    assert_eq!(line["client_id"], "ficus-test", "{line}");
    assert_eq!(access_line(&gw, "opaque-revoked")["status"], 401);
    let logs = gw.logs();
    assert!(!logs.contains(&token), "the token is in the gateway's logs");
    assert!(
        !logs.contains(&revoked),
        "the token is in the gateway's logs"
    );
}

// --- ficus check -----------------------------------------------------------------------

#[test]
fn check_refuses_an_introspection_policy_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"[gateway]
listen = ["127.0.0.1:18080"]
admin = "127.0.0.1:19901"

[auth.partners]
type = "introspection"
introspection_url = "https://idp.example.com/oauth2/introspect"
client_id = "ficus-test"
SECRET

[services.orders]
instances = ["127.0.0.1:8082"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "orders"
auth = "partners"
"#;
    let path = dir.path().join("routes.toml");
    let secret = write_secret(dir.path(), "secret.txt", "s3cret");
    let run = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
        (code, format!("{out}\n{err}"))
    };
    let ok = base.replace(
        "SECRET",
        &format!("client_secret_file = {}", toml_path(&secret)),
    );
    let (code, out) = run(&ok);
    assert_eq!(code, 0, "{out}");
    for (what, secret_line, needle) in [
        ("no secret", "", "client_secret"),
        (
            "an inline secret",
            r#"client_secret = "s3cret""#,
            "client_secret_",
        ),
        (
            "both a file and a variable",
            &*format!(
                "client_secret_file = {}\nclient_secret_env = \"FICUS_SECRET\"",
                toml_path(&secret)
            ),
            "client_secret",
        ),
    ] {
        let (code, out) = run(&base.replace("SECRET", secret_line));
        assert_eq!(code, 2, "{what}: {out}");
        assert!(out.contains(needle), "{what}: {out}");
    }
}
