//! [`Gateway`]: the real `ficus` binary, started on a config for one test.
//!
//! `Gateway::start(&cfg)` writes `cfg` to a temp directory as routes.toml, runs
//! `ficus run --config routes.toml --ready-file ready.json` through the process fixture, and
//! returns once ficus has written the ready file: every listener accepts, `/readyz` is 200.
//! The addresses come from that file, so nothing races for ports.
//!
//! Placeholders in the config: `{listen}`, `{listen2}`, `{listen3}` and `{admin}` become
//! `127.0.0.1:0` (ficus binds free ports and reports them; the listeners are
//! [`Gateway::listeners`] in config order, the first also [`Gateway::listen`]), and `{dir}`
//! the gateway's temp directory.
//!
//! [`Gateway::builder`] covers the rest: another command (`demo`), other arguments, and
//! [`GatewayBuilder::fixed_ports`] for the few tests whose config must name real ports
//! (`ficus explain` reads the admin address from the file; the demo's sample origins listen
//! where the config says). Fixed ports are picked free just before the start, and the start
//! is retried on new ports if one was taken in between.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::common::process::{free_addr, probe, Process, ProcessBuilder};
use crate::common::wire::{get_raw, try_raw_request, RawResponse};

/// The binary under test: `$FICUS_BIN` if set (e.g. a release build), else cargo's build.
pub fn bin() -> String {
    std::env::var("FICUS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ficus").to_string())
}

/// Time a gateway gets to start (it waits up to 10 s for first DNS answers itself).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a fixed-port start that lost a port to another process.
const PORT_ATTEMPTS: usize = 5;
const LISTEN_PLACEHOLDERS: [&str; 3] = ["{listen}", "{listen2}", "{listen3}"];

/// How to wait for the gateway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// For the ready file.
    ReadyFile,
    /// For `/readyz` to answer 200 (needs fixed ports: the admin address must be known).
    Readyz,
}

/// Builds the command line from the config's path.
type Args = Box<dyn Fn(&Path) -> Vec<String>>;

/// How to start a [`Gateway`]; see the module docs.
pub struct GatewayBuilder {
    config: String,
    dir: Option<tempfile::TempDir>,
    args: Args,
    fixed_ports: bool,
    wait: Wait,
}

impl GatewayBuilder {
    /// The command line before `--ready-file`, from the config's path (default
    /// `run --config PATH`). It may also prepare files next to the config.
    pub fn args(mut self, args: impl Fn(&Path) -> Vec<String> + 'static) -> Self {
        self.args = Box::new(args);
        self
    }

    /// Runs in this directory instead of a new temp directory.
    pub fn dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Replaces the placeholders with free ports picked now, instead of port 0.
    pub fn fixed_ports(mut self) -> Self {
        self.fixed_ports = true;
        self
    }

    /// Returns as soon as `/readyz` answers 200, polled on the admin address (implies
    /// fixed ports), instead of waiting for the ready file: for tests of `/readyz` itself.
    pub fn wait_for_readyz(mut self) -> Self {
        self.fixed_ports = true;
        self.wait = Wait::Readyz;
        self
    }

    pub fn start(self) -> Gateway {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the gateway; the error says why, with its config and output.
    pub fn try_start(mut self) -> Result<Gateway, String> {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| tempfile::tempdir().expect("gateway temp dir"));
        let attempts = if self.fixed_ports { PORT_ATTEMPTS } else { 1 };
        let mut last = String::new();
        for _ in 0..attempts {
            let ports = Ports::new(self.fixed_ports);
            match self.spawn(dir.path(), &ports) {
                Ok((process, addrs)) => {
                    return Ok(Gateway {
                        process,
                        config_path: dir.path().join("routes.toml"),
                        listen: addrs.listeners.first().copied().unwrap_or(addrs.admin),
                        listeners: addrs.listeners,
                        admin: addrs.admin,
                        ports,
                        dir,
                    })
                }
                Err((e, port_taken)) => {
                    last = e;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// One start. The error says whether a fixed port was taken (worth another try).
    fn spawn(&self, dir: &Path, ports: &Ports) -> Result<(Process, ReadyAddrs), (String, bool)> {
        let config_path = dir.join("routes.toml");
        let text = ports.subst(&self.config, dir);
        std::fs::write(&config_path, &text).expect("write routes.toml");
        let ready_file = dir.join("ready.json");
        let mut args = (self.args)(&config_path);
        if self.wait == Wait::ReadyFile {
            args.push("--ready-file".into());
            args.push(ready_file.display().to_string());
        }
        let builder = ProcessBuilder::new("ficus", bin())
            .args(args)
            .env("NO_COLOR", "1")
            .ready_timeout(START_TIMEOUT)
            // SIGINT: ficus flushes its logs and exits at once, even with requests in flight.
            .stop_signal(libc::SIGINT);
        let builder = match self.wait {
            Wait::ReadyFile => builder.ready(probe::file(ready_file.clone())),
            Wait::Readyz => builder.ready(probe::http_get(ports.admin, "/readyz", 200)),
        };
        let process = builder.spawn().map_err(|e| {
            let taken = self.fixed_ports && e.exited && ports.named_in_use(&e.logs);
            (format!("{e}\nconfig:\n{text}"), taken)
        })?;
        let addrs = match self.wait {
            Wait::ReadyFile => ReadyAddrs::read(&ready_file),
            Wait::Readyz => ports.addrs(&text),
        };
        Ok((process, addrs))
    }
}

/// The addresses the placeholders stand for.
struct Ports {
    listen: [SocketAddr; 3],
    admin: SocketAddr,
}

impl Ports {
    fn new(fixed: bool) -> Ports {
        let pick = || {
            if fixed {
                free_addr()
            } else {
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        };
        Ports {
            listen: [pick(), pick(), pick()],
            admin: pick(),
        }
    }

    fn subst(&self, config: &str, dir: &Path) -> String {
        let mut text = config.replace("{admin}", &self.admin.to_string());
        for (ph, addr) in LISTEN_PLACEHOLDERS.iter().zip(self.listen) {
            text = text.replace(ph, &addr.to_string());
        }
        text.replace("{dir}", &dir.display().to_string())
    }

    /// Whether `logs` say that one of these (fixed) addresses was in use.
    fn named_in_use(&self, logs: &str) -> bool {
        logs.contains("in use")
            && self
                .listen
                .iter()
                .chain([&self.admin])
                .any(|a| logs.contains(&a.to_string()))
    }

    /// The fixed listener addresses, in the order their placeholders appear in `config`.
    fn addrs(&self, config: &str) -> ReadyAddrs {
        let mut listeners: Vec<(usize, SocketAddr)> = self
            .listen
            .iter()
            .filter_map(|a| config.find(&a.to_string()).map(|at| (at, *a)))
            .collect();
        listeners.sort();
        ReadyAddrs {
            listeners: listeners.into_iter().map(|(_, a)| a).collect(),
            admin: self.admin,
        }
    }
}

/// What the ready file says.
struct ReadyAddrs {
    listeners: Vec<SocketAddr>,
    admin: SocketAddr,
}

impl ReadyAddrs {
    fn read(path: &Path) -> ReadyAddrs {
        let text = std::fs::read_to_string(path).expect("read the ready file");
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ready file is not JSON ({e}): {text:?}"));
        let addr = |v: &serde_json::Value| -> SocketAddr {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad address {v} in the ready file: {text}"))
        };
        ReadyAddrs {
            listeners: doc["listeners"]
                .as_array()
                .unwrap_or_else(|| panic!("no listeners in the ready file: {text}"))
                .iter()
                .map(addr)
                .collect(),
            admin: addr(&doc["admin"]),
        }
    }
}

/// A running `ficus`; stopped (SIGINT, then SIGKILL) on drop, its logs printed if the test
/// panics.
pub struct Gateway {
    process: Process,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    ports: Ports,
    /// The first proxy listener.
    pub listen: SocketAddr,
    /// Every proxy listener, in config order.
    pub listeners: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl Gateway {
    /// Starts `ficus run` on `config` and waits for its ready file.
    pub fn start(config: &str) -> Gateway {
        Gateway::builder(config).start()
    }

    pub fn builder(config: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config.to_string(),
            dir: None,
            args: Box::new(|p| vec!["run".into(), "--config".into(), p.display().to_string()]),
            fixed_ports: false,
            wait: Wait::ReadyFile,
        }
    }

    /// Replace this gateway's placeholders in a config template (port 0 stays port 0: the
    /// listeners are not moved by a reload).
    pub fn subst(&self, config: &str) -> String {
        self.ports.subst(config, self.dir.path())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Atomically replace the config file (placeholders are substituted).
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.dir.path().join(".routes.toml.tmp");
        std::fs::write(&tmp, self.subst(config)).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// stdout + stderr of the gateway so far.
    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.process.stdout(),
            self.process.stderr()
        )
    }

    /// GET an admin path (raw TCP, blocking).
    pub fn admin_get(&self, path: &str) -> io::Result<RawResponse> {
        try_raw_request(
            self.admin,
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        )
    }

    /// The running config's generation (from `GET /policies`): 1 at start, +1 per applied
    /// reload.
    pub fn generation(&self) -> u64 {
        let r = self.admin_get("/policies").expect("GET /policies");
        r.json()["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation in {}", r.text()))
    }

    /// Rewrites the config (placeholders substituted) and waits up to 10 s for the reload to
    /// be live; panics with the logs if it is not.
    pub fn reload(&self, config: &str) {
        let before = self.generation();
        self.rewrite_config(config);
        crate::common::poll_until(Duration::from_secs(10), || {
            (self.generation() > before).then_some(())
        })
        .unwrap_or_else(|| panic!("reload not applied\n{}", self.logs()));
    }

    /// Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        let r = self.admin_get("/metrics").expect("GET /metrics");
        assert_eq!(r.status, 200, "GET /metrics status");
        r.text()
    }

    /// Simple GET on the main listener via raw TCP.
    pub fn get(&self, path: &str) -> RawResponse {
        get_raw(self.listen, path, "test.local", &[])
    }

    /// Polls `/readyz` until it answers `503 draining` (after SIGTERM); false after
    /// `timeout`.
    pub fn wait_draining(&self, timeout: Duration) -> bool {
        crate::common::poll_until(timeout, || {
            self.admin_get("/readyz")
                .ok()
                .filter(|r| r.status == 503 && r.text().contains("draining"))
        })
        .is_some()
    }
}
