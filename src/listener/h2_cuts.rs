//! HTTP/2 connections the gateway cut for abuse: counted for `/metrics` and logged at a
//! bounded rate.
//!
//! An attacker decides how often these happen (the black-box pass drew 12,395 log lines in
//! 15 s from rapid resets alone), so each cut is counted in
//! `ficus_http2_connections_cut_total{reason}` and at most one WARN line per
//! [`LOG_EVERY`] says how many were cut since the last one. The counters are process-wide,
//! like the access log's drop counter: a process serves one gateway, and a reload must not
//! reset a counter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest quiet time between two "connections cut" lines while cuts go on.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// Streams opened and reset at once (CVE-2023-44487); h2 sends the `GOAWAY`.
    RapidReset,
    /// Control frames (`WINDOW_UPDATE`, `PRIORITY`, `PING`, `SETTINGS`, `RST_STREAM`,
    /// empty `DATA`, unknown types) without progress; [`super::h2_guard`] sends the
    /// `GOAWAY`.
    ControlFlood,
    /// Other `ENHANCE_YOUR_CALM` limits of h2 (streams the gateway itself had to reset,
    /// too many `DATA` frames, oversized header blocks).
    OtherLimit,
    /// The client broke the protocol; h2 sent a `GOAWAY` with an error code.
    ProtocolError,
}

impl CutReason {
    const ALL: [CutReason; 4] = [
        CutReason::RapidReset,
        CutReason::ControlFlood,
        CutReason::OtherLimit,
        CutReason::ProtocolError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CutReason::RapidReset => "rapid_reset",
            CutReason::ControlFlood => "control_flood",
            CutReason::OtherLimit => "other_limit",
            CutReason::ProtocolError => "protocol_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The reason behind a `GOAWAY` that h2 (not the guard) sent, if it is a cut.
    pub fn of_goaway(code: u32, debug: &[u8]) -> Option<CutReason> {
        use super::h2_frames::{ENHANCE_YOUR_CALM, NO_ERROR};
        match code {
            NO_ERROR => None,
            ENHANCE_YOUR_CALM if debug == b"too_many_resets" => Some(CutReason::RapidReset),
            ENHANCE_YOUR_CALM => Some(CutReason::OtherLimit),
            _ => Some(CutReason::ProtocolError),
        }
    }
}

static CUTS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Cuts since the last log line.
static UNLOGGED: AtomicU64 = AtomicU64::new(0);
/// When the last line was written, in milliseconds since [`epoch`] (0: never).
static LAST_LINE_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Counts a cut connection, and logs if no line was written for [`LOG_EVERY`].
pub fn record(reason: CutReason) {
    CUTS[reason.index()].fetch_add(1, Ordering::Relaxed);
    UNLOGGED.fetch_add(1, Ordering::Relaxed);
    // +1 so that "never logged" (0) is always long enough ago.
    let now = epoch().elapsed().as_millis() as u64 + 1;
    let last = LAST_LINE_MS.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
    // One thread wins the line; the others' cuts are in the next one.
    if due
        && LAST_LINE_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let cut = UNLOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            cut,
            last_reason = reason.label(),
            "HTTP/2 connections cut for abuse (counted in ficus_http2_connections_cut_total; \
             at most one line per {}s)",
            LOG_EVERY.as_secs()
        );
    }
}

/// How many connections were cut for `reason` since the process started.
pub fn count(reason: CutReason) -> u64 {
    CUTS[reason.index()].load(Ordering::Relaxed)
}

/// The `ficus_http2_connections_cut_total` family.
pub fn render(out: &mut String) {
    out.push_str(
        "# HELP ficus_http2_connections_cut_total HTTP/2 client connections closed for abuse or protocol errors, by reason.\n# TYPE ficus_http2_connections_cut_total counter\n",
    );
    for r in CutReason::ALL {
        let _ = writeln!(
            out,
            "ficus_http2_connections_cut_total{{reason=\"{}\"}} {}",
            r.label(),
            count(r)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaways_are_told_apart_by_code_and_debug_data() {
        assert_eq!(CutReason::of_goaway(0, b""), None);
        assert_eq!(
            CutReason::of_goaway(0xb, b"too_many_resets"),
            Some(CutReason::RapidReset)
        );
        assert_eq!(
            CutReason::of_goaway(0xb, b"too_many_internal_resets"),
            Some(CutReason::OtherLimit)
        );
        assert_eq!(
            CutReason::of_goaway(0x1, b""),
            Some(CutReason::ProtocolError)
        );
    }

    #[test]
    fn cuts_are_counted_and_rendered() {
        let before = count(CutReason::ControlFlood);
        record(CutReason::ControlFlood);
        record(CutReason::ControlFlood);
        assert!(count(CutReason::ControlFlood) >= before + 2);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("ficus_http2_connections_cut_total{reason=\"control_flood\"} "));
        assert!(out.contains("# TYPE ficus_http2_connections_cut_total counter\n"));
    }
}
