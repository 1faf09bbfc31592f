//! Test helpers: the key fixtures, token signing, and a tiny in-process identity provider
//! (discovery document and JWKS on 127.0.0.1) that counts what it is asked for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A file of `plugins/tests/fixtures/jwt` (test-only keys).
pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "jwt", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A fixture's public JWK with `extra` members added (`kid`, `alg`, `use`).
pub fn jwk_with(file: &str, extra: Value) -> Value {
    let mut jwk: Value = serde_json::from_slice(&fixture(file)).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

/// A JWKS document of fixture keys with the given `kid`s.
pub fn jwks_doc(keys: &[(&str, &str)]) -> Vec<u8> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(file, kid)| jwk_with(file, json!({ "kid": kid })))
        .collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// The signing key of a fixture private key (`rsa`, `rsa2`, `ec256`, `ec384`, `ed25519`).
pub fn private_key(name: &str) -> EncodingKey {
    let pem = fixture(&format!("{name}-private.pem"));
    match name {
        "rsa" | "rsa2" => EncodingKey::from_rsa_pem(&pem),
        "ed25519" => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .unwrap()
}

/// A compact JWS of exactly this header and payload, signed with `key` using `alg`
/// (whatever the header says: tests forge tokens).
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    super::unix_now()
}

#[derive(Default)]
struct ProviderState {
    jwks: Vec<u8>,
    /// The `issuer` the discovery document names; the provider's own URL when `None`.
    issuer: Option<String>,
    status: HashMap<String, u16>,
    delay: HashMap<String, Duration>,
    hits: HashMap<String, usize>,
}

/// An identity provider on 127.0.0.1: `/.well-known/openid-configuration` names it as the
/// issuer and `/jwks` as its key set; `/jwks` answers `Cache-Control: max-age=300`.
pub struct Provider {
    addr: SocketAddr,
    state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    pub async fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, body, delay) = {
                        let mut s = state.lock().unwrap();
                        *s.hits.entry(path.clone()).or_default() += 1;
                        let status = s.status.get(&path).copied().unwrap_or(200);
                        let body = match path.as_str() {
                            "/jwks" => s.jwks.clone(),
                            "/.well-known/openid-configuration" => {
                                let me = format!("http://{addr}");
                                serde_json::to_vec(&json!({
                                    "issuer": s.issuer.clone().unwrap_or(me.clone()),
                                    "jwks_uri": format!("{me}/jwks"),
                                }))
                                .unwrap()
                            }
                            _ => b"not found".to_vec(),
                        };
                        (status, body, s.delay.get(&path).copied())
                    };
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncache-control: public, max-age=300\r\ncontent-length: {}\r\nlocation: /elsewhere\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                });
            }
        });
        Provider { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_jwks(&self, doc: Vec<u8>) {
        self.state.lock().unwrap().jwks = doc;
    }

    pub fn set_status(&self, path: &str, status: u16) {
        self.state
            .lock()
            .unwrap()
            .status
            .insert(path.into(), status);
    }

    pub fn set_delay(&self, path: &str, delay: Duration) {
        self.state.lock().unwrap().delay.insert(path.into(), delay);
    }

    /// How many requests `path` has had.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests for anything but discovery and the JWKS.
    pub fn other_hits(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.hits
            .iter()
            .filter(|(p, _)| !matches!(p.as_str(), "/jwks" | "/.well-known/openid-configuration"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A directory of its own under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ficus-jwt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `name` with `contents`, readable by its owner only.
    pub fn write(&self, name: &str, contents: &[u8]) {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
