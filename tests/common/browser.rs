//! Headless Chromium for page tests: the DOM after the page's scripts ran, and screenshots.
//!
//! Uses Debian's `chromium` (tests/run.sh installs it), run by the process fixture. Every run
//! gets a fresh, empty profile directory and the flags that keep Chromium from calling home
//! (this machine refuses it), and `--virtual-time-budget` so that the page's timers and
//! fetches run before the result is taken. A run that takes longer than [`TIMEOUT`] is
//! killed (its whole process group: Chromium forks helpers) and the test panics with
//! Chromium's output.

use std::path::Path;
use std::time::Duration;

use crate::common::process::ProcessBuilder;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Virtual milliseconds the page may run (timers, fetches) before the DOM or screenshot is taken.
pub const VIRTUAL_TIME_BUDGET_MS: u32 = 5000;
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);

/// The text of the element with `id` (no nested elements) in serialized HTML.
pub fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let open = dom.find(&format!(" id=\"{id}\""))?;
    let start = open + dom[open..].find('>')? + 1;
    let len = dom[start..].find('<')?;
    Some(dom[start..start + len].trim())
}

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

/// Runs headless Chromium on `url` with the standard flags plus `extra`, until it exits.
pub fn run_chromium(url: &str, extra: &[String]) -> ChromiumOutput {
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let mut chromium = ProcessBuilder::new("chromium", CHROMIUM)
        .args([
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
        // Own process group, so that stopping it ends the helpers too; nothing to save.
        .process_group()
        .stop_signal(libc::SIGKILL)
        .start();
    let Some(status) = chromium.wait_exit(TIMEOUT) else {
        panic!("chromium did not finish within {TIMEOUT:?} on {url}; killed");
    };
    // Helpers left behind by the main process would outlive the test: end the group.
    chromium.stop();
    assert!(status.success(), "chromium failed on {url} ({status})");
    ChromiumOutput {
        stdout: chromium.stdout_bytes(),
        stderr: chromium.stderr(),
    }
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
