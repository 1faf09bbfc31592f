//! What keeps the admin listener from starving the proxy: a cap on its open connections, a
//! reserve of file descriptors it never takes, a back-off when `accept` fails, and the
//! counters that show each of them working (`ficus_admin_*` in `/metrics`).
//!
//! The admin listener shares the process's descriptor table with the proxy. Without these
//! bounds, a thousand slow admin clients held the process's descriptors and no proxy
//! request could open an upstream connection. This file decides whether a freshly accepted
//! connection may stay; it never reads from or writes to one (that is `connection.rs`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most descriptors reserved for the proxy when `admin_reserved_fds` is not set (a
/// quarter of the limit below that).
pub const DEFAULT_RESERVED_FDS: usize = 1024;

/// A soft limit raised to an unlimited hard limit stops here: the kernel refuses
/// `RLIM_INFINITY` for descriptors, and no gateway needs more.
const RAISED_LIMIT_CAP: u64 = 1 << 20;

/// The first and the longest pause after a failed `accept` (no descriptor left, no kernel
/// memory): retrying at once would spin a core while the condition lasts.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one warning per this interval for refusals and accept errors: they are driven
/// by whoever connects, so one line each would let a client flood the log.
const LOG_INTERVAL_MS: u64 = 10_000;

/// Why a freshly accepted admin connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `admin_connections` connections are already open.
    ConnectionCap,
    /// Fewer than the reserved descriptors are left for the proxy.
    FdReserve,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionCap => "connection_cap",
            Refusal::FdReserve => "fd_reserve",
        }
    }
}

/// The admin listener's counters and its open-connection count.
#[derive(Debug, Default)]
pub struct AdminGuard {
    open: AtomicUsize,
    refused_cap: AtomicU64,
    refused_fds: AtomicU64,
    accept_errors: AtomicU64,
    head_timeouts: AtomicU64,
    exchange_timeouts: AtomicU64,
    /// The descriptor limit to judge the reserve against, when not the process's own
    /// (unit tests); 0 means none (only the connection cap applies).
    fixed_fd_limit: Option<usize>,
    /// When the last rate-limited warning was logged (ms since the Unix epoch).
    last_log_ms: AtomicU64,
}

/// An admitted admin connection; the open count drops when it is dropped.
#[derive(Debug)]
pub struct Admitted(Arc<AdminGuard>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AdminGuard {
    /// A guard that judges the reserve against the process's soft `RLIMIT_NOFILE`, read at
    /// each admission (so a limit changed at run time, e.g. with `prlimit`, counts).
    pub fn new() -> AdminGuard {
        AdminGuard::default()
    }

    /// A guard that judges the reserve against `fd_limit` (0: no limit).
    #[cfg(test)]
    fn with_fd_limit(fd_limit: usize) -> AdminGuard {
        AdminGuard {
            fixed_fd_limit: Some(fd_limit),
            ..AdminGuard::default()
        }
    }

    /// Admits a freshly accepted connection, or says why it must be closed at once.
    /// `cap` is `admin_connections`, `reserved` is `admin_reserved_fds`. The cap is checked
    /// first: it costs one atomic, while counting descriptors reads `/proc`.
    pub fn admit(
        self: &Arc<Self>,
        cap: usize,
        reserved: Option<usize>,
    ) -> Result<Admitted, Refusal> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.clone());
        let refusal = if before >= cap {
            Some(Refusal::ConnectionCap)
        } else if self.fd_reserve_reached(reserved) {
            Some(Refusal::FdReserve)
        } else {
            None
        };
        let Some(refusal) = refusal else {
            return Ok(admitted);
        };
        drop(admitted);
        let counter = match refusal {
            Refusal::ConnectionCap => &self.refused_cap,
            Refusal::FdReserve => &self.refused_fds,
        };
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if self.may_log() {
            tracing::warn!(
                reason = refusal.label(),
                refused_total = total,
                "admin listener: closing new connections ({}); further refusals are counted in ficus_admin_connections_refused_total",
                match refusal {
                    Refusal::ConnectionCap => "gateway.limits.admin_connections reached",
                    Refusal::FdReserve => "the descriptors reserved for the proxy would be used",
                }
            );
        }
        Err(refusal)
    }

    /// Whether the descriptors left (limit minus open) are no more than the reserve.
    fn fd_reserve_reached(&self, reserved: Option<usize>) -> bool {
        let limit = self.fixed_fd_limit.unwrap_or_else(fd_limit);
        if limit == 0 {
            return false;
        }
        let reserve = reserved.unwrap_or_else(|| (limit / 4).min(DEFAULT_RESERVED_FDS));
        match open_fds() {
            Some(open) => open.saturating_add(reserve) > limit,
            None => false,
        }
    }

    /// Counts a failed `accept` and returns how long to pause before the next one.
    /// `streak` is the number of failures in a row before this one.
    pub fn accept_failed(&self, error: &std::io::Error, streak: u32) -> Duration {
        let total = self.accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if self.may_log() {
            tracing::warn!(
                errors_total = total,
                "admin listener: accept failed ({error}); backing off, further errors are counted in ficus_admin_accept_errors_total"
            );
        }
        ACCEPT_BACKOFF_FIRST
            .saturating_mul(1 << streak.min(10))
            .min(ACCEPT_BACKOFF_MAX)
    }

    /// Counts a connection closed because its request head did not arrive in time.
    pub fn head_timed_out(&self) {
        self.head_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed because reading a body or writing an answer took too long.
    pub fn exchange_timed_out(&self) {
        self.exchange_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a rate-limited warning may be logged now (and if so, records that it was).
    fn may_log(&self) -> bool {
        let now = crate::registry::clock::now_ms();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= LOG_INTERVAL_MS)
            && self
                .last_log_ms
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The admin listener's Prometheus lines.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ficus_admin_connections Open connections on the admin listener.\n\
             # TYPE ficus_admin_connections gauge\n\
             ficus_admin_connections {}",
            self.open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ficus_admin_connections_refused_total Admin connections closed as soon as they were accepted.\n\
             # TYPE ficus_admin_connections_refused_total counter"
        );
        for (reason, n) in [
            (Refusal::ConnectionCap, &self.refused_cap),
            (Refusal::FdReserve, &self.refused_fds),
        ] {
            let _ = writeln!(
                out,
                "ficus_admin_connections_refused_total{{reason=\"{}\"}} {}",
                reason.label(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ficus_admin_timeouts_total Admin connections closed for slowness: a request head not complete within header_read_timeout, or a body and answer not done in time.\n\
             # TYPE ficus_admin_timeouts_total counter\n\
             ficus_admin_timeouts_total{{phase=\"head\"}} {}\n\
             ficus_admin_timeouts_total{{phase=\"exchange\"}} {}",
            self.head_timeouts.load(Ordering::Relaxed),
            self.exchange_timeouts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ficus_admin_accept_errors_total Failed accepts on the admin listener (each followed by a pause).\n\
             # TYPE ficus_admin_accept_errors_total counter\n\
             ficus_admin_accept_errors_total {}",
            self.accept_errors.load(Ordering::Relaxed)
        );
    }
}

/// Raises the soft descriptor limit to the hard one, where the system allows it, and
/// returns the soft limit in force afterwards (0 when it cannot be read). Called once at
/// start: a gateway that keeps a system's default soft limit (often 1,024) runs out of
/// descriptors long before its hard limit (often 524,288) would stop it.
pub fn raise_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        RAISED_LIMIT_CAP as libc::rlim_t
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = lim.rlim_cur,
                to = target,
                "raised the open file limit to the hard limit"
            );
            lim.rlim_cur = target;
        } else {
            tracing::info!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                "cannot raise the open file limit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// The soft descriptor limit, or 0 when it cannot be read or is unlimited.
fn fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return 0;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(0)
}

/// How many descriptors the process has open, where the system tells (`/proc/self/fd`,
/// less the one the listing itself holds open).
fn open_fds() -> Option<usize> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.count().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_cap_are_refused_and_counted() {
        let guard = Arc::new(AdminGuard::with_fd_limit(0));
        let a = guard.admit(2, None).expect("first");
        let _b = guard.admit(2, None).expect("second");
        assert_eq!(guard.admit(2, None).unwrap_err(), Refusal::ConnectionCap);
        drop(a);
        let _c = guard.admit(2, None).expect("room again once one closed");
        let mut text = String::new();
        guard.render(&mut text);
        assert!(text.contains("ficus_admin_connections 2\n"), "{text}");
        assert!(
            text.contains("ficus_admin_connections_refused_total{reason=\"connection_cap\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_descriptor_reserve_refuses_when_too_few_are_left() {
        let open = open_fds().expect("/proc/self/fd on Linux");
        // A limit just above what is open, with a reserve larger than the gap: refused.
        let guard = Arc::new(AdminGuard::with_fd_limit(open + 100));
        assert_eq!(guard.admit(100, Some(200)).unwrap_err(), Refusal::FdReserve);
        // A reserve smaller than the gap leaves room.
        assert!(guard.admit(100, Some(0)).is_ok());
        // An unknown limit never refuses.
        assert!(Arc::new(AdminGuard::with_fd_limit(0))
            .admit(100, Some(50))
            .is_ok());
    }

    #[test]
    fn accept_errors_back_off_up_to_a_second() {
        let guard = AdminGuard::with_fd_limit(0);
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(guard.accept_failed(&e, 0), ACCEPT_BACKOFF_FIRST);
        assert_eq!(guard.accept_failed(&e, 2), ACCEPT_BACKOFF_FIRST * 4);
        assert_eq!(guard.accept_failed(&e, 30), ACCEPT_BACKOFF_MAX);
    }
}
