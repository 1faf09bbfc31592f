//! `[gateway]`: the compiled listener, admin and limit settings, and their compilation
//! (listener collisions, certificates, limits).
//!
//! This file must not look at services or routes; `mod.rs` passes the gateway's zone on.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::compiler::{span_of, Compiler};
use super::raw::{RawGateway, RawLimits, RawListen};
use super::tls;

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
    /// The most connections the admin listener holds open at once; more are closed as
    /// soon as they are accepted (`src/admin/guard.rs`).
    pub admin_connections: usize,
    /// File descriptors the admin listener never takes from the proxy: it refuses
    /// connections while fewer than this many are left. `None`: a quarter of the limit, at
    /// most [`crate::admin::guard::DEFAULT_RESERVED_FDS`].
    pub admin_reserved_fds: Option<usize>,
    /// How long a client on a TLS listener has to finish the TLS handshake (by default
    /// `header_read_timeout`).
    pub tls_handshake_timeout: Duration,
    /// What requests may hold in flight: HTTP/2 streams, upstream connections, stalls.
    pub in_flight: super::InFlightLimits,
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
            admin_connections: 64,
            admin_reserved_fds: None,
            tls_handshake_timeout: Duration::from_secs(10),
            in_flight: super::InFlightLimits::default(),
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

/// The `listen` entries with the span of each (for collision errors); none listed means
/// the default `127.0.0.1:8080`.
fn compile_listeners(c: &mut Compiler<'_>, g: &RawGateway) -> (Vec<Listener>, Vec<Range<usize>>) {
    let mut listeners = Vec::new();
    let mut listener_spans = Vec::new();
    for l in &g.listen {
        let span = span_of(l);
        let (addr, tls, http2, h2c) = match l.get_ref() {
            RawListen::Addr(a) => (a.as_str(), None, None, false),
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
                "on a TLS listener HTTP/2 is negotiated by ALPN (`http2`, on by default)",
            );
        }
        if http2 == Some(true) && certs.is_empty() {
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
            // Unless a listener says otherwise, HTTP/2 is offered wherever ALPN can offer it.
            http2: http2.unwrap_or(!certs.is_empty()),
            tls: certs,
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
    (listeners, listener_spans)
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

/// `[gateway.limits]`; an absent key keeps its [`Limits::default`] value.
fn compile_limits(c: &mut Compiler<'_>, l: &RawLimits) -> Limits {
    let d = Limits::default();
    let header_read_timeout = c
        .positive_duration(
            &l.header_read_timeout,
            "gateway.limits.header_read_timeout",
            "every request would time out before its headers arrive",
        )
        .unwrap_or(d.header_read_timeout);
    Limits {
        max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_headers: l.max_headers.unwrap_or(d.max_headers),
        max_uri_bytes: l.max_uri_bytes.unwrap_or(d.max_uri_bytes),
        max_body_bytes: l.max_body_bytes.unwrap_or(d.max_body_bytes),
        header_read_timeout,
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
        admin_connections: super::admin::admin_connections(c, l).unwrap_or(d.admin_connections),
        admin_reserved_fds: l.admin_reserved_fds.or(d.admin_reserved_fds),
        tls_handshake_timeout: c
            .positive_duration(
                &l.tls_handshake_timeout,
                "gateway.limits.tls_handshake_timeout",
                "every TLS client would be cut off before its handshake ends",
            )
            .unwrap_or(header_read_timeout),
        in_flight: super::in_flight::compile(c, l),
    }
}

/// Whether two sockets cannot both be bound: the same port on the same address, or on an
/// address that a wildcard (`0.0.0.0`, `[::]`) already covers. Port 0 asks the system for
/// a free port, so it never collides.
fn sockets_collide(a: SocketAddr, b: SocketAddr) -> bool {
    // `[::]` also takes IPv4 on Linux (dual stack), so it covers every address.
    let covers = |w: IpAddr, other: IpAddr| w.is_unspecified() && (w.is_ipv6() || other.is_ipv4());
    // `[::ffff:127.0.0.1]` is 127.0.0.1 to the kernel.
    let (a_ip, b_ip) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() == b.port()
        && a.port() != 0
        && (a_ip == b_ip || covers(a_ip, b_ip) || covers(b_ip, a_ip))
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
    use super::super::compile;
    use super::super::testing::{errors, messages, BASE, ROUTE};
    use super::*;

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
            (
                "listen = [\"[::ffff:127.0.0.1]:7000\", \"127.0.0.1:7000\"]",
                "collides with listener",
            ),
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
    fn the_tls_handshake_deadline_defaults_to_the_head_deadline() {
        let head = format!("[gateway.limits]\nheader_read_timeout = \"3s\"\n{BASE}");
        let cfg = compile(Path::new("routes.toml"), &head).unwrap();
        assert_eq!(
            cfg.gateway.limits.tls_handshake_timeout,
            Duration::from_secs(3)
        );
        let own = format!(
            "[gateway.limits]\nheader_read_timeout = \"3s\"\ntls_handshake_timeout = \"1s\"\n{BASE}"
        );
        let cfg = compile(Path::new("routes.toml"), &own).unwrap();
        assert_eq!(
            cfg.gateway.limits.tls_handshake_timeout,
            Duration::from_secs(1)
        );
        let zero = format!("[gateway.limits]\ntls_handshake_timeout = \"0s\"\n{BASE}");
        let msgs: Vec<String> = errors(&zero).iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("tls_handshake_timeout")),
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
