//! The OpenID provider fixture (tests/common/oidc.rs, tests/oidc/provider.js) against the
//! real oidc-provider: discovery, JWKS, client-credentials JWT access tokens and RFC 7662
//! introspection are what the authentication tests will rely on, so a failure there points
//! at the fixture and not at the gateway.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `kid`s of the keys at `jwks_uri`.
fn jwks_kids(idp: &OidcProvider) -> Vec<String> {
    let jwks = idp.get_json(&idp.jwks_uri());
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn discovery_names_the_issuer_and_the_endpoints() {
    let idp = OidcProvider::start(OidcOptions::default());
    assert!(idp.issuer().starts_with("http://127.0.0.1:"));
    let d = idp.get_json(&idp.discovery_url());
    assert_eq!(d["issuer"], idp.issuer());
    assert_eq!(d["jwks_uri"], idp.jwks_uri());
    assert_eq!(d["token_endpoint"], idp.token_endpoint());
    assert_eq!(d["introspection_endpoint"], idp.introspection_endpoint());
    let grants = d["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&Value::from("client_credentials")), "{d}");
    let scopes = d["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&Value::from("orders:read")), "{d}");
    assert!(scopes.contains(&Value::from("orders:write")), "{d}");
}

#[test]
fn jwks_publishes_one_public_rs256_key_with_a_kid() {
    let idp = OidcProvider::start(OidcOptions::default());
    let jwks = idp.get_json(&idp.jwks_uri());
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert!(!key["kid"].as_str().unwrap().is_empty(), "{key}");
    assert!(key["n"].is_string() && key["e"].is_string(), "{key}");
    // Public parts only.
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            key.get(private).is_none(),
            "private {private} published: {key}"
        );
    }
}

#[test]
fn client_credentials_token_is_an_rs256_jwt_for_the_resource() {
    let idp = OidcProvider::start(OidcOptions::default());
    let token = idp.client_credentials_token("orders:read", "urn:api:shop");
    let (header, claims) = jwt_parts(&token);

    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(
        jwks_kids(&idp),
        [kid],
        "the signing key is the one published"
    );

    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], "urn:api:shop");
    assert_eq!(claims["client_id"], "ficus-test");
    assert_eq!(claims["sub"], "ficus-test");
    let scope = claims["scope"].as_str().unwrap();
    assert!(scope.split(' ').any(|s| s == "orders:read"), "{claims}");
    assert!(!scope.split(' ').any(|s| s == "orders:write"), "{claims}");
    let exp = claims["exp"].as_u64().unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    assert!(exp > now(), "{claims}");
    assert_eq!(exp - iat, 600, "default lifetime: {claims}");
}

#[test]
fn token_options_change_the_client_scopes_resource_and_lifetime() {
    let idp = OidcProvider::start(
        OidcOptions::default()
            .client("billing", "s3cret")
            .scopes("invoices:read invoices:pay")
            .resource("https://billing.example/api")
            .token_ttl(Duration::from_secs(30)),
    );
    let token =
        idp.client_credentials_token("invoices:read invoices:pay", "https://billing.example/api");
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(claims["aud"], "https://billing.example/api");
    assert_eq!(claims["scope"], "invoices:read invoices:pay");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 30, "{claims}");
}

#[test]
fn token_requests_outside_the_client_are_refused() {
    let idp = OidcProvider::start(OidcOptions::default());
    let (status, body) = idp.token_request(&[
        ("grant_type", "client_credentials"),
        ("scope", "orders:read"),
        ("resource", "urn:api:unknown"),
    ]);
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_target"))
    );

    let (status, body) = idp.token_request(&[
        ("grant_type", "client_credentials"),
        ("scope", "openid"),
        ("resource", "urn:api:shop"),
    ]);
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_scope"))
    );

    let (status, body) = idp.token_request_as(
        "ficus-test",
        "wrong-secret",
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(
        (status, &body["error"]),
        (401, &Value::from("invalid_client"))
    );
}

#[test]
fn introspection_says_active_for_a_live_token_and_inactive_for_garbage() {
    let idp = OidcProvider::start(OidcOptions::default());
    let token = idp.client_credentials_token("orders:read orders:write", "urn:api:shop:opaque");
    assert_eq!(token.split('.').count(), 1, "opaque, not a JWT: {token}");

    let (status, body) = idp.introspect(&token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["client_id"], "ficus-test");
    assert_eq!(body["iss"], idp.issuer());
    assert_eq!(body["aud"], "urn:api:shop:opaque");
    assert_eq!(body["scope"], "orders:read orders:write");
    assert!(body["exp"].as_u64().unwrap() > now(), "{body}");

    let (status, body) = idp.introspect("not-a-token-this-provider-issued");
    assert_eq!(
        (status, body),
        (200, serde_json::json!({ "active": false }))
    );

    // oidc-provider does not introspect its JWT access tokens; tests that need
    // introspection use the opaque resource.
    let jwt = idp.client_credentials_token("orders:read", "urn:api:shop");
    let (status, body) = idp.introspect(&jwt);
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("unsupported_token_type"))
    );
}

#[test]
fn a_jwks_file_gives_the_signing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    write_rsa_jwks(&jwks, &["key-2026-a", "key-2026-b"]);
    let idp = OidcProvider::start(OidcOptions::default().jwks_file(&jwks));
    assert_eq!(jwks_kids(&idp), ["key-2026-a", "key-2026-b"]);
    let token = idp.client_credentials_token("orders:read", "urn:api:shop");
    assert_eq!(jwt_parts(&token).0["kid"], "key-2026-a");
}

#[test]
fn the_provider_exits_cleanly_on_sigterm() {
    let mut idp = OidcProvider::start(OidcOptions::default());
    let status = idp.process().stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", idp.logs());
    assert!(idp.logs().contains("oidc-provider stopping on SIGTERM"));
}

#[test]
fn base64url_decodes_unpadded_input() {
    assert_eq!(base64url_decode("").unwrap(), b"");
    assert_eq!(base64url_decode("Zg").unwrap(), b"f");
    assert_eq!(base64url_decode("Zm8").unwrap(), b"fo");
    assert_eq!(base64url_decode("Zm9v").unwrap(), b"foo");
    assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
    assert_eq!(
        base64url_decode("Zm9v="),
        None,
        "padding is not base64url in a JWT"
    );
    assert_eq!(base64url_decode("Z"), None);
    assert_eq!(base64url_decode("a+b/"), None);
}
