//! systemd's readiness protocol (`sd_notify`), so that ficus can run as `Type=notify` and a
//! binary upgrade can move the unit's main process: a datagram of `KEY=value` lines to the
//! unix socket named by `$NOTIFY_SOCKET`. Without that variable this does nothing.
//!
//! - At start, once ficus serves: `READY=1`.
//! - A process that took the sockets over in an upgrade: `MAINPID=<its pid>` with
//!   `READY=1`, before it tells the old process to drain (the unit needs
//!   `NotifyAccess=all`, since the new process is not yet the main one).

use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Whether systemd listens for notifications.
pub fn enabled() -> bool {
    std::env::var_os(NOTIFY_SOCKET).is_some_and(|s| !s.is_empty())
}

/// Sends `state` (`KEY=value` lines) to systemd, if it listens. Failures are logged: a
/// notification is never worth stopping the gateway for.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!("cannot notify systemd at {}: {e}", target.to_string_lossy());
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    match bytes.strip_prefix(b"@") {
        // An abstract socket (systemd in a container, or a test).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
