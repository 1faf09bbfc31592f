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
use std::time::Duration;
use toml::Spanned;

use super::key::{KeyPart, KeySpec, MAX_PARTS};
use super::rate::{Rate, RateError};
use crate::auth::secret::Secret;
use crate::CompileContext;

/// At most this many limits in one policy.
pub const MAX_LIMITS: usize = 8;
/// `max_keys` when none is given: about 20 MB of buckets (docs/rate-limiting.md).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// The largest `max_keys` (a guard against a typo's extra zeros).
pub(super) const MAX_MAX_KEYS: i64 = 100_000_000;
/// The Redis port when the URL names none.
pub(super) const REDIS_PORT: u16 = 6379;
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
    let store = super::store_config::compile_store(&config, cx);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Severity;
    use std::path::Path;

    pub(crate) fn compile_in(
        dir: &Path,
        src: &str,
    ) -> (Option<RateLimitSettings>, Vec<crate::Problem>) {
        let cfg: RateLimitConfig = toml::from_str(src).unwrap();
        let mut cx = CompileContext::new(dir);
        let s = compile(cfg, &mut cx);
        (s, cx.into_problems())
    }

    pub(crate) fn errors(src: &str) -> Vec<(String, String, Option<String>)> {
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
    fn on_store_error_on_a_local_store_is_a_warning() {
        let (s, p) = compile_in(
            Path::new("."),
            "on_store_error = \"fail-closed\"\nlimits = [{ key = \"client_ip\", rate = \"1/s\" }]",
        );
        assert!(s.is_some());
        assert_eq!(p[0].severity, Severity::Warning);
    }
}
