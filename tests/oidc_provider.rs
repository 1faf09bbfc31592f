//! The OpenID provider fixture (tests/common/oidc.rs, tests/oidc/provider.js) against the
//! real oidc-provider: discovery, JWKS, client-credentials JWT access tokens, RFC 7662
//! introspection, RFC 7009 revocation, request counts, restarts on the same port, and the
//! tokens tests sign themselves are what the authentication tests rely on, so a failure
//! there points at the fixture and not at the gateway.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

fn now() -> u64 {
    unix_now()
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

#[test]
fn base64url_encodes_unpadded_and_round_trips() {
    assert_eq!(base64url_encode(b""), "");
    assert_eq!(base64url_encode(b"f"), "Zg");
    assert_eq!(base64url_encode(b"fo"), "Zm8");
    assert_eq!(base64url_encode(b"foo"), "Zm9v");
    assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
    let bytes: Vec<u8> = (0..=255).collect();
    for len in 0..bytes.len() {
        let encoded = base64url_encode(&bytes[..len]);
        assert_eq!(base64url_decode(&encoded).unwrap(), &bytes[..len]);
    }
}

#[test]
fn counts_say_how_often_each_path_was_requested() {
    let idp = OidcProvider::start(OidcOptions::default());
    let counts = idp.counts();
    for path in [
        "/jwks",
        "/.well-known/openid-configuration",
        "/token",
        "/token/introspection",
    ] {
        assert_eq!(counts.get(path), Some(&0), "{counts:?}");
    }

    idp.get_json(&idp.jwks_uri());
    idp.get_json(&format!("{}?cache-buster=1", idp.jwks_uri()));
    idp.get_json(&idp.discovery_url());
    let token = idp.client_credentials_token("orders:read", "urn:api:shop:opaque");
    idp.introspect(&token);

    // The query is not part of the path; asking for the counts is not counted.
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.count("/token"), 1);
    assert_eq!(idp.introspections(), 1);
    assert_eq!(idp.count("/__test/counts"), 0);
    assert_eq!(idp.count("/never-asked"), 0);
    assert_eq!(idp.logs().matches("oidc-provider GET /jwks\n").count(), 2);
    assert!(idp
        .logs()
        .contains("oidc-provider POST /token/introspection\n"));
}

#[test]
fn revoke_makes_an_opaque_token_inactive() {
    let idp = OidcProvider::start(OidcOptions::default());
    let d = idp.get_json(&idp.discovery_url());
    assert_eq!(d["revocation_endpoint"], idp.revocation_endpoint());

    let revoked = idp.client_credentials_token("orders:read", "urn:api:shop:opaque");
    let kept = idp.client_credentials_token("orders:read", "urn:api:shop:opaque");
    assert_eq!(idp.introspect(&revoked).1["active"], true);
    idp.revoke(&revoked);
    assert_eq!(idp.introspect(&revoked).1, json!({ "active": false }));
    assert_eq!(idp.introspect(&kept).1["active"], true, "only that token");
}

#[test]
fn stop_and_start_again_keep_the_port_and_the_counts() {
    let mut idp = OidcProvider::start(OidcOptions::default());
    let issuer = idp.issuer();
    let old_kid = jwks_kids(&idp);
    assert_eq!(idp.jwks_fetches(), 1);

    idp.stop();
    assert!(!idp.is_running());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], idp.port()));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the port still accepts while the provider is down"
    );
    assert_eq!(idp.jwks_fetches(), 1, "counts survive the stop");

    idp.start_again();
    assert!(idp.is_running());
    assert_eq!(idp.issuer(), issuer);
    let new_kid = jwks_kids(&idp);
    assert_ne!(new_kid, old_kid, "a generated key is new on every start");
    assert_eq!(idp.jwks_fetches(), 2, "counts add up over restarts");
    assert!(idp.logs().contains("oidc-provider stopping on SIGTERM"));
    let token = idp.client_credentials_token("orders:read", "urn:api:shop");
    assert_eq!(jwt_parts(&token).1["iss"], issuer);
}

#[test]
fn restart_with_another_jwks_file_rotates_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (old_file, new_file) = (dir.path().join("old.json"), dir.path().join("new.json"));
    let old = write_rsa_jwks(&old_file, &["old"]);
    let mut idp = OidcProvider::start(OidcOptions::default().jwks_file(&old_file));
    let before = idp.client_credentials_token("orders:read", "urn:api:shop");

    // Both keys published, the new one signing: the overlap of a rotation.
    let new = TestKey::generate("new");
    write_private_jwks(&new_file, &[new.clone(), old[0].clone()]);
    idp.restart_with(OidcOptions::default().jwks_file(&new_file));
    assert_eq!(jwks_kids(&idp), ["new", "old"]);
    let after = idp.client_credentials_token("orders:read", "urn:api:shop");
    assert_eq!(jwt_parts(&after).0["kid"], "new");
    assert!(verify_rs256(&after, &new.public_jwk));
    assert!(verify_rs256(&before, &old[0].public_jwk));
}

/// Checks an RS256 signature with Node's crypto (a second implementation beside
/// `verify_rs256`): true if `token` verifies with the public `jwk`.
fn node_verifies_rs256(token: &str, jwk: &Value) -> bool {
    const SCRIPT: &str = "const c = require('node:crypto'); \
        const [token, jwk] = process.argv.slice(1); \
        const i = token.lastIndexOf('.'); \
        const ok = c.verify('sha256', Buffer.from(token.slice(0, i)), \
          c.createPublicKey({ key: JSON.parse(jwk), format: 'jwk' }), \
          Buffer.from(token.slice(i + 1), 'base64url')); \
        process.stdout.write(String(ok));";
    node(SCRIPT, &[token, &jwk.to_string()]) == "true"
}

/// HMAC-SHA256 of `input` keyed by `secret`, base64url, by Node's crypto.
fn node_hs256(input: &str, secret: &str) -> String {
    const SCRIPT: &str = "const [input, secret] = process.argv.slice(1); \
        process.stdout.write(require('node:crypto').createHmac('sha256', secret) \
          .update(input).digest('base64url'));";
    node(SCRIPT, &[input, secret])
}

fn node(script: &str, args: &[&str]) -> String {
    let mut p = ProcessBuilder::new("node", "node")
        .args(["-e", script, "--"])
        .args(args)
        .start();
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", p.logs());
    p.stdout()
}

#[test]
fn tokens_signed_with_a_written_key_verify_with_the_published_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let keys = write_rsa_jwks(&file, &["signer", "spare"]);
    assert_eq!(keys.len(), 2);
    let idp = OidcProvider::start(OidcOptions::default().jwks_file(&file));
    let published = idp.published_keys();
    assert_eq!(published[0]["kid"], "signer");
    assert_eq!(published[0]["n"], keys[0].public_jwk["n"]);
    assert_eq!(published[0]["e"], keys[0].public_jwk["e"]);
    assert!(keys[0]
        .private_pem
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(keys[0].public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(keys[0].public_jwk.get("d").is_none(), "public JWK only");

    // The verifier agrees with the provider on a token the provider signed.
    let real = idp.client_credentials_token("orders:read", "urn:api:shop");
    assert!(verify_rs256(&real, &published[0]));
    assert!(!verify_rs256(&real, &published[1]), "not the other key");

    // A token the test signs with the provider's key verifies with what it publishes,
    // by ring and by Node.
    let claims = idp.claims("orders:read");
    let crafted = keys[0].sign(&claims);
    let (header, payload) = jwt_parts(&crafted);
    assert_eq!(
        header,
        json!({ "alg": "RS256", "typ": "at+jwt", "kid": "signer" })
    );
    assert_eq!(payload, claims);
    assert!(verify_rs256(&crafted, &published[0]));
    assert!(node_verifies_rs256(&crafted, &published[0]));
    assert!(node_verifies_rs256(&real, &published[0]));

    // One changed claim breaks the signature.
    let (input, sig) = crafted.rsplit_once('.').unwrap();
    let (h, _) = input.split_once('.').unwrap();
    let mut forged = claims.clone();
    forged["scope"] = json!("orders:read orders:write");
    let tampered = format!(
        "{h}.{}.{sig}",
        base64url_encode(forged.to_string().as_bytes())
    );
    assert!(!verify_rs256(&tampered, &published[0]));
    assert!(!node_verifies_rs256(&tampered, &published[0]));

    // A header may say anything: sign_jwt writes it as given.
    let lying = sign_jwt(&json!({ "alg": "RS512", "kid": "x" }), &claims, &keys[0]);
    assert_eq!(jwt_parts(&lying).0, json!({ "alg": "RS512", "kid": "x" }));
    assert!(verify_rs256(&lying, &published[0]));
}

#[test]
fn claims_have_the_shape_of_the_provider_access_tokens() {
    let idp = OidcProvider::start(OidcOptions::default());
    let real = jwt_parts(&idp.client_credentials_token("orders:read", "urn:api:shop")).1;
    let ours = idp.claims("orders:read");
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&ours), keys(&real), "real: {real}\nours: {ours}");
    for same in ["iss", "aud", "sub", "client_id", "scope"] {
        assert_eq!(ours[same], real[same], "{same}");
    }
    let lifetime = ours["exp"].as_u64().unwrap() - ours["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 600);
    assert!(ours["iat"].as_u64().unwrap().abs_diff(now()) <= 2);
}

#[test]
fn an_attacker_key_verifies_nothing_the_provider_publishes() {
    let idp = OidcProvider::start(OidcOptions::default());
    let attacker = TestKey::generate("attacker");
    let token = attacker.sign(&idp.claims("orders:read"));
    assert!(verify_rs256(&token, &attacker.public_jwk));
    assert!(!verify_rs256(&token, &idp.published_keys()[0]));
    let jwks = TestKey::jwks(&[&attacker]);
    assert_eq!(jwks["keys"][0]["kid"], "attacker");
    assert!(jwks["keys"][0].get("d").is_none(), "{jwks}");
}

#[test]
fn public_key_pem_is_the_published_key_and_keys_an_hs256_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let keys = write_rsa_jwks(&file, &["k1"]);
    let idp = OidcProvider::start(OidcOptions::default().jwks_file(&file));

    let pem = idp.public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    assert_eq!(
        pem, keys[0].public_pem,
        "the same text Node writes for the key"
    );
    let pkcs1 = jwk_public_pem(&idp.published_keys()[0], PemFormat::Pkcs1);
    assert!(
        pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"),
        "{pkcs1}"
    );
    // SPKI wraps the PKCS#1 key: its DER ends with it.
    assert!(pem_to_der(&pem).ends_with(&pem_to_der(&pkcs1)));

    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": "k1" });
    let claims = idp.claims("orders:read");
    let token = hs256_jwt(&header, &claims, pem.as_bytes());
    assert_eq!(jwt_parts(&token), (header, claims));
    let (input, sig) = token.rsplit_once('.').unwrap();
    assert_eq!(
        sig,
        node_hs256(input, &pem),
        "HMAC-SHA256 keyed by the PEM text"
    );
    assert!(!verify_rs256(&token, &idp.published_keys()[0]));
}

#[test]
fn a_self_signed_certificate_carries_the_key_for_x5c_and_x5u() {
    let key = TestKey::generate("x5c");
    let der = key.self_signed_cert_der();
    let pem = pem_encode("CERTIFICATE", &der);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
    assert_eq!(pem_to_der(&pem), der);
    // Node reads the certificate and finds the key in it.
    const SCRIPT: &str = "const c = require('node:crypto'); \
        const [pem] = process.argv.slice(1); \
        const jwk = new c.X509Certificate(pem).publicKey.export({ format: 'jwk' }); \
        process.stdout.write(JSON.stringify(jwk));";
    let jwk: Value = serde_json::from_str(&node(SCRIPT, &[&pem])).unwrap();
    assert_eq!(jwk["n"], key.public_jwk["n"]);
    assert_eq!(jwk["e"], key.public_jwk["e"]);
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn unsigned_jwt_has_alg_none_and_an_empty_signature() {
    let header = json!({ "alg": "none", "typ": "JWT" });
    let claims = json!({ "sub": "mallory", "exp": now() + 60 });
    let token = unsigned_jwt(&header, &claims);
    assert!(token.ends_with('.'), "{token}");
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(jwt_parts(&token), (header, claims));
}

#[test]
fn the_provider_answers_over_https_behind_a_tls_front() {
    let idp = OidcProvider::start(OidcOptions::default());
    let ca = TestCa::new();
    let front = TlsFront::start(
        &ca,
        std::net::SocketAddr::from(([127, 0, 0, 1], idp.port())),
    );
    let before = idp.jwks_fetches();
    let (status, body) = https_get(&front.url("/jwks"), Some(&ca));
    assert_eq!(status, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"], json!(idp.published_keys()));
    assert_eq!(
        idp.jwks_fetches(),
        before + 2,
        "through the front, then ours"
    );
    assert_eq!(front.handshakes(), 1);
}

/// GET `url` with reqwest, trusting `ca` only (no system roots): (status, body), or the
/// error text as status 0.
fn https_get(url: &str, ca: Option<&TestCa>) -> (u16, String) {
    let url = url.to_string();
    let cert = ca.map(|ca| ca.reqwest_cert());
    std::thread::scope(|s| {
        s.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut b = reqwest::Client::builder()
                        .no_proxy()
                        .tls_built_in_root_certs(false)
                        .timeout(Duration::from_secs(10));
                    if let Some(cert) = cert {
                        b = b.add_root_certificate(cert);
                    }
                    match b.build().unwrap().get(&url).send().await {
                        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                        Err(e) => (0, format!("{e:?}")),
                    }
                })
        })
        .join()
        .unwrap()
    })
}

#[test]
fn a_tls_front_serves_an_origin_to_clients_that_trust_the_ca_only() {
    let jwks = TestKey::jwks(&[&TestKey::generate("tls")]);
    let o = Origin::builder("jwks")
        .route("/jwks", Reply::json(jwks.clone()))
        .start();
    let ca = TestCa::new();
    let front = TlsFront::start(&ca, o.addr());
    assert!(front.url("/jwks").starts_with("https://127.0.0.1:"));

    let (status, body) = https_get(&front.url("/jwks"), Some(&ca));
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, jwks)
    );
    assert_eq!(o.requests(), 1);
    assert_eq!(front.handshakes(), 1);

    // Without the CA the certificate is refused: no handshake, nothing reaches the origin.
    let (status, err) = https_get(&front.url("/jwks"), None);
    assert_eq!(status, 0, "{err}");
    let (status, err) = https_get(&front.url("/jwks"), Some(&TestCa::new()));
    assert_eq!(status, 0, "another CA: {err}");
    assert_eq!(o.requests(), 1);
    assert_eq!(front.handshakes(), 1);
}
