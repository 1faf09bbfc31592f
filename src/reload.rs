//! Hot reload: watches routes.toml (and listens for SIGHUP) and swaps in a new snapshot.
//!
//! Runs as a pingora background service, so there is exactly one watcher per process no
//! matter how often the config changes. Parsing and compiling happen here, off the request
//! path. Editors often replace a file by renaming a new one over it, so the watcher follows
//! the file's directory; bursts of events are coalesced. A config reached through symlinks
//! (a Kubernetes ConfigMap volume) is reloaded when where they lead changes, and the
//! target's directory is watched too.

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::runtime::{ReloadOutcome, Shared};

/// Quiet time after the last file event before reloading: editors write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// The longest a burst of events can put a reload off.
const MAX_COALESCE: Duration = Duration::from_secs(1);

pub struct ConfigWatcher {
    shared: Arc<Shared>,
    /// The file as it was when the running config was read: an edit saved while the
    /// gateway was still starting (before the watch and the SIGHUP handler were in place)
    /// is picked up as soon as they are.
    at_start: Option<Fingerprint>,
}

type Fingerprint = (PathBuf, u64, u64, Option<std::time::SystemTime>);

impl ConfigWatcher {
    pub fn new(shared: Arc<Shared>) -> Self {
        let at_start = fingerprint(&shared.config_path);
        ConfigWatcher { shared, at_start }
    }

    fn reload(&self, why: &str) {
        let outcome = self.shared.reload();
        // The old config was most likely dropped just now, on this thread, which will not
        // allocate again until the next reload: what it held is returned now, not then.
        crate::config::return_freed_memory();
        match outcome {
            Ok(ReloadOutcome::Applied {
                generation,
                warnings,
            }) => {
                tracing::info!(generation, warnings, trigger = why, "config reloaded")
            }
            Err(e) => {
                self.shared.metrics.reload_failures.count(e.reason());
                tracing::error!(
                    trigger = why,
                    reason = e.reason(),
                    "config reload failed, keeping the running config:\n{e}"
                )
            }
        }
    }
}

/// What identifies the file's current content: where the path leads (through symlinks) and
/// that file's inode, size and modification time. Kubernetes mounts a ConfigMap as
/// `routes.toml -> ..data/routes.toml` and updates it by swapping the `..data` symlink,
/// which produces no event naming `routes.toml` at all.
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::canonicalize(path).ok()?;
    let m = std::fs::metadata(&target).ok()?;
    Some((target, m.ino(), m.len(), m.modified().ok()))
}

/// The directory a path's final target is in, when symlinks lead out of `dir`.
fn target_dir(path: &Path, dir: &Path) -> Option<PathBuf> {
    let target = std::fs::canonicalize(path).ok()?;
    let parent = target.parent()?.to_path_buf();
    (std::fs::canonicalize(dir).ok()? != parent).then_some(parent)
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let path: PathBuf = self.shared.config_path.clone();
        let file_name = path.file_name().map(|f| f.to_os_string());
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // `true`: the event names the config file itself; `false`: something else changed in
        // a watched directory (a symlink swap, or the target file under another name).
        // Other events only matter when the path is a symlink (other files in the directory,
        // a log file for one, may change all the time).
        let linked = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        let (tx, mut rx) = mpsc::unbounded_channel::<bool>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    return;
                }
                let ours = ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|f| f.to_os_string()) == file_name);
                if ours || linked {
                    let _ = tx.send(ours);
                }
            }
        });
        let mut watcher = match watcher {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
                    None
                }
            },
            Err(e) => {
                tracing::warn!("file watching unavailable: {e}; reload with SIGHUP");
                None
            }
        };
        // When the path is a symlink into another directory, that one is watched too (for
        // edits of the target file in place), and followed when the link moves.
        let mut watched_target = None;
        let mut follow_target = |watcher: &mut Option<notify::RecommendedWatcher>| {
            let Some(w) = watcher.as_mut() else { return };
            let now = target_dir(&path, &dir);
            if now == watched_target {
                return;
            }
            if let Some(old) = watched_target.take() {
                let _ = w.unwatch(&old);
            }
            if let Some(new) = now {
                if w.watch(&new, RecursiveMode::NonRecursive).is_ok() {
                    watched_target = Some(new);
                }
            }
        };
        follow_target(&mut watcher);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = fingerprint(&path);
        if last != self.at_start {
            self.reload("file change during start");
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(ours) = rx.recv() => {
                    // Coalesce the burst of events one save produces.
                    // Bounded, so a directory that never goes quiet still gets its reload.
                    let mut ours = ours;
                    let until = tokio::time::Instant::now() + MAX_COALESCE;
                    while let Ok(Some(o)) = tokio::time::timeout_at(
                        until.min(tokio::time::Instant::now() + DEBOUNCE),
                        rx.recv(),
                    )
                    .await
                    {
                        ours |= o;
                    }
                    // The link's new target directory is watched before the file is read:
                    // an edit made there once the reload is visible (a client can act on
                    // it at once) must find the watch in place.
                    follow_target(&mut watcher);
                    let now = fingerprint(&path);
                    if ours || now != last {
                        last = now;
                        self.reload("file change");
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    follow_target(&mut watcher);
                    last = fingerprint(&path);
                    self.reload("SIGHUP");
                }
            }
        }
    }
}
