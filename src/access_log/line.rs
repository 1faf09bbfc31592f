//! One access log line, written straight from typed fields into a byte buffer.
//!
//! Field order and spelling are the documented format (docs/configuration.md, "Logs"):
//! logfmt starts with the timestamp and the word `access`, JSON with `"ts"`. Numbers,
//! addresses and the timestamp are written without `core::fmt` where that is the hot
//! part (the formatting machinery cost more than the rest of the line together).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The line's syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-05T17:00:00.000Z access request_id=... method=GET ...`
    Text,
    /// `{"ts":"2026-12-05T17:00:00.000Z","request_id":"...",...}`
    Json,
}

/// Everything one line says about a finished request.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The normalized path (`\0` stands for an encoded slash and is written as `%2F`),
    /// or the raw target of an unrouted request.
    pub path: &'a [u8],
    pub status: u16,
    pub route: &'a str,
    pub service: &'a str,
    pub side: &'a str,
    pub instance: Option<SocketAddr>,
    pub client_ip: Option<IpAddr>,
    pub bytes: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub attempts: u32,
    pub fallback: bool,
    pub trace_id: &'a str,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub error: &'a str,
    pub detail: &'a str,
}

impl Fields<'_> {
    /// The line as a `tracing` event (target [`super::TARGET`]), for subscribers other
    /// than ficus's own.
    pub fn event(&self) {
        let path = String::from_utf8_lossy(self.path).replace('\0', "%2F");
        tracing::info!(
            target: super::TARGET,
            request_id = self.request_id,
            method = self.method,
            path = path.as_str(),
            status = self.status,
            route = self.route,
            service = self.service,
            side = self.side,
            instance = %Dash(self.instance),
            client_ip = %Dash(self.client_ip),
            bytes = self.bytes,
            duration_ms = self.duration.as_secs_f64() * 1000.0,
            upstream_ms = self.upstream.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
            attempts = self.attempts,
            fallback = self.fallback,
            trace_id = self.trace_id,
            subject = self.subject,
            client_id = self.client_id,
            error = self.error,
            detail = self.detail,
        );
    }
}

/// A value, or `-` when there is none.
struct Dash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Dash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A field's name with what precedes it and follows it, for both formats.
#[derive(Clone, Copy)]
struct Key {
    json: &'static [u8],
    text: &'static [u8],
}

macro_rules! key {
    ($name:literal) => {
        Key {
            json: concat!(",\"", $name, "\":").as_bytes(),
            text: concat!(" ", $name, "=").as_bytes(),
        }
    };
}

/// Appends the line for `f`, ending with `\n`.
pub fn write(out: &mut Vec<u8>, format: Format, f: &Fields<'_>) {
    let mut w = Line { out, format };
    match format {
        Format::Json => {
            w.out.extend_from_slice(b"{\"ts\":\"");
            timestamp(w.out);
            w.out.push(b'"');
        }
        Format::Text => {
            timestamp(w.out);
            w.out.extend_from_slice(b" access");
        }
    }
    w.str(key!("request_id"), f.request_id);
    w.str(key!("method"), f.method);
    w.path(f.path);
    w.key(key!("status"));
    push_u64(w.out, u64::from(f.status));
    w.str(key!("route"), f.route);
    w.str(key!("service"), f.service);
    w.str(key!("side"), f.side);
    w.key(key!("instance"));
    match f.instance {
        Some(SocketAddr::V4(a)) => {
            w.open();
            push_ipv4(w.out, a.ip().octets());
            w.out.push(b':');
            push_u64(w.out, u64::from(a.port()));
            w.close();
        }
        Some(a) => w.display(a),
        None => w.dash(),
    }
    w.key(key!("client_ip"));
    match f.client_ip {
        Some(IpAddr::V4(a)) => {
            w.open();
            push_ipv4(w.out, a.octets());
            w.close();
        }
        Some(a) => w.display(a),
        None => w.dash(),
    }
    w.key(key!("bytes"));
    push_u64(w.out, f.bytes);
    w.key(key!("duration_ms"));
    push_millis(w.out, f.duration);
    w.key(key!("upstream_ms"));
    match f.upstream {
        Some(d) => push_millis(w.out, d),
        None => w.out.extend_from_slice(b"-1"),
    }
    w.key(key!("attempts"));
    push_u64(w.out, u64::from(f.attempts));
    w.key(key!("fallback"));
    w.out
        .extend_from_slice(if f.fallback { b"true" } else { b"false" });
    w.str(key!("trace_id"), f.trace_id);
    w.str(key!("subject"), f.subject);
    w.str(key!("client_id"), f.client_id);
    w.str(key!("error"), f.error);
    w.str(key!("detail"), f.detail);
    if format == Format::Json {
        w.out.push(b'}');
    }
    w.out.push(b'\n');
}

struct Line<'b> {
    out: &'b mut Vec<u8>,
    format: Format,
}

impl Line<'_> {
    fn key(&mut self, k: Key) {
        self.out.extend_from_slice(match self.format {
            Format::Json => k.json,
            Format::Text => k.text,
        });
    }

    /// Opens a value known to need no escaping (quoted in JSON, bare in logfmt).
    fn open(&mut self) {
        if self.format == Format::Json {
            self.out.push(b'"');
        }
    }

    fn close(&mut self) {
        self.open();
    }

    fn dash(&mut self) {
        self.open();
        self.out.push(b'-');
        self.close();
    }

    /// An address formatted by `Display` (IPv6: rare enough for `core::fmt`).
    fn display(&mut self, v: impl std::fmt::Display) {
        let mut s = String::with_capacity(48);
        let _ = write!(s, "{v}");
        self.open();
        self.out.extend_from_slice(s.as_bytes());
        self.close();
    }

    fn str(&mut self, k: Key, v: &str) {
        self.key(k);
        self.value(v.as_bytes(), false);
    }

    fn path(&mut self, p: &[u8]) {
        self.key(key!("path"));
        match std::str::from_utf8(p) {
            Ok(s) => self.value(s.as_bytes(), true),
            Err(_) => {
                let s = String::from_utf8_lossy(p);
                self.value(s.as_bytes(), true);
            }
        }
    }

    /// A string value: logfmt leaves it bare when it is safe to, otherwise (and always
    /// in JSON) it is quoted with JSON escapes. `slash`: `\0` stands for `%2F`.
    fn value(&mut self, v: &[u8], slash: bool) {
        // One pass collects what the bytes need: escapes, quotes in logfmt, `%2F`.
        let need = v.iter().fold(0u8, |acc, b| acc | CLASS[usize::from(*b)]);
        // Outside a path a `\0` is a control character like any other (a claim may hold
        // one): escaped, never written raw.
        let need = match slash {
            true => need,
            false if need & SLASH != 0 => (need & !SLASH) | ESCAPE,
            false => need,
        };
        // Only a value with a non-ASCII byte is looked at character by character, for
        // the C1 and bidi controls a terminal would act on.
        let need = if need & WIDE != 0 && has_control(v) {
            need | ESCAPE
        } else {
            need
        };
        if self.format == Format::Text && need & (ESCAPE | QUOTE) == 0 && !v.is_empty() {
            self.extend_with_slashes(v, need);
            return;
        }
        self.out.push(b'"');
        if need & ESCAPE == 0 {
            self.extend_with_slashes(v, need);
        } else {
            escape(self.out, v, slash);
        }
        self.out.push(b'"');
    }

    fn extend_with_slashes(&mut self, v: &[u8], need: u8) {
        if need & SLASH == 0 {
            self.out.extend_from_slice(v);
            return;
        }
        for &b in v {
            match b {
                0 => self.out.extend_from_slice(b"%2F"),
                b => self.out.push(b),
            }
        }
    }
}

/// JSON must escape the byte (and so must logfmt, which then quotes).
const ESCAPE: u8 = 1;
/// logfmt must quote a value with this byte (space, `=`, non-ASCII).
const QUOTE: u8 = 2;
/// The byte is `\0`, which a path writes as `%2F` (and which JSON would escape).
const SLASH: u8 = 4;
/// The byte is part of a non-ASCII character, which may be a control ([`control_at`]).
const WIDE: u8 = 8;

/// What each byte needs, by value. DEL is escaped like the C0 controls: a terminal
/// acts on it.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b == 0 {
            SLASH
        } else if b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f {
            ESCAPE
        } else if b >= 0x80 {
            QUOTE | WIDE
        } else if b == b' ' || b == b'=' {
            QUOTE
        } else {
            0
        };
        i += 1;
    }
    t
};

/// The control character starting at `v[i]`, if any, with its length in bytes: a C1
/// control (U+0080–U+009F, e.g. U+0085 NEL, a line break for some viewers), a bidi
/// mark, embedding, override or isolate (U+061C, U+200E/F, U+202A–U+202E,
/// U+2066–U+2069: they reorder the rest of a line on screen, a log-spoofing trick) or
/// the line and paragraph separators U+2028/U+2029. Matched on the UTF-8 bytes, no
/// decoding; `v` is valid UTF-8, so a lead byte is never mistaken for a continuation.
fn control_at(v: &[u8], i: usize) -> Option<(u32, usize)> {
    match *v.get(i..)? {
        [0xc2, b @ 0x80..=0x9f, ..] => Some((u32::from(b), 2)),
        [0xd8, 0x9c, ..] => Some((0x061c, 2)),
        [0xe2, 0x80, b @ (0x8e | 0x8f | 0xa8..=0xae), ..] => {
            Some((0x2000 + u32::from(b - 0x80), 3))
        }
        [0xe2, 0x81, b @ 0xa6..=0xa9, ..] => Some((0x2040 + u32::from(b - 0x80), 3)),
        _ => None,
    }
}

/// `v` with JSON's escapes (`slash`: `\0` stands for `%2F`): quotes, backslashes and
/// every control character [`CLASS`] and [`control_at`] name.
fn escape(out: &mut Vec<u8>, v: &[u8], slash: bool) {
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        i += 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 if slash => out.extend_from_slice(b"%2F"),
            b if b < 0x20 || b == 0x7f => push_unicode_escape(out, u32::from(b)),
            b if b >= 0x80 => match control_at(v, i - 1) {
                Some((c, len)) => {
                    push_unicode_escape(out, c);
                    i += len - 1;
                }
                None => out.push(b),
            },
            b => out.push(b),
        }
    }
}

/// Whether `v` holds a character [`control_at`] escapes: only the three lead bytes such a
/// character can start with are looked at further.
fn has_control(v: &[u8]) -> bool {
    v.iter()
        .enumerate()
        .any(|(i, b)| matches!(b, 0xc2 | 0xd8 | 0xe2) && control_at(v, i).is_some())
}

/// `\uXXXX`, a JSON escape that logfmt readers of ficus's lines also understand.
fn push_unicode_escape(out: &mut Vec<u8>, c: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[(c >> shift & 15) as usize]);
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_ipv4(out: &mut Vec<u8>, o: [u8; 4]) {
    for (i, b) in o.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from(b));
    }
}

/// Milliseconds with up to three decimals, trailing zeros dropped (`1.5`, `2`, `0.125`).
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    // Microseconds, rounded to the nearest: the third decimal of a millisecond.
    let micros = (d.as_nanos() + 500) / 1000;
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    let frac = micros % 1000;
    if frac != 0 {
        out.push(b'.');
        out.push(b'0' + (frac / 100) as u8);
        if !frac.is_multiple_of(100) {
            out.push(b'0' + (frac / 10 % 10) as u8);
            if !frac.is_multiple_of(10) {
                out.push(b'0' + (frac % 10) as u8);
            }
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date library.
fn timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    stamp(out, now);
}

fn stamp(out: &mut Vec<u8>, now: Duration) {
    // The date and time of day change once a second: format them once per second and
    // thread, then append the milliseconds.
    thread_local! {
        static CACHE: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let secs = now.as_secs();
    let (cached, mut text) = CACHE.get();
    if cached != secs {
        text = format_seconds(secs);
        CACHE.set((secs, text));
    }
    out.extend_from_slice(&text);
    let ms = now.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch (years 0 to 9999).
fn format_seconds(secs: u64) -> [u8; 19] {
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
    let y = (yoe + era * 400 + i64::from(m <= 2)).clamp(0, 9999) as u64;
    let digit = |v: u64| b'0' + (v % 10) as u8;
    let (h, min, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    let (m, d) = (m as u64, d as u64);
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
        b'T',
        digit(h / 10),
        digit(h),
        b':',
        digit(min / 10),
        digit(min),
        b':',
        digit(s / 10),
        digit(s),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, f: &Fields<'_>) -> String {
        let mut out = Vec::new();
        write(&mut out, format, f);
        String::from_utf8(out).expect("lines are UTF-8")
    }

    fn sample() -> Fields<'static> {
        Fields {
            request_id: "abc",
            method: "GET",
            path: b"/a\"b c",
            status: 200,
            route: "r",
            service: "s",
            instance: Some("127.0.0.1:8080".parse().expect("addr")),
            client_ip: Some("10.1.2.3".parse().expect("ip")),
            bytes: 12,
            duration: Duration::from_micros(1500),
            attempts: 1,
            trace_id: "0af7",
            ..Fields::default()
        }
    }

    #[test]
    fn text_fields_are_bare_or_quoted_and_escaped() {
        let l = line(Format::Text, &sample());
        let rest = l.split_once(" access ").expect("prefix").1;
        assert_eq!(
            rest,
            "request_id=abc method=GET path=\"/a\\\"b c\" status=200 route=r service=s \
             side=\"\" instance=127.0.0.1:8080 client_ip=10.1.2.3 bytes=12 duration_ms=1.5 \
             upstream_ms=-1 attempts=1 fallback=false trace_id=0af7 subject=\"\" \
             client_id=\"\" error=\"\" detail=\"\"\n"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_every_field() {
        let mut f = sample();
        f.detail = "line\nbreak\t\u{1} and \\";
        f.instance = None;
        f.client_ip = Some("2001:db8::1".parse().expect("ip"));
        f.upstream = Some(Duration::from_nanos(2_000_400));
        f.fallback = true;
        let l = line(Format::Json, &f);
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(v["path"], "/a\"b c");
        assert_eq!(v["status"], 200);
        assert_eq!(v["instance"], "-");
        assert_eq!(v["client_ip"], "2001:db8::1");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], 2);
        assert_eq!(v["fallback"], true);
        assert_eq!(v["detail"], "line\nbreak\t\u{1} and \\");
        assert_eq!(v.as_object().map(|o| o.len()), Some(20));
    }

    #[test]
    fn a_nul_outside_the_path_is_escaped_in_both_formats() {
        let mut f = sample();
        f.subject = "a\0b";
        let l = line(Format::Json, &f);
        assert!(!l.as_bytes().contains(&0), "a raw NUL in {l:?}");
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(v["subject"], "a\0b");
        let t = line(Format::Text, &f);
        assert!(t.contains(" subject=\"a\\u0000b\" "), "{t:?}");
    }

    #[test]
    fn del_c1_and_bidi_controls_are_escaped_in_both_formats() {
        for (value, escaped) in [
            ("a\u{7f}b", "a\\u007fb"),
            ("a\u{85}b", "a\\u0085b"),
            ("a\u{80}\u{9f}b", "a\\u0080\\u009fb"),
            ("a\u{202e}b", "a\\u202eb"),
            (
                "a\u{202a}\u{202b}\u{202c}\u{202d}b",
                "a\\u202a\\u202b\\u202c\\u202db",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u2066\\u2067\\u2068\\u2069",
            ),
            ("a\u{2028}b\u{2029}", "a\\u2028b\\u2029"),
            ("\u{200e}\u{200f}\u{61c}", "\\u200e\\u200f\\u061c"),
            // Printable non-ASCII around a control stays as it is.
            (
                "caf\u{e9} \u{202e}\u{2027}\u{a0}",
                "caf\u{e9} \\u202e\u{2027}\u{a0}",
            ),
        ] {
            let mut f = sample();
            f.subject = value;
            f.path = value.as_bytes();
            let l = line(Format::Json, &f);
            let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
            assert_eq!(v["subject"], value, "{l:?}");
            assert_eq!(v["path"], value, "{l:?}");
            let t = line(Format::Text, &f);
            for line in [&l, &t] {
                assert!(
                    !line.chars().any(|c| c == '\u{7f}'
                        || ('\u{80}'..='\u{9f}').contains(&c)
                        || ('\u{2028}'..='\u{202e}').contains(&c)
                        || ('\u{2066}'..='\u{2069}').contains(&c)
                        || ['\u{200e}', '\u{200f}', '\u{61c}'].contains(&c)),
                    "a raw control in {line:?}"
                );
            }
            assert!(t.contains(&format!(" subject=\"{escaped}\" ")), "{t:?}");
            assert!(t.contains(&format!(" path=\"{escaped}\" ")), "{t:?}");
        }
    }

    #[test]
    fn printable_non_ascii_is_quoted_but_not_escaped() {
        let mut f = sample();
        f.subject = "caf\u{e9}\u{2027}\u{a0}\u{2070}";
        let t = line(Format::Text, &f);
        assert!(
            t.contains(" subject=\"caf\u{e9}\u{2027}\u{a0}\u{2070}\" "),
            "{t:?}"
        );
    }

    #[test]
    fn encoded_slashes_and_invalid_utf8_in_paths() {
        let mut f = sample();
        f.path = b"/a\0b";
        assert!(line(Format::Text, &f).contains(" path=/a%2Fb "));
        f.path = b"/a\0b c";
        assert!(line(Format::Text, &f).contains(" path=\"/a%2Fb c\" "));
        f.path = b"/caf\xe9";
        let l = line(Format::Json, &f);
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(v["path"], "/caf\u{fffd}");
    }

    #[test]
    fn millis_keep_up_to_three_decimals() {
        for (d, want) in [
            (Duration::from_micros(1500), "1.5"),
            (Duration::from_millis(2), "2"),
            (Duration::from_micros(125), "0.125"),
            (Duration::from_nanos(12_345_600), "12.346"),
            (Duration::ZERO, "0"),
        ] {
            let mut out = Vec::new();
            push_millis(&mut out, d);
            assert_eq!(String::from_utf8(out).expect("ascii"), want);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        let mut out = Vec::new();
        stamp(&mut out, Duration::from_millis(1_733_421_600_007));
        assert_eq!(out, b"2024-12-05T18:00:00.007Z");
        out.clear();
        stamp(&mut out, Duration::from_millis(951_782_400_999));
        assert_eq!(out, b"2000-02-29T00:00:00.999Z");
    }
}
