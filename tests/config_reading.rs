//! Reading and parsing routes.toml with bounded memory (QA issue 13, F5 and F3): a file
//! too big for `max_config_bytes` is refused after reading at most that much, what is not
//! a regular file is refused unread, and a file holding more keys, values and tables than
//! its `max_config_bytes` allows is refused before the TOML parser runs, by `ficus check`,
//! at start and on a live reload. Peak memory is read from the kernel (`wait4`'s maximum
//! resident size for the CLI, `VmHWM` for a running gateway).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `ficus` command that ran to its end.
struct Measured {
    code: i32,
    /// stdout and stderr together.
    out: String,
    /// The process's peak resident memory, in KiB.
    max_rss_kib: i64,
    took: Duration,
}

/// Runs `ficus ARGS`, fails the test if it runs longer than `within`, and returns its exit
/// code, output and peak memory.
fn run_measured(args: &[&str], within: Duration) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let t = Instant::now();
    // Reaped below with `wait4`, which reports the peak memory `Child::wait` does not.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: plain FFI calls on a zeroed `rusage` and a child of this process.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -libc::WTERMSIG(status)
            };
            return Measured {
                code,
                out: std::fs::read_to_string(&out_path).unwrap_or_default(),
                max_rss_kib: usage.ru_maxrss,
                took: t.elapsed(),
            };
        }
        assert_ne!(done, -1, "wait4 failed");
        if t.elapsed() > within {
            // SAFETY: our own child, still not reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!(
                "`ficus {}` still running after {within:?}\n{}",
                args.join(" "),
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process's `VmHWM` (peak resident memory) in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// A small valid config for `check` and `run`.
const SMALL: &str = "[gateway]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n[services.app]\ninstances = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"a\"\nmatch = { path = \"/**\" }\nservice = \"app\"\n";

/// The most memory a refused file may cost the CLI: the process itself (about 25 MiB in
/// a dev build) and what the refusal reads; far below the gigabytes reading or parsing
/// the whole file took.
const REFUSAL_RSS_KIB: i64 = 200 * 1024;

/// 16 MiB less a little: the shapes that cost the TOML parser the most per byte
/// (gen_parse_shapes.py and mk_bomb.py in the QA report).
fn bomb_shapes(head: &str) -> Vec<(&'static str, String)> {
    let room = 16 * 1024 * 1024 - 200 - head.len();
    vec![
        (
            "inline tables",
            format!("{head}[x]\na = [{}]\n", "{a=0},".repeat(room / 6)),
        ),
        (
            "numbers",
            format!("{head}[x]\na = [{}]\n", "0,".repeat(room / 2)),
        ),
        (
            "empty arrays",
            format!("{head}[x]\na = [{}]\n", "[],".repeat(room / 3)),
        ),
        (
            "table headers",
            (0..room / 12).fold(head.to_string(), |mut s, i| {
                s.push_str(&format!("[t{i:07}]\n"));
                s
            }),
        ),
        (
            // Every part of a dotted key opens a table of its own (the re-check pass: 10 MB
            // of these took 3.75 GB while each dot counted as little as a comma).
            "dotted keys",
            (0..room / 28).fold(format!("{head}[x]\n"), |mut s, i| {
                s.push_str(&format!("a{i:07}.b.c.d.e.f.g.h = 1\n"));
                s
            }),
        ),
    ]
}

#[test]
fn check_and_run_refuse_a_sparse_file_of_gibibytes_after_reading_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, SMALL).unwrap();
    // As `truncate -s 3G`: a sparse file, nothing on disk, 3 GiB to whoever reads it.
    let size: u64 = 3 * 1024 * 1024 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size)
        .unwrap();
    let p = path.to_str().unwrap();
    for args in [vec!["check", p], vec!["run", "--config", p]] {
        let m = run_measured(&args, Duration::from_secs(20));
        assert_eq!(m.code, 2, "{args:?}: {}", m.out);
        assert!(
            m.out.contains(&format!(
                "is {size} bytes, more than `max_config_bytes` (16777216)"
            )),
            "{args:?}: {}",
            m.out
        );
        assert!(
            m.max_rss_kib < REFUSAL_RSS_KIB,
            "{args:?}: peak {} KiB",
            m.max_rss_kib
        );
        assert!(m.took < Duration::from_secs(5), "{args:?}: {:?}", m.took);
        eprintln!(
            "{args:?}: refused in {:?}, peak {} KiB",
            m.took, m.max_rss_kib
        );
    }
}

#[test]
fn check_and_run_refuse_a_fifo_a_device_and_a_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("routes.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain FFI call with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let cases = [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a device"),
        (dir.path().to_str().unwrap(), "a directory"),
    ];
    for (p, what) in cases {
        for args in [vec!["check", p], vec!["run", "--config", p]] {
            // Before, a FIFO blocked both for good and /dev/zero was read until memory ran
            // out.
            let m = run_measured(&args, Duration::from_secs(10));
            assert_eq!(m.code, 2, "{args:?}: {}", m.out);
            assert!(
                m.out
                    .contains(&format!("{p} is {what}, not a regular file")),
                "{args:?}: {}",
                m.out
            );
            assert!(m.took < Duration::from_secs(3), "{args:?}: {:?}", m.took);
            assert!(
                m.max_rss_kib < REFUSAL_RSS_KIB,
                "{args:?}: {}",
                m.max_rss_kib
            );
        }
    }
}

#[test]
fn check_refuses_the_parse_bombs_before_parsing_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    for (shape, text) in bomb_shapes(SMALL) {
        assert!(text.len() < 16 * 1024 * 1024, "{shape}");
        std::fs::write(&path, &text).unwrap();
        let m = run_measured(&["check", path.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(m.code, 2, "{shape}: {}", m.out);
        assert!(
            m.out.contains("units of keys, values, tables and array elements, more than `max_config_bytes` (16777216) allows (3355443: one per 5 bytes)"),
            "{shape}: {}",
            m.out
        );
        // Before: 1.0 to 4.5 GB at the peak, depending on the shape.
        assert!(
            m.max_rss_kib < REFUSAL_RSS_KIB,
            "{shape}: peak {} KiB",
            m.max_rss_kib
        );
        eprintln!(
            "{shape}: refused in {:?}, peak {} KiB",
            m.took, m.max_rss_kib
        );
    }
}

#[test]
fn a_parse_bomb_is_refused_on_a_live_reload_and_the_gateway_keeps_serving() {
    let o = Origin::start("app");
    let base = ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("app", &[o.addr()])
        .route("a", "/a/**", "app");
    let gw = Gateway::start(&base.clone().build());
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("app"));
    let reason = "too_many_values";
    let failures = || {
        metric_sum(
            &gw.metrics(),
            "ficus_config_reload_failures_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let head = base.build();
    let hwm_before = vm_hwm_kib(gw.pid());
    for (i, (shape, text)) in bomb_shapes(&head).into_iter().take(2).enumerate() {
        gw.rewrite_config(&text);
        poll_until(Duration::from_secs(20), || {
            (failures() >= (i + 1) as f64).then_some(())
        })
        .unwrap_or_else(|| panic!("{shape}: no {reason} reload failure\n{}", gw.logs()));
        assert_eq!(gw.get("/a/x").origin().as_deref(), Some("app"), "{shape}");
        assert_eq!(gw.admin_get("/readyz").unwrap().status, 200);
    }
    assert!(
        gw.logs()
            .contains("units of keys, values, tables and array elements"),
        "{}",
        gw.logs()
    );
    // Reading the 16 MiB text is what a refusal costs; parsing it took up to 4.5 GB.
    let grew = vm_hwm_kib(gw.pid()).saturating_sub(hwm_before);
    eprintln!("peak grew by {grew} KiB over two refused reloads");
    assert!(grew < 150 * 1024, "peak grew by {grew} KiB");
    // A good file after them is applied.
    gw.reload(&base.route("b", "/b/**", "app").build());
    assert_eq!(gw.get("/b/x").origin().as_deref(), Some("app"));
}

#[test]
fn a_fifo_renamed_over_the_config_is_refused_on_reload_and_later_edits_still_apply() {
    let o = Origin::start("app");
    let base = ConfigBuilder::new()
        .service("app", &[o.addr()])
        .route("a", "/a/**", "app");
    let gw = Gateway::start(&base.clone().build());
    let fifo = gw.dir().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain FFI call with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::rename(&fifo, gw.config_path()).unwrap();
    // Before, opening it blocked the config watcher for good: no later edit applied.
    poll_until(Duration::from_secs(10), || {
        let n = metric_sum(
            &gw.metrics(),
            "ficus_config_reload_failures_total",
            &[("reason", "not_a_file")],
        );
        (n.unwrap_or(0.0) >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("no not_a_file reload failure\n{}", gw.logs()));
    assert!(
        gw.logs().contains("is a FIFO, not a regular file"),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("app"));
    gw.reload(&base.route("b", "/b/**", "app").build());
    assert_eq!(gw.get("/b/x").origin().as_deref(), Some("app"));
}
