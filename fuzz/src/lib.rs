//! Shared pieces of the fuzz targets: reading a request head the way pingora's HTTP/1
//! server does, and the fixtures the targets compile once.

use pingora_http::RequestHeader;
use std::path::{Path, PathBuf};

/// The most header lines pingora's HTTP/1 server parses (its `MAX_HEADERS`).
const MAX_HEADERS: usize = 256;

/// A request head parsed as pingora's HTTP/1 server parses it (httparse, then
/// `RequestHeader::build`, the headers appended as received, and `Content-Length` dropped
/// beside `Transfer-Encoding`), with the length of the head. `None` when pingora would
/// refuse the head (or it is incomplete). pingora's retry with an escaped request line is
/// not imitated: such targets are simply refused here.
pub fn parse_head(buf: &[u8]) -> Option<(RequestHeader, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut head = RequestHeader::build(
        req.method.unwrap_or(""),
        req.path.unwrap_or("").as_bytes(),
        Some(req.headers.len()),
    )
    .ok()?;
    head.set_version(match req.version {
        Some(1) => http::Version::HTTP_11,
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_09,
    });
    for h in req.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(h.value).ok()?;
        head.append_header(name, value).ok()?;
    }
    if head.headers.contains_key(http::header::TRANSFER_ENCODING) {
        head.remove_header(&http::header::CONTENT_LENGTH);
    }
    Some((head, len))
}

/// A file under `fuzz/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The config the routing target matches against, compiled once.
pub fn routing_config() -> ficus::config::Config {
    let path = fixture("routes.toml");
    match ficus::config::load(&path) {
        Ok(c) => c,
        // The fixture is part of the fuzz crate: a broken one is a setup error, reported
        // with the compiler's own messages.
        Err(e) => panic!("{}: {e:?}", path.display()),
    }
}
