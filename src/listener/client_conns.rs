//! The cap on connections one client address holds open on the proxy listeners
//! (`max_connections_per_client`) and on how fast it may open new ones
//! (`new_connections_per_client_per_second`), both checked as soon as a connection is
//! accepted: before its TLS handshake, before a byte of it is read.
//!
//! The rate is a GCRA bucket per address (a burst of one second's worth): a client that
//! reconnects as fast as it can (a flood cut by the HTTP/2 guard comes straight back) costs
//! the gateway an accept and a close per refused connection instead of a TLS and HTTP/2
//! handshake. An address's bucket is kept only while it is not full again (at most a
//! second after its last connection), so the table is as large as the addresses that
//! connected in the last second.
//!
//! Each connection costs the gateway memory for as long as it is open, and each can open
//! `h2_max_concurrent_streams` streams at once; without a cap per address, one address's
//! memory grew with the connections it opened (issue 13 re-check: 5 addresses × 600
//! connections × 100 streams, 2.13 GB). The count is keyed by the socket's peer address: a
//! connection's `X-Forwarded-For` is not read yet when it is accepted. A peer that is a
//! configured trusted proxy (a CDN, a load balancer: one address for many clients) is not
//! capped; its clients are still held to the per-client request caps
//! (`src/proxy/in_flight.rs`).
//!
//! An address has an entry only while it has a connection open. A refused connection is
//! closed at once, counted in `ficus_connections_refused_total{reason="client_cap"}`, and
//! logged at most once per [`LOG_EVERY`] with the count since the last line. The table and
//! its counter are process-wide, like the other connection counters: a reload changes the
//! cap, never the count of connections already open.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest quiet time between two "connections refused" lines while refusals go on.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Enough shards that accepting threads seldom wait on each other.
const SHARDS: usize = 16;

type Counts = HashMap<IpAddr, usize, foldhash::fast::RandomState>;

/// Open proxy connections by client address.
pub struct ClientConnections {
    shards: [Mutex<Counts>; SHARDS],
    /// New-connection buckets by address (the rate).
    rates: [Mutex<Rates>; SHARDS],
    refused: Refusals,
    rate_refused: Refusals,
    made: Instant,
}

/// A shard of the rate buckets: each address's theoretical arrival time (ns since the
/// table was made); entries whose time has passed (full buckets) are swept out when the
/// shard reaches `sweep_at` entries.
struct Rates {
    tats: HashMap<IpAddr, u64, foldhash::fast::RandomState>,
    sweep_at: usize,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            tats: HashMap::default(),
            sweep_at: SWEEP_AT,
        }
    }
}

/// Entries a rate shard holds before it sweeps out full buckets; after a sweep, twice what
/// is left (so a shard full of live buckets is not swept on every connection).
const SWEEP_AT: usize = 1024;

/// Refusals of one kind: counted, and logged at most once per [`LOG_EVERY`]: the first
/// at once, those that come while a line would be too soon in one line when the window
/// ends (a flush task waits for it), with the last refused address.
#[derive(Default)]
struct Refusals {
    total: AtomicU64,
    /// Refusals since the last log line.
    unlogged: AtomicU64,
    /// When the last line was written, in ms since the table was made, +1 (0: never).
    last_line_ms: AtomicU64,
    /// The address refused last (for the line).
    last_client: Mutex<Option<IpAddr>>,
    /// A flush task is waiting for the window's end.
    flush_pending: AtomicBool,
}

/// Which limit refused: for the log line.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Cap(usize),
    Rate(u32),
}

impl Limit {
    fn warn(self, refused: u64, last_client: Option<IpAddr>) {
        let last_client = last_client.map(|ip| ip.to_string()).unwrap_or_default();
        match self {
            Limit::Cap(cap) => tracing::warn!(
                refused,
                last_client,
                max_connections_per_client = cap,
                "connections refused: their client address has max_connections_per_client open \
                 (counted in ficus_connections_refused_total; at most one line per {}s)",
                LOG_EVERY.as_secs()
            ),
            Limit::Rate(per_second) => tracing::warn!(
                refused,
                last_client,
                new_connections_per_client_per_second = per_second,
                "connections refused: their client address opens connections faster than \
                 new_connections_per_client_per_second (counted in \
                 ficus_connections_refused_total; at most one line per {}s)",
                LOG_EVERY.as_secs()
            ),
        }
    }
}

impl Refusals {
    /// Counts a refusal of `ip` by `limit`, and writes its line now or when the window ends.
    fn count(&'static self, made: Instant, ip: IpAddr, limit: Limit) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        *self.last_client.lock().unwrap_or_else(|p| p.into_inner()) = Some(ip);
        match self.due_in(made) {
            None => self.write(made, limit),
            Some(wait) => self.flush_after(wait, made, limit),
        }
    }

    /// `None` when a line may be written now, else how long until it may.
    fn due_in(&self, made: Instant) -> Option<Duration> {
        let now = made.elapsed().as_millis() as u64 + 1;
        let last = self.last_line_ms.load(Ordering::Relaxed);
        let every = LOG_EVERY.as_millis() as u64;
        let since = now.saturating_sub(last);
        (last != 0 && since < every).then(|| Duration::from_millis(every - since))
    }

    /// Writes the refusals since the last line, if there are any and no other thread has
    /// just written them.
    fn write(&self, made: Instant, limit: Limit) {
        let now = made.elapsed().as_millis() as u64 + 1;
        let last = self.last_line_ms.load(Ordering::Relaxed);
        // One thread wins the line; the others' refusals are in it or in the next one.
        if self
            .last_line_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let refused = self.unlogged.swap(0, Ordering::Relaxed);
        if refused > 0 {
            let ip = *self.last_client.lock().unwrap_or_else(|p| p.into_inner());
            limit.warn(refused, ip);
        }
    }

    /// One task per window writes what the window held once it ends (outside a runtime,
    /// in unit tests, the next refusal after the window does).
    fn flush_after(&'static self, wait: Duration, made: Instant, limit: Limit) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.flush_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        rt.spawn(async move {
            tokio::time::sleep(wait).await;
            self.flush_pending.store(false, Ordering::Release);
            self.write(made, limit);
        });
    }
}

impl Default for ClientConnections {
    fn default() -> Self {
        ClientConnections {
            shards: std::array::from_fn(|_| Mutex::default()),
            rates: std::array::from_fn(|_| Mutex::default()),
            refused: Refusals::default(),
            rate_refused: Refusals::default(),
            made: Instant::now(),
        }
    }
}

/// The process's table.
pub fn global() -> &'static ClientConnections {
    static TABLE: OnceLock<ClientConnections> = OnceLock::new();
    TABLE.get_or_init(ClientConnections::default)
}

/// An admitted connection's place in its address's count, given back when dropped (the
/// connection ended, however it ended).
pub struct Counted {
    owner: &'static ClientConnections,
    ip: IpAddr,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counted").field(&self.ip).finish()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.owner.remove(self.ip);
    }
}

impl ClientConnections {
    fn shard(&self, ip: IpAddr) -> &Mutex<Counts> {
        &self.shards[crate::proxy::in_flight::address_shard(ip, SHARDS)]
    }

    /// Counts a new connection from `ip` unless it has `cap` open already (`cap` 0: no
    /// cap, nothing counted: `Ok(None)`). A refusal is counted and logged.
    pub fn admit(&'static self, ip: IpAddr, cap: usize) -> Result<Option<Counted>, Refused> {
        if cap == 0 {
            return Ok(None);
        }
        {
            let mut map = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_default();
            if *n < cap {
                *n += 1;
                return Ok(Some(Counted { owner: self, ip }));
            }
        }
        self.refused.count(self.made, ip, Limit::Cap(cap));
        Err(Refused)
    }

    /// Whether `ip` may open another connection now at `per_second` new connections a
    /// second (with a burst of as many); `0`: no limit. A refusal is counted and logged.
    pub fn admit_rate(&'static self, ip: IpAddr, per_second: u32) -> Result<(), Refused> {
        if per_second == 0 {
            return Ok(());
        }
        let interval = 1_000_000_000 / u64::from(per_second);
        // A full bucket admits `per_second` at once: the last of them may come while the
        // time is up to (per_second - 1) intervals ahead.
        let tolerance = interval * (u64::from(per_second) - 1);
        let now = self.made.elapsed().as_nanos() as u64;
        {
            let shard = &self.rates[crate::proxy::in_flight::address_shard(ip, SHARDS)];
            let mut rates = shard.lock().unwrap_or_else(|p| p.into_inner());
            if rates.tats.len() >= rates.sweep_at {
                rates.tats.retain(|_, tat| *tat > now);
                rates.sweep_at = (rates.tats.len() * 2).max(SWEEP_AT);
            }
            let tat = rates.tats.get(&ip).copied().unwrap_or(0).max(now);
            if tat - now <= tolerance {
                rates.tats.insert(ip, tat + interval);
                return Ok(());
            }
        }
        self.rate_refused
            .count(self.made, ip, Limit::Rate(per_second));
        Err(Refused)
    }

    fn remove(&self, ip: IpAddr) {
        let mut map = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Connections `ip` has open now (counted ones).
    pub fn open(&self, ip: IpAddr) -> usize {
        let map = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }

    /// Connections refused for the cap since the process started.
    pub fn refused(&self) -> u64 {
        self.refused.total.load(Ordering::Relaxed)
    }

    /// Connections refused for the rate since the process started.
    pub fn rate_refused(&self) -> u64 {
        self.rate_refused.total.load(Ordering::Relaxed)
    }

    /// The `ficus_connections_refused_total` family.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP ficus_connections_refused_total Proxy connections closed as soon as they were accepted, by reason.\n# TYPE ficus_connections_refused_total counter\n",
        );
        let _ = writeln!(
            out,
            "ficus_connections_refused_total{{reason=\"client_cap\"}} {}",
            self.refused()
        );
        let _ = writeln!(
            out,
            "ficus_connections_refused_total{{reason=\"client_rate\"}} {}",
            self.rate_refused()
        );
    }
}

/// A connection over its address's cap or rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// The `ficus_connections_refused_total` family of the process's table.
pub fn render_metrics(out: &mut String) {
    global().render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static ClientConnections {
        Box::leak(Box::default())
    }

    #[test]
    fn an_address_is_capped_and_its_count_goes_down_when_a_connection_ends() {
        let t = table();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = t.admit(a, 2).unwrap();
        let second = t.admit(a, 2).unwrap();
        assert_eq!(t.admit(a, 2).unwrap_err(), Refused);
        assert_eq!(t.refused(), 1);
        assert!(t.admit(b, 2).unwrap().is_some(), "another address");
        drop(first);
        assert_eq!(t.open(a), 1);
        let third = t.admit(a, 2).unwrap();
        drop((second, third));
        assert_eq!(t.open(a), 0);
        assert!(t.shards.iter().all(|s| s.lock().unwrap().get(&a).is_none()));
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.contains("ficus_connections_refused_total{reason=\"client_cap\"} 1\n"));
    }

    #[test]
    fn an_address_opens_a_burst_then_at_the_rate() {
        let t = table();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // A burst of one second's worth at once, then nothing until time passes.
        let admitted = (0..25).filter(|_| t.admit_rate(a, 10).is_ok()).count();
        assert_eq!(admitted, 10);
        assert_eq!(t.rate_refused(), 15);
        assert!(
            t.admit_rate(b, 10).is_ok(),
            "another address has its own bucket"
        );
        std::thread::sleep(Duration::from_millis(250));
        let later = (0..10).filter(|_| t.admit_rate(a, 10).is_ok()).count();
        assert!(
            (2..=5).contains(&later),
            "{later} admitted after 250 ms at 10/s"
        );
        assert!(t.admit_rate(a, 0).is_ok(), "0: no limit");
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.contains("ficus_connections_refused_total{reason=\"client_rate\"} "));
    }

    #[test]
    fn full_buckets_are_swept_out() {
        let t = table();
        let total = 20 * SWEEP_AT * SHARDS;
        for i in 0..total as u32 {
            // One connection at 1,000/s fills 1 ms of a bucket: pausing now and then lets
            // the earlier buckets fill up again, so sweeps find them.
            if i % SWEEP_AT as u32 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(t.admit_rate(ip, 1000).is_ok());
        }
        let kept: usize = t.rates.iter().map(|r| r.lock().unwrap().tats.len()).sum();
        assert!(
            kept <= 4 * SWEEP_AT * SHARDS,
            "{kept} buckets kept for {total} addresses"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_held_back_by_the_log_window_are_written_when_it_ends() {
        let t = table();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _held = t.admit(a, 1).unwrap();
        assert!(t.admit(a, 1).is_err());
        // The first refusal is written at once.
        assert_eq!(t.refused.unlogged.load(Ordering::Relaxed), 0);
        for _ in 0..5 {
            assert!(t.admit(a, 1).is_err());
        }
        assert_eq!(t.refused.unlogged.load(Ordering::Relaxed), 5);
        assert!(t.refused.flush_pending.load(Ordering::Relaxed));
        // When the window ends, without another refusal, they are written.
        tokio::time::sleep(LOG_EVERY + Duration::from_millis(10)).await;
        tokio::task::yield_now().await;
        assert_eq!(t.refused.unlogged.load(Ordering::Relaxed), 0);
        assert!(!t.refused.flush_pending.load(Ordering::Relaxed));
        assert_eq!(t.refused(), 6);
    }

    #[test]
    fn a_cap_of_zero_counts_nothing() {
        let t = table();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.admit(a, 0).unwrap().is_none());
        assert_eq!(t.open(a), 0);
    }
}
