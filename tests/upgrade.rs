//! Zero-downtime binary upgrade: a running ficus hands its proxy and admin listeners to a
//! `ficus run --upgrade` process (SIGQUIT to the old one, docs/operations.md) while clients
//! keep sending requests, on keep-alive and on new connections.

mod common;
mod load;
use common::*;
use load::{Load, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Load threads on keep-alive connections and on a new connection per request.
const KEEPALIVE_CLIENTS: usize = 4;
const FRESH_CLIENTS: usize = 2;

fn config(o: &Origin) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set_str("grace_period", "5s");
            g.set("access_log", r#""off""#);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build()
}

/// The old gateway, listening for upgrades at `sock`.
fn old_gateway(cfg: &str, sock: &Path) -> Gateway {
    let sock = sock.display().to_string();
    Gateway::builder(cfg)
        .args(move |p| {
            vec![
                "run".into(),
                "--config".into(),
                p.display().to_string(),
                "--upgrade-socket".into(),
                sock.clone(),
            ]
        })
        .start()
}

/// What most tests start from: the origin, a directory for the upgrade socket and the
/// ready files, the socket's path, and the old gateway serving the origin and listening for
/// upgrades at the socket. Bind the origin to a name (`_origin`, not `_`): it stops when
/// dropped.
fn setup() -> (Origin, tempfile::TempDir, PathBuf, Gateway) {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let sock = sock_path(&dir);
    let old = old_gateway(&config(&origin), &sock);
    (origin, dir, sock, old)
}

/// `ficus run` on `config`, listening for upgrades at `sock` and writing its addresses to
/// `ready`; with `upgrade`, it first takes the listeners over from the process at `sock`.
/// Not started yet, so that a test can add to it.
fn ficus_run(
    name: &str,
    config: &Path,
    sock: &Path,
    ready: &Path,
    upgrade: bool,
) -> ProcessBuilder {
    let mut args = vec![
        "run".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--upgrade-socket".into(),
        sock.display().to_string(),
        "--ready-file".into(),
        ready.display().to_string(),
    ];
    if upgrade {
        args.push("--upgrade".into());
    }
    ProcessBuilder::new(name, bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stop_signal(libc::SIGINT)
}

/// Starts `ficus run --upgrade` on the old gateway's config; returns at once (it waits at
/// `sock` for the old process).
fn start_new(gw: &Gateway, sock: &Path, ready: &Path) -> Process {
    ficus_run("ficus (new)", gw.config_path(), sock, ready, true).start()
}

/// A whole upgrade: starts the new process on `old`'s config, sends the old one SIGQUIT
/// once the new one waits at `sock`, and returns the new process once it is ready (its
/// ready file at `ready`) and the old one has drained and exited successfully.
fn upgrade(old: &mut Gateway, sock: &Path, ready: &Path) -> Process {
    let new = start_new(old, sock, ready);
    assert!(
        new_process_waits(sock),
        "the new process never opened {}\n{}",
        sock.display(),
        new.logs_excerpt()
    );
    old.signal(libc::SIGQUIT);
    assert!(
        poll_until(Duration::from_secs(20), || ready.exists().then_some(())).is_some(),
        "the new process never became ready\n{}\n{}",
        new.logs_excerpt(),
        old.logs()
    );
    let status = old.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the old process did not drain and exit: {status:?}\n{}",
        old.logs()
    );
    new
}

/// Whether a new process opened the upgrade socket within 10 s (it then waits there for
/// the old process's SIGQUIT).
fn new_process_waits(sock: &Path) -> bool {
    poll_until(Duration::from_secs(10), || sock.exists().then_some(())).is_some()
}

/// The addresses in a ready file, waiting up to 5 s for it: a process writes it as it
/// reports ready, from another task than the one that tells the old process or systemd.
fn ready_addrs(path: &Path) -> serde_json::Value {
    poll_until(Duration::from_secs(5), || path.exists().then_some(()))
        .unwrap_or_else(|| panic!("no ready file {}", path.display()));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sock_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("upgrade.sock")
}

#[test]
fn upgrade_under_load_refuses_nothing_and_fails_nothing() {
    let (_origin, dir, sock, mut old) = setup();
    let old_pid = old.pid();
    let load = Load::start(
        old.listen,
        vec![Request::get("/a"), Request::get("/b/c")],
        200,
        KEEPALIVE_CLIENTS,
        FRESH_CLIENTS,
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = load.snapshot();

    let ready = dir.path().join("new-ready.json");
    let mut new = upgrade(&mut old, &sock, &ready);
    assert!(
        new.is_running(),
        "the new process died\n{}",
        new.logs_excerpt()
    );
    let during = load.snapshot();
    std::thread::sleep(Duration::from_secs(1));
    let tally = load.stop();

    eprintln!("load: before the upgrade {before:?}\nat the end {tally:?}");
    assert_eq!(tally.refused, 0, "refused connections: {:?}", tally.reasons);
    assert_eq!(
        tally.failed,
        0,
        "failed requests: {:?}\nnew:\n{}",
        tally.reasons,
        new.logs_excerpt()
    );
    // Each keep-alive connection the old process held is closed once as it drains (see
    // tests/load): a client retries at most about once per connection it had there.
    assert!(
        tally.retried <= 2 * KEEPALIVE_CLIENTS as u64,
        "{} retries on closed keep-alive connections",
        tally.retried
    );
    // The load really ran on both sides of the upgrade.
    assert!(before.ok > 100, "too little load before: {before:?}");
    assert!(
        tally.ok > during.ok + 100,
        "too little load after the old process exited: {during:?} -> {tally:?}"
    );

    // Same addresses, the admin listener included, now answered by the new process.
    let addrs = ready_addrs(&ready);
    assert_eq!(addrs["listeners"][0], old.listen.to_string());
    assert_eq!(addrs["admin"], old.admin.to_string());
    let readyz = old.admin_get("/readyz").expect("GET /readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.text());
    assert!(
        old.logs().contains("upgrade: the new process serves"),
        "{}",
        old.logs()
    );
    let logs = new.logs();
    assert!(
        logs.contains(&format!("from={old_pid}")),
        "the new process does not name the old one: {logs}"
    );
    assert_eq!(old.get("/after").status, 200);
}

/// SIGQUIT with no new process waiting: the old process says so and keeps serving, on its
/// proxy and its admin listener.
#[test]
fn a_failed_upgrade_leaves_the_old_process_serving() {
    let (_origin, dir, sock, mut gw) = setup();
    gw.signal(libc::SIGQUIT);
    assert!(
        poll_until(Duration::from_secs(20), || gw
            .logs()
            .contains("upgrade failed, still serving")
            .then_some(()))
        .is_some(),
        "{}",
        gw.logs()
    );
    assert!(gw.is_running());
    assert_eq!(gw.get("/x").status, 200);
    assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);
    // A second attempt can still succeed.
    let ready = dir.path().join("new-ready.json");
    let new = start_new(&gw, &sock, &ready);
    assert!(new_process_waits(&sock));
    gw.signal(libc::SIGQUIT);
    assert!(
        gw.wait_exit(Duration::from_secs(20)).is_some(),
        "{}\n{}",
        gw.logs(),
        new.logs_excerpt()
    );
    assert_eq!(gw.get("/y").status, 200);
}

/// The order of the two steps is not a race: SIGQUIT first, the new process a moment later.
/// The SIGQUIT goes out as soon as the ready file exists, so this also checks that the
/// handlers are in place by then (SIGQUIT's default action ends the process).
#[test]
fn sigquit_before_the_new_process_starts_still_hands_over() {
    let (_origin, dir, sock, mut old) = setup();
    old.signal(libc::SIGQUIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(old.get("/before").status, 200);
    let ready = dir.path().join("new-ready.json");
    let new = start_new(&old, &sock, &ready);
    assert!(
        old.wait_exit(Duration::from_secs(20)).is_some(),
        "{}\n{}",
        old.logs(),
        new.logs_excerpt()
    );
    assert_eq!(ready_addrs(&ready)["admin"], old.admin.to_string());
    assert_eq!(old.get("/after").status, 200);
}

/// The new process's config may differ: a listener only it names is bound fresh, the
/// others are taken over, and the new process can itself be upgraded again.
#[test]
fn an_upgrade_adds_a_listener_and_can_be_upgraded_again() {
    let (o, dir, sock, mut old) = setup();
    // The old listener by its real address, and a new one on a free port.
    let two = ConfigBuilder::new()
        .gateway(|g| {
            g.set(
                "listen",
                format!("[{}, \"127.0.0.1:0\"]", toml_str(&old.listen.to_string())),
            );
            g.set_str("admin", &old.admin.to_string());
            g.set("access_log", r#""off""#);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let cfg2 = dir.path().join("two.toml");
    std::fs::write(&cfg2, &two).unwrap();
    let run_new = |ready: &Path| ficus_run("ficus (new)", &cfg2, &sock, ready, true).start();
    let ready = dir.path().join("second.json");
    let mut second = run_new(&ready);
    assert!(new_process_waits(&sock));
    old.signal(libc::SIGQUIT);
    assert!(
        old.wait_exit(Duration::from_secs(20)).is_some(),
        "{}\n{}",
        old.logs(),
        second.logs_excerpt()
    );
    let addrs = ready_addrs(&ready);
    assert_eq!(addrs["listeners"][0], old.listen.to_string());
    let added: std::net::SocketAddr = addrs["listeners"][1].as_str().unwrap().parse().unwrap();
    assert_ne!(added, old.listen);
    assert_eq!(get_raw(old.listen, "/x", "t", &[]).status, 200);
    assert_eq!(get_raw(added, "/y", "t", &[]).status, 200);

    // The second process hands everything over in turn.
    let ready3 = dir.path().join("third.json");
    let third = run_new(&ready3);
    assert!(new_process_waits(&sock));
    second.signal(libc::SIGQUIT);
    assert!(
        second.wait_exit(Duration::from_secs(20)).is_some(),
        "{}\n{}",
        second.logs_excerpt(),
        third.logs_excerpt()
    );
    assert_eq!(ready_addrs(&ready3), addrs);
    assert_eq!(get_raw(added, "/z", "t", &[]).status, 200);
    assert_eq!(old.admin_get("/readyz").unwrap().status, 200);
}

/// `--upgrade` alone is refused: it needs the socket to take the listeners from.
#[test]
fn upgrade_needs_the_upgrade_socket() {
    let (code, _, err) = ficus(&["run", "--upgrade"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--upgrade-socket"), "{err}");
}

/// Under systemd (`Type=notify`, `NotifyAccess=all`): the first process says `READY=1`
/// once it serves; the new one says `MAINPID=<its pid>` and `READY=1` before the old one
/// drains, so systemd follows the main process across the upgrade.
#[test]
fn systemd_is_told_ready_and_then_the_new_main_pid() {
    let o = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let sock = sock_path(&dir);
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(
        &cfg,
        config(&o)
            .replace("{listen}", "127.0.0.1:0")
            .replace("{admin}", "127.0.0.1:0"),
    )
    .unwrap();
    let run = |name: &str, ready: &Path, upgrade: bool| {
        ficus_run(name, &cfg, &sock, ready, upgrade)
            .env("NOTIFY_SOCKET", notify_path.as_os_str())
            .start()
    };
    let recv = || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let old_ready = dir.path().join("old.json");
    let mut old = run("ficus (old)", &old_ready, false);
    assert_eq!(recv(), "READY=1");
    assert!(ready_addrs(&old_ready)["admin"].is_string());

    let new_ready = dir.path().join("new.json");
    let new = run("ficus (new)", &new_ready, true);
    assert!(new_process_waits(&sock));
    old.signal(libc::SIGQUIT);
    assert_eq!(recv(), format!("MAINPID={}\nREADY=1", new.pid()));
    assert!(
        old.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        old.logs_excerpt()
    );
    assert_eq!(ready_addrs(&new_ready), ready_addrs(&old_ready));
}

/// Clients over TLS see the upgrade as nothing: an HTTP/2 client on one multiplexed
/// connection (ALPN h2, the TLS default) and an HTTP/1.1 client opening a new TLS
/// connection for every request keep getting 200s while the old process hands its TLS
/// listener over, drains and exits. The HTTP/2 client moves to the new process when the old
/// one's GOAWAY closes its connection; a request that loses that race is retried once (as
/// HTTP clients do with a refused or unprocessed stream), and the retries are counted.
#[test]
fn tls_and_http2_clients_see_no_failure_across_an_upgrade() {
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "a", &["a.example", "127.0.0.1"]);
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set(
                "listen",
                format!(
                    r#"[{{ addr = "{{listen}}", tls = {{ certificates = [{{ cert = "{}", key = "{}" }}] }} }}]"#,
                    cert.cert_path.display(),
                    cert.key_path.display()
                ),
            );
            g.set_str("grace_period", "5s");
            g.set("access_log", r#""off""#);
        })
        .service("o", &[origin.addr()])
        .catch_all("o")
        .build();
    let sock = sock_path(&dir);
    let mut old = old_gateway(&cfg, &sock);
    let tls_addr = old.listen;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = |h2: bool| {
        let b = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(ca.reqwest_cert())
            .resolve("a.example", tls_addr)
            .timeout(Duration::from_secs(10));
        let b = if h2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only().pool_max_idle_per_host(0)
        };
        b.build().unwrap()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("https://a.example:{}/x", tls_addr.port());
    // Each loop returns (ok, retried, failures).
    let run = |c: reqwest::Client, h2: bool| {
        let stop = stop.clone();
        let url = url.clone();
        rt.spawn(async move {
            let (mut ok, mut retried, mut failures) = (0u64, 0u64, Vec::<String>::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut outcome = c.get(&url).send().await;
                if h2 && outcome.is_err() {
                    retried += 1;
                    outcome = c.get(&url).send().await;
                }
                match outcome {
                    Ok(r) if r.status() == 200 && r.version() == http_version(h2) => ok += 1,
                    Ok(r) => failures.push(format!("{:?} {}", r.version(), r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            (ok, retried, failures)
        })
    };
    let h2_load = run(client(true), true);
    let h1_load = run(client(false), false);
    std::thread::sleep(Duration::from_secs(1));

    let ready = dir.path().join("new-ready.json");
    let mut new = upgrade(&mut old, &sock, &ready);
    // Load on the new process alone for a while.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (h2_ok, h2_retried, h2_failed) = rt.block_on(h2_load).unwrap();
    let (h1_ok, _, h1_failed) = rt.block_on(h1_load).unwrap();
    eprintln!("h2: {h2_ok} ok, {h2_retried} retried; h1 over new TLS connections: {h1_ok} ok");
    assert!(h2_failed.is_empty(), "HTTP/2 failures: {h2_failed:?}");
    assert!(h1_failed.is_empty(), "HTTP/1.1 failures: {h1_failed:?}");
    assert!(
        h2_ok > 100 && h1_ok > 20,
        "too little load: h2 {h2_ok}, h1 {h1_ok}"
    );
    // One connection moved once: at most a handful of requests raced the GOAWAY.
    assert!(h2_retried <= 4, "{h2_retried} HTTP/2 retries");
    assert!(new.is_running(), "{}", new.logs_excerpt());
}

fn http_version(h2: bool) -> reqwest::Version {
    if h2 {
        reqwest::Version::HTTP_2
    } else {
        reqwest::Version::HTTP_11
    }
}
