//! `[auth.NAME]` JWT policies (issue 10, /work/auth-spec.md), black box: the real ficus in
//! front of an echo origin, tokens from a real OpenID provider (npm oidc-provider) and
//! tokens the tests sign themselves with the provider's own key or an attacker's.
//!
//! Each test names what a client (or the upstream) must see. Where the spec leaves a choice
//! open, the test takes the reading a security reviewer would demand and says so.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The provider, signing with a key from a JWKS file so that tests hold its private key.
struct Idp {
    idp: OidcProvider,
    /// The provider's signing key (published at its `jwks_uri`).
    key: TestKey,
    dir: tempfile::TempDir,
}

impl Idp {
    fn start() -> Idp {
        Idp::start_with_kid("corp-2026")
    }

    /// A provider whose key has this `kid`.
    fn start_with_kid(kid: &str) -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        let key = write_rsa_jwks(&file, &[kid]).remove(0);
        let idp = OidcProvider::start(OidcOptions::default().jwks_file(&file));
        Idp { idp, key, dir }
    }

    /// Claims as the provider issues them, with `scope`.
    fn claims(&self, scope: &str) -> Value {
        self.idp.claims(scope)
    }

    /// A token the provider's key signs, with `edit` applied to its claims.
    fn token_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims("orders:read");
        edit(&mut claims);
        self.key.sign(&claims)
    }

    /// A valid `orders:read` token signed by the provider's key.
    fn token(&self) -> String {
        self.token_with(|_| {})
    }
}

/// `[auth.corp]` for `idp`: issuer, JWKS, audience and two identity headers.
fn corp(t: &mut Table, idp: &OidcProvider) {
    t.set_str("issuer", &idp.issuer())
        .set_str("jwks", &idp.jwks_uri())
        .set_str("audience", AUD)
        .set(
            "claims_to_headers",
            r#"{ sub = "X-User-Id", client_id = "X-Client-Id" }"#,
        );
}

/// The config: `[auth.corp]` for `idp` (then `policy`), service `orders` at `o`, and route
/// `orders` on `/orders/**` with `auth = "corp"` and `scopes = ["orders:read"]` (then
/// `route`).
fn config(
    o: &Origin,
    idp: &OidcProvider,
    policy: impl FnOnce(&mut Table),
    route: impl FnOnce(&mut Table),
) -> ConfigBuilder {
    ConfigBuilder::new()
        .table("auth.corp", |t| {
            corp(t, idp);
            policy(t);
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "corp")
                .set("scopes", r#"["orders:read"]"#);
            route(r);
        })
}

/// [`config`] started, once it accepts the provider's tokens (keys fetched).
fn gateway(
    o: &Origin,
    p: &Idp,
    policy: impl FnOnce(&mut Table),
    route: impl FnOnce(&mut Table),
) -> Gateway {
    let gw = Gateway::start(&config(o, &p.idp, policy, route).build());
    let r = wait_for_keys(&gw, "/orders/warm-up", &p.token());
    assert_eq!(r.status, 200, "{}", describe(&r));
    gw
}

/// What the upstream received last, as the echo reports it: header name → value.
fn upstream_headers(o: &Origin) -> Vec<(String, String)> {
    o.last().expect("the upstream got a request").headers
}

/// The headers of the upstream's last request named `name` in any case, or any `_`/`-`
/// variant of it.
fn upstream_copies(o: &Origin, name: &str) -> Vec<(String, String)> {
    let canon = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    upstream_headers(o)
        .into_iter()
        .filter(|(n, _)| canon(n) == canon(name))
        .collect()
}

/// Asserts that nothing of `token` (its payload or signature) appears in `text`.
#[track_caller]
fn assert_no_token_in(text: &str, token: &str, what: &str) {
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(
            !text.contains(part),
            "{what} contains part of the token ({part})"
        );
    }
}

// --- A valid token ------------------------------------------------------------------

#[test]
fn a_valid_provider_token_reaches_the_upstream_with_identity_headers() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let token = p
        .idp
        .client_credentials_token("orders:read", "urn:api:shop");

    let r = bearer(&gw, "/orders/42", &token);
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_path().as_deref(), Some("/orders/42"));
    assert_eq!(r.origin_header("x-user-id").as_deref(), Some("ficus-test"));
    assert_eq!(
        r.origin_header("x-client-id").as_deref(),
        Some("ficus-test")
    );
    // forward_authorization defaults to true.
    assert_eq!(
        r.origin_header("authorization"),
        Some(format!("Bearer {token}"))
    );
}

#[test]
fn no_token_is_401_with_a_bare_challenge_and_the_upstream_is_not_reached() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();

    assert_no_token(&get_with(&gw, "/orders/1", &[]));
    // Another scheme is not a bearer token.
    assert_no_token(&get_with(
        &gw,
        "/orders/1",
        &[("Authorization", "Basic ZmljdXM6dGVzdA==")],
    ));
    assert_eq!(o.requests(), before);
}

/// Two tokens in one request (two `Authorization` lines, or a cookie twice) are refused,
/// not resolved by picking one: a front proxy and ficus might pick differently. The spec
/// is silent; docs/auth.md says so, and a security reviewer would demand it.
#[test]
fn a_token_sent_twice_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(&o, &p.idp, |_| {}, |_| {})
            .table("auth.cookie", |t| {
                corp(t, &p.idp);
                t.set("token", r#"{ cookie = "at" }"#);
            })
            .route_with("cookie", "/cookie/**", "orders", |r| {
                r.set_str("auth", "cookie");
            })
            .build(),
    );
    let (good, other) = (p.token(), p.token());
    wait_for_keys(&gw, "/orders/1", &good);
    let before = o.requests();
    let twice = |path: &str, lines: &str| {
        raw_request(
            gw.listen,
            format!(
                "GET {path} HTTP/1.1\r\nHost: shop.example\r\n{lines}Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let cases = [
        (
            "/orders/1",
            format!("Authorization: Bearer {good}\r\nAuthorization: Bearer {other}\r\n"),
        ),
        (
            "/orders/1",
            format!("Authorization: Bearer {good}\r\nAuthorization: Bearer {good}\r\n"),
        ),
        ("/cookie/1", format!("Cookie: at={good}; at={other}\r\n")),
        (
            "/cookie/1",
            format!("Cookie: at={good}\r\nCookie: at={other}\r\n"),
        ),
    ];
    for (path, lines) in &cases {
        let r = twice(path, lines);
        assert_eq!(r.status, 401, "{path} {:.80}: {}", lines, describe(&r));
    }
    assert_eq!(o.requests(), before);
    // One token in the cookie header among others is fine.
    let r = get_with(
        &gw,
        "/cookie/1",
        &[("Cookie", &format!("a=1; at={good}; b=2"))],
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
}

/// RFC 7515 §4.1.11: a `crit` header lists extensions the recipient must understand, and
/// ficus understands none, so the token is refused even with a good signature.
#[test]
fn a_crit_header_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let claims = p.claims("orders:read");
    let header =
        json!({ "alg": "RS256", "typ": "at+jwt", "kid": p.key.kid, "crit": ["b64"], "b64": false });
    assert_refused_token(&bearer(
        &gw,
        "/orders/1",
        &sign_jwt(&header, &claims, &p.key),
    ));
}

// --- Attacks on the signature ---------------------------------------------------------

/// `alg: none` is refused whatever else the token says: config decides the algorithms,
/// never the token header. The spec's text for it is "algorithm not allowed"; an
/// implementation that calls the empty signature "malformed token" refuses it as surely,
/// so both pass.
#[test]
fn alg_none_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();
    let claims = p.claims("orders:read");
    let kid = p.key.kid.as_str();

    let real = p.key.sign(&claims);
    let real_sig = real.rsplit('.').next().unwrap();
    let cases = [
        unsigned_jwt(
            &json!({ "alg": "none", "typ": "at+jwt", "kid": kid }),
            &claims,
        ),
        unsigned_jwt(&json!({ "alg": "none" }), &claims),
        unsigned_jwt(&json!({ "alg": "None", "kid": kid }), &claims),
        unsigned_jwt(&json!({ "alg": "NONE", "kid": kid }), &claims),
        // `none` in the header, and a signature that is valid for RS256 over other bytes.
        format!(
            "{}{real_sig}",
            unsigned_jwt(&json!({ "alg": "none", "kid": kid }), &claims)
        ),
    ];
    for token in &cases {
        let r = bearer(&gw, "/orders/1", token);
        assert_invalid_token_one_of(&r, &["algorithm not allowed", "malformed token"]);
        assert_no_token_in(&r.text(), token, "the error body");
    }
    assert_eq!(
        o.requests(),
        before,
        "an unsigned token reached the upstream"
    );
}

/// The HS256/RS256 confusion: an attacker takes the provider's public key (public by
/// definition) and uses its bytes as an HMAC secret. Tried with every spelling a library
/// might use as "the key".
#[test]
fn hs256_signed_with_the_provider_public_key_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();
    let claims = p.claims("orders:read");
    let jwk = &p.idp.published_keys()[0];
    let spki = p.idp.public_key_pem();
    let pkcs1 = jwk_public_pem(jwk, PemFormat::Pkcs1);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI PEM", spki.clone().into_bytes()),
        ("SPKI PEM without the last newline", spki.trim_end().into()),
        ("PKCS#1 PEM", pkcs1.into_bytes()),
        ("SPKI DER", pem_to_der(&spki)),
        ("the JWK as JSON", jwk.to_string().into_bytes()),
        (
            "the modulus",
            base64url_decode(jwk["n"].as_str().unwrap()).unwrap(),
        ),
    ];
    for (what, secret) in &secrets {
        for header in [
            json!({ "alg": "HS256", "typ": "at+jwt", "kid": p.key.kid }),
            json!({ "alg": "HS256" }),
        ] {
            let token = hs256_jwt(&header, &claims, secret);
            let r = bearer(&gw, "/orders/1", &token);
            assert_eq!(r.status, 401, "{what}, {header}: {}", describe(&r));
            assert_invalid_token(&r, "algorithm not allowed");
        }
    }
    assert_eq!(
        o.requests(),
        before,
        "a confused token reached the upstream"
    );
}

/// The header's `alg` must be one of `algorithms` (default RS256 for a remote JWKS) even
/// when the signature is a good RS256 one: RS512 in the header is not RS256.
#[test]
fn an_algorithm_outside_the_configured_list_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let claims = p.claims("orders:read");
    for alg in ["RS512", "PS256", "ES256", "HS512"] {
        let token = sign_jwt(&json!({ "alg": alg, "kid": p.key.kid }), &claims, &p.key);
        assert_invalid_token(&bearer(&gw, "/orders/1", &token), "algorithm not allowed");
    }
    assert_eq!(bearer(&gw, "/orders/1", &p.key.sign(&claims)).status, 200);
}

#[test]
fn a_tampered_payload_is_a_bad_signature() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let token = p.token();
    let (head, rest) = token.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let mut claims = jwt_parts(&token).1;
    claims["scope"] = json!("orders:read orders:write");
    claims["sub"] = json!("admin");
    let forged = format!(
        "{head}.{}.{sig}",
        base64url_encode(claims.to_string().as_bytes())
    );
    let before = o.requests();
    assert_invalid_token(&bearer(&gw, "/orders/1", &forged), "bad signature");
    // Signed by another key under the provider's kid.
    let other = TestKey::generate(&p.key.kid);
    assert_invalid_token(
        &bearer(&gw, "/orders/1", &other.sign(&claims)),
        "bad signature",
    );
    assert_eq!(o.requests(), before);
}

/// 200 tokens with random `kid`s (an attacker probing, or trying to make ficus hammer the
/// provider) cost the provider at most a refresh or two: `jwks_min_refresh = "10s"` allows
/// one unknown-kid refresh per 10 s, and the flood takes less than that.
#[test]
fn an_unknown_kid_flood_does_not_become_a_flood_at_the_provider() {
    const FLOOD: usize = 200;
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("jwks_min_refresh", "10s");
        },
        |_| {},
    );
    let attacker = TestKey::generate("attacker");
    let claims = p.claims("orders:read");
    let tokens: Vec<String> = (0..FLOOD)
        .map(|_| {
            sign_jwt(
                &json!({ "alg": "RS256", "kid": random_hex(8) }),
                &claims,
                &attacker,
            )
        })
        .collect();
    let before_fetches = p.idp.jwks_fetches();
    let before_upstream = o.requests();

    let started = Instant::now();
    let answers: Vec<RawResponse> = std::thread::scope(|s| {
        let workers: Vec<_> = tokens
            .chunks(FLOOD / 4)
            .map(|chunk| {
                let gw = &gw;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|t| bearer(gw, "/orders/1", t))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    for r in &answers {
        assert_invalid_token(r, "unknown signing key");
    }
    let fetches = p.idp.jwks_fetches() - before_fetches;
    assert!(
        took < Duration::from_secs(10),
        "the flood took {took:?}: longer than jwks_min_refresh, so the bound below is loose"
    );
    assert!(
        fetches <= 2,
        "{FLOOD} unknown kids in {took:?} made {fetches} JWKS fetches at the provider"
    );
    assert_eq!(o.requests(), before_upstream);
    // The real key still works.
    assert_eq!(bearer(&gw, "/orders/1", &p.token()).status, 200);
}

/// A `kid` is a lookup key, nothing more: paths, URLs, control characters, a non-string
/// and a very long one are unknown keys like any other, and the gateway carries on.
#[test]
fn hostile_kids_are_unknown_keys() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let claims = p.claims("orders:read");
    let attacker = TestKey::generate("attacker");
    let fetches = p.idp.jwks_fetches();
    let long = "k".repeat(4000);
    let kids = [
        json!("../../../../etc/passwd"),
        json!("http://127.0.0.1:1/jwks"),
        json!("corp-2026\u{0}"),
        json!("' OR '1'='1"),
        json!(long),
        json!(""),
    ];
    for kid in &kids {
        let token = sign_jwt(&json!({ "alg": "RS256", "kid": kid }), &claims, &attacker);
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(
            r.status,
            401,
            "kid {:.60}: {}",
            kid.to_string(),
            describe(&r)
        );
        assert_refused_token(&r);
        assert!(
            !r.text().contains("passwd") && !r.text().contains("kkkk"),
            "{}",
            describe(&r)
        );
    }
    // A kid that is not a string is a malformed header, not a lookup.
    for kid in [
        json!(1),
        json!({ "kid": "corp-2026" }),
        json!(["corp-2026"]),
    ] {
        let token = sign_jwt(&json!({ "alg": "RS256", "kid": kid }), &claims, &attacker);
        assert_refused_token(&bearer(&gw, "/orders/1", &token));
    }
    assert!(
        p.idp.jwks_fetches() - fetches <= 2,
        "kids made the gateway fetch keys"
    );
    assert_eq!(bearer(&gw, "/orders/1", &p.token()).status, 200);
}

/// `jku`, `x5u`, `jwk` and `x5c` in a token header are ignored: a token signed by an
/// attacker's key that points at the attacker's keys is refused, and the attacker's server
/// is never contacted.
#[test]
fn jku_x5u_jwk_and_x5c_headers_are_ignored() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let attacker = TestKey::generate("attacker");
    let cert_der = attacker.self_signed_cert_der();
    let evil = Origin::builder("evil")
        .route("/jwks", Reply::json(TestKey::jwks(&[&attacker])))
        .route(
            "/cert.pem",
            Reply::text(pem_encode("CERTIFICATE", &cert_der)),
        )
        .start();
    let jku = format!("http://{}/jwks", evil.addr());
    let x5u = format!("http://{}/cert.pem", evil.addr());
    let x5c = json!([base64_encode(&cert_der)]);
    let kid = p.key.kid.as_str();
    let claims = p.claims("orders:read");
    let before = o.requests();

    let cases: Vec<(Value, &[&str])> = vec![
        // The attacker's kid, and where to find it.
        (
            json!({ "alg": "RS256", "kid": "attacker", "jku": jku }),
            &["unknown signing key"],
        ),
        (
            json!({ "alg": "RS256", "kid": "attacker", "x5u": x5u }),
            &["unknown signing key"],
        ),
        (
            json!({ "alg": "RS256", "kid": "attacker", "jwk": attacker.public_jwk }),
            &["unknown signing key"],
        ),
        (
            json!({ "alg": "RS256", "kid": "attacker", "x5c": x5c }),
            &["unknown signing key"],
        ),
        // The provider's kid, with the attacker's key beside it.
        (
            json!({ "alg": "RS256", "kid": kid, "jku": jku }),
            &["bad signature"],
        ),
        (
            json!({ "alg": "RS256", "kid": kid, "x5u": x5u }),
            &["bad signature"],
        ),
        (
            json!({ "alg": "RS256", "kid": kid, "jwk": attacker.public_jwk }),
            &["bad signature"],
        ),
        (
            json!({ "alg": "RS256", "kid": kid, "x5c": x5c }),
            &["bad signature"],
        ),
        // No kid at all: the embedded key is all there is. With one published key the
        // gateway may try it (bad signature) or want a kid (unknown signing key).
        (
            json!({ "alg": "RS256", "jwk": attacker.public_jwk }),
            &["bad signature", "unknown signing key"],
        ),
        (
            json!({ "alg": "RS256", "jku": jku }),
            &["bad signature", "unknown signing key"],
        ),
    ];
    for (header, descriptions) in &cases {
        let token = sign_jwt(header, &claims, &attacker);
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(r.status, 401, "{header}: {}", describe(&r));
        assert_invalid_token_one_of(&r, descriptions);
    }
    assert_eq!(o.requests(), before);
    assert_eq!(
        evil.requests(),
        0,
        "the gateway fetched the attacker's keys"
    );
    assert_eq!(
        evil.connections(),
        0,
        "the gateway connected to the attacker"
    );
}

// --- Time, issuer, audience, type, lifetime --------------------------------------------

#[test]
fn expired_tokens_are_refused_beyond_the_leeway() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let now = unix_now();
    let expired = p.token_with(|c| {
        c["iat"] = json!(now - 720);
        c["exp"] = json!(now - 120);
    });
    assert_invalid_token(&bearer(&gw, "/orders/1", &expired), "token expired");
    // Within the default leeway of 30 s.
    let just = p.token_with(|c| {
        c["iat"] = json!(now - 600);
        c["exp"] = json!(now - 5);
    });
    assert_eq!(bearer(&gw, "/orders/1", &just).status, 200);
}

#[test]
fn a_token_expired_by_more_than_a_configured_leeway_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("leeway", "0s");
        },
        |_| {},
    );
    let now = unix_now();
    let token = p.token_with(|c| c["exp"] = json!(now - 5));
    assert_invalid_token(&bearer(&gw, "/orders/1", &token), "token expired");
}

#[test]
fn tokens_not_yet_valid_are_refused_beyond_the_leeway() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let now = unix_now();
    let later = p.token_with(|c| c["nbf"] = json!(now + 300));
    assert_invalid_token(&bearer(&gw, "/orders/1", &later), "token not yet valid");
    let soon = p.token_with(|c| c["nbf"] = json!(now + 5));
    assert_eq!(bearer(&gw, "/orders/1", &soon).status, 200);
}

/// `exp` must be a number: a string (even a far-future one) is refused, the check that
/// jsonwebtoken before 10.3 skipped (CVE-2026-25537). What matters here is the refusal; the
/// refusal is "missing or invalid registered claims" like a missing `exp`; any invalid_token
/// challenge passes here. The wording for a missing `exp` is
/// checked by `a_token_without_exp_is_refused`.
#[test]
fn exp_or_nbf_given_as_a_string_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();
    let now = unix_now();
    for exp in [
        json!((now + 600).to_string()),
        json!("9999999999"),
        json!((now - 600).to_string()),
        json!(null),
        json!(true),
        json!([now + 600]),
    ] {
        let token = p.token_with(|c| c["exp"] = exp.clone());
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(r.status, 401, "exp = {exp}: {}", describe(&r));
        assert_refused_token(&r);
    }
    // nbf as a string must not skip the nbf check either.
    let token = p.token_with(|c| c["nbf"] = json!((now + 3600).to_string()));
    assert_refused_token(&bearer(&gw, "/orders/1", &token));
    assert_eq!(o.requests(), before);
}

#[test]
fn a_token_without_exp_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let token = p.token_with(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_invalid_token(
        &bearer(&gw, "/orders/1", &token),
        "missing or invalid registered claims",
    );
}

/// The issuer is compared exactly: another host, a trailing slash, another scheme, or no
/// `iss` at all.
#[test]
fn a_wrong_or_missing_issuer_is_refused() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let issuer = p.idp.issuer();
    for iss in [
        json!("http://127.0.0.1:1"),
        json!(format!("{issuer}/")),
        json!(issuer.replace("http://", "https://")),
        json!(issuer.to_uppercase()),
        json!([issuer.clone()]),
    ] {
        let token = p.token_with(|c| c["iss"] = iss.clone());
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(r.status, 401, "iss = {iss}: {}", describe(&r));
        assert_invalid_token_one_of(&r, &["wrong issuer", "malformed token"]);
    }
    let token = p.token_with(|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    assert_invalid_token(&bearer(&gw, "/orders/1", &token), "wrong issuer");
}

#[test]
fn the_audience_must_be_one_of_the_configured_ones() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set("audience", r#"["urn:api:shop", "urn:api:backoffice"]"#);
        },
        |_| {},
    );
    let with_aud = |aud: Value| p.token_with(|c| c["aud"] = aud);
    for aud in [
        json!("urn:api:other"),
        json!(["urn:api:other", "urn:api:third"]),
        json!("urn:api:shop:opaque"),
        json!("URN:API:SHOP"),
        json!([]),
    ] {
        let r = bearer(&gw, "/orders/1", &with_aud(aud.clone()));
        assert_eq!(r.status, 401, "aud = {aud}: {}", describe(&r));
        assert_invalid_token(&r, "wrong audience");
    }
    let token = p.token_with(|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    assert_invalid_token(&bearer(&gw, "/orders/1", &token), "wrong audience");
    for aud in [
        json!("urn:api:backoffice"),
        json!(["urn:api:other", "urn:api:shop"]),
    ] {
        let r = bearer(&gw, "/orders/1", &with_aud(aud.clone()));
        assert_eq!(r.status, 200, "aud = {aud}: {}", describe(&r));
    }
}

/// `require_typ = "at+jwt"` (RFC 9068) refuses ID tokens and plain JWTs used as access
/// tokens; compared case-insensitively, with or without `application/`.
#[test]
fn require_typ_refuses_other_token_types() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("require_typ", "at+jwt");
        },
        |_| {},
    );
    let claims = p.claims("orders:read");
    let with_typ = |typ: Option<&str>| {
        let mut h = json!({ "alg": "RS256", "kid": p.key.kid });
        if let Some(typ) = typ {
            h["typ"] = json!(typ);
        }
        sign_jwt(&h, &claims, &p.key)
    };
    for typ in [Some("JWT"), Some("id+jwt"), None] {
        let r = bearer(&gw, "/orders/1", &with_typ(typ));
        assert_eq!(r.status, 401, "typ {typ:?}: {}", describe(&r));
        assert_invalid_token(&r, "wrong token type");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let r = bearer(&gw, "/orders/1", &with_typ(Some(typ)));
        assert_eq!(r.status, 200, "typ {typ}: {}", describe(&r));
    }
}

#[test]
fn max_lifetime_refuses_tokens_that_live_too_long() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("max_lifetime", "1h");
        },
        |_| {},
    );
    let now = unix_now();
    let long = p.token_with(|c| {
        c["iat"] = json!(now);
        c["exp"] = json!(now + 2 * 3600);
    });
    assert_invalid_token(&bearer(&gw, "/orders/1", &long), "token lifetime too long");
    let short = p.token_with(|c| {
        c["iat"] = json!(now);
        c["exp"] = json!(now + 1800);
    });
    assert_eq!(bearer(&gw, "/orders/1", &short).status, 200);
}

// --- Malformed and oversized -----------------------------------------------------------

#[test]
fn malformed_tokens_are_refused_before_any_cryptography() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before_upstream = o.requests();
    let before_fetches = p.idp.jwks_fetches();
    let good = p.token();
    let parts: Vec<&str> = good.split('.').collect();
    let json_b64 = |v: &str| base64url_encode(v.as_bytes());
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        parts[0].to_string(),
        "..".to_string(),
        format!("{}..{}", parts[0], parts[2]),
        "!!!.@@@.###".to_string(),
        format!("{}.{}.{}", parts[0], "%%%%", parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", json_b64("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], json_b64("{\"sub\":"), parts[2]),
        format!("{}.{}.{}", json_b64("[]"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], json_b64("\"a string\""), parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "!!!"),
    ];
    for token in &cases {
        let r = bearer(&gw, "/orders/1", token);
        assert_eq!(r.status, 401, "{token}: {}", describe(&r));
        assert_invalid_token(&r, "malformed token");
    }
    assert_eq!(o.requests(), before_upstream);
    assert_eq!(
        p.idp.jwks_fetches(),
        before_fetches,
        "a malformed token made the gateway fetch keys"
    );
}

/// A token padded (in a signed claim) to `len` bytes, give or take 3.
fn token_of_len(p: &Idp, len: usize) -> String {
    let mut pad = 0;
    loop {
        let token = p.token_with(|c| c["pad"] = json!("x".repeat(pad)));
        if token.len() + 4 > len {
            return token;
        }
        pad += (len - token.len()) * 3 / 4;
        pad = pad.max(1);
    }
}

#[test]
fn tokens_over_8_kib_are_refused_before_any_cryptography() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();

    let under = token_of_len(&p, 8000);
    assert!(under.len() <= 8192, "{}", under.len());
    assert_eq!(bearer(&gw, "/orders/1", &under).status, 200);

    let over = token_of_len(&p, 8400);
    assert!(over.len() > 8192, "{}", over.len());
    assert_invalid_token(&bearer(&gw, "/orders/1", &over), "token too large");
    // Garbage that would be malformed is refused for its size first: no parsing at all.
    let garbage = "A".repeat(9000);
    assert_invalid_token(&bearer(&gw, "/orders/1", &garbage), "token too large");
    let big_header = format!("{}.{}.{}", "a".repeat(9000), "b", "c");
    assert_invalid_token(&bearer(&gw, "/orders/1", &big_header), "token too large");
    assert_eq!(o.requests(), before + 1);
}

#[test]
fn max_token_size_is_configurable() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set("max_token_size", 2000);
        },
        |_| {},
    );
    let token = token_of_len(&p, 2500);
    assert_invalid_token(&bearer(&gw, "/orders/1", &token), "token too large");
}

// --- Scopes and claim rules ------------------------------------------------------------

#[test]
fn a_missing_scope_is_403_insufficient_scope_naming_every_required_scope() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(&o, &p.idp, |_| {}, |_| {})
            .route_with("write", "/write/**", "orders", |r| {
                r.set_str("auth", "corp")
                    .set("scopes", r#"["orders:read", "orders:write"]"#);
            })
            .build(),
    );
    wait_for_keys(&gw, "/orders/warm-up", &p.token());
    let before = o.requests();

    // From the real provider: a token with orders:write only.
    let write_only = p
        .idp
        .client_credentials_token("orders:write", "urn:api:shop");
    assert_insufficient_scope(&bearer(&gw, "/orders/1", &write_only), "orders:read");
    let read_only = p
        .idp
        .client_credentials_token("orders:read", "urn:api:shop");
    assert_insufficient_scope(
        &bearer(&gw, "/write/1", &read_only),
        "orders:read orders:write",
    );
    // Scope names are whole words, and only `scope`/`scp` grant them.
    for edit in [
        json!({ "scope": "orders:readonly" }),
        json!({ "scope": "xorders:read" }),
        json!({ "scope": "orders:read:all" }),
        json!({ "scope": "" }),
        json!({ "scope": null, "scopes": "orders:read" }),
        json!({ "scope": null, "roles": ["orders:read"] }),
    ] {
        let token = p.token_with(|c| {
            for (k, v) in edit.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
        });
        let r = bearer(&gw, "/orders/1", &token);
        assert_eq!(r.status, 403, "{edit}: {}", describe(&r));
        assert_insufficient_scope(&r, "orders:read");
    }
    assert_eq!(
        o.requests(),
        before,
        "a token without the scope reached the upstream"
    );

    let both = p
        .idp
        .client_credentials_token("orders:read orders:write", "urn:api:shop");
    assert_eq!(bearer(&gw, "/write/1", &both).status, 200);
    // `scp` as an array grants scopes too.
    let scp = p.token_with(|c| {
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["orders:write", "orders:read"]);
    });
    assert_eq!(bearer(&gw, "/write/1", &scp).status, 200);
}

#[test]
fn claim_rules_on_nested_claims_decide_between_403_and_200() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &p.idp,
            |_| {},
            |r| {
                r.set(
                    "claims",
                    r#"[{ claim = "realm_access.roles", contains = "admin" }, { claim = "tenant", equals = "acme" }, { claim = "tier", one_of = ["gold", "silver"] }]"#,
                );
            },
        )
        .build(),
    );
    let token = |edit: &ClaimsEdit| {
        p.token_with(|c| {
            c["realm_access"] = json!({ "roles": ["user", "admin"] });
            c["tenant"] = json!("acme");
            c["tier"] = json!("silver");
            edit(c);
        })
    };
    assert_eq!(wait_for_keys(&gw, "/orders/1", &token(&|_| {})).status, 200);
    assert_eq!(bearer(&gw, "/orders/1", &token(&|_| {})).status, 200);
    // A string claim "contains" by equality.
    let r = bearer(
        &gw,
        "/orders/1",
        &token(&|c| c["realm_access"]["roles"] = json!("admin")),
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    let r = bearer(&gw, "/orders/1", &token(&|c| c["tier"] = json!("gold")));
    assert_eq!(r.status, 200, "{}", describe(&r));

    let before = o.requests();
    let refused: [(&str, &ClaimsEdit); 8] = [
        ("roles without admin", &|c| {
            c["realm_access"]["roles"] = json!(["user"])
        }),
        ("a role that contains admin", &|c| {
            c["realm_access"]["roles"] = json!(["administrator", "sysadmin"])
        }),
        ("roles as a string that is not admin", &|c| {
            c["realm_access"]["roles"] = json!("user admin")
        }),
        ("no realm_access", &|c| {
            c.as_object_mut().unwrap().remove("realm_access");
        }),
        ("another tenant", &|c| c["tenant"] = json!("evil")),
        ("tenant in another case", &|c| c["tenant"] = json!("ACME")),
        ("tier not in the list", &|c| c["tier"] = json!("bronze")),
        ("no tier", &|c| {
            c.as_object_mut().unwrap().remove("tier");
        }),
    ];
    for (what, edit) in refused {
        let r = bearer(&gw, "/orders/1", &token(edit));
        assert_eq!(r.status, 403, "{what}: {}", describe(&r));
        assert_claim_not_satisfied(&r);
    }
    assert_eq!(o.requests(), before);
}

/// A change to a token's claims.
type ClaimsEdit = dyn Fn(&mut Value);

// --- Identity for the upstream ---------------------------------------------------------

/// Configured claims become headers; every copy the client sent of those headers is
/// removed first, in any case and with `_` for `-`; an absent claim sets no header; arrays
/// go as compact JSON.
#[test]
fn claims_become_headers_and_spoofed_identity_headers_never_reach_the_upstream() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set(
                "claims_to_headers",
                r#"{ sub = "X-User-Id", client_id = "X-Client-Id", "realm_access.roles" = "X-Roles", tenant = "X-Tenant" }"#,
            );
        },
        |_| {},
    );
    let token = p.token_with(|c| {
        c["sub"] = json!("alice");
        c.as_object_mut().unwrap().remove("client_id");
        c["realm_access"] = json!({ "roles": ["user", "admin"] });
        c["tenant"] = json!("acme");
    });
    let auth = format!("Bearer {token}");
    let r = get_with(
        &gw,
        "/orders/1",
        &[
            ("X-User-Id", "root"),
            ("x_user_id", "root"),
            ("X-USER-ID", "root"),
            ("x-user-id", "root2"),
            ("X_Client_Id", "admin-client"),
            ("X-Client-Id", "admin-client"),
            ("x-roles", r#"["superuser"]"#),
            ("X-Tenant", "evil"),
            ("Authorization", &auth),
        ],
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    let values = |name: &str| -> Vec<String> {
        upstream_copies(&o, name)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(values("x-user-id"), ["alice"]);
    assert_eq!(values("x-roles"), [r#"["user","admin"]"#]);
    assert_eq!(values("x-tenant"), ["acme"]);
    assert_eq!(
        values("x-client-id"),
        Vec::<String>::new(),
        "no client_id claim: no header, and the client's copies are gone"
    );
}

#[test]
fn forward_authorization_false_keeps_the_token_from_the_upstream() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set("forward_authorization", false);
        },
        |_| {},
    );
    let r = bearer(&gw, "/orders/1", &p.token());
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_header("authorization"), None);
    assert_eq!(r.origin_header("x-user-id").as_deref(), Some("ficus-test"));
}

#[test]
fn forward_claims_sends_the_verified_payload_as_base64url_json() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("forward_claims", "X-Ficus-Claims");
        },
        |_| {},
    );
    let mut claims = p.claims("orders:read");
    claims["realm_access"] = json!({ "roles": ["admin"] });
    claims["name"] = json!("Zoë <zoe@example.com>");
    let token = p.key.sign(&claims);
    let auth = format!("Bearer {token}");
    let spoof = base64url_encode(json!({ "sub": "root" }).to_string().as_bytes());
    let r = get_with(
        &gw,
        "/orders/1",
        &[
            ("X-Ficus-Claims", &spoof),
            ("x_ficus_claims", &spoof),
            ("Authorization", &auth),
        ],
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    let sent = upstream_copies(&o, "x-ficus-claims");
    assert_eq!(sent.len(), 1, "one header, the gateway's: {sent:?}");
    let value = sent[0].1.trim_end_matches('=');
    let decoded = base64url_decode(value).unwrap_or_else(|| panic!("not base64url: {value}"));
    let payload: Value = serde_json::from_slice(&decoded).expect("JSON");
    assert_eq!(payload, claims);
}

// --- Keys: rotation, provider down, never reached, discovery, TLS ----------------------

/// The provider rotates: first the new key signs while the old one is still published
/// (both kinds of token accepted; the new one after one refresh), then the old key is gone
/// (tokens of the old key refused once the gateway has refreshed).
#[test]
fn key_rotation_accepts_new_keys_after_one_refresh_and_refuses_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKey::generate_many(&["2026-old", "2026-new"]);
    let (old, new) = (&keys[0], &keys[1]);
    let file = |name: &str, keys: &[TestKey]| {
        let path = dir.path().join(name);
        write_private_jwks(&path, keys);
        path
    };
    let mut idp = OidcProvider::start(
        OidcOptions::default().jwks_file(file("old.json", std::slice::from_ref(old))),
    );
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &idp,
            |t| {
                t.set_str("jwks_min_refresh", "1s");
            },
            |_| {},
        )
        .build(),
    );
    let claims = idp.claims("orders:read");
    assert_eq!(
        wait_for_keys(&gw, "/orders/1", &old.sign(&claims)).status,
        200
    );

    // The new key signs; the old one is still published.
    idp.restart_with(
        OidcOptions::default().jwks_file(file("both.json", &[new.clone(), old.clone()])),
    );
    let fetches = idp.jwks_fetches();
    let from_new = idp.client_credentials_token("orders:read", "urn:api:shop");
    assert_eq!(jwt_parts(&from_new).0["kid"], "2026-new");
    let r = poll_until(Duration::from_secs(10), || {
        let r = bearer(&gw, "/orders/1", &from_new);
        (r.status == 200).then_some(r)
    });
    assert!(
        r.is_some(),
        "a token of the new key was never accepted\n{}",
        gw.logs()
    );
    let refreshes = idp.jwks_fetches() - fetches;
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} JWKS fetches to learn one new key"
    );
    let mut claims2 = idp.claims("orders:read");
    claims2["jti"] = json!("old-during-overlap");
    assert_eq!(bearer(&gw, "/orders/1", &old.sign(&claims2)).status, 200);

    // The old key is gone. A token of it the gateway has never seen is refused as soon as
    // the gateway has refreshed; an unknown kid asks for a refresh (at most once a second
    // here), so the test keeps presenting one.
    idp.restart_with(OidcOptions::default().jwks_file(file("new.json", std::slice::from_ref(new))));
    let stranger = TestKey::generate("stranger");
    let refused = poll_until(Duration::from_secs(10), || {
        let _ = bearer(
            &gw,
            "/orders/1",
            &sign_jwt(
                &json!({ "alg": "RS256", "kid": random_hex(4) }),
                &claims,
                &stranger,
            ),
        );
        let mut c = idp.claims("orders:read");
        c["jti"] = json!(random_hex(8));
        let r = bearer(&gw, "/orders/1", &old.sign(&c));
        (r.status != 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("the removed key is still accepted\n{}", gw.logs()));
    assert_invalid_token(&refused, "unknown signing key");
    assert_eq!(bearer(&gw, "/orders/1", &new.sign(&claims2)).status, 200);
}

/// Stricter than "a token of the old key is refused": a token verified while its key was
/// published must not outlive the key's removal in the verified-token cache (keys are
/// withdrawn because they leaked). The spec says cache entries never outlive `exp`; a
/// security reviewer would demand they do not outlive the key either.
#[test]
fn a_cached_token_is_refused_once_its_key_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKey::generate_many(&["leaked", "fresh"]);
    let old_file = dir.path().join("old.json");
    let new_file = dir.path().join("new.json");
    write_private_jwks(&old_file, &keys[..1]);
    write_private_jwks(&new_file, &keys[1..]);
    let mut idp = OidcProvider::start(OidcOptions::default().jwks_file(&old_file));
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &idp,
            |t| {
                t.set_str("jwks_min_refresh", "1s");
            },
            |_| {},
        )
        .build(),
    );
    let leaked = keys[0].sign(&idp.claims("orders:read"));
    assert_eq!(wait_for_keys(&gw, "/orders/1", &leaked).status, 200);
    assert_eq!(bearer(&gw, "/orders/1", &leaked).status, 200, "cached now");

    idp.restart_with(OidcOptions::default().jwks_file(&new_file));
    let fresh = keys[1].sign(&idp.claims("orders:read"));
    poll_until(Duration::from_secs(10), || {
        (bearer(&gw, "/orders/1", &fresh).status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("the new key was never learned\n{}", gw.logs()));
    // The gateway's keys are now the new JWKS, without the leaked key.
    let r = bearer(&gw, "/orders/1", &leaked);
    assert_eq!(
        r.status,
        401,
        "a token verified before its key was withdrawn is still accepted from the cache: {}",
        describe(&r)
    );
    assert_invalid_token(&r, "unknown signing key");
}

#[test]
fn with_the_provider_down_cached_keys_keep_serving() {
    let mut p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.set_str("jwks_min_refresh", "1s");
        },
        |_| {},
    );
    p.idp.stop();

    // A token the gateway has not seen before: verified with the cached key.
    assert_eq!(bearer(&gw, "/orders/1", &p.token()).status, 200);
    // Unknown kids make the gateway try to refresh, and fail; keys stay, and an unknown
    // kid is still "unknown signing key" (keys were fetched once: not 503).
    let stranger = TestKey::generate("stranger");
    let claims = p.claims("orders:read");
    let errors = || {
        metric(
            &gw,
            "ficus_auth_jwks_fetches_total",
            &[("policy", "corp"), ("result", "error")],
        )
    };
    poll_until(Duration::from_secs(15), || {
        let token = sign_jwt(
            &json!({ "alg": "RS256", "kid": random_hex(4) }),
            &claims,
            &stranger,
        );
        assert_invalid_token(&bearer(&gw, "/orders/1", &token), "unknown signing key");
        (errors() >= 1.0).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no failed JWKS fetch counted while the provider is down\n{}",
            gw.logs()
        )
    });
    assert_eq!(bearer(&gw, "/orders/1", &p.token()).status, 200);
}

/// No key ever fetched: 503 with Retry-After, never 401 and never a pass; and the gateway
/// keeps trying, so it serves once the provider is up.
#[test]
fn a_provider_never_reached_is_503_until_it_comes_up() {
    let mut p = Idp::start();
    p.idp.stop();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &p.idp,
            |t| {
                t.set_str("jwks_min_refresh", "1s").set_str("timeout", "1s");
            },
            |_| {},
        )
        .build(),
    );
    let token = p.token();
    let r = bearer(&gw, "/orders/1", &token);
    assert_unavailable(&r);
    // Whatever the token: the gateway cannot tell, so it does not say 401 either.
    let stranger = TestKey::generate("stranger").sign(&p.claims("orders:read"));
    assert_unavailable(&bearer(&gw, "/orders/1", &stranger));
    assert_eq!(o.requests(), 0);
    assert!(
        wait_metric(1.0, || auth_outcomes(&gw, "corp", "provider_unavailable")) >= 1.0,
        "{}",
        gw.metrics()
    );

    p.idp.start_again();
    let r = wait_for_keys(&gw, "/orders/1", &token);
    assert_eq!(r.status, 200, "{}", describe(&r));
}

/// A policy without `jwks` finds it by OIDC discovery from `issuer`.
#[test]
fn oidc_discovery_finds_the_jwks_from_the_issuer() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(
        &o,
        &p,
        |t| {
            t.remove("jwks");
        },
        |_| {},
    );
    assert!(p.idp.discovery_fetches() >= 1);
    assert!(p.idp.jwks_fetches() >= 1);
    let token = p
        .idp
        .client_credentials_token("orders:read", "urn:api:shop");
    assert_eq!(bearer(&gw, "/orders/1", &token).status, 200);
}

/// Discovery from an issuer that never answers: no keys, so 503 with Retry-After.
#[test]
fn oidc_discovery_from_an_issuer_never_reached_is_503() {
    let issuer = format!("http://{}", closed_addr());
    let key = TestKey::generate("k");
    let o = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.corp", |t| {
            t.set_str("issuer", &issuer)
                .set_str("audience", AUD)
                .set_str("timeout", "1s");
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "corp");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let token =
        key.sign(&json!({ "iss": issuer, "aud": AUD, "sub": "x", "iat": now, "exp": now + 300 }));
    assert_unavailable(&bearer(&gw, "/orders/1", &token));
    assert_eq!(o.requests(), 0);
}

/// OpenID Connect Discovery 1.0 §4.3: the `issuer` in the discovery document must be the
/// configured issuer, else the document (and the `jwks_uri` it names) is not trusted. The
/// spec is silent; a security reviewer would demand it, since a document that names
/// another issuer is not this provider's. Keys never trusted means 503.
#[test]
fn a_discovery_document_for_another_issuer_is_not_trusted() {
    let attacker = TestKey::generate("attacker");
    let idp = Origin::builder("idp")
        .route("/jwks", Reply::json(TestKey::jwks(&[&attacker])))
        .start();
    let issuer = format!("http://{}", idp.addr());
    idp.set_route(
        "/.well-known/openid-configuration",
        Reply::json(json!({
            "issuer": "https://someone-else.example",
            "jwks_uri": format!("{issuer}/jwks"),
        })),
    );
    let o = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.corp", |t| {
            t.set_str("issuer", &issuer)
                .set_str("audience", AUD)
                .set_str("timeout", "1s");
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "corp");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let token = attacker
        .sign(&json!({ "iss": issuer, "aud": AUD, "sub": "x", "iat": now, "exp": now + 300 }));
    let r = bearer(&gw, "/orders/1", &token);
    assert_ne!(
        r.status,
        200,
        "keys from a mismatched discovery document: {}",
        describe(&r)
    );
    assert_unavailable(&r);
    assert_eq!(o.requests(), 0);
    let asked: Vec<String> = idp.received().into_iter().map(|r| r.path).collect();
    assert!(
        asked
            .iter()
            .any(|p| p == "/.well-known/openid-configuration"),
        "the gateway never read the document: {asked:?}"
    );
    assert!(
        !asked.iter().any(|p| p == "/jwks"),
        "the gateway fetched the jwks_uri of a mismatched document: {asked:?}"
    );
}

/// The JWKS over HTTPS: trusted with `ca_file`, refused without it (TLS to the provider is
/// verified by default, so keys are never fetched: 503).
#[test]
fn ca_file_trusts_the_provider_certificate_and_without_it_tls_is_refused() {
    let p = Idp::start();
    let ca = TestCa::new();
    let ca_path = write_file(p.dir.path(), "idp-ca.pem", &ca.cert_pem);
    let front = TlsFront::start(&ca, ([127, 0, 0, 1], p.idp.port()).into());
    let o = Origin::start("orders");
    let cfg = config(
        &o,
        &p.idp,
        |t| {
            t.set_str("jwks", &front.url("/jwks"))
                .set("ca_file", toml_path(&ca_path));
        },
        |_| {},
    )
    .table("auth.untrusted", |t| {
        corp(t, &p.idp);
        t.set_str("jwks", &front.url("/jwks"))
            .set_str("timeout", "1s");
    })
    .route_with("untrusted", "/untrusted/**", "orders", |r| {
        r.set_str("auth", "untrusted");
    })
    .build();
    let gw = Gateway::start(&cfg);
    let token = p.token();
    assert_eq!(wait_for_keys(&gw, "/orders/1", &token).status, 200);
    assert!(front.handshakes() >= 1);
    assert_unavailable(&bearer(&gw, "/untrusted/1", &token));
    assert_eq!(o.requests(), 1);
}

// --- Where the token comes from --------------------------------------------------------

#[test]
fn a_token_in_a_named_cookie() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &p.idp,
            |t| {
                t.set("token", r#"{ cookie = "at" }"#);
            },
            |_| {},
        )
        .build(),
    );
    let token = p.token();
    let cookie = format!("theme=dark; at={token}; lang=en");
    let r = poll_until(KEYS_TIMEOUT, || {
        let r = get_with(&gw, "/orders/1", &[("Cookie", &cookie)]);
        (r.status != 503).then_some(r)
    })
    .expect("keys never fetched");
    assert_eq!(r.status, 200, "{}", describe(&r));
    // Only the configured source counts.
    assert_no_token(&bearer(&gw, "/orders/1", &token));
    assert_no_token(&get_with(
        &gw,
        "/orders/1",
        &[("Cookie", &format!("other={token}"))],
    ));
}

#[test]
fn a_token_in_a_custom_header() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &p.idp,
            |t| {
                t.set("token", r#"{ header = "X-Token" }"#);
            },
            |_| {},
        )
        .build(),
    );
    let token = p.token();
    let r = poll_until(KEYS_TIMEOUT, || {
        let r = get_with(&gw, "/orders/1", &[("x-token", &token)]);
        (r.status != 503).then_some(r)
    })
    .expect("keys never fetched");
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_no_token(&bearer(&gw, "/orders/1", &token));
}

/// The query string carries a token only where a policy says so; and even then the token
/// never reaches the access log.
#[test]
fn a_token_in_the_query_only_when_configured() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let cfg = config(&o, &p.idp, |_| {}, |_| {})
        .gateway(|g| {
            g.set_str("access_log", "json");
        })
        .table("auth.query", |t| {
            corp(t, &p.idp);
            t.set("token", r#"{ query = "access_token" }"#);
        })
        .route_with("query", "/query/**", "orders", |r| {
            r.set_str("auth", "query");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let token = p.token();
    wait_for_keys(&gw, "/orders/1", &token);

    let with_query = format!("/query/1?access_token={token}&page=2");
    let r = get_with(&gw, &with_query, &[("X-Request-Id", "query-token")]);
    assert_eq!(r.status, 200, "{}", describe(&r));
    // Bearer is not a source for that policy; the query is not one for corp.
    assert_no_token(&bearer(&gw, "/query/1", &token));
    assert_no_token(&get_with(
        &gw,
        &format!("/orders/1?access_token={token}"),
        &[],
    ));
    let line = access_line(&gw, "query-token");
    assert_eq!(line["status"], 200);
    assert_no_token_in(&gw.logs(), &token, "the gateway's logs");
}

#[test]
fn a_cors_preflight_is_never_blocked_by_auth() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = gateway(&o, &p, |_| {}, |_| {});
    let before = o.requests();
    let r = raw_request(
        gw.listen,
        b"OPTIONS /orders/1 HTTP/1.1\r\nHost: shop.example\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n",
    );
    assert!(
        r.status != 401 && r.status != 403,
        "preflight blocked: {}",
        describe(&r)
    );
    assert_eq!(r.status, 200, "the service answers it: {}", describe(&r));
    assert_eq!(o.requests(), before + 1);
    assert_eq!(o.last().unwrap().method, "OPTIONS");
    // A plain OPTIONS is a request like any other.
    let r = raw_request(
        gw.listen,
        b"OPTIONS /orders/1 HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    );
    assert_no_token(&r);
}

// --- Several policies ------------------------------------------------------------------

/// `auth = ["corp", "partners"]`: any one may accept; when none does, the first policy's
/// refusal; 503 if one could not decide; 403 only after an accept. Headers named by either
/// policy are stripped from the client's request.
#[test]
fn any_of_several_policies_may_accept() {
    let p = Idp::start();
    let partner = Idp::start_with_kid("partner-2026");
    let o = Origin::start("orders");
    let down = closed_addr();
    let cfg = ConfigBuilder::new()
        .table("auth.corp", |t| corp(t, &p.idp))
        .table("auth.partners", |t| {
            corp(t, &partner.idp);
            t.set("claims_to_headers", r#"{ sub = "X-Partner" }"#);
        })
        .table("auth.down", |t| {
            corp(t, &partner.idp);
            t.set_str("jwks", &format!("http://{down}/jwks"))
                .set_str("timeout", "1s");
        })
        .service("orders", &[o.addr()])
        .route_with("both", "/both/**", "orders", |r| {
            r.set("auth", r#"["corp", "partners"]"#)
                .set("scopes", r#"["orders:read"]"#);
        })
        .route_with("flaky", "/flaky/**", "orders", |r| {
            r.set("auth", r#"["corp", "down"]"#);
        })
        // corp's issuer with the partner's keys and its own audience: a corp-signed token
        // for that audience is "wrong audience" to corp and "unknown signing key" to it.
        .table("auth.shadow", |t| {
            corp(t, &partner.idp);
            t.set_str("issuer", &p.idp.issuer())
                .set_str("audience", "urn:api:partner");
        })
        .route_with("corp-first", "/corp-first/**", "orders", |r| {
            r.set("auth", r#"["corp", "shadow"]"#);
        })
        .route_with("shadow-first", "/shadow-first/**", "orders", |r| {
            r.set("auth", r#"["shadow", "corp"]"#);
        })
        .build();
    let gw = Gateway::start(&cfg);
    wait_for_keys(&gw, "/both/1", &p.token());
    wait_for_keys(&gw, "/both/1", &partner.token());
    let shadowed = p.token_with(|c| c["aud"] = json!("urn:api:partner"));
    wait_for_keys(&gw, "/shadow-first/1", &shadowed);

    let r = bearer(&gw, "/both/1", &p.token());
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_header("x-user-id").as_deref(), Some("ficus-test"));
    let spoofed = format!("Bearer {}", p.token());
    let r = get_with(
        &gw,
        "/both/1",
        &[
            ("X-Partner", "root"),
            ("x_partner", "root"),
            ("Authorization", &spoofed),
        ],
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert!(
        upstream_copies(&o, "x-partner").is_empty(),
        "a header of the other policy came from the client: {:?}",
        upstream_headers(&o)
    );
    let r = bearer(&gw, "/both/1", &partner.token());
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_header("x-partner").as_deref(), Some("ficus-test"));
    assert_eq!(r.origin_header("x-user-id"), None);

    // Refused by every policy: the first policy's answer.
    assert_invalid_token(&bearer(&gw, "/corp-first/1", &shadowed), "wrong audience");
    assert_invalid_token(
        &bearer(&gw, "/shadow-first/1", &shadowed),
        "unknown signing key",
    );
    // A token of another issuer: the spec says the first policy's refusal (corp: wrong
    // issuer, or unknown signing key if it looks at the kid first). ficus answers with the
    // reason of the policy the token was meant for when the first one's is only "wrong
    // issuer", which tells the client more and leaks nothing. Any of the three passes.
    let expired_partner = partner.token_with(|c| c["exp"] = json!(unix_now() - 3600));
    assert_invalid_token_one_of(
        &bearer(&gw, "/both/1", &expired_partner),
        &["wrong issuer", "unknown signing key", "token expired"],
    );
    // Accepted, then the route's scopes: 403.
    let no_scope = partner.token_with(|c| c["scope"] = json!("orders:write"));
    assert_insufficient_scope(&bearer(&gw, "/both/1", &no_scope), "orders:read");

    // One policy cannot decide: an accept elsewhere still counts, else 503.
    assert_eq!(bearer(&gw, "/flaky/1", &p.token()).status, 200);
    assert_unavailable(&bearer(&gw, "/flaky/1", &partner.token()));
}

// --- Local keys ------------------------------------------------------------------------

#[test]
fn a_local_hmac_secret_file_verifies_hs256_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_hex(32);
    let secret_path = write_secret(dir.path(), "hmac.key", &secret);
    let o = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.local", |t| {
            t.set_str("issuer", "https://issuer.local")
                .set("secret_file", toml_path(&secret_path))
                .set("algorithms", r#"["HS256"]"#)
                .set_str("audience", AUD)
                .set("claims_to_headers", r#"{ sub = "X-User-Id" }"#);
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "local");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let claims = json!({
        "iss": "https://issuer.local", "aud": AUD, "sub": "svc-7",
        "iat": now, "exp": now + 300,
    });
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let r = bearer(
        &gw,
        "/orders/1",
        &hs256_jwt(&header, &claims, secret.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.origin_header("x-user-id").as_deref(), Some("svc-7"));
    assert_invalid_token(
        &bearer(
            &gw,
            "/orders/1",
            &hs256_jwt(&header, &claims, b"guessed secret"),
        ),
        "bad signature",
    );
    let rs = TestKey::generate("k").sign(&claims);
    assert_invalid_token(&bearer(&gw, "/orders/1", &rs), "algorithm not allowed");
    let none = unsigned_jwt(&json!({ "alg": "none" }), &claims);
    assert_invalid_token_one_of(
        &bearer(&gw, "/orders/1", &none),
        &["algorithm not allowed", "malformed token"],
    );
}

/// A local RSA public key: its tokens verify, and the classic confusion (HS256 keyed with
/// the very PEM file the gateway reads) is refused.
#[test]
fn a_local_public_key_file_verifies_rs256_and_refuses_the_pem_as_an_hmac_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate("local");
    let pem_path = write_file(dir.path(), "key.pem", &key.public_pem);
    let o = Origin::start("orders");
    let cfg = ConfigBuilder::new()
        .table("auth.local", |t| {
            t.set_str("issuer", "https://issuer.local")
                .set("public_key_file", toml_path(&pem_path))
                .set_str("audience", AUD);
        })
        .service("orders", &[o.addr()])
        .route_with("orders", "/orders/**", "orders", |r| {
            r.set_str("auth", "local");
        })
        .build();
    let gw = Gateway::start(&cfg);
    let now = unix_now();
    let claims = json!({
        "iss": "https://issuer.local", "aud": AUD, "sub": "svc-7",
        "iat": now, "exp": now + 300,
    });
    let r = bearer(&gw, "/orders/1", &key.sign(&claims));
    assert_eq!(r.status, 200, "{}", describe(&r));
    for secret in [key.public_pem.as_str(), key.public_pem.trim_end()] {
        let token = hs256_jwt(&json!({ "alg": "HS256" }), &claims, secret.as_bytes());
        assert_invalid_token(&bearer(&gw, "/orders/1", &token), "algorithm not allowed");
    }
    let other = TestKey::generate("other").sign(&claims);
    assert_invalid_token(&bearer(&gw, "/orders/1", &other), "bad signature");
}

// --- Logs and metrics ------------------------------------------------------------------

#[test]
fn the_access_log_has_subject_and_client_id_and_never_the_token() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(&o, &p.idp, |_| {}, |_| {})
            .gateway(|g| {
                g.set_str("access_log", "json");
            })
            .build(),
    );
    wait_for_keys(&gw, "/orders/warm-up", &p.token());
    let good = p
        .idp
        .client_credentials_token("orders:read", "urn:api:shop");
    let auth = format!("Bearer {good}");
    let r = get_with(
        &gw,
        "/orders/1",
        &[("Authorization", &auth), ("X-Request-Id", "log-ok")],
    );
    assert_eq!(r.status, 200);
    let bad = TestKey::generate(&p.key.kid).sign(&p.claims("orders:read"));
    let auth_bad = format!("Bearer {bad}");
    let r = get_with(
        &gw,
        "/orders/1",
        &[("Authorization", &auth_bad), ("X-Request-Id", "log-bad")],
    );
    assert_eq!(r.status, 401);

    let ok = access_line(&gw, "log-ok");
    assert_eq!(ok["subject"], "ficus-test", "{ok}");
    assert_eq!(ok["client_id"], "ficus-test", "{ok}");
    let refused = access_line(&gw, "log-bad");
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(
        refused["subject"].as_str().unwrap_or_default().is_empty(),
        "an unverified token names nobody: {refused}"
    );
    let logs = gw.logs();
    assert_no_token_in(&logs, &good, "the gateway's logs");
    assert_no_token_in(&logs, &bad, "the gateway's logs");
}

#[test]
fn metrics_count_outcomes_per_policy_jwks_fetches_and_the_cache() {
    let p = Idp::start();
    let o = Origin::start("orders");
    let gw = Gateway::start(
        &config(
            &o,
            &p.idp,
            |_| {},
            |r| {
                r.set("claims", r#"[{ claim = "tenant", equals = "acme" }]"#);
            },
        )
        .build(),
    );
    let with_tenant = |edit: &dyn Fn(&mut Value)| {
        p.token_with(|c| {
            c["tenant"] = json!("acme");
            edit(c);
        })
    };
    let good = with_tenant(&|_| {});
    wait_for_keys(&gw, "/orders/warm-up", &good);
    assert!(
        wait_metric(1.0, || metric(
            &gw,
            "ficus_auth_jwks_fetches_total",
            &[("policy", "corp"), ("result", "ok")]
        )) >= 1.0,
        "{}",
        gw.metrics()
    );

    let now = unix_now();
    let attacker = TestKey::generate("attacker");
    let claims = p.claims("orders:read");
    let cases: Vec<(&str, String)> = vec![
        ("accepted", with_tenant(&|_| {})),
        ("malformed", "a.b".to_string()),
        ("too_large", "A".repeat(9000)),
        ("expired", with_tenant(&|c| c["exp"] = json!(now - 3600))),
        (
            "not_yet_valid",
            with_tenant(&|c| c["nbf"] = json!(now + 3600)),
        ),
        ("bad_signature", TestKey::generate(&p.key.kid).sign(&claims)),
        ("unknown_key", attacker.sign(&claims)),
        (
            "wrong_issuer",
            with_tenant(&|c| c["iss"] = json!("http://elsewhere")),
        ),
        (
            "wrong_audience",
            with_tenant(&|c| c["aud"] = json!("urn:api:other")),
        ),
        (
            "algorithm",
            hs256_jwt(
                &json!({ "alg": "HS256" }),
                &claims,
                p.idp.public_key_pem().as_bytes(),
            ),
        ),
        (
            "insufficient_scope",
            with_tenant(&|c| c["scope"] = json!("orders:write")),
        ),
        (
            "claim_mismatch",
            with_tenant(&|c| c["tenant"] = json!("evil")),
        ),
    ];
    for (outcome, token) in &cases {
        let before = auth_outcomes(&gw, "corp", outcome);
        let _ = bearer(&gw, "/orders/1", token);
        let after = wait_metric(before + 1.0, || auth_outcomes(&gw, "corp", outcome));
        assert_eq!(after, before + 1.0, "outcome {outcome}\n{}", gw.metrics());
    }
    let before = auth_outcomes(&gw, "corp", "no_token");
    let _ = get_with(&gw, "/orders/1", &[]);
    assert_eq!(
        wait_metric(before + 1.0, || auth_outcomes(&gw, "corp", "no_token")),
        before + 1.0
    );

    // The verified-token cache: a new token is a miss, the same one again a hit.
    let cache = |result: &str| {
        metric(
            &gw,
            "ficus_auth_cache_total",
            &[("policy", "corp"), ("result", result)],
        )
    };
    let fresh = with_tenant(&|c| c["jti"] = json!("cache-probe"));
    let (hits, misses) = (cache("hit"), cache("miss"));
    assert_eq!(bearer(&gw, "/orders/1", &fresh).status, 200);
    assert_eq!(wait_metric(misses + 1.0, || cache("miss")), misses + 1.0);
    assert_eq!(cache("hit"), hits);
    assert_eq!(bearer(&gw, "/orders/1", &fresh).status, 200);
    assert_eq!(wait_metric(hits + 1.0, || cache("hit")), hits + 1.0);
}

// --- ficus check ------------------------------------------------------------------------

/// A config with every JWT and introspection key of the spec, which `ficus check` accepts;
/// each error case below changes one thing in it.
struct CheckDir {
    dir: tempfile::TempDir,
}

impl CheckDir {
    fn new() -> CheckDir {
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path(), "hmac.key", random_hex(32));
        write_file(dir.path(), "key.pem", TestKey::generate("k").public_pem);
        write_file(dir.path(), "idp-ca.pem", TestCa::new().cert_pem);
        write_secret(dir.path(), "secret.txt", "s3cret");
        CheckDir { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn config(&self) -> String {
        format!(
            r#"[gateway]
listen = ["127.0.0.1:18080"]
admin = "127.0.0.1:19901"

[auth.corp]
type = "jwt"
issuer = "https://idp.example.com/realms/shop"
jwks = "https://idp.example.com/realms/shop/protocol/openid-connect/certs"
audience = ["urn:api:shop", "urn:api:backoffice"]
algorithms = ["RS256"]
require_typ = "at+jwt"
leeway = "30s"
max_lifetime = "1h"
jwks_min_refresh = "10s"
jwks_refresh = {{ min = "1m", max = "24h" }}
ca_file = "{ca}"
timeout = "5s"
token = {{ header = "X-Token" }}
max_token_size = 8192
claims_to_headers = {{ sub = "X-User-Id", client_id = "X-Client-Id", "realm_access.roles" = "X-Roles" }}
forward_authorization = true
forward_claims = "X-Ficus-Claims"
cache_size = 10000

[auth.local]
issuer = "https://issuer.local"
audience = "urn:api:shop"
secret_file = "{hmac}"
algorithms = ["HS256"]

[auth.pem]
audience = "urn:api:shop"
public_key_file = "{pem}"
token = {{ cookie = "at" }}

[auth.partners]
type = "introspection"
introspection_url = "https://idp.example.com/oauth2/introspect"
client_id = "ficus-test"
client_secret_file = "{secret}"
cache_ttl = "60s"
timeout = "1s"
claims_to_headers = {{ sub = "X-User-Id" }}

[services.orders]
instances = ["127.0.0.1:8082"]

[[routes]]
name = "orders"
match = {{ path = "/orders/**" }}
service = "orders"
auth = "corp"
scopes = ["orders:read"]
claims = [
  {{ claim = "realm_access.roles", contains = "admin" }},
  {{ claim = "tenant", equals = "acme" }},
  {{ claim = "tier", one_of = ["gold", "silver"] }},
]

[[routes]]
name = "local"
match = {{ path = "/local/**" }}
service = "orders"
auth = ["local", "pem", "partners"]
"#,
            ca = self.path("idp-ca.pem"),
            hmac = self.path("hmac.key"),
            pem = self.path("key.pem"),
            secret = self.path("secret.txt"),
        )
    }

    /// `ficus check` on `text`: (exit code, stdout and stderr, config path).
    fn check(&self, text: &str) -> (i32, String, String) {
        let path = self.dir.path().join("routes.toml");
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = ficus(&["check", path.to_str().unwrap()]);
        (code, format!("{out}\n{err}"), path.display().to_string())
    }
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in the config"))
        + 1
}

#[test]
fn check_accepts_the_spec_auth_config() {
    let d = CheckDir::new();
    let (code, out, _) = d.check(&d.config());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn check_names_an_unknown_auth_policy_with_a_did_you_mean() {
    let d = CheckDir::new();
    let text = d.config().replace(r#"auth = "corp""#, r#"auth = "corpp""#);
    let (code, out, path) = d.check(&text);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("corpp"), "{out}");
    assert!(out.contains("did you mean `corp`?"), "{out}");
    let line = line_of(&text, r#"auth = "corpp""#);
    assert!(
        out.contains(&format!("{path}:{line}:")),
        "no location {path}:{line}:\n{out}"
    );

    let text = d.config().replace(
        r#"auth = ["local", "pem", "partners"]"#,
        r#"auth = ["local", "partner"]"#,
    );
    let (code, out, _) = d.check(&text);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("did you mean `partners`?"), "{out}");
}

/// Each of these is an error (exit 2) that names what is wrong.
#[test]
fn check_refuses_inline_secrets_missing_files_mismatched_algorithms_and_scopes_without_auth() {
    let d = CheckDir::new();
    let base = d.config();
    let hmac = d.path("hmac.key");
    let pem = d.path("key.pem");
    let secret = d.path("secret.txt");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "an inline HMAC secret",
            base.replace(
                &format!(r#"secret_file = "{hmac}""#),
                r#"secret = "hunter2-hunter2-hunter2-hunter2""#,
            ),
            vec!["secret_"],
        ),
        (
            "an inline introspection secret",
            base.replace(
                &format!(r#"client_secret_file = "{secret}""#),
                r#"client_secret = "s3cret""#,
            ),
            vec!["client_secret_"],
        ),
        (
            "a missing secret file",
            base.replace(&hmac, "/nonexistent/hmac.key"),
            vec!["/nonexistent/hmac.key"],
        ),
        (
            "a missing public key file",
            base.replace(&pem, "/nonexistent/key.pem"),
            vec!["/nonexistent/key.pem"],
        ),
        (
            "a missing client secret file",
            base.replace(&secret, "/nonexistent/secret.txt"),
            vec!["/nonexistent/secret.txt"],
        ),
        (
            "HS256 with an RSA public key",
            base.replace(
                &format!("public_key_file = \"{pem}\"\n"),
                &format!("public_key_file = \"{pem}\"\nalgorithms = [\"HS256\"]\n"),
            ),
            vec!["HS256"],
        ),
        (
            "RS256 with an HMAC secret",
            base.replace(r#"algorithms = ["HS256"]"#, r#"algorithms = ["RS256"]"#),
            vec!["RS256"],
        ),
        (
            "alg none allowed",
            base.replace(r#"algorithms = ["RS256"]"#, r#"algorithms = ["RS256", "none"]"#),
            vec!["none"],
        ),
        (
            "scopes on a route without auth",
            base.replace(
                "auth = [\"local\", \"pem\", \"partners\"]\n",
                "auth = [\"local\", \"pem\", \"partners\"]\n\n[[routes]]\nname = \"open\"\nmatch = { path = \"/open/**\" }\nservice = \"orders\"\nscopes = [\"orders:read\"]\n",
            ),
            vec!["scopes", "auth"],
        ),
        (
            "claim rules on a route without auth",
            base.replace(
                "auth = [\"local\", \"pem\", \"partners\"]\n",
                "auth = [\"local\", \"pem\", \"partners\"]\n\n[[routes]]\nname = \"open\"\nmatch = { path = \"/open/**\" }\nservice = \"orders\"\nclaims = [{ claim = \"tenant\", equals = \"acme\" }]\n",
            ),
            vec!["claims", "auth"],
        ),
        (
            "an unknown policy type",
            base.replace(r#"type = "jwt""#, r#"type = "jwtt""#),
            vec!["jwtt"],
        ),
        (
            "a JWKS policy without an issuer",
            base.replace("issuer = \"https://idp.example.com/realms/shop\"\n", ""),
            vec!["issuer"],
        ),
        (
            "an introspection policy without its URL",
            base.replace(
                "introspection_url = \"https://idp.example.com/oauth2/introspect\"\n",
                "",
            ),
            vec!["introspection_url"],
        ),
    ];
    for (what, text, needles) in cases {
        assert_ne!(text, base, "{what}: the case changed nothing");
        let (code, out, _) = d.check(&text);
        assert_eq!(code, 2, "{what}: exit {code}\n{out}");
        for n in needles {
            assert!(
                out.contains(n),
                "{what}: the error does not say {n:?}\n{out}"
            );
        }
    }
}

/// Not errors, but worth a warning (exit 1): a secret file every user can read, and a
/// policy without `audience` (tokens the issuer made for any other API would pass). The
/// spec is silent on both; docs/auth.md promises them.
#[test]
fn check_warns_about_a_readable_secret_and_a_missing_audience() {
    use std::os::unix::fs::PermissionsExt;
    let d = CheckDir::new();
    let hmac = d.path("hmac.key");
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, _) = d.check(&d.config());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&hmac) && out.contains("chmod 600"), "{out}");

    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = d.config().replace(
        "audience = [\"urn:api:shop\", \"urn:api:backoffice\"]\n",
        "",
    );
    let (code, out, _) = d.check(&text);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("auth.corp") && out.contains("audience"),
        "{out}"
    );
}
