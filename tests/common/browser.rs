//! Headless Chromium for page tests: the DOM after the page's scripts ran, and screenshots.
//!
//! Uses Debian's `chromium` (tests/run.sh installs it). Every run gets a fresh, empty profile
//! directory and the flags that keep Chromium from calling home (this machine refuses it), and
//! `--virtual-time-budget` so that the page's timers and fetches run before the result is taken.
//! A run that takes longer than [`TIMEOUT`] is killed (its whole process group: Chromium forks
//! helpers) and the test panics with Chromium's stderr.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Virtual milliseconds the page may run (timers, fetches) before the DOM or screenshot is taken.
pub const VIRTUAL_TIME_BUDGET_MS: u32 = 5000;
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);

/// The serialized DOM of `url` after its scripts ran (`--dump-dom`).
pub fn dump_dom(url: &str) -> String {
    let out = run_chromium(url, &["--dump-dom".to_string()]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a PNG screenshot of `url` (window [`WINDOW_SIZE`]) to `path`.
pub fn screenshot(url: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    let (w, h) = WINDOW_SIZE;
    let out = run_chromium(
        url,
        &[
            format!("--screenshot={}", path.display()),
            format!("--window-size={w},{h}"),
        ],
    );
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 0,
        "chromium exited successfully but wrote no screenshot to {}\nstderr:\n{}",
        path.display(),
        out.stderr
    );
}

pub struct ChromiumOutput {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs headless Chromium on `url` with the standard flags plus `extra`.
pub fn run_chromium(url: &str, extra: &[String]) -> ChromiumOutput {
    if !Path::new(CHROMIUM).exists() {
        panic!("chromium not installed; run tests/run.sh");
    }
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Own process group, so that a timeout kills the helpers too.
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let pgid = child.id() as libc::pid_t;

    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });

    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for chromium (pid {pgid}): {e}"),
        }
    };
    // Helpers left behind by the main process would keep the pipes open: end the group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "chromium (pid {pgid}) did not finish within {TIMEOUT:?} on {url}; killed\nstderr:\n{}",
                tail(&stderr, 40)
            );
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        panic!(
            "chromium failed on {url} ({status})\nstderr:\n{}",
            tail(&stderr, 40)
        );
    }
    ChromiumOutput { stdout, stderr }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A decoded screenshot, 8-bit RGB.
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[u8; 3]>,
}

impl Image {
    /// Decodes a PNG file (any colour type; alpha is dropped).
    pub fn load_png(path: &Path) -> Image {
        let file =
            std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder
            .read_info()
            .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut buf)
            .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()));
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks_exact(channels)
            .map(|p| match channels {
                1 | 2 => [p[0], p[0], p[0]],
                _ => [p[0], p[1], p[2]],
            })
            .collect();
        Image {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    /// Number of pixels within `tolerance` of `colour` on every channel.
    pub fn count_near(&self, colour: [u8; 3], tolerance: u8) -> usize {
        self.rgb
            .iter()
            .filter(|p| (0..3).all(|c| p[c].abs_diff(colour[c]) <= tolerance))
            .count()
    }
}
