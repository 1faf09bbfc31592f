//! Log setup: diagnostics and the access log go through `tracing` to stdout, written by a
//! background thread so a slow terminal or pipe never stalls a proxy worker. If that writer
//! falls far behind, lines are dropped rather than blocking requests.

use std::sync::{Mutex, OnceLock};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

static GUARD: OnceLock<Mutex<Option<WorkerGuard>>> = OnceLock::new();

/// Default filter: our own info logs, pingora's warnings only. `RUST_LOG` overrides.
const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora=warn";

/// Installs the global subscriber. `json` selects JSON lines. Safe to call once.
pub fn init(json: bool) {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let _ = GUARD.set(Mutex::new(Some(guard)));
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Flushes buffered log lines (before a deliberate `process::exit`).
pub fn flush() {
    crate::access_log::flush();
    if let Some(m) = GUARD.get() {
        if let Ok(mut g) = m.lock() {
            g.take();
        }
    }
}
