//! Admission: the checks a request head must pass before it is routed (size limits, one
//! sound `Host`, `Connection`, and body framing). Pure functions of the head and the
//! limits, so `ficus explain` runs the very same checks.

use pingora_http::RequestHeader;

use super::error::GatewayError;
use super::headers;
use crate::config::Limits;

/// Whether the gateway accepts this request head at all.
pub fn admit(req: &RequestHeader, limits: &Limits) -> Result<(), GatewayError> {
    let target = req.raw_path();
    if target.len() > limits.max_uri_bytes {
        return Err(GatewayError::UriTooLong);
    }
    // An absolute-form target may only name what the gateway serves: `http` or `https`
    // (`ftp://host/x` would otherwise be routed on its path as if it were a web request).
    if target.first() != Some(&b'/') {
        if let Some(end) = target.windows(3).position(|w| w == b"://") {
            let scheme = &target[..end];
            if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
                return Err(GatewayError::BadRequest);
            }
            // ... and a host (`http://:80/x` names none).
            let authority = headers::absolute_target_authority(target).unwrap_or_default();
            if authority.is_empty() || authority.first() == Some(&b':') {
                return Err(GatewayError::BadRequest);
            }
        }
    }
    if req.headers.len() > limits.max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    if !host_is_sound(req) || !headers::connection_is_sound(&req.headers) {
        return Err(GatewayError::BadRequest);
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    // One `Content-Length` line: two, even equal ones, are refused (as nginx does), an
    // upstream could read them differently. (Next to `Transfer-Encoding` pingora has
    // already dropped it: see `raw_has_content_length`.)
    let mut cl = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (cl.next(), cl.next()) {
        (None, _) => {}
        (Some(len), None) => {
            if content_length(len.as_bytes())? > limits.max_body_bytes {
                return Err(GatewayError::BodyTooLarge);
            }
        }
        _ => return Err(GatewayError::BadRequest),
    }
    // Only one plain `chunked` is forwarded: any other coding (or `chunked` twice, in
    // two header lines) would reach the upstream as something pingora did not frame.
    let mut te = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    match (te.next(), te.next()) {
        (None, _) => {}
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => {}
        _ => return Err(GatewayError::UnsupportedTransferCoding),
    }
    Ok(())
}

/// Whether an HTTP/1 head as received (`raw`, the header section's bytes) has a
/// `Content-Length` line. pingora drops `Content-Length` from a head that also has
/// `Transfer-Encoding` (RFC 9112 §6.3) before the gateway sees it, so the pair is found
/// in the bytes; called only for requests with `Transfer-Encoding`.
pub fn raw_has_content_length(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length";
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > NAME.len()
            && line[..NAME.len()].eq_ignore_ascii_case(NAME)
            && matches!(line[NAME.len()], b':' | b' ' | b'\t')
    })
}

/// Whether a refusal leaves the connection reusable: not after one whose body framing is
/// doubtful (or whose body is too large to read).
pub fn keeps_connection(e: GatewayError) -> bool {
    !matches!(
        e,
        GatewayError::BodyTooLarge
            | GatewayError::BadRequest
            | GatewayError::UnsupportedTransferCoding
    )
}

/// A `Content-Length` must be one plain decimal number. RFC 9110 §8.6 lets a recipient
/// either refuse a list like `5, 5` or forward one number in its place; pingora forwards
/// the list unchanged, which an upstream could read differently, so it is refused.
fn content_length(v: &[u8]) -> Result<u64, GatewayError> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(GatewayError::BadRequest);
    }
    // Twenty digits or more overflow; no body is that large.
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(GatewayError::BodyTooLarge)
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one `Host` (unless its target carries
/// the authority), and its value must be a plain `host[:port]`. A gateway that let the
/// others through would route on one reading of the host while the upstream sees another.
fn host_is_sound(req: &RequestHeader) -> bool {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => false,
        // An absolute-form target names the host itself; a `Host` that says otherwise
        // would have the upstream serve another site than the one routed on (pingora
        // refuses this for HTTP/1.1; HTTP/1.0 gets the same rule here).
        (Some(h), None) => {
            headers::host_value_is_sound(h.as_bytes())
                && headers::absolute_target_authority(req.raw_path())
                    .is_none_or(|a| a.eq_ignore_ascii_case(h.as_bytes()))
        }
        // HTTP/2 `:authority`, or an HTTP/1.0 absolute-form target without `Host`: the same
        // rules for the authority it carries.
        (None, _) => match req.uri.authority() {
            Some(a) => headers::host_value_is_sound(a.as_str().as_bytes()),
            None if req.version == http::Version::HTTP_11 => false,
            None => headers::absolute_target_authority(req.raw_path())
                .is_none_or(headers::host_value_is_sound),
        },
    }
}

#[cfg(test)]
mod raw_tests {
    use super::raw_has_content_length;

    #[test]
    fn content_length_lines_are_found_in_the_raw_head_only_as_header_names() {
        let with = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\ncOnTeNt-LeNgTh: 5\r\n\r\n";
        assert!(raw_has_content_length(with));
        assert!(raw_has_content_length(
            b"POST / HTTP/1.1\r\nContent-Length : 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!raw_has_content_length(
            b"POST /content-length: HTTP/1.1\r\nHost: t\r\nX-A: content-length: 5\r\nContent-Lengthy: 1\r\n\r\n"
        ));
    }
}
