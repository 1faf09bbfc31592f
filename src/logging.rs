//! Log setup: diagnostics and the access log go through `tracing` to stdout, written by a
//! background thread so a slow terminal or pipe never stalls a proxy worker. If that writer
//! falls far behind, lines are dropped rather than blocking requests.

use std::sync::{Mutex, OnceLock};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

static GUARD: OnceLock<Mutex<Option<WorkerGuard>>> = OnceLock::new();

/// Default filter: our own info logs, pingora's warnings only. `RUST_LOG` overrides.
const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora=warn";

/// Installs the global subscriber: diagnostics through tracing-subscriber's formatter,
/// access-log events (target `ficus::access`) through [`crate::access_log::AccessLayer`].
/// `json` selects JSON lines for both. Safe to call once.
pub fn init(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let _ = GUARD.set(Mutex::new(Some(guard)));
    crate::access_log::set_json(json);
    let from_env = EnvFilter::try_from_default_env().ok();
    // Records from crates that use `log` (pingora, notify) reach tracing through LogTracer.
    // Without a level cap every `debug!` on pingora's request path would be formatted and
    // dispatched before being filtered out (≈10k instructions per request, measured).
    let log_level = match from_env.as_ref().and_then(|f| f.max_level_hint()) {
        Some(l) if l >= tracing::level_filters::LevelFilter::TRACE => log::LevelFilter::Trace,
        Some(l) if l >= tracing::level_filters::LevelFilter::DEBUG => log::LevelFilter::Debug,
        Some(l) if l >= tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let not_access =
        tracing_subscriber::filter::filter_fn(|m| m.target() != crate::access_log::TARGET);
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let diagnostics = if json {
        diagnostics
            .json()
            .flatten_event(true)
            .with_filter(not_access)
            .boxed()
    } else {
        diagnostics.with_filter(not_access).boxed()
    };
    let access =
        crate::access_log::AccessLayer.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() == crate::access_log::TARGET
        }));
    let _ = tracing_subscriber::registry()
        .with(diagnostics.with_filter(filter))
        .with(access)
        .try_init();
    log::set_max_level(log_level);
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
