//! `[gateway]`: the compiled gateway-wide settings ([`GatewaySettings`]: admin address,
//! threads, trusted proxies, access log, trace context...) and their compilation. The
//! listeners are compiled in `listeners.rs`, `[gateway.limits]` in `limits.rs`.
//!
//! This file must not look at services or routes; `mod.rs` passes the gateway's zone on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::compiler::{span_of, Compiler};
use super::limits::{compile_limits, Limits};
use super::listeners::{check_listener_collisions, compile_listeners, Listener};
use super::raw::RawGateway;

/// Access log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Text,
    Json,
    Off,
}

impl AccessLog {
    /// The line format, or `None` when the access log is off.
    pub fn format(self) -> Option<crate::access_log::Format> {
        match self {
            AccessLog::Text => Some(crate::access_log::Format::Text),
            AccessLog::Json => Some(crate::access_log::Format::Json),
            AccessLog::Off => None,
        }
    }
}

/// An IP network for `trusted_proxies` (the same type access policies use).
pub use ficus_plugins::net::Cidr;

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
    /// `[gateway] rate_limit`: the `[rate_limits.NAME]` policy of routes that name none
    /// (resolved per route by the policy compiler; kept here for `explain`).
    pub rate_limit: Option<String>,
    /// `[gateway] legacy`: the services the migration board counts as the legacy (checked
    /// against the services when the config is compiled); empty when unset.
    pub legacy: Vec<String>,
    /// `admin_reads_need_token`: admin reads (registry, metrics, board, shadow) need the
    /// registry token even on a loopback admin listener. On one other hosts can reach they
    /// always do (the admin listener judges its own bound address); `/healthz` and
    /// `/readyz` never do.
    pub admin_reads_need_token: bool,
    /// `max_config_bytes` and `max_routes` (compiled before the rest of the file).
    pub bounds: super::bounds::ConfigBounds,
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

/// Compiles `[gateway]` (an absent section gives the defaults).
pub(super) fn compile_gateway(c: &mut Compiler<'_>, g: &RawGateway) -> GatewaySettings {
    let (listeners, listener_spans) = compile_listeners(c, g);
    let admin = admin_address(c, g);
    check_listener_collisions(c, g, &listeners, &listener_spans, admin);
    let threads = thread_count(c, g);
    let grace_period = c
        .duration(&g.grace_period, "gateway.grace_period")
        .unwrap_or(DEFAULT_GRACE);
    let trusted_proxies = compile_trusted_proxies(c, g);
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
    GatewaySettings {
        listeners,
        admin,
        threads,
        grace_period,
        trusted_proxies,
        access_log,
        limits: compile_limits(c, &g.limits),
        zone: g.zone.clone(),
        preserve_header_case: g.preserve_header_case.unwrap_or(true),
        trace_context,
        rate_limit: g.rate_limit.as_ref().map(|n| n.get_ref().clone()),
        // Filled in by `compile_legacy` once the services are known.
        legacy: Vec::new(),
        admin_reads_need_token: g.admin_reads_need_token.unwrap_or(false),
        // Filled in by `compile_with` from the bounds read before the rest of the file.
        bounds: Default::default(),
    }
}

/// `admin`, or [`DEFAULT_ADMIN`]; a bad address is reported and the default used.
fn admin_address(c: &mut Compiler<'_>, g: &RawGateway) -> SocketAddr {
    match &g.admin {
        Some(a) => c.socket_addr(a.get_ref(), span_of(a), "gateway.admin"),
        None => DEFAULT_ADMIN.parse().ok(),
    }
    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901)))
}

/// `threads`, or one per available core.
fn thread_count(c: &mut Compiler<'_>, g: &RawGateway) -> usize {
    match &g.threads {
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
    }
}

fn compile_trusted_proxies(c: &mut Compiler<'_>, g: &RawGateway) -> Vec<Cidr> {
    let mut trusted = Vec::new();
    for t in &g.trusted_proxies {
        match Cidr::parse(t.get_ref()) {
            Some(cidr) => trusted.push(cidr),
            None => c.d.error_hint(
                span_of(t),
                "gateway.trusted_proxies",
                format!("`{}` is not an IP address or CIDR", t.get_ref()),
                "write e.g. \"10.0.0.0/8\" or \"127.0.0.1\"",
            ),
        }
    }
    trusted
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
    use super::super::compile;
    use super::super::testing::{errors, BASE, ROUTE};
    use super::*;

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
    fn legacy_names_are_services() {
        let cfg = |legacy: &str| format!("[gateway]\nlegacy = {legacy}\n{BASE}{ROUTE}");
        let ok = compile(Path::new("routes.toml"), &cfg("\"orders\"")).unwrap();
        assert_eq!(ok.gateway.legacy, ["orders"]);
        let ok = compile(Path::new("routes.toml"), &cfg("[\"orders\", \"orders\"]")).unwrap();
        assert_eq!(ok.gateway.legacy, ["orders"]);
        // Each unknown entry of a list at its own position, with a hint.
        let d = errors(&cfg("[\"orders\", \"ordrs\", \"billing\"]"));
        let at: Vec<(usize, usize, &str)> = d
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (2, 21, "unknown legacy service `ordrs`"),
                (2, 30, "unknown legacy service `billing`"),
            ],
            "{d:#?}"
        );
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `orders`?"));
        assert_eq!(d[1].hint.as_deref(), Some("known services: orders"));
        // A single name at the value.
        let d = errors(&cfg("\"ordres\""));
        assert_eq!((d[0].line, d[0].column), (2, 10), "{d:#?}");
        let d = errors(&cfg("[]"));
        assert!(d[0].message.contains("lists no service"), "{d:#?}");
        let d = errors(&cfg("{ name = \"orders\" }"));
        assert!(
            d[0].message
                .contains("a service name or a list of service names"),
            "{d:#?}"
        );
    }

    #[test]
    fn a_migrating_config_without_legacy_is_warned_about() {
        let split = "[services.monolith]\ninstances = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"s\"\nmatch = { path = \"/s/**\" }\nsplit = [{ service = \"monolith\", weight = 1 }, { service = \"orders\", weight = 1 }]\n";
        let warned = |src: &str| {
            compile(Path::new("routes.toml"), src)
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.key == "gateway.legacy")
        };
        assert!(warned(&format!("{BASE}{split}")));
        assert!(!warned(&format!(
            "[gateway]\nlegacy = \"monolith\"\n{BASE}{split}"
        )));
        // Nothing is moving: nothing to warn about.
        assert!(!warned(&format!("{BASE}{ROUTE}")));
    }
}
