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

/// At start and in `ficus check` (no running config to judge by): whether a file larger
/// than [`DEFAULT_MAX_CONFIG_BYTES`] allows its own size, found without parsing the whole
/// file: only the text of its `[gateway]` table is parsed, for `max_config_bytes`. A file
/// over the limit it sets (or the default, when that cannot be found) is refused before
/// parsing, as a reload would refuse it; the whole file's value is checked again once
/// parsed.
pub(super) fn check_unparsed_size(source: &str, path: &str) -> Result<(), ConfigError> {
    let bytes = source.len() as u64;
    if bytes <= DEFAULT_MAX_CONFIG_BYTES {
        return Ok(());
    }
    let limit = declared_max_config_bytes(source).unwrap_or(DEFAULT_MAX_CONFIG_BYTES);
    if bytes > limit {
        return Err(ConfigError::TooLarge {
            path: path.to_string(),
            bytes,
            limit,
        });
    }
    Ok(())
}

/// Before parsing, on every load: a file with more `[[routes]]` headers than the
/// `max_routes` its `[gateway]` table sets (or the default) is refused unparsed, since the
/// parsed document alone takes several KiB per route. The count after parsing stays the
/// authority (routes written as an inline array are only counted there).
pub(super) fn check_unparsed_routes(source: &str, path: &str) -> Result<(), ConfigError> {
    let routes = source
        .lines()
        .filter(|l| l.trim_start().starts_with("[[routes]]"))
        .count();
    if routes <= DEFAULT_MAX_ROUTES {
        return Ok(());
    }
    let limit = declared_gateway(source)
        .and_then(|g| usize::try_from(g.max_routes?).ok())
        .unwrap_or(DEFAULT_MAX_ROUTES);
    if routes > limit {
        return Err(ConfigError::TooManyRoutes {
            path: path.to_string(),
            routes,
            limit,
        });
    }
    Ok(())
}

/// `max_config_bytes` as written in the `[gateway]` table.
fn declared_max_config_bytes(source: &str) -> Option<u64> {
    u64::try_from(declared_gateway(source)?.max_config_bytes?).ok()
}

/// The bounds in the `[gateway]` table, as far as it can be read on its own.
#[derive(serde::Deserialize)]
struct DeclaredGateway {
    max_config_bytes: Option<i64>,
    max_routes: Option<i64>,
}

/// The `[gateway]` table's bounds: the text from the `[gateway]` line to the next table
/// header, parsed on its own.
fn declared_gateway(source: &str) -> Option<DeclaredGateway> {
    #[derive(serde::Deserialize)]
    struct Doc {
        gateway: DeclaredGateway,
    }
    let is_header = |line: &str, name: Option<&str>| {
        let line = line.trim_start();
        match name {
            Some(n) => line.strip_prefix(n).is_some_and(|rest| {
                rest.trim_start().is_empty() || rest.trim_start().starts_with('#')
            }),
            None => line.starts_with('['),
        }
    };
    let mut start = None;
    let mut offset = 0;
    let mut end = source.len();
    for line in source.split_inclusive('\n') {
        match start {
            None if is_header(line, Some("[gateway]")) => start = Some(offset),
            Some(_) if is_header(line, None) => {
                end = offset;
                break;
            }
            _ => {}
        }
        offset += line.len();
    }
    let table: Doc = toml::from_str(&source[start?..end]).ok()?;
    Some(table.gateway)
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
    fn a_big_file_is_judged_by_the_limit_its_gateway_table_sets() {
        let routes = "[[routes]]\nname = \"r\"\n".repeat(DEFAULT_MAX_CONFIG_BYTES as usize / 20);
        let raised =
            format!("[gateway] # big\nmax_config_bytes = 100000000\n[services.a]\n{routes}");
        assert!(raised.len() as u64 > DEFAULT_MAX_CONFIG_BYTES);
        assert!(check_unparsed_size(&raised, "r.toml").is_ok());
        for text in [
            format!("[gateway]\nmax_config_bytes = 1000\n{routes}"),
            format!("[services.a]\n{routes}"),
            format!("[gateway]\nthreads = 2\n{routes}"),
        ] {
            match check_unparsed_size(&text, "r.toml") {
                Err(ConfigError::TooLarge { bytes, .. }) => assert_eq!(bytes, text.len() as u64),
                other => panic!("{other:?}"),
            }
        }
        assert!(check_unparsed_size("[gateway]\nmax_config_bytes = 1\n", "r.toml").is_ok());
    }

    #[test]
    fn route_headers_are_counted_before_parsing() {
        let routes = "[[routes]]\n".repeat(DEFAULT_MAX_ROUTES + 1);
        match check_unparsed_routes(&routes, "r.toml") {
            Err(ConfigError::TooManyRoutes { routes, limit, .. }) => {
                assert_eq!(
                    (routes, limit),
                    (DEFAULT_MAX_ROUTES + 1, DEFAULT_MAX_ROUTES)
                )
            }
            other => panic!("{other:?}"),
        }
        let raised = format!("[gateway]\nmax_routes = 200000\n{routes}");
        assert!(check_unparsed_routes(&raised, "r.toml").is_ok());
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
