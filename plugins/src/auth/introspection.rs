//! `[auth.NAME] type = "introspection"`: opaque tokens checked by the identity provider's
//! RFC 7662 endpoint.
//!
//! ```toml
//! [auth.partners]
//! type = "introspection"
//! introspection_url = "https://idp.example.com/oauth2/introspect"
//! client_id = "gateway"
//! client_secret_file = "/run/secrets/gateway"
//! cache_ttl = "60s"
//! timeout = "1s"
//! claims_to_headers = { sub = "X-User-Id" }
//! ```
//!
//! The gateway authenticates to the endpoint with its own client credentials (HTTP Basic,
//! RFC 6749 §2.3.1). An answer is cached, keyed by the token's SHA-256, until the earlier of
//! the token's `exp` and `cache_ttl` (an `active: false` answer for `cache_ttl` too: a
//! revoked token stays refused at least that long after revocation, which is the price of
//! not calling the provider for every request; lower `cache_ttl` to shorten it). An endpoint
//! that is down, slow, answers an error or something that is not an RFC 7662 answer makes
//! the policy unavailable (`503`): never a pass.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use toml::Spanned;

use super::cache::{CacheCounters, TokenCache, TokenKey};
use super::common::{CommonConfig, CommonSettings, TokenSourceConfig};
use super::provider;
use super::secret::{Secret, SecretKeys};
use super::{identity_from_claims, AuthCounters, Authenticator, Refusal, Verdict};
use crate::duration::try_parse_duration;
use crate::{CompileContext, Hooks, Identity, MetricSample, Plugin, PolicyKind, Stage};

const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CACHE_SIZE: usize = 10_000;
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// OAuth2 error codes with which an introspection endpoint refuses the token itself (not the
/// gateway): RFC 6749 §5.2 and RFC 7009 §2.2.1.
const TOKEN_ERRORS: [&str; 3] = ["invalid_request", "unsupported_token_type", "invalid_token"];
/// Introspection calls in flight at once per policy: a flood of distinct tokens queues
/// here (and gets `503` after `timeout`) instead of opening thousands of connections to the
/// provider.
const MAX_CALLS_IN_FLIGHT: usize = 64;

/// `[auth.NAME]` with `type = "introspection"`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// `introspection` (read by the gateway to pick this kind).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub introspection_url: Spanned<String>,
    pub client_id: Spanned<String>,
    /// Refused: secrets are never inline.
    pub client_secret: Option<Spanned<toml::Value>>,
    pub client_secret_file: Option<Spanned<String>>,
    pub client_secret_env: Option<Spanned<String>>,
    pub cache_ttl: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    /// When set, the answer's `iss` must equal it.
    pub issuer: Option<Spanned<String>>,
    /// When set, the answer's `aud` must hold one of these.
    pub audience: Option<Spanned<toml::Value>>,
    pub leeway: Option<Spanned<String>>,
    pub cache_size: Option<Spanned<i64>>,
    pub token: Option<Spanned<TokenSourceConfig>>,
    pub max_token_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, Spanned<String>>,
    pub forward_authorization: Option<bool>,
    pub forward_claims: Option<Spanned<String>>,
}

/// Compiled settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionSettings {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub cache_ttl: Duration,
    pub timeout: Duration,
    pub ca: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub cache_size: usize,
    pub common: CommonSettings,
}

/// The `introspection` auth kind.
pub struct Introspection;

/// A duration key of an auth section: `None` (reported) when it does not parse or is zero
/// where zero makes no sense.
pub fn duration_key(
    v: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    zero_allowed: bool,
    cx: &mut CompileContext<'_>,
) -> Duration {
    let Some(v) = v else { return default };
    match try_parse_duration(v.get_ref()) {
        Ok(d) if zero_allowed || !d.is_zero() => d,
        Ok(_) => {
            cx.error(
                Some(v.span()),
                key,
                format!("`{key}` must be more than zero"),
            );
            default
        }
        Err(e) => {
            cx.error_hint(
                Some(v.span()),
                key,
                format!("`{}` is not a duration: {e}", v.get_ref()),
                "write a duration like \"500ms\", \"30s\" or \"5m\"",
            );
            default
        }
    }
}

/// `audience = "a"` or `audience = ["a", "b"]`.
pub fn audience_list(v: Option<&Spanned<toml::Value>>, cx: &mut CompileContext<'_>) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    let list: Option<Vec<String>> = match v.get_ref() {
        toml::Value::String(s) if !s.is_empty() => Some(vec![s.clone()]),
        toml::Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect(),
        _ => None,
    };
    list.unwrap_or_else(|| {
        cx.error_hint(
            Some(v.span()),
            "audience",
            "`audience` is a non-empty string or list of strings",
            "for example audience = \"urn:api:shop\"",
        );
        Vec::new()
    })
}

/// A positive count key (`cache_size`).
pub fn count_key(
    v: Option<&Spanned<i64>>,
    key: &str,
    default: usize,
    cx: &mut CompileContext<'_>,
) -> usize {
    match v {
        None => default,
        Some(n) if (1..=10_000_000).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            cx.error(
                Some(n.span()),
                key,
                format!("`{key}` must be between 1 and 10000000"),
            );
            default
        }
    }
}

impl PolicyKind for Introspection {
    const SECTION: &'static str = super::SECTION;
    const STAGE: Stage = Stage::Auth;
    type Config = IntrospectionConfig;
    type Settings = IntrospectionSettings;

    fn compile(
        c: IntrospectionConfig,
        cx: &mut CompileContext<'_>,
    ) -> Option<IntrospectionSettings> {
        let url = provider::check_url(&c.introspection_url, "introspection_url", cx);
        if c.client_id.get_ref().is_empty() {
            cx.error(
                Some(c.client_id.span()),
                "client_id",
                "`client_id` is empty",
            );
        }
        let secret_keys = SecretKeys {
            name: "client_secret",
            file: c.client_secret_file.as_ref(),
            env: c.client_secret_env.as_ref(),
            inline: c.client_secret.as_ref(),
        };
        let given = secret_keys.is_given();
        let secret = secret_keys.read(cx);
        if !given {
            cx.error_hint(
                None,
                "client_secret_file",
                "the gateway needs its own client secret to call the introspection endpoint",
                "name a file with `client_secret_file` or a variable with `client_secret_env`",
            );
        }
        let common = CommonSettings::compile(
            CommonConfig {
                token: c.token.as_ref(),
                max_token_size: c.max_token_size.as_ref(),
                claims_to_headers: &c.claims_to_headers,
                forward_authorization: c.forward_authorization,
                forward_claims: c.forward_claims.as_ref(),
            },
            cx,
        );
        let settings = IntrospectionSettings {
            url: url.map(String::from).unwrap_or_default(),
            client_id: c.client_id.get_ref().clone(),
            client_secret: secret?,
            cache_ttl: duration_key(
                c.cache_ttl.as_ref(),
                "cache_ttl",
                DEFAULT_CACHE_TTL,
                true,
                cx,
            ),
            timeout: duration_key(c.timeout.as_ref(), "timeout", DEFAULT_TIMEOUT, false, cx),
            ca: provider::read_ca(c.ca_file.as_ref(), cx),
            issuer: c.issuer.as_ref().map(|i| i.get_ref().clone()),
            audience: audience_list(c.audience.as_ref(), cx),
            leeway: duration_key(c.leeway.as_ref(), "leeway", DEFAULT_LEEWAY, true, cx),
            cache_size: count_key(c.cache_size.as_ref(), "cache_size", DEFAULT_CACHE_SIZE, cx),
            common,
        };
        (!cx.has_errors()).then_some(settings)
    }

    fn build(name: &str, settings: Arc<IntrospectionSettings>) -> Arc<dyn Plugin> {
        Arc::new(IntrospectionPolicy {
            name: name.into(),
            client: provider::client(settings.ca.as_deref(), settings.timeout),
            cache: TokenCache::new(settings.cache_size),
            permits: Semaphore::new(MAX_CALLS_IN_FLIGHT),
            counters: AuthCounters::default(),
            calls: Default::default(),
            cache_lookups: CacheCounters::default(),
            settings,
        })
    }
}

/// A cached answer.
#[derive(Clone)]
enum Answer {
    Active(Identity),
    Inactive,
}

/// What an introspection call gave, for the calls metric.
#[derive(Clone, Copy)]
enum CallResult {
    Active = 0,
    Inactive = 1,
    Error = 2,
}

const CALL_RESULTS: [(CallResult, &str); 3] = [
    (CallResult::Active, "active"),
    (CallResult::Inactive, "inactive"),
    (CallResult::Error, "error"),
];

/// One `introspection` policy.
pub struct IntrospectionPolicy {
    name: Arc<str>,
    settings: Arc<IntrospectionSettings>,
    client: reqwest::Client,
    cache: TokenCache<Answer>,
    permits: Semaphore,
    counters: AuthCounters,
    calls: [AtomicU64; 3],
    cache_lookups: CacheCounters,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IntrospectionPolicy {
    fn count_call(&self, r: CallResult) {
        self.calls[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the endpoint; `None` when it gave no usable answer.
    async fn call(&self, token: &str) -> Option<Value> {
        let s = &self.settings;
        // Bounded by `timeout` like the call itself: a queue of callers is a provider
        // that is too slow.
        let _permit = tokio::time::timeout(s.timeout, self.permits.acquire())
            .await
            .ok()?
            .ok()?;
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let secret = s.client_secret.text().unwrap_or_default();
        let sent = self
            .client
            .post(&s.url)
            .basic_auth(enc(&s.client_id), Some(enc(secret)))
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send();
        let answer = match tokio::time::timeout(s.timeout, async {
            provider::any_json_body(sent.await?).await
        })
        .await
        {
            Ok(Ok((200, v))) => Some(v),
            // The endpoint works and refuses to judge this token (oidc-provider answers
            // `unsupported_token_type` for its own JWTs): the token is not accepted,
            // which is a 401 for the client, not an outage. An error about the
            // gateway's own credentials (`invalid_client`) stays an outage.
            Ok(Ok((400, v)))
                if v.get("error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| TOKEN_ERRORS.contains(&e)) =>
            {
                Some(serde_json::json!({ "active": false }))
            }
            Ok(Ok((status, _))) => {
                warn_call_failed(&self.name, &format!("answered status {status}"));
                None
            }
            Ok(Err(e)) => {
                warn_call_failed(&self.name, &e.to_string());
                None
            }
            Err(_) => {
                warn_call_failed(&self.name, "timed out");
                None
            }
        };
        if answer.is_none() {
            self.count_call(CallResult::Error);
        }
        answer
    }

    /// Judges an `active: true` answer by the policy's own checks.
    fn judge(&self, claims: &Value, now: u64) -> Result<(), Refusal> {
        let s = &self.settings;
        let leeway = s.leeway.as_secs();
        let time = |k: &str| -> Result<Option<u64>, Refusal> {
            match claims.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| Some(f as u64))
                    .ok_or(Refusal::InvalidClaims),
            }
        };
        if time("exp")?.is_some_and(|exp| exp.saturating_add(leeway) <= now) {
            return Err(Refusal::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Refusal::NotYetValid);
        }
        if let Some(iss) = &s.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(iss) {
                return Err(Refusal::WrongIssuer);
            }
        }
        if !s.audience.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => s.audience.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| s.audience.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return Err(Refusal::WrongAudience);
            }
        }
        Ok(())
    }
}

/// Logs a failed call, without the token or the secret (neither is in `what`: it is the
/// call's error, whose URL is the configured endpoint). At most one line every few seconds:
/// a provider outage under load must not flood the log.
fn warn_call_failed(policy: &str, what: &str) {
    use std::sync::Mutex;
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match &mut *last {
        Some((at, suppressed)) if now.duration_since(*at) < Duration::from_secs(5) => {
            *suppressed += 1;
        }
        other => {
            let suppressed = other.map_or(0, |(_, n)| n);
            log::warn!(
                "auth policy `{policy}`: introspection call failed: {what} ({suppressed} similar failures not logged)"
            );
            *other = Some((now, 0));
        }
    }
}

#[async_trait]
impl Authenticator for IntrospectionPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn common(&self) -> &CommonSettings {
        &self.settings.common
    }

    fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    async fn verify(&self, token: &str) -> Verdict {
        let key = TokenKey::opaque(token);
        let now = Instant::now();
        if let Some(a) = self.cache.get(&key, now) {
            self.cache_lookups.record(true);
            return match a {
                Answer::Active(id) => Verdict::Accepted(id),
                Answer::Inactive => Verdict::Refused(Refusal::Inactive),
            };
        }
        self.cache_lookups.record(false);
        let Some(answer) = self.call(token).await else {
            return Verdict::Unavailable;
        };
        let now = Instant::now();
        let ttl_until = now + self.settings.cache_ttl;
        match answer.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                self.count_call(CallResult::Inactive);
                self.cache.insert(&key, Answer::Inactive, ttl_until, now);
                return Verdict::Refused(Refusal::Inactive);
            }
            // Not an RFC 7662 answer: the endpoint is misbehaving, which is not a pass.
            _ => {
                self.count_call(CallResult::Error);
                return Verdict::Unavailable;
            }
        }
        self.count_call(CallResult::Active);
        let unix = unix_now();
        if let Err(r) = self.judge(&answer, unix) {
            return Verdict::Refused(r);
        }
        let until = match answer.get("exp").and_then(Value::as_f64) {
            Some(exp) => {
                ttl_until.min(now + Duration::from_secs((exp as u64).saturating_sub(unix)))
            }
            None => ttl_until,
        };
        let id = identity_from_claims(&self.name, answer);
        self.cache
            .insert(&key, Answer::Active(id.clone()), until, now);
        Verdict::Accepted(id)
    }
}

#[async_trait]
impl Plugin for IntrospectionPolicy {
    fn kind(&self) -> &'static str {
        "auth:introspection"
    }

    /// Run by the route's auth gate, not as a step of its own.
    fn hooks(&self) -> Hooks {
        Hooks::default()
    }

    fn metrics(&self, out: &mut Vec<MetricSample>) {
        self.counters.samples(&self.name, out);
        for (r, label) in CALL_RESULTS {
            out.push(MetricSample::counter(
                "ficus_auth_introspection_calls_total",
                "Introspection calls by policy and result.",
                vec![("policy", self.name.to_string()), ("result", label.into())],
                self.calls[r as usize].load(Ordering::Relaxed),
            ));
        }
        self.cache_lookups.samples(&self.name, out);
    }

    fn authenticator(self: Arc<Self>) -> Option<Arc<dyn Authenticator>> {
        Some(self)
    }
}
