//! What a JWT costs the request path (criterion): a cache miss, i.e. a full check (RS256,
//! ES256, HS256: parse, claims, signature, identity, cache insert) against a
//! verified-token cache hit, with tokens the size of a Keycloak access token (~1.4 KiB).
//! Misses cycle through a pool of distinct tokens with a one-entry cache.
//!
//! `cargo bench -p ficus-plugins --bench jwt_verify`

use criterion::{criterion_group, criterion_main, Criterion};
use ficus_plugins::auth::jwt::{Jwt, JwtConfig, JwtPolicy};
use ficus_plugins::auth::{Authenticator, Verdict};
use ficus_plugins::{CompileContext, PolicyKind};
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
        let key = key.expect("bench key loads");
        let pool: Vec<String> = (0..POOL).map(|n| token(alg, &key, n)).collect();
        let missing = policy(src, 1);
        assert!(matches!(verify(&missing, &pool[0]), Verdict::Accepted(_)));
        let mut next = pool.iter().cycle();
        let label = format!("{name} cache miss ({} B token)", pool[0].len());
        group.bench_function(label, |b| {
            b.iter(|| black_box(verify(&missing, black_box(next.next().expect("cycles")))))
        });
        if name == "RS256" {
            let t = &pool[0];
            let cached = policy(src, 10_000);
            assert!(matches!(verify(&cached, t), Verdict::Accepted(_)));
            group.bench_function("RS256 cache hit", |b| {
                b.iter(|| black_box(verify(&cached, black_box(t))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
