//! routes.toml: parse (raw serde model with spans), validate, and compile into runtime types.
//!
//! Loading never stops at the first problem: every route and service is checked and all
//! diagnostics are returned together, each with `file:line:column`, the key and a hint.
//! The compiled [`Config`] holds only runtime types (matchers, header names, durations,
//! socket addresses); nothing here is consulted as a string on the request path.
//!
//! `compile` reads the top-level sections here (`sections.rs` splits the document into
//! them) and hands each to its own file: `gateway.rs` (its listeners in `listeners.rs`,
//! `[gateway.limits]` in `limits.rs`), `services.rs` (services and the registry; a
//! service's health settings in `service_health.rs`, its `client_credentials` in
//! `credentials.rs`), `routes.rs`; the checks they share are in `compiler.rs`, duration
//! strings in `duration.rs`.

mod admin;
pub mod bounds;
mod compiler;
mod credentials;
pub mod diag;
mod field_names;
mod gateway;
mod identity;
mod in_flight;
mod legacy;
mod limits;
mod listeners;
mod policies;
pub mod raw;
mod raw_routes;
mod recover;
mod routes;
mod sections;
mod service_health;
mod services;
mod shadow;
mod split;
#[cfg(test)]
mod testing;
mod tls;
mod unreachable;
pub mod value_count;

use diag::{Diagnostic, Diagnostics, Severity};
use raw::RawGateway;
use sections::{read_sections, warn_if_empty};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::de::DeTable;

// Linked for `mi_collect` (see `return_freed_memory`), also where it is not the allocator.
use mimalloc as _;

use crate::policy::Policies;
use crate::registry::spec::{RegistrySettings, ServiceSpec};
use crate::router::Router;
use compiler::Compiler;

pub use crate::duration::{
    parse_duration, try_parse_duration, DurationError, MAX_DURATION, MIN_NONZERO_DURATION,
};
pub use compiler::is_hop_by_hop;
pub use gateway::{
    read_pem_certs, AccessLog, Cidr, GatewaySettings, TraceContext, DEFAULT_ADMIN, DEFAULT_GRACE,
};
pub use in_flight::InFlightLimits;
pub use limits::Limits;
pub use listeners::{Certificate, Listener};

/// Why a config could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// The file is over `max_config_bytes`: refused before it is parsed (on a reload, the
    /// running config's limit applies).
    #[error("{path} is {bytes} bytes, more than `max_config_bytes` ({limit}); nothing was applied\n  hint: raise `[gateway] max_config_bytes` if the file is meant to be this big")]
    TooLarge {
        path: String,
        bytes: u64,
        limit: u64,
    },
    /// Not a regular file (a FIFO, a device, a directory): refused unread.
    #[error("{path} is {what}, not a regular file; nothing was applied")]
    NotAFile { path: String, what: &'static str },
    /// More parse tree (keys, values, tables, array elements) than `max_config_bytes`
    /// allows: refused before it is parsed.
    #[error("{path} holds {units} units of keys, values, tables and array elements, more than `max_config_bytes` ({limit}) allows ({budget}: one per {per} bytes); nothing was applied\n  hint: raise `[gateway] max_config_bytes` if the file is meant to hold this much", per = bounds::LIMIT_BYTES_PER_PARSE_UNIT)]
    TooManyValues {
        path: String,
        units: u64,
        budget: u64,
        limit: u64,
    },
    /// More `[[routes]]` than `max_routes`: refused before any route is compiled.
    #[error("{path} has {routes} routes, more than `max_routes` ({limit}); nothing was applied\n  hint: raise `[gateway] max_routes` if the file is meant to hold this many")]
    TooManyRoutes {
        path: String,
        routes: usize,
        limit: usize,
    },
    /// Compiling panicked: a bug in ficus, not in the file. Nothing was applied.
    #[error("compiling {path} failed on an internal error (a bug in ficus: please report it with the file); nothing was applied")]
    Internal { path: String },
}

impl ConfigError {
    /// Why, as a metric label: `io`, `not_a_file`, `invalid`, `too_large`,
    /// `too_many_values`, `too_many_routes` or `internal`.
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::Io { .. } => "io",
            ConfigError::Invalid(_) => "invalid",
            ConfigError::NotAFile { .. } => "not_a_file",
            ConfigError::TooLarge { .. } => "too_large",
            ConfigError::TooManyValues { .. } => "too_many_values",
            ConfigError::TooManyRoutes { .. } => "too_many_routes",
            ConfigError::Internal { .. } => "internal",
        }
    }
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    let errors = d.iter().filter(|d| d.severity == Severity::Error).count();
    let mut out = format!("{errors} error(s) in config:");
    for item in d {
        out.push('\n');
        out.push_str(&item.to_string());
    }
    out
}

/// A fully compiled routes.toml.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub gateway: GatewaySettings,
    pub services: Vec<ServiceSpec>,
    pub registry: RegistrySettings,
    pub router: Router,
    /// Every policy section's instance (`[access.NAME]`...), shared by the routes that name
    /// it.
    pub policies: Policies,
    /// Headers the gateway owns: those the auth policies set from a verified identity
    /// (`X-User-Id`), and the shadow-copy marker (`X-Ficus-Shadow`). Every client-sent copy
    /// is removed from every request on every route, so no upstream ever reads an identity
    /// a client chose, nor takes a real request for a copy whose side effects it may skip.
    pub identity_headers: Box<[http::HeaderName]>,
    /// Warnings found while compiling (the config is still usable).
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

/// Reads and compiles a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, None)
}

/// What a reload compiles against: the running gateway.
pub struct Running<'a> {
    /// The running snapshot's policies; those whose settings did not change are kept.
    pub policies: &'a Policies,
    /// The admin address the running gateway listens on (a changed `admin` applies only at
    /// the next restart, so the guard on registry writes judges this one).
    pub admin: SocketAddr,
    /// The running config's `max_config_bytes`: a bigger file is refused unread.
    pub max_config_bytes: u64,
}

/// Reads and compiles a config file for a running gateway (see [`Running`]).
///
/// A running gateway refuses a file over its own `max_config_bytes` before reading it. At
/// start (and in `ficus check`) a file over the default limit is refused after reading no
/// more than that, unless its `[gateway]` table raises the limit (see
/// `bounds::read_config`); a file holding more keys, values and tables than the limit
/// allows is refused before parsing (`bounds::check_unparsed_values`); the file's own
/// limit is applied again right after parsing, before any route is compiled.
///
/// The work runs on a thread of its own that ends with it: the allocator returns what
/// compiling left behind (the parsed document, every raw route) when that thread exits,
/// rather than keeping it for a thread that will not allocate again until the next reload.
pub fn load_with(path: &Path, previous: Option<&Running<'_>>) -> Result<Config, ConfigError> {
    let internal = || ConfigError::Internal {
        path: path.display().to_string(),
    };
    let _prompt = PromptPurge::begin();
    std::thread::scope(|scope| {
        let compiling = std::thread::Builder::new()
            .name("ficus-config".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || {
                let limit = previous.map(|r| r.max_config_bytes);
                let compiled = bounds::read_config(path, limit).and_then(|source| {
                    let file = path.display().to_string();
                    bounds::check_unparsed_values(&source, &file, limit)?;
                    bounds::check_unparsed_routes(&source, &file)?;
                    compile_with(path, &source, previous)
                });
                return_freed_memory();
                compiled
            })
            .map_err(|_| internal())?;
        // A panic while compiling is a bug in ficus: a failed load, not a crash.
        compiling.join().unwrap_or_else(|_| Err(internal()))
    })
}

/// Hands the pages this thread freed back to the system now (also called by the config
/// watcher once a reload has dropped the old config). mimalloc (the gateway's
/// allocator) purges freed pages lazily, on a later allocation by the same thread: the
/// compiling thread makes none, so what compiling needed (the parsed document, each
/// route's raw form; several times the compiled config) would stay resident for good.
pub fn return_freed_memory() {
    extern "C" {
        /// mimalloc's `mi_collect`: frees this thread's empty pages and purges them.
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` only walks the calling thread's own heap; it is safe to call at
    // any time, also when mimalloc is linked but not the global allocator (test builds).
    unsafe { mi_collect(true) }
}

/// While one is alive, memory that goes back to mimalloc's arenas (whole segments: most of
/// what compiling frees) is handed to the system at once instead of after mimalloc's
/// arena purge delay (10 × `purge_delay`, 100 ms). A purge that is due only runs when a
/// thread later allocates a segment or collects, which an idle gateway does not do: after
/// a start or a reload of 20,000 routes about 0.3 KiB a route stayed resident that way.
/// Compiling is rare and its frees come in a burst, so purging them at once costs little;
/// the request path's threads see the setting too, but only for the length of a compile.
/// The setting in force before (`MIMALLOC_ARENA_PURGE_MULT` or mimalloc's default) is put
/// back when the last guard is dropped.
struct PromptPurge;

/// Guards alive, and the multiplier to restore when the last one goes.
static PROMPT_PURGE: std::sync::Mutex<(usize, std::ffi::c_long)> = std::sync::Mutex::new((0, 0));

/// mimalloc's `mi_option_arena_purge_mult` (mimalloc.h, v2).
const MI_OPTION_ARENA_PURGE_MULT: std::ffi::c_int = 24;

extern "C" {
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

impl PromptPurge {
    fn begin() -> PromptPurge {
        let mut g = PROMPT_PURGE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.0 == 0 {
            // SAFETY: mimalloc's options are plain integers it reads on its slow paths; both
            // calls take no pointers and are valid at any time, also when mimalloc is linked
            // but not the global allocator (test builds).
            g.1 = unsafe { mi_option_get(MI_OPTION_ARENA_PURGE_MULT) };
            unsafe { mi_option_set(MI_OPTION_ARENA_PURGE_MULT, 0) };
        }
        g.0 += 1;
        PromptPurge
    }
}

impl Drop for PromptPurge {
    fn drop(&mut self) {
        let mut g = PROMPT_PURGE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 -= 1;
        if g.0 == 0 {
            // SAFETY: as in `begin`.
            unsafe { mi_option_set(MI_OPTION_ARENA_PURGE_MULT, g.1) };
        }
    }
}

/// The compiling thread's stack: as much as a main thread gets (the TOML parser and serde
/// recurse into nested tables).
const COMPILE_STACK: usize = 8 * 1024 * 1024;

/// Compiles config text; `path` is used for messages and to resolve relative file names.
pub fn compile(path: &Path, source: &str) -> Result<Config, ConfigError> {
    compile_with(path, source, None)
}

/// Compiles config text, for a running gateway when `running` is given.
pub fn compile_with(
    path: &Path,
    source: &str,
    running: Option<&Running<'_>>,
) -> Result<Config, ConfigError> {
    let previous = running.map(|r| r.policies);
    let file = path.display().to_string();
    let mut c = Compiler {
        d: Diagnostics::new(&file, source),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let doc = match DeTable::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            c.d.toml_error(&e, "", None, 0..0);
            return Err(ConfigError::Invalid(c.d.items));
        }
    };
    let mut sections = read_sections(&mut c, doc, previous, source.len(), &file)?;
    let raw_routes = sections.routes.take();
    let no_gateway = RawGateway::default();
    let raw_gateway = sections.gateway.as_ref().unwrap_or(&no_gateway);
    let mut gateway = gateway::compile_gateway(&mut c, raw_gateway);
    gateway.bounds = sections.bounds;
    let own_addrs = gateway
        .listeners
        .iter()
        .map(|l| l.addr)
        .chain([running.map_or(gateway.admin, |r| r.admin)])
        .collect();
    let registry =
        services::compile_registry(&mut c, &sections.registry, gateway.zone.clone(), own_addrs);
    let services: Vec<ServiceSpec> = sections
        .services
        .iter()
        .map(|(name, span, raw)| services::compile_service(&mut c, name, span, raw, &registry))
        .collect();
    admin::check_admin_is_guarded(
        &mut c,
        raw_gateway,
        running.map_or(gateway.admin, |r| r.admin),
        &sections.registry,
        registry.registration && services.iter().any(|s| s.registration),
    );
    let (routes, route_spans) = routes::compile_routes(&mut c, &sections, raw_routes, &services);
    let service_names: Vec<&str> = sections.services.iter().map(|s| s.0.as_str()).collect();
    let migrating = routes
        .iter()
        .any(|r| r.split.is_some() || r.shadow.is_some());
    gateway.legacy = legacy::compile_legacy(
        &mut c,
        raw_gateway,
        &service_names,
        &sections.failed_services,
        migrating,
    );
    warn_if_empty(&mut c, &sections);
    let router = Router::new(routes);
    unreachable::warn_shadowed(&mut c.d, router.routes(), &route_spans);
    let warnings = finish(c.d)?;
    Ok(Config {
        path: path.to_path_buf(),
        gateway,
        services,
        registry,
        router,
        identity_headers: gateway_owned(sections.policies.compiled.identity_headers()),
        policies: sections.policies.compiled,
        warnings,
    })
}

/// The identity headers and the shadow-copy marker: every header a client may not send.
fn gateway_owned(identity: Box<[http::HeaderName]>) -> Box<[http::HeaderName]> {
    let mut owned = identity.into_vec();
    owned.push(crate::router::shadow::X_FICUS_SHADOW.clone());
    owned.into_boxed_slice()
}

/// Every diagnostic as the error when there is an error (errors first, then by position);
/// otherwise the warnings, by position.
fn finish(d: Diagnostics<'_>) -> Result<Vec<Diagnostic>, ConfigError> {
    let errors = d.has_errors();
    let mut items = d.items;
    if errors {
        items.sort_by_key(|d| (std::cmp::Reverse(d.severity), d.line, d.column));
        return Err(ConfigError::Invalid(items));
    }
    items.sort_by_key(|d| (d.line, d.column));
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::testing::{errors, BASE};
    use super::*;

    #[test]
    fn prompt_purge_holds_while_any_guard_lives_and_puts_the_setting_back() {
        // SAFETY: as in `PromptPurge::begin`.
        let mult = || unsafe { mi_option_get(MI_OPTION_ARENA_PURGE_MULT) };
        let before = mult();
        assert_ne!(
            before, 0,
            "mimalloc's default (or the environment's) is not 0"
        );
        let a = PromptPurge::begin();
        assert_eq!(mult(), 0);
        let b = PromptPurge::begin();
        drop(a);
        assert_eq!(mult(), 0, "a compile still runs");
        drop(b);
        assert_eq!(mult(), before);
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let src = format!(
            "{BASE}\n[[routes]]\nname = \"a\"\nmatch = {{ path = \"orders\" }}\nservice = \"orders\"\n\n[[routes]]\nname = \"b\"\nmatch = {{ path = \"/x\" }}\nservcie = \"orders\"\n\n[[routes]]\nname = \"c\"\nmatch = {{ path = \"/y\" }}\nservice = \"nope\"\ntimeouts = {{ read = \"soon\" }}\n"
        );
        let d = errors(&src);
        let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("bad path pattern")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown field `servcie`")
                    && m.contains("did you mean `service`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("unknown service `nope`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("is not a duration")),
            "{msgs:?}"
        );
    }

    #[test]
    fn list_entries_are_named_by_their_index_as_written() {
        // Dropping the first bad entry must not shift the index of the ones after it.
        let src = format!(
            "{BASE}[access.a]\nallow = [1, \"10.0.0.0/8\", 2, \"5.6.7.8/40\"]\n[[routes]]\nname = \"r\"\nmatch = {{ path = \"/**\" }}\nservice = \"orders\"\naccess = \"a\"\n"
        );
        let keys: Vec<String> = errors(&src).into_iter().map(|d| d.key).collect();
        assert_eq!(
            keys,
            [
                "access.a.allow[0]",
                "access.a.allow[2]",
                "access.a.allow[3]"
            ]
        );
    }

    #[test]
    fn policy_names_are_printable() {
        let src = format!("{BASE}[access.\"\"]\nallow = [\"10.0.0.0/8\"]\n[access.\"a\\nb\"]\nallow = [\"10.0.0.0/8\"]\n");
        let d: Vec<_> = errors(&src)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().all(|d| d
            .message
            .contains("must not be empty or hold control characters")));
    }
}
