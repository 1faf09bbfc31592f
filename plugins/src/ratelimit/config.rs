//! `[rate_limits.NAME]` as written, and its compile step: rates, bursts, keys, the store
//! and what the responses carry, each checked with its position and a hint.
//!
//! ```toml
//! [rate_limits.per_client]
//! limits = [
//!   { key = "client_ip", rate = "100/s", burst = 200 },
//!   { key = "route", rate = "2000/s", burst = 2000 },
//! ]
//! ```

use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;
use toml::Spanned;

use super::key::{KeyPart, KeySpec, MAX_PARTS};
use super::rate::{Rate, RateError};
use crate::auth::secret::{Secret, SecretKeys};
use crate::CompileContext;

/// At most this many limits in one policy.
pub const MAX_LIMITS: usize = 8;
/// `max_keys` when none is given: about 20 MB of buckets (docs/rate-limiting.md).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// The largest `max_keys` (a guard against a typo's extra zeros).
const MAX_MAX_KEYS: i64 = 100_000_000;
/// The Redis port when the URL names none.
const REDIS_PORT: u16 = 6379;
/// The longest a full bucket may take to refill (`burst × T`), for both stores.
pub const MAX_WINDOW: std::time::Duration = super::redis::MAX_WINDOW;

/// `[rate_limits.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limits; a request must be admitted by every one.
    pub limits: Spanned<Vec<Spanned<LimitConfig>>>,
    /// `"local"` (default) or `"redis"`.
    pub store: Option<Spanned<String>>,
    /// The Redis server, `redis://HOST[:PORT][/DB]` or `rediss://` for TLS.
    pub redis: Option<Spanned<String>>,
    pub redis_password_file: Option<Spanned<String>>,
    pub redis_password_env: Option<Spanned<String>>,
    /// Refused: passwords are never written in routes.toml.
    pub redis_password: Option<Spanned<toml::Value>>,
    /// `"fail-open"` (default) or `"fail-closed"`: what a request gets when the shared
    /// store cannot decide.
    pub on_store_error: Option<Spanned<String>>,
    /// How long a decision may wait for Redis (default 50ms).
    pub redis_timeout: Option<Spanned<String>>,
    /// The most buckets the local store keeps (with Redis: the fail-open fallback's).
    pub max_keys: Option<Spanned<i64>>,
    /// `"refusals"` (default), `"always"` or `"off"`: which responses carry `RateLimit`
    /// and `RateLimit-Policy`.
    pub headers: Option<Spanned<String>>,
    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    #[serde(default)]
    pub legacy_headers: bool,
}

/// One limit as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub key: Spanned<KeyConfig>,
    pub rate: Spanned<String>,
    /// Requests a full bucket admits at once; defaults to the rate's count.
    pub burst: Option<Spanned<i64>>,
    /// The limit's name in the response fields.
    pub name: Option<Spanned<String>>,
}

/// `key = "client_ip"` or `key = ["route", "client_ip"]`.
#[derive(Debug)]
pub enum KeyConfig {
    One(String),
    List(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for KeyConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeyConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key like \"client_ip\" or a list of keys")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyConfig, E> {
                Ok(KeyConfig::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<KeyConfig, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = seq.next_element::<Spanned<String>>()? {
                    out.push(k);
                }
                Ok(KeyConfig::List(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A compiled limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The name given in the config; see [`Limit::field_name`].
    pub name: Option<String>,
    pub key: KeySpec,
    pub rate: Rate,
    /// `B`: requests a full bucket admits at once.
    pub burst: u32,
}

/// Which responses carry the IETF fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// Only the `429`.
    Refusals,
    /// Every response on the policy's routes.
    Always,
    /// None: a `429` still carries `Retry-After`.
    Off,
}

/// What a request gets when the store cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Admitted (counted in `ficus_rate_limit_store_errors_total`).
    FailOpen,
    /// `503` with `Retry-After`.
    FailClosed,
}

/// Where the buckets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    Local {
        max_keys: usize,
    },
    /// Shared in Redis; `max_keys` bounds the local buckets used while Redis cannot
    /// decide and the policy fails open.
    Redis {
        server: RedisSettings,
        max_keys: usize,
    },
}

/// A Redis server, from `redis = "redis://HOST:PORT/DB"` and the password keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `rediss://`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// How long a decision may wait for Redis.
    pub timeout: Duration,
}

impl RedisSettings {
    /// The server's URL, without the password (it goes separately).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .username
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{user}{host}:{}/{}", self.port, self.db)
    }
}

/// A compiled `[rate_limits.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub limits: Vec<Limit>,
    pub store: StoreSettings,
    pub on_store_error: OnStoreError,
    pub headers: HeaderMode,
    pub legacy_headers: bool,
}

impl Limit {
    /// The limit's name in `RateLimit-Policy` and `RateLimit`: its `name`, else the
    /// policy's name for a policy of one limit, else `POLICY.KEY` (`per_client.route`).
    /// Characters a field name cannot hold become `_`.
    pub fn field_name(&self, policy: &str, single: bool) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if single => field_safe(policy),
            None => format!(
                "{}.{}",
                field_safe(policy),
                field_safe(&self.key.to_string())
            ),
        }
    }
}

fn field_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if is_field_name(c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks and compiles a policy; every problem goes to `cx`.
pub fn compile(config: RateLimitConfig, cx: &mut CompileContext<'_>) -> Option<RateLimitSettings> {
    let limits = compile_limits(&config.limits, cx);
    let headers = one_of(
        cx,
        config.headers.as_ref(),
        "headers",
        &[
            ("refusals", HeaderMode::Refusals),
            ("always", HeaderMode::Always),
            ("off", HeaderMode::Off),
        ],
    )
    .unwrap_or(HeaderMode::Refusals);
    let on_store_error = one_of(
        cx,
        config.on_store_error.as_ref(),
        "on_store_error",
        &[
            ("fail-open", OnStoreError::FailOpen),
            ("fail-closed", OnStoreError::FailClosed),
        ],
    )
    .unwrap_or(OnStoreError::FailOpen);
    if headers == HeaderMode::Off && config.legacy_headers {
        cx.warning(
            None,
            "legacy_headers",
            "`legacy_headers` has no effect with headers = \"off\": the legacy fields go where the RateLimit fields go",
        );
    }
    let store = compile_store(&config, cx);
    if cx.has_errors() {
        return None;
    }
    Some(RateLimitSettings {
        limits,
        store: store?,
        on_store_error,
        headers,
        legacy_headers: config.legacy_headers,
    })
}

fn compile_limits(
    list: &Spanned<Vec<Spanned<LimitConfig>>>,
    cx: &mut CompileContext<'_>,
) -> Vec<Limit> {
    if list.get_ref().is_empty() {
        cx.error_hint(
            Some(list.span()),
            "limits",
            "a rate-limit policy needs at least one limit",
            "for example limits = [{ key = \"client_ip\", rate = \"100/s\", burst = 200 }]",
        );
        return Vec::new();
    }
    if list.get_ref().len() > MAX_LIMITS {
        cx.error_hint(
            Some(list.span()),
            "limits",
            format!("a policy holds at most {MAX_LIMITS} limits"),
            "split the limits over two policies, or drop the ones a stricter limit covers",
        );
        return Vec::new();
    }
    let mut out: Vec<Limit> = Vec::new();
    let single = list.get_ref().len() == 1;
    for (i, l) in list.get_ref().iter().enumerate() {
        let l = l.get_ref();
        let at = format!("limits[{i}]");
        let key = compile_key(&l.key, &at, cx);
        let rate = match Rate::parse(l.rate.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                let hint = match e {
                    RateError::Zero => {
                        "a limit that admits nothing is `access` deny; write at least 1"
                    }
                    RateError::TooFast => "the fastest rate is 1000000000/s",
                    _ => "write N/s, N/min or N/h with a whole N, e.g. \"100/s\" or \"6000/min\"",
                };
                cx.error_hint(
                    Some(l.rate.span()),
                    &format!("{at}.rate"),
                    format!("`{}` {e}", l.rate.get_ref()),
                    hint,
                );
                None
            }
        };
        let burst = match &l.burst {
            None => rate.map(|r| r.count),
            Some(b) if *b.get_ref() < 1 => {
                cx.error_hint(
                    Some(b.span()),
                    &format!("{at}.burst"),
                    format!("burst {} admits nothing", b.get_ref()),
                    "burst is how many requests a full bucket admits at once: at least 1",
                );
                None
            }
            Some(b) => match u32::try_from(*b.get_ref()) {
                Ok(v) => Some(v),
                Err(_) => {
                    cx.error(
                        Some(b.span()),
                        &format!("{at}.burst"),
                        format!("burst {} is larger than {}", b.get_ref(), u32::MAX),
                    );
                    None
                }
            },
        };
        if let Some(n) = &l.name {
            if !is_field_name(n.get_ref()) {
                cx.error_hint(
                    Some(n.span()),
                    &format!("{at}.name"),
                    format!(
                        "`{}` cannot name a limit in the response fields",
                        n.get_ref()
                    ),
                    "use printable ASCII without quotes or backslashes, e.g. \"per_client\"",
                );
            }
        }
        let (Some(key), Some(rate), Some(burst)) = (key, rate, burst) else {
            continue;
        };
        // A full bucket holds `burst × T` of time: past a month it is no limit anyone
        // means, and the stores' clocks (nanoseconds) must hold it.
        let window = rate.emission_interval().as_nanos() * u128::from(burst);
        if window > MAX_WINDOW.as_nanos() {
            let span = l.burst.as_ref().map_or(l.rate.span(), |b| b.span());
            cx.error_hint(
                Some(span),
                &format!("{at}.burst"),
                format!(
                    "burst {burst} at {} takes {} days to refill",
                    l.rate.get_ref(),
                    window / 86_400_000_000_000
                ),
                format!(
                    "a full bucket may hold at most {} days (burst × the time per request)",
                    MAX_WINDOW.as_secs() / 86_400
                ),
            );
            continue;
        }
        // Two limits would carry one name in the response fields.
        let id =
            |name: &Option<String>, key: &KeySpec| name.clone().unwrap_or_else(|| key.to_string());
        let this = id(&l.name.as_ref().map(|n| n.get_ref().clone()), &key);
        if !single && out.iter().any(|o| id(&o.name, &o.key) == this) {
            cx.error_hint(
                Some(l.key.span()),
                &at,
                format!("two limits would be named `{this}` in the response fields"),
                "give one of them a `name`",
            );
        }
        let name = l.name.as_ref().map(|n| n.get_ref().clone());
        out.push(Limit {
            name,
            key,
            rate,
            burst,
        });
    }
    out
}

/// A limit's name as a structured-field string: printable ASCII without `"` or `\`
/// (those would need escaping; nobody needs them in a name).
fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn compile_key(key: &Spanned<KeyConfig>, at: &str, cx: &mut CompileContext<'_>) -> Option<KeySpec> {
    let parts: Vec<(Option<std::ops::Range<usize>>, &str, String)> = match key.get_ref() {
        KeyConfig::One(s) => vec![(Some(key.span()), s.as_str(), format!("{at}.key"))],
        KeyConfig::List(l) => l
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    Some(s.span()),
                    s.get_ref().as_str(),
                    format!("{at}.key[{i}]"),
                )
            })
            .collect(),
    };
    if parts.is_empty() {
        cx.error_hint(
            Some(key.span()),
            &format!("{at}.key"),
            "`key = []` counts by nothing",
            "name what to count by: \"client_ip\", \"route\", \"claim:NAME\" or \"header:NAME\"",
        );
        return None;
    }
    if parts.len() > MAX_PARTS {
        cx.error(
            Some(key.span()),
            &format!("{at}.key"),
            format!("a key combines at most {MAX_PARTS} parts"),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (span, s, name) in parts {
        match KeyPart::parse(s) {
            Ok(p) if out.contains(&p) => {
                cx.warning(span, &name, format!("`{p}` is in the key twice"));
            }
            Ok(p) => out.push(p),
            Err(e) => {
                cx.error_hint(span, &name, e.message, e.hint);
                ok = false;
            }
        }
    }
    ok.then_some(KeySpec { parts: out })
}

fn one_of<T: Copy>(
    cx: &mut CompileContext<'_>,
    v: Option<&Spanned<String>>,
    key: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let v = v?;
    if let Some((_, t)) = choices.iter().find(|(n, _)| *n == v.get_ref().as_str()) {
        return Some(*t);
    }
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    cx.error_hint(
        Some(v.span()),
        key,
        format!("`{}` is not a value of `{key}`", v.get_ref()),
        format!("write {}", names.join(" or ")),
    );
    None
}

/// `store`, `redis`, the password keys and `max_keys`, checked together.
fn compile_store(config: &RateLimitConfig, cx: &mut CompileContext<'_>) -> Option<StoreSettings> {
    let redis_store = match &config.store {
        None => false,
        Some(s) if s.get_ref() == "local" => false,
        Some(s) if s.get_ref() == "redis" => true,
        Some(s) => {
            cx.error_hint(
                Some(s.span()),
                "store",
                format!("`{}` is not a rate-limit store", s.get_ref()),
                "write \"local\" (this instance's memory) or \"redis\" (shared by every instance)",
            );
            return None;
        }
    };
    let password = SecretKeys {
        name: "redis_password",
        file: config.redis_password_file.as_ref(),
        env: config.redis_password_env.as_ref(),
        inline: config.redis_password.as_ref(),
    };
    if !redis_store {
        // Redis keys on a local policy: most likely a forgotten `store = "redis"`; a
        // silently unshared limit would be worse than an error.
        if let Some(r) = &config.redis {
            cx.error_hint(
                Some(r.span()),
                "redis",
                "`redis` is set but the policy's store is local",
                "add store = \"redis\" to share the buckets, or remove `redis`",
            );
        }
        if password.is_given() && config.redis.is_none() {
            let span = [
                config.redis_password_file.as_ref().map(|s| s.span()),
                config.redis_password_env.as_ref().map(|s| s.span()),
                config.redis_password.as_ref().map(|s| s.span()),
            ]
            .into_iter()
            .flatten()
            .next();
            cx.error(
                span,
                "redis_password_file",
                "a Redis password without a Redis store",
            );
        }
        if let Some(t) = &config.redis_timeout {
            cx.error_hint(
                Some(t.span()),
                "redis_timeout",
                "`redis_timeout` is set but the policy's store is local",
                "add store = \"redis\", or remove `redis_timeout`",
            );
        }
        if let Some(o) = &config.on_store_error {
            cx.warning(
                Some(o.span()),
                "on_store_error",
                "`on_store_error` has no effect: the local store cannot fail",
            );
        }
        let max_keys = compile_max_keys(config, cx)?;
        return Some(StoreSettings::Local { max_keys });
    }
    let max_keys = compile_max_keys(config, cx)?;
    let Some(url) = &config.redis else {
        cx.error_hint(
            config.store.as_ref().map(|s| s.span()),
            "redis",
            "store = \"redis\" needs the server's address",
            "add redis = \"redis://127.0.0.1:6379/0\"",
        );
        return None;
    };
    let server = parse_redis_url(url, cx);
    let secret = password.read(cx);
    let timeout = compile_redis_timeout(config, cx);
    let mut server = server?;
    server.password = secret;
    server.timeout = timeout?;
    if server.tls {
        cx.error_hint(
            Some(url.span()),
            "redis",
            "`rediss://` (TLS to Redis) is not supported",
            "reach Redis over a private network, or through a local TLS tunnel (stunnel, spiped) with a redis:// URL",
        );
        return None;
    }
    // The URL as the store will use it: what it refuses is an error here, not at start.
    if let Err(e) = super::redis::RedisStore::new(&server.url(), None, server.timeout) {
        cx.error(Some(url.span()), "redis", e.to_string());
        return None;
    }
    if cx.has_errors() {
        return None;
    }
    Some(StoreSettings::Redis { server, max_keys })
}

/// `max_keys`: the local store's bound (with Redis, its fail-open fallback's).
fn compile_max_keys(config: &RateLimitConfig, cx: &mut CompileContext<'_>) -> Option<usize> {
    match &config.max_keys {
        None => Some(DEFAULT_MAX_KEYS),
        Some(m) if !(1..=MAX_MAX_KEYS).contains(m.get_ref()) => {
            cx.error_hint(
                Some(m.span()),
                "max_keys",
                format!("max_keys {} is out of range", m.get_ref()),
                format!(
                    "write 1 to {MAX_MAX_KEYS} (the default {DEFAULT_MAX_KEYS} takes about 20 MB)"
                ),
            );
            None
        }
        Some(m) => Some(*m.get_ref() as usize),
    }
}

/// The default wait for a Redis decision: a loopback or same-zone round trip is well under
/// a millisecond, and a request should not wait long for a limit.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

fn compile_redis_timeout(
    config: &RateLimitConfig,
    cx: &mut CompileContext<'_>,
) -> Option<Duration> {
    let Some(t) = &config.redis_timeout else {
        return Some(DEFAULT_REDIS_TIMEOUT);
    };
    match crate::duration::try_parse_duration(t.get_ref()) {
        Ok(d) if !d.is_zero() && d <= MAX_REDIS_TIMEOUT => Some(d),
        Ok(_) => {
            cx.error_hint(
                Some(t.span()),
                "redis_timeout",
                format!("redis_timeout `{}` is out of range", t.get_ref()),
                "write a duration above zero and at most 5s, e.g. \"50ms\"",
            );
            None
        }
        Err(e) => {
            cx.error_hint(
                Some(t.span()),
                "redis_timeout",
                format!("redis_timeout: {e}"),
                "write a duration, e.g. \"50ms\"",
            );
            None
        }
    }
}

/// `redis://[USER@]HOST[:PORT][/DB]` or `rediss://` (TLS). A password in the URL is
/// refused: it comes from `redis_password_file` or `redis_password_env`.
fn parse_redis_url(url: &Spanned<String>, cx: &mut CompileContext<'_>) -> Option<RedisSettings> {
    let span = Some(url.span());
    let shape = "write redis://HOST:PORT/DB, e.g. \"redis://127.0.0.1:6379/0\" (rediss:// for TLS)";
    let parsed = match url::Url::parse(url.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            cx.error_hint(span, "redis", format!("`redis` is not a URL: {e}"), shape);
            return None;
        }
    };
    let tls = match parsed.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            cx.error_hint(
                span,
                "redis",
                format!("`{other}://` is not a Redis URL scheme"),
                shape,
            );
            return None;
        }
    };
    if parsed.password().is_some() {
        // Never echo the URL: it holds the secret.
        cx.error_hint(
            span,
            "redis",
            "the Redis URL holds a password",
            "passwords are never written in routes.toml: put it in a file named by `redis_password_file`, or an environment variable named by `redis_password_env`",
        );
        return None;
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        cx.error_hint(span, "redis", "the Redis URL names no host", shape);
        return None;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.parse::<IpAddr>().is_err()
        && host.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        cx.error_hint(span, "redis", format!("`{host}` is not a host name"), shape);
        return None;
    }
    let db = match parsed.path().trim_start_matches('/') {
        "" => 0,
        n => match n.parse::<u32>() {
            Ok(db) => db,
            Err(_) => {
                cx.error_hint(
                    span,
                    "redis",
                    format!("`/{n}` is not a database number"),
                    shape,
                );
                return None;
            }
        },
    };
    if parsed.query().is_some() || parsed.fragment().is_some() {
        cx.error_hint(
            span,
            "redis",
            "the Redis URL takes no query or fragment",
            shape,
        );
        return None;
    }
    let username = (!parsed.username().is_empty()).then(|| parsed.username().to_string());
    Some(RedisSettings {
        tls,
        host,
        port: parsed.port().unwrap_or(REDIS_PORT),
        db,
        username,
        password: None,
        timeout: DEFAULT_REDIS_TIMEOUT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use std::path::Path;

    fn compile_in(dir: &Path, src: &str) -> (Option<RateLimitSettings>, Vec<crate::Problem>) {
        let cfg: RateLimitConfig = toml::from_str(src).unwrap();
        let mut cx = CompileContext::new(dir);
        let s = compile(cfg, &mut cx);
        (s, cx.into_problems())
    }

    fn errors(src: &str) -> Vec<(String, String, Option<String>)> {
        let (s, p) = compile_in(Path::new("."), src);
        assert!(s.is_none(), "{src} compiled");
        p.into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| (p.key, p.message, p.hint))
            .collect()
    }

    #[test]
    fn a_policy_compiles_with_defaults() {
        let (s, p) = compile_in(
            Path::new("."),
            "limits = [{ key = \"client_ip\", rate = \"100/s\", burst = 200 }, { key = [\"route\", \"claim:sub\"], rate = \"6000/min\" }]",
        );
        assert!(p.is_empty(), "{p:?}");
        let s = s.unwrap();
        assert_eq!(s.limits[0].burst, 200);
        assert_eq!(s.limits[1].burst, 6000, "burst defaults to the count");
        assert_eq!(s.limits[1].field_name("p", false), "p.route+claim:sub");
        assert_eq!(
            s.store,
            StoreSettings::Local {
                max_keys: DEFAULT_MAX_KEYS
            }
        );
        assert_eq!(s.headers, HeaderMode::Refusals);
        assert_eq!(s.on_store_error, OnStoreError::FailOpen);
        assert_eq!(s.limits[0].field_name("p\"x", true), "p_x");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let e = errors(
            "limits = [{ key = \"ip\", rate = \"10/sec\", burst = 0 }, { key = [], rate = \"0/h\" }]\nheaders = \"sometimes\"\nmax_keys = 0",
        );
        let keys: Vec<&str> = e.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "limits[0].key",
                "limits[0].rate",
                "limits[0].burst",
                "limits[1].key",
                "limits[1].rate",
                "headers",
                "max_keys"
            ]
        );
        assert_eq!(e[0].2.as_deref(), Some("did you mean `client_ip`?"));
        assert!(e[1].1.contains("unknown unit"), "{:?}", e[1]);
    }

    #[test]
    fn two_limits_with_one_name_need_a_name() {
        let e = errors(
            "limits = [{ key = \"client_ip\", rate = \"1/s\" }, { key = \"client_ip\", rate = \"100/h\" }]",
        );
        assert!(
            e[0].1.contains("two limits would be named `client_ip`"),
            "{e:?}"
        );
        let (s, _) = compile_in(
            Path::new("."),
            "limits = [{ key = \"client_ip\", rate = \"1/s\" }, { key = \"client_ip\", rate = \"100/h\", name = \"hourly\" }]",
        );
        assert!(s.is_some());
        let e = errors("limits = [{ key = \"client_ip\", rate = \"1/s\", name = \"a\\\"b\" }]");
        assert_eq!(e[0].0, "limits[0].name");
    }

    #[test]
    fn a_bucket_holds_at_most_thirty_days() {
        let e = errors("limits = [{ key = \"client_ip\", rate = \"1/h\", burst = 6000000 }]");
        assert_eq!(e[0].0, "limits[0].burst");
        assert!(e[0].1.contains("takes 250000 days to refill"), "{e:?}");
        let e = errors("limits = [{ key = \"client_ip\", rate = \"1/min\", burst = 4294967295 }]");
        assert_eq!(e[0].0, "limits[0].burst");
        let (s, p) = compile_in(
            Path::new("."),
            "limits = [{ key = \"client_ip\", rate = \"1/h\", burst = 720 }]",
        );
        assert!(s.is_some(), "30 days exactly is allowed: {p:?}");
    }

    #[test]
    fn a_redis_policy_compiles() {
        let (s, p) = compile_in(
            Path::new("."),
            "store = \"redis\"\nredis = \"redis://ops@127.0.0.1:6390/3\"\nredis_timeout = \"20ms\"\non_store_error = \"fail-closed\"\nlimits = [{ key = \"claim:client_id\", rate = \"6000/min\", burst = 100 }]",
        );
        assert!(p.is_empty(), "{p:?}");
        let s = s.expect("compiles");
        let StoreSettings::Redis { server, max_keys } = &s.store else {
            panic!("a Redis store: {:?}", s.store);
        };
        assert_eq!(server.url(), "redis://ops@127.0.0.1:6390/3");
        assert_eq!(server.timeout, Duration::from_millis(20));
        assert_eq!(*max_keys, DEFAULT_MAX_KEYS);
        assert_eq!(s.on_store_error, OnStoreError::FailClosed);
    }

    #[test]
    fn redis_settings_are_checked() {
        let e = errors("store = \"redis\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]");
        assert_eq!(e[0].0, "redis");
        let e = errors(
            "store = \"redis\"\nredis = \"redis://u:hunter2@127.0.0.1:6379/0\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]",
        );
        assert!(e[0].1.contains("holds a password"), "{e:?}");
        assert!(!format!("{e:?}").contains("hunter2"));
        for (url, what) in [
            ("http://127.0.0.1:6379", "not a Redis URL scheme"),
            ("redis://127.0.0.1:6379/zero", "not a database number"),
            ("redis://127.0.0.1:99999", "not a URL"),
            ("redis://127.0.0.1/0?timeout=1", "no query"),
            ("not a url", "not a URL"),
        ] {
            let e = errors(&format!(
                "store = \"redis\"\nredis = \"{url}\"\nlimits = [{{ key = \"client_ip\", rate = \"1/s\" }}]"
            ));
            assert!(e[0].1.contains(what), "{url}: {e:?}");
        }
        let e = errors(
            "store = \"redis\"\nredis = \"redis://127.0.0.1\"\nredis_password = \"x\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]",
        );
        assert_eq!(e[0].0, "redis_password");
        let e = errors("store = \"redis\"\nredis = \"rediss://cache.internal:6380/2\"\non_store_error = \"fail-closed\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "redis");
        assert!(e[0].1.contains("not supported"), "{e:?}");
        for t in ["0s", "10s", "fast"] {
            let e = errors(&format!("store = \"redis\"\nredis = \"redis://h\"\nredis_timeout = \"{t}\"\nlimits = [{{ key = \"client_ip\", rate = \"1/s\" }}]"));
            assert_eq!(e[0].0, "redis_timeout", "{t}: {e:?}");
        }
        let e =
            errors("redis_timeout = \"50ms\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]");
        assert_eq!(e[0].0, "redis_timeout");
        let e = errors("store = \"memcached\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]");
        assert_eq!(e[0].0, "store");
        let e = errors(
            "redis = \"redis://127.0.0.1\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]",
        );
        assert!(e[0].2.as_deref().unwrap().contains("store = \"redis\""));
        let e = errors("store = \"redis\"\nredis = \"redis://h\"\nmax_keys = 0\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]");
        assert_eq!(e[0].0, "max_keys");
    }

    #[test]
    fn a_redis_url_parses_into_its_parts() {
        let url = Spanned::new(0..1, "rediss://ops@cache.internal:6380/2".to_string());
        let mut cx = CompileContext::new(Path::new("."));
        let r = parse_redis_url(&url, &mut cx).unwrap();
        assert_eq!(
            (r.tls, r.host.as_str(), r.port, r.db, r.username.as_deref()),
            (true, "cache.internal", 6380, 2, Some("ops"))
        );
        let url = Spanned::new(0..1, "redis://[::1]".to_string());
        let r = parse_redis_url(&url, &mut cx).unwrap();
        assert_eq!((r.host.as_str(), r.port, r.db), ("::1", 6379, 0));
    }

    #[test]
    fn on_store_error_on_a_local_store_is_a_warning() {
        let (s, p) = compile_in(
            Path::new("."),
            "on_store_error = \"fail-closed\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]",
        );
        assert!(s.is_some());
        assert_eq!(p[0].severity, Severity::Warning);
    }
}
