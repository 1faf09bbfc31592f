//! The access log: one line per request, as logfmt text or JSON, on stdout.
//!
//! The proxy's logging phase formats each line itself ([`line`]: typed fields written
//! straight into a per-thread buffer, no `tracing` dispatch, no per-field formatting
//! machinery) and appends it to one shared pending buffer. A writer thread swaps that
//! buffer out and writes it to stdout in one call, every few milliseconds under load, so
//! a proxy worker never waits for stdout and no line costs an allocation or a channel
//! message. If stdout falls behind (a slow pipe), lines beyond [`MAX_PENDING`] bytes are
//! dropped and counted rather than stalling a worker; `ficus_access_log_dropped_total`
//! reports them. When some `tracing` layer other than ficus's own subscribes to target
//! `ficus::access` (an embedding program), the line is also offered to it as an event.

pub mod line;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use line::{Fields, Format};

/// Bytes of lines waiting for the writer before new lines are dropped (about 20,000
/// lines: a second of a busy gateway's log while stdout is stuck).
pub const MAX_PENDING: usize = 8 << 20;
/// How long the writer waits between batches (the longest a line waits before `write`
/// under load).
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// The writer's buffer is given back to the allocator when a burst left it this big.
const KEEP_CAPACITY: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writer is asleep waiting for lines: the next line must wake it.
    writer_idle: bool,
    flush_asked: u64,
    flush_done: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer (lines or a flush request after it went idle).
    wake: Condvar,
    /// Wakes whoever waits in [`flush`].
    flushed: Condvar,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn lock(s: &Shared) -> MutexGuard<'_, Pending> {
    // A panic while holding the lock leaves only bytes behind: keep using them.
    s.pending.lock().unwrap_or_else(|p| p.into_inner())
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(writer);
        if let Err(e) = spawned {
            eprintln!("cannot start the access log writer: {e}");
        }
        Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(64 * 1024),
                ..Pending::default()
            }),
            wake: Condvar::new(),
            flushed: Condvar::new(),
        }
    })
}

fn writer() {
    let s = shared();
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let flush_target;
        {
            let mut p = lock(s);
            while p.bytes.is_empty() && p.flush_asked == p.flush_done {
                p.writer_idle = true;
                p = s.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            p.writer_idle = false;
            std::mem::swap(&mut p.bytes, &mut batch);
            flush_target = p.flush_asked;
        }
        if !batch.is_empty() {
            // `Stdout`'s lock only for the write: diagnostic lines interleave between
            // batches. A failed write loses the batch (stdout closed: nothing to do).
            let _ = std::io::stdout().lock().write_all(&batch);
            let big = batch.capacity() > KEEP_CAPACITY;
            batch.clear();
            if big {
                batch = Vec::with_capacity(64 * 1024);
            }
        }
        {
            let mut p = lock(s);
            if p.flush_done < flush_target {
                p.flush_done = flush_target;
                s.flushed.notify_all();
            }
        }
        // Let lines collect before the next write: under load the cost is one write per
        // batch and the workers almost never have to wake this thread.
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// Queues finished lines (each ending with `\n`).
pub fn emit(lines: &[u8]) {
    let s = shared();
    let wake = {
        let mut p = lock(s);
        if p.bytes.len() + lines.len() > MAX_PENDING {
            drop(p);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.bytes.extend_from_slice(lines);
        std::mem::take(&mut p.writer_idle)
    };
    if wake {
        s.wake.notify_one();
    }
}

/// Formats one request's line and queues it; offers it to other `tracing` subscribers
/// of target [`TARGET`] when there are any.
pub fn log(format: Format, fields: &Fields<'_>) {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    SCRATCH.with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            return;
        };
        b.clear();
        line::write(&mut b, format, fields);
        emit(&b);
        if b.capacity() > 64 * 1024 {
            *b = Vec::with_capacity(1024);
        }
    });
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        fields.event();
    }
}

/// Lines dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes out everything queued so far (waits at most 500 ms).
pub fn flush() {
    let Some(s) = SHARED.get() else { return };
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut p = lock(s);
    p.flush_asked += 1;
    let target = p.flush_asked;
    if std::mem::take(&mut p.writer_idle) {
        s.wake.notify_one();
    }
    while p.flush_done < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        p = match s.flushed.wait_timeout(p, left) {
            Ok((p, _)) => p,
            Err(e) => e.into_inner().0,
        };
    }
}

/// The target of access-log events offered to other `tracing` subscribers.
pub const TARGET: &str = "ficus::access";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_pending_bound_are_dropped_and_counted() {
        // The writer drains the buffer concurrently; fill faster than it can by
        // queueing more than the bound in one go.
        let before = dropped();
        emit(&vec![b'x'; MAX_PENDING + 1]);
        assert_eq!(dropped(), before + 1);
    }

    #[test]
    fn flush_returns_once_queued_lines_are_written() {
        emit(b"");
        let t = Instant::now();
        flush();
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }
}
