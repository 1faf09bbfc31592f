//! Retry budget: retries may add at most a fraction of the service's recent requests, so a
//! failing service is not hit by a retry storm.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::clock::now_ms;
use super::spec::RetryBudgetSpec;

/// The window is 10 buckets of 1 s.
const BUCKETS: usize = 10;
const BUCKET_MS: u64 = 1000;

#[derive(Default, Debug)]
struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

#[derive(Default, Debug)]
pub struct RetryBudget {
    buckets: [Bucket; BUCKETS],
}

impl RetryBudget {
    fn bucket(&self) -> (u64, &Bucket) {
        let epoch = now_ms() / BUCKET_MS;
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            b.requests.store(0, Ordering::Release);
            b.retries.store(0, Ordering::Release);
        }
        (epoch, b)
    }

    fn totals(&self, epoch: u64) -> (u32, u32) {
        let mut req = 0;
        let mut ret = 0;
        for b in &self.buckets {
            if epoch.saturating_sub(b.epoch.load(Ordering::Acquire)) < BUCKETS as u64 {
                req += b.requests.load(Ordering::Acquire);
                ret += b.retries.load(Ordering::Acquire);
            }
        }
        (req, ret)
    }

    /// Counts a new (first-attempt) request.
    pub fn request(&self) {
        self.bucket().1.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if there is room.
    pub fn try_retry(&self, spec: &RetryBudgetSpec) -> bool {
        let (epoch, b) = self.bucket();
        let (requests, retries) = self.totals(epoch);
        let allowed = (f64::from(requests) * spec.ratio) as u32 + spec.min_retries;
        if retries < allowed {
            b.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_retries_at_ratio_plus_minimum() {
        let spec = RetryBudgetSpec {
            ratio: 0.2,
            min_retries: 2,
        };
        let b = RetryBudget::default();
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.try_retry(&spec)).count();
        assert_eq!(granted, 22);
    }
}
