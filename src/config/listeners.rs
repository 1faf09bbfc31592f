//! `[gateway] listen`: the compiled listening sockets ([`Listener`], with the
//! [`Certificate`]s of a TLS listener), the HTTP/2 and h2c options of each, and the check
//! that no two listeners, nor a listener and the admin listener, collide.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use super::compiler::{span_of, Compiler};
use super::raw::{RawGateway, RawListen};
use super::tls;

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

/// The `listen` entries with the span of each (for collision errors); none listed means
/// the default `127.0.0.1:8080`.
pub(super) fn compile_listeners(
    c: &mut Compiler<'_>,
    g: &RawGateway,
) -> (Vec<Listener>, Vec<Range<usize>>) {
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
pub(super) fn check_listener_collisions(
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

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{messages, BASE, ROUTE};
    use std::path::Path;

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
}
