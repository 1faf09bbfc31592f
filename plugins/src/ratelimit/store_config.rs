//! The store part of `[rate_limits.NAME]`: `store`, the Redis server and its password,
//! `redis_timeout` and `max_keys`, checked together (see [`super::config`]).

use std::net::IpAddr;
use std::time::Duration;
use toml::Spanned;

use super::config::{
    RateLimitConfig, RedisSettings, StoreSettings, DEFAULT_MAX_KEYS, MAX_MAX_KEYS, REDIS_PORT,
};
use crate::auth::secret::SecretKeys;
use crate::CompileContext;

/// `store`, `redis`, the password keys and `max_keys`, checked together.
pub(super) fn compile_store(
    config: &RateLimitConfig,
    cx: &mut CompileContext<'_>,
) -> Option<StoreSettings> {
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
    use crate::ratelimit::config::tests::{compile_in, errors};
    use crate::ratelimit::config::OnStoreError;
    use std::path::Path;

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
}
