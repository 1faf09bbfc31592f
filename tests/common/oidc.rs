//! A real OpenID provider for authentication tests: npm `oidc-provider` (pinned in
//! tests/oidc/package.json, installed by `npm ci` in tests/run.sh) run by
//! `node tests/oidc/provider.js` on a free loopback port, through the process fixture.
//!
//! It offers what an API gateway meets at the edge: discovery, a JWKS with an RS256 key,
//! the client-credentials grant, RS256 JWT access tokens for one resource indicator
//! (`aud` = [`OidcOptions::resource`]), opaque tokens for another
//! ([`OidcOptions::opaque_resource`]) and RFC 7662 introspection. oidc-provider does not
//! introspect JWT access tokens (it answers `unsupported_token_type`): introspection tests
//! use the opaque resource.
//!
//! ```ignore
//! let idp = OidcProvider::start(OidcOptions::default());
//! let token = idp.client_credentials_token("orders:read", "urn:api:shop");
//! let (header, claims) = jwt_parts(&token);
//! assert_eq!(claims["iss"], idp.issuer());
//! ```
//!
//! The HTTP helpers block (each runs its request on a thread of its own), so they work in
//! `#[test]` and `#[tokio::test]` functions alike.

use super::process::{probe, start_on_free_port, Process, ProcessBuilder};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where provider.js and its package.json live.
const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");
/// How long one request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider's settings; every field has a default that tests can override.
#[derive(Clone, Debug)]
pub struct OidcOptions {
    /// The client-credentials client.
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated scopes the client and both resource servers allow.
    pub scopes: String,
    /// The resource indicator whose access tokens are RS256 JWTs with this `aud`.
    pub resource: String,
    /// The resource indicator whose access tokens are opaque (introspectable).
    pub opaque_resource: String,
    /// Access token lifetime (provider default: 600 s).
    pub token_ttl: Option<Duration>,
    /// A private JWKS file to sign with instead of a key generated at start: the first key
    /// signs, all are published. Restarting on the same port with another file rotates keys.
    pub jwks_file: Option<PathBuf>,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            client_id: "ficus-test".into(),
            client_secret: "ficus-test-secret".into(),
            scopes: "orders:read orders:write".into(),
            resource: "urn:api:shop".into(),
            opaque_resource: "urn:api:shop:opaque".into(),
            token_ttl: None,
            jwks_file: None,
        }
    }
}

impl OidcOptions {
    pub fn client(mut self, id: &str, secret: &str) -> Self {
        self.client_id = id.into();
        self.client_secret = secret.into();
        self
    }

    pub fn scopes(mut self, scopes: &str) -> Self {
        self.scopes = scopes.into();
        self
    }

    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = resource.into();
        self
    }

    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = Some(ttl);
        self
    }

    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwks_file = Some(path.into());
        self
    }
}

/// A running oidc-provider; stopped (SIGTERM, by pid) on drop.
pub struct OidcProvider {
    process: Process,
    port: u16,
    opts: OidcOptions,
}

impl OidcProvider {
    /// Starts the provider on a free port and waits for its "listening" line. Panics, with
    /// the provider's output, if it does not start; panics at once if `npm ci` has not been
    /// run in tests/oidc (tests never skip for a missing tool).
    pub fn start(opts: OidcOptions) -> OidcProvider {
        let installed = Path::new(PROVIDER_DIR).join("node_modules/oidc-provider/package.json");
        assert!(
            installed.exists(),
            "{} is missing: `npm ci --prefix tests/oidc` installs oidc-provider \
             (tests/run.sh installs the tools the tests need)",
            installed.display()
        );
        let (process, port) = start_on_free_port(|port| {
            let mut b = ProcessBuilder::new("oidc-provider", "node")
                .arg("provider.js")
                .cwd(PROVIDER_DIR)
                .env("OIDC_PORT", port.to_string())
                .env("OIDC_CLIENT_ID", &opts.client_id)
                .env("OIDC_CLIENT_SECRET", &opts.client_secret)
                .env("OIDC_SCOPES", &opts.scopes)
                .env("OIDC_RESOURCE", &opts.resource)
                .env("OIDC_OPAQUE_RESOURCE", &opts.opaque_resource)
                .ready(probe::log_line(&format!(
                    "oidc-provider listening on http://127.0.0.1:{port}"
                )));
            if let Some(ttl) = opts.token_ttl {
                b = b.env("OIDC_TOKEN_TTL", ttl.as_secs().to_string());
            }
            if let Some(file) = &opts.jwks_file {
                b = b.env("OIDC_JWKS_FILE", file);
            }
            b
        });
        OidcProvider {
            process,
            port,
            opts,
        }
    }

    /// `http://127.0.0.1:PORT`, the `iss` of every token.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    // oidc-provider's default routes; tests/oidc_provider.rs checks them against discovery.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer())
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer())
    }

    pub fn options(&self) -> &OidcOptions {
        &self.opts
    }

    /// The provider's stdout and stderr.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// How many tokens the provider has issued so far (one log line each, by provider.js).
    pub fn tokens_issued(&self) -> usize {
        self.process
            .stdout()
            .matches("oidc-provider token issued:")
            .count()
    }

    /// `GET url` as JSON; panics unless it answers 200.
    pub fn get_json(&self, url: &str) -> Value {
        let (status, body) = self.call(|c| c.get(url));
        self.expect_ok("GET", url, status, body)
    }

    /// A client-credentials access token for `scope` (space-separated) and the resource
    /// indicator `resource`, with the configured client's secret (HTTP Basic). Panics with
    /// the answer and the provider's logs unless the token endpoint answers 200.
    pub fn client_credentials_token(&self, scope: &str, resource: &str) -> String {
        let (status, body) = self.token_request(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", resource),
        ]);
        let body = self.expect_ok("POST", &self.token_endpoint(), status, body);
        match body["access_token"].as_str() {
            Some(token) => token.to_string(),
            None => panic!("token response without access_token: {body}"),
        }
    }

    /// POSTs `form` to the token endpoint with the client's credentials: (status, JSON body),
    /// for tests of refused requests.
    pub fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.token_request_as(&self.opts.client_id, &self.opts.client_secret, form)
    }

    /// [`token_request`](Self::token_request) with other credentials (a wrong secret).
    pub fn token_request_as(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = self.token_endpoint();
        self.call(|c| c.post(&url).basic_auth(id, Some(secret)).form(form))
    }

    /// RFC 7662 introspection of `token` with the client's credentials: (status, JSON body).
    pub fn introspect(&self, token: &str) -> (u16, Value) {
        let url = self.introspection_endpoint();
        self.call(|c| {
            c.post(&url)
                .basic_auth(&self.opts.client_id, Some(&self.opts.client_secret))
                .form(&[("token", token)])
        })
    }

    /// Sends the request `build` makes; (status, body as JSON, or as a JSON string if it is
    /// not JSON). Panics with the provider's logs if there is no answer.
    fn call(
        &self,
        build: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder + Send,
    ) -> (u16, Value) {
        let result = block_on_own_thread(async move {
            let client = reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("reqwest client");
            let resp = build(&client).send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok::<_, reqwest::Error>((status, body))
        });
        result.unwrap_or_else(|e| panic!("oidc-provider: {e}\n{}", self.logs()))
    }

    fn expect_ok(&self, method: &str, url: &str, status: u16, body: Value) -> Value {
        assert_eq!(
            status,
            200,
            "{method} {url} answered {status}: {body}\n{}",
            self.logs()
        );
        body
    }
}

/// Runs `fut` to completion on a new thread with its own runtime, so a blocking helper can
/// be called from inside an async test too (a nested `block_on` would panic).
fn block_on_own_thread<T: Send>(fut: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
        .join()
        .expect("HTTP thread panicked")
    })
}

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

/// Writes a private JWKS with one new RS256 key (2048-bit) per `kid` to `path`, for
/// [`OidcOptions::jwks_file`]: the first kid signs. Node makes the keys (the crates here
/// cannot generate RSA keys).
pub fn write_rsa_jwks(path: &Path, kids: &[&str]) {
    const SCRIPT: &str = "const c = require('node:crypto'); \
        const [file, ...kids] = process.argv.slice(1); \
        const keys = kids.map((kid) => ({ \
          ...c.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), \
          kid, alg: 'RS256', use: 'sig' })); \
        require('node:fs').writeFileSync(file, JSON.stringify({ keys }));";
    let mut p = ProcessBuilder::new("jwks", "node")
        .args(["-e", SCRIPT])
        .arg(path)
        .args(kids)
        .start();
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "writing {} failed ({status:?})\n{}",
        path.display(),
        p.logs()
    );
}
