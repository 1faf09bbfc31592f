//! Start-up failures are immediate and say what is wrong.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Runs `ficus run` on a config and returns (exit code, output, elapsed), killing it after
/// `limit` if it is still running.
fn run_until_exit(config: &str, limit: Duration) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, config).unwrap();
    let start = Instant::now();
    let mut ficus = ProcessBuilder::new("ficus", bin())
        .args(["run", "--config"])
        .arg(&path)
        .start();
    let code = ficus.wait_exit(limit).and_then(|status| status.code());
    let elapsed = start.elapsed();
    ficus.stop();
    (code, ficus.stdout() + &ficus.stderr(), elapsed)
}

fn config(listen: u16, admin: u16) -> String {
    format!(
        r#"[gateway]
listen = ["127.0.0.1:{listen}"]
admin = "127.0.0.1:{admin}"

[services.s]
instances = ["127.0.0.1:1"]

[[routes]]
name = "all"
match = {{ path = "/**" }}
service = "s"
"#
    )
}

/// Starts ficus with `config`, expects exit code 1 within 5 s and `message` in its output.
fn assert_fails_fast(config: &str, message: &str) {
    let (code, out, elapsed) = run_until_exit(config, Duration::from_secs(10));
    assert_eq!(code, Some(1), "expected exit 1, output:\n{out}");
    assert!(
        out.contains(message),
        "expected `{message}` in output:\n{out}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn listen_address_in_use_fails_fast_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert_fails_fast(
        &config(port, 0),
        &format!("cannot listen on 127.0.0.1:{port}"),
    );
}

#[test]
fn admin_address_in_use_fails_fast_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert_fails_fast(
        &config(0, port),
        &format!("admin listener 127.0.0.1:{port}"),
    );
}

/// With port 0 the system picks the ports, and `--ready-file` says which: the listeners in
/// config order and the admin listener, written once every listener accepts (a stale file
/// from an earlier run is removed first). Every reported address serves.
#[test]
fn ready_file_reports_the_ports_chosen_for_port_zero() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set(
                "listen",
                r#"["127.0.0.1:0", { addr = "127.0.0.1:0", h2c = true }]"#,
            )
            .set_str("admin", "127.0.0.1:0");
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, cfg).unwrap();
    let ready = dir.path().join("ready.json");
    std::fs::write(&ready, "stale").unwrap();
    let parsed = {
        let ready = ready.clone();
        move || {
            std::fs::read_to_string(&ready)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        }
    };
    let probe = parsed.clone();
    let _ficus = ProcessBuilder::new("ficus", bin())
        .args(["run", "--config"])
        .arg(&path)
        .arg("--ready-file")
        .arg(&ready)
        .ready(move |_| probe().is_some())
        .start();
    let doc = parsed().expect("the ready file");
    let addr = |v: &serde_json::Value| -> std::net::SocketAddr {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{doc}"))
    };
    let listeners: Vec<_> = doc["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(addr)
        .collect();
    let admin = addr(&doc["admin"]);
    assert_eq!(listeners.len(), 2, "{doc}");
    assert_ne!(listeners[0], listeners[1], "{doc}");
    for a in listeners.iter().chain([&admin]) {
        assert_eq!(a.ip().to_string(), "127.0.0.1", "{doc}");
        assert_ne!(a.port(), 0, "{doc}");
    }
    let r = get_raw(admin, "/readyz", "admin", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    for l in &listeners {
        assert_eq!(
            get_raw(*l, "/x", "t", &[]).origin().as_deref(),
            Some("o"),
            "{l}"
        );
    }
}

/// `--ready-file` belongs to `run` and `demo`; other commands refuse it.
#[test]
fn ready_file_is_refused_by_other_commands() {
    let (code, out, err) = ficus(&["--ready-file", "/tmp/never-written.json", "check"]);
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(err.contains("--ready-file"), "{err}");
}
