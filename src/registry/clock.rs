//! A process-wide monotonic millisecond clock, so live state fits in atomics.
//!
//! It reads `CLOCK_MONOTONIC_COARSE`: a few nanoseconds through the vDSO instead of a full
//! clock read, at the price of a resolution of one scheduler tick (1–4 ms). Everything that
//! uses it (breaker windows, retry budgets, ejections, probe schedules, registration TTLs)
//! works in milliseconds to seconds, and it is read on every proxied request.

/// Milliseconds on the coarse monotonic clock, plus one (never 0, so 0 can mean "unset" in
/// atomics).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every
    // Linux kernel pingora supports, and the call only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return fallback_ms();
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000 + 1
}

/// The precise clock, only if the coarse one is unavailable.
#[cold]
fn fallback_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clock_is_monotonic_and_follows_real_time() {
        let a = now_ms();
        assert!(a > 0);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = now_ms();
        assert!(b >= a + 40, "{a} -> {b}");
        assert!(b <= a + 1000, "{a} -> {b}");
    }
}
