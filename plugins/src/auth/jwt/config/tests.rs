//! The unit tests of the `jwt` section's compile step: every key, every refusal and
//! warning, with its key and span.

use super::*;
use crate::auth::jwt::testing::{fixture, fixture_path, TempDir};
use crate::{Problem, Severity};
use std::path::Path;

fn compile_in(dir: &Path, src: &str) -> (Option<JwtSettings>, Vec<Problem>) {
    let cfg: JwtConfig = toml::from_str(src).unwrap();
    let mut cx = CompileContext::new(dir);
    let s = compile(cfg, &mut cx);
    (s, cx.into_problems())
}

fn compiles(src: &str) -> (JwtSettings, Vec<Problem>) {
    let (s, p) = compile_in(Path::new("."), src);
    match s {
        Some(s) => (s, p),
        None => panic!("{src}: {p:?}"),
    }
}

/// The one error `src` gets.
fn error(src: &str) -> Problem {
    error_in(Path::new("."), src)
}

fn error_in(dir: &Path, src: &str) -> Problem {
    let (s, p) = compile_in(dir, src);
    assert!(s.is_none(), "{src} compiled");
    let errors: Vec<Problem> = p
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{src}: {errors:?}");
    errors.into_iter().next().unwrap()
}

fn warnings(p: &[Problem]) -> Vec<&str> {
    p.iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| p.key.as_str())
        .collect()
}

const ISSUER: &str =
    "issuer = \"https://idp.example.com/realms/shop/\"\naudience = \"urn:api:shop\"\n";

#[test]
fn a_jwks_by_discovery_with_the_defaults() {
    let (s, p) = compiles(&format!("type = \"jwt\"\n{ISSUER}"));
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.algorithms, [Algorithm::RS256]);
    assert_eq!(s.cache_size, DEFAULT_CACHE_SIZE);
    assert_eq!(s.claims.leeway, 30);
    assert_eq!(s.claims.audience, ["urn:api:shop"]);
    let KeySource::Remote(r) = &s.keys else {
        panic!("{:?}", s.keys)
    };
    assert_eq!(
        r.discovery.as_deref(),
        Some("https://idp.example.com/realms/shop/.well-known/openid-configuration")
    );
    assert_eq!(r.jwks, None);
    assert_eq!(r.issuer, "https://idp.example.com/realms/shop/");
    assert_eq!(r.timeout, DEFAULT_TIMEOUT);
    assert_eq!(r.min_refresh, DEFAULT_MIN_REFRESH);
    assert_eq!(r.refresh, DEFAULT_REFRESH_BOUNDS);
}

#[test]
fn every_key_compiles() {
    let (s, p) = compiles(
        r#"
            issuer = "https://idp.example.com"
            jwks = "https://idp.example.com/certs"
            audience = ["a", "b"]
            algorithms = ["RS256", "PS256", "ES256", "RS256"]
            require_typ = "application/AT+JWT"
            leeway = "5s"
            max_lifetime = "1h"
            jwks_min_refresh = "30s"
            jwks_refresh = { min = "5m", max = "1h" }
            timeout = "2s"
            cache_size = 500
            token = { header = "X-Token" }
            claims_to_headers = { sub = "X-User-Id" }
            forward_authorization = false
            "#,
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        s.algorithms,
        [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
    );
    assert_eq!(s.claims.require_typ.as_deref(), Some("at+jwt"));
    assert_eq!(s.claims.max_lifetime, Some(3600));
    assert_eq!(s.claims.audience, ["a", "b"]);
    assert_eq!(s.cache_size, 500);
    assert!(!s.common.forward_authorization);
    let KeySource::Remote(r) = &s.keys else {
        panic!()
    };
    assert_eq!(r.jwks.as_deref(), Some("https://idp.example.com/certs"));
    assert_eq!(r.discovery, None);
    assert_eq!(r.refresh.min, Duration::from_secs(300));
    assert_eq!(r.min_refresh, Duration::from_secs(30));
}

#[test]
fn an_inline_secret_is_refused_with_a_hint() {
    let e = error("secret = \"hunter2hunter2hunter2hunter2hunter2\"\n");
    assert_eq!(e.key, "secret");
    assert_eq!(e.span, Some(9..46));
    assert!(e.message.contains("never written in routes.toml"));
    assert!(e.hint.unwrap().contains("secret_file"));
    // Next to another key source, the rest of the section is checked too.
    let (s, p) = compile_in(
        Path::new("."),
        &format!(
            "public_key_file = \"{}\"\nsecret = {{ value = 1 }}\nalgorithms = [\"HS256\"]\n",
            fixture_path("rsa-public.pem")
        ),
    );
    assert!(s.is_none());
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["secret", "algorithms[0]", "audience"]);
}

#[test]
fn hmac_secrets_from_a_file_or_the_environment() {
    let dir = TempDir::new();
    dir.write("short.key", b"too short\n");
    dir.write("ok.key", b"0123456789abcdef0123456789abcdef\n");
    let e = error_in(dir.path(), "secret_file = \"short.key\"");
    assert_eq!(e.key, "secret_file");
    assert!(e.message.contains("9 bytes"), "{}", e.message);
    let (s, _) = compile_in(dir.path(), "secret_file = \"ok.key\"");
    let s = s.unwrap();
    assert_eq!(s.algorithms, [Algorithm::HS256]);
    // HS512 needs a 64-byte key.
    let e = error_in(
        dir.path(),
        "secret_file = \"ok.key\"\nalgorithms = [\"HS512\"]",
    );
    assert!(e.message.contains("at least 64"), "{}", e.message);

    // The trailing newline is not part of the secret: the same key from the environment.
    std::env::set_var("FICUS_TEST_JWT_SECRET", "0123456789abcdef0123456789abcdef");
    let (from_env, _) = compiles("secret_env = \"FICUS_TEST_JWT_SECRET\"");
    assert_eq!(from_env, s);
    std::env::set_var("FICUS_TEST_JWT_SECRET_EMPTY", "");
    for var in ["FICUS_TEST_JWT_SECRET_EMPTY", "FICUS_TEST_JWT_SECRET_UNSET"] {
        let e = error(&format!("secret_env = \"{var}\""));
        assert_eq!(e.key, "secret_env");
        assert!(e.message.contains("is empty") || e.message.contains("is not set"));
    }
}

#[test]
fn a_changed_key_file_is_a_changed_policy_and_secrets_stay_out_of_debug() {
    let dir = TempDir::new();
    dir.write("a.key", &[b'a'; 40]);
    dir.write("b.key", &[b'a'; 40]);
    let (a, _) = compile_in(dir.path(), "secret_file = \"a.key\"");
    let (b, _) = compile_in(dir.path(), "secret_file = \"b.key\"");
    assert_eq!(
        a, b,
        "the same secret under another name is the same policy"
    );
    dir.write("b.key", &[b'b'; 40]);
    let (b2, _) = compile_in(dir.path(), "secret_file = \"b.key\"");
    assert_ne!(a, b2);
    let shown = format!("{:?}", a.unwrap());
    assert!(!shown.contains("aaaa"), "{shown}");
    assert!(!shown.contains("97, 97"), "{shown}");
}

#[test]
fn public_keys_set_the_default_algorithm_and_must_agree_with_algorithms() {
    for (file, alg) in [
        ("rsa-public.pem", Algorithm::RS256),
        ("ec256-public.pem", Algorithm::ES256),
        ("ec384-public.pem", Algorithm::ES384),
        ("ed25519-public.pem", Algorithm::EdDSA),
    ] {
        let (s, _) = compiles(&format!("public_key_file = \"{}\"", fixture_path(file)));
        assert_eq!(s.algorithms, [alg], "{file}");
    }
    let rsa = fixture_path("rsa-public.pem");
    // An RSA public key never verifies HMAC tokens: no HS/RS confusion by config.
    for alg in ["HS256", "ES256", "EdDSA"] {
        let e = error(&format!(
            "public_key_file = \"{rsa}\"\nalgorithms = [\"{alg}\"]"
        ));
        assert_eq!(e.key, "algorithms[0]");
        assert!(e.message.contains("cannot be verified with an RSA key"));
        assert!(e.hint.unwrap().contains("PS512"));
    }
    let e = error(&format!(
        "public_key_file = \"{}\"\nalgorithms = [\"ES384\"]",
        fixture_path("ec256-public.pem")
    ));
    assert!(e.message.contains("EC P-256"));
    let dir = TempDir::new();
    dir.write("k", &[b'k'; 64]);
    let e = error_in(dir.path(), "secret_file = \"k\"\nalgorithms = [\"RS256\"]");
    assert!(e.message.contains("an HMAC secret"));
}

#[test]
fn hmac_with_a_jwks_is_refused() {
    let e = error(&format!("{ISSUER}algorithms = [\"RS256\", \"HS256\"]"));
    assert_eq!(e.key, "algorithms[1]");
    assert!(e.message.contains("shared secret"));
}

#[test]
fn unknown_algorithms_get_a_did_you_mean() {
    let hint = |alg: &str| {
        error(&format!("{ISSUER}algorithms = [\"{alg}\"]"))
            .hint
            .unwrap()
    };
    assert!(hint("rs256").contains("did you mean `RS256`?"));
    assert!(hint("RS265").contains("RS256, RS384, RS512"));
    assert!(hint("none").contains("never accepted"));
    assert!(hint("XY1").contains("supported: HS256"));
    assert!(hint("€S256").contains("supported: HS256"));
    assert!(hint("R").contains("supported: HS256"));
    let e = error(&format!("{ISSUER}algorithms = []"));
    assert!(e.message.contains("empty"));
}

#[test]
fn one_key_source() {
    let rsa = fixture_path("rsa-public.pem");
    let e = error(&format!("secret_env = \"X\"\npublic_key_file = \"{rsa}\""));
    assert_eq!(e.key, "public_key_file");
    assert!(e.message.contains("two key sources"));
    let e = error(&format!(
        "{ISSUER}jwks = \"https://idp.example.com/certs\"\npublic_key_file = \"{rsa}\""
    ));
    assert_eq!(e.key, "jwks");
    let e = error("audience = \"a\"");
    assert!(e.message.contains("needs a key source"));
    let e = error("jwks = \"https://idp.example.com/certs\"");
    assert_eq!(e.key, "issuer");
    // A local key with an issuer: `iss` is checked, nothing is fetched.
    let (s, p) = compiles(&format!(
        "issuer = \"https://idp.example.com\"\npublic_key_file = \"{rsa}\"\ntimeout = \"1s\""
    ));
    assert_eq!(s.claims.issuer.as_deref(), Some("https://idp.example.com"));
    assert!(matches!(s.keys, KeySource::Local(_)));
    assert_eq!(warnings(&p), ["audience", "timeout"]);
}

#[test]
fn provider_urls() {
    for (url, key) in [
        ("ftp://idp.example.com", "issuer"),
        ("idp.example.com", "issuer"),
        ("https://idp.example.com?realm=x", "issuer"),
    ] {
        let e = error(&format!("issuer = \"{url}\""));
        assert_eq!(e.key, key, "{url}");
    }
    let e = error("issuer = \"x\"\njwks = \"file:///etc/passwd\"");
    assert_eq!(e.key, "jwks");
    // Plain http: a warning, except on loopback.
    let (_, p) = compiles("issuer = \"http://idp.example.com\"\naudience = \"a\"");
    assert_eq!(warnings(&p), ["issuer"]);
    assert!(p[0].message.contains("plain http"));
    for local in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
    ] {
        let (_, p) = compiles(&format!("issuer = \"{local}\"\naudience = \"a\""));
        assert!(p.is_empty(), "{local}: {p:?}");
    }
    // With an explicit jwks the issuer is only compared with `iss`: any string.
    compiles("issuer = \"urn:corp\"\njwks = \"https://idp.example.com/certs\"\naudience = \"a\"");
}

#[test]
fn missing_audience_is_a_warning() {
    let (_, p) = compiles("issuer = \"https://idp.example.com\"");
    assert_eq!(warnings(&p), ["audience"]);
    for bad in [
        "audience = \"\"",
        "audience = []",
        "audience = [1]",
        "audience = 5",
    ] {
        let e = error(&format!("issuer = \"https://idp.example.com\"\n{bad}"));
        assert_eq!(e.key, "audience", "{bad}");
    }
}

#[test]
fn durations_and_numbers() {
    let bad = [
        ("leeway = \"5 parsecs\"", "leeway"),
        ("max_lifetime = \"0s\"", "max_lifetime"),
        ("timeout = \"0ms\"", "timeout"),
        ("jwks_min_refresh = \"100ms\"", "jwks_min_refresh"),
        (
            "jwks_refresh = { min = \"1h\", max = \"1m\" }",
            "jwks_refresh",
        ),
        ("jwks_refresh = { min = \"10ms\" }", "jwks_refresh.min"),
        ("cache_size = -1", "cache_size"),
        ("cache_size = 100000000", "cache_size"),
        ("require_typ = \"\"", "require_typ"),
    ];
    for (line, key) in bad {
        let e = error(&format!("{ISSUER}{line}"));
        assert_eq!(e.key, key, "{line}");
    }
    let (_, p) = compiles(&format!("{ISSUER}leeway = \"10m\""));
    assert_eq!(warnings(&p), ["leeway"]);
}

#[test]
fn files_that_cannot_be_used() {
    let dir = TempDir::new();
    let e = error_in(dir.path(), "public_key_file = \"missing.pem\"");
    assert!(e.message.contains("cannot be read"), "{}", e.message);
    assert!(e.message.contains("missing.pem"));
    dir.write("private.pem", &fixture("rsa-private.pem"));
    let e = error_in(dir.path(), "public_key_file = \"private.pem\"");
    assert!(e.message.contains("private key"), "{}", e.message);
    assert!(e.hint.unwrap().contains("-pubout"));
    dir.write("empty.key", b"");
    let e = error_in(dir.path(), "secret_file = \"empty.key\"");
    assert!(e.message.contains("empty"));
    dir.write("small.pem", &fixture("rsa1024-public.pem"));
    let e = error_in(dir.path(), "public_key_file = \"small.pem\"");
    assert!(e.message.contains("1024 bits"), "{}", e.message);
}

#[test]
fn a_ca_file_is_read_and_checked() {
    let dir = TempDir::new();
    dir.write("ca.pem", &fixture("ca.pem"));
    dir.write("junk.pem", b"not a certificate");
    let (s, _) = compile_in(dir.path(), &format!("{ISSUER}ca_file = \"ca.pem\""));
    let KeySource::Remote(r) = s.unwrap().keys else {
        panic!()
    };
    assert_eq!(r.ca.unwrap(), fixture("ca.pem"));
    let e = error_in(dir.path(), &format!("{ISSUER}ca_file = \"junk.pem\""));
    assert_eq!(e.key, "ca_file");
    assert!(e.message.contains("no PEM certificate"), "{}", e.message);
}

#[test]
fn unknown_keys_are_still_refused() {
    let r: Result<JwtConfig, _> = toml::from_str("isuer = \"x\"");
    assert!(r.is_err());
}
