//! The access log: one line per request, as logfmt text or JSON, on stdout.
//!
//! Lines are formatted by hand into one `String` (no `tracing` field machinery, which cost
//! ~20 µs per line under load) and handed to a writer thread over a bounded channel. If the
//! writer falls behind (a slow pipe), lines are dropped and counted rather than stalling a
//! proxy worker; `ficus_access_log_dropped_total` reports them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines buffered between workers and the writer thread.
const QUEUE: usize = 16 * 1024;

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

struct Logger {
    tx: SyncSender<Msg>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn writer(rx: Receiver<Msg>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(msg) = rx.recv() {
        let mut pending = Some(msg);
        // Write everything queued, then flush once.
        while let Some(m) = pending.take() {
            match m {
                Msg::Line(l) => {
                    let _ = out.write_all(l.as_bytes());
                }
                Msg::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            pending = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx));
        if let Err(e) = spawned {
            eprintln!("cannot start the access log writer: {e}");
        }
        Logger { tx }
    })
}

/// Queues one finished line (must end with `\n`).
pub fn emit(line: String) {
    match logger().tx.try_send(Msg::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lines dropped because the writer could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes out everything queued so far (waits at most 500 ms).
pub fn flush() {
    let Some(l) = LOGGER.get() else { return };
    let (tx, rx) = sync_channel(1);
    if l.tx.send(Msg::Flush(tx)).is_ok() {
        let _ = rx.recv_timeout(Duration::from_millis(500));
    }
}

/// One request's fields.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub service: &'a str,
    pub instance: Option<std::net::SocketAddr>,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub attempts: u32,
    pub fallback: bool,
    pub error: &'a str,
    pub detail: &'a str,
}

/// RFC 3339 UTC timestamp with milliseconds, without a date library.
fn timestamp(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        now.subsec_millis()
    );
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// logfmt value: bare when safe, quoted otherwise.
fn text_val(out: &mut String, s: &str) {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
    {
        out.push_str(s);
    } else {
        json_str(out, s);
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Formats a JSON line.
pub fn json_line(e: &Entry<'_>) -> String {
    let mut o = String::with_capacity(384 + e.path.len() + e.detail.len());
    o.push_str("{\"ts\":\"");
    timestamp(&mut o);
    o.push_str("\",\"request_id\":");
    json_str(&mut o, e.request_id);
    o.push_str(",\"trace_id\":");
    json_str(&mut o, e.trace_id);
    let _ = write!(
        o,
        ",\"client_ip\":\"{}\"",
        e.client_ip.map(|ip| ip.to_string()).unwrap_or_default()
    );
    o.push_str(",\"method\":");
    json_str(&mut o, e.method);
    o.push_str(",\"path\":");
    json_str(&mut o, e.path);
    o.push_str(",\"route\":");
    json_str(&mut o, e.route);
    o.push_str(",\"service\":");
    json_str(&mut o, e.service);
    let _ = write!(
        o,
        ",\"instance\":\"{}\",\"status\":{},\"bytes\":{},\"duration_ms\":{},\"upstream_ms\":",
        e.instance.map(|a| a.to_string()).unwrap_or_default(),
        e.status,
        e.bytes,
        ms(e.duration)
    );
    match e.upstream {
        Some(u) => {
            let _ = write!(o, "{}", ms(u));
        }
        None => o.push_str("null"),
    }
    let _ = write!(
        o,
        ",\"attempts\":{},\"fallback\":{}",
        e.attempts, e.fallback
    );
    if !e.error.is_empty() {
        o.push_str(",\"error\":");
        json_str(&mut o, e.error);
        o.push_str(",\"detail\":");
        json_str(&mut o, e.detail);
    }
    o.push_str("}\n");
    o
}

/// Formats a logfmt text line.
pub fn text_line(e: &Entry<'_>) -> String {
    let mut o = String::with_capacity(320 + e.path.len() + e.detail.len());
    timestamp(&mut o);
    o.push_str(" access request_id=");
    text_val(&mut o, e.request_id);
    o.push_str(" method=");
    text_val(&mut o, e.method);
    o.push_str(" path=");
    text_val(&mut o, e.path);
    let _ = write!(o, " status={} route=", e.status);
    text_val(&mut o, e.route);
    o.push_str(" service=");
    text_val(&mut o, e.service);
    let _ = write!(
        o,
        " instance={} client_ip={} bytes={} duration_ms={} upstream_ms={} attempts={}",
        e.instance
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        e.client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "-".into()),
        e.bytes,
        ms(e.duration),
        e.upstream.map_or(-1.0, ms),
        e.attempts
    );
    if e.fallback {
        o.push_str(" fallback=true");
    }
    o.push_str(" trace_id=");
    text_val(&mut o, e.trace_id);
    if !e.error.is_empty() {
        o.push_str(" error=");
        text_val(&mut o, e.error);
        o.push_str(" detail=");
        text_val(&mut o, e.detail);
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str, error: &'a str) -> Entry<'a> {
        Entry {
            request_id: "abc",
            trace_id: "t",
            client_ip: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            path,
            route: "r",
            service: "s",
            instance: Some("127.0.0.1:81".parse().unwrap()),
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1500),
            upstream: None,
            attempts: 1,
            fallback: false,
            error,
            detail: "",
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let l = json_line(&entry("/a\"b\n", "boom"));
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["path"], "/a\"b\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["error"], "boom");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_quote_when_needed() {
        let l = text_line(&entry("/a b", ""));
        assert!(l.contains(" path=\"/a b\" "), "{l}");
        assert!(l.contains(" status=200 "), "{l}");
        assert!(l.ends_with('\n'));
    }

    #[test]
    fn timestamp_format() {
        let mut s = String::new();
        timestamp(&mut s);
        assert_eq!(s.len(), 24, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
    }
}
