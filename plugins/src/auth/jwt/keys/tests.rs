//! The unit tests of key sets: PEM public keys, the JWKS keys left out of a set, the
//! algorithms a key verifies, which key a token's `kid` and `alg` choose, a set's
//! generation, and key material kept out of `Debug`.

use super::*;
use crate::auth::jwt::testing::{fixture, jwk_with};
use serde_json::json;

fn jwks(keys: Vec<Value>) -> Value {
    json!({ "keys": keys })
}

#[test]
fn pem_public_keys_of_every_supported_type() {
    for (file, kind) in [
        ("rsa-public.pem", KeyKind::Rsa),
        ("rsa-public-pkcs1.pem", KeyKind::Rsa),
        ("ec256-public.pem", KeyKind::EcP256),
        ("ec384-public.pem", KeyKind::EcP384),
        ("ed25519-public.pem", KeyKind::Ed25519),
    ] {
        let set = KeySet::from_public_key_pem(&fixture(file)).unwrap();
        assert_eq!(set.local_kind(), Some(kind), "{file}");
    }
    // PKCS#1 and SPKI forms of one key are the same key.
    assert_eq!(
        KeySet::from_public_key_pem(&fixture("rsa-public.pem")).unwrap(),
        KeySet::from_public_key_pem(&fixture("rsa-public-pkcs1.pem")).unwrap()
    );
}

#[test]
fn pem_files_that_are_not_one_usable_public_key() {
    let refused = |bytes: &[u8]| KeySet::from_public_key_pem(bytes).unwrap_err();
    assert_eq!(refused(&fixture("rsa-private.pem")), PemError::PrivateKey);
    assert_eq!(refused(&fixture("ec256-private.pem")), PemError::PrivateKey);
    assert_eq!(refused(b"hello"), PemError::NotPem);
    assert_eq!(
        refused(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        PemError::Certificate
    );
    let two = [fixture("rsa-public.pem"), fixture("rsa2-public.pem")].concat();
    assert_eq!(refused(&two), PemError::SeveralBlocks);
    assert_eq!(
        refused(&fixture("rsa1024-public.pem")),
        PemError::Rsa(RsaError::TooShort(1024))
    );
    assert!(matches!(
        refused(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        PemError::Unsupported | PemError::Invalid
    ));
}

#[test]
fn a_key_verifies_only_the_algorithms_of_its_type() {
    let rsa = KeySet::from_public_key_pem(&fixture("rsa-public.pem")).unwrap();
    assert!(matches!(
        rsa.select(None, Algorithm::RS256),
        Lookup::Found(_)
    ));
    assert!(matches!(
        rsa.select(Some("anything"), Algorithm::PS512),
        Lookup::Found(_)
    ));
    // The classic confusion: an RSA public key used as an HMAC secret.
    for alg in [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA] {
        assert!(matches!(rsa.select(None, alg), Lookup::Unusable), "{alg:?}");
    }
    let secret = KeySet::secret(&[7; 32]).unwrap();
    assert!(matches!(
        secret.select(None, Algorithm::RS256),
        Lookup::Unusable
    ));
    assert!(matches!(
        secret.select(None, Algorithm::HS512),
        Lookup::Found(_)
    ));
}

#[test]
fn jwks_keys_that_are_left_out() {
    let rsa = jwk_with("rsa-public.jwk.json", json!({"kid": "r1"}));
    let set = KeySet::from_jwks(&jwks(vec![
        rsa.clone(),
        jwk_with("rsa2-public.jwk.json", json!({"kid": "enc", "use": "enc"})),
        jwk_with(
            "rsa2-public.jwk.json",
            json!({"kid": "ops", "key_ops": ["encrypt"]}),
        ),
        jwk_with("rsa1024-public.jwk.json", json!({"kid": "small"})),
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}),
        jwk_with(
            "ec256-public.jwk.json",
            json!({"kid": "wrong-alg", "alg": "ES384"}),
        ),
        jwk_with(
            "ec256-public.jwk.json",
            json!({"kid": "bad-alg", "alg": "none"}),
        ),
        json!({"kty": "EC", "crv": "P-256", "kid": "off-curve", "x": "AQ", "y": "AQ"}),
        json!({"kty": "EC", "crv": "P-256", "kid": "off-curve-32",
               "x": URL_SAFE_NO_PAD.encode([1; 32]), "y": URL_SAFE_NO_PAD.encode([1; 32])}),
        // e = 2^33 + 1: more than ring verifies with.
        jwk_with(
            "rsa2-public.jwk.json",
            json!({"kid": "big-e", "e": "AgAAAAE"}),
        ),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AQID"}),
        json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AQID"}),
        json!("not a key"),
    ]))
    .unwrap();
    assert_eq!(set.len(), 1);
    assert!(matches!(
        set.select(Some("r1"), Algorithm::RS256),
        Lookup::Found(_)
    ));
    for kid in [
        "enc",
        "ops",
        "small",
        "hmac",
        "wrong-alg",
        "off-curve",
        "off-curve-32",
        "big-e",
        "short",
    ] {
        assert!(
            matches!(set.select(Some(kid), Algorithm::RS256), Lookup::Unknown),
            "{kid}"
        );
    }
    assert_eq!(
        KeySet::from_jwks(&jwks(vec![json!({"kty": "oct", "k": "AA"})])).unwrap_err(),
        JwksError::NoUsableKeys(1)
    );
    assert_eq!(
        KeySet::from_jwks(&json!({})).unwrap_err(),
        JwksError::NoKeys
    );
    assert_eq!(
        KeySet::from_jwks(&json!({"keys": "k"})).unwrap_err(),
        JwksError::NoKeys
    );
}

#[test]
fn rsa_exponents_ring_verifies_with() {
    let k = jwk_with("rsa-public.jwk.json", json!({}));
    let n = URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap();
    for e in [
        &[3][..],
        &[1, 0, 1],
        &[0, 1, 0, 1],
        &[1, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(rsa_key(&n, e).is_ok(), "{e:?}");
    }
    for e in [
        &[][..],
        &[0],
        &[1],
        &[2],
        &[1, 0, 0],
        &[2, 0, 0, 0, 1],
        &[1; 9],
    ] {
        assert_eq!(rsa_key(&n, e).unwrap_err(), RsaError::Exponent, "{e:?}");
    }
}

#[test]
fn kid_and_alg_choose_the_key() {
    let set = KeySet::from_jwks(&jwks(vec![
        jwk_with("rsa-public.jwk.json", json!({"kid": "r1", "alg": "RS256"})),
        jwk_with("rsa2-public.jwk.json", json!({"kid": "r2", "use": "sig"})),
        jwk_with("ec256-public.jwk.json", json!({"kid": "e1"})),
        jwk_with("ec384-public.jwk.json", json!({"kid": "e2"})),
        jwk_with("ed25519-public.jwk.json", json!({"kid": "d1"})),
    ]))
    .unwrap();
    assert_eq!(set.len(), 5);
    let found = |kid, alg| match set.select(kid, alg) {
        Lookup::Found(k) => k.kid.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(found(Some("r1"), Algorithm::RS256).as_deref(), Some("r1"));
    assert_eq!(found(Some("r2"), Algorithm::PS256).as_deref(), Some("r2"));
    assert_eq!(found(Some("e1"), Algorithm::ES256).as_deref(), Some("e1"));
    assert_eq!(found(None, Algorithm::ES384).as_deref(), Some("e2"));
    assert_eq!(found(None, Algorithm::EdDSA).as_deref(), Some("d1"));
    // The JWK pins RS256: not PS256 with that key.
    assert!(matches!(
        set.select(Some("r1"), Algorithm::PS256),
        Lookup::Unusable
    ));
    assert!(matches!(
        set.select(Some("e1"), Algorithm::HS256),
        Lookup::Unusable
    ));
    assert!(matches!(
        set.select(Some("zz"), Algorithm::RS256),
        Lookup::Unknown
    ));
    // Two RSA keys and no kid: refused, not tried one after the other.
    assert!(matches!(
        set.select(None, Algorithm::RS256),
        Lookup::Ambiguous
    ));
}

#[test]
fn a_changed_set_moves_the_generation_an_equal_one_does_not() {
    let a = || {
        KeySet::from_jwks(&jwks(vec![jwk_with(
            "rsa-public.jwk.json",
            json!({"kid": "a"}),
        )]))
    };
    let store = KeyStore::default();
    assert!(store.current().is_none());
    assert!(store.publish(a().unwrap()));
    assert_eq!(store.generation(), 0);
    assert!(!store.publish(a().unwrap()));
    assert_eq!(store.generation(), 0);
    let renamed = KeySet::from_jwks(&jwks(vec![jwk_with(
        "rsa-public.jwk.json",
        json!({"kid": "b"}),
    )]))
    .unwrap();
    assert!(store.publish(renamed));
    assert_eq!(store.generation(), 1);
    assert_eq!(store.current().unwrap().generation, 1);
    assert_ne!(
        KeySet::secret(&[1; 32]).unwrap(),
        KeySet::secret(&[2; 32]).unwrap()
    );
}

#[test]
fn debug_output_never_shows_key_material() {
    let set = KeySet::secret(b"0123456789abcdef0123456789abcdef").unwrap();
    let shown = format!("{set:?}");
    assert!(!shown.contains("0123456789"), "{shown}");
    assert!(!shown.contains("48, 49, 50"), "{shown}");
}
