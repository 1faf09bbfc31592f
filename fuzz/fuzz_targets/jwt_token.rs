//! JWT and token parsing: finding the token in a request (`Authorization: Bearer`, a
//! cookie, the query) and the JWT policy's checks (shape, header, claims, key choice and
//! signature) against fixed keys: an HMAC key, and a JWKS of RSA, EC and Ed25519 keys
//! (`fuzz/fixtures/`).
//!
//! The first byte picks the mode:
//! - 0: the rest is a query line and header lines; both policies look for their token and
//!   verify whatever they find;
//! - 1: the rest is a JWT header and claims (JSON, one line each; `NOW` and `LATER` stand
//!   for the time and ten minutes on). The target signs them with the HMAC key, so the
//!   checks behind the signature are fuzzed too; an accepted token must satisfy every rule
//!   of the policy (issuer, audience, expiry, lifetime, algorithm);
//! - 2: the rest is a JWKS document, read as a key set.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ficus_plugins::auth::jwt::{Jwt, JwtConfig, JwtPolicy, KeySet, KeySource};
use ficus_plugins::auth::{authenticate, Authenticator, Verdict};
use ficus_plugins::{CompileContext, HeaderEdits, PolicyKind, RequestState, RequestView};

const ISSUER: &str = "https://idp.fuzz.example";
const AUDIENCE: &str = "urn:fuzz";
const LEEWAY: i64 = 30;
const MAX_LIFETIME: i64 = 3600;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    /// HS256 with the fixture key; token from `Authorization: Bearer`.
    hmac: Arc<JwtPolicy>,
    /// The fixture JWKS; token from the `at` cookie, or the `access_token` query parameter.
    jwks_cookie: Arc<JwtPolicy>,
    jwks_query: Arc<JwtPolicy>,
    secret: Vec<u8>,
}

/// The algorithms the JWKS policies accept: one per kind of key in the fixture JWKS.
const JWKS_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A policy compiled from `toml_src`; with `jwks`, its key set (an RSA key in the source,
/// which only RSA algorithms may name) is replaced by that JWKS and its algorithms by
/// [`JWKS_ALGORITHMS`], as a policy fetching that JWKS would have them.
fn policy(name: &str, toml_src: &str, jwks: Option<&Value>) -> Arc<JwtPolicy> {
    let cfg: JwtConfig = toml::from_str(toml_src).expect("fixture policy");
    let dir = ficus_fuzz::fixture("");
    let mut cx = CompileContext::new(&dir);
    let Some(mut settings) = Jwt::compile(cfg, &mut cx) else {
        panic!("{name}: {:?}", cx.into_problems());
    };
    if let Some(doc) = jwks {
        settings.keys = KeySource::Local(Arc::new(KeySet::from_jwks(doc).expect("fixture JWKS")));
        settings.algorithms = JWKS_ALGORITHMS.to_vec();
    }
    Arc::new(JwtPolicy::new(name, Arc::new(settings)))
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let jwks: Value = serde_json::from_slice(
            &std::fs::read(ficus_fuzz::fixture("jwks.json")).expect("fixture JWKS"),
        )
        .expect("fixture JWKS");
        let secret = std::fs::read(ficus_fuzz::fixture("hs256.key")).expect("fixture key");
        let secret = secret.trim_ascii_end().to_vec();
        let rules = format!(
            "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nleeway = \"{LEEWAY}s\"\n\
             max_lifetime = \"{MAX_LIFETIME}s\"\n"
        );
        let remote_keys = "public_key_file = \"rsa-public.pem\"\n\
             algorithms = [\"RS256\", \"PS256\"]\n";
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            hmac: policy(
                "hmac",
                &format!("{rules}secret_file = \"hs256.key\"\nalgorithms = [\"HS256\"]\n"),
                None,
            ),
            jwks_cookie: policy(
                "jwks-cookie",
                &format!(
                    "{rules}{remote_keys}token = {{ cookie = \"at\" }}\nrequire_typ = \"at+jwt\"\n"
                ),
                Some(&jwks),
            ),
            jwks_query: policy(
                "jwks-query",
                &format!("{rules}{remote_keys}token = {{ query = \"access_token\" }}\n"),
                Some(&jwks),
            ),
            secret,
        }
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs one policy over a request with these headers and query.
fn verdict(
    f: &Fixture,
    p: &JwtPolicy,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Verdict> {
    let mut state = RequestState::new();
    let mut edits = HeaderEdits::default();
    let req = RequestView {
        method: &Method::GET,
        path: "/",
        query,
        headers,
        client_ip: None,
        route: "fuzz",
        request_id: "fuzz",
        preflight: false,
        state: &mut state,
        upstream: &mut edits,
    };
    f.runtime
        .block_on(authenticate(p as &dyn Authenticator, &req))
}

/// An accepted token satisfies every rule of the policy.
fn check_accepted(claims: &Value, now: i64) {
    let num = |name: &str| claims.get(name).and_then(Value::as_f64);
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(ISSUER),
        "{claims}"
    );
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(aud_ok, "accepted with audience {:?}", claims.get("aud"));
    let exp = num("exp").expect("accepted without a numeric exp");
    assert!(
        exp + LEEWAY as f64 > now as f64,
        "accepted after exp: {claims}"
    );
    let iat = num("iat").expect("accepted without iat although max_lifetime is set");
    assert!(
        exp.floor() - iat.floor() <= MAX_LIFETIME as f64,
        "lifetime: {claims}"
    );
    assert!(
        iat.floor() <= (now + LEEWAY) as f64,
        "issued in the future: {claims}"
    );
    if let Some(nbf) = num("nbf") {
        assert!(
            nbf.floor() <= (now + LEEWAY) as f64,
            "accepted before nbf: {claims}"
        );
    }
}

fn headers_from(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            map.append(n, v);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        0 => {
            let (query, lines) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let query = std::str::from_utf8(query).ok();
            let headers = headers_from(lines);
            for p in [&f.hmac, &f.jwks_cookie, &f.jwks_query] {
                if let Some(Verdict::Accepted(id)) = verdict(f, p, &headers, query) {
                    // Only the fixture's own keys sign; the fuzzer cannot forge one, so
                    // anything accepted here would be a forgery.
                    panic!("accepted a token no fixture key signed: {:?}", id.claims);
                }
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let t = now();
            let text = text
                .replace("LATER", &(t + 600).to_string())
                .replace("NOW", &t.to_string());
            let (header, claims) = text.split_once('\n').unwrap_or((text.as_str(), "{}"));
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &f.secret);
            let sig = ring::hmac::sign(&key, input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            let mut headers = HeaderMap::new();
            let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
                return;
            };
            headers.insert(http::header::AUTHORIZATION, v);
            if let Some(Verdict::Accepted(id)) = verdict(f, &f.hmac, &headers, None) {
                let h: Value = serde_json::from_str(header).expect("accepted a non-JSON header");
                assert_eq!(
                    h.get("alg").and_then(Value::as_str),
                    Some("HS256"),
                    "{header}"
                );
                check_accepted(&id.claims, now());
            }
        }
        _ => {
            if let Ok(doc) = serde_json::from_slice::<Value>(rest) {
                let _ = KeySet::from_jwks(&doc);
            }
        }
    }
});
