//! routes.toml: parse (raw serde model with spans), validate, and compile into runtime types.
//!
//! Loading never stops at the first problem: every route and service is checked and all
//! diagnostics are returned together, each with `file:line:column`, the key and a hint.
//! The compiled [`Config`] holds only runtime types (matchers, header names, durations,
//! socket addresses); nothing here is consulted as a string on the request path.

pub mod diag;
pub mod raw;
mod recover;
mod shadow;
mod tls;

use diag::{did_you_mean, Diagnostic, Diagnostics, Severity};
use http::{HeaderName, HeaderValue, Method};
use raw::*;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::registry::dns::DnsQuery;
use crate::registry::spec::*;
use crate::router::normalize::PathFlags;
use crate::router::pattern::{HostPattern, PathPattern};
use crate::router::{HeaderEdits, Rewrite, Route, Router, Timeouts};
use crate::upstream::UpstreamTls;

/// Why a config could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    let errors = d.iter().filter(|d| d.severity == Severity::Error).count();
    let mut out = format!("{errors} error(s) in config:");
    for item in d {
        out.push('\n');
        out.push_str(&item.to_string());
    }
    out
}

/// Access log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Text,
    Json,
    Off,
}

/// An IP network for `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (
                ip.trim().parse::<IpAddr>().ok()?,
                Some(p.trim().parse::<u8>().ok()?),
            ),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A certificate for a TLS listener.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Lowercase SNI names (exact or `*.suffix`) this certificate serves.
    pub hosts: Vec<String>,
}

/// One listening socket.
#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    /// TLS certificates; the first is the default for unknown or missing SNI.
    pub tls: Vec<Certificate>,
    pub http2: bool,
    pub h2c: bool,
}

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// How long a client connection may sit idle between requests (HTTP/1 keep-alive, and
    /// HTTP/2 with no stream open).
    pub keepalive_timeout: Duration,
    /// The longest a write to the client may wait (a client that stops reading).
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// `[gateway]`, compiled.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listeners: Vec<Listener>,
    pub admin: SocketAddr,
    pub threads: usize,
    pub grace_period: Duration,
    pub trusted_proxies: Vec<Cidr>,
    pub access_log: AccessLog,
    pub limits: Limits,
    pub zone: Option<String>,
    /// Keep header names' original spelling on the way through (else canonical case).
    pub preserve_header_case: bool,
    pub trace_context: TraceContext,
}

/// What the gateway does with W3C trace context (`traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceContext {
    /// Continue the client's trace with a new parent id for the gateway's hop, or start a
    /// new sampled trace when the client sent none (or an invalid one).
    Start,
    /// Continue the client's trace; without a valid one the upstream gets none.
    Continue,
    /// Leave `traceparent` alone: forwarded exactly as the client sent it, or not at all.
    Off,
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A fully compiled routes.toml.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub gateway: GatewaySettings,
    pub services: Vec<ServiceSpec>,
    pub registry: RegistrySettings,
    pub router: Router,
    /// Warnings found while compiling (the config is still usable).
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

/// Reads and compiles a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    compile(path, &source)
}

/// The longest duration any key accepts. Timers add durations to `Instant`s, which
/// overflows long before `Duration::MAX`; a year is far beyond any sensible setting and
/// safely inside what every clock can represent.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest non-zero duration: ficus's timers count milliseconds.
pub const MIN_NONZERO_DURATION: Duration = Duration::from_millis(1);

/// Why a duration string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("not a number followed by a unit")]
    Syntax,
    #[error("longer than the maximum of one year")]
    TooLong,
    #[error("shorter than 1ms but not zero")]
    BelowMillisecond,
}

/// Parses a duration like `250ms`, `2s`, `1.5s`, `5m`, `1h` (a space between the number
/// and the unit is allowed). Never panics: values over [`MAX_DURATION`] and non-zero values
/// under a millisecond are errors.
pub fn try_parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(DurationError::Syntax)?;
    let (num, unit) = s.split_at(split);
    if !num.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(DurationError::Syntax);
    }
    let value: f64 = num.parse().map_err(|_| DurationError::Syntax)?;
    let unit_secs = match unit.trim_start() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError::Syntax),
    };
    let secs = value * unit_secs;
    if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong);
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| DurationError::TooLong)?;
    if secs > 0.0 && d < MIN_NONZERO_DURATION {
        return Err(DurationError::BelowMillisecond);
    }
    Ok(d)
}

/// [`try_parse_duration`] for callers that only need to know whether it is valid.
pub fn parse_duration(s: &str) -> Option<Duration> {
    try_parse_duration(s).ok()
}

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

fn span_of<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

struct Compiler<'a> {
    d: Diagnostics<'a>,
    base_dir: PathBuf,
}

impl Compiler<'_> {
    /// A duration key whose zero value has a meaning (or is harmless).
    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str) -> Option<Duration> {
        self.duration_with(v, key, Zero::Allowed)
    }

    /// A duration key that must be at least 1ms.
    fn positive_duration(
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
    fn one_of<T: Copy>(
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

    fn timeouts(&mut self, t: &Option<RawTimeouts>, key: &str) -> Timeouts {
        let Some(t) = t else {
            return Timeouts::default();
        };
        Timeouts {
            connect: self.positive_duration(&t.connect, &format!("{key}.connect"), ZERO_TIMEOUT),
            read: self.positive_duration(&t.read, &format!("{key}.read"), ZERO_TIMEOUT),
            total: self.positive_duration(&t.total, &format!("{key}.total"), ZERO_TIMEOUT),
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn socket_addr(&mut self, s: &str, span: Range<usize>, key: &str) -> Option<SocketAddr> {
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

    fn header_edits(&mut self, raw: &RawHeaderEdits, key: &str, side: HeaderSide) -> HeaderEdits {
        let mut out = HeaderEdits::default();
        for (list, dest) in [(&raw.set, "set"), (&raw.add, "add")] {
            for (name, value) in list {
                let k = format!("{key}.{dest}.{name}");
                let n = HeaderName::from_bytes(name.as_bytes());
                let v = HeaderValue::from_str(value.get_ref());
                match (n, v) {
                    (Ok(n), Ok(v)) => {
                        if let Some((message, hint)) = Self::uneditable(&n, side) {
                            self.d.error_hint(span_of(value), k, message, hint);
                        } else if dest == "set" {
                            out.set.push((n, v));
                        } else {
                            out.add.push((n, v));
                        }
                    }
                    (Err(_), _) => self.d.error(
                        span_of(value),
                        k,
                        format!("`{name}` is not a valid header name"),
                    ),
                    (_, Err(_)) => self.d.error(
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
enum HeaderSide {
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
fn deserialize<'i, T: serde::Deserialize<'i>>(
    c: &mut Compiler<'_>,
    value: Spanned<DeValue<'i>>,
    key: &str,
) -> Option<T> {
    match recover::deserialize_all(&mut c.d, value, key) {
        recover::Outcome::Parsed(v) => Some(v),
        recover::Outcome::Failed => None,
    }
}

/// The services routes can name, for lookups and "did you mean" hints.
struct ServiceNames<'n> {
    names: Vec<&'n str>,
    index: HashMap<&'n str, usize>,
    /// Services whose own section had errors: already reported, so not "unknown".
    failed: &'n HashSet<String>,
    /// Services some route names, or meant to name (the "did you mean" of a typo): a
    /// service left out only because of a misspelling is not also reported as unused.
    used: Vec<bool>,
}

impl<'n> ServiceNames<'n> {
    fn new(names: Vec<&'n str>, failed: &'n HashSet<String>) -> Self {
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        ServiceNames {
            used: vec![false; names.len()],
            names,
            index,
            failed,
        }
    }

    /// The index of the service a route names (`what` is "service" or "fallback
    /// service"); an unknown name is an error with a hint.
    fn resolve(
        &mut self,
        d: &mut Diagnostics<'_>,
        name: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Option<usize> {
        let n = name.get_ref();
        if let Some(&idx) = self.index.get(n.as_str()) {
            self.used[idx] = true;
            return Some(idx);
        }
        if self.failed.contains(n) {
            return None;
        }
        let same_but_case = self.names.iter().find(|s| s.eq_ignore_ascii_case(n));
        let suggestion = same_but_case
            .copied()
            .or_else(|| did_you_mean(n, self.names.iter().copied()));
        if let Some(idx) = suggestion.and_then(|s| self.index.get(s)) {
            self.used[*idx] = true;
        }
        let hint = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None if self.names.is_empty() => "define it under `[services.NAME]`".to_string(),
            None => format!("known services: {}", self.names.join(", ")),
        };
        d.error_hint(span_of(name), key, format!("unknown {what} `{n}`"), hint);
        None
    }
}

/// Compiles config text; `path` is used for messages and to resolve relative file names.
pub fn compile(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let mut c = Compiler {
        d: Diagnostics::new(&file, source),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let doc = match DeTable::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            c.d.toml_error(&e, "", None, 0..0);
            return Err(ConfigError::Invalid(c.d.items));
        }
    };
    let mut raw_gateway: Option<(RawGateway, Range<usize>)> = None;
    let mut raw_services: Vec<(String, Range<usize>, RawService)> = Vec::new();
    let mut raw_routes: Vec<(usize, Range<usize>, RawRoute)> = Vec::new();
    // Services whose section had errors: routes naming them are not told "unknown service".
    let mut failed_services: HashSet<String> = HashSet::new();
    let mut saw_routes = false;
    // A route that did not deserialize may have named any service, so "not used" warnings
    // would be guesses.
    let mut some_route_failed = false;
    let mut raw_registry = RawRegistry::default();
    let mut route_service_refs: Vec<(usize, Spanned<String>)> = Vec::new();

    // No keys at all: an empty file, or only comments (as after a truncated write).
    let no_keys = doc.get_ref().is_empty();
    for (key, value) in doc.into_inner() {
        let kspan = key.span();
        match key.get_ref().as_ref() {
            "gateway" => {
                let span = value.span();
                if let Some(g) = deserialize::<RawGateway>(&mut c, value, "gateway") {
                    raw_gateway = Some((g, span));
                }
            }
            "services" => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Table(t) => {
                        for (name, v) in t {
                            let sspan = name.span();
                            let name = name.into_inner().to_string();
                            let key = format!("services.{name}");
                            match deserialize::<RawService>(&mut c, v, &key) {
                                Some(s) => raw_services.push((name, sspan, s)),
                                None => {
                                    failed_services.insert(name);
                                }
                            }
                        }
                    }
                    _ => c.d.error(
                        span,
                        "services",
                        "`services` must be a table of named services",
                    ),
                }
            }
            "registry" => {
                if let Some(r) = deserialize::<RawRegistry>(&mut c, value, "registry") {
                    raw_registry = r;
                }
            }
            "routes" => {
                saw_routes = true;
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => {
                        for (i, v) in items.into_iter().enumerate() {
                            let rspan = v.span();
                            // Keep the service reference even if the route fails to
                            // deserialize, so it is still checked and counted as used.
                            if let Some(svc) = v.get_ref().get("service") {
                                if let Some(name) = svc.get_ref().as_str() {
                                    route_service_refs
                                        .push((i, Spanned::new(svc.span(), name.to_string())));
                                }
                            }
                            match deserialize::<RawRoute>(&mut c, v, &format!("routes[{i}]")) {
                                Some(r) => raw_routes.push((i, rspan, r)),
                                None => some_route_failed = true,
                            }
                        }
                    }
                    _ => c.d.error_hint(
                        span,
                        "routes",
                        "`routes` must be an array of tables",
                        "write each route as a `[[routes]]` section",
                    ),
                }
            }
            other => {
                let hint = match did_you_mean(other, ["gateway", "registry", "services", "routes"].into_iter())
                {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "the top-level sections are `[gateway]`, `[registry]`, `[services.NAME]` and `[[routes]]`"
                            .into()
                    }
                };
                c.d.error_hint(
                    kspan,
                    other,
                    format!("unknown top-level key `{other}`"),
                    hint,
                );
            }
        }
    }

    let gateway = compile_gateway(&mut c, raw_gateway.map(|(g, _)| g).unwrap_or_default());

    let registry = compile_registry(&mut c, raw_registry, gateway.zone.clone());

    // Services.
    let mut services: Vec<ServiceSpec> = Vec::new();
    let mut service_spans: Vec<Range<usize>> = Vec::new();
    for (name, span, raw) in &raw_services {
        services.push(compile_service(&mut c, name, span, raw, &registry));
        service_spans.push(span.clone());
    }
    let mut names = ServiceNames::new(
        raw_services.iter().map(|(n, _, _)| n.as_str()).collect(),
        &failed_services,
    );

    // Routes.
    let mut routes = Vec::new();
    let mut route_names: HashMap<String, Range<usize>> = HashMap::new();
    for (i, span, raw) in &raw_routes {
        let key = format!("routes[{i}]");
        let name = raw.name.get_ref().clone();
        if name.is_empty() {
            c.d.error(
                span_of(&raw.name),
                format!("{key}.name"),
                "route name is empty",
            );
        }
        if let Some(prev) = route_names.get(&name) {
            let at = c.d.location(prev);
            c.d.error_hint(
                span_of(&raw.name),
                format!("{key}.name"),
                format!("route name `{name}` is used twice"),
                format!("first used at {at}; names label metrics and logs, so they must be unique"),
            );
        } else {
            route_names.insert(name.clone(), span_of(&raw.name));
        }
        let service = names.resolve(&mut c.d, &raw.service, &format!("{key}.service"), "service");
        let m = raw.matcher.get_ref();
        let pattern = match PathPattern::parse(m.path.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                c.d.error_hint(
                    span_of(&m.path),
                    format!("{key}.match.path"),
                    format!("bad path pattern `{}`: {e}", m.path.get_ref()),
                    "patterns look like /exact, /users/{id}, /static/*, /orders/**",
                );
                None
            }
        };
        let host = m
            .host
            .as_ref()
            .and_then(|h| match HostPattern::parse(h.get_ref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.d.error(
                        span_of(h),
                        format!("{key}.match.host"),
                        format!("bad host pattern: {e}"),
                    );
                    None
                }
            });
        let mut methods = Vec::new();
        for meth in &m.methods {
            let upper = meth.get_ref().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(mm) => {
                    let standard = [
                        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                        "CONNECT",
                    ];
                    if !standard.contains(&mm.as_str()) {
                        let hint = did_you_mean(mm.as_str(), standard.into_iter())
                            .map(|s| format!("did you mean `{s}`?"));
                        c.d.warning(
                            span_of(meth),
                            format!("{key}.match.methods"),
                            format!("`{}` is not a standard HTTP method", meth.get_ref()),
                            hint,
                        );
                    }
                    methods.push(mm);
                }
                Err(_) => c.d.error(
                    span_of(meth),
                    format!("{key}.match.methods"),
                    format!("`{}` is not a valid method", meth.get_ref()),
                ),
            }
        }
        let mut headers = Vec::new();
        for (hname, hval) in &m.headers {
            let n = HeaderName::from_bytes(hname.as_bytes());
            let v = if hval.get_ref() == "*" {
                Ok(None)
            } else {
                HeaderValue::from_str(hval.get_ref()).map(Some)
            };
            match (n, v) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => c.d.error(
                    span_of(hval),
                    format!("{key}.match.headers.{hname}"),
                    "invalid header name or value",
                ),
            }
        }
        let mut allow = PathFlags::empty();
        for a in &raw.allow {
            match PathFlags::from_name(a.get_ref()) {
                Some(f) => allow.insert(f),
                None => {
                    let opts = ["encoded_slash", "backslash", "semicolon"];
                    let hint = did_you_mean(a.get_ref(), opts.into_iter()).map_or_else(
                        || format!("allowed values: {}", opts.join(", ")),
                        |s| format!("did you mean `{s}`?"),
                    );
                    c.d.error_hint(
                        span_of(a),
                        format!("{key}.allow"),
                        format!("unknown path opt-in `{}`", a.get_ref()),
                        hint,
                    );
                }
            }
        }
        let mut strip_prefix = None;
        if let (Some(sp), Some(p)) = (&raw.strip_prefix, &pattern) {
            let s = sp.get_ref().trim_end_matches('/');
            let lit = p.literal_prefix();
            let on_boundary = lit == s || lit.starts_with(&format!("{s}/"));
            if !s.starts_with('/') || !on_boundary {
                c.d.error_hint(
                    span_of(sp),
                    format!("{key}.strip_prefix"),
                    format!(
                        "strip_prefix `{}` is not a leading part of the path pattern `{}`",
                        sp.get_ref(),
                        p.source
                    ),
                    if lit.is_empty() {
                        "the pattern starts with a wildcard, so there is no fixed prefix to strip; use `rewrite` with captures".to_string()
                    } else {
                        format!("use a prefix of `{lit}` that ends at a `/`, or `rewrite`")
                    },
                );
            } else if !s.is_empty() {
                strip_prefix = Some(s.to_string());
            }
        }
        let mut rewrite = None;
        if let (Some(rw), Some(p)) = (&raw.rewrite, &pattern) {
            match Rewrite::parse(rw.get_ref(), p) {
                Ok(r) => rewrite = Some(r),
                Err(e) => c.d.error(
                    span_of(rw),
                    format!("{key}.rewrite"),
                    format!("bad rewrite: {e}"),
                ),
            }
            if raw.strip_prefix.is_some() {
                c.d.error_hint(span_of(rw), format!("{key}.rewrite"), "`rewrite` and `strip_prefix` cannot be combined", "a rewrite template already says the whole upstream path; use `{**}` for the rest of the path");
            }
        }
        let request_headers = c.header_edits(
            &raw.request_headers,
            &format!("{key}.request_headers"),
            HeaderSide::Request,
        );
        let response_headers = c.header_edits(
            &raw.response_headers,
            &format!("{key}.response_headers"),
            HeaderSide::Response,
        );
        let timeouts = c.timeouts(&raw.timeouts, &format!("{key}.timeouts"));
        let fallback = raw.fallback.as_ref().and_then(|f| {
            let fkey = format!("{key}.fallback");
            match names.resolve(&mut c.d, f, &fkey, "fallback service")? {
                idx if Some(idx) == service => {
                    c.d.error(
                        span_of(f),
                        fkey,
                        "a route's fallback must be a different service",
                    );
                    None
                }
                idx => Some(idx),
            }
        });
        let retries = match &raw.retries {
            None => RetryPolicy::default(),
            Some(r) => {
                let attempts = r
                    .attempts
                    .as_ref()
                    .map_or(RetryPolicy::default().attempts, |a| *a.get_ref());
                if attempts == 0 || attempts > 10 {
                    c.d.error(
                        r.attempts.as_ref().map_or(span.clone(), span_of),
                        format!("{key}.retries.attempts"),
                        "attempts must be between 1 (no retry) and 10",
                    );
                }
                RetryPolicy {
                    attempts: attempts.clamp(1, 10),
                    non_idempotent: r.non_idempotent,
                }
            }
        };
        if let (Some(pattern), Some(service)) = (pattern, service) {
            routes.push(Route {
                name: name.as_str().into(),
                file_order: *i,
                location: c.d.location(span),
                pattern,
                host,
                methods,
                headers,
                allow,
                service,
                strip_prefix,
                rewrite,
                request_headers,
                response_headers,
                timeouts,
                fallback,
                retries,
                chain: Default::default(),
            });
        }
    }
    // Routes that failed to deserialize still name a service: check it and count it used.
    let parsed: HashSet<usize> = raw_routes.iter().map(|(i, _, _)| *i).collect();
    for (i, svc) in &route_service_refs {
        if parsed.contains(i) {
            continue;
        }
        names.resolve(&mut c.d, svc, &format!("routes[{i}].service"), "service");
    }
    // Warnings: unused services and shadowed routes.
    for (idx, u) in names.used.iter().enumerate() {
        if !u && !some_route_failed {
            c.d.warning(
                service_spans[idx].clone(),
                format!("services.{}", services[idx].name),
                format!("service `{}` is not used by any route", services[idx].name),
                Some("remove it or add a route that sends traffic to it".into()),
            );
        }
    }
    if no_keys {
        c.d.error_hint(
            0..0,
            "",
            "the config is empty",
            "see routes.toml in the repository for a starting point",
        );
    } else if !saw_routes {
        c.d.warning(
            0..0,
            "routes",
            "no routes: every request gets 404",
            Some("add a `[[routes]]` section".into()),
        );
    }
    let route_spans: HashMap<usize, Range<usize>> =
        raw_routes.iter().map(|(i, s, _)| (*i, s.clone())).collect();
    let router = Router::new(routes);
    shadow::warn_shadowed(&mut c.d, router.routes(), &route_spans);

    if c.d.has_errors() {
        let mut items = c.d.items;
        items.sort_by_key(|d| (std::cmp::Reverse(d.severity), d.line, d.column));
        return Err(ConfigError::Invalid(items));
    }
    let mut warnings = c.d.items;
    warnings.sort_by_key(|d| (d.line, d.column));
    Ok(Config {
        path: path.to_path_buf(),
        gateway,
        services,
        registry,
        router,
        warnings,
    })
}

fn compile_registry(
    c: &mut Compiler<'_>,
    r: RawRegistry,
    zone: Option<String>,
) -> RegistrySettings {
    let d = RegistrySettings::default();
    let mut token = r.token.as_ref().map(|t| t.get_ref().clone());
    if let Some(env) = &r.token_env {
        match std::env::var(env.get_ref()) {
            Ok(v) if !v.is_empty() => token = Some(v),
            _ => c.d.error_hint(
                span_of(env),
                "registry.token_env",
                format!("environment variable `{}` is not set", env.get_ref()),
                "export it before starting ficus, or use `token`",
            ),
        }
    }
    if token.as_deref() == Some("") {
        let at = r.token.as_ref().map_or(0..0, span_of);
        c.d.error(at, "registry.token", "the registry token is empty");
        token = None;
    }
    let dns_resolver = r
        .dns_resolver
        .as_ref()
        .and_then(|a| c.socket_addr(a.get_ref(), span_of(a), "registry.dns_resolver"));
    RegistrySettings {
        registration: r.registration.unwrap_or(d.registration),
        token,
        dns_resolver,
        default_ttl: c
            .positive_duration(
                &r.default_ttl,
                "registry.default_ttl",
                "registrations would expire as soon as they are made",
            )
            .unwrap_or(d.default_ttl),
        zone,
    }
}

fn compile_service(
    c: &mut Compiler<'_>,
    name: &str,
    span: &Range<usize>,
    raw: &RawService,
    registry: &RegistrySettings,
) -> ServiceSpec {
    let key = format!("services.{name}");
    let mut statics = Vec::new();
    let mut seen = HashSet::new();
    for inst in &raw.instances {
        let ispan = span_of(inst);
        let (addr, weight, zone) = match inst.get_ref() {
            RawInstance::Addr(a) => (a.as_str(), 1, None),
            RawInstance::Table(t) => (t.addr.as_str(), t.weight.unwrap_or(1), t.zone.clone()),
        };
        if let Some(a) = c.socket_addr(addr, ispan.clone(), &format!("{key}.instances")) {
            if !seen.insert(a) {
                c.d.error(
                    ispan.clone(),
                    format!("{key}.instances"),
                    format!("instance {a} is listed twice"),
                );
            }
            if weight == 0 {
                c.d.warning(
                    ispan,
                    format!("{key}.instances"),
                    format!("instance {a} has weight 0 and gets no traffic"),
                    None,
                );
            }
            statics.push(StaticInstance {
                addr: a,
                weight,
                zone,
            });
        }
    }
    let registration = raw.registration.unwrap_or(registry.registration);
    if raw.instances.is_empty() && raw.dns.is_none() && !registration {
        c.d.warning(span.clone(), key.clone(), format!("service `{name}` has no instances, no DNS discovery and no registration; its routes answer 503"), None);
    }
    let tls = raw.tls.as_ref().map(|t| {
        let ca = t.ca_file.as_ref().and_then(|f| {
            let p = c.resolve_path(f);
            match read_pem_certs(&p) {
                Ok(certs) if !certs.is_empty() => Some(certs),
                Ok(_) => {
                    c.d.error(span.clone(), format!("{key}.tls.ca_file"), format!("{} holds no PEM certificate", p.display()));
                    None
                }
                Err(e) => {
                    c.d.error(span.clone(), format!("{key}.tls.ca_file"), format!("cannot read {}: {e}", p.display()));
                    None
                }
            }
        });
        let sni = t.sni.clone().unwrap_or_default();
        let verify = t.verify.unwrap_or(true);
        if verify && sni.is_empty() {
            c.d.error_hint(span.clone(), format!("{key}.tls.sni"), "upstream TLS with verification needs `sni`", "set `sni` to the name on the upstream's certificate, or `verify = false` (not recommended)");
        }
        UpstreamTls { sni, verify, ca }
    });
    let timeouts = c.timeouts(&raw.timeouts, &format!("{key}.timeouts"));
    let dns = raw.dns.as_ref().and_then(|d| {
        let dspan = span_of(d);
        let d = d.get_ref();
        let query = match (&d.name, d.port, &d.srv) {
            (Some(n), Some(port), None) => Some(DnsQuery::Host { name: n.clone(), port }),
            (None, None, Some(srv)) => Some(DnsQuery::Srv { name: srv.clone() }),
            (Some(_), None, None) => {
                c.d.error_hint(dspan.clone(), format!("{key}.dns.port"), "A/AAAA discovery needs a `port`", "add `port = 8080`, or use `srv = \"_http._tcp.NAME\"` to take ports from SRV records");
                None
            }
            _ => {
                c.d.error_hint(dspan.clone(), format!("{key}.dns"), "set either `name` and `port` (A/AAAA records) or `srv` (SRV records)", "e.g. dns = { name = \"orders.internal\", port = 8080 }");
                None
            }
        }?;
        let min_ttl = c.duration(&d.min_ttl, &format!("{key}.dns.min_ttl")).unwrap_or(Duration::from_secs(1));
        let max_ttl = c.positive_duration(&d.max_ttl, &format!("{key}.dns.max_ttl"), "the service would be looked up again without pause").unwrap_or(Duration::from_secs(300));
        if min_ttl > max_ttl {
            c.d.error(dspan.clone(), format!("{key}.dns"), "`min_ttl` is larger than `max_ttl`");
        }
        let resolver = d.resolver.as_ref().and_then(|a| c.socket_addr(a.get_ref(), span_of(a), &format!("{key}.dns.resolver")));
        Some(DnsSpec { query, min_ttl, max_ttl, resolver })
    });
    let health = raw.health.as_ref().and_then(|h| {
        let hspan = span_of(h);
        let h = h.get_ref();
        let hk = format!("{key}.health");
        let kind = match h.kind.as_deref() {
            Some("tcp") => {
                if h.path.is_some() {
                    c.d.error(
                        hspan.clone(),
                        format!("{hk}.path"),
                        "a `tcp` probe has no path",
                    );
                }
                ProbeKind::Tcp
            }
            Some("http") | None => {
                let path = h.path.clone().unwrap_or_else(|| "/".to_string());
                if !path.starts_with('/') || path.contains([' ', '\r', '\n']) {
                    c.d.error(
                        hspan.clone(),
                        format!("{hk}.path"),
                        format!("`{path}` is not a valid probe path"),
                    );
                }
                let method = match Method::from_bytes(
                    h.method
                        .as_deref()
                        .unwrap_or("GET")
                        .to_ascii_uppercase()
                        .as_bytes(),
                ) {
                    Ok(m) => m,
                    Err(_) => {
                        c.d.error(
                            hspan.clone(),
                            format!("{hk}.method"),
                            "invalid probe method",
                        );
                        Method::GET
                    }
                };
                let status = match h.expect_status.as_deref().map(parse_status_range) {
                    None => (200, 399),
                    Some(Some(r)) => r,
                    Some(None) => {
                        c.d.error_hint(
                            hspan.clone(),
                            format!("{hk}.expect_status"),
                            "invalid status range",
                            "write \"200\" or \"200-399\"",
                        );
                        (200, 399)
                    }
                };
                // The host goes into the probe's `Host` line as it is: CR/LF would inject
                // headers, and spaces or other controls make a request no server accepts.
                if let Some(host) = h.host.as_deref().filter(|v| {
                    v.is_empty()
                        || v.bytes()
                            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                }) {
                    c.d.error_hint(
                        hspan.clone(),
                        format!("{hk}.host"),
                        format!("{host:?} is not a valid probe host"),
                        "write a host name or ip[:port], e.g. \"orders.internal\"",
                    );
                }
                ProbeKind::Http {
                    method,
                    path,
                    host: h.host.clone(),
                    status,
                    body_contains: h.body_contains.clone(),
                }
            }
            Some(other) => {
                c.d.error_hint(
                    hspan.clone(),
                    format!("{hk}.type"),
                    format!("unknown probe type `{other}`"),
                    "use \"http\" or \"tcp\"",
                );
                return None;
            }
        };
        let interval = c
            .duration(&h.interval, &format!("{hk}.interval"))
            .unwrap_or(Duration::from_secs(5));
        let timeout = c
            .positive_duration(
                &h.timeout,
                &format!("{hk}.timeout"),
                "every probe would fail",
            )
            .unwrap_or(Duration::from_secs(1));
        if interval < Duration::from_millis(10) {
            c.d.error(
                h.interval.as_ref().map_or(hspan.clone(), span_of),
                format!("{hk}.interval"),
                "probe interval must be at least 10ms",
            );
        }
        let jitter = h.jitter.unwrap_or(0.1);
        if !(0.0..=1.0).contains(&jitter) {
            c.d.error_hint(
                hspan.clone(),
                format!("{hk}.jitter"),
                format!("jitter {jitter} is outside 0–1"),
                "it is a fraction of `interval`, e.g. 0.1",
            );
        }
        Some(HealthSpec {
            kind,
            interval,
            timeout,
            jitter: jitter.clamp(0.0, 1.0),
            healthy_after: h.healthy_after.unwrap_or(2).max(1),
            unhealthy_after: h.unhealthy_after.unwrap_or(3).max(1),
            start_healthy: h.start_healthy,
        })
    });
    if let (Some(h), Some(_)) = (&health, &tls) {
        if matches!(h.kind, ProbeKind::Http { .. }) {
            c.d.warning(
                span.clone(),
                format!("{key}.health"),
                "health probes speak plain HTTP, but this service uses TLS: the probe will fail",
                Some("use `type = \"tcp\"` for TLS services".into()),
            );
        }
    }
    let outlier = match &raw.outlier {
        None => Some(OutlierSpec::default()),
        Some(o) => {
            let d = OutlierSpec::default();
            let o = o.get_ref();
            let pct = o
                .max_ejection_percent
                .as_ref()
                .map_or(d.max_ejection_percent, |p| *p.get_ref());
            if pct > 100 {
                c.d.error(
                    o.max_ejection_percent
                        .as_ref()
                        .map_or(span.clone(), span_of),
                    format!("{key}.outlier.max_ejection_percent"),
                    "must be between 0 and 100",
                );
            }
            let consecutive = o.consecutive_failures.unwrap_or(d.consecutive_failures);
            (consecutive > 0).then(|| OutlierSpec {
                consecutive_failures: consecutive,
                base_ejection_time: c
                    .duration(
                        &o.base_ejection_time,
                        &format!("{key}.outlier.base_ejection_time"),
                    )
                    .unwrap_or(d.base_ejection_time),
                max_ejection_time: c
                    .duration(
                        &o.max_ejection_time,
                        &format!("{key}.outlier.max_ejection_time"),
                    )
                    .unwrap_or(d.max_ejection_time),
                max_ejection_percent: pct.min(100),
            })
        }
    };
    let breaker = raw.breaker.as_ref().map(|b| {
        let d = BreakerSpec::default();
        let bspan = span_of(b);
        let b = b.get_ref();
        let rate = b
            .failure_rate
            .as_ref()
            .map_or(d.failure_rate, |r| *r.get_ref());
        if !(0.0..=1.0).contains(&rate) || rate == 0.0 {
            c.d.error(
                b.failure_rate.as_ref().map_or(bspan, span_of),
                format!("{key}.breaker.failure_rate"),
                "failure_rate must be in (0, 1]",
            );
        }
        BreakerSpec {
            consecutive_failures: b
                .consecutive_failures
                .unwrap_or(d.consecutive_failures)
                .max(1),
            failure_rate: rate,
            min_requests: b.min_requests.unwrap_or(d.min_requests),
            window: c
                .positive_duration(
                    &b.window,
                    &format!("{key}.breaker.window"),
                    "the failure rate would be measured over no time at all",
                )
                .unwrap_or(d.window),
            open_for: c
                .duration(&b.open_for, &format!("{key}.breaker.open_for"))
                .unwrap_or(d.open_for),
            half_open_requests: b.half_open_requests.unwrap_or(d.half_open_requests).max(1),
        }
    });
    let lb = match raw.lb.as_ref().map(|l| (l.get_ref().as_str(), span_of(l))) {
        None | Some(("round_robin", _)) => LbPolicy::RoundRobin,
        Some(("least_request", _)) => LbPolicy::LeastRequest,
        Some(("hash", lspan)) => {
            let on = raw.hash_on.as_ref().map(|h| h.get_ref().as_str());
            match on {
                Some("client_ip") => LbPolicy::Hash(HashKey::ClientIp),
                Some(h) if h.starts_with("header:") => {
                    match HeaderName::from_bytes(h["header:".len()..].trim().as_bytes()) {
                        Ok(n) => LbPolicy::Hash(HashKey::Header(n)),
                        Err(_) => {
                            c.d.error(lspan, format!("{key}.hash_on"), "invalid header name");
                            LbPolicy::RoundRobin
                        }
                    }
                }
                Some(h) if h.starts_with("cookie:") && h.len() > "cookie:".len() => {
                    LbPolicy::Hash(HashKey::Cookie(h["cookie:".len()..].trim().to_string()))
                }
                _ => {
                    c.d.error_hint(
                        lspan,
                        format!("{key}.hash_on"),
                        "`lb = \"hash\"` needs `hash_on`",
                        "use \"header:NAME\", \"cookie:NAME\" or \"client_ip\"",
                    );
                    LbPolicy::RoundRobin
                }
            }
        }
        Some((other, lspan)) => {
            let opts = ["round_robin", "least_request", "hash"];
            let hint = did_you_mean(other, opts.into_iter()).map_or_else(
                || format!("use one of: {}", opts.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            c.d.error_hint(
                lspan,
                format!("{key}.lb"),
                format!("unknown load-balancing policy `{other}`"),
                hint,
            );
            LbPolicy::RoundRobin
        }
    };
    if raw.hash_on.is_some() && !matches!(lb, LbPolicy::Hash(_)) {
        if let Some(h) = &raw.hash_on {
            c.d.warning(
                span_of(h),
                format!("{key}.hash_on"),
                "`hash_on` only applies with `lb = \"hash\"`",
                None,
            );
        }
    }
    if raw.prefer_zone && registry.zone.is_none() {
        c.d.warning(
            span.clone(),
            format!("{key}.prefer_zone"),
            "`prefer_zone` needs `[gateway] zone`",
            Some("set the gateway's own zone, e.g. zone = \"eu-1\"".into()),
        );
    }
    if let Some(t) = &raw.panic_threshold {
        if !(0.0..=1.0).contains(t.get_ref()) {
            c.d.error(
                span_of(t),
                format!("{key}.panic_threshold"),
                "panic_threshold must be between 0 and 1",
            );
        }
    }
    let max_concurrent = raw.max_concurrent.as_ref().map(|m| *m.get_ref());
    if let Some(m) = raw.max_concurrent.as_ref().filter(|m| *m.get_ref() == 0) {
        c.d.error(
            span_of(m),
            format!("{key}.max_concurrent"),
            "max_concurrent must be at least 1",
        );
    }
    let retry_budget = raw
        .retry_budget
        .as_ref()
        .map_or_else(RetryBudgetSpec::default, |b| {
            let d = RetryBudgetSpec::default();
            RetryBudgetSpec {
                ratio: b.ratio.unwrap_or(d.ratio).clamp(0.0, 10.0),
                min_retries: b.min_retries.unwrap_or(d.min_retries),
            }
        });
    ServiceSpec {
        name: name.to_string(),
        statics,
        dns,
        registration,
        tls,
        timeouts,
        health,
        outlier,
        breaker,
        max_concurrent,
        lb,
        prefer_zone: raw.prefer_zone,
        panic_threshold: raw.panic_threshold.as_ref().map(|t| *t.get_ref()),
        retry_budget,
        pool_idle_timeout: c.positive_duration(
            &raw.pool_idle_timeout,
            &format!("{key}.pool_idle_timeout"),
            "no pooled connection would ever be reused",
        ),
    }
}

/// `"200"` or `"200-399"`.
fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v: u16 = s.trim().parse().ok()?;
            (v, v)
        }
    };
    (100..=599).contains(&lo).then_some(())?;
    (lo <= hi && hi <= 599).then_some((lo, hi))
}

fn compile_gateway(c: &mut Compiler<'_>, g: RawGateway) -> GatewaySettings {
    let mut listeners = Vec::new();
    let mut listener_spans = Vec::new();
    for l in &g.listen {
        let span = span_of(l);
        let (addr, tls, http2, h2c) = match l.get_ref() {
            RawListen::Addr(a) => (a.as_str(), None, false, false),
            RawListen::Table(t) => (t.addr.as_str(), t.tls.as_ref(), t.http2, t.h2c),
        };
        let Some(addr) = c.socket_addr(addr, span.clone(), "gateway.listen") else {
            continue;
        };
        let mut certs = Vec::new();
        if let Some(tls) = tls {
            if tls.certificates.is_empty() {
                c.d.error(
                    span.clone(),
                    "gateway.listen.tls.certificates",
                    "a TLS listener needs at least one certificate",
                );
            }
            certs = tls::compile_certificates(c, &tls.certificates);
        }
        if h2c && !certs.is_empty() {
            c.d.error_hint(
                span.clone(),
                "gateway.listen.h2c",
                "`h2c` is for cleartext listeners",
                "on a TLS listener use `http2 = true` (negotiated by ALPN)",
            );
        }
        if http2 && certs.is_empty() {
            c.d.error_hint(
                span.clone(),
                "gateway.listen.http2",
                "`http2` needs TLS (ALPN)",
                "for HTTP/2 without TLS use `h2c = true`",
            );
        }
        listener_spans.push(span.clone());
        listeners.push(Listener {
            addr,
            tls: certs,
            http2,
            h2c,
        });
    }
    if g.listen.is_empty() {
        listener_spans.push(0..0);
        listeners.push(Listener {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: Vec::new(),
            http2: false,
            h2c: false,
        });
    }
    let admin = match &g.admin {
        Some(a) => c.socket_addr(a.get_ref(), span_of(a), "gateway.admin"),
        None => DEFAULT_ADMIN.parse().ok(),
    }
    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901)));
    check_listener_collisions(c, &g, &listeners, &listener_spans, admin);
    let threads = match &g.threads {
        Some(t) if *t.get_ref() == 0 => {
            c.d.error(
                span_of(t),
                "gateway.threads",
                "`threads` must be at least 1",
            );
            1
        }
        Some(t) => *t.get_ref(),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let grace_period = c
        .duration(&g.grace_period, "gateway.grace_period")
        .unwrap_or(DEFAULT_GRACE);
    let mut trusted_proxies = Vec::new();
    for t in &g.trusted_proxies {
        match Cidr::parse(t.get_ref()) {
            Some(cidr) => trusted_proxies.push(cidr),
            None => c.d.error_hint(
                span_of(t),
                "gateway.trusted_proxies",
                format!("`{}` is not an IP address or CIDR", t.get_ref()),
                "write e.g. \"10.0.0.0/8\" or \"127.0.0.1\"",
            ),
        }
    }
    let access_log = c.one_of(
        &g.access_log,
        "gateway.access_log",
        "access log format",
        &[
            ("text", AccessLog::Text),
            ("json", AccessLog::Json),
            ("off", AccessLog::Off),
        ],
    );
    let trace_context = c.one_of(
        &g.trace_context,
        "gateway.trace_context",
        "trace context mode",
        &[
            ("start", TraceContext::Start),
            ("continue", TraceContext::Continue),
            ("off", TraceContext::Off),
        ],
    );
    let d = Limits::default();
    let l = &g.limits;
    let limits = Limits {
        max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_headers: l.max_headers.unwrap_or(d.max_headers),
        max_uri_bytes: l.max_uri_bytes.unwrap_or(d.max_uri_bytes),
        max_body_bytes: l.max_body_bytes.unwrap_or(d.max_body_bytes),
        header_read_timeout: c
            .positive_duration(
                &l.header_read_timeout,
                "gateway.limits.header_read_timeout",
                "every request would time out before its headers arrive",
            )
            .unwrap_or(d.header_read_timeout),
        body_read_timeout: c
            .positive_duration(
                &l.body_read_timeout,
                "gateway.limits.body_read_timeout",
                "every request body would time out",
            )
            .unwrap_or(d.body_read_timeout),
        keepalive_timeout: c
            .positive_duration(
                &l.keepalive_timeout,
                "gateway.limits.keepalive_timeout",
                "every connection would be closed as soon as it is idle",
            )
            .unwrap_or(d.keepalive_timeout),
        send_timeout: c
            .positive_duration(
                &l.send_timeout,
                "gateway.limits.send_timeout",
                "every response would time out as soon as the client's buffers fill",
            )
            .unwrap_or(d.send_timeout),
    };
    GatewaySettings {
        listeners,
        admin,
        threads,
        grace_period,
        trusted_proxies,
        access_log,
        limits,
        zone: g.zone.clone(),
        preserve_header_case: g.preserve_header_case.unwrap_or(true),
        trace_context,
    }
}

/// Whether two sockets cannot both be bound: the same port on the same address, or on an
/// address that a wildcard (`0.0.0.0`, `[::]`) already covers. Port 0 asks the system for
/// a free port, so it never collides.
fn sockets_collide(a: SocketAddr, b: SocketAddr) -> bool {
    // `[::]` also takes IPv4 on Linux (dual stack), so it covers every address.
    let covers = |w: IpAddr, other: IpAddr| w.is_unspecified() && (w.is_ipv6() || other.is_ipv4());
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Refuses listen addresses that collide with each other or with the admin listener: the
/// server could not bind them all.
fn check_listener_collisions(
    c: &mut Compiler<'_>,
    g: &RawGateway,
    listeners: &[Listener],
    spans: &[Range<usize>],
    admin: SocketAddr,
) {
    for (i, (l, span)) in listeners.iter().zip(spans).enumerate() {
        let span = span.clone();
        if let Some(prev) = listeners[..i]
            .iter()
            .find(|p| sockets_collide(p.addr, l.addr))
        {
            c.d.error_hint(
                span.clone(),
                "gateway.listen",
                format!("listener {} collides with listener {}", l.addr, prev.addr),
                "each listener needs its own port (or its own address on that port); remove the duplicate",
            );
        }
        if sockets_collide(l.addr, admin) {
            let admin_span = g.admin.as_ref().map_or(span, span_of);
            c.d.error_hint(
                admin_span,
                "gateway.admin",
                format!(
                    "the admin listener {admin} collides with listener {}",
                    l.addr
                ),
                "give the admin listener a port of its own, e.g. \"127.0.0.1:9901\"",
            );
        }
    }
}

/// Reads every PEM `CERTIFICATE` block of a file as DER.
pub fn read_pem_certs(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .collect();
    certs
        .map(|v| v.into_iter().map(|c| c.to_vec()).collect())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<Diagnostic> {
        match compile(Path::new("routes.toml"), src) {
            Err(ConfigError::Invalid(d)) => d,
            Ok(_) => vec![],
            Err(e) => panic!("{e}"),
        }
    }

    const BASE: &str = r#"
[services.orders]
instances = ["127.0.0.1:8082", { addr = "127.0.0.1:8083", weight = 2 }]
"#;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("2 parsecs"), None);
    }

    #[test]
    fn durations_never_panic_and_are_bounded() {
        for huge in [
            "999999999999999999999h",
            "18446744073709551615s",
            "3000000000000000h",
        ] {
            assert_eq!(
                try_parse_duration(huge),
                Err(DurationError::TooLong),
                "{huge}"
            );
        }
        assert_eq!(try_parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(try_parse_duration("8761h"), Err(DurationError::TooLong));
        assert_eq!(
            try_parse_duration("0.0000001ms"),
            Err(DurationError::BelowMillisecond)
        );
        assert_eq!(try_parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(try_parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(try_parse_duration(".5s"), Err(DurationError::Syntax));
        assert_eq!(try_parse_duration("5 seconds"), Err(DurationError::Syntax));
    }

    fn messages(src: &str) -> Vec<String> {
        errors(src).iter().map(|d| d.to_string()).collect()
    }

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

    const ROUTE: &str =
        "[[routes]]\nname = \"o\"\nmatch = { path = \"/o/**\" }\nservice = \"orders\"\n";

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

    #[test]
    fn colliding_listeners_are_errors() {
        let cases = [
            (
                "listen = [\"127.0.0.1:7000\", \"127.0.0.1:7000\"]",
                "collides with listener",
            ),
            (
                "listen = [\"0.0.0.0:7000\", \"127.0.0.1:7000\"]",
                "collides with listener",
            ),
            (
                "listen = [\"127.0.0.1:7000\"]\nadmin = \"127.0.0.1:7000\"",
                "admin listener",
            ),
            (
                "listen = [\"127.0.0.1:7000\"]\nadmin = \"0.0.0.0:7000\"",
                "admin listener",
            ),
            ("admin = \"127.0.0.1:8080\"", "admin listener"),
        ];
        for (gateway, want) in cases {
            let m = messages(&format!("[gateway]\n{gateway}\n{BASE}{ROUTE}"));
            assert!(m.iter().any(|m| m.contains(want)), "{gateway}: {m:?}");
        }
        for gateway in [
            "listen = [\"127.0.0.1:7000\", \"127.0.0.2:7000\"]",
            "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"",
            "listen = [\"127.0.0.1:7000\", \"[::1]:7000\"]",
        ] {
            let src = format!("[gateway]\n{gateway}\n{BASE}{ROUTE}");
            assert!(compile(Path::new("routes.toml"), &src).is_ok(), "{gateway}");
        }
    }

    /// `listen` entries are strings or tables; a typo inside a table is named (untagged
    /// serde used to hide it behind "did not match any variant"), and so is a wrong type.
    #[test]
    fn listen_entries_report_their_own_errors() {
        let m = messages(&format!(
            "[gateway]\nlisten = [{{ addr = \"127.0.0.1:7000\", htp2 = true }}]\n{BASE}{ROUTE}"
        ));
        assert!(
            m.iter().any(|m| m.contains("unknown field `htp2`")),
            "{m:?}"
        );
        let m = messages(&format!("[gateway]\nlisten = [7000]\n{BASE}{ROUTE}"));
        assert!(m.iter().any(|m| m.contains("an address string")), "{m:?}");
        let src = format!(
            "[gateway]\nlisten = [\"127.0.0.1:7000\", {{ addr = \"127.0.0.1:7001\", h2c = true }}]\n{BASE}{ROUTE}"
        );
        let cfg = compile(Path::new("routes.toml"), &src).map_err(|e| e.to_string());
        assert!(
            cfg.as_ref()
                .is_ok_and(|c| c.gateway.listeners.len() == 2 && c.gateway.listeners[1].h2c),
            "{:?}",
            cfg.err()
        );
    }

    #[test]
    fn every_unknown_key_and_type_error_in_one_table_is_reported() {
        let src = "[gateway]\ngrace_period = 10\nthreads = \"4\"\ncolour = 1\n\n[services.monolith]\ninstances = [\"127.0.0.1:1\"]\nmax_concurrent = \"x\"\n\n[[routes]]\nname = \"legacy\"\nmatch = { path = \"/**\", methods = \"GET\" }\nservice = \"monolith\"\nstrip_prefx = \"/x\"\nretires = { attempts = 3 }\ntimeouts = { read = 5 }\n";
        let d = errors(src);
        let at: Vec<(usize, usize, &str)> = d
            .iter()
            .map(|d| (d.line, d.column, d.key.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (2, 16, "gateway.grace_period"),
                (3, 11, "gateway.threads"),
                (4, 1, "gateway.colour"),
                (8, 18, "services.monolith.max_concurrent"),
                (12, 35, "routes[0].match.methods"),
                (14, 1, "routes[0].strip_prefx"),
                (15, 1, "routes[0].retires"),
                (16, 21, "routes[0].timeouts.read"),
            ],
            "{d:#?}"
        );
        assert!(d[0].hint.as_deref().unwrap().contains("\"10s\""), "{d:?}");
        assert!(d[4].hint.as_deref().unwrap().contains("is a list"), "{d:?}");
        assert!(
            d[5].hint.as_deref().unwrap().contains("`strip_prefix`"),
            "{d:?}"
        );
    }

    #[test]
    fn no_follow_on_errors_after_a_section_fails() {
        // A misspelled required key: the route cannot be built, but neither "missing field"
        // nor "no routes" nor "service not used" is reported on top of the typo.
        let src = format!("{BASE}[[routes]]\nname = \"o\"\nmatch = {{ path = \"/o/**\" }}\nservcie = \"orders\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("unknown field `servcie`"), "{d:?}");
        // A service whose own table is broken is not "unknown" to its routes.
        let src = "[services.monolith]\ninstances = \"127.0.0.1:1\"\nbogus = 1\n[services.orders]\ninstances = [\"127.0.0.1:2\"]\n[[routes]]\nname = \"m\"\nmatch = { path = \"/**\" }\nservice = \"monolith\"\nfallback = \"orders\"\n";
        let d = errors(src);
        assert!(
            !d.iter().any(|d| d.message.contains("unknown service")),
            "{d:#?}"
        );
        assert_eq!(d.len(), 2, "{d:#?}");
    }

    #[test]
    fn a_failing_section_reports_unfixable_errors_once() {
        // A route without `match` cannot be repaired by dropping keys.
        let src = format!("{BASE}[[routes]]\nname = \"o\"\nservice = \"orders\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("missing field `match`"), "{d:?}");
    }

    #[test]
    fn a_misspelled_service_is_not_also_unused() {
        let src = format!("{BASE}{}", ROUTE.replace("\"orders\"", "\"order\""));
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `orders`?"));
    }

    #[test]
    fn service_name_differing_in_case_gets_a_hint() {
        let src = format!("{BASE}{}", ROUTE.replace("\"orders\"", "\"ORDERS\""));
        let d = errors(&src);
        assert_eq!(
            d[0].hint.as_deref(),
            Some("did you mean `orders`?"),
            "{d:?}"
        );
    }

    #[test]
    fn files_without_routes() {
        for empty in ["", "  \n", "# only a comment\n"] {
            let d = errors(empty);
            assert!(
                d[0].message.contains("the config is empty"),
                "{empty:?}: {d:?}"
            );
        }
        for routeless in ["[gateway]\n", BASE] {
            let cfg = compile(Path::new("routes.toml"), routeless).unwrap();
            assert!(
                cfg.warnings
                    .iter()
                    .any(|w| w.message.contains("no routes: every request gets 404")),
                "{routeless:?}: {:?}",
                cfg.warnings
            );
        }
    }

    #[test]
    fn range_errors_point_at_their_key() {
        let src = format!(
            "[gateway]\nthreads = 0\n{BASE}max_concurrent = 0\npanic_threshold = 2.0\nbreaker = {{ failure_rate = 0.0 }}\noutlier = {{ max_ejection_percent = 101 }}\n{ROUTE}retries = {{ attempts = 11 }}\n"
        );
        let at: Vec<(usize, usize, String)> = errors(&src)
            .into_iter()
            .map(|d| (d.line, d.column, d.key))
            .collect();
        let want = [
            (2, 11, "gateway.threads"),
            (6, 18, "services.orders.max_concurrent"),
            (7, 19, "services.orders.panic_threshold"),
            (8, 28, "services.orders.breaker.failure_rate"),
            (9, 36, "services.orders.outlier.max_ejection_percent"),
            (14, 24, "routes[0].retries.attempts"),
        ];
        let want: Vec<(usize, usize, String)> = want
            .iter()
            .map(|(l, c, k)| (*l, *c, k.to_string()))
            .collect();
        assert_eq!(at, want);
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn unknown_service_has_position_and_hint() {
        let src = format!("{BASE}\n[[routes]]\nname = \"o\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"order\"\n");
        let d: Vec<Diagnostic> = errors(&src)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("unknown service `order`"));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `orders`?"));
        assert_eq!(d[0].line, 8);
        assert_eq!(d[0].column, 11);
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let src = format!(
            "{BASE}\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"orders\" }}\nservice = \"orders\"\n\n[[routes]]\nname = \"b\"\nmatch = {{ path = \"/x\" }}\nservcie = \"orders\"\n\n[[routes]]\nname = \"c\"\nmatch = {{ path = \"/y\" }}\nservice = \"nope\"\ntimeouts = {{ read = \"soon\" }}\n"
        );
        let d = errors(&src);
        let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("bad path pattern")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown field `servcie`")
                    && m.contains("did you mean `service`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("unknown service `nope`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("is not a duration")),
            "{msgs:?}"
        );
    }

    #[test]
    fn keepalive_timeout_is_read_and_zero_is_refused() {
        let ok = format!("[gateway.limits]\nkeepalive_timeout = \"5s\"\n{BASE}");
        let cfg = compile(Path::new("routes.toml"), &ok).unwrap();
        assert_eq!(cfg.gateway.limits.keepalive_timeout, Duration::from_secs(5));
        let dflt = compile(Path::new("routes.toml"), BASE).unwrap();
        assert_eq!(
            dflt.gateway.limits.keepalive_timeout,
            Duration::from_secs(60)
        );
        let zero = format!("[gateway.limits]\nkeepalive_timeout = \"0s\"\n{BASE}");
        let msgs: Vec<String> = errors(&zero).iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("keepalive_timeout") && m.contains("at least")),
            "{msgs:?}"
        );
    }

    #[test]
    fn trace_context_modes() {
        let mode = |m: &str| {
            let src = format!("[gateway]\ntrace_context = \"{m}\"\n{BASE}");
            compile(Path::new("routes.toml"), &src).map(|c| c.gateway.trace_context)
        };
        assert_eq!(mode("start").unwrap(), TraceContext::Start);
        assert_eq!(mode("continue").unwrap(), TraceContext::Continue);
        assert_eq!(mode("off").unwrap(), TraceContext::Off);
        let dflt = compile(Path::new("routes.toml"), BASE).unwrap();
        assert_eq!(dflt.gateway.trace_context, TraceContext::Start);
        let src = format!("[gateway]\ntrace_context = \"sometimes\"\n{BASE}");
        let msgs: Vec<String> = errors(&src).iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown trace context mode `sometimes`")
                    && m.contains("\"continue\"")),
            "{msgs:?}"
        );
    }

    #[test]
    fn warnings_for_shadowed_routes_and_unused_services() {
        let src = format!("{BASE}\n[services.unused]\ninstances = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"/o/{{id}}\" }}\nservice = \"orders\"\n\n[[routes]]\nname = \"b\"\nmatch = {{ path = \"/o/{{x}}\" }}\nservice = \"orders\"\n");
        let cfg = compile(Path::new("routes.toml"), &src).unwrap();
        let w: Vec<String> = cfg.warnings.iter().map(|d| d.to_string()).collect();
        assert!(
            w.iter().any(|m| m.contains("`unused` is not used")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|m| m.contains("route `b` can never match")),
            "{w:?}"
        );
    }

    #[test]
    fn strip_prefix_must_fit_the_pattern() {
        let src = format!("{BASE}\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"/orders/**\" }}\nservice = \"orders\"\nstrip_prefix = \"/ord\"\n");
        let d = errors(&src);
        assert!(d[0].message.contains("strip_prefix"), "{d:?}");
    }

    #[test]
    fn strip_prefix_on_a_leading_wildcard_suggests_rewrite() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\nmatch = {{ path = \"/{{x}}/api/**\" }}\nservice = \"orders\"\nstrip_prefix = \"/foo\"\n");
        let d = errors(&src);
        let hint = d[0].hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("no fixed prefix") && !hint.contains("``"),
            "{d:?}"
        );
    }

    #[test]
    fn unknown_top_level_key() {
        let d = errors("[gatway]\nlisten = []\n");
        assert!(d[0].message.contains("unknown top-level key `gatway`"));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `gateway`?"));
    }
}
