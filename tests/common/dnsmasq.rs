//! A real `dnsmasq` (Debian package `dnsmasq-base`) serving test records on 127.0.0.1 and a
//! free port (UDP and TCP), for DNS service-discovery tests, run by the process fixture.
//!
//! No upstream servers, no /etc/hosts, no resolv.conf: it answers only from the files in its
//! tempdir, with TTL 1 s, and NXDOMAIN for every other name (`--local=/#/`; without it,
//! [`Dnsmasq::start_without_local_domain`], names it has no record of are REFUSED, AAAA
//! queries for its own names included).
//! A/AAAA records live in an `--addn-hosts` file (re-read on SIGHUP); SRV records are
//! `srv-host=` lines of its `--conf-file`, which dnsmasq reads only at start, so
//! [`Dnsmasq::set_srv`] restarts it on the same port.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::process::{start_on_free_port, Process, ProcessBuilder};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// How long dnsmasq may take to start, or to serve a change.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(20);

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;

/// One SRV record: (priority, weight, port, target).
pub type Srv = (u16, u16, u16, String);

pub struct Dnsmasq {
    /// Where it answers, UDP and TCP.
    pub addr: SocketAddr,
    process: Process,
    local_domain: bool,
    hosts: Mutex<BTreeMap<String, Vec<IpAddr>>>,
    srv: BTreeMap<String, Vec<Srv>>,
    // Dropped last: the process's files live here.
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with no records and waits until it answers over UDP and TCP.
    pub fn start() -> Dnsmasq {
        Dnsmasq::start_with(true)
    }

    /// Like [`start`](Self::start) but without `--local=/#/`: with no upstream either, it
    /// answers REFUSED for what it has no record of (as a plain dnsmasq set up for a few
    /// names does), including AAAA queries for names that only have A records.
    pub fn start_without_local_domain() -> Dnsmasq {
        Dnsmasq::start_with(false)
    }

    fn start_with(local_domain: bool) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("tempdir for dnsmasq");
        std::fs::write(dir.path().join("hosts"), "").unwrap();
        std::fs::write(dir.path().join("srv.conf"), "").unwrap();
        let (process, port) = start_on_free_port(|port| command(dir.path(), port, local_domain));
        Dnsmasq {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            process,
            local_domain,
            hosts: Mutex::new(BTreeMap::new()),
            srv: BTreeMap::new(),
            dir,
        }
    }

    /// The command line used to run dnsmasq (for reports and debugging).
    pub fn command_line(&self) -> String {
        self.process.command_line().to_string()
    }

    /// Replaces the A/AAAA records of `name` (empty = remove it), sends SIGHUP, and returns
    /// once dnsmasq answers with exactly the new set.
    pub fn set_hosts(&self, name: &str, ips: &[IpAddr]) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let text = {
            let mut hosts = self.hosts.lock().unwrap();
            if ips.is_empty() {
                hosts.remove(&name);
            } else {
                hosts.insert(name.clone(), ips.to_vec());
            }
            let mut text = String::new();
            for (host, ips) in hosts.iter() {
                for ip in ips {
                    writeln!(text, "{ip} {host}").unwrap();
                }
            }
            text
        };
        // Write then rename, so a SIGHUP from a concurrent call never reads a half file.
        let tmp = self.dir.path().join("hosts.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("hosts")).unwrap();
        self.process.signal(libc::SIGHUP);

        let want: BTreeSet<IpAddr> = ips.iter().copied().collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut got = BTreeSet::new();
            let mut answered = true;
            for qtype in [TYPE_A, TYPE_AAAA] {
                match query_udp(self.addr, &name, qtype) {
                    Some(reply) => got.extend(reply.answers.iter().filter_map(|a| a.ip())),
                    None => answered = false,
                }
            }
            if answered && got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq still answers {got:?} for {name}, want {want:?}\n{}",
                self.log()
            );
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Replaces the SRV records of `name` (empty = remove them): rewrites the conf file and
    /// restarts dnsmasq on the same port, returning once it serves the new records.
    /// A/AAAA records set before are kept.
    pub fn set_srv(&mut self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if records.is_empty() {
            self.srv.remove(&name);
        } else {
            let records = records
                .iter()
                .map(|(prio, weight, port, target)| {
                    (
                        *prio,
                        *weight,
                        *port,
                        target.trim_end_matches('.').to_string(),
                    )
                })
                .collect();
            self.srv.insert(name.clone(), records);
        }
        let mut text = String::new();
        for (srv_name, records) in &self.srv {
            for (prio, weight, port, target) in records {
                // srv-host=<_service>.<_prot>.[<domain>],[<target>[,<port>[,<priority>[,<weight>]]]]
                writeln!(text, "srv-host={srv_name},{target},{port},{prio},{weight}").unwrap();
            }
        }
        std::fs::write(self.dir.path().join("srv.conf"), text).unwrap();
        self.restart();

        let want = records.len();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let got = query_udp(self.addr, &name, TYPE_SRV).map(|r| r.count(TYPE_SRV));
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq answers {got:?} SRV records for {name}, want {want}\n{}",
                self.log()
            );
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Stops dnsmasq and starts it again on the same port; the port may still be held for a
    /// moment after the old process died, so a start that fails is tried again.
    fn restart(&mut self) {
        self.process.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match command(self.dir.path(), self.addr.port(), self.local_domain).spawn() {
                Ok(p) => {
                    self.process = p;
                    return;
                }
                Err(e) if e.exited && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The pid of the running dnsmasq.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// dnsmasq's log (queries included), for assertion messages.
    pub fn log(&self) -> String {
        format!("--- dnsmasq log ---\n{}", self.process.log_file(0))
    }
}

/// The dnsmasq command on `port`, ready once it answers over UDP and accepts TCP.
fn command(dir: &Path, port: u16, local_domain: bool) -> ProcessBuilder {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        format!("--port={port}"),
        "--listen-address=127.0.0.1".to_string(),
        "--bind-interfaces".to_string(),
        // Only the files below: no /etc/dnsmasq.conf, /etc/hosts, resolv.conf or upstreams.
        format!("--conf-file={}", file("srv.conf")),
        "--no-hosts".to_string(),
        "--no-resolv".to_string(),
        "--no-poll".to_string(),
        format!("--addn-hosts={}", file("hosts")),
        "--local-ttl=1".to_string(),
        "--neg-ttl=1".to_string(),
        "--auth-ttl=1".to_string(),
        "--pid-file=".to_string(),
        format!("--log-facility={}", file("dnsmasq.log")),
        "--log-queries".to_string(),
    ];
    if local_domain {
        // Every name is local: unknown names get NXDOMAIN instead of REFUSED.
        args.push("--local=/#/".to_string());
    }
    // As root, dnsmasq drops privileges to an unprivileged user that may not read the tempdir.
    if unsafe { libc::geteuid() } == 0 {
        args.push("--user=root".to_string());
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    ProcessBuilder::new("dnsmasq", DNSMASQ)
        .args(args)
        .log_file(dir.join("dnsmasq.log"))
        .ready_timeout(READY_TIMEOUT)
        .ready(move |_| {
            query_udp(addr, "ready.probe", TYPE_A).is_some()
                && TcpStream::connect_timeout(&addr, POLL_EVERY * 5).is_ok()
        })
        // Nothing to flush, and the port must be free at once for a restart.
        .stop_signal(libc::SIGKILL)
}

/// A DNS reply, reduced to what the fixture checks.
#[derive(Debug)]
pub struct Reply {
    pub rcode: u8,
    pub answers: Vec<Answer>,
}

#[derive(Debug)]
pub struct Answer {
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Answer {
    fn ip(&self) -> Option<IpAddr> {
        match (self.rtype, self.rdata.len()) {
            (TYPE_A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                self.rdata[0],
                self.rdata[1],
                self.rdata[2],
                self.rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let bytes: [u8; 16] = self.rdata[..].try_into().unwrap();
                Some(IpAddr::V6(Ipv6Addr::from(bytes)))
            }
            _ => None,
        }
    }
}

impl Reply {
    fn count(&self, rtype: u16) -> usize {
        self.answers.iter().filter(|a| a.rtype == rtype).count()
    }
}

/// Asks `server` one question over UDP (written by hand, independent of the code under test).
/// `None` if there is no well-formed reply within 200 ms.
pub fn query_udp(server: SocketAddr, name: &str, qtype: u16) -> Option<Reply> {
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u16);
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00]); // RD
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.trim_end_matches('.').split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes()); // IN

    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    socket.send_to(&msg, server).ok()?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        let (n, from) = socket.recv_from(&mut buf).ok()?;
        if from != server || n < 12 || buf[..2] != id.to_be_bytes() {
            continue;
        }
        return parse_reply(&buf[..n]);
    }
    None
}

fn parse_reply(buf: &[u8]) -> Option<Reply> {
    if buf[2] & 0x80 == 0 {
        return None; // not a response
    }
    let rcode = buf[3] & 0x0f;
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?])) };
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = skip_name(buf, pos)? + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        pos = skip_name(buf, pos)?;
        let rtype = u16_at(pos)?;
        let ttl = u32::from_be_bytes(buf.get(pos + 4..pos + 8)?.try_into().ok()?);
        let len = usize::from(u16_at(pos + 8)?);
        let rdata = buf.get(pos + 10..pos + 10 + len)?.to_vec();
        pos += 10 + len;
        answers.push(Answer { rtype, ttl, rdata });
    }
    Some(Reply { rcode, answers })
}

/// The position after the (possibly compressed) name at `pos`.
fn skip_name(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *buf.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l => pos += 1 + usize::from(l),
        }
    }
}
