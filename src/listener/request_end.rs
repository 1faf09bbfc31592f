//! Where an HTTP/1 request ends in bytes read ahead of it.
//!
//! The request-head layer reads more than one request's bytes when a client pipelines.
//! The proxy must see one request at a time (pingora would otherwise drop the rest and
//! leave the client waiting for answers that never come), so this module tells from the
//! head's framing headers how many of the bytes read belong to the current request. It
//! only splits; the proxy validates the framing.

/// What of the bytes read goes to the proxy now: the head, and when the request has a body
/// as much of it as was read, up to its end. Bytes after the request (a pipelined next
/// request) stay in `buf` as the start of the next round, and the proxy sees one request
/// at a time (pingora would otherwise drop them and leave the client waiting for answers
/// that never come). When where the body ends cannot be told from the bytes at hand
/// (chunked framing not complete yet, or framing the proxy will refuse), everything goes.
pub fn to_proxy_now(buf: &[u8], end: usize) -> usize {
    if end == buf.len() {
        return end;
    }
    let body_end = match body_framing(&buf[..end]) {
        Framing::None => Some(end),
        Framing::Length(n) => usize::try_from(n).ok().and_then(|n| end.checked_add(n)),
        Framing::Chunked => chunked_end(&buf[end..]).map(|n| end + n),
        Framing::Unknown => None,
    };
    body_end.map_or(buf.len(), |e| e.min(buf.len()))
}

/// How many bytes the request whose complete head is `head` takes on the connection, head
/// and body, when that is known before the body is read: `None` for a chunked or unclear
/// body, and for `CONNECT` and upgrades (after them the connection carries another
/// protocol).
pub fn request_len(head: &[u8]) -> Option<u64> {
    if head.starts_with(b"CONNECT ") {
        return None;
    }
    let (framing, upgrade) = scan(head);
    if upgrade {
        return None;
    }
    let head_len = u64::try_from(head.len()).ok()?;
    match framing {
        Framing::None => Some(head_len),
        Framing::Length(n) => head_len.checked_add(n),
        Framing::Chunked | Framing::Unknown => None,
    }
}

/// How a request head says its body is framed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Something the proxy will look at more closely (and maybe refuse).
    Unknown,
}

/// Reads the framing headers of a request head (only as far as needed to split a pipelined
/// request off; the proxy validates them).
pub(crate) fn body_framing(head: &[u8]) -> Framing {
    scan(head).0
}

/// The body's framing and whether the head asks for an upgrade, in one pass over the
/// fields. Only the names' lengths and first bytes are looked at for most fields: a
/// kilobyte-long token costs a `memchr` over it, not a byte-by-byte loop.
fn scan(head: &[u8]) -> (Framing, bool) {
    let mut framing = Framing::None;
    let mut upgrade = false;
    for (name, value) in head_fields(head) {
        match name.len() {
            7 if name.eq_ignore_ascii_case(b"upgrade") => upgrade = true,
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                framing = match (framing, n) {
                    (Framing::None, Some(n)) => Framing::Length(n),
                    _ => Framing::Unknown,
                };
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                framing = match framing {
                    Framing::None if value.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                    _ => Framing::Unknown,
                };
            }
            _ => {}
        }
    }
    (framing, upgrade)
}

/// The `name: value` fields of a raw request head (values trimmed), without parsing it:
/// lines found with `memchr`, the request line skipped, lines without a colon left out.
pub fn head_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = memchr::memchr(b'\n', head).map_or(&[][..], |i| &head[i + 1..]);
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = next;
        if let Some(colon) = memchr::memchr(b':', line) {
            return Some((&line[..colon], line[colon + 1..].trim_ascii()));
        }
    })
}

/// Where a chunked body that starts at `body[0]` ends, if all of it is there: its chunks,
/// the last (zero) chunk and the trailer section.
pub(crate) fn chunked_end(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + memchr::memchr(b'\n', body.get(at..)?)?;
        let line = body[at..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&body[at..line_end]);
        let digits = line.split(|&b| b == b';').next()?.trim_ascii();
        if digits.is_empty() || digits.len() > 15 {
            return None;
        }
        let size = usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        at = line_end + 1;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let line_end = at + memchr::memchr(b'\n', body.get(at..)?)?;
                let empty = line_end == at || (line_end == at + 1 && body[at] == b'\r');
                at = line_end + 1;
                if empty {
                    return Some(at);
                }
            }
        }
        // The data, then its CRLF.
        at = at.checked_add(size)?;
        match body.get(at..)? {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::head::head_end;

    #[test]
    fn pipelined_requests_without_bodies_are_split_off() {
        let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let end = head_end(two).unwrap();
        assert_eq!(to_proxy_now(two, end), 28, "only the first request");
        let rest = &two[28..];
        assert_eq!(to_proxy_now(rest, head_end(rest).unwrap()), rest.len());
        // With a body: the head and the body, and the next request stays.
        let post =
            b"POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        let end = head_end(post).unwrap();
        assert_eq!(to_proxy_now(post, end), end + 3);
        // Only part of the body read yet: all of it goes.
        assert_eq!(to_proxy_now(&post[..end + 2], end), end + 2);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let end = head_end(chunked).unwrap();
        assert_eq!(to_proxy_now(chunked, end), chunked.len() - 18);
        // An incomplete chunked body, or framing the proxy will refuse: everything.
        let cut = &chunked[..chunked.len() - 22];
        assert_eq!(to_proxy_now(cut, end), cut.len());
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(to_proxy_now(both, head_end(both).unwrap()), both.len());
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(to_proxy_now(bad, head_end(bad).unwrap()), bad.len());
    }

    #[test]
    fn a_request_length_is_known_for_sized_bodies_only() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(request_len(get), Some(get.len() as u64));
        let post = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(request_len(post), Some(post.len() as u64 + 10));
        assert_eq!(
            request_len(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
        assert_eq!(
            request_len(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            None
        );
        assert_eq!(request_len(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn head_fields_match_a_plain_split() {
        let plain = |head: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            head.split(|&b| b == b'\n')
                .skip(1)
                .filter_map(|line| {
                    let colon = line.iter().position(|&b| b == b':')?;
                    Some((
                        line[..colon].to_vec(),
                        line[colon + 1..].trim_ascii().to_vec(),
                    ))
                })
                .collect()
        };
        let heads: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1:2\r\n\r\n",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\n",
            b"GET / HTTP/1.1\nno colon\n:empty name\nA:\n\n\nB: last",
            b"",
            b"\n\n:\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nUpgrade: h2c\r\n\r\nbody:x",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        ];
        for head in heads {
            let got: Vec<_> = head_fields(head)
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(got, plain(head), "{:?}", String::from_utf8_lossy(head));
        }
    }
}
