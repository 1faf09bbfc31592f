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
use super::{value_count, ConfigError};
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

/// The highest `max_config_bytes` a config may set: at start the file's own `[gateway]`
/// table decides how much of it is read, so this is the most a load ever reads.
pub const MAX_CONFIG_BYTES_CEILING: u64 = 1024 * 1024 * 1024;
/// Each unit of parse tree (see [`value_count::parse_units`]) a file may hold needs this
/// many bytes of `max_config_bytes`: the TOML parser takes at most about 300 bytes per
/// unit whatever the content (docs/performance.md, "Config compilation"), so the default
/// 16 MiB allows 3.4 million units and keeps the parse near 1 GiB at its peak. A file of
/// 100,000 plain routes holds 1.7 million.
pub const LIMIT_BYTES_PER_PARSE_UNIT: u64 = 5;

/// The parse units `max_config_bytes` allows.
pub fn parse_unit_budget(max_config_bytes: u64) -> u64 {
    max_config_bytes / LIMIT_BYTES_PER_PARSE_UNIT
}

/// The config file's text, read with a bound: never more than one byte past the limit
/// (so a file that grows while it is read is refused too), and nothing from what is not a
/// regular file (a FIFO would block the reader, a device never end).
///
/// On a reload `running_limit` is the running config's `max_config_bytes`, and a bigger
/// file is refused unread. At start (and in `ficus check`) there is no running config:
/// the limit is the default unless the file raises it in a `[gateway]` table within its
/// first [`DEFAULT_MAX_CONFIG_BYTES`] (read first), up to [`MAX_CONFIG_BYTES_CEILING`].
/// The whole file's own value is checked again once parsed.
pub fn read_config(path: &Path, running_limit: Option<u64>) -> Result<String, ConfigError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let name = || path.display().to_string();
    let io = |source| ConfigError::Io {
        path: name(),
        source,
    };
    // Non-blocking, so that opening a FIFO does not wait for a writer; it changes nothing
    // for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(ConfigError::NotAFile { path: name(), what });
    }
    let size = meta.len();
    let too_large = |bytes, limit| ConfigError::TooLarge {
        path: name(),
        bytes,
        limit,
    };
    let mut limit = running_limit.unwrap_or(DEFAULT_MAX_CONFIG_BYTES);
    if running_limit.is_some() && size > limit {
        return Err(too_large(size, limit));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    read_up_to(&file, &mut bytes, limit + 1).map_err(io)?;
    if running_limit.is_none() && (size > limit || bytes.len() as u64 > limit) {
        limit = declared_in_prefix(&bytes)
            .unwrap_or(DEFAULT_MAX_CONFIG_BYTES)
            .min(MAX_CONFIG_BYTES_CEILING);
        if size > limit {
            return Err(too_large(size, limit));
        }
        read_up_to(&file, &mut bytes, limit + 1).map_err(io)?;
    }
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    String::from_utf8(bytes).map_err(|_| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        ))
    })
}

/// Reads on until `bytes` holds `upto` bytes or the file ends.
fn read_up_to(mut file: &std::fs::File, bytes: &mut Vec<u8>, upto: u64) -> std::io::Result<()> {
    let more = upto.saturating_sub(bytes.len() as u64);
    (&mut file).take(more).read_to_end(bytes).map(|_| ())
}

/// `max_config_bytes` as the `[gateway]` table in the first part of a file sets it (the
/// text up to its last complete line).
fn declared_in_prefix(bytes: &[u8]) -> Option<u64> {
    let end = bytes.iter().rposition(|&b| b == b'\n')? + 1;
    declared_max_config_bytes(std::str::from_utf8(&bytes[..end]).ok()?)
}

/// Before parsing, on every load: a file that holds more parse tree than its
/// `max_config_bytes` allows (see [`parse_unit_budget`]) is refused unparsed. The limit
/// is the running config's on a reload, the one the file sets (or the default) at start.
pub(super) fn check_unparsed_values(
    source: &str,
    path: &str,
    running_limit: Option<u64>,
) -> Result<(), ConfigError> {
    let units = value_count::parse_units(source);
    let mut limit = running_limit.unwrap_or(DEFAULT_MAX_CONFIG_BYTES);
    if units > parse_unit_budget(limit) && running_limit.is_none() {
        limit = declared_max_config_bytes(source)
            .unwrap_or(DEFAULT_MAX_CONFIG_BYTES)
            .min(MAX_CONFIG_BYTES_CEILING);
    }
    if units > parse_unit_budget(limit) {
        return Err(ConfigError::TooManyValues {
            path: path.to_string(),
            units,
            budget: parse_unit_budget(limit),
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
    let text = &source[start?..end];
    // The table is parsed before the file's bounds are known: a `[gateway]` stuffed with
    // values must not cost what the bounds exist to prevent.
    if value_count::parse_units(text) > parse_unit_budget(DEFAULT_MAX_CONFIG_BYTES) {
        return None;
    }
    let table: Doc = toml::from_str(text).ok()?;
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
    let mut bytes = positive(max_config_bytes, "max_config_bytes");
    let routes = positive(max_routes, "max_routes");
    if let (Some(n), Some(v)) = (bytes, max_config_bytes) {
        if n > MAX_CONFIG_BYTES_CEILING {
            c.d.error(
                span_of(v),
                "gateway.max_config_bytes",
                format!("`max_config_bytes` may be at most {MAX_CONFIG_BYTES_CEILING} (1 GiB)"),
            );
            bytes = None;
        }
    }
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
        assert_eq!(read_config(&path, Some(100)).unwrap().len(), 100);
        match read_config(&path, Some(99)) {
            Err(ConfigError::TooLarge { bytes, limit, .. }) => {
                assert_eq!((bytes, limit), (100, 99))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_config(&dir.path().join("missing.toml"), Some(100)),
            Err(ConfigError::Io { .. })
        ));
        for (what, path) in [
            ("a directory", dir.path()),
            ("a device", Path::new("/dev/zero")),
        ] {
            match read_config(path, None) {
                Err(ConfigError::NotAFile { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_big_file_is_judged_by_the_limit_its_gateway_table_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        let routes = "[[routes]]\nname = \"r\"\n".repeat(DEFAULT_MAX_CONFIG_BYTES as usize / 20);
        let raised =
            format!("[gateway] # big\nmax_config_bytes = 100000000\n[services.a]\n{routes}");
        assert!(raised.len() as u64 > DEFAULT_MAX_CONFIG_BYTES);
        std::fs::write(&path, &raised).unwrap();
        assert_eq!(read_config(&path, None).unwrap().len(), raised.len());
        for text in [
            format!("[gateway]\nmax_config_bytes = 1000\n{routes}"),
            format!("[services.a]\n{routes}"),
            format!("[gateway]\nthreads = 2\n{routes}"),
            // The table must be in the first part of the file.
            format!("{routes}[gateway]\nmax_config_bytes = 100000000\n"),
        ] {
            std::fs::write(&path, &text).unwrap();
            match read_config(&path, None) {
                Err(ConfigError::TooLarge { bytes, .. }) => assert_eq!(bytes, text.len() as u64),
                other => panic!("{other:?}"),
            }
        }
        // Raised past the ceiling, the ceiling judges.
        let file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"[gateway]\nmax_config_bytes = 9000000000\n")
            .unwrap();
        file.set_len(MAX_CONFIG_BYTES_CEILING + 1).unwrap();
        match read_config(&path, None) {
            Err(ConfigError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_CONFIG_BYTES_CEILING),
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "[gateway]\nmax_config_bytes = 1\n").unwrap();
        assert!(read_config(&path, None).is_ok());
    }

    #[test]
    fn a_file_holding_more_parse_tree_than_its_limit_allows_is_refused() {
        let budget = parse_unit_budget(DEFAULT_MAX_CONFIG_BYTES);
        let bomb = format!("[x]\na = [{}]\n", "0,".repeat(budget as usize));
        match check_unparsed_values(&bomb, "r.toml", None) {
            Err(ConfigError::TooManyValues {
                units, budget: b, ..
            }) => {
                assert!(units > budget && b == budget, "{units} {b}")
            }
            other => panic!("{other:?}"),
        }
        // A running config's limit judges a reload; at start the file may raise its own.
        assert!(check_unparsed_values(&bomb, "r.toml", Some(DEFAULT_MAX_CONFIG_BYTES * 2)).is_ok());
        let raised = format!("[gateway]\nmax_config_bytes = 33554432\n{bomb}");
        assert!(check_unparsed_values(&raised, "r.toml", None).is_ok());
        assert!(check_unparsed_values(&raised, "r.toml", Some(DEFAULT_MAX_CONFIG_BYTES)).is_err());
        // A `[gateway]` table that is itself the bomb is not parsed for its limit.
        let in_gateway = format!(
            "[gateway]\nmax_config_bytes = 33554432\na = [{}]\n",
            "0,".repeat(budget as usize)
        );
        assert!(check_unparsed_values(&in_gateway, "r.toml", None).is_err());
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
