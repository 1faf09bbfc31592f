//! Start-up failures are immediate and say what is wrong.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ficus run` on a config and returns (exit code, output, elapsed), killing it after
/// `limit` if it is still running.
fn run_until_exit(config: &str, limit: Duration) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, config).unwrap();
    let out_path = dir.path().join("out.log");
    let out = std::fs::File::create(&out_path).unwrap();
    let start = Instant::now();
    let mut child = Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    (code, text, start.elapsed())
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
        &config(port, free_port()),
        &format!("cannot listen on 127.0.0.1:{port}"),
    );
}

#[test]
fn admin_address_in_use_fails_fast_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert_fails_fast(
        &config(free_port(), port),
        &format!("admin listener 127.0.0.1:{port}"),
    );
}
