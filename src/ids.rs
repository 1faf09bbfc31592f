//! Request ids and W3C trace context.
//!
//! Ids are random 128-bit values from a per-thread xorshift generator seeded from the OS
//! clock and thread identity: unique enough for correlation, cheap enough for every request,
//! and never a cryptographic secret.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let stack = &t as *const u64 as u64;
    splitmix(t ^ stack.rotate_left(32) ^ u64::from(std::process::id()))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A random non-zero 64-bit value.
pub fn random_u64() -> u64 {
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        splitmix(next).max(1)
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 32 random lowercase hex digits.
fn request_id_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    hex_into(&mut b[..16], random_u64());
    hex_into(&mut b[16..], random_u64());
    b
}

/// A new request id: 32 lowercase hex characters.
pub fn new_request_id() -> String {
    // Only ASCII hex digits, so always valid UTF-8.
    String::from_utf8_lossy(&request_id_bytes()).into_owned()
}

/// A new request id as a header value, built without an intermediate string.
pub fn new_request_id_value() -> http::HeaderValue {
    http::HeaderValue::from_bytes(&request_id_bytes())
        .unwrap_or_else(|_| http::HeaderValue::from_static("-"))
}

/// Whether a client-supplied request id is safe to propagate and log: 1–128 visible ASCII
/// characters, no quotes or backslashes (it ends up in JSON and log lines).
pub fn is_acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// A parsed W3C `traceparent`, kept inline (no allocation per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 32],
    flags: [u8; 2],
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids and version `ff` are invalid.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        let s = std::str::from_utf8(v).ok()?.trim();
        let mut parts = s.split('-');
        let (ver, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if ver.len() != 2 || !is_lower_hex(ver) || ver == "ff" {
            return None;
        }
        if ver == "00" && parts.next().is_some() {
            return None;
        }
        if trace.len() != 32 || !is_lower_hex(trace) || trace.bytes().all(|b| b == b'0') {
            return None;
        }
        if parent.len() != 16 || !is_lower_hex(parent) || parent.bytes().all(|b| b == b'0') {
            return None;
        }
        if flags.len() != 2 || !is_lower_hex(flags) {
            return None;
        }
        let mut t = TraceParent {
            trace_id: [0; 32],
            flags: [0; 2],
        };
        t.trace_id.copy_from_slice(trace.as_bytes());
        t.flags.copy_from_slice(flags.as_bytes());
        Some(t)
    }

    /// A new trace, sampled flag set.
    pub fn new_root() -> TraceParent {
        let mut t = TraceParent {
            trace_id: [0; 32],
            flags: *b"01",
        };
        hex_into(&mut t.trace_id[..16], random_u64());
        hex_into(&mut t.trace_id[16..], random_u64());
        t
    }

    /// The 32 lowercase hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        // Only ever filled with ASCII hex digits.
        std::str::from_utf8(&self.trace_id).unwrap_or("")
    }

    /// The header value for the upstream: same trace, a new span id for the gateway hop.
    pub fn child_header(&self) -> http::HeaderValue {
        let mut b = [0u8; 55];
        b[..3].copy_from_slice(b"00-");
        b[3..35].copy_from_slice(&self.trace_id);
        b[35] = b'-';
        hex_into(&mut b[36..52], random_u64());
        b[52] = b'-';
        b[53..].copy_from_slice(&self.flags);
        http::HeaderValue::from_bytes(&b).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// Writes `v` as 16 lowercase hex digits into `out` (which must be 16 bytes).
fn hex_into(out: &mut [u8], v: u64) {
    for (i, slot) in out.iter_mut().enumerate().take(16) {
        *slot = HEX[((v >> ((15 - i) * 4)) & 15) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(is_acceptable_request_id(b"abc-123"));
        assert!(!is_acceptable_request_id(b""));
        assert!(!is_acceptable_request_id(b"a b"));
        assert!(!is_acceptable_request_id(b"a\"b"));
        assert!(!is_acceptable_request_id(&[b'a'; 129]));
    }

    #[test]
    fn traceparent() {
        let tp =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = tp.child_header();
        let child = child.to_str().unwrap();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert!(!child.contains("00f067aa0ba902b7"));
        assert!(TraceParent::parse(child.as_bytes()).is_some());
        assert!(
            TraceParent::parse(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01")
                .is_none()
        );
        assert!(
            TraceParent::parse(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")
                .is_none()
        );
        assert!(TraceParent::parse(b"garbage").is_none());
        assert!(TraceParent::parse(TraceParent::new_root().child_header().as_bytes()).is_some());
        assert_eq!(TraceParent::new_root().trace_id().len(), 32);
    }
}
