//! The migration board: how far the move off the legacy services has come, per route and
//! in total (`GET /migration`, `GET /migration.json` on the admin listener, `ficus status`).
//!
//! - `window.rs`: deltas between counter readings, shares, p99 from histogram buckets;
//! - `history.rs`: the bounded ring of readings the windows are computed from;
//! - `model.rs`: the board as data, built from the running config, the history and the
//!   shadow records;
//! - `sampler.rs`: the background service that reads the counters every sample period.
//!
//! The request path is not touched: requests keep counting in their `RouteMetrics` atomics,
//! and only the sampler (and a board request, for the figures "now") reads them.

pub mod history;
pub mod model;
pub mod sampler;
pub mod window;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::runtime::Runtime;
use crate::shadow::store::ShadowStates;
use history::{History, Stamp};
pub use model::MigrationBoard;

/// Environment variable that shortens the sample period, for tests and demos that cannot
/// wait 10 s for a sparkline point (a duration such as `200ms`; at least 100 ms).
pub const SAMPLE_PERIOD_ENV: &str = "FICUS_BOARD_SAMPLE_PERIOD";

/// The board's state, shared by the sampler (which writes) and the admin listener.
#[derive(Debug)]
pub struct Board {
    history: Mutex<History>,
}

impl Board {
    pub fn new(period: Duration) -> Board {
        Board {
            history: Mutex::new(History::new(period)),
        }
    }

    /// A board sampled every [`history::DEFAULT_PERIOD`], or every `$FICUS_BOARD_SAMPLE_PERIOD`
    /// when that is set to a valid duration (an invalid one is logged and ignored).
    pub fn from_env() -> Board {
        let period = match std::env::var(SAMPLE_PERIOD_ENV) {
            Ok(v) => crate::duration::try_parse_duration(&v).unwrap_or_else(|e| {
                tracing::warn!("{SAMPLE_PERIOD_ENV}={v:?} ignored: {e}");
                history::DEFAULT_PERIOD
            }),
            Err(_) => history::DEFAULT_PERIOD,
        };
        Board::new(period)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // The history is plain data: a panic while it was locked leaves it usable.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sample period.
    pub fn period(&self) -> Duration {
        self.history().period()
    }

    /// Reads the counters of `rt`'s routes into the history.
    pub fn sample(&self, rt: &Runtime) {
        let readings = model::read(rt);
        self.history().record(Stamp::now(), readings);
    }

    /// The board as of now (the counters are read at this moment, so the windows end now
    /// rather than at the last sample).
    pub fn view(&self, rt: &Runtime, shadows: &ShadowStates) -> MigrationBoard {
        let now = Stamp::now();
        let current = model::read(rt);
        model::build(rt, &self.history(), shadows, now, &current)
    }
}
