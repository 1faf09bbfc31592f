//! The access log: one line per request, as logfmt text or JSON, on stdout.
//!
//! Requests are logged as `tracing` events with target `ficus::access`, so any subscriber
//! layer (OpenTelemetry, a file appender) can consume them. ficus's own [`AccessLayer`]
//! formats them: it writes the event's fields straight into one `String` (tracing-subscriber's
//! generic JSON formatter cost ~20 µs per line under load; this costs about one) and hands
//! the line to a writer thread over a bounded channel. If the writer falls behind (a slow
//! pipe), lines are dropped and counted rather than stalling a proxy worker;
//! `ficus_access_log_dropped_total` reports them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines buffered between workers and the writer thread.
const QUEUE: usize = 16 * 1024;
/// How long the writer waits between batches (the longest a line waits before `write`).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

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
    // Not `stdout().lock()`: the diagnostics writer shares stdout, and a lock held for
    // the thread's life would block it for good. `Stdout` locks once per flushed batch.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
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
        // Let lines collect before the next write: a worker whose send finds the writer
        // asleep here wakes nobody, so under load the cost is one write per batch instead
        // of a thread wake-up per line.
        std::thread::sleep(BATCH_PAUSE);
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

/// The target of access-log events.
pub const TARGET: &str = "ficus::access";

static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Chooses JSON or logfmt lines (follows reloads).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// The `tracing` layer that turns `ficus::access` events into lines.
pub struct AccessLayer;

struct LineVisitor {
    out: String,
    json: bool,
}

impl LineVisitor {
    fn key(&mut self, name: &str) {
        if self.json {
            self.out.push_str(",\"");
            self.out.push_str(name);
            self.out.push_str("\":");
        } else {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push('=');
        }
    }
    fn string(&mut self, name: &str, v: &str) {
        self.key(name);
        if self.json {
            json_str(&mut self.out, v);
        } else {
            text_val(&mut self.out, v);
        }
    }
}

impl tracing::field::Visit for LineVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.string(field.name(), value);
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.key(field.name());
        // Three decimals with integer arithmetic (float formatting is slow).
        if value.is_finite() && value.abs() < 1e12 {
            let thousandths = (value * 1000.0).round() as i64;
            if thousandths < 0 {
                self.out.push('-');
            }
            let t = thousandths.unsigned_abs();
            let _ = write!(self.out, "{}", t / 1000);
            let frac = t % 1000;
            if frac != 0 {
                self.out.push('.');
                self.out.push((b'0' + (frac / 100) as u8) as char);
                if !frac.is_multiple_of(100) {
                    self.out.push((b'0' + (frac / 10 % 10) as u8) as char);
                    if !frac.is_multiple_of(10) {
                        self.out.push((b'0' + (frac % 10) as u8) as char);
                    }
                }
            }
        } else {
            self.out.push_str("null");
        }
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field.name());
        self.out.push_str(if value { "true" } else { "false" });
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; format once into a small buffer, then quote.
        let mut tmp = String::with_capacity(48);
        let _ = write!(tmp, "{value:?}");
        if field.name() == "message" {
            return;
        }
        self.string(field.name(), &tmp);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != TARGET {
            return;
        }
        let json = JSON.load(Ordering::Relaxed);
        let mut v = LineVisitor {
            out: String::with_capacity(512),
            json,
        };
        if json {
            v.out.push_str("{\"ts\":\"");
            timestamp(&mut v.out);
            v.out.push('"');
        } else {
            timestamp(&mut v.out);
            v.out.push_str(" access");
        }
        event.record(&mut v);
        if json {
            v.out.push('}');
        }
        v.out.push('\n');
        emit(v.out);
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date library.
fn timestamp(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // The date and time of day change once a second: format them once per second and
    // thread, then append the milliseconds.
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = now.as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1.clear();
            format_seconds(&mut c.1, secs);
            c.0 = secs;
        }
        out.push_str(&c.1);
    });
    let ms = now.subsec_millis();
    out.push('.');
    out.push((b'0' + (ms / 100) as u8) as char);
    out.push((b'0' + (ms / 10 % 10) as u8) as char);
    out.push((b'0' + (ms % 10) as u8) as char);
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch.
fn format_seconds(out: &mut String, secs: u64) {
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
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Almost every value needs no escaping: copy it in one go.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn capture(json: bool) -> String {
        // Format through a visitor directly (the global writer goes to stdout).
        let mut v = LineVisitor {
            out: String::new(),
            json,
        };
        v.string("path", "/a\"b c");
        tracing::field::Visit::record_u64(&mut v, &field("status"), 200);
        v.out
    }

    fn field(name: &'static str) -> tracing::field::Field {
        struct C;
        static CS: C = C;
        impl tracing::Callsite for C {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                &META
            }
        }
        static META: tracing::Metadata<'static> = tracing::Metadata::new(
            "t",
            "t",
            tracing::Level::INFO,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&["status", "path"], tracing::callsite::Identifier(&CS)),
            tracing::metadata::Kind::EVENT,
        );
        META.fields().field(name).expect("field exists")
    }

    #[test]
    fn fields_are_quoted_and_escaped() {
        assert_eq!(capture(true), ",\"path\":\"/a\\\"b c\",\"status\":200");
        assert_eq!(capture(false), " path=\"/a\\\"b c\" status=200");
    }

    #[test]
    fn layer_ignores_other_targets() {
        let sub = tracing_subscriber::registry().with(AccessLayer);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "other", x = 1, "not an access line");
        });
        assert_eq!(dropped(), 0);
    }

    #[test]
    fn numbers_format_like_display() {
        for (v, want) in [
            (1.5, "1.5"),
            (2.0, "2"),
            (0.125, "0.125"),
            (12.3456, "12.346"),
            (-1.0, "-1"),
        ] {
            let mut l = LineVisitor {
                out: String::new(),
                json: true,
            };
            tracing::field::Visit::record_f64(&mut l, &field("status"), v);
            assert_eq!(l.out, format!(",\"status\":{want}"));
        }
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
