//! Client credentials toward upstreams, against a real OpenID provider: the upstream gets
//! ficus's own token (asked for once, cached, refreshed before it expires) in place of the
//! client's `Authorization`; a provider that is down or refuses means a fast 503, unless a
//! still-valid token is cached; a reload keeps the token unless the credentials change;
//! `ficus check` refuses what would leak or fail.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The secret the provider's client has (`OidcOptions::default()`).
const SECRET: &str = "ficus-test-secret";
/// Long enough for a token request to a loaded provider, and for a refresh to land.
const WAIT: Duration = Duration::from_secs(10);

/// The `orders` service on `instances`, its `client_credentials`: `token_url`, the
/// provider's client and the secret in `gw.secret`, then `extra` keys (`, scopes = [...]`).
fn config(instances: &[std::net::SocketAddr], token_url: &str, extra: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .service_with("orders", instances, |s| {
            s.set(
                "client_credentials",
                format!(
                    "{{ token_url = {}, client_id = \"ficus-test\", client_secret_file = \"gw.secret\"{extra} }}",
                    toml_str(token_url)
                ),
            );
        })
        .catch_all("orders")
}

/// What ficus asks `idp` for by default: `orders:read` tokens for `urn:api:shop`.
const READ: &str = ", scopes = [\"orders:read\"], resource = \"urn:api:shop\"";

/// A gateway on `cfg` whose directory holds `gw.secret` with `secret`.
fn gateway(cfg: &ConfigBuilder, secret: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.secret"), format!("{secret}\n")).unwrap();
    Gateway::builder(&cfg.build()).dir(dir).start()
}

/// The usual setup: ficus in front of `o`, asking `idp` for [`READ`] tokens.
fn gateway_for(idp: &OidcProvider, o: &Origin) -> Gateway {
    gateway(&config(&[o.addr()], &idp.token_endpoint(), READ), SECRET)
}

/// GET with the client's own `Authorization`, which the upstream must never see.
fn request(gw: &Gateway) -> RawResponse {
    get_raw(
        gw.listen,
        "/orders/1",
        "test.local",
        &[("authorization", "Bearer the-clients-own-token")],
    )
}

/// The token the upstream received, from the origin's echo; panics unless the request
/// went through with exactly one `Authorization: Bearer`.
fn upstream_token(r: &RawResponse) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    let auth = r
        .origin_header("authorization")
        .expect("upstream got no Authorization");
    let token = auth
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer token: {auth}"));
    assert!(
        !token.contains(','),
        "more than one Authorization upstream: {auth}"
    );
    assert_ne!(token, "the-clients-own-token");
    token.to_string()
}

fn claims(token: &str) -> Value {
    jwt_parts(token).1
}

fn exp(token: &str) -> f64 {
    claims(token)["exp"].as_f64().expect("exp claim")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn fetches(gw: &Gateway, result: &str) -> f64 {
    metric_sum(
        &gw.metrics(),
        "ficus_client_credentials_fetches_total",
        &[("service", "orders"), ("result", result)],
    )
    .unwrap_or(0.0)
}

/// A 503 from the gateway itself: JSON error with the request id of the header, and a
/// `Retry-After`.
fn assert_gateway_503(r: &RawResponse) {
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    let id = r.header("x-request-id").expect("x-request-id");
    assert_eq!(body["request_id"], id, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("credentials"),
        "{body}"
    );
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
}

#[test]
fn the_upstream_gets_the_gateways_token_in_place_of_the_clients() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("orders");
    let gw = gateway_for(&idp, &o);
    let token = upstream_token(&request(&gw));
    let c = claims(&token);
    assert_eq!(c["client_id"], "ficus-test", "{c}");
    assert_eq!(c["scope"], "orders:read", "{c}");
    assert_eq!(c["aud"], "urn:api:shop", "{c}");
    assert_eq!(c["iss"], idp.issuer(), "{c}");
    let received = o.last().unwrap();
    assert_eq!(
        received.header_all("authorization"),
        [format!("Bearer {token}")]
    );
}

#[test]
fn every_attempt_carries_the_token_retries_included() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("orders");
    // One instance refuses connections: round robin sends every other first attempt there,
    // and the retry goes to the origin.
    let instances = [closed_addr(), o.addr()];
    let gw = gateway(&config(&instances, &idp.token_endpoint(), READ), SECRET);
    let tokens: Vec<String> = (0..4).map(|_| upstream_token(&request(&gw))).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    // The access log says which requests took a second attempt.
    poll_until(WAIT, || gw.logs().contains(" attempts=2 ").then_some(()))
        .unwrap_or_else(|| panic!("no request was retried:\n{}", gw.logs()));
}

#[test]
fn one_token_request_serves_many_requests() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("orders");
    let gw = gateway_for(&idp, &o);
    let first = upstream_token(&request(&gw));
    let tokens: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| upstream_token(&request(&gw)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(tokens.len(), 40);
    assert!(tokens.iter().all(|t| *t == first));
    assert_eq!(idp.tokens_issued(), 1, "{}", idp.logs());
    assert_eq!(fetches(&gw, "ok"), 1.0);
    assert_eq!(fetches(&gw, "error"), 0.0);
}

#[test]
fn a_new_token_replaces_the_old_before_it_expires() {
    let idp = OidcProvider::start(OidcOptions::default().token_ttl(Duration::from_secs(4)));
    let o = Origin::start("orders");
    let gw = gateway_for(&idp, &o);
    let first = upstream_token(&request(&gw));
    let first_exp = exp(&first);
    // Requests keep flowing; each must carry a token that has not expired.
    let (second, seen_at) = poll_until(WAIT, || {
        let token = upstream_token(&request(&gw));
        let now = unix_now();
        assert!(
            now < exp(&token),
            "an expired token was sent (exp {}, now {now})",
            exp(&token)
        );
        (token != first).then_some((token, now))
    })
    .expect("no new token within 10 s");
    assert!(
        seen_at < first_exp,
        "the new token arrived at {seen_at}, after the old one expired at {first_exp}"
    );
    assert!(exp(&second) > first_exp);
    assert_eq!(fetches(&gw, "error"), 0.0);
}

#[test]
fn a_valid_token_keeps_serving_while_the_provider_is_down_then_503() {
    // Refreshed after 5 s, not sent after 8 s (a tenth and a second of margin).
    let mut idp = OidcProvider::start(OidcOptions::default().token_ttl(Duration::from_secs(10)));
    let o = Origin::start("orders");
    let gw = gateway_for(&idp, &o);
    let token = upstream_token(&request(&gw));
    idp.process().stop();
    poll_until(WAIT, || (fetches(&gw, "error") >= 1.0).then_some(()))
        .expect("no failed refresh counted");
    // The refresh failed; the cached token is still sent while it is valid.
    let refused = poll_until(WAIT, || {
        let r = request(&gw);
        if r.status == 200 {
            assert_eq!(upstream_token(&r), token);
            assert!(unix_now() < exp(&token), "an expired token was sent");
            return None;
        }
        Some(r)
    })
    .expect("the gateway kept sending a token past its lifetime");
    assert_gateway_503(&refused);
}

#[test]
fn a_provider_never_reached_is_a_fast_503() {
    let o = Origin::start("orders");
    let token_url = format!("http://{}/token", closed_addr());
    let gw = gateway(&config(&[o.addr()], &token_url, ""), SECRET);
    let start = Instant::now();
    assert_gateway_503(&request(&gw));
    let after_first = Instant::now();
    for _ in 0..20 {
        assert_gateway_503(&request(&gw));
    }
    assert!(
        after_first.elapsed() < Duration::from_secs(1),
        "20 refusals took {:?}",
        after_first.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(o.requests(), 0, "the upstream was called");
    // Backing off: not one token request per client request.
    let errors = fetches(&gw, "error");
    assert!((1.0..=3.0).contains(&errors), "{errors} token requests");
}

#[test]
fn a_wrong_secret_is_a_503_and_the_log_keeps_the_secret() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("orders");
    let wrong = "not-the-secret-Zq9";
    let gw = gateway(&config(&[o.addr()], &idp.token_endpoint(), READ), wrong);
    assert_gateway_503(&request(&gw));
    let logs = poll_until(WAIT, || {
        let logs = gw.logs();
        logs.contains("invalid_client").then_some(logs)
    })
    .unwrap_or_else(|| panic!("the refused token request was not logged:\n{}", gw.logs()));
    assert!(logs.contains("client credentials"), "{logs}");
    assert!(!logs.contains(wrong), "the secret is in the log:\n{logs}");
    assert_eq!(o.requests(), 0);
}

#[test]
fn a_reload_keeps_the_token_unless_the_credentials_change() {
    let idp = OidcProvider::start(OidcOptions::default());
    let o = Origin::start("orders");
    let read = config(&[o.addr()], &idp.token_endpoint(), READ);
    let gw = gateway(&read, SECRET);
    let first = upstream_token(&request(&gw));
    let reloaded = |gw: &Gateway, cfg: &str| {
        let ok = |gw: &Gateway| {
            metric_sum(
                &gw.metrics(),
                "ficus_config_reloads_total",
                &[("result", "ok")],
            )
            .unwrap_or(0.0)
        };
        let before = ok(gw);
        gw.rewrite_config(cfg);
        poll_until(WAIT, || (ok(gw) > before).then_some(())).expect("reload not applied");
    };

    // Another route, the same credentials: the same token, no new request.
    reloaded(&gw, &read.route("other", "/other/**", "orders").build());
    let r = get_raw(gw.listen, "/other/1", "test.local", &[]);
    assert_eq!(upstream_token(&r), first);
    assert_eq!(idp.tokens_issued(), 1);

    // Other scopes: a new token with them.
    let write = ", scopes = [\"orders:read\", \"orders:write\"], resource = \"urn:api:shop\"";
    reloaded(
        &gw,
        &config(&[o.addr()], &idp.token_endpoint(), write).build(),
    );
    let second = upstream_token(&request(&gw));
    assert_ne!(second, first);
    assert_eq!(claims(&second)["scope"], "orders:read orders:write");
    assert_eq!(idp.tokens_issued(), 2);
}

/// `ficus check` on `text` as `dir`/routes.toml: (exit code, output, config path).
fn check(dir: &Path, text: &str) -> (i32, String, std::path::PathBuf) {
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
    (code, format!("{out}\n{err}"), path)
}

/// A config whose `orders` service has `client_credentials = { <keys> }` on line 6 (the
/// line numbers are the point: literal TOML).
fn check_config(keys: &str) -> String {
    format!(
        "[gateway]\nlisten = [\"127.0.0.1:18080\"]\nadmin = \"127.0.0.1:19901\"\n\n[services.orders]\nclient_credentials = {{ {keys} }}\ninstances = [\"127.0.0.1:8082\"]\n\n[[routes]]\nname = \"orders\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"orders\"\n"
    )
}

/// `path:6:COL`, COL where `needle` starts on line 6 of `text`.
fn at_line_6(path: &Path, text: &str, needle: &str) -> String {
    let line = text.lines().nth(5).unwrap();
    let col = line.find(needle).expect("needle on line 6") + 1;
    format!("{}:6:{col}", path.display())
}

#[test]
fn check_refuses_a_missing_secret_file_and_an_inline_secret() {
    let dir = tempfile::tempdir().unwrap();
    // (the secret's key, where the error points, what it says)
    let cases = [
        (
            "client_secret_file = \"missing.secret\"",
            "\"missing.secret\"",
            "cannot read",
        ),
        (
            "client_secret = \"hunter2\"",
            "\"hunter2\"",
            "inline `client_secret`",
        ),
    ];
    let outputs: Vec<String> = cases
        .iter()
        .map(|(secret, at, says)| {
            let text = check_config(&format!(
                "token_url = \"https://idp.example.com/token\", client_id = \"gw\", {secret}"
            ));
            let (code, out, path) = check(dir.path(), &text);
            assert_eq!(code, 2, "{out}");
            assert!(out.contains(&at_line_6(&path, &text, at)), "{out}");
            assert!(out.contains(says), "{out}");
            out
        })
        .collect();
    // The inline secret: the hint names both other ways, and no message repeats it.
    let out = &outputs[1];
    assert!(
        out.contains("client_secret_file") && out.contains("client_secret_env"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn check_validates_the_token_url_and_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.secret"), "s\n").unwrap();
    let with = |keys: &str| {
        let text = check_config(&format!(
            "client_id = \"gw\", client_secret_file = \"gw.secret\", {keys}"
        ));
        let (code, out, path) = check(dir.path(), &text);
        (code, out, path, text)
    };
    let (code, out, path, text) =
        with("token_url = \"https://idp.example.com/token\", scope = [\"orders:read\"]");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&at_line_6(&path, &text, "scope =")), "{out}");
    assert!(out.contains("did you mean `scopes`?"), "{out}");
    let (code, out, ..) = with("token_url = \"ftp://idp.example.com/token\"");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("must be an http or https URL"), "{out}");
    // Plain http to a host that is not loopback: a warning (exit 1).
    let (code, out, ..) = with("token_url = \"http://idp.example.com/token\"");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("warning") && out.contains("unencrypted"),
        "{out}"
    );
    let (code, out, ..) = with("token_url = \"https://idp.example.com/token\"");
    assert_eq!(code, 0, "{out}");
}

/// Shadow copies: a shadow service with client credentials gets its own token, like the
/// primary's traffic; the primary's token never reaches a shadow.
#[test]
fn a_shadow_service_gets_its_own_token_never_the_primarys() {
    let idp = OidcProvider::start(OidcOptions::default());
    let primary = Origin::start("primary");
    let shadow = Origin::start("shadow");
    let cfg = ConfigBuilder::new()
        .service_with("orders", &[primary.addr()], |s| {
            s.set(
                "client_credentials",
                format!(
                    "{{ token_url = {}, client_id = \"ficus-test\", client_secret_file = \"gw.secret\"{READ} }}",
                    toml_str(&idp.token_endpoint())
                ),
            );
        })
        .service_with("orders-v2", &[shadow.addr()], |s| {
            s.set(
                "client_credentials",
                format!(
                    "{{ token_url = {}, client_id = \"ficus-test\", client_secret_file = \"gw.secret\", scopes = [\"orders:write\"], resource = \"urn:api:shop\" }}",
                    toml_str(&idp.token_endpoint())
                ),
            );
        })
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set("shadow", r#"{ service = "orders-v2" }"#);
        });
    let gw = gateway(&cfg, SECRET);
    let primary_token = upstream_token(&request(&gw));
    let copy = poll_until(WAIT, || shadow.received().pop()).expect("the copy never arrived");
    let auth = copy.header("authorization").expect("the copy has a token");
    let copy_token = auth.strip_prefix("Bearer ").expect("a bearer token");
    assert_ne!(copy_token, "the-clients-own-token");
    assert_ne!(
        copy_token, primary_token,
        "the shadow got the primary's token"
    );
    assert_eq!(
        claims(copy_token)["scope"],
        "orders:write",
        "{}",
        claims(copy_token)
    );
    assert_eq!(claims(&primary_token)["scope"], "orders:read");
}
