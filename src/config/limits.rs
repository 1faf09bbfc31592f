//! `[gateway.limits]`: the compiled request [`Limits`] (head and body sizes, the client
//! deadlines, the admin listener's connection cap) and their defaults. The in-flight caps of
//! the same table are `in_flight.rs`'s; the admin cap's checks are `admin.rs`'s.

use std::time::Duration;

use super::compiler::Compiler;
use super::raw::RawLimits;

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
    /// Connections one client address (the socket's peer; not a trusted proxy) may hold
    /// open on the proxy listeners; one more is closed as soon as it is accepted
    /// (`src/listener/client_conns.rs`). 0: no cap.
    pub max_connections_per_client: usize,
    /// New connections a second one client address (not a trusted proxy) may open on the
    /// proxy listeners, with a burst of as many; a faster one's are closed as soon as they
    /// are accepted (`src/listener/client_conns.rs`). 0: no limit (the default).
    pub new_connections_per_client_per_second: u32,
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
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            new_connections_per_client_per_second: 0,
            in_flight: super::InFlightLimits::default(),
        }
    }
}

/// What `max_connections_per_client` is when not set. An office behind one NAT address
/// with a few hundred people: a browser holds one HTTP/2 connection per origin, or up to
/// six HTTP/1 ones while a page loads, and the gateway closes them after
/// `keepalive_timeout` idle; 1,024 covers about a thousand people on HTTP/2, or 170 using
/// all six HTTP/1 connections at the same moment. A carrier-grade NAT puts more behind one
/// address: raise it, or 0 for no cap.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 1024;

/// `[gateway.limits]`; an absent key keeps its [`Limits::default`] value.
pub(super) fn compile_limits(c: &mut Compiler<'_>, l: &RawLimits) -> Limits {
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
        max_connections_per_client: l
            .max_connections_per_client
            .unwrap_or(d.max_connections_per_client),
        new_connections_per_client_per_second: l
            .new_connections_per_client_per_second
            .unwrap_or(d.new_connections_per_client_per_second),
        in_flight: super::in_flight::compile(c, l),
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{errors, BASE};
    use super::*;
    use std::path::Path;

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
    fn the_connection_cap_per_client_is_read_and_defaults() {
        let dflt = compile(Path::new("routes.toml"), BASE).unwrap();
        assert_eq!(dflt.gateway.limits.max_connections_per_client, 1024);
        for v in [0, 3] {
            let src = format!("[gateway.limits]\nmax_connections_per_client = {v}\n{BASE}");
            let cfg = compile(Path::new("routes.toml"), &src).unwrap();
            assert_eq!(cfg.gateway.limits.max_connections_per_client, v);
        }
    }
}
