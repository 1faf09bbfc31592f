//! Hot reload: watches routes.toml (and listens for SIGHUP) and swaps in a new snapshot.
//!
//! Runs as a pingora background service, so there is exactly one watcher per process no
//! matter how often the config changes. Parsing and compiling happen here, off the request
//! path. Editors often replace a file by renaming a new one over it, so the watcher follows
//! the file's directory and filters by name; bursts of events are coalesced.

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::runtime::{ReloadOutcome, Shared};

/// Quiet time after the last file event before reloading: editors write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub struct ConfigWatcher {
    shared: Arc<Shared>,
}

impl ConfigWatcher {
    pub fn new(shared: Arc<Shared>) -> Self {
        ConfigWatcher { shared }
    }

    fn reload(&self, why: &str) {
        match self.shared.reload() {
            Ok(ReloadOutcome::Applied {
                generation,
                warnings,
            }) => {
                tracing::info!(generation, warnings, trigger = why, "config reloaded")
            }
            Err(e) => tracing::error!(
                trigger = why,
                "config reload failed, keeping the running config:\n{e}"
            ),
        }
    }
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
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let ours = ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|f| f.to_os_string()) == file_name);
                if ours && !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        });
        let _watcher = match watcher {
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
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => {
                    // Coalesce the burst of events one save produces.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.reload("file change");
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload("SIGHUP");
                }
            }
        }
    }
}
