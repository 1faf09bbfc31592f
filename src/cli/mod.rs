//! The `check` and `explain` commands. They compile the config exactly as `run` does and
//! use the same router, so what they say is what the gateway does.

pub mod admin_client;
mod cors;
mod explain;
mod shadow;
mod split;
pub mod status;

pub use explain::{explain, ExplainError};
pub use shadow::shadow;

use std::fmt::Write;
use std::path::Path;

use crate::config::diag::Severity;
use crate::config::{self, ConfigError};

/// `ficus check`: returns (exit code, report). 0 clean, 1 warnings only, 2 errors.
pub fn check(path: &Path) -> (i32, String) {
    match config::load(path) {
        Ok(cfg) => {
            let mut out = String::new();
            for w in &cfg.warnings {
                let _ = writeln!(out, "{w}");
            }
            let routes = cfg.router.routes().len();
            let services = cfg.services.len();
            if cfg.warnings.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: ok ({routes} routes, {services} services)",
                    path.display()
                );
                (0, out)
            } else {
                let _ = writeln!(
                    out,
                    "{}: {} warning(s) ({routes} routes, {services} services)",
                    path.display(),
                    cfg.warnings.len()
                );
                (1, out)
            }
        }
        Err(ConfigError::Invalid(items)) => {
            let mut out = String::new();
            for d in &items {
                let _ = writeln!(out, "{d}");
            }
            let errors = items
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let _ = writeln!(out, "{}: {errors} error(s)", path.display());
            (2, out)
        }
        Err(e) => (2, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn write_config(body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f
    }

    const CFG: &str = r#"
[services.monolith]
instances = ["127.0.0.1:8081"]
[services.orders]
instances = ["127.0.0.1:8082", { addr = "127.0.0.1:8083", weight = 2 }]
[services.search]
instances = ["127.0.0.1:8084"]

[[routes]]
name = "orders"
match = { path = "/orders/**", methods = ["GET", "POST"] }
service = "orders"
strip_prefix = "/orders"

[[routes]]
name = "search"
match = { path = "/google/{q}" }
service = "search"
rewrite = "/search?q={q}"

[[routes]]
name = "legacy"
match = { path = "/**" }
service = "monolith"
"#;

    #[test]
    fn explain_shows_route_upstream_path_and_misses() {
        let f = write_config(CFG);
        let out = explain(f.path(), "GET", "http://shop.example/orders/42?x=1", &[]).unwrap();
        assert!(out.contains("matched route: orders"), "{out}");
        assert!(out.contains("upstream path: /42?x=1"), "{out}");
        assert!(
            out.contains("static instance 127.0.0.1:8083 weight 2"),
            "{out}"
        );
        assert!(out.contains("- legacy: also matches"), "{out}");
        let out = explain(f.path(), "DELETE", "/orders/42", &[]).unwrap();
        assert!(out.contains("matched route: legacy"), "{out}");
        assert!(
            out.contains("- orders: method DELETE is not one of [GET, POST]"),
            "{out}"
        );
        let out = explain(f.path(), "GET", "/google/rust%20lang", &[]).unwrap();
        assert!(
            out.contains("upstream path: /search?q=rust%20lang"),
            "{out}"
        );
        let out = explain(f.path(), "GET", "/public/%2e%2e/orders/1", &[]).unwrap();
        assert!(out.contains("normalized path: /orders/1"), "{out}");
    }

    #[test]
    fn explain_agrees_with_the_gateway_on_hosts() {
        let hosted = CFG.replace(
            "match = { path = \"/google/{q}\" }",
            "match = { path = \"/google/{q}\", host = \"api.example\" }",
        );
        let f = write_config(&hosted);
        // The URL's host is the request's host.
        let out = explain(f.path(), "GET", "http://api.example/google/x", &[]).unwrap();
        assert!(out.contains("matched route: search"), "{out}");
        // A Host header that differs from the URL's authority: pingora answers 400.
        for host in [
            "Host: other.example",
            "Host: API.example",
            "Host: api.example:80",
        ] {
            let out = explain(
                f.path(),
                "GET",
                "http://api.example/google/x",
                &[host.into()],
            )
            .unwrap();
            assert!(out.contains("result: 400 Bad Request"), "{host}: {out}");
            assert!(!out.contains("matched route"), "{host}: {out}");
        }
        let out = explain(
            f.path(),
            "GET",
            "/google/x",
            &["Host: api.example:8080".into()],
        )
        .unwrap();
        assert!(out.contains("matched route: search"), "{out}");
    }

    #[test]
    fn explain_options_asterisk() {
        let f = write_config(CFG);
        let out = explain(f.path(), "OPTIONS", "*", &[]).unwrap();
        assert!(out.contains("answered by the gateway itself"), "{out}");
    }

    #[test]
    fn explain_methods_are_case_sensitive() {
        let f = write_config(CFG);
        let out = explain(f.path(), "post", "/orders/1", &[]).unwrap();
        assert!(out.contains("request: post /orders/1"), "{out}");
        assert!(out.contains("methods are case-sensitive"), "{out}");
        assert!(out.contains("matched route: legacy"), "{out}");
        assert!(
            out.contains("- orders: method post is not one of [GET, POST]"),
            "{out}"
        );
    }

    #[test]
    fn explain_refuses_malformed_urls() {
        let f = write_config(CFG);
        for url in ["http://[::1/y", "ftp://x/y", "orders/1", "http:///x"] {
            let err = explain(f.path(), "GET", url, &[]).unwrap_err();
            assert!(matches!(err, ExplainError::Url(..)), "{url}: {err}");
        }
    }

    #[test]
    fn explain_describes_rate_limits_and_opt_outs() {
        let cfg = CFG.replacen(
            "[services.monolith]",
            "[gateway]\nrate_limit = \"per_client\"\n\n[rate_limits.per_client]\nlimits = [{ key = \"client_ip\", rate = \"100/s\", burst = 200 }, { key = \"route\", rate = \"2000/s\" }]\nlegacy_headers = true\n\n[services.monolith]",
            1,
        )
        .replace(
            "service = \"search\"\n",
            "service = \"search\"\nrate_limit = false\n",
        );
        let f = write_config(&cfg);
        let out = explain(f.path(), "GET", "/orders/1", &[]).unwrap();
        assert!(out.contains("rate_limits = \"per_client\""), "{out}");
        assert!(
            out.contains("- by client_ip: 100/s, burst 200 (named \"per_client.client_ip\""),
            "{out}"
        );
        assert!(out.contains("- by route: 2000/s, burst 2000"), "{out}");
        assert!(out.contains("at most 1000000 keys"), "{out}");
        assert!(out.contains("and X-RateLimit-*"), "{out}");
        let out = explain(f.path(), "GET", "/google/x", &[]).unwrap();
        assert!(
            out.contains(
                "rate limit: none (the route opts out of `[gateway] rate_limit = \"per_client\"`)"
            ),
            "{out}"
        );
    }

    #[test]
    fn check_exit_codes() {
        let f = write_config(CFG);
        assert_eq!(check(f.path()).0, 0);
        let f = write_config(&format!(
            "{CFG}\n[services.unused]\ninstances = [\"127.0.0.1:1\"]\n"
        ));
        let (code, out) = check(f.path());
        assert_eq!(code, 1, "{out}");
        let f = write_config(&CFG.replace("service = \"search\"", "service = \"serch\""));
        let (code, out) = check(f.path());
        assert_eq!(code, 2);
        assert!(out.contains("did you mean `search`?"), "{out}");
    }
}
