//! Compressed answers are compared by what they say: a body with a `Content-Encoding` of
//! `gzip`, `deflate`, `br` or `zstd` is decoded first, within the copy's size bound (a
//! small body must not expand into gigabytes). Two services that compress differently,
//! or only one of them, still answer alike.

use http::header::CONTENT_ENCODING;
use http::HeaderMap;
use std::borrow::Cow;
use std::io::Read;
use thiserror::Error;

/// Why a body could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("decoded, the body is over {0} bytes")]
    TooLarge(usize),
    #[error("the body is not valid {0}")]
    Corrupt(String),
}

/// The body as its `Content-Encoding` says it reads, at most `max` bytes. A body without
/// one, or with a coding this does not know, is returned as it is.
pub fn decoded<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
    max: usize,
) -> Result<Cow<'b, [u8]>, DecodeError> {
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.is_empty() || body.is_empty() {
        return Ok(Cow::Borrowed(body));
    }
    let mut current: Cow<'b, [u8]> = Cow::Borrowed(body);
    // Codings are listed in the order they were applied: undone last first.
    for coding in codings.iter().rev() {
        let input: &[u8] = &current;
        let next = match coding.as_str() {
            "gzip" | "x-gzip" => {
                read_bounded(flate2::read::MultiGzDecoder::new(input), max, coding)?
            }
            "deflate" => read_bounded(flate2::read::ZlibDecoder::new(input), max, coding)?,
            "br" => read_bounded(brotli::Decompressor::new(input, 4096), max, coding)?,
            "zstd" => {
                let d = zstd::stream::read::Decoder::new(input)
                    .map_err(|_| DecodeError::Corrupt(coding.clone()))?;
                read_bounded(d, max, coding)?
            }
            // Unknown: compared as it came.
            _ => return Ok(Cow::Borrowed(body)),
        };
        current = Cow::Owned(next);
    }
    Ok(current)
}

fn read_bounded(r: impl Read, max: usize, coding: &str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt(coding.to_owned()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge(max));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, coding.parse().unwrap());
        h
    }

    fn gzip(b: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_known_coding_is_undone() {
        let text = br#"{"id":1,"items":[1,2,3]}"#.repeat(20);
        let fast = gzip(&text, 1);
        let best = gzip(&text, 9);
        assert_eq!(
            decoded(&with("gzip"), &fast, 1 << 20).unwrap(),
            text.as_slice()
        );
        assert_eq!(
            decoded(&with("GZIP"), &best, 1 << 20).unwrap(),
            text.as_slice()
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(
            decoded(&with("deflate"), &z.finish().unwrap(), 1 << 20).unwrap(),
            text.as_slice()
        );
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(&text)
            .unwrap();
        assert_eq!(decoded(&with("br"), &br, 1 << 20).unwrap(), text.as_slice());
        let zs = zstd::stream::encode_all(text.as_slice(), 3).unwrap();
        assert_eq!(
            decoded(&with("zstd"), &zs, 1 << 20).unwrap(),
            text.as_slice()
        );
        // Two codings, applied gzip then gzip again.
        let twice = gzip(&gzip(&text, 6), 6);
        assert_eq!(
            decoded(&with("gzip, gzip"), &twice, 1 << 20).unwrap(),
            text.as_slice()
        );
    }

    #[test]
    fn plain_unknown_and_identity_bodies_are_kept_as_they_are() {
        let body = b"plain";
        assert!(matches!(
            decoded(&HeaderMap::new(), body, 10).unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(decoded(&with("identity"), body, 10).unwrap(), &body[..]);
        assert_eq!(decoded(&with("compress"), body, 10).unwrap(), &body[..]);
    }

    #[test]
    fn a_bomb_stops_at_the_bound_and_garbage_is_corrupt() {
        let bomb = gzip(&vec![0u8; 10_000_000], 9);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decoded(&with("gzip"), &bomb, 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert_eq!(
            decoded(&with("gzip"), b"not gzip at all", 1 << 20),
            Err(DecodeError::Corrupt("gzip".into()))
        );
    }
}
