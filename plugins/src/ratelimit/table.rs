//! The local store's buckets: a bounded, sharded table from a key's 64-bit hash to its
//! bucket's TAT (nanoseconds on the store's clock), and governor's `StateStore` over it.
//!
//! Bounded three ways, so no stream of new keys (a botnet, random API keys) can grow
//! memory without limit:
//! - a key is a fixed-size hash, never the attacker's bytes: 16 bytes of key and value
//!   per bucket whatever the API key's length;
//! - a bucket whose TAT has passed is full again and needs no state: [`BucketTable::sweep`]
//!   drops those (run on a schedule), and a full shard drops its own before it refuses a
//!   newcomer;
//! - a hard cap (`max_keys`): when a shard is full of buckets still in use, a new key gets
//!   no bucket of its own but is judged by its limit's one *overflow* bucket, shared by
//!   every key that found no room. Keys already in the table keep their state, and
//!   newcomers are limited together rather than admitted freely: the cap never turns the
//!   limiter off.

use governor::nanos::Nanos;
use governor::state::StateStore;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::clock;

/// At most this many shards (locks); small tables get fewer, so each shard holds enough
/// keys for the cap to be met evenly.
const MAX_SHARDS: usize = 64;
/// Keys per shard a small table aims for.
const KEYS_PER_SHARD: usize = 1024;
/// A full shard sweeps itself at most this often (ns): a flood of new keys into a table
/// full of live buckets must not cost a scan per request.
const FULL_SWEEP_EVERY: u64 = 100_000_000;

/// Hashes a key that is already a uniform 64-bit hash: one multiply mixes its bits, so the
/// map's bucket index and control bits do not repeat the bits that chose the shard.
#[derive(Default)]
pub struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<Mix>>;

struct Shard {
    buckets: Map,
    /// When this shard last swept itself because it was full.
    swept_at: u64,
}

/// What one lookup did: the bucket's id and limit going in; which bucket was used and the
/// TAT it holds afterwards coming out (governor's check only says yes or no).
#[derive(Debug, Clone)]
pub struct Probe {
    pub id: u64,
    pub limit: u8,
    /// The TAT stored after the check (the new one when admitted, the unchanged one when
    /// refused).
    pub tat: Cell<u64>,
    /// The key found no room and was judged by the overflow bucket.
    pub overflowed: Cell<bool>,
}

impl Probe {
    pub fn new(id: u64, limit: u8) -> Probe {
        Probe {
            id,
            limit,
            tat: Cell::new(0),
            overflowed: Cell::new(false),
        }
    }
}

impl PartialEq for Probe {
    fn eq(&self, other: &Probe) -> bool {
        self.id == other.id && self.limit == other.limit
    }
}
impl Eq for Probe {}
impl Hash for Probe {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
        self.limit.hash(h);
    }
}

/// The table of one policy instance (all its limits; the limit is part of each key's hash).
pub struct BucketTable {
    shards: Box<[Mutex<Shard>]>,
    shard_shift: u32,
    per_shard: usize,
    /// One overflow bucket per limit.
    overflow: Box<[AtomicU64]>,
    /// Buckets dropped because they were full again.
    evicted: AtomicU64,
    /// Checks judged by an overflow bucket.
    overflowed: AtomicU64,
}

impl BucketTable {
    /// A table for at most `max_keys` buckets (at least 1) over `limits` limits.
    pub fn new(max_keys: usize, limits: usize) -> BucketTable {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / KEYS_PER_SHARD)
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        BucketTable {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: Map::default(),
                        swept_at: 0,
                    })
                })
                .collect(),
            // The top bits of a key pick its shard (64 - 0 would overflow the shift: one
            // shard uses a shift of 63 and masks the result away).
            shard_shift: 64 - shards.trailing_zeros().max(1),
            per_shard: (max_keys / shards).max(1),
            overflow: (0..limits).map(|_| AtomicU64::new(0)).collect(),
            evicted: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// The most keys the table holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Shard> {
        let i = (id >> self.shard_shift) as usize & (self.shards.len() - 1);
        // A panic while a shard is locked leaves plain integers behind: still usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TAT a key's bucket holds now, without charging it (0: full, no state). A key
    /// that would find no room reads its overflow bucket.
    pub fn peek(&self, probe: &Probe) -> u64 {
        let shard = self.shard(probe.id);
        match shard.buckets.get(&probe.id) {
            Some(tat) => *tat,
            None if shard.buckets.len() >= self.per_shard => {
                drop(shard);
                probe.overflowed.set(true);
                self.overflow_cell(probe.limit).load(Ordering::Acquire)
            }
            None => 0,
        }
    }

    /// Gives back one unit (`t` ns) a probe charged: the request it was charged for was
    /// refused by another limit. Exact under concurrency: TATs only add up.
    pub fn refund(&self, probe: &Probe, t: u64) {
        if probe.overflowed.get() {
            let cell = self.overflow_cell(probe.limit);
            let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(t))
            });
            return;
        }
        let mut shard = self.shard(probe.id);
        // Gone already (swept): nothing is charged any more.
        if let Some(tat) = shard.buckets.get_mut(&probe.id) {
            *tat = tat.saturating_sub(t);
        }
    }

    fn overflow_cell(&self, limit: u8) -> &AtomicU64 {
        // Limits are numbered by the policy that built the table; the clamp only guards
        // against a caller's slip.
        &self.overflow[usize::from(limit).min(self.overflow.len() - 1)]
    }

    /// Drops every bucket that is full again (TAT at or before `now`). Returns how many.
    pub fn sweep(&self, now: u64) -> usize {
        let mut dropped = 0;
        for s in self.shards.iter() {
            let mut shard = s.lock().unwrap_or_else(|p| p.into_inner());
            dropped += sweep_shard(&mut shard, now);
            // Give memory back after a flood has passed.
            let cap = shard.buckets.capacity();
            if cap > 64 && shard.buckets.len() < cap / 4 {
                shard.buckets.shrink_to_fit();
            }
        }
        self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the buckets' maps have allocated (key, value and control byte per slot).
    pub fn allocated_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, u64)>() + 1;
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .buckets
                    .capacity()
                    * slot
            })
            .sum()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// governor's measure-and-replace on one key: the decision `f` runs under the shard's
    /// lock (never across an await), so check and update are one step.
    fn measure<T, F, E>(&self, probe: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = self.shard(probe.id);
        if let Some(tat) = shard.buckets.get_mut(&probe.id) {
            return apply(tat, probe, &f);
        }
        let now = clock::decision_time();
        if shard.buckets.len() >= self.per_shard
            && now.saturating_sub(shard.swept_at) >= FULL_SWEEP_EVERY
        {
            shard.swept_at = now;
            let dropped = sweep_shard(&mut shard, now);
            self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if shard.buckets.len() < self.per_shard {
            let mut tat = 0;
            let out = apply(&mut tat, probe, &f);
            if out.is_ok() {
                shard.buckets.insert(probe.id, tat);
            }
            return out;
        }
        drop(shard);
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        probe.overflowed.set(true);
        let cell = self.overflow_cell(probe.limit);
        let mut current = cell.load(Ordering::Acquire);
        loop {
            let mut tat = current;
            let out = apply(&mut tat, probe, &f);
            if out.is_err() || tat == current {
                return out;
            }
            match cell.compare_exchange_weak(current, tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return out,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Runs governor's decision on one TAT (0 meaning "no state", as governor encodes it) and
/// stores the new TAT when it admits; the probe learns the TAT either way.
fn apply<T, E, F>(tat: &mut u64, probe: &Probe, f: &F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let prev = (*tat != 0).then(|| Nanos::from(*tat));
    match f(prev) {
        Ok((out, new)) => {
            *tat = new.as_u64();
            probe.tat.set(*tat);
            Ok(out)
        }
        Err(e) => {
            probe.tat.set(*tat);
            Err(e)
        }
    }
}

fn sweep_shard(shard: &mut Shard, now: u64) -> usize {
    let before = shard.buckets.len();
    shard.buckets.retain(|_, tat| *tat > now);
    before - shard.buckets.len()
}

/// governor's view of the table (the limiters of one policy share it).
#[derive(Clone)]
pub struct SharedTable(pub Arc<BucketTable>);

impl StateStore for SharedTable {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure(key, f)
    }
}
