//! Key sets: the keys a policy verifies signatures with, where they come from (a JWKS
//! document, a PEM public key file, an HMAC secret) and which key a token may use.
//!
//! A key verifies only the algorithms of its type ([`KeyKind`]), and a JWK that names an
//! `alg` only that one: an RSA public key is never an HMAC secret, whatever a token's
//! header says. A JWKS never supplies HMAC keys (`kty: oct`), and keys that are not for
//! signatures (`use` other than `sig`), of unknown types, or too weak (RSA under 2048
//! bits) are left out of the set.
//!
//! Signatures are checked with ring, through [`super::ring_provider`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use thiserror::Error;

use super::ring_provider::{self, PROVIDER};
use super::verify::{algorithm, algorithm_name};

/// RSA keys shorter than this are refused (NIST SP 800-131A; RFC 7518 §3.3 requires 2048).
pub const MIN_RSA_BITS: usize = 2048;
/// The longest modulus accepted. ring verifies up to 8192 bits, but the cost of a check
/// grows with the square of the length, and every token with a well-formed but wrong
/// signature costs one: 4096 bits bounds what a flood of them costs.
pub const MAX_RSA_BITS: usize = 4096;
/// The largest public exponent ring verifies with (2^33 - 1): a key with a larger one
/// could never verify.
pub const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// The type of a key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared HMAC secret.
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// The algorithms a key of this kind verifies; the first is the default.
    pub fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => &[HS256, HS384, HS512],
            KeyKind::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            KeyKind::EcP256 => &[ES256],
            KeyKind::EcP384 => &[ES384],
            KeyKind::Ed25519 => &[EdDSA],
        }
    }

    pub fn accepts(self, alg: Algorithm) -> bool {
        self.algorithms().contains(&alg)
    }

    /// The algorithm a policy with this key allows when `algorithms` is not written.
    pub fn default_algorithm(self) -> Algorithm {
        self.algorithms()[0]
    }

    /// "an RSA key", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            KeyKind::Hmac => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// One key of a set.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The JWK's `kid`.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it names one: the key verifies only that.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyingKey {
    fn new(kind: KeyKind, key: DecodingKey) -> VerifyingKey {
        VerifyingKey {
            kid: None,
            kind,
            alg: None,
            key,
        }
    }

    pub fn usable_for(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` (base64url) over `signing_input` with `alg`, which the caller
    /// checked this key is usable for.
    pub fn verifies(&self, signing_input: &str, signature: &str, alg: Algorithm) -> bool {
        ring_provider::verify(&self.key, alg, signing_input.as_bytes(), signature)
    }
}

impl fmt::Debug for VerifyingKey {
    // Never the key material: a secret must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Which key of a set verifies a token.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a VerifyingKey),
    /// The token's `kid` names keys, none of which verifies the token's algorithm.
    Unusable,
    /// No key has the token's `kid` (a refresh may bring it).
    Unknown,
    /// The token names no `kid` and several keys could verify it.
    Ambiguous,
}

/// The keys a policy verifies with, as one immutable snapshot.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// A local key (a PEM file or a secret) verifies every token, whatever its `kid`.
    local: bool,
    /// Identifies the keys (their material, ids, types and algorithms): two sets with equal
    /// fingerprints verify the same tokens.
    fingerprint: [u8; 32],
    /// Counts the changes of a policy's key set; set when published (see [`KeyStore`]).
    pub generation: u64,
}

impl PartialEq for KeySet {
    fn eq(&self, other: &KeySet) -> bool {
        self.local == other.local && self.fingerprint == other.fingerprint
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    fn new(keys: Vec<VerifyingKey>, local: bool) -> KeySet {
        let mut h = Sha256::new();
        for k in &keys {
            // Lengths before variable parts, so no two different sets hash the same input.
            let kid = k.kid.as_deref().unwrap_or("");
            h.update((kid.len() as u64).to_be_bytes());
            h.update(kid.as_bytes());
            h.update([k.kind as u8]);
            h.update(k.alg.map_or("-", algorithm_name).as_bytes());
            match k.key.kind() {
                DecodingKeyKind::SecretOrDer(b) => {
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    h.update((n.len() as u64).to_be_bytes());
                    h.update(n);
                    h.update((e.len() as u64).to_be_bytes());
                    h.update(e);
                }
            }
        }
        KeySet {
            keys,
            local,
            fingerprint: h.finalize().into(),
            generation: 0,
        }
    }

    /// A shared HMAC secret (already checked to be long enough).
    pub fn secret(secret: &[u8]) -> Option<KeySet> {
        let key = DecodingKey::from_secret(secret).ok()?;
        Some(KeySet::new(
            vec![VerifyingKey::new(KeyKind::Hmac, key)],
            true,
        ))
    }

    /// The one key of a local key set.
    pub fn local_kind(&self) -> Option<KeyKind> {
        self.keys.first().filter(|_| self.local).map(|k| k.kind)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key that verifies a token with this `kid` and `alg`.
    ///
    /// A local key is used whatever the `kid`. From a JWKS: with a `kid`, a key with that
    /// `kid` usable for `alg`; without one, the only key usable for `alg` (a token that
    /// leaves the choice open among several is refused rather than tried against each).
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        if self.local {
            return match self.keys.first() {
                Some(k) if k.usable_for(alg) => Lookup::Found(k),
                _ => Lookup::Unusable,
            };
        }
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::Unknown;
                }
                named
                    .find(|k| k.usable_for(alg))
                    .map_or(Lookup::Unusable, Lookup::Found)
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.usable_for(alg));
                match (usable.next(), usable.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    (None, _) => Lookup::Unknown,
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                }
            }
        }
    }

    /// Parses a JWKS document (RFC 7517 §5). Keys ficus cannot or must not use are left
    /// out (see the module doc); a document with no usable key is an error, so a broken
    /// answer never replaces a working key set.
    pub fn from_jwks(doc: &Value) -> Result<KeySet, JwksError> {
        let Some(Value::Array(list)) = doc.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        let keys: Vec<VerifyingKey> = list.iter().filter_map(jwk).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys(list.len()));
        }
        Ok(KeySet::new(keys, false))
    }

    /// A PEM public key file: RSA (PKCS#1 or SPKI), EC P-256 or P-384, or Ed25519 (SPKI).
    pub fn from_public_key_pem(pem: &[u8]) -> Result<KeySet, PemError> {
        let text = std::str::from_utf8(pem).map_err(|_| PemError::NotPem)?;
        let labels: Vec<&str> = text
            .match_indices("-----BEGIN ")
            .filter_map(|(i, _)| text[i + 11..].split_once("-----").map(|(l, _)| l))
            .collect();
        match labels.as_slice() {
            [] => return Err(PemError::NotPem),
            ["PUBLIC KEY" | "RSA PUBLIC KEY"] => {}
            [l] if l.contains("PRIVATE KEY") => return Err(PemError::PrivateKey),
            ["CERTIFICATE"] => return Err(PemError::Certificate),
            [_] => return Err(PemError::Unsupported),
            _ => return Err(PemError::SeveralBlocks),
        }
        let key = if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
            let der = rsa.try_get_as_bytes().map_err(|_| PemError::Unsupported)?;
            let (n, e) = (PROVIDER.key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|_| PemError::Invalid)?;
            rsa_key(&n, &e).map_err(PemError::Rsa)?
        } else if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
            let point = ec.try_get_as_bytes().map_err(|_| PemError::Invalid)?;
            let kind = match point.len() {
                65 => KeyKind::EcP256,
                97 => KeyKind::EcP384,
                _ => return Err(PemError::Unsupported),
            };
            checked(kind, ec).ok_or(PemError::Invalid)?
        } else if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
            checked(KeyKind::Ed25519, ed).ok_or(PemError::Invalid)?
        } else {
            return Err(PemError::Unsupported);
        };
        Ok(KeySet::new(vec![key], true))
    }
}

/// Why a JWKS document gave no key set.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("the JWKS has no `keys` array")]
    NoKeys,
    #[error("none of the JWKS's {0} keys is a usable signature key")]
    NoUsableKeys(usize),
}

/// Why a PEM file gave no key.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PemError {
    #[error("it is not a PEM file")]
    NotPem,
    #[error("it holds a private key")]
    PrivateKey,
    #[error("it holds a certificate, not a public key")]
    Certificate,
    #[error("it holds more than one PEM block")]
    SeveralBlocks,
    #[error("it is not an RSA, EC P-256, EC P-384 or Ed25519 public key")]
    Unsupported,
    #[error("its key is invalid")]
    Invalid,
    #[error("{0}")]
    Rsa(RsaError),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RsaError {
    #[error("its RSA key has {0} bits; at least {MIN_RSA_BITS} are required")]
    TooShort(usize),
    #[error("its RSA key has {0} bits; at most {MAX_RSA_BITS} are supported")]
    TooLong(usize),
    #[error("its RSA public exponent is invalid")]
    Exponent,
}

/// An RSA key from its big-endian modulus and exponent, within the sizes ficus accepts.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<VerifyingKey, RsaError> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(RsaError::TooShort(bits));
    }
    if bits > MAX_RSA_BITS {
        return Err(RsaError::TooLong(bits));
    }
    // An even or tiny exponent is not an RSA key; ring verifies with none over 33 bits
    // (nobody issues one: 65537 is the norm).
    let value = match e.len() {
        1..=8 => e.iter().fold(0u64, |v, &b| v << 8 | u64::from(b)),
        _ => 0,
    };
    if value & 1 == 0 || !(3..=MAX_RSA_EXPONENT).contains(&value) {
        return Err(RsaError::Exponent);
    }
    Ok(VerifyingKey::new(
        KeyKind::Rsa,
        DecodingKey::from_rsa_raw_components(n, e),
    ))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// `key` as a key of `kind`, if ring can verify with it (an EC point on its curve, an
/// Ed25519 key of 32 bytes).
fn checked(kind: KeyKind, key: DecodingKey) -> Option<VerifyingKey> {
    ring_provider::usable(&key, kind.default_algorithm()).then(|| VerifyingKey::new(kind, key))
}

/// One JWK as a verifying key, or `None` when ficus does not use it.
fn jwk(k: &Value) -> Option<VerifyingKey> {
    let text = |name: &str| k.get(name).and_then(Value::as_str);
    if k.get("use").is_some() && text("use") != Some("sig") {
        return None;
    }
    if let Some(ops) = k.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return None;
        }
    }
    let alg = match k.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(algorithm(a)?),
        Some(_) => return None,
    };
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(text(name)?).ok();
    let mut key = match (text("kty")?, text("crv")) {
        ("RSA", _) => rsa_key(&b64("n")?, &b64("e")?).ok()?,
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kind, len) = match crv {
                "P-256" => (KeyKind::EcP256, 32),
                _ => (KeyKind::EcP384, 48),
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let key = DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?;
            checked(kind, key)?
        }
        ("OKP", Some("Ed25519")) => {
            let key = DecodingKey::from_ed_components(text("x")?).ok()?;
            checked(KeyKind::Ed25519, key)?
        }
        // `oct` (shared secrets) never come from a JWKS; other types and curves are not
        // supported.
        _ => return None,
    };
    if alg.is_some_and(|a| !key.kind.accepts(a)) {
        return None;
    }
    key.kid = match k.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return None,
    };
    key.alg = alg;
    Some(key)
}

/// A policy's current key set, replaced as a whole when a fetch brings a different one.
///
/// The generation counts changes; verified-token cache entries carry the generation they
/// were verified under and are void once it moves on, so a token signed by a key that has
/// disappeared stops passing at once.
#[derive(Debug, Default)]
pub struct KeyStore {
    current: RwLock<Option<Arc<KeySet>>>,
    generation: AtomicU64,
}

impl KeyStore {
    /// A store holding `set` (a local key, which never changes; or the key set a rebuilt
    /// policy inherits).
    pub fn fixed(set: Arc<KeySet>) -> KeyStore {
        KeyStore {
            generation: AtomicU64::new(set.generation),
            current: RwLock::new(Some(set)),
        }
    }

    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The generation of the current set (cheap: one atomic load).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `set` current unless it equals the current one; `true` when it changed.
    pub fn publish(&self, mut set: KeySet) -> bool {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.as_deref() {
            if *old == set {
                return false;
            }
            set.generation = old.generation + 1;
        }
        let generation = set.generation;
        *current = Some(Arc::new(set));
        // After the swap: an entry tagged with the new generation was verified with the
        // new set. (Until this store, entries of the old generation still hit: they were
        // verified with keys that were current a moment ago.)
        self.generation.store(generation, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests;
