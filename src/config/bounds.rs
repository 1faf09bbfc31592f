//! Bounds on the config itself: how big a routes.toml may be, how many routes it may hold,
//! and how long the header values its routes set may be.
//!
//! A reload compiles the new file in the running process, next to the config it serves
//! with: an out-of-memory kill while compiling would lose the running gateway, which a bad
//! reload promises never to do. So a reload refuses a file over the running config's
//! `max_config_bytes` before reading more of it than that, and any config refuses more
//! routes than its `max_routes` right after parsing, before a route is compiled. Header
//! values are bounded because each one is sent on every request or response of its route.
//!
//! This file does no parsing of its own: `mod.rs` calls it at the steps above.

use std::io::Read;
use std::path::Path;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::ConfigError;
use crate::router::HeaderEdits;

/// `[gateway] max_config_bytes` unset. Compiling needs about 60 times the file's size at
/// its peak (the parsed document dominates: docs/performance.md, "Config compilation"), so
/// 16 MiB can take about 1 GiB; a file with 100,000 plain routes (the default
/// `max_routes`) is about 8 MiB.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// `[gateway] max_routes` unset.
pub const DEFAULT_MAX_ROUTES: usize = 100_000;
/// The longest header value a route may set or add (what most servers accept in a whole
/// header line).
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) one route's edits may add, request and
/// response together: half of the default `max_header_bytes` a request head may have.
pub const MAX_ROUTE_HEADER_BYTES: usize = 16 * 1024;

/// `[gateway] max_config_bytes` and `max_routes`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigBounds {
    /// The largest routes.toml, in bytes.
    pub max_config_bytes: u64,
    /// The most `[[routes]]`.
    pub max_routes: usize,
}

impl Default for ConfigBounds {
    fn default() -> Self {
        ConfigBounds {
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            max_routes: DEFAULT_MAX_ROUTES,
        }
    }
}

/// Reads the file, refusing it when it is larger than `max_bytes` (read no further than
/// one byte past the limit, so a file that grows while it is read is refused too).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let too_large = |bytes| ConfigError::TooLarge {
        path: path.display().to_string(),
        bytes,
        limit: max_bytes,
    };
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut source = String::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_string(&mut source)
        .map_err(io)?;
    if source.len() as u64 > max_bytes {
        return Err(too_large(source.len() as u64));
    }
    Ok(source)
}

/// Compiles `max_config_bytes` and `max_routes` (both must be positive).
pub(super) fn compile_bounds(
    c: &mut Compiler<'_>,
    max_config_bytes: Option<&Spanned<i64>>,
    max_routes: Option<&Spanned<i64>>,
) -> ConfigBounds {
    let mut positive = |v: Option<&Spanned<i64>>, key: &str| -> Option<u64> {
        let v = v?;
        match u64::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                c.d.error(
                    span_of(v),
                    format!("gateway.{key}"),
                    format!("`{key}` must be a positive number"),
                );
                None
            }
        }
    };
    let bytes = positive(max_config_bytes, "max_config_bytes");
    let routes = positive(max_routes, "max_routes");
    ConfigBounds {
        max_config_bytes: bytes.unwrap_or(DEFAULT_MAX_CONFIG_BYTES),
        max_routes: routes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_ROUTES),
    }
}

/// A header value a route sets or adds, over [`MAX_HEADER_VALUE_BYTES`]: the message.
pub(super) fn header_value_too_long(value: &str) -> Option<String> {
    (value.len() > MAX_HEADER_VALUE_BYTES).then(|| {
        format!(
            "header value is {} bytes; a route may set at most {MAX_HEADER_VALUE_BYTES} bytes per value",
            value.len()
        )
    })
}

/// Reports a route whose header edits add more than [`MAX_ROUTE_HEADER_BYTES`] together.
pub(super) fn check_route_header_bytes(
    c: &mut Compiler<'_>,
    key: &str,
    span: std::ops::Range<usize>,
    edits: [&HeaderEdits; 2],
) {
    let total: usize = edits
        .iter()
        .flat_map(|e| e.set.iter().chain(&e.add))
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if total > MAX_ROUTE_HEADER_BYTES {
        c.d.error_hint(
            span,
            key,
            format!(
                "the route's header edits add {total} bytes of headers; at most {MAX_ROUTE_HEADER_BYTES} bytes per route (request and response together)"
            ),
            "move large values into the upstream, or split them across routes",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_up_to_the_limit_and_refused_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        match read_bounded(&path, 99) {
            Err(ConfigError::TooLarge { bytes, limit, .. }) => {
                assert_eq!((bytes, limit), (100, 99))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_bounded(&dir.path().join("missing.toml"), 100),
            Err(ConfigError::Io { .. })
        ));
    }

    #[test]
    fn header_values_over_the_bound_are_named() {
        assert_eq!(
            header_value_too_long(&"v".repeat(MAX_HEADER_VALUE_BYTES)),
            None
        );
        let m = header_value_too_long(&"v".repeat(MAX_HEADER_VALUE_BYTES + 1)).unwrap();
        assert!(m.contains("8193 bytes"), "{m}");
    }
}
