//! One way to run a real program beside the tests: spawn it, wait until it is ready, keep
//! its output, stop it. The gateway ([`crate::common::Gateway`]), dnsmasq, headless
//! Chromium and `ficus check`/`explain` all run through [`ProcessBuilder`].
//!
//! * **Spawn**: program, args, env, working directory; stdin is `/dev/null`, stdout and
//!   stderr go to files in a temp directory (no pipe can fill up and stall the child).
//! * **Ready**: a probe, a closure polled with backoff (5 ms doubling to 200 ms) until it
//!   says yes or [`ProcessBuilder::ready_timeout`] passes; [`probe`] has the usual ones
//!   (a TCP connect, an HTTP GET, a log line, a file). A child that exits before it is
//!   ready fails the start with its output.
//! * **Logs**: [`Process::logs`] is stdout, stderr and any extra log files the program
//!   writes ([`ProcessBuilder::log_file`]). They are printed to the test's output when a
//!   start fails and when the test panics while the process is alive (nextest shows the
//!   output of failing tests only).
//! * **Stop**: on drop or [`Process::stop`], by pid (or process group, see
//!   [`ProcessBuilder::process_group`]): the stop signal (SIGTERM unless changed), then
//!   SIGKILL after [`ProcessBuilder::stop_grace`].
//! * **Ports**: [`free_port`] and friends pick loopback ports for programs that cannot be
//!   told to use port 0 and report it. Such a pick can lose a race with another process;
//!   [`start_on_free_port`] retries with a new port when the program exits before ready.
//!
//! Adding a component is a function that builds the command. For example, the Redis the
//! next tests need (Debian `redis-server`; tests/run.sh installs the tools):
//!
//! ```ignore
//! pub fn redis() -> (Process, u16) {
//!     start_on_free_port(|port| {
//!         ProcessBuilder::new("redis", "/usr/bin/redis-server")
//!             .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
//!             .args(["--save", "", "--appendonly", "no"])
//!             .ready(probe::log_line("Ready to accept connections"))
//!     })
//! }
//! ```
//!
//! etcd (two ports, a data directory that lives as long as the process):
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let (etcd, client_port) = start_on_free_port(|port| {
//!     let peer = free_port();
//!     ProcessBuilder::new("etcd", "/usr/bin/etcd")
//!         .arg(format!("--data-dir={}", dir.path().display()))
//!         .arg(format!("--listen-client-urls=http://127.0.0.1:{port}"))
//!         .arg(format!("--advertise-client-urls=http://127.0.0.1:{port}"))
//!         .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
//!         .ready(probe::http_get(([127, 0, 0, 1], port).into(), "/health", 200))
//! });
//! ```
//!
//! The OpenID provider (npm `oidc-provider` under Node) is [`crate::common::OidcProvider`],
//! in oidc.rs: the same pattern, with the port in the environment and the "listening" line
//! as the probe.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A readiness probe: polled until it returns true.
pub type Probe = Box<dyn Fn(&Process) -> bool>;

/// Default time a program gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// First and longest pause between two probes.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(200);
/// Lines of each log shown when the output is dumped (first and last).
const DUMP_LINES: usize = 60;

/// How to start a program; see the module docs.
pub struct ProcessBuilder {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    ready: Option<Probe>,
    ready_timeout: Duration,
    stop_signal: i32,
    stop_grace: Duration,
    process_group: bool,
    log_files: Vec<PathBuf>,
}

impl ProcessBuilder {
    /// `name` labels the logs and error messages.
    pub fn new(name: &str, program: impl Into<OsString>) -> ProcessBuilder {
        ProcessBuilder {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            ready: None,
            ready_timeout: READY_TIMEOUT,
            stop_signal: libc::SIGTERM,
            stop_grace: Duration::from_secs(2),
            process_group: false,
            log_files: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The probe that says the program is ready (default: ready once spawned).
    pub fn ready(mut self, probe: impl Fn(&Process) -> bool + 'static) -> Self {
        self.ready = Some(Box::new(probe));
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The signal that asks the program to stop (default SIGTERM).
    pub fn stop_signal(mut self, signal: i32) -> Self {
        self.stop_signal = signal;
        self
    }

    /// How long the program gets to exit after the stop signal before SIGKILL (default 2 s).
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Runs the program in its own process group, and signals the whole group: for programs
    /// that fork helpers (Chromium) which must not outlive the test.
    pub fn process_group(mut self) -> Self {
        self.process_group = true;
        self
    }

    /// A log file the program writes itself, shown with its stdout and stderr.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_files.push(path.into());
        self
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Spawns the program and waits until the probe says it is ready. The error carries
    /// the reason and the program's output.
    pub fn spawn(self) -> Result<Process, StartError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", self.name))
            .tempdir()
            .expect("tempdir for process logs");
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout log file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr log file"));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        if self.process_group {
            cmd.process_group(0);
        }
        let command_line = self.command_line();
        let child = cmd.spawn().map_err(|e| StartError {
            name: self.name.clone(),
            reason: format!(
                "cannot run `{command_line}`: {e} (tests/run.sh installs the tools the tests need)"
            ),
            exited: false,
            logs: String::new(),
        })?;
        let mut process = Process {
            name: self.name,
            command_line,
            child,
            exit: None,
            stop_signal: self.stop_signal,
            stop_grace: self.stop_grace,
            process_group: self.process_group,
            log_files: [stdout, stderr].into_iter().chain(self.log_files).collect(),
            _dir: dir,
        };
        let Some(probe) = self.ready else {
            return Ok(process);
        };
        let deadline = Instant::now() + self.ready_timeout;
        let mut pause = FIRST_POLL;
        loop {
            if let Some(status) = process.try_exit() {
                return Err(
                    process.start_error(format!("exited ({status}) before it was ready"), true)
                );
            }
            if probe(&process) {
                return Ok(process);
            }
            if Instant::now() >= deadline {
                let reason = format!("not ready after {:?}", self.ready_timeout);
                return Err(process.start_error(reason, false));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// [`spawn`](Self::spawn), panicking with the output if the program does not start.
    pub fn start(self) -> Process {
        self.spawn().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Starts the program that `command(port)` builds on a free loopback port (TCP and UDP),
/// trying again with another port (up to 5 times) when it exits before it is ready, which
/// is what a program does when someone else took the port first.
pub fn start_on_free_port(command: impl Fn(u16) -> ProcessBuilder) -> (Process, u16) {
    let mut last = None;
    for _ in 0..5 {
        let port = free_udp_tcp_port();
        match command(port).spawn() {
            Ok(p) => return (p, port),
            Err(e) if e.exited => last = Some(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{}", last.expect("at least one attempt"));
}

/// Why a program did not start, with its output.
#[derive(Debug)]
pub struct StartError {
    pub name: String,
    pub reason: String,
    /// The program exited (as opposed to: could not be run, or never became ready).
    pub exited: bool,
    pub logs: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}\n{}", self.name, self.reason, self.logs)
    }
}

/// A running (or exited) program; stopped on drop.
pub struct Process {
    name: String,
    command_line: String,
    child: Child,
    exit: Option<ExitStatus>,
    stop_signal: i32,
    stop_grace: Duration,
    process_group: bool,
    /// stdout, stderr, then the program's own log files.
    log_files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Sends `signal` to the process (or its group); panics if that fails.
    pub fn signal(&self, signal: i32) {
        let rc = self.kill(signal);
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) on {}: {}",
            self.pid(),
            self.name,
            std::io::Error::last_os_error()
        );
    }

    fn kill(&self, signal: i32) -> i32 {
        let pid = self.pid() as libc::pid_t;
        let target = if self.process_group { -pid } else { pid };
        // SAFETY: kill(2) has no memory effects; the pid is our own child's, not yet
        // reaped (or, for a group, the group it led).
        unsafe { libc::kill(target, signal) }
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        crate::common::poll_until(timeout, || self.try_exit())
    }

    /// Stops the process: the stop signal, then SIGKILL after the grace period. A process
    /// group is signalled even after its leader exited (helpers may be left).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.try_exit().is_none() || self.process_group {
            self.kill(self.stop_signal);
            if self.wait_exit(self.stop_grace).is_none() || self.process_group {
                self.kill(libc::SIGKILL);
            }
        }
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
        self.exit
    }

    /// What the program wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.log_files[0]).unwrap_or_default()
    }

    /// What the program wrote to stdout so far, as bytes.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.log_files[0]).unwrap_or_default()
    }

    /// What the program wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.log_files[1]).unwrap_or_default()
    }

    /// The contents of the `i`th extra log file given with [`ProcessBuilder::log_file`].
    pub fn log_file(&self, i: usize) -> String {
        read_lossy(&self.log_files[2 + i]).unwrap_or_default()
    }

    /// Every log, labelled: stdout, stderr, then the extra log files.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, path) in self.log_files.iter().enumerate() {
            let label = match i {
                0 => "stdout".to_string(),
                1 => "stderr".to_string(),
                _ => path.display().to_string(),
            };
            let text = read_lossy(path)
                .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
            out.push_str(&format!("--- {label} ---\n{text}\n"));
        }
        out
    }

    /// [`logs`](Self::logs) with long logs cut to their first and last lines.
    pub fn logs_excerpt(&self) -> String {
        truncate_lines(&self.logs(), DUMP_LINES, DUMP_LINES)
    }

    fn start_error(&mut self, reason: String, exited: bool) -> StartError {
        let logs = format!("command: {}\n{}", self.command_line, self.logs_excerpt());
        self.stop();
        StartError {
            name: self.name.clone(),
            reason,
            exited,
            logs,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "==== {} (pid {}) logs ====\ncommand: {}\n{}",
                self.name,
                self.pid(),
                self.command_line,
                self.logs_excerpt()
            );
        }
        self.stop();
    }
}

/// A file's text, with invalid UTF-8 replaced.
fn read_lossy(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Keep the first `head` and last `tail` lines of a long text.
pub fn truncate_lines(text: &str, head: usize, tail: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= head + tail {
        return text.to_string();
    }
    format!(
        "{}\n... ({} lines omitted) ...\n{}",
        lines[..head].join("\n"),
        lines.len() - head - tail,
        lines[lines.len() - tail..].join("\n")
    )
}

/// Readiness probes for [`ProcessBuilder::ready`].
pub mod probe {
    use super::Process;
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::time::Duration;

    /// Ready when `addr` accepts a TCP connection.
    pub fn tcp(addr: SocketAddr) -> impl Fn(&Process) -> bool {
        move |_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }

    /// Ready when `GET path` on `addr` answers `status`.
    pub fn http_get(addr: SocketAddr, path: &str, status: u16) -> impl Fn(&Process) -> bool {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        move |_| {
            crate::common::try_raw_request(addr, req.as_bytes(), Duration::from_secs(2))
                .is_ok_and(|r| r.status == status)
        }
    }

    /// Ready when `needle` appears in any of the program's logs.
    pub fn log_line(needle: &str) -> impl Fn(&Process) -> bool {
        let needle = needle.to_string();
        move |p| p.logs().contains(&needle)
    }

    /// Ready when `path` exists.
    pub fn file(path: impl Into<PathBuf>) -> impl Fn(&Process) -> bool {
        let path = path.into();
        move |_| path.exists()
    }
}

/// A TCP port free on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A free TCP address on 127.0.0.1 at the time of the call.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call (a DNS server
/// needs both).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind UDP 127.0.0.1:0");
        let port = udp.local_addr().expect("UDP local address").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A loopback address with nothing listening: connecting is refused.
pub fn closed_addr() -> SocketAddr {
    // Bound once and released; the kernel does not hand the same port out again soon.
    let addr = free_addr();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    addr
}
