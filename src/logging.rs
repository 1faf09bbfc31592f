//! Log setup: diagnostics and the access log go through `tracing` to stdout, written by a
//! background thread so a slow terminal or pipe never stalls a proxy worker. If that writer
//! falls far behind, lines are dropped rather than blocking requests.
//!
//! WARN and ERROR lines that clients can cause at will (h2's "reset streams reached
//! limit" for every rapid-reset connection, pingora's HTTP/2 handshake errors) are let
//! through at most [`NOISY_LINES_PER_WINDOW`] per [`NOISY_WINDOW`]; the events themselves
//! are counted in metrics (`ficus_http2_connections_cut_total`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

static GUARD: OnceLock<Mutex<Option<WorkerGuard>>> = OnceLock::new();

/// Default filter: our own info logs, pingora's warnings only. `RUST_LOG` overrides.
const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora=warn";

/// Log targets whose WARN and ERROR lines an attacker can cause at will. The connection
/// pool's ERROR "failed to acquire reusable stream" is one: a benign race with the task
/// that watches an idle upstream connection (pingora then opens a new one), whose rate
/// any client sets with its concurrency.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "pingora_core::apps",
    "pingora_core::connectors",
    "pingora_core::protocols::http::v2",
    "pingora_core::services::listening",
];

/// How many lines of [`NOISY_TARGETS`] are written per window, together.
pub const NOISY_LINES_PER_WINDOW: u64 = 5;
/// The window of [`NOISY_LINES_PER_WINDOW`].
pub const NOISY_WINDOW: Duration = Duration::from_secs(60);

/// Whether an event is a WARN or ERROR line of a [`NOISY_TARGETS`] module.
fn is_noisy(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN
        && NOISY_TARGETS.iter().any(|t| {
            meta.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Takes one of the window's lines for a noisy event; `false` when they are used up.
fn noisy_line_allowed() -> bool {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
    let window = EPOCH.get_or_init(Instant::now).elapsed().as_secs() / NOISY_WINDOW.as_secs();
    let seen = WINDOW.load(Ordering::Relaxed);
    if seen != window
        && WINDOW
            .compare_exchange(seen, window, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        IN_WINDOW.store(0, Ordering::Relaxed);
    }
    IN_WINDOW.fetch_add(1, Ordering::Relaxed) < NOISY_LINES_PER_WINDOW
}

/// Installs the global subscriber: diagnostics through tracing-subscriber's formatter
/// (the access log does not go through `tracing`: [`crate::access_log`]). `json` selects
/// JSON diagnostic lines. Safe to call once.
pub fn init(json: bool) {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let _ = GUARD.set(Mutex::new(Some(guard)));
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
    // Decided per event for WARN and ERROR callsites (the noisy ones are rate-limited),
    // once per callsite for the rest.
    let not_access = tracing_subscriber::filter::DynFilterFn::new(|m, _| {
        m.target() != crate::access_log::TARGET && (!is_noisy(m) || noisy_line_allowed())
    })
    .with_callsite_filter(|m| {
        if *m.level() <= Level::WARN {
            Interest::sometimes()
        } else if m.target() == crate::access_log::TARGET {
            Interest::never()
        } else {
            Interest::always()
        }
    });
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let diagnostics = if json {
        diagnostics.json().flatten_event(true).boxed()
    } else {
        diagnostics.boxed()
    };
    // One combined filter: `tracing::enabled!` does not see a filter nested inside
    // another layer's filter, and the access log asks it whether anyone else wants its
    // events.
    let _ = tracing_subscriber::registry()
        .with(diagnostics.with_filter(not_access.and(filter)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(target: &'static str, level: Level) -> &'static Metadata<'static> {
        struct Site;
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!("not registered")
            }
        }
        static SITE: Site = Site;
        Box::leak(Box::new(Metadata::new(
            "event",
            target,
            level,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&SITE)),
            tracing::metadata::Kind::EVENT,
        )))
    }

    #[test]
    fn pool_races_and_attack_driven_lines_are_noisy() {
        assert!(is_noisy(meta("pingora_core::connectors", Level::ERROR)));
        assert!(is_noisy(meta("h2::proto::connection", Level::WARN)));
        assert!(!is_noisy(meta("pingora_core::connectors", Level::INFO)));
        assert!(!is_noisy(meta("ficus::reload", Level::ERROR)));
        assert!(!is_noisy(meta("pingora_core::connectorsx", Level::ERROR)));
    }

    #[test]
    fn noisy_lines_are_limited_per_window() {
        let allowed = (0..NOISY_LINES_PER_WINDOW * 3)
            .filter(|_| noisy_line_allowed())
            .count() as u64;
        // A window boundary during the loop could allow one more batch.
        assert!(
            (NOISY_LINES_PER_WINDOW..=NOISY_LINES_PER_WINDOW * 2).contains(&allowed),
            "{allowed}"
        );
    }

    #[test]
    fn access_events_cost_nothing_without_another_subscriber() {
        // ficus writes access lines itself; with only its own layers installed the
        // `tracing` copy of each line must not be built.
        init(false);
        assert!(!tracing::enabled!(
            target: crate::access_log::TARGET,
            tracing::Level::INFO
        ));
        assert!(tracing::enabled!(target: "ficus::reload", tracing::Level::INFO));
    }
}
