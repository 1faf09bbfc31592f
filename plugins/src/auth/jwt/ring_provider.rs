//! ring as the cryptography of jsonwebtoken: a [`CryptoProvider`] whose verifiers are
//! ring's (the library rustls already links for TLS), in place of jsonwebtoken's
//! RustCrypto backend, which is not compiled at all.
//!
//! ficus calls this provider explicitly ([`verify`], [`usable`], [`PROVIDER`]'s key
//! utilities): which code checks a signature never depends on the process-wide default.
//! [`install`] still makes it that default, once, so that jsonwebtoken's own functions
//! (`encode`, which the tests and benches sign with) use ring too, and so that a second
//! provider in the process is an error rather than a silent change of backend.
//!
//! What each algorithm gets (RFC 7518): HS256/384/512 ring's HMAC, checked in constant
//! time; RS256/384/512 RSASSA-PKCS1-v1_5 and PS256/384/512 RSASSA-PSS (salt as long as the
//! hash), both for 2048-bit moduli and longer (the key set caps them at
//! [`MAX_RSA_BITS`](super::keys::MAX_RSA_BITS)); ES256 and ES384 ECDSA with the fixed-width
//! `r || s` signatures of JWS (not DER) on P-256 with SHA-256 and P-384 with SHA-384 only;
//! EdDSA Ed25519. A key verifies only the algorithms of its own family, whatever it is
//! asked for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as sig;
use ring::{agreement, digest, hmac, rand};
use std::sync::OnceLock;

/// The provider. Signing works (tests and benches forge tokens with it); ficus itself only
/// ever verifies.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(no_private_keys()),
        rsa_pub_components_from_public_key: rsa_components,
        ec_pub_components_from_private_key: |_, _| Err(no_private_keys()),
        ed_pub_components_from_private_key: |_, _| Err(no_private_keys()),
        compute_digest,
    },
};

/// Another crypto provider was made jsonwebtoken's default before ficus's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherProvider;

/// Makes [`PROVIDER`] jsonwebtoken's process-wide default. The first call installs it;
/// every call returns that first outcome. An error means some other code installed a
/// different provider first: a build mistake, to report, never to ignore.
pub fn install() -> std::result::Result<(), OtherProvider> {
    static INSTALLED: OnceLock<std::result::Result<(), OtherProvider>> = OnceLock::new();
    *INSTALLED.get_or_init(|| match PROVIDER.install_default() {
        Ok(()) => Ok(()),
        Err(other) if std::ptr::eq(other, &PROVIDER) => Ok(()),
        Err(_) => Err(OtherProvider),
    })
}

/// Whether `signature` (base64url) is `key`'s signature of `message` with `alg`. A key of
/// another family than `alg`'s, or a signature that is not base64url, is not.
pub fn verify(key: &DecodingKey, alg: Algorithm, message: &[u8], signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    (PROVIDER.verifier_factory)(&alg, key).is_ok_and(|v| v.verify(message, &signature).is_ok())
}

/// Whether `key` can verify `alg` at all: its family and encoding fit, and an EC key is a
/// point on its curve (ring checks that only while verifying, where a bad point just fails
/// every signature; this finds it when the key is loaded).
pub fn usable(key: &DecodingKey, alg: Algorithm) -> bool {
    if (PROVIDER.verifier_factory)(&alg, key).is_err() {
        return false;
    }
    let curve = match alg {
        Algorithm::ES256 => &agreement::ECDH_P256,
        Algorithm::ES384 => &agreement::ECDH_P384,
        _ => return true,
    };
    // ECDH parses the peer's point as ECDSA verification does (on the curve, not the
    // point at infinity), and fails for nothing else: the curves have no small subgroup.
    let Ok(point) = key.try_get_as_bytes() else {
        return false;
    };
    let Ok(ours) = agreement::EphemeralPrivateKey::generate(curve, &rand::SystemRandom::new())
    else {
        // No randomness to check with: keep the key, whose every use ring checks anyway.
        return true;
    };
    let theirs = agreement::UnparsedPublicKey::new(curve, point);
    agreement::agree_ephemeral(ours, &theirs, |_| ()).is_ok()
}

/// A verifier for `alg` with `key` (jsonwebtoken's `verifier_factory`).
fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let check = match (alg.family(), key.kind()) {
        (AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => {
            Check::Hmac(hmac::Key::new(hmac_algorithm(alg)?, secret))
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => Check::Rsa {
            params: rsa_parameters(alg)?,
            key: sig::RsaPublicKeyComponents {
                n: n.clone(),
                e: e.clone(),
            },
        },
        // PKCS#1 `RSAPublicKey` DER, parsed by ring on each verification.
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => Check::Public(
            sig::UnparsedPublicKey::new(rsa_parameters(alg)?, der.clone()),
        ),
        // The uncompressed point `0x04 || x || y`, as jsonwebtoken keeps an EC key from a
        // JWK's components or a PEM's SubjectPublicKeyInfo.
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let (algorithm, len): (&'static sig::EcdsaVerificationAlgorithm, _) = match alg {
                Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED, 65),
                Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED, 97),
                _ => return Err(unsupported()),
            };
            if point.len() != len || point[0] != 0x04 {
                return Err(ErrorKind::InvalidEcdsaKey.into());
            }
            Check::Public(sig::UnparsedPublicKey::new(algorithm, point.clone()))
        }
        // The 32-byte public key, from a JWK's `x` or a PEM.
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(public))
            if alg == Algorithm::EdDSA && public.len() == 32 =>
        {
            Check::Public(sig::UnparsedPublicKey::new(&sig::ED25519, public.clone()))
        }
        _ => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    Ok(Box::new(RingVerifier { alg, check }))
}

struct RingVerifier {
    alg: Algorithm,
    check: Check,
}

enum Check {
    Hmac(hmac::Key),
    Rsa {
        params: &'static sig::RsaParameters,
        key: sig::RsaPublicKeyComponents<Vec<u8>>,
    },
    Public(sig::UnparsedPublicKey<Vec<u8>>),
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        match &self.check {
            Check::Hmac(key) => hmac::verify(key, msg, signature),
            Check::Rsa { params, key } => key.verify(params, msg, signature),
            Check::Public(key) => key.verify(msg, signature),
        }
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

// Every algorithm is named: an algorithm jsonwebtoken might add to a family is refused,
// never verified as a neighbour.

fn hmac_algorithm(alg: Algorithm) -> Result<hmac::Algorithm> {
    Ok(match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => return Err(unsupported()),
    })
}

fn rsa_parameters(alg: Algorithm) -> Result<&'static sig::RsaParameters> {
    Ok(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return Err(unsupported()),
    })
}

fn unsupported() -> Error {
    ErrorKind::UnsupportedAlgorithm.into()
}

/// A signer for `alg` with `key` (jsonwebtoken's `signer_factory`): an HMAC secret, an RSA
/// private key as PKCS#1 DER, or an EC or Ed25519 one as PKCS#8, as jsonwebtoken's
/// `EncodingKey::from_*_pem` keeps them.
fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let der = key.as_bytes();
    let sign = match alg.family() {
        AlgorithmFamily::Hmac => Sign::Hmac(hmac::Key::new(hmac_algorithm(alg)?, der)),
        AlgorithmFamily::Rsa => {
            let pair = sig::RsaKeyPair::from_der(der)
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
            let padding: &'static dyn sig::RsaEncoding = match alg {
                Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                Algorithm::PS512 => &sig::RSA_PSS_SHA512,
                Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                _ => return Err(unsupported()),
            };
            Sign::Rsa(pair, padding)
        }
        AlgorithmFamily::Ec => {
            let algorithm = match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                _ => return Err(unsupported()),
            };
            let pair = sig::EcdsaKeyPair::from_pkcs8(algorithm, der, &rand::SystemRandom::new())
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
            Sign::Ecdsa(pair)
        }
        AlgorithmFamily::Ed => Sign::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
    };
    Ok(Box::new(RingSigner { alg, sign }))
}

struct RingSigner {
    alg: Algorithm,
    sign: Sign,
}

enum Sign {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = rand::SystemRandom::new();
        let failed = |_| signature::Error::new();
        Ok(match &self.sign {
            Sign::Hmac(key) => hmac::sign(key, msg).as_ref().to_vec(),
            Sign::Rsa(pair, padding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, &rng, msg, &mut out).map_err(failed)?;
                out
            }
            Sign::Ecdsa(pair) => pair.sign(&rng, msg).map_err(failed)?.as_ref().to_vec(),
            Sign::Ed25519(pair) => pair.sign(msg).as_ref().to_vec(),
        })
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The modulus and exponent of a PKCS#1 `RSAPublicKey` (what jsonwebtoken's
/// `DecodingKey::from_rsa_pem` keeps of both PEM forms), big-endian without leading zeros.
/// Parsed with `simple_asn1`, the DER parser jsonwebtoken has already run over the PEM.
fn rsa_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    use simple_asn1::ASN1Block::{Integer, Sequence};
    let invalid = || Error::from(ErrorKind::InvalidRsaKey("not an RSAPublicKey".into()));
    let blocks = simple_asn1::from_der(der).map_err(|_| invalid())?;
    let [Sequence(_, fields)] = blocks.as_slice() else {
        return Err(invalid());
    };
    let [Integer(_, n), Integer(_, e)] = fields.as_slice() else {
        return Err(invalid());
    };
    // Negative and zero integers are no modulus or exponent.
    let positive = |i: &simple_asn1::BigInt| {
        i.to_biguint()
            .filter(|u| u.bits() > 0)
            .map(|u| u.to_bytes_be())
    };
    Ok((
        positive(n).ok_or_else(invalid)?,
        positive(e).ok_or_else(invalid)?,
    ))
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

fn no_private_keys() -> Error {
    ErrorKind::Provider("ficus's ring provider derives no public key from a private one".into())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::testing::fixture;
    use crate::auth::jwt::verify::ALGORITHMS;
    use ring::signature::KeyPair as _;
    use serde_json::Value;

    /// The HMAC secret of the `HS*` tokens of `signed-by-openssl.json`.
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn pem(name: &str) -> Vec<u8> {
        fixture(&format!("{name}-public.pem"))
    }

    fn jwk(name: &str) -> Value {
        serde_json::from_slice(&fixture(&format!("{name}-public.jwk.json"))).unwrap()
    }

    /// A key pair generated for the test: a key of the right type that signed nothing.
    fn stranger(alg: Algorithm) -> DecodingKey {
        let rng = rand::SystemRandom::new();
        match alg {
            Algorithm::EdDSA => {
                let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                DecodingKey::from_ed_der(pair.public_key().as_ref())
            }
            _ => {
                let curve = match alg {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    _ => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                };
                let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(curve, &rng).unwrap();
                let pair = sig::EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref(), &rng).unwrap();
                DecodingKey::from_ec_der(pair.public_key().as_ref())
            }
        }
    }

    /// The keys that verify the fixture token of `alg`, in every form jsonwebtoken keeps
    /// them (a PEM's DER, a JWK's components), and keys of the same type that do not.
    fn keys(alg: Algorithm) -> (Vec<DecodingKey>, Vec<DecodingKey>) {
        let components = |name: &str| {
            let k = jwk(name);
            let text = |m: &str| k[m].as_str().unwrap().to_string();
            (text("x"), text("y"))
        };
        match alg.family() {
            AlgorithmFamily::Hmac => (
                vec![DecodingKey::from_secret(SECRET).unwrap()],
                vec![DecodingKey::from_secret(b"0123456789abcdef0123456789abcdeF").unwrap()],
            ),
            AlgorithmFamily::Rsa => {
                let rsa = |name: &str| {
                    let k = jwk(name);
                    let n = k["n"].as_str().unwrap();
                    let e = k["e"].as_str().unwrap();
                    vec![
                        DecodingKey::from_rsa_pem(&pem(name)).unwrap(),
                        DecodingKey::from_rsa_components(n, e).unwrap(),
                    ]
                };
                let mut pkcs1 = rsa("rsa");
                pkcs1.push(DecodingKey::from_rsa_pem(&fixture("rsa-public-pkcs1.pem")).unwrap());
                (pkcs1, rsa("rsa2"))
            }
            AlgorithmFamily::Ec => {
                let name = if alg == Algorithm::ES256 {
                    "ec256"
                } else {
                    "ec384"
                };
                let (x, y) = components(name);
                (
                    vec![
                        DecodingKey::from_ec_pem(&pem(name)).unwrap(),
                        DecodingKey::from_ec_components(&x, &y).unwrap(),
                    ],
                    vec![stranger(alg)],
                )
            }
            AlgorithmFamily::Ed => {
                let x = jwk("ed25519")["x"].as_str().unwrap().to_string();
                (
                    vec![
                        DecodingKey::from_ed_pem(&pem("ed25519")).unwrap(),
                        DecodingKey::from_ed_components(&x).unwrap(),
                    ],
                    vec![stranger(alg)],
                )
            }
        }
    }

    fn flip_bit(bytes: &mut [u8], at: usize) {
        bytes[at] ^= 0x01;
    }

    /// Tokens signed by OpenSSL (through Node: `tests/fixtures/jwt/sign-fixtures.mjs`), so
    /// a mistake made alike in ring's signing and verifying (DER for `r || s`, the PSS
    /// salt length) cannot pass unseen.
    #[test]
    fn every_algorithm_verifies_a_good_signature_and_nothing_else() {
        let tokens: Value = serde_json::from_slice(&fixture("signed-by-openssl.json")).unwrap();
        for (name, alg) in ALGORITHMS {
            let token = tokens[name].as_str().unwrap();
            let (input, signature) = token.rsplit_once('.').unwrap();
            let input = input.as_bytes();
            let (good, others) = keys(alg);
            let raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
            for key in &good {
                assert!(verify(key, alg, input, signature), "{name}");
                // One bit flipped anywhere in the signature, or in what it covers.
                for at in [0, raw.len() / 2, raw.len() - 1] {
                    let mut bad = raw.clone();
                    flip_bit(&mut bad, at);
                    let bad = URL_SAFE_NO_PAD.encode(&bad);
                    assert!(
                        !verify(key, alg, input, &bad),
                        "{name}, bit flipped at {at}"
                    );
                }
                let mut bad_input = input.to_vec();
                flip_bit(&mut bad_input, input.len() - 1);
                assert!(!verify(key, alg, &bad_input, signature), "{name}");
                // Truncated, extended, empty, not base64url.
                let short = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
                let long = URL_SAFE_NO_PAD.encode([&raw[..], &[0]].concat());
                for bad in [short.as_str(), &long, "", "!!!!", &format!("{signature}=")] {
                    assert!(!verify(key, alg, input, bad), "{name}: {bad}");
                }
                // The same key, asked for any other algorithm.
                for (other_name, other_alg) in ALGORITHMS {
                    if other_alg != alg {
                        assert!(
                            !verify(key, other_alg, input, signature),
                            "{name} as {other_name}"
                        );
                    }
                }
            }
            for key in &others {
                assert!(!verify(key, alg, input, signature), "{name}, wrong key");
            }
        }
    }

    #[test]
    fn a_public_key_is_never_an_hmac_secret() {
        // The classic confusion: an HS256 token "signed" with the RSA public key's bytes.
        let rsa = DecodingKey::from_rsa_pem(&pem("rsa")).unwrap();
        let der = rsa.try_get_as_bytes().unwrap();
        let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9";
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, der), input);
        let forged = URL_SAFE_NO_PAD.encode(tag.as_ref());
        assert!(!verify(&rsa, Algorithm::HS256, input, &forged));
        assert!(!usable(&rsa, Algorithm::HS256));
        let secret = DecodingKey::from_secret(SECRET).unwrap();
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert!(!usable(&secret, alg), "{alg:?}");
        }
    }

    #[test]
    fn keys_ring_cannot_verify_with_are_not_usable() {
        let (x, y) = (jwk("ec256")["x"].clone(), jwk("ec256")["y"].clone());
        let p256 = DecodingKey::from_ec_components(x.as_str().unwrap(), y.as_str().unwrap());
        assert!(usable(&p256.clone().unwrap(), Algorithm::ES256));
        // The right length, but not a point on P-256.
        let mut off_curve = vec![0x04];
        off_curve.extend([1; 64]);
        assert!(!usable(
            &DecodingKey::from_ec_der(&off_curve),
            Algorithm::ES256
        ));
        // A compressed point; a P-256 point for ES384; a P-384 one for ES256.
        let mut compressed = vec![0x02];
        compressed.extend_from_slice(&p256.unwrap().try_get_as_bytes().unwrap()[1..33]);
        assert!(!usable(
            &DecodingKey::from_ec_der(&compressed),
            Algorithm::ES256
        ));
        let p256 = DecodingKey::from_ec_pem(&pem("ec256")).unwrap();
        let p384 = DecodingKey::from_ec_pem(&pem("ec384")).unwrap();
        assert!(usable(&p384, Algorithm::ES384));
        assert!(!usable(&p256, Algorithm::ES384));
        assert!(!usable(&p384, Algorithm::ES256));
        // Ed25519 keys are 32 bytes.
        for len in [0, 31, 33, 64] {
            assert!(!usable(
                &DecodingKey::from_ed_der(&vec![9; len]),
                Algorithm::EdDSA
            ));
        }
        assert!(usable(
            &DecodingKey::from_ed_pem(&pem("ed25519")).unwrap(),
            Algorithm::EdDSA
        ));
    }

    #[test]
    fn rsa_components_from_pkcs1_der() {
        let k = jwk("rsa");
        let b64 = |m: &str| URL_SAFE_NO_PAD.decode(k[m].as_str().unwrap()).unwrap();
        for file in ["rsa-public.pem", "rsa-public-pkcs1.pem"] {
            let key = DecodingKey::from_rsa_pem(&fixture(file)).unwrap();
            let (n, e) = rsa_components(key.try_get_as_bytes().unwrap()).unwrap();
            assert_eq!((n, e), (b64("n"), b64("e")), "{file}");
        }
        // SEQUENCE { INTEGER 5, INTEGER 3 }; then a third INTEGER, a negative one, none.
        assert_eq!(
            rsa_components(&[0x30, 6, 2, 1, 5, 2, 1, 3]).unwrap(),
            (vec![5], vec![3])
        );
        for bad in [
            &[0x30, 9, 2, 1, 5, 2, 1, 3, 2, 1, 1][..],
            &[0x30, 6, 2, 1, 0xfb, 2, 1, 3],
            &[0x30, 6, 2, 1, 0, 2, 1, 3],
            &[0x30, 3, 2, 1, 5],
            &[0x30, 6, 2, 1, 5, 2, 1, 3, 0],
            &[0x04, 2, 1, 5],
            b"",
        ] {
            assert!(rsa_components(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ring_is_jsonwebtokens_default() {
        assert_eq!(install(), Ok(()));
        assert_eq!(install(), Ok(()));
        let installed = CryptoProvider::try_get_default().expect("installed");
        assert!(std::ptr::eq(installed, &PROVIDER));
        // And jsonwebtoken's own functions use it: an HS256 round trip.
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap();
        let sig = jsonwebtoken::crypto::sign(b"a.b", &key, Algorithm::HS256).unwrap();
        assert!(verify(
            &DecodingKey::from_secret(SECRET).unwrap(),
            Algorithm::HS256,
            b"a.b",
            &sig
        ));
    }
}
