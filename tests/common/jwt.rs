//! JWTs that tests make and read themselves, for the attacks a gateway must refuse: an RSA
//! [`TestKey`] (made by Node; private and public, as JWK and PEM), [`sign_jwt`] (RS256),
//! [`hs256_jwt`], [`unsigned_jwt`] (`alg: none`), [`verify_rs256`], [`jwt_parts`], and
//! base64url and PEM by hand.
//!
//! ```ignore
//! let key = TestKey::generate("evil");
//! let token = sign_jwt(&json!({ "alg": "RS256", "kid": "evil" }), &claims, &key);
//! let confused = hs256_jwt(&json!({ "alg": "HS256" }), &claims, idp.public_key_pem().as_bytes());
//! ```
//!
//! Signatures come from ring, which rustls already builds, not from a JWT crate: a second
//! JWT crate in the dev-dependencies, with another crypto-backend feature than the
//! gateway's, would be unified with the gateway's own in test builds.

use super::process::ProcessBuilder;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a `node -e` helper (key generation, PEM export) may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// A JWT's header and payload, decoded (the signature is not checked). Panics unless the
/// token has three dot-separated parts whose first two are base64url JSON.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "not a JWT (three dot-separated parts): {token}"
    );
    let json = |part: &str| -> Value {
        let bytes =
            base64url_decode(part).unwrap_or_else(|| panic!("JWT part is not base64url: {part}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part is not JSON: {e}"))
    };
    (json(parts[0]), json(parts[1]))
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use; `None` on any other character.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    // A lone sixth bit-group cannot encode a byte.
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        // 4 chars = 24 bits = 3 bytes; 3 chars = 18 bits -> 2 bytes; 2 chars = 12 -> 1.
        let bytes = chunk.len() * 6 / 8;
        acc <<= 6 * (4 - chunk.len());
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + bytes]);
    }
    Some(out)
}

/// Unpadded base64url (RFC 4648 §5) of `bytes`, as JWTs use.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = [0u8; 3];
        acc[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, acc[0], acc[1], acc[2]]);
        // 1 byte -> 2 chars, 2 -> 3, 3 -> 4.
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Padded standard base64 (RFC 4648 §4), as PEM and the `x5c` header use.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut s: String = base64url_encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// `der` as a PEM block with this label (`CERTIFICATE`, `PUBLIC KEY`), 64 columns.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER bytes of a PEM text's first block (standard base64 between the BEGIN and END
/// lines).
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .flat_map(|l| l.trim().chars())
        .filter(|&c| c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64url_decode(&body).unwrap_or_else(|| panic!("not a PEM block: {pem}"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `n` random bytes as hex (a `jti`, a `kid`).
pub fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An RSA key pair (2048-bit, made by Node: the crates here do not generate RSA keys) for
/// signing tokens in tests: the provider's own key when written with [`write_rsa_jwks`], or
/// an attacker's that nobody publishes ([`TestKey::generate`]).
#[derive(Clone, Debug)]
pub struct TestKey {
    pub kid: String,
    /// The private key as a JWK (with `kid`, `alg: RS256`, `use: sig`), as a private JWKS
    /// file holds it.
    pub private_jwk: Value,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// The public key as published in a JWKS: `kty`, `n`, `e`, `kid`, `alg`, `use`.
    pub public_jwk: Value,
    /// The public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
}

impl TestKey {
    /// A new key with this `kid`.
    pub fn generate(kid: &str) -> TestKey {
        TestKey::generate_many(&[kid]).remove(0)
    }

    /// One new key per `kid` (one Node process for all of them).
    pub fn generate_many(kids: &[&str]) -> Vec<TestKey> {
        const SCRIPT: &str = "const c = require('node:crypto'); \
            const out = process.argv.slice(1).map((kid) => { \
              const { privateKey, publicKey } = c.generateKeyPairSync('rsa', { modulusLength: 2048 }); \
              const meta = { kid, alg: 'RS256', use: 'sig' }; \
              return { kid, \
                private_jwk: { ...privateKey.export({ format: 'jwk' }), ...meta }, \
                private_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }), \
                public_jwk: { ...publicKey.export({ format: 'jwk' }), ...meta }, \
                public_pem: publicKey.export({ type: 'spki', format: 'pem' }) }; \
            }); \
            process.stdout.write(JSON.stringify(out));";
        let out = node_eval(SCRIPT, kids);
        let keys: Vec<Value> = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("key generation printed no JSON ({e}): {out}"));
        keys.into_iter()
            .map(|k| {
                let text = |f: &str| k[f].as_str().unwrap_or_default().to_string();
                TestKey {
                    kid: text("kid"),
                    private_pem: text("private_pem"),
                    public_pem: text("public_pem"),
                    private_jwk: k["private_jwk"].clone(),
                    public_jwk: k["public_jwk"].clone(),
                }
            })
            .collect()
    }

    /// A public JWKS (`{"keys": [...]}`) of these keys, to serve from an origin.
    pub fn jwks(keys: &[&TestKey]) -> Value {
        json!({ "keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>() })
    }

    /// The RS256 header a provider would write for this key: `alg`, `typ: at+jwt`, `kid`.
    pub fn header(&self) -> Value {
        json!({ "alg": "RS256", "typ": "at+jwt", "kid": self.kid })
    }

    /// A self-signed X.509 certificate (DER) for this key, as an `x5c` header or an `x5u`
    /// document would carry it (rcgen signs with the RSA key).
    pub fn self_signed_cert_der(&self) -> Vec<u8> {
        let pair = rcgen::KeyPair::from_pem(&self.private_pem)
            .unwrap_or_else(|e| panic!("rcgen refuses the RSA key {}: {e}", self.kid));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test key {}", self.kid));
        params.self_signed(&pair).unwrap().der().to_vec()
    }

    /// `claims` signed with this key under [`header`](Self::header).
    pub fn sign(&self, claims: &Value) -> String {
        sign_jwt(&self.header(), claims, self)
    }
}

/// `header.payload` of a JWT (the signing input), both base64url JSON.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    )
}

/// A JWT of `header` and `claims` with an RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature by
/// `key`. The header is written as given: set `alg`, `kid` (or [`TestKey::header`]), or
/// lie in it on purpose.
pub fn sign_jwt(header: &Value, claims: &Value, key: &TestKey) -> String {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let pair = RsaKeyPair::from_pkcs8(&pem_to_der(&key.private_pem))
        .unwrap_or_else(|e| panic!("{}: not an RSA PKCS#8 key: {e}", key.kid));
    let input = signing_input(header, claims);
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("RSA signature");
    format!("{input}.{}", base64url_encode(&sig))
}

/// A JWT of `header` and `claims` with an HMAC-SHA256 signature keyed by `secret`. For the
/// confusion attack, `secret` is the provider's public key PEM text
/// ([`OidcProvider::public_key_pem`]) and the header says `"alg": "HS256"`.
pub fn hs256_jwt(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", base64url_encode(tag.as_ref()))
}

/// An unsecured JWT (RFC 7519 §6): `header` (say `{"alg": "none"}`), `claims` and an
/// empty signature, `header.payload.`.
pub fn unsigned_jwt(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// Whether `token`'s RS256 signature verifies with the public RSA `jwk` (`n`, `e`); the
/// header's `alg` is not consulted.
pub fn verify_rs256(token: &str, jwk: &Value) -> bool {
    use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let part = |f: &str| jwk[f].as_str().and_then(base64url_decode);
    let (Some(n), Some(e), Some(sig)) = (part("n"), part("e"), base64url_decode(sig)) else {
        return false;
    };
    RsaPublicKeyComponents { n, e }
        .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
        .is_ok()
}

/// How [`jwk_public_pem`] writes a public RSA key.
#[derive(Clone, Copy, Debug)]
pub enum PemFormat {
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo): what most tools write.
    Spki,
    /// `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1).
    Pkcs1,
}

/// A public JWK as PEM text, converted by Node (`crypto.createPublicKey`), with the
/// trailing newline Node writes.
pub fn jwk_public_pem(jwk: &Value, format: PemFormat) -> String {
    const SCRIPT: &str = "const [jwk, type] = process.argv.slice(1); \
        process.stdout.write(require('node:crypto') \
          .createPublicKey({ key: JSON.parse(jwk), format: 'jwk' }) \
          .export({ type, format: 'pem' }));";
    let ty = match format {
        PemFormat::Spki => "spki",
        PemFormat::Pkcs1 => "pkcs1",
    };
    let pem = node_eval(SCRIPT, &[&jwk.to_string(), ty]);
    assert!(pem.starts_with("-----BEGIN"), "not PEM: {pem}");
    pem
}

/// Runs `node -e script args...` and returns its stdout; panics with its output unless it
/// exits 0.
fn node_eval(script: &str, args: &[&str]) -> String {
    let mut p = ProcessBuilder::new("node-eval", "node")
        .args(["-e", script, "--"])
        .args(args)
        .start();
    let status = p.wait_exit(NODE_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "node -e failed ({status:?})\n{}",
        p.logs()
    );
    p.stdout()
}
