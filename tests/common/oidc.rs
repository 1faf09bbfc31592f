//! A real OpenID provider for authentication tests: npm `oidc-provider` (pinned in
//! tests/oidc/package.json, installed by `npm ci` in tests/run.sh) run by
//! `node tests/oidc/provider.js` on a free loopback port, through the process fixture.
//!
//! It offers what an API gateway meets at the edge: discovery, a JWKS with an RS256 key,
//! the client-credentials grant, RS256 JWT access tokens for one resource indicator
//! (`aud` = [`OidcOptions::resource`]), opaque tokens for another
//! ([`OidcOptions::opaque_resource`]), RFC 7662 introspection and RFC 7009 revocation.
//! oidc-provider does not introspect or revoke JWT access tokens (it answers
//! `unsupported_token_type`): introspection tests use the opaque resource.
//!
//! For the attacks a gateway must refuse, tests also make tokens themselves (jwt.rs):
//! [`write_rsa_jwks`] writes keys the provider signs with and publishes, and returns them
//! as [`TestKey`]s, so a test holds the provider's private key;
//! [`OidcProvider::claims`] gives the claims the provider would put in a token, and
//! [`OidcProvider::public_key_pem`] the published key as PEM text (the secret of the
//! HS256/RS256 confusion attack).
//!
//! The provider counts the requests it gets per path ([`OidcProvider::jwks_fetches`],
//! [`OidcProvider::count`]), and can be stopped and started again on the same port
//! ([`OidcProvider::stop`], [`OidcProvider::restart_with`]): the provider down, or back
//! with new keys.
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

use super::jwt::{jwk_public_pem, random_hex, unix_now, PemFormat, TestKey};
use super::process::{probe, start_on_free_port, Process, ProcessBuilder, StartError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where provider.js and its package.json live.
const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");
/// How long one request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restart may wait for its port to be free again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
/// The provider's answer with its request counts (provider.js; not part of oidc-provider).
const COUNTS_PATH: &str = "/__test/counts";
/// Default access token lifetime of the provider, also used by [`OidcProvider::claims`].
const DEFAULT_TOKEN_TTL: u64 = 600;

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
    /// `None` while stopped ([`OidcProvider::stop`]).
    process: Option<Process>,
    port: u16,
    opts: OidcOptions,
    /// Request counts and logs of the runs before the current one, so that counts and
    /// logs span a restart.
    earlier_counts: BTreeMap<String, u64>,
    earlier_logs: String,
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
        let (process, port) = start_on_free_port(|port| command(port, &opts));
        OidcProvider {
            process: Some(process),
            port,
            opts,
            earlier_counts: BTreeMap::new(),
            earlier_logs: String::new(),
        }
    }

    /// Stops the provider (SIGTERM, by pid) and keeps its port, counts and logs: the
    /// identity provider is down until [`start_again`](Self::start_again) or
    /// [`restart_with`](Self::restart_with). Connections to the port are refused meanwhile.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        // Counts die with the process: carry them over.
        if process.is_running() {
            for (path, n) in self.fetch_counts() {
                *self.earlier_counts.entry(path).or_default() += n;
            }
        }
        process.stop();
        self.earlier_logs.push_str(&process.logs());
    }

    /// Starts the provider again on the same port with the same options (after
    /// [`stop`](Self::stop)): the same issuer, a new key unless `jwks_file` is set.
    pub fn start_again(&mut self) {
        let opts = self.opts.clone();
        self.restart_with(opts);
    }

    /// Stops the provider if it runs and starts it on the same port with `opts`: the same
    /// issuer with, say, another `jwks_file` (key rotation). Tokens issued before stay
    /// valid JWTs, but the new process knows none of the opaque ones. Retries while the
    /// port is still taken (up to 10 s).
    pub fn restart_with(&mut self, opts: OidcOptions) {
        self.stop();
        let deadline = Instant::now() + RESTART_TIMEOUT;
        let process = loop {
            match command(self.port, &opts).spawn() {
                Ok(p) => break p,
                Err(e) if e.exited && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}\n{}", restart_hint(&e, self.port)),
            }
        };
        self.process = Some(process);
        self.opts = opts;
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.is_running())
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

    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer())
    }

    /// The provider's stdout and stderr, of every run since [`start`](Self::start).
    pub fn logs(&self) -> String {
        let current = self.process.as_ref().map(|p| p.logs()).unwrap_or_default();
        format!("{}{current}", self.earlier_logs)
    }

    /// The current run's process; panics while the provider is stopped.
    pub fn process(&mut self) -> &mut Process {
        self.process
            .as_mut()
            .expect("the provider is stopped (OidcProvider::stop)")
    }

    /// Requests per path (without the query) since [`start`](Self::start), over every
    /// restart: what provider.js answers at `/__test/counts`, plus the runs before. The
    /// test's own requests count too (`get_json(&idp.jwks_uri())` is a JWKS fetch), so
    /// compare a count before and after what is under test.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = self.earlier_counts.clone();
        if self.process.is_some() {
            for (path, n) in self.fetch_counts() {
                *counts.entry(path).or_default() += n;
            }
        }
        counts
    }

    /// Requests for `path` so far (see [`counts`](Self::counts)); 0 if none.
    pub fn count(&self, path: &str) -> u64 {
        self.counts().get(path).copied().unwrap_or(0)
    }

    /// How often the JWKS (`/jwks`) was fetched so far, by anyone.
    pub fn jwks_fetches(&self) -> u64 {
        self.count("/jwks")
    }

    /// How often OIDC discovery was fetched so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.count("/.well-known/openid-configuration")
    }

    /// How often the introspection endpoint was called so far.
    pub fn introspections(&self) -> u64 {
        self.count("/token/introspection")
    }

    fn fetch_counts(&self) -> BTreeMap<String, u64> {
        let url = format!("{}{COUNTS_PATH}", self.issuer());
        let body = self.get_json(&url);
        let Some(map) = body.as_object() else {
            panic!("{COUNTS_PATH} is not a JSON object: {body}");
        };
        map.iter()
            .map(|(path, n)| {
                let n = n
                    .as_u64()
                    .unwrap_or_else(|| panic!("{COUNTS_PATH}: bad count for {path}: {body}"));
                (path.clone(), n)
            })
            .collect()
    }

    /// How many tokens the provider has issued so far (one log line each, by provider.js),
    /// over every restart.
    pub fn tokens_issued(&self) -> usize {
        self.logs().matches("oidc-provider token issued:").count()
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

    /// RFC 7009 revocation of an opaque access token with the client's credentials; from
    /// then on introspection says `{"active": false}`. Panics unless the provider answers
    /// 200 (it does for unknown tokens too, as RFC 7009 says) and, afterwards, introspection
    /// says the token is inactive.
    pub fn revoke(&self, token: &str) {
        let url = self.revocation_endpoint();
        let (status, body) = self.call(|c| {
            c.post(&url)
                .basic_auth(&self.opts.client_id, Some(&self.opts.client_secret))
                .form(&[("token", token), ("token_type_hint", "access_token")])
        });
        self.expect_ok("POST", &url, status, body);
        let (status, body) = self.introspect(token);
        assert_eq!(
            (status, &body["active"]),
            (200, &Value::Bool(false)),
            "still active after revocation: {body}\n{}",
            self.logs()
        );
    }

    /// The keys published at `jwks_uri` (public JWKs).
    pub fn published_keys(&self) -> Vec<Value> {
        let jwks = self.get_json(&self.jwks_uri());
        match jwks["keys"].as_array() {
            Some(keys) => keys.clone(),
            None => panic!("JWKS without keys: {jwks}"),
        }
    }

    /// The first published key (the one that signs) as SPKI PEM text
    /// (`-----BEGIN PUBLIC KEY-----`...), as `openssl` and most libraries write it: the
    /// secret an attacker tries in the HS256/RS256 confusion attack. Node converts it.
    pub fn public_key_pem(&self) -> String {
        let keys = self.published_keys();
        jwk_public_pem(&keys[0], PemFormat::Spki)
    }

    /// The claims of an access token as this provider issues them for its JWT resource:
    /// `iss`, `aud`, `sub` and `client_id` (the client), `scope`, `jti`, `iat` now and
    /// `exp` in 600 s. Tests change or remove fields, then sign with [`TestKey::sign`].
    pub fn claims(&self, scope: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer(),
            "aud": self.opts.resource,
            "sub": self.opts.client_id,
            "client_id": self.opts.client_id,
            "scope": scope,
            "jti": format!("test-{}", random_hex(8)),
            "iat": now,
            "exp": now + DEFAULT_TOKEN_TTL,
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

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // A panicking test shows the logs of earlier runs too (the current process prints
        // its own when dropped).
        if std::thread::panicking() && !self.earlier_logs.is_empty() {
            eprintln!(
                "==== oidc-provider, earlier runs ====\n{}",
                self.earlier_logs
            );
        }
    }
}

/// The command that runs provider.js on `port` with `opts`.
fn command(port: u16, opts: &OidcOptions) -> ProcessBuilder {
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
}

fn restart_hint(e: &StartError, port: u16) -> String {
    if e.logs.contains("EADDRINUSE") {
        format!("port {port} stayed taken: another process took it while the provider was down")
    } else {
        String::new()
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

/// Writes a private JWKS with one new RS256 key (2048-bit) per `kid` to `path`, for
/// [`OidcOptions::jwks_file`]: the first kid signs. Returns the keys, so a test can sign
/// tokens the provider's published keys verify. Node makes the keys (the crates here
/// cannot generate RSA keys).
pub fn write_rsa_jwks(path: &Path, kids: &[&str]) -> Vec<TestKey> {
    let keys = TestKey::generate_many(kids);
    write_private_jwks(path, &keys);
    keys
}

/// Writes the private JWKS of `keys` to `path` (the first signs): to publish keys made
/// before, e.g. the old and the new key during a rotation.
pub fn write_private_jwks(path: &Path, keys: &[TestKey]) {
    let jwks = json!({ "keys": keys.iter().map(|k| k.private_jwk.clone()).collect::<Vec<_>>() });
    std::fs::write(path, jwks.to_string())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
