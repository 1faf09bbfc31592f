//! routes.toml compilation: any text, as `ficus check` and a reload compile it.
//!
//! Checked: the compiler answers every input with a config or a list of diagnostics (no
//! panic), every diagnostic can be printed (spans become `line:column` in the text), and a
//! config that compiled once compiles again as a reload against itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fmt::Write;
use std::path::Path;

use ficus::config::{self, ConfigError, Running};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: `*_file` keys name files that cannot be read,
    // never a file of this machine's.
    let path = Path::new("/nonexistent/ficus-fuzz/routes.toml");
    let mut out = String::new();
    match config::compile(path, source) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                let _ = writeln!(out, "{w}");
            }
            let running = Running {
                policies: &cfg.policies,
                admin: cfg.gateway.admin,
                max_config_bytes: cfg.gateway.bounds.max_config_bytes,
            };
            let again = config::compile_with(path, source, Some(&running));
            assert!(
                again.is_ok(),
                "a config that compiled does not compile as its own reload: {again:?}"
            );
        }
        Err(ConfigError::Invalid(items)) => {
            assert!(!items.is_empty(), "refused without a diagnostic");
            for d in &items {
                let _ = writeln!(out, "{d}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
});
