//! Zero-downtime binary upgrade: the running process hands its listening sockets (every
//! proxy listener and the admin listener) to a new `ficus run --upgrade` process over a unix
//! socket, waits until the new process serves, and only then stops accepting and drains.
//!
//! The sequence follows pingora's convention (start the new process with the upgrade flag,
//! then SIGQUIT the old one) but ficus drives it itself, because ficus binds its own sockets
//! ([`crate::sockets`]) and its admin listener is not a pingora listening service:
//!
//! 1. `ficus run --upgrade --upgrade-socket PATH` (new) compiles its config, binds `PATH`
//!    (mode 0600) and waits up to [`TAKEOVER_WAIT`] for the old process.
//! 2. SIGQUIT to the old process (started with the same `--upgrade-socket PATH`): it connects
//!    to `PATH` (retrying for up to [`CONNECT_WAIT`]), sends duplicates of its listening
//!    sockets with a list of their addresses, and keeps serving.
//! 3. The new process takes the sockets whose addresses its config names (binding any new
//!    ones), starts, and once `/readyz` would say ready writes one byte back.
//! 4. The old process stops accepting (proxy and admin) and drains like after SIGTERM.
//!
//! The listening sockets are never closed in between: both processes hold them, and the
//! kernel queues connections until one accepts. If the new process fails before step 3 (a
//! crash, a config it cannot serve, no answer within [`READY_WAIT`]), the old process logs
//! the error and keeps serving; nothing was lost.
//!
//! This module moves sockets; it never accepts a connection or speaks HTTP.

pub mod systemd;
pub mod wire;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

use crate::runtime::Shared;
use crate::sockets::BoundSockets;

/// How long the new process waits for the old one to connect (the operator's SIGQUIT).
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(30);
/// How long the old process keeps trying to reach the new one after SIGQUIT (the new one
/// may still be compiling its config).
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long the old process waits for the new one to serve: its first key-set fetches, DNS
/// lookups and health verdicts happen before it reports ready (`/readyz` stops waiting for
/// them after 30 s, [`crate::runtime::READY_GRACE`]).
pub const READY_WAIT: Duration = Duration::from_secs(60);
/// Pause between attempts while waiting for the other process.
const RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error("upgrade socket {path}: {message}")]
    Socket { path: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the process at the other end (pid {pid}, uid {uid}) runs as another user")]
    Peer { pid: i32, uid: u32 },
    #[error("bad hand-over message: {0}")]
    Message(String),
    #[error("the new process did not report ready within {}s", READY_WAIT.as_secs())]
    NotReady,
}

impl UpgradeError {
    fn io(what: &'static str, e: impl Into<std::io::Error>) -> UpgradeError {
        UpgradeError::Io {
            what,
            source: e.into(),
        }
    }

    fn socket(path: &Path, message: impl std::fmt::Display) -> UpgradeError {
        UpgradeError::Socket {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// The running process's side: duplicates of its listening sockets, ready to be sent.
pub struct HandOver {
    path: PathBuf,
    listeners: Vec<(SocketAddr, OwnedFd)>,
    admin: (SocketAddr, OwnedFd),
}

impl HandOver {
    /// Duplicates every socket of `sockets` (taken before pingora owns them), so they can be
    /// sent however long the process has run.
    pub fn new(path: PathBuf, sockets: &BoundSockets) -> Result<HandOver, UpgradeError> {
        let dup = |s: &crate::sockets::BoundSocket| -> Result<(SocketAddr, OwnedFd), UpgradeError> {
            let fd = s
                .socket
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| UpgradeError::io("duplicate a listening socket", e))?;
            Ok((s.addr, fd))
        };
        Ok(HandOver {
            listeners: sockets.proxy.iter().map(dup).collect::<Result<_, _>>()?,
            admin: dup(&sockets.admin)?,
            path,
        })
    }

    /// Connects to the new process, sends the sockets and waits until it serves. Returns
    /// the new process's id. Blocking: run it off the async runtime.
    pub fn run(&self) -> Result<u32, UpgradeError> {
        let mut stream = connect(&self.path, CONNECT_WAIT)?;
        let pid = wire::check_peer(&stream)?;
        tracing::info!(pid, path = %self.path.display(), "upgrade: sending the listening sockets");
        let inventory = wire::Inventory::new(
            self.listeners.iter().map(|(a, _)| *a).collect(),
            self.admin.0,
        );
        let fds: Vec<_> = self
            .listeners
            .iter()
            .map(|(_, fd)| fd.as_fd())
            .chain([self.admin.1.as_fd()])
            .collect();
        wire::send(&mut stream, &inventory, &fds)?;
        stream
            .set_read_timeout(Some(READY_WAIT))
            .map_err(|e| UpgradeError::io("upgrade socket", e))?;
        wire::wait_ready(&mut stream)?;
        Ok(pid)
    }
}

fn connect(path: &Path, wait: Duration) -> Result<UnixStream, UpgradeError> {
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(UpgradeError::socket(
                    path,
                    format!("no new process listening ({e}); start `ficus run --upgrade` first"),
                ))
            }
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

/// The new process's side: the sockets received from the running process.
pub struct Inherited {
    /// The old process's proxy listeners, by the address each listens on.
    pub listeners: Vec<(SocketAddr, TcpListener)>,
    pub admin: (SocketAddr, TcpListener),
    /// Where the "ready" answer goes.
    pub ack: ReadyAck,
}

/// Binds `path`, waits up to `wait` for the running process to connect and receives its
/// sockets.
pub fn take_over(path: &Path, wait: Duration) -> Result<Inherited, UpgradeError> {
    let listener = bind_private(path)?;
    let accepted = accept_until(&listener, wait);
    // Nobody else may connect once the transfer is under way (or has failed).
    let _ = std::fs::remove_file(path);
    drop(listener);
    let mut stream = accepted.map_err(|e| UpgradeError::socket(path, e))?;
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(CONNECT_WAIT)))
        .map_err(|e| UpgradeError::io("upgrade socket", e))?;
    let pid = wire::check_peer(&stream)?;
    let (inventory, fds) = wire::receive(&mut stream)?;
    tracing::info!(
        from = pid,
        listeners = ?inventory.listeners,
        admin = %inventory.admin,
        "upgrade: received the listening sockets"
    );
    let mut fds = fds.into_iter().map(TcpListener::from);
    let listeners = inventory
        .listeners
        .iter()
        .copied()
        .zip(fds.by_ref())
        .collect();
    let admin_socket = fds
        .next()
        .ok_or_else(|| UpgradeError::Message("no admin socket".into()))?;
    Ok(Inherited {
        listeners,
        admin: (inventory.admin, admin_socket),
        ack: ReadyAck { stream },
    })
}

/// Binds a unix listener that only this user can reach. A stale socket file (from a failed
/// upgrade) is replaced; any other kind of file at `path` is an error, never removed.
fn bind_private(path: &Path) -> Result<UnixListener, UpgradeError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| UpgradeError::socket(path, e))?
        }
        Ok(_) => return Err(UpgradeError::socket(path, "exists and is not a socket")),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| UpgradeError::socket(path, e))?;
    // Peer credentials are checked as well; this keeps other users from even connecting.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| UpgradeError::socket(path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| UpgradeError::socket(path, e))?;
    Ok(listener)
}

fn accept_until(listener: &UnixListener, wait: Duration) -> Result<UnixStream, String> {
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the running process did not connect within {}s (send it SIGQUIT)",
                        wait.as_secs()
                    ));
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The answer the new process owes the old one once it serves.
pub struct ReadyAck {
    stream: UnixStream,
}

/// Once `shared` reports ready (the same condition as `/readyz`), tells systemd (if it
/// listens, [`systemd`]) and, after an upgrade, the old process, from a thread of its own.
/// Gives up after [`READY_WAIT`], as the old process does.
pub fn announce_when_ready(shared: Arc<Shared>, ack: Option<ReadyAck>) {
    if ack.is_none() && !systemd::enabled() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ficus-ready".into())
        .spawn(move || {
            let deadline = Instant::now() + READY_WAIT;
            while !shared.is_ready() {
                if ack.is_some() && Instant::now() >= deadline {
                    tracing::error!("upgrade: not ready within {}s", READY_WAIT.as_secs());
                    return;
                }
                std::thread::sleep(RETRY);
            }
            let Some(mut ack) = ack else {
                systemd::notify("READY=1");
                return;
            };
            // systemd learns the new main process before the old one starts to leave.
            systemd::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
            match wire::send_ready(&mut ack.stream) {
                Ok(()) => tracing::info!("upgrade: serving; the old process drains"),
                Err(e) => tracing::error!(
                    "upgrade: cannot tell the old process ({e}); it keeps serving too: \
                     send it SIGTERM"
                ),
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the readiness notifier: {e}");
    }
}
