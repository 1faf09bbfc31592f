//! The hand-over's bytes on the upgrade socket: one message from the running process with
//! its listening sockets attached (`SCM_RIGHTS`) and a JSON inventory saying where each
//! listens, then one byte back from the new process once it is ready.
//!
//! Both ends check the other's credentials: only a process of the same user (or root) may
//! give or take the listening sockets.

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt::PeerCredentials, ControlMessage, ControlMessageOwned,
    MsgFlags,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::UpgradeError;

/// The most sockets one hand-over carries (proxy listeners plus the admin listener); the
/// kernel's own limit per message is 253.
pub const MAX_SOCKETS: usize = 128;
/// The inventory is a list of addresses: far below this.
const MAX_INVENTORY: usize = 64 * 1024;
/// The version of this format, so that an old and a new binary that disagree say so.
const VERSION: u32 = 1;
/// What the new process sends back once it serves.
const READY: u8 = b'R';

/// Where each handed-over socket listens, in the order of the attached descriptors: the
/// proxy listeners (in the old config's order), then the admin listener.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Inventory {
    pub version: u32,
    pub listeners: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl Inventory {
    pub fn new(listeners: Vec<SocketAddr>, admin: SocketAddr) -> Inventory {
        Inventory {
            version: VERSION,
            listeners,
            admin,
        }
    }
}

/// The other end's process id, after checking that it runs as this user or as root.
pub fn check_peer(stream: &UnixStream) -> Result<u32, UpgradeError> {
    let cred = getsockopt(stream, PeerCredentials).map_err(|e| UpgradeError::io("peer", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() != me && cred.uid() != 0 {
        return Err(UpgradeError::Peer {
            pid: cred.pid(),
            uid: cred.uid(),
        });
    }
    Ok(u32::try_from(cred.pid()).unwrap_or(0))
}

/// Sends the inventory with the sockets attached.
pub fn send(
    stream: &mut UnixStream,
    inventory: &Inventory,
    sockets: &[BorrowedFd<'_>],
) -> Result<(), UpgradeError> {
    let body = serde_json::to_vec(inventory).map_err(|e| UpgradeError::Message(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| UpgradeError::Message("too long".into()))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&frame)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| UpgradeError::io("send", e))?;
    // A stream socket may take a long message in parts; the descriptors went with the first.
    stream
        .write_all(&frame[sent..])
        .map_err(|e| UpgradeError::io("send", e))
}

/// Receives the inventory and the sockets. Each received descriptor is owned (closed on any
/// error) and close-on-exec.
pub fn receive(stream: &mut UnixStream) -> Result<(Inventory, Vec<OwnedFd>), UpgradeError> {
    let mut buf = vec![0u8; 4 + MAX_INVENTORY];
    let mut space = nix::cmsg_space!([RawFd; MAX_SOCKETS]);
    let (n, fds, truncated) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| UpgradeError::io("receive", e))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| UpgradeError::io("receive", e))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process for
                // this message; nothing else knows of them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds, msg.flags.contains(MsgFlags::MSG_CTRUNC))
    };
    if truncated {
        return Err(UpgradeError::Message(format!(
            "more than {MAX_SOCKETS} sockets offered"
        )));
    }
    let mut have = n;
    while have < 4 {
        have += read_more(stream, &mut buf[have..4])?;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_INVENTORY {
        return Err(UpgradeError::Message(format!("inventory of {len} bytes")));
    }
    if have < 4 + len {
        stream
            .read_exact(&mut buf[have..4 + len])
            .map_err(|e| UpgradeError::io("receive", e))?;
    }
    let inventory: Inventory = serde_json::from_slice(&buf[4..4 + len])
        .map_err(|e| UpgradeError::Message(e.to_string()))?;
    if inventory.version != VERSION {
        return Err(UpgradeError::Message(format!(
            "hand-over format {} (this binary speaks {VERSION})",
            inventory.version
        )));
    }
    if fds.len() != inventory.listeners.len() + 1 {
        return Err(UpgradeError::Message(format!(
            "{} sockets for {} addresses",
            fds.len(),
            inventory.listeners.len() + 1
        )));
    }
    Ok((inventory, fds))
}

fn read_more(stream: &mut UnixStream, buf: &mut [u8]) -> Result<usize, UpgradeError> {
    match stream.read(buf) {
        Ok(0) => Err(UpgradeError::Message(
            "connection closed mid-message".into(),
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(UpgradeError::io("receive", e)),
    }
}

/// Tells the old process that this one serves.
pub fn send_ready(stream: &mut UnixStream) -> Result<(), UpgradeError> {
    stream
        .write_all(&[READY])
        .map_err(|e| UpgradeError::io("ready", e))
}

/// Waits (up to the stream's read timeout) for the new process to say it serves.
pub fn wait_ready(stream: &mut UnixStream) -> Result<(), UpgradeError> {
    let mut b = [0u8; 1];
    match stream.read(&mut b) {
        Ok(1) if b[0] == READY => Ok(()),
        Ok(0) => Err(UpgradeError::Message(
            "the new process closed the connection before it was ready".into(),
        )),
        Ok(_) => Err(UpgradeError::Message("unexpected answer".into())),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(UpgradeError::NotReady)
        }
        Err(e) => Err(UpgradeError::io("ready", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    #[test]
    fn sockets_and_inventory_arrive_and_the_socket_still_accepts() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let inv = Inventory::new(vec![l1.local_addr().unwrap()], admin.local_addr().unwrap());
        send(&mut a, &inv, &[l1.as_fd(), admin.as_fd()]).unwrap();
        let (got, fds) = receive(&mut b).unwrap();
        assert_eq!(got, inv);
        assert_eq!(fds.len(), 2);
        let received = TcpListener::from(fds.into_iter().next().unwrap());
        // The sender closes its copy: the socket stays open and the receiver accepts.
        let addr = l1.local_addr().unwrap();
        drop(l1);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_conn, _) = received.accept().unwrap();
        assert_eq!(check_peer(&b).unwrap(), std::process::id());
        send_ready(&mut b).unwrap();
        wait_ready(&mut a).unwrap();
    }

    #[test]
    fn a_count_mismatch_and_a_closed_peer_are_errors() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
        let inv = Inventory::new(vec![l1.local_addr().unwrap()], l1.local_addr().unwrap());
        send(&mut a, &inv, &[l1.as_fd()]).unwrap();
        assert!(receive(&mut b).is_err());
        drop(b);
        assert!(wait_ready(&mut a).is_err());
    }
}
