//! Helpers shared by the config unit tests.

use super::diag::Diagnostic;
use super::{compile, ConfigError};
use std::path::Path;

pub(crate) fn errors(src: &str) -> Vec<Diagnostic> {
    match compile(Path::new("routes.toml"), src) {
        Err(ConfigError::Invalid(d)) => d,
        Ok(_) => vec![],
        Err(e) => panic!("{e}"),
    }
}

pub(crate) const BASE: &str = r#"
[services.orders]
instances = ["127.0.0.1:8082", { addr = "127.0.0.1:8083", weight = 2 }]
"#;

pub(crate) fn messages(src: &str) -> Vec<String> {
    errors(src).iter().map(|d| d.to_string()).collect()
}

pub(crate) const ROUTE: &str =
    "[[routes]]\nname = \"o\"\nmatch = { path = \"/o/**\" }\nservice = \"orders\"\n";
