//! What a JWT costs the request path (criterion): a cache miss, i.e. a full check (RS256,
//! ES256, HS256: parse, claims, signature, identity, cache insert) against a
//! verified-token cache hit, with tokens the size of a Keycloak access token (~1.4 KiB).
//! Misses cycle through a pool of distinct tokens with a one-entry cache.
//!
//! `cargo bench -p ficus-plugins --bench jwt_verify`
//!
//! On the 2-core dev box (busy: medians, and best, of 7 runs interleaved with the previous
//! build), with ring as jsonwebtoken's crypto provider against its RustCrypto backend:
//! RS256 miss 49 µs (34) against 131 µs (79), ES256 miss 83 µs (80) against 428 µs (330),
//! HS256 miss 11 µs (8) against 13 µs (9); hits 1.4–1.9 µs either way. ring verifies an
//! RS256 signature in 25–30 µs whether it is given the modulus and exponent or the PKCS#1
//! DER: it parses the key on every check either way, and has no other public API.

use criterion::{criterion_group, criterion_main, Criterion};
use ficus_plugins::auth::gate::AuthGate;
use ficus_plugins::auth::jwt::{Jwt, JwtConfig, JwtPolicy};
use ficus_plugins::auth::requirements::Requirements;
use ficus_plugins::auth::{Authenticator, Verdict};
use ficus_plugins::{
    CompileContext, HeaderEdits, Outcome, Plugin, PolicyKind, RequestState, RequestView,
};
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn policy(src: &str, cache_size: usize) -> JwtPolicy {
    let cfg: JwtConfig =
        toml::from_str(&format!("{src}\ncache_size = {cache_size}")).expect("bench config parses");
    let mut cx = CompileContext::new(Path::new(FIXTURES));
    let settings = Jwt::compile(cfg, &mut cx).expect("bench config compiles");
    JwtPolicy::new("corp", Arc::new(settings))
}

/// Distinct tokens before the pool repeats (the cache holds one).
const POOL: usize = 64;

fn token(alg: Algorithm, key: &EncodingKey, n: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({
        "exp": now + 3600, "iat": now, "jti": format!("6c3a2b9e-4f1d-4c8e-9a57-{n:012}"),
        "iss": "https://idp.example.com/realms/shop", "aud": ["urn:api:shop", "account"],
        "sub": "f3b0c2d4-7a1e-4b6f-9c8d-2e1f0a3b4c5d", "typ": "Bearer", "azp": "shop-web",
        "session_state": "0d5e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a", "acr": "1",
        "allowed-origins": ["https://shop.example.com"],
        "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles-shop", "customer"]},
        "resource_access": {"account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}},
        "scope": "openid email profile orders:read orders:write", "sid": "0d5e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
        "email_verified": true, "name": "Alice Example", "preferred_username": "alice",
        "given_name": "Alice", "family_name": "Example", "email": "alice@example.com",
    });
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, key).expect("bench token signs")
}

/// The whole auth step of a route on a cache hit, as the load bench's `ficus-jwt` route
/// runs it: find the bearer token, verify it, check the route's requirements, queue the
/// identity header, store the identity.
fn gate_step(gate: &AuthGate, headers: &HeaderMap) -> bool {
    let mut state = RequestState::new();
    let mut upstream = HeaderEdits::default();
    let mut req = RequestView {
        method: &Method::GET,
        path: "/orders/1",
        query: None,
        headers,
        client_ip: None,
        route: "orders",
        request_id: "0123456789abcdef",
        preflight: false,
        state: &mut state,
        upstream: &mut upstream,
    };
    let mut fut = pin!(gate.on_request(&mut req));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(o) => o == Outcome::Continue,
        Poll::Pending => unreachable!("a cache hit never waits"),
    }
}

/// Runs `verify` to completion: with a local key it never waits, so one poll does.
fn verify(p: &JwtPolicy, token: &str) -> Verdict {
    let mut fut = pin!(p.verify(token));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("a local key never waits"),
    }
}

fn bench(c: &mut Criterion) {
    let pem = |name: &str| std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
    let cases = [
        (
            "RS256",
            "public_key_file = \"rsa-public.pem\"",
            EncodingKey::from_rsa_pem(&pem("rsa-private.pem")),
            Algorithm::RS256,
        ),
        (
            "ES256",
            "public_key_file = \"ec256-public.pem\"",
            EncodingKey::from_ec_pem(&pem("ec256-private.pem")),
            Algorithm::ES256,
        ),
        (
            "HS256",
            "secret_env = \"FICUS_BENCH_HMAC\"",
            EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            Algorithm::HS256,
        ),
    ];
    std::env::set_var("FICUS_BENCH_HMAC", "0123456789abcdef0123456789abcdef");
    let mut group = c.benchmark_group("jwt_verify");
    for (name, src, key, alg) in cases {
        // Compiling a policy makes ring jsonwebtoken's crypto provider, which then signs
        // the tokens.
        let missing = policy(src, 1);
        let cached = policy(src, 10_000);
        let key = key.expect("bench key loads");
        let pool: Vec<String> = (0..POOL).map(|n| token(alg, &key, n)).collect();
        assert!(matches!(verify(&missing, &pool[0]), Verdict::Accepted(_)));
        let mut next = pool.iter().cycle();
        let label = format!("{name} cache miss ({} B token)", pool[0].len());
        group.bench_function(label, |b| {
            b.iter(|| black_box(verify(&missing, black_box(next.next().expect("cycles")))))
        });
        let t = &pool[0];
        assert!(matches!(verify(&cached, t), Verdict::Accepted(_)));
        group.bench_function(format!("{name} cache hit"), |b| {
            b.iter(|| black_box(verify(&cached, black_box(t))))
        });
        if name == "RS256" {
            let with_header = policy(
                &format!("{src}\nclaims_to_headers = {{ sub = \"X-User-Id\" }}"),
                10_000,
            );
            let gate = AuthGate::new(vec![Arc::new(with_header)], Requirements::default());
            let mut headers = HeaderMap::new();
            let bearer = HeaderValue::from_str(&format!("Bearer {t}")).expect("token is ASCII");
            headers.insert(http::header::AUTHORIZATION, bearer);
            assert!(
                gate_step(&gate, &headers),
                "the bench token passes the gate"
            );
            group.bench_function("RS256 gate step, cache hit", |b| {
                b.iter(|| black_box(gate_step(&gate, black_box(&headers))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
