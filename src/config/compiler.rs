//! The compiler's working state and the checks every section shares: duration keys, fixed
//! choices, timeouts, addresses, file paths and header edits, each reported with the key's
//! position and a hint.
//!
//! Section-specific compilation lives in `gateway.rs`, `services.rs` and `routes.rs`; this
//! file knows no section.

use http::{HeaderName, HeaderValue};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

use super::diag::Diagnostics;
use super::gateway::read_pem_certs;
use super::raw::{RawHeaderEdits, RawTimeouts};
use super::recover;
use crate::duration::{try_parse_duration, DurationError};
use crate::router::HeaderEdits;
use crate::upstream::Timeouts;

/// Whether a duration key may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zero {
    /// Zero has a meaning (e.g. `grace_period = "0s"`: exit at once).
    Allowed,
    /// Zero would fail every request or connection; the hint says what zero would do.
    Refused(&'static str),
}

/// What a zero timeout does to every request, for the upstream `timeouts` keys.
const ZERO_TIMEOUT: &str = "a zero timeout fails every request";

pub(super) fn span_of<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

pub(super) struct Compiler<'a> {
    pub(super) d: Diagnostics<'a>,
    pub(super) base_dir: PathBuf,
}

impl Compiler<'_> {
    /// A duration key whose zero value has a meaning (or is harmless).
    pub(super) fn duration(&mut self, v: &Option<Spanned<String>>, key: &str) -> Option<Duration> {
        self.duration_with(v, key, Zero::Allowed)
    }

    /// A duration key that must be at least 1ms.
    pub(super) fn positive_duration(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        zero_means: &'static str,
    ) -> Option<Duration> {
        self.duration_with(v, key, Zero::Refused(zero_means))
    }

    fn duration_with(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        zero: Zero,
    ) -> Option<Duration> {
        let v = v.as_ref()?;
        let text = v.get_ref();
        let (message, hint) = match (try_parse_duration(text), zero) {
            (Ok(d), Zero::Refused(what)) if d.is_zero() => (
                format!("`{text}` is zero: {what}"),
                "use at least \"1ms\"; leave the key out for the default".to_string(),
            ),
            (Ok(d), _) => return Some(d),
            (Err(DurationError::Syntax), _) => (
                format!("`{text}` is not a duration"),
                "write a number with a unit: \"250ms\", \"2s\", \"1m\"".to_string(),
            ),
            (Err(DurationError::TooLong), _) => (
                format!("`{text}` is too long: durations are at most one year"),
                "use at most \"8760h\"".to_string(),
            ),
            (Err(DurationError::BelowMillisecond), _) => (
                format!("`{text}` is shorter than a millisecond"),
                "ficus's timers count milliseconds: use \"0s\" or at least \"1ms\"".to_string(),
            ),
        };
        self.d.error_hint(span_of(v), key, message, hint);
        None
    }

    /// A string key with a fixed set of values; the first is the default. An unknown value
    /// is an error that lists the allowed ones.
    pub(super) fn one_of<T: Copy>(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> T {
        let Some(v) = v else {
            return choices[0].1;
        };
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == v.get_ref()) {
            return *t;
        }
        let allowed: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.d.error_hint(
            span_of(v),
            key,
            format!("unknown {what} `{}`", v.get_ref()),
            format!("use {}", allowed.join(", ")),
        );
        choices[0].1
    }

    pub(super) fn timeouts(&mut self, t: &Option<RawTimeouts>, key: &str) -> Timeouts {
        let Some(t) = t else {
            return Timeouts::default();
        };
        Timeouts {
            connect: self.positive_duration(&t.connect, &format!("{key}.connect"), ZERO_TIMEOUT),
            read: self.positive_duration(&t.read, &format!("{key}.read"), ZERO_TIMEOUT),
            total: self.positive_duration(&t.total, &format!("{key}.total"), ZERO_TIMEOUT),
        }
    }

    pub(super) fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The value of the environment variable `env` names, which must be set and not
    /// blank; `what` names the secret and `otherwise` the alternative, for the hints.
    /// Messages name the variable, never its value.
    pub(super) fn secret_from_env(
        &mut self,
        env: &Spanned<String>,
        key: &str,
        what: &str,
        otherwise: &str,
    ) -> Option<String> {
        let name = env.get_ref();
        let (message, hint) = match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => return Some(v),
            Ok(_) => (
                format!("environment variable `{name}` is empty"),
                format!("put the {what} in it, or {otherwise}"),
            ),
            Err(_) => (
                format!("environment variable `{name}` is not set"),
                format!("export it before starting ficus, or {otherwise}"),
            ),
        };
        self.d.error_hint(span_of(env), key, message, hint);
        None
    }

    /// A secret kept in a file (relative to the config's directory), which must be
    /// readable and not blank. A trailing line end is not part of it. Messages name the
    /// file, never its contents.
    pub(super) fn secret_from_file(&mut self, file: &Spanned<String>, key: &str) -> Option<String> {
        let path = self.resolve_path(file.get_ref());
        let text = ficus_plugins::files::read_bounded(&path).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        });
        match text {
            Ok(text) => {
                let secret = text.trim_end_matches(['\r', '\n']);
                if secret.trim().is_empty() {
                    self.d
                        .error(span_of(file), key, format!("{} is empty", path.display()));
                    return None;
                }
                Some(secret.to_string())
            }
            Err(e) => {
                self.d.error_hint(
                    span_of(file),
                    key,
                    format!("cannot read {}: {e}", path.display()),
                    "a relative path is resolved against the config file's directory",
                );
                None
            }
        }
    }

    /// The certificates of a PEM CA file: readable and holding at least one.
    pub(super) fn ca_certs(
        &mut self,
        file: &str,
        span: Range<usize>,
        key: &str,
    ) -> Option<Vec<Vec<u8>>> {
        let p = self.resolve_path(file);
        match read_pem_certs(&p) {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => {
                self.d.error(
                    span,
                    key,
                    format!("{} holds no PEM certificate", p.display()),
                );
                None
            }
            Err(e) => {
                self.d
                    .error(span, key, format!("cannot read {}: {e}", p.display()));
                None
            }
        }
    }

    pub(super) fn socket_addr(
        &mut self,
        s: &str,
        span: Range<usize>,
        key: &str,
    ) -> Option<SocketAddr> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a);
        }
        match s.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                self.d.error_hint(
                    span,
                    key,
                    format!("`{s}` is not an address"),
                    "write `ip:port` or `host:port`, e.g. \"127.0.0.1:8081\"",
                );
                None
            }
        }
    }

    /// Why a header cannot be edited per route, if it cannot: hop-by-hop headers describe
    /// one connection, and the framing headers say where the body ends, so editing them
    /// would truncate or hang messages. `host` is a legitimate request override but
    /// means nothing on a response.
    fn uneditable(name: &HeaderName, side: HeaderSide) -> Option<(String, &'static str)> {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            return Some((
                format!("`{name}` frames the message body and cannot be edited per route"),
                "ficus and pingora set framing headers from the body they actually send",
            ));
        }
        if is_hop_by_hop(name) {
            return Some((
                format!("`{name}` is a hop-by-hop header and cannot be set per route"),
                "hop-by-hop headers describe one connection; ficus manages them",
            ));
        }
        if side == HeaderSide::Response && name == http::header::HOST {
            return Some((
                "`host` is a request header; setting it on a response has no meaning".into(),
                "to change the Host the upstream sees, use `request_headers`",
            ));
        }
        None
    }

    pub(super) fn header_edits(
        &mut self,
        raw: &RawHeaderEdits,
        key: &str,
        side: HeaderSide,
    ) -> HeaderEdits {
        let mut out = HeaderEdits::default();
        for (list, dest) in [(&raw.set, "set"), (&raw.add, "add")] {
            for (name, value) in list {
                let k = format!("{key}.{dest}.{name}");
                let n = HeaderName::from_bytes(name.as_bytes());
                let v = HeaderValue::from_str(value.get_ref());
                let too_long = super::bounds::header_value_too_long(value.get_ref());
                match (n, v, too_long) {
                    (Ok(_), Ok(_), Some(message)) => self.d.error_hint(
                        span_of(value),
                        k,
                        message,
                        "a value this long is sent with every message of the route; keep it in the upstream",
                    ),
                    (Ok(n), Ok(v), None) => {
                        if let Some((message, hint)) = Self::uneditable(&n, side) {
                            self.d.error_hint(span_of(value), k, message, hint);
                        } else if dest == "set" {
                            out.set.push((n, v));
                        } else {
                            out.add.push((n, v));
                        }
                    }
                    (Err(_), _, _) => self.d.error(
                        span_of(value),
                        k,
                        format!("`{name}` is not a valid header name"),
                    ),
                    (_, Err(_), _) => self.d.error(
                        span_of(value),
                        k,
                        "header value contains characters not allowed in HTTP headers",
                    ),
                }
            }
        }
        for name in &raw.remove {
            match HeaderName::from_bytes(name.get_ref().as_bytes()) {
                Ok(n)
                    if n == http::header::CONTENT_LENGTH
                        || n == http::header::TRANSFER_ENCODING =>
                {
                    self.d.error_hint(
                        span_of(name),
                        format!("{key}.remove"),
                        format!("`{n}` frames the message body and cannot be removed"),
                        "without it the receiver cannot tell where the body ends",
                    )
                }
                Ok(n) => out.remove.push(n),
                Err(_) => self.d.error(
                    span_of(name),
                    format!("{key}.remove"),
                    format!("`{}` is not a valid header name", name.get_ref()),
                ),
            }
        }
        out
    }
}

/// Which message a route's header edits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderSide {
    Request,
    Response,
}

/// Header names that describe one connection and are never forwarded.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Deserializes one section, recording every unknown key and type error in it.
pub(super) fn deserialize<'i, T: serde::Deserialize<'i>>(
    c: &mut Compiler<'_>,
    value: Spanned<DeValue<'i>>,
    key: &str,
) -> Option<T> {
    match recover::deserialize_all(&mut c.d, value, key) {
        recover::Outcome::Parsed(v) => Some(v),
        recover::Outcome::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{errors, messages, BASE, ROUTE};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn huge_durations_are_errors_with_location() {
        let src = format!("[gateway]\ngrace_period = \"999999999999999999999h\"\n{BASE}");
        let d = errors(&src);
        assert_eq!((d[0].line, d[0].column), (2, 16), "{d:?}");
        assert!(d[0].message.contains("at most one year"), "{d:?}");
        let src = format!(
            "[gateway.limits]\nheader_read_timeout = \"3000000000000000h\"\n{BASE}timeouts = {{ total = \"3000000000000000h\" }}\n"
        );
        let m = messages(&src);
        assert_eq!(
            m.iter().filter(|m| m.contains("too long")).count(),
            2,
            "{m:?}"
        );
    }

    #[test]
    fn zero_timeouts_are_errors_but_a_zero_grace_period_is_not() {
        let src = format!(
            "[gateway]\ngrace_period = \"0s\"\n[gateway.limits]\nheader_read_timeout = \"0s\"\nbody_read_timeout = \"0ms\"\n{BASE}timeouts = {{ connect = \"0s\", read = \"0s\", total = \"0.0001ms\" }}\n"
        );
        let m = messages(&src);
        for key in [
            "header_read_timeout",
            "body_read_timeout",
            "timeouts.connect",
            "timeouts.read",
        ] {
            assert!(
                m.iter().any(|m| m.contains(key) && m.contains("is zero")),
                "{key}: {m:?}"
            );
        }
        assert!(
            m.iter()
                .any(|m| m.contains("timeouts.total") && m.contains("shorter than a millisecond")),
            "{m:?}"
        );
        assert!(!m.iter().any(|m| m.contains("grace_period")), "{m:?}");
        let ok = format!("[gateway]\ngrace_period = \"0s\"\n{BASE}");
        let cfg = compile(Path::new("routes.toml"), &ok).unwrap();
        assert_eq!(cfg.gateway.grace_period, Duration::ZERO);
    }

    #[test]
    fn framing_headers_cannot_be_edited() {
        let src = format!(
            "{BASE}{ROUTE}request_headers = {{ set = {{ \"content-length\" = \"3\", host = \"upstream.example\" }}, remove = [\"transfer-encoding\"] }}\nresponse_headers = {{ add = {{ \"Content-Length\" = \"5\", host = \"x\" }}, remove = [\"content-length\"] }}\n"
        );
        let m = messages(&src);
        assert_eq!(
            m.iter()
                .filter(|m| m.contains("frames the message body"))
                .count(),
            4,
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m.contains("response_headers.add.host")),
            "{m:?}"
        );
        assert!(
            !m.iter().any(|m| m.contains("request_headers.set.host")),
            "{m:?}"
        );
    }
}
