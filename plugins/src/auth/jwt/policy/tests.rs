//! The unit tests of a JWT policy instance: local keys of every type and the
//! verified-token cache, claims on signed tokens, key sets fetched from an identity
//! provider on 127.0.0.1 (discovery, unknown `kid`s, rotation, outages), and its metrics.

use super::*;
use crate::auth::jwt::config::{compile, JwtConfig};
use crate::auth::jwt::testing::{
    fixture, fixture_path, jwks_doc, now, private_key, sign, Provider, TempDir,
};
use crate::auth::jwt::RemoteSettings;
use crate::CompileContext;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn settings_in(dir: &Path, src: &str) -> JwtSettings {
    let cfg: JwtConfig = toml::from_str(src).unwrap();
    let mut cx = CompileContext::new(dir);
    compile(cfg, &mut cx).unwrap_or_else(|| panic!("{:?}", cx.into_problems()))
}

fn policy(settings: JwtSettings) -> Arc<JwtPolicy> {
    Arc::new(JwtPolicy::new("corp", Arc::new(settings)))
}

fn local(src: &str) -> Arc<JwtPolicy> {
    policy(settings_in(Path::new("."), src))
}

/// A policy on `provider`'s JWKS (by discovery unless `jwks` is written), its
/// background work started.
fn remote(
    provider: &Provider,
    extra: &str,
    tweak: impl FnOnce(&mut RemoteSettings),
) -> Arc<JwtPolicy> {
    let src = format!(
        "issuer = \"{}\"\naudience = \"urn:api:shop\"\n{extra}",
        provider.issuer()
    );
    let mut s = settings_in(Path::new("."), &src);
    let KeySource::Remote(r) = &mut s.keys else {
        panic!()
    };
    tweak(r);
    let p = policy(s);
    tokio::spawn(p.clone().background().unwrap());
    p
}

fn claims(provider: Option<&Provider>) -> Value {
    let mut c = json!({"sub": "alice", "exp": now() + 300, "iat": now(), "scope": "orders:read"});
    if let Some(p) = provider {
        c["iss"] = json!(p.issuer());
        c["aud"] = json!(["urn:api:shop"]);
    }
    c
}

fn rs256(kid: &str, claims: &Value, key: &str) -> String {
    sign(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
        claims,
        &private_key(key),
        Algorithm::RS256,
    )
}

fn with_bad_signature(header: &Value, claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!("{}.{}.c2ln", b64(header), b64(claims))
}

fn refusal(v: Verdict) -> Refusal {
    match v {
        Verdict::Refused(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

fn subject(v: Verdict) -> String {
    match v {
        Verdict::Accepted(id) => id.subject.as_deref().unwrap_or_default().to_string(),
        other => panic!("not accepted: {other:?}"),
    }
}

fn metric(p: &JwtPolicy, name: &str, result: &str) -> u64 {
    let mut out = Vec::new();
    p.metrics(&mut out);
    out.iter()
        .find(|s| s.name == name && s.labels[1].1 == result)
        .map(|s| s.value)
        .unwrap_or_else(|| panic!("no {name}{{result={result}}}"))
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn hs_policy() -> (Arc<JwtPolicy>, TempDir) {
    let dir = TempDir::new();
    dir.write("hmac.key", SECRET);
    let p = policy(settings_in(dir.path(), "secret_file = \"hmac.key\""));
    (p, dir)
}

fn hs256(header: Value, claims: &Value) -> String {
    sign(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
        Algorithm::HS256,
    )
}

#[tokio::test]
async fn a_local_hmac_key_accepts_its_tokens_and_caches_them() {
    let (p, _dir) = hs_policy();
    assert!(p.ready());
    assert_eq!(p.hooks(), Hooks::default());
    assert!(p.clone().background().is_none());
    let t = hs256(json!({"alg": "HS256"}), &claims(None));
    assert_eq!(subject(p.verify(&t).await), "alice");
    assert_eq!(metric(&p, "ficus_auth_cache_total", "miss"), 1);
    match p.verify(&t).await {
        Verdict::Accepted(id) => {
            assert_eq!(*id.scopes, ["orders:read"]);
            assert_eq!(&*id.policy, "corp");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(metric(&p, "ficus_auth_cache_total", "hit"), 1);
    // Another secret's signature.
    let forged = sign(
        &json!({"alg": "HS256"}),
        &claims(None),
        &EncodingKey::from_secret(b"another secret, also 32 bytes....").unwrap(),
        Algorithm::HS256,
    );
    assert_eq!(refusal(p.verify(&forged).await), Refusal::BadSignature);
    // A signature is checked before anything is cached: the forgery is refused again.
    assert_eq!(refusal(p.verify(&forged).await), Refusal::BadSignature);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (hs, _dir) = hs_policy();
    let rs = local(&format!(
        "public_key_file = \"{}\"",
        fixture_path("rsa-public.pem")
    ));
    let body = serde_json::to_vec(&claims(None)).unwrap();
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = format!(
            "{}.{}.",
            b64(format!("{{\"alg\":\"{alg}\"}}").as_bytes()),
            b64(&body)
        );
        assert_eq!(refusal(hs.verify(&t).await), Refusal::Algorithm, "{alg}");
        assert_eq!(refusal(rs.verify(&t).await), Refusal::Algorithm, "{alg}");
        // With a "signature" appended, too.
        let t = format!("{t}c2ln");
        assert_eq!(refusal(rs.verify(&t).await), Refusal::Algorithm, "{alg}");
    }
}

#[tokio::test]
async fn an_rsa_public_key_is_never_an_hmac_secret() {
    let pem = fixture("rsa-public.pem");
    let p = local(&format!(
        "public_key_file = \"{}\"",
        fixture_path("rsa-public.pem")
    ));
    // The classic confusion attack: HS256 "signed" with the public key's PEM text.
    let forged = sign(
        &json!({"alg": "HS256"}),
        &claims(None),
        &EncodingKey::from_secret(&pem).unwrap(),
        Algorithm::HS256,
    );
    assert_eq!(refusal(p.verify(&forged).await), Refusal::Algorithm);
    // Even with HS256 allowed by settings that compile would have refused, the key
    // type stops it.
    let mut s = settings_in(
        Path::new("."),
        &format!("public_key_file = \"{}\"", fixture_path("rsa-public.pem")),
    );
    s.algorithms.push(Algorithm::HS256);
    let careless = policy(s);
    assert_eq!(refusal(careless.verify(&forged).await), Refusal::Algorithm);
    // The genuine article passes.
    let good = rs256("any", &claims(None), "rsa");
    assert_eq!(subject(p.verify(&good).await), "alice");
}

#[tokio::test]
async fn every_local_key_type_verifies_its_algorithm() {
    for (name, alg) in [
        ("rsa", Algorithm::PS256),
        ("ec256", Algorithm::ES256),
        ("ec384", Algorithm::ES384),
        ("ed25519", Algorithm::EdDSA),
    ] {
        let p = local(&format!(
            "public_key_file = \"{}\"\nalgorithms = [\"{}\"]",
            fixture_path(&format!("{name}-public.pem")),
            super::super::verify::algorithm_name(alg)
        ));
        let header = json!({ "alg": super::super::verify::algorithm_name(alg) });
        let t = sign(&header, &claims(None), &private_key(name), alg);
        assert_eq!(subject(p.verify(&t).await), "alice", "{name}");
        // One changed payload byte breaks the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let other = sign(
            &header,
            &json!({"sub": "mallory", "exp": now() + 300}),
            &private_key(name),
            alg,
        );
        parts[1] = other.split('.').nth(1).unwrap().to_string();
        assert_eq!(
            refusal(p.verify(&parts.join(".")).await),
            Refusal::BadSignature,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_cached_token_stops_passing_at_its_exp_whatever_the_monotonic_clock_says() {
    let (p, _dir) = hs_policy();
    let exp = now() - 40;
    let t = hs256(json!({"alg": "HS256"}), &json!({"sub": "a", "exp": exp}));
    // As if the wall clock had stepped past `exp` while the entry's monotonic deadline
    // is still ahead.
    let id = crate::Identity::new("corp").with_subject("a");
    let cached = Cached {
        identity: id,
        generation: 0,
        exp,
    };
    let at = Instant::now();
    p.cache
        .insert(&TokenKey::jwt(&t), cached, at + Duration::from_secs(60), at);
    assert_eq!(refusal(p.verify(&t).await), Refusal::Expired);
    assert_eq!(metric(&p, "ficus_auth_cache_total", "hit"), 0);
}

#[tokio::test]
async fn claims_are_checked_on_signed_tokens() {
    let (p, _dir) = hs_policy();
    let h = json!({"alg": "HS256"});
    let exp = now() + 300;
    let cases = [
        (json!({"sub": "a"}), Refusal::InvalidClaims),
        // CVE-2026-25537: an expired `exp` given as a string.
        (
            json!({"exp": (now() - 3600).to_string()}),
            Refusal::InvalidClaims,
        ),
        (json!({"exp": now() - 31}), Refusal::Expired),
        (json!({"exp": exp, "nbf": now() + 60}), Refusal::NotYetValid),
        (json!({"exp": exp, "nbf": "later"}), Refusal::InvalidClaims),
    ];
    for (c, want) in cases {
        assert_eq!(refusal(p.verify(&hs256(h.clone(), &c)).await), want, "{c}");
    }
    // Within the default 30s leeway.
    let t = hs256(h, &json!({"sub": "late", "exp": now() - 20}));
    assert_eq!(subject(p.verify(&t).await), "late");
    // ... but not cached: it is past its `exp`.
    assert!(p.cache.is_empty());
    assert_eq!(refusal(p.verify("a.b").await), Refusal::Malformed);
}

#[tokio::test]
async fn the_first_fetch_is_awaited_and_keys_come_by_discovery() {
    let provider = Provider::start().await;
    provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
    provider.set_delay("/jwks", Duration::from_millis(300));
    let p = remote(&provider, "require_typ = \"at+jwt\"", |_| {});
    assert!(!p.ready());
    let t = rs256("k1", &claims(Some(&provider)), "rsa");
    // Arrives while the first fetch is under way: waits for it instead of a 503.
    assert_eq!(subject(p.verify(&t).await), "alice");
    assert!(p.ready());
    assert_eq!(provider.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(metric(&p, "ficus_auth_jwks_fetches_total", "ok"), 1);
    assert_eq!(metric(&p, "ficus_auth_jwks_fetches_total", "error"), 0);
    // Claims of a real setup: the wrong issuer or audience, an ID token.
    let mut c = claims(Some(&provider));
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        refusal(p.verify(&rs256("k1", &c, "rsa")).await),
        Refusal::WrongIssuer
    );
    let mut c = claims(Some(&provider));
    c["aud"] = json!("urn:api:other");
    assert_eq!(
        refusal(p.verify(&rs256("k1", &c, "rsa")).await),
        Refusal::WrongAudience
    );
    let id_token = sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        &claims(Some(&provider)),
        &private_key("rsa"),
        Algorithm::RS256,
    );
    assert_eq!(refusal(p.verify(&id_token).await), Refusal::WrongType);
}

#[tokio::test]
async fn a_provider_never_reached_is_unavailable_not_a_refusal() {
    let provider = Provider::start().await;
    provider.set_status("/jwks", 503);
    let p = remote(&provider, "", |_| {});
    let t = rs256("k1", &claims(Some(&provider)), "rsa");
    assert!(matches!(p.verify(&t).await, Verdict::Unavailable));
    assert!(!p.ready());
    assert!(metric(&p, "ficus_auth_jwks_fetches_total", "error") >= 1);
    // Malformed tokens are still refused as such: no keys are needed to say so.
    assert_eq!(refusal(p.verify("x.y.z").await), Refusal::Malformed);

    let wrong_issuer = Provider::start().await;
    let p = remote(&wrong_issuer, "", |r| {
        r.issuer = "https://idp.example".into()
    });
    let t = rs256("k1", &claims(Some(&wrong_issuer)), "rsa");
    assert!(matches!(p.verify(&t).await, Verdict::Unavailable));
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_the_provider_one_fetch_per_interval() {
    let provider = Provider::start().await;
    provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
    // Long enough that a loaded test machine stays within it for the middle part.
    let interval = Duration::from_secs(2);
    let p = remote(&provider, "", |r| r.min_refresh = interval);
    let good = rs256("k1", &claims(Some(&provider)), "rsa");
    assert_eq!(subject(p.verify(&good).await), "alice");
    assert_eq!(provider.hits("/jwks"), 1);
    // Make the refresh slow, so the flood arrives while it is in flight.
    provider.set_delay("/jwks", Duration::from_millis(200));
    let mut flood = Vec::new();
    for i in 0..50 {
        let p = p.clone();
        // The key lookup comes before the signature check: a made-up one will do.
        let t = with_bad_signature(
            &json!({"alg": "RS256", "kid": format!("unknown-{i}")}),
            &claims(Some(&provider)),
        );
        flood.push(tokio::spawn(async move { p.verify(&t).await }));
    }
    for f in flood {
        assert_eq!(refusal(f.await.unwrap()), Refusal::UnknownKey);
    }
    assert_eq!(provider.hits("/jwks"), 2, "one shared refresh");
    // Within the interval: refused at once, no fetch.
    let t = rs256("unknown-x", &claims(Some(&provider)), "rsa2");
    assert_eq!(refusal(p.verify(&t).await), Refusal::UnknownKey);
    assert_eq!(provider.hits("/jwks"), 2);
    // After it: one more.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert_eq!(refusal(p.verify(&t).await), Refusal::UnknownKey);
    assert_eq!(provider.hits("/jwks"), 3);
    // Header URLs are never fetched.
    let jku = sign(
        &json!({"alg": "RS256", "kid": "k9", "jku": provider.url("/attacker-jwks"),
                "x5u": provider.url("/attacker-cert")}),
        &claims(Some(&provider)),
        &private_key("rsa2"),
        Algorithm::RS256,
    );
    assert_eq!(refusal(p.verify(&jku).await), Refusal::UnknownKey);
    assert_eq!(provider.other_hits(), 0);
}

#[tokio::test]
async fn key_rotation_new_keys_found_old_ones_gone_from_the_cache() {
    let provider = Provider::start().await;
    provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
    let p = remote(&provider, "", |r| {
        r.min_refresh = Duration::from_millis(100)
    });
    let old = rs256("k1", &claims(Some(&provider)), "rsa");
    assert_eq!(subject(p.verify(&old).await), "alice");
    assert_eq!(subject(p.verify(&old).await), "alice");
    assert_eq!(metric(&p, "ficus_auth_cache_total", "hit"), 1);
    // The provider rotates: k2 in, k1 out. The first k2 token brings the new set.
    provider.set_jwks(jwks_doc(&[("rsa2-public.jwk.json", "k2")]));
    let new = rs256("k2", &claims(Some(&provider)), "rsa2");
    assert_eq!(subject(p.verify(&new).await), "alice");
    assert_eq!(provider.hits("/jwks"), 2);
    // The k1 token was cached, but its key is gone: refused, not served from the cache.
    assert_eq!(refusal(p.verify(&old).await), Refusal::UnknownKey);
}

#[tokio::test]
async fn a_provider_down_after_the_first_fetch_keeps_the_keys() {
    let provider = Provider::start().await;
    provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
    let p = remote(&provider, "", |r| r.min_refresh = Duration::from_millis(50));
    let good = rs256("k1", &claims(Some(&provider)), "rsa");
    assert_eq!(subject(p.verify(&good).await), "alice");
    provider.set_status("/jwks", 500);
    // An unknown kid makes it fetch, which fails...
    let t = rs256("k2", &claims(Some(&provider)), "rsa2");
    assert_eq!(refusal(p.verify(&t).await), Refusal::UnknownKey);
    // (At least: a retry after the failure may have come too.)
    assert!(provider.hits("/jwks") >= 2);
    assert!(metric(&p, "ficus_auth_jwks_fetches_total", "error") >= 1);
    // ... and the keys it had are still used.
    assert!(p.ready());
    assert_eq!(subject(p.verify(&good).await), "alice");
    // A garbage answer does not replace them either.
    provider.set_status("/jwks", 200);
    provider.set_jwks(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}".to_vec());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(refusal(p.verify(&t).await), Refusal::UnknownKey);
    assert!(provider.hits("/jwks") >= 3);
    assert_eq!(subject(p.verify(&good).await), "alice");
}

#[tokio::test]
async fn a_policy_rebuilt_during_an_outage_starts_from_its_predecessors_keys() {
    let provider = Provider::start().await;
    provider.set_jwks(jwks_doc(&[("rsa-public.jwk.json", "k1")]));
    let first = remote(&provider, "", |_| {});
    let good = rs256("k1", &claims(Some(&provider)), "rsa");
    assert_eq!(subject(first.verify(&good).await), "alice");
    provider.set_status("/jwks", 500);
    provider.set_status("/.well-known/openid-configuration", 500);
    // A reload that changes something else about the policy builds a new instance.
    let rebuilt = remote(&provider, "", |r| r.min_refresh = Duration::from_secs(30));
    assert!(
        rebuilt.ready(),
        "the rebuilt policy has no keys during the outage"
    );
    assert_eq!(subject(rebuilt.verify(&good).await), "alice");
    assert_eq!(subject(rebuilt.verify(&good).await), "alice", "and caches");
}

#[test]
fn metrics_name_the_policy() {
    let (p, _dir) = hs_policy();
    let mut out = Vec::new();
    p.metrics(&mut out);
    assert!(out
        .iter()
        .all(|s| s.labels[0] == ("policy", "corp".to_string())));
    assert!(out.iter().any(|s| s.name == "ficus_auth_requests_total"));
    // A local key is never fetched.
    assert!(!out
        .iter()
        .any(|s| s.name == "ficus_auth_jwks_fetches_total"));
    assert!(p.clone().authenticator().is_some());
    assert_eq!(p.kind(), "auth:jwt");
}
