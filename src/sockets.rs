//! The gateway's listening sockets, bound by ficus before pingora starts, and the ready file
//! that reports where they are.
//!
//! Binding here rather than inside pingora gives three things: an address in use fails the
//! start at once with a clear message (pingora would retry for 30 s), port `0` works (the
//! system picks a free port and the ready file says which), and nothing can take an address
//! between a check and the bind. pingora takes the proxy sockets over through its table of
//! listening file descriptors, the mechanism it uses for zero-downtime upgrades: a service
//! whose address is found in the table uses that socket instead of binding again.
//!
//! This module binds and hands over; it never accepts a connection or speaks HTTP.

use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};

use crate::config::GatewaySettings;
use crate::server::ServerError;

/// Every socket the gateway listens on, bound, with the addresses the system gave them.
pub struct BoundSockets {
    /// One per `gateway.listen` entry, in the config's order.
    pub proxy: Vec<BoundSocket>,
    pub admin: BoundSocket,
}

/// A bound, listening socket and its actual address (port `0` replaced by the real port).
pub struct BoundSocket {
    pub addr: SocketAddr,
    pub socket: TcpListener,
}

impl BoundSockets {
    /// Binds every proxy listener, then the admin listener. The first address that cannot
    /// be bound is the error.
    pub fn bind(gateway: &GatewaySettings) -> Result<BoundSockets, ServerError> {
        let proxy = gateway
            .listeners
            .iter()
            .map(|l| {
                BoundSocket::bind(l.addr)
                    .map_err(|e| ServerError::Start(format!("cannot listen on {}: {e}", l.addr)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let admin = BoundSocket::bind(gateway.admin)
            .map_err(|e| ServerError::Start(format!("admin listener {}: {e}", gateway.admin)))?;
        Ok(BoundSockets { proxy, admin })
    }

    /// The sockets a running process handed over in a binary upgrade ([`crate::upgrade`]),
    /// matched to this config's listeners: by address, and a port-`0` listener takes the
    /// handed-over socket on the same IP in the same order. A listener the old process did
    /// not have is bound here; a handed-over socket this config no longer names is closed
    /// (it stops accepting when the old process exits).
    pub fn inherit(
        gateway: &GatewaySettings,
        mut listeners: Vec<(SocketAddr, TcpListener)>,
        admin: (SocketAddr, TcpListener),
    ) -> Result<BoundSockets, ServerError> {
        let mut proxy = Vec::with_capacity(gateway.listeners.len());
        for l in &gateway.listeners {
            let socket = match claim(&mut listeners, l.addr) {
                Some((addr, socket)) => BoundSocket::adopt(addr, socket),
                None => {
                    tracing::info!(addr = %l.addr, "upgrade: a new listener, bound here");
                    BoundSocket::bind(l.addr)
                }
            };
            proxy
                .push(socket.map_err(|e| {
                    ServerError::Start(format!("cannot listen on {}: {e}", l.addr))
                })?);
        }
        for (addr, _) in &listeners {
            tracing::warn!(%addr, "upgrade: listener no longer configured; it closes with the old process");
        }
        let mut admins = vec![admin];
        let admin = match claim(&mut admins, gateway.admin) {
            Some((addr, socket)) => BoundSocket::adopt(addr, socket),
            None => BoundSocket::bind(gateway.admin),
        }
        .map_err(|e| ServerError::Start(format!("admin listener {}: {e}", gateway.admin)))?;
        Ok(BoundSockets { proxy, admin })
    }

    /// The actual addresses, for the ready file and the start-up log line.
    pub fn addresses(&self) -> BoundAddresses {
        BoundAddresses {
            listeners: self.proxy.iter().map(|s| s.addr).collect(),
            admin: self.admin.addr,
        }
    }
}

/// Takes the socket listening on `want` out of `pool`: the one with that exact address, or,
/// for port `0`, the first one on the same IP.
fn claim<T>(pool: &mut Vec<(SocketAddr, T)>, want: SocketAddr) -> Option<(SocketAddr, T)> {
    let at = pool.iter().position(|(a, _)| *a == want).or_else(|| {
        (want.port() == 0)
            .then(|| pool.iter().position(|(a, _)| a.ip() == want.ip()))
            .flatten()
    })?;
    Some(pool.remove(at))
}

impl BoundSocket {
    /// A socket bound elsewhere (handed over by the old process in an upgrade).
    fn adopt(addr: SocketAddr, socket: TcpListener) -> std::io::Result<BoundSocket> {
        socket.set_nonblocking(true)?;
        Ok(BoundSocket { addr, socket })
    }

    fn bind(addr: SocketAddr) -> std::io::Result<BoundSocket> {
        // std sets SO_REUSEADDR on Unix, as pingora's own bind does.
        let socket = TcpListener::bind(addr)?;
        // tokio takes the socket over as it is and needs it non-blocking.
        socket.set_nonblocking(true)?;
        Ok(BoundSocket {
            addr: socket.local_addr()?,
            socket,
        })
    }
}

/// Where the gateway listens, as reported in the ready file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddresses {
    /// The proxy listeners, in the config's order.
    pub listeners: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl BoundAddresses {
    /// `{"listeners":["127.0.0.1:41234",...],"admin":"127.0.0.1:41235"}`
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "listeners": self.listeners.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "admin": self.admin.to_string(),
        })
        .to_string()
    }
}

/// The file `ficus run --ready-file PATH` writes once every listener accepts.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    pub path: PathBuf,
}

impl ReadyFile {
    /// Removes a file left by an earlier run, so that whoever waits for it never reads a
    /// stale one.
    pub fn clear(&self) -> Result<(), ServerError> {
        // A directory that is not there would only show when the file is due, after the
        // gateway started serving: whoever waits for the file would wait forever.
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(ServerError::Start(format!(
                "the ready file's directory {} does not exist",
                dir.display()
            )));
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ServerError::Start(format!(
                "cannot remove the old ready file {}: {e}",
                self.path.display()
            ))),
        }
    }

    /// Writes the addresses next to the file and renames it into place, so that a reader
    /// sees either no file or the whole of it.
    /// The temporary file is new (`create_new`: never an existing file, nor where a
    /// symlink planted under its name points), named after this process and an attempt
    /// number, so a name someone else took is skipped rather than written through.
    pub fn write(&self, addrs: &BoundAddresses) -> std::io::Result<()> {
        use std::io::Write;
        const ATTEMPTS: u32 = 16;
        let body = format!("{}\n", addrs.to_json());
        let mut last = std::io::Error::other("no attempt made");
        for attempt in 0..ATTEMPTS {
            let tmp = sibling(
                &self.path,
                &format!(".{}.{attempt}.tmp", std::process::id()),
            );
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp);
            let mut file = match file {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match file.write_all(body.as_bytes()) {
                Ok(()) => std::fs::rename(&tmp, &self.path),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            };
        }
        Err(last)
    }
}

/// `dir/name` + `suffix`, in the same directory (a rename stays on one file system).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A pingora service that listens on sockets ficus bound ([`BoundSockets`]) instead of
/// binding its addresses itself. Each socket is registered under its address (the key the
/// service was given with `add_tcp`/`add_tls_with_settings`) in pingora's listening-fd
/// table just before the service builds its listeners.
pub struct PreBound<S> {
    inner: S,
    sockets: Vec<BoundSocket>,
}

impl<S> PreBound<S> {
    /// `inner` must have one listener added for each socket, under `socket.addr.to_string()`.
    pub fn new(inner: S, sockets: Vec<BoundSocket>) -> PreBound<S> {
        PreBound { inner, sockets }
    }
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        match &fds {
            Some(table) => {
                let mut table = table.lock();
                for s in self.sockets.drain(..) {
                    // pingora owns the descriptor from here on (it wraps it in its listener).
                    table.add(s.addr.to_string(), s.socket.into_raw_fd());
                }
            }
            None => {
                // pingora's server always passes its table on Unix. Without one, give the
                // addresses back: pingora binds the same (now concrete) addresses itself.
                tracing::warn!("no listening-fd table; pingora binds the listeners itself");
                self.sockets.clear();
            }
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_holds_the_actual_addresses_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReadyFile {
            path: dir.path().join("ready.json"),
        };
        let addrs = BoundAddresses {
            listeners: vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:4001".parse().unwrap(),
            ],
            admin: "127.0.0.1:4002".parse().unwrap(),
        };
        file.write(&addrs).unwrap();
        let text = std::fs::read_to_string(&file.path).unwrap();
        assert_eq!(
            text,
            "{\"admin\":\"127.0.0.1:4002\",\"listeners\":[\"127.0.0.1:4000\",\"[::1]:4001\"]}\n"
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
        file.clear().unwrap();
        assert!(!file.path.exists());
        file.clear().unwrap();
    }

    #[test]
    fn handed_over_sockets_are_claimed_by_address_then_port_zero_by_ip() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let c: SocketAddr = "[::1]:4002".parse().unwrap();
        let mut pool = vec![(a, 'a'), (b, 'b'), (c, 'c')];
        assert_eq!(claim(&mut pool, b), Some((b, 'b')));
        assert_eq!(claim(&mut pool, "[::1]:0".parse().unwrap()), Some((c, 'c')));
        assert_eq!(claim(&mut pool, "127.0.0.2:0".parse().unwrap()), None);
        assert_eq!(claim(&mut pool, "127.0.0.1:4005".parse().unwrap()), None);
        assert_eq!(
            claim(&mut pool, "127.0.0.1:0".parse().unwrap()),
            Some((a, 'a'))
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn port_zero_is_replaced_by_the_bound_port() {
        let s = BoundSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(s.addr.port(), 0);
        assert_eq!(s.socket.local_addr().unwrap(), s.addr);
    }

    #[test]
    fn a_planted_symlink_is_not_followed_and_a_missing_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep").unwrap();
        let file = ReadyFile {
            path: dir.path().join("ready.json"),
        };
        let tmp = sibling(&file.path, &format!(".{}.0.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let addrs = BoundAddresses {
            listeners: vec![],
            admin: "127.0.0.1:4002".parse().unwrap(),
        };
        file.write(&addrs).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::read_to_string(&file.path)
            .unwrap()
            .contains("127.0.0.1:4002"));
        let missing = ReadyFile {
            path: dir.path().join("no/such/dir/ready.json"),
        };
        assert!(missing.clear().is_err());
    }
}
