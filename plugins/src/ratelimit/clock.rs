//! The local store's clock: nanoseconds since the process's first reading, read once per
//! request, so every limit of a request is judged at the same instant.
//!
//! governor's limiter reads time through its `Clock` trait; [`DecisionClock`] answers with
//! the instant the store set for the decision in progress on this thread (the checks are
//! synchronous: nothing else runs on the thread between setting and reading it). A limiter
//! built while that instant is 0 counts from 0, so the TATs in the table are on this clock
//! and the store can turn them into durations itself.

use governor::clock::Clock;
use governor::nanos::Nanos;
use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

thread_local! {
    static DECISION_TIME: Cell<u64> = const { Cell::new(0) };
}

/// Nanoseconds since the first call in this process (monotonic).
pub fn monotonic_now() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The instant of the decision in progress on this thread.
pub fn decision_time() -> u64 {
    DECISION_TIME.with(Cell::get)
}

/// Runs `f` with the decision instant set to `now`.
pub fn at<T>(now: u64, f: impl FnOnce() -> T) -> T {
    let before = DECISION_TIME.with(|c| c.replace(now));
    let out = f();
    DECISION_TIME.with(|c| c.set(before));
    out
}

/// governor's clock: the decision instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionClock;

impl Clock for DecisionClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::new(decision_time())
    }
}
