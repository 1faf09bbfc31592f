//! Gives memory back to the system after a burst of requests holding upstream connections.
//!
//! The allocator (mimalloc, see `main.rs`) purges a freed page only when the thread that
//! owns it allocates or frees again, and returns whole freed segments to the system after
//! a delay that is also only checked on allocator calls. After a burst (an attack of
//! stalled streams, say), worker threads that go quiet keep what they had: measured on the
//! scaled-down attack in `tests/h2_stall.rs`, RSS stayed 25–55 MiB above the start for as
//! long as the gateway was idle. One forced collection once the burst is over gives most of
//! it back (a few MiB stay: the runtime's and pools' own high-water marks).
//!
//! Nothing here runs on the request path except one comparison when a slot is given back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::UpstreamLoad;

// The allocator's C library, linked into every binary that links this module.
use mimalloc as _;

extern "C" {
    /// mimalloc: frees what can be freed in the calling thread's heap and, with `force`,
    /// purges every pending page and the arenas' freed segments (all threads').
    fn mi_collect(force: bool);
}

/// A burst worth collecting after: this many requests held upstream connections at once.
/// Ordinary traffic rarely has so many slow responses in flight; an attack does.
const BURST: usize = 128;

/// How often the allocator is asked while the burst's tail drains, and for how many rounds
/// at most (a gateway whose traffic never falls to zero still stops asking).
const ROUND: Duration = Duration::from_secs(1);
const MAX_ROUNDS: u32 = 30;

/// Notes that `now` requests hold a slot (called when a slot is taken).
pub fn note_level(load: &UpstreamLoad, now: usize) {
    // Read first: in steady traffic the mark does not move, and a read keeps the shared
    // cache line shared between worker threads.
    if now > load.high_water.load(Ordering::Relaxed) {
        load.high_water.fetch_max(now, Ordering::Relaxed);
    }
}

/// Called when a slot is given back and `left` requests still hold one: once a burst has
/// fallen to an eighth of its peak, a thread asks the allocator to give freed memory back,
/// every second until no request holds a slot (the burst's last streams and connections
/// are dropped after their slots), then once more.
pub fn after_release(load: &Arc<UpstreamLoad>, left: usize) {
    let high = load.high_water.load(Ordering::Relaxed);
    if high < BURST || left > high / 8 {
        return;
    }
    // Only the one that resets the mark starts the thread.
    if load
        .high_water
        .compare_exchange(high, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    load.collections.fetch_add(1, Ordering::Relaxed);
    let load = load.clone();
    let spawned = std::thread::Builder::new()
        .name("ficus-mem-release".into())
        .spawn(move || {
            for _ in 0..MAX_ROUNDS {
                std::thread::sleep(ROUND);
                collect();
                if load.in_flight.load(Ordering::Relaxed) == 0 {
                    break;
                }
            }
            std::thread::sleep(ROUND);
            collect();
        });
    if let Err(e) = spawned {
        tracing::debug!("memory release thread not started: {e}");
    }
}

fn collect() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time;
    // without mimalloc as the global allocator it has nothing to do.
    unsafe { mi_collect(true) };
}
