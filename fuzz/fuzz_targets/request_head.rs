//! The request-head layer: the bytes a client sends on an HTTP/1 connection, scanned the
//! way `listener::head` scans them (skip empty lines, find the end of the head,
//! refuse oversized heads, split off pipelined requests by their body framing), and each
//! head then read by pingora's parser and judged by the proxy's admission checks.
//!
//! The first two bytes choose the limits (small ones, so that the size refusals are
//! reached). Checked, besides "no panic":
//! - the end of a head is just past an empty line and within the bytes read;
//! - a head with no end within the size limit is always refused;
//! - what goes to the proxy as one request is the head and no more than the bytes read,
//!   and when a pipelined request is left over, exactly the body its framing declares;
//! - the answer to a long head does not depend on where the bytes were cut: a request
//!   line found too long at any cut is found too long in the whole head;
//! - pingora's parser ends a head where the head layer does.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

use ficus::config::Limits;
use ficus::fuzzing::{
    body_framing, chunked_end, client_request_id, head_end, head_violation, skip_empty_lines,
    to_proxy_now, BodyFraming,
};
use ficus::proxy::admission::{admit, raw_has_content_length};
use ficus::proxy::error::GatewayError;

/// A TLS handshake record's first byte: the head layer closes such a connection at once.
const TLS_HANDSHAKE: u8 = 0x16;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    // Direct: any bytes as a chunked body.
    if let Some(n) = chunked_end(rest) {
        assert!(
            n <= rest.len(),
            "chunked body ends at {n} of {}",
            rest.len()
        );
    }
    let limits = Limits {
        max_headers: 1 + usize::from(*a % 32),
        max_uri_bytes: 1 + usize::from(*b),
        max_header_bytes: 512,
        ..Limits::default()
    };
    // The head layer's size limit (the gateway uses twice `max_header_bytes`, at least 64
    // KiB; smaller here so that inputs reach it).
    let max = 256 + usize::from(*a) * 4;
    let mut buf = BytesMut::from(rest);
    // Each round is one request of the connection, as if all bytes had arrived at once.
    loop {
        skip_empty_lines(&mut buf);
        if buf.is_empty() || buf[0] == TLS_HANDSHAKE {
            return;
        }
        let Some(end) = head_end(&buf) else {
            if buf.len() > max {
                let refusal =
                    head_violation(&buf, None, limits.max_headers, limits.max_uri_bytes, max);
                assert!(refusal.is_some(), "an oversized head was not refused");
                let _ = client_request_id(&buf);
            }
            return;
        };
        assert!(end <= buf.len());
        let head = &buf[..end];
        assert!(
            head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
            "head end {end} is not after an empty line"
        );
        let verdict = head_violation(
            &buf,
            Some(end),
            limits.max_headers,
            limits.max_uri_bytes,
            max,
        );
        // Packets cut anywhere before the end: a request line judged too long at the cut
        // (the head layer's refusal of an oversized partial head) is too long in the whole.
        for cut in [max + 1, end.saturating_sub(1)] {
            if cut > max && cut < end && head_end(&buf[..cut]).is_none() {
                let early = head_violation(
                    &buf[..cut],
                    None,
                    limits.max_headers,
                    limits.max_uri_bytes,
                    max,
                );
                if early == Some(GatewayError::UriTooLong) {
                    assert_eq!(verdict, Some(GatewayError::UriTooLong), "cut at {cut}");
                }
                // The same bytes get the same answer whether the size limit or the head's
                // end came first.
                if cut == max + 1 {
                    assert_eq!(early, verdict, "a head over the size limit, cut at {cut}");
                }
            }
        }
        if verdict.is_some() {
            let _ = client_request_id(&buf);
            return;
        }
        let n = to_proxy_now(&buf, end);
        assert!(
            end <= n && n <= buf.len(),
            "to the proxy: {n} of {} (head {end})",
            buf.len()
        );
        if n < buf.len() {
            // A pipelined request was split off: exactly after the declared body.
            match body_framing(head) {
                BodyFraming::None => assert_eq!(n, end),
                BodyFraming::Length(len) => assert_eq!(n as u64, end as u64 + len),
                BodyFraming::Chunked => assert_eq!(chunked_end(&buf[end..]), Some(n - end)),
                BodyFraming::Unknown => panic!("split off after framing it cannot read"),
            }
        }
        // The proxy's reading of the same request.
        if let Some((req, len)) = ficus_fuzz::parse_head(&buf[..n]) {
            assert_eq!(
                len, end,
                "pingora's head ends at {len}, the head layer's at {end}"
            );
            let _ = admit(&req, &limits);
            if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
                let _ = raw_has_content_length(&buf[..len]);
            }
        }
        let _ = buf.split_to(n);
    }
});
