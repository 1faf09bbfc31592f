//! The shadow records of every route, kept across reloads: a route's record goes on as
//! long as its shadow service and comparison are unchanged, and starts over when either
//! changes (its counts would otherwise mix two different experiments).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::compare::ShadowComparison;
use super::record::{RecordLimits, ShadowRecord, ShadowReport};
use crate::metrics::LabelValue;

/// One route's shadow: its record and its copies in flight.
#[derive(Debug)]
pub struct ShadowState {
    pub route: String,
    pub service: String,
    pub record: ShadowRecord,
    comparison: ShadowComparison,
    /// Copies in flight and body bytes held for the route: shared with the states that
    /// came before it for the same route (a reload that starts a new record), so copies
    /// still running from the old one count against the same bounds.
    in_flight: Arc<AtomicUsize>,
    queue: AtomicUsize,
    /// Body bytes held for this route's copies: requests being captured and copies in
    /// flight.
    held: Arc<AtomicUsize>,
    /// The most `held` may reach; a copy that would go past it is dropped.
    budget: AtomicUsize,
}

/// Body bytes held for one copy, given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    state: Arc<ShadowState>,
    bytes: usize,
}

impl Reservation {
    /// An empty reservation against `state`'s budget.
    pub fn new(state: Arc<ShadowState>) -> Reservation {
        Reservation { state, bytes: 0 }
    }

    /// Holds `n` more bytes, or says no when the route's budget would be exceeded.
    pub fn grow(&mut self, n: usize) -> bool {
        let budget = self.state.budget.load(Ordering::Relaxed);
        let ok = self
            .state
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(n).filter(|t| *t <= budget)
            })
            .is_ok();
        if ok {
            self.bytes += n;
        }
        ok
    }

    /// Gives back `n` of the bytes held.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.state.held.fetch_sub(n, Ordering::AcqRel);
        self.bytes -= n;
    }

    /// Gives back everything held.
    pub fn clear(&mut self) {
        self.state.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.bytes = 0;
    }

    pub fn state(&self) -> &Arc<ShadowState> {
        &self.state
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A copy's place in its route's queue, released when the exchange ends.
#[derive(Debug)]
pub struct Slot(Arc<ShadowState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slot {
    pub fn state(&self) -> &Arc<ShadowState> {
        &self.0
    }
}

impl ShadowState {
    /// A place for one more copy, or `None` when `queue` copies are already in flight
    /// (the copy is then dropped and counted).
    pub fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let max = self.queue.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Copies in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn queue(&self) -> usize {
        self.queue.load(Ordering::Relaxed)
    }

    /// Body bytes held for this route's copies now.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Every route's shadow state, by route name.
#[derive(Debug, Default)]
pub struct ShadowStates {
    routes: Mutex<HashMap<String, Arc<ShadowState>>>,
}

impl ShadowStates {
    /// The state of `route` shadowed to `service`: the running one when the service and
    /// comparison are unchanged (its bounds updated), else a new one. `budget` is the
    /// most body bytes its copies may hold at once.
    pub fn state(
        &self,
        route: &str,
        service: &str,
        comparison: &ShadowComparison,
        queue: usize,
        budget: usize,
    ) -> Arc<ShadowState> {
        let mut routes = self.lock();
        let previous = routes.get(route);
        if let Some(s) = previous {
            if s.service == service && s.comparison == *comparison {
                s.queue.store(queue, Ordering::Relaxed);
                s.budget.store(budget, Ordering::Relaxed);
                return s.clone();
            }
        }
        let (in_flight, held) = match previous {
            Some(p) => (p.in_flight.clone(), p.held.clone()),
            None => Default::default(),
        };
        let state = Arc::new(ShadowState {
            route: route.to_owned(),
            service: service.to_owned(),
            record: ShadowRecord::new(RecordLimits::default()),
            comparison: comparison.clone(),
            in_flight,
            queue: AtomicUsize::new(queue),
            held,
            budget: AtomicUsize::new(budget),
        });
        routes.insert(route.to_owned(), state.clone());
        state
    }

    /// Forgets the routes that no longer have a shadow.
    pub fn retain(&self, keep: &[&str]) {
        self.lock()
            .retain(|route, _| keep.contains(&route.as_str()));
    }

    /// The state of `route`, if it has a shadow.
    pub fn get(&self, route: &str) -> Option<Arc<ShadowState>> {
        self.lock().get(route).cloned()
    }

    /// Every shadowed route's state, by route name.
    pub fn all(&self) -> Vec<Arc<ShadowState>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.route.cmp(&b.route));
        v
    }

    /// `ficus_shadow_*` in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let all = self.all();
        if all.is_empty() {
            return;
        }
        let reports: Vec<(Arc<ShadowState>, ShadowReport)> = all
            .into_iter()
            .map(|s| {
                let r = s.record.report();
                (s, r)
            })
            .collect();
        out.push_str("# HELP ficus_shadow_requests_total Shadow copies by what became of them: matched, mismatched (after learned noise), error, timeout, too_large (an answer over max_body_bytes), dropped (queue full or request body over the limit).\n# TYPE ficus_shadow_requests_total counter\n");
        for (s, r) in &reports {
            for (result, n) in [
                ("matched", r.matched),
                ("mismatched", r.mismatched),
                ("error", r.shadow_errors),
                ("timeout", r.shadow_timeouts),
                ("too_large", r.too_large_answers),
                ("dropped", r.dropped),
            ] {
                let _ = writeln!(
                    out,
                    "ficus_shadow_requests_total{{route=\"{}\",service=\"{}\",result=\"{result}\"}} {n}",
                    LabelValue(&s.route),
                    LabelValue(&s.service)
                );
            }
        }
        out.push_str("# HELP ficus_shadow_excused_by_noise_total Shadow copies that matched only because the differing fields were learned as noise.\n# TYPE ficus_shadow_excused_by_noise_total counter\n");
        for (s, r) in &reports {
            let _ = writeln!(
                out,
                "ficus_shadow_excused_by_noise_total{{route=\"{}\",service=\"{}\"}} {}",
                LabelValue(&s.route),
                LabelValue(&s.service),
                r.excused_by_noise
            );
        }
        out.push_str("# HELP ficus_shadow_field_mismatches_total Mismatched shadow answers by differing field (the most frequent fields a record keeps).\n# TYPE ficus_shadow_field_mismatches_total counter\n");
        for (s, r) in &reports {
            for f in &r.fields {
                let _ = writeln!(
                    out,
                    "ficus_shadow_field_mismatches_total{{route=\"{}\",service=\"{}\",field=\"{}\"}} {}",
                    LabelValue(&s.route),
                    LabelValue(&s.service),
                    LabelValue(&f.field),
                    f.count
                );
            }
        }
        out.push_str("# HELP ficus_shadow_noise_fields Fields learned as noise (differing between two answers of the primary).\n# TYPE ficus_shadow_noise_fields gauge\n");
        for (s, r) in &reports {
            let _ = writeln!(
                out,
                "ficus_shadow_noise_fields{{route=\"{}\",service=\"{}\"}} {}",
                LabelValue(&s.route),
                LabelValue(&s.service),
                r.noise.fields.len()
            );
        }
        out.push_str("# HELP ficus_shadow_held_bytes Body bytes held for shadow copies (requests being captured, copies in flight).\n# TYPE ficus_shadow_held_bytes gauge\n");
        for (s, _) in &reports {
            let _ = writeln!(
                out,
                "ficus_shadow_held_bytes{{route=\"{}\",service=\"{}\"}} {}",
                LabelValue(&s.route),
                LabelValue(&s.service),
                s.held_bytes()
            );
        }
        out.push_str("# HELP ficus_shadow_in_flight Shadow copies in flight.\n# TYPE ficus_shadow_in_flight gauge\n");
        for (s, _) in &reports {
            let _ = writeln!(
                out,
                "ficus_shadow_in_flight{{route=\"{}\",service=\"{}\"}} {}",
                LabelValue(&s.route),
                LabelValue(&s.service),
                s.in_flight()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ShadowState>>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_hold_bytes_within_the_budget_and_give_them_back() {
        let states = ShadowStates::default();
        let s = states.state("r", "v2", &ShadowComparison::default(), 2, 100);
        let mut a = Reservation::new(s.clone());
        let mut b = Reservation::new(s.clone());
        assert!(a.grow(60));
        assert!(!b.grow(50), "60 + 50 is over 100");
        assert!(b.grow(40));
        assert_eq!(s.held_bytes(), 100);
        assert!(!a.grow(1));
        a.clear();
        assert_eq!(s.held_bytes(), 40);
        drop(b);
        assert_eq!(s.held_bytes(), 0);
        // A reload that keeps the experiment keeps the state and takes the new budget.
        let again = states.state("r", "v2", &ShadowComparison::default(), 2, 10);
        assert!(Arc::ptr_eq(&s, &again));
        assert!(!Reservation::new(again).grow(11));
    }

    #[test]
    fn a_new_record_for_the_route_shares_the_bounds_with_copies_still_running() {
        let states = ShadowStates::default();
        let old = states.state("r", "v2", &ShadowComparison::default(), 1, 100);
        let _running = old.try_slot().expect("room");
        let mut held = Reservation::new(old.clone());
        assert!(held.grow(80));
        let other = ShadowComparison {
            tolerance: 0.5,
            ..Default::default()
        };
        let new = states.state("r", "v2", &other, 1, 100);
        assert!(!Arc::ptr_eq(&old, &new), "a new comparison, a new record");
        assert!(
            new.try_slot().is_none(),
            "the old copy still fills the queue"
        );
        assert!(!Reservation::new(new.clone()).grow(30));
        drop(held);
        assert!(Reservation::new(new).grow(30));
    }

    #[test]
    fn slots_stop_at_the_queue_bound() {
        let states = ShadowStates::default();
        let s = states.state("r", "v2", &ShadowComparison::default(), 2, 100);
        let one = s.try_slot().expect("room");
        let _two = s.try_slot().expect("room");
        assert!(s.try_slot().is_none());
        drop(one);
        assert!(s.try_slot().is_some());
    }
}
