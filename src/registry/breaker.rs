//! The per-service circuit breaker: closed → open → half-open → closed.
//!
//! Closed: every outcome is counted; the breaker opens after `consecutive_failures` in a
//! row, or when the failure rate over the window reaches `failure_rate` with at least
//! `min_requests` requests. Open: requests are refused (503 with Retry-After, or the route's
//! fallback) for `open_for`. Half-open: up to `half_open_requests` trial requests go
//! through; all succeeding closes the breaker, any failure opens it again.
//!
//! The closed-state check on the request path is one atomic load.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use super::clock::now_ms;
use super::spec::BreakerSpec;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// How long half-open may wait for its trials at least, before starting new ones.
const HALF_OPEN_STALL: Duration = Duration::from_secs(5);

/// Number of buckets the failure-rate window is split into.
const BUCKETS: usize = 10;

/// The breaker's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Allowed as one of the half-open trial requests; report its outcome with `trial = true`.
    Trial,
    /// Refused; the breaker is open for about this long.
    Rejected(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Default, Debug)]
struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU32,
    failures: AtomicU32,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    opened_at: AtomicU64,
    half_opened_at: AtomicU64,
    consecutive: AtomicU32,
    trials_started: AtomicU32,
    trials_ok: AtomicU32,
    buckets: [Bucket; BUCKETS],
}

impl Breaker {
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// Time left while open.
    pub fn open_for(&self, spec: &BreakerSpec) -> Option<Duration> {
        (self.state() == BreakerState::Open).then(|| {
            let elapsed = now_ms().saturating_sub(self.opened_at.load(Ordering::Acquire));
            spec.open_for.saturating_sub(Duration::from_millis(elapsed))
        })
    }

    pub fn admit(&self, spec: &BreakerSpec) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Allowed,
            OPEN => {
                let elapsed = now_ms().saturating_sub(self.opened_at.load(Ordering::Acquire));
                let open_ms = spec.open_for.as_millis() as u64;
                if elapsed < open_ms {
                    return Admission::Rejected(Duration::from_millis(open_ms - elapsed));
                }
                // One request moves the breaker to half-open; the others race for trials.
                if self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.trials_started.store(0, Ordering::Release);
                    self.trials_ok.store(0, Ordering::Release);
                    self.half_opened_at.store(now_ms(), Ordering::Release);
                    tracing::info!("circuit breaker half-open: sending trial requests");
                }
                self.admit_trial(spec)
            }
            _ => self.admit_trial(spec),
        }
    }

    fn admit_trial(&self, spec: &BreakerSpec) -> Admission {
        let n = self.trials_started.fetch_add(1, Ordering::AcqRel);
        if n < spec.half_open_requests.max(1) {
            return Admission::Trial;
        }
        self.trials_started.fetch_sub(1, Ordering::AcqRel);
        // Trials that never report back (a lost request) must not keep the breaker
        // half-open forever: after a while, start a fresh round of trials.
        let stuck_ms = spec.open_for.max(HALF_OPEN_STALL).as_millis() as u64;
        if now_ms().saturating_sub(self.half_opened_at.load(Ordering::Acquire)) > stuck_ms {
            self.trials_started.store(0, Ordering::Release);
            self.trials_ok.store(0, Ordering::Release);
            self.half_opened_at.store(now_ms(), Ordering::Release);
            return self.admit_trial(spec);
        }
        Admission::Rejected(Duration::from_secs(1))
    }

    /// Gives back a trial slot whose request never reached an instance (bulkhead full, no
    /// healthy instance): it says nothing about the upstream.
    pub fn release_trial(&self) {
        let _ = self
            .trials_started
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Reports the outcome of an admitted request.
    pub fn record(&self, spec: &BreakerSpec, ok: bool, trial: bool) {
        if trial {
            if self.state.load(Ordering::Acquire) != HALF_OPEN {
                return;
            }
            if ok {
                let done = self.trials_ok.fetch_add(1, Ordering::AcqRel) + 1;
                if done >= spec.half_open_requests.max(1) {
                    self.close();
                }
            } else {
                self.open();
            }
            return;
        }
        let (requests, failures) = self.count(spec, ok);
        if ok {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let rate_trip = requests >= spec.min_requests
            && requests > 0
            && f64::from(failures) / f64::from(requests) >= spec.failure_rate;
        if self.state.load(Ordering::Acquire) == CLOSED
            && (consecutive >= spec.consecutive_failures || rate_trip)
        {
            self.open();
        }
    }

    /// Adds an outcome to the window and returns (requests, failures) in the window; the
    /// totals are only summed for failures (a success cannot trip the breaker).
    fn count(&self, spec: &BreakerSpec, ok: bool) -> (u32, u32) {
        let width = (spec.window.as_millis() as u64 / BUCKETS as u64).max(1);
        let epoch = now_ms() / width;
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            b.requests.store(0, Ordering::Release);
            b.failures.store(0, Ordering::Release);
        }
        b.requests.fetch_add(1, Ordering::AcqRel);
        if ok {
            return (0, 0);
        }
        b.failures.fetch_add(1, Ordering::AcqRel);
        let mut requests = 0;
        let mut failures = 0;
        for b in &self.buckets {
            if epoch.saturating_sub(b.epoch.load(Ordering::Acquire)) < BUCKETS as u64 {
                requests += b.requests.load(Ordering::Acquire);
                failures += b.failures.load(Ordering::Acquire);
            }
        }
        (requests, failures)
    }

    /// Forgets all state: closed, no failures counted (the breaker was turned off or on).
    pub fn reset(&self) {
        self.trials_started.store(0, Ordering::Release);
        self.trials_ok.store(0, Ordering::Release);
        self.forget_failures();
        self.state.store(CLOSED, Ordering::Release);
    }

    /// Clears the consecutive-failure count and the failure-rate window.
    fn forget_failures(&self) {
        self.consecutive.store(0, Ordering::Release);
        for b in &self.buckets {
            b.requests.store(0, Ordering::Release);
            b.failures.store(0, Ordering::Release);
        }
    }

    fn open(&self) {
        self.opened_at.store(now_ms(), Ordering::Release);
        let prev = self.state.swap(OPEN, Ordering::AcqRel);
        if prev != OPEN {
            tracing::warn!("circuit breaker opened");
        }
    }

    fn close(&self) {
        self.forget_failures();
        self.state.store(CLOSED, Ordering::Release);
        tracing::info!("circuit breaker closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_requests: 100,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(50),
            half_open_requests: 2,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers() {
        let s = spec();
        let b = Breaker::default();
        for _ in 0..2 {
            assert_eq!(b.admit(&s), Admission::Allowed);
            b.record(&s, false, false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(&s, false, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(&s), Admission::Rejected(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(&s), Admission::Trial);
        assert_eq!(b.admit(&s), Admission::Trial);
        assert!(matches!(b.admit(&s), Admission::Rejected(_)));
        b.record(&s, true, true);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(&s, true, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failed_trial_reopens() {
        let s = spec();
        let b = Breaker::default();
        for _ in 0..3 {
            b.record(&s, false, false);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(&s), Admission::Trial);
        b.record(&s, false, true);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn reset_forgets_an_open_breaker() {
        let s = spec();
        let b = Breaker::default();
        for _ in 0..3 {
            b.record(&s, false, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.admit(&s), Admission::Allowed);
        // Counting starts from zero: two failures do not trip a 3-failure breaker.
        for _ in 0..2 {
            b.record(&s, false, false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_on_failure_rate() {
        let s = BreakerSpec {
            consecutive_failures: 1000,
            min_requests: 10,
            ..spec()
        };
        let b = Breaker::default();
        for i in 0..10 {
            b.record(&s, i % 2 == 0, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }
}
