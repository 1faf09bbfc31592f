//! TLS handshakes of the proxy listeners, under a deadline.
//!
//! pingora gives every downstream handshake 60 seconds, a constant it does not let us
//! change, so a client that opens a connection and sends nothing (or half a ClientHello)
//! holds a socket and a task for a minute. ficus therefore hands pingora its TLS listeners
//! as plain TCP ones and does the handshake here, with pingora's own rustls acceptor and
//! handshake function, bounded by `[gateway.limits] tls_handshake_timeout`. What comes out
//! is the same TLS stream pingora would have made (ALPN, SNI, certificate digest), so
//! nothing after this point can tell the difference.

use pingora_core::listeners::tls::{Acceptor, TlsSettings};
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Handshakes that failed, and that did not finish in time, since the process started
/// (process-wide like the other connection counters: a reload must not reset them).
static FAILED: AtomicU64 = AtomicU64::new(0);
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);

/// The `ficus_tls_handshakes_failed_total` family. Clients cause these at will (scanners,
/// plain HTTP on a TLS port, silent connections), so they are counted, not logged.
pub fn render_metrics(out: &mut String) {
    out.push_str("# HELP ficus_tls_handshakes_failed_total TLS handshakes on proxy listeners that failed or did not finish within tls_handshake_timeout.\n# TYPE ficus_tls_handshakes_failed_total counter\n");
    for (reason, n) in [("error", &FAILED), ("timeout", &TIMED_OUT)] {
        let _ = writeln!(
            out,
            "ficus_tls_handshakes_failed_total{{reason=\"{reason}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

/// The TLS listeners of one proxy service, by the address each is bound to.
#[derive(Default)]
pub struct TlsListeners {
    listeners: Vec<(SocketAddr, Arc<Acceptor>)>,
}

impl std::fmt::Debug for TlsListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.listeners.iter().map(|(a, _)| a))
            .finish()
    }
}

impl TlsListeners {
    /// Adds the listener bound at `addr` (its actual port), with its TLS settings.
    pub fn add(&mut self, addr: SocketAddr, settings: TlsSettings) {
        // `build` only panics when neither a certificate resolver nor certificate files
        // were set; ficus always sets its SNI resolver.
        self.listeners.push((addr, Arc::new(settings.build())));
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The acceptor of the listener whose socket has the local address `local`. A
    /// listener bound to an unspecified address (`0.0.0.0`, `::`) matches by port.
    fn acceptor_for(&self, local: SocketAddr) -> Option<&Acceptor> {
        let exact = self.listeners.iter().find(|(a, _)| *a == local);
        exact
            .or_else(|| {
                self.listeners
                    .iter()
                    .find(|(a, _)| a.ip().is_unspecified() && a.port() == local.port())
            })
            .map(|(_, acc)| &**acc)
    }

    /// The connection ready for HTTP: a TLS stream after the handshake when it came in on
    /// a TLS listener, `stream` itself otherwise; `None` when the handshake failed or did
    /// not finish within `deadline` (the connection is then dropped, i.e. closed).
    pub async fn handshake(&self, stream: Stream, deadline: Duration) -> Option<Stream> {
        if self.listeners.is_empty() {
            return Some(stream);
        }
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned());
        let Some(PingoraAddr::Inet(local)) = local else {
            return Some(stream);
        };
        let Some(acceptor) = self.acceptor_for(local) else {
            return Some(stream);
        };
        if !stream.as_any().is::<L4Stream>() {
            return Some(stream);
        }
        // Checked just above; a failed downcast would only drop the connection.
        let l4 = stream.into_any().downcast::<L4Stream>().ok()?;
        match tokio::time::timeout(
            deadline,
            pingora_core::protocols::tls::server::handshake(acceptor, *l4),
        )
        .await
        {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            // Scanners and attackers make these at will: debug, not warn.
            Ok(Err(e)) => {
                FAILED.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                TIMED_OUT.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?deadline, "TLS handshake not finished in time");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_an_unspecified_address_matches_by_port() {
        let mut l = TlsListeners::default();
        assert!(l.is_empty());
        // No real acceptor is needed to test the lookup: borrow the slot layout only.
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let one: SocketAddr = "127.0.0.2:9443".parse().unwrap();
        let settings = || {
            let mut s = TlsSettings::intermediate("", "").unwrap();
            s.set_cert_resolver(Arc::new(NoCert));
            s
        };
        l.add(any, settings());
        l.add(one, settings());
        assert!(l.acceptor_for("127.0.0.1:8443".parse().unwrap()).is_some());
        assert!(l.acceptor_for("127.0.0.2:9443".parse().unwrap()).is_some());
        assert!(l.acceptor_for("127.0.0.1:9443".parse().unwrap()).is_none());
    }

    #[derive(Debug)]
    struct NoCert;

    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
}
