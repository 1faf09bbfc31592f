//! The admin listener's config beyond its address (`[gateway] admin`, compiled with the
//! listeners): who may use it, which needs the registry token whenever the listener can be
//! reached from other hosts or `admin_reads_need_token` asks for it, and how many
//! connections it may hold (`[gateway.limits] admin_connections`).

use std::net::SocketAddr;

use super::compiler::{span_of, Compiler};
use super::raw::{RawGateway, RawLimits, RawRegistry};

/// `admin_connections`, which must let at least one connection in.
pub(super) fn admin_connections(c: &mut Compiler<'_>, l: &RawLimits) -> Option<usize> {
    let n = l.admin_connections.as_ref()?;
    if *n.get_ref() == 0 {
        c.d.error_hint(
            span_of(n),
            "gateway.limits.admin_connections",
            "0 would close every admin connection, health checks included".to_string(),
            "leave it out for the default (64) or give a positive number".to_string(),
        );
        return None;
    }
    Some(*n.get_ref())
}

/// Refuses an admin listener whose writes or reads would need no credential while they
/// must: anyone who reaches a listener other hosts can reach could register an instance
/// into a service's pool and receive that service's traffic, or read the registry, the
/// metrics and the migration figures. `registration_open` says whether any service
/// accepts self-registration. An unspecified address (`0.0.0.0`, `[::]`) counts as
/// reachable, like every address that is not loopback; on loopback the token is needed
/// only with `admin_reads_need_token = true`. A token key that was given but is unusable
/// (an unset `token_env`, an empty `token`) is already an error of its own.
pub(super) fn check_admin_is_guarded(
    c: &mut Compiler<'_>,
    g: &RawGateway,
    admin: SocketAddr,
    registry: &RawRegistry,
    registration_open: bool,
) {
    let token_given = registry.token.is_some() || registry.token_env.is_some();
    let loopback = admin.ip().to_canonical().is_loopback();
    let reads_need_token = g.admin_reads_need_token.unwrap_or(false);
    if token_given || (loopback && !reads_need_token) {
        return;
    }
    // Without an `admin` key the listener is on loopback, so the key is always there.
    let span = g.admin.as_ref().map_or(0..0, span_of);
    let port = admin.port();
    let fix = "set `[registry] token_env = \"NAME\"` (the environment variable holding the \
               bearer token) or `token`";
    if loopback {
        c.d.error_hint(
            span,
            "gateway.admin_reads_need_token",
            "`admin_reads_need_token = true` but no token is configured: every admin read \
             but /healthz and /readyz would be refused",
            format!("{fix}, or leave `admin_reads_need_token` out"),
        );
    } else if registration_open {
        c.d.error_hint(
            span,
            "gateway.admin",
            format!(
                "the admin listener {admin} can be reached from other hosts, and registry \
                 writes need no token: anyone who reaches it could register an instance and \
                 receive a service's traffic"
            ),
            format!(
                "{fix}, or bind `admin` to loopback (\"127.0.0.1:{port}\" or \"[::1]:{port}\"; \
                 a changed `admin` applies at the next restart)"
            ),
        );
    } else {
        c.d.error_hint(
            span,
            "gateway.admin",
            format!(
                "the admin listener {admin} can be reached from other hosts, and no token is \
                 configured: its reads (the registry, /metrics, the migration board) need one"
            ),
            format!(
                "{fix} (Prometheus sends it with `authorization: {{credentials_file: ...}}`), \
                 or bind `admin` to loopback (\"127.0.0.1:{port}\" or \"[::1]:{port}\"; a \
                 changed `admin` applies at the next restart)"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{errors, messages, BASE, ROUTE};
    use std::path::Path;

    /// Registry writes change routing: an admin listener other hosts can reach needs a
    /// token for them, or no service may accept registrations.
    #[test]
    fn a_reachable_admin_listener_needs_a_registry_token() {
        let gateway = |admin: &str, extra: &str| {
            format!("[gateway]\nadmin = \"{admin}\"\n{extra}{BASE}{ROUTE}")
        };
        for admin in [
            "0.0.0.0:9901",
            "[::]:9901",
            "10.0.0.5:9901",
            "[fd00::5]:9901",
        ] {
            let d = errors(&gateway(admin, ""));
            assert_eq!(d.len(), 1, "{admin}: {d:#?}");
            assert_eq!((d[0].line, d[0].column), (2, 9), "{admin}: {d:#?}");
            assert_eq!(d[0].key, "gateway.admin");
            assert!(
                d[0].message.contains("registry writes need no token"),
                "{d:?}"
            );
            let hint = d[0].hint.as_deref().unwrap_or_default();
            assert!(
                hint.contains("token_env") && hint.contains("127.0.0.1:9901"),
                "{hint}"
            );
        }
        // Guarded: a token, loopback, or no registration anywhere.
        for ok in [
            gateway("0.0.0.0:9901", "[registry]\ntoken = \"s3cret\"\n"),
            gateway("127.0.0.1:9901", ""),
            gateway("[::1]:9901", ""),
            gateway("127.0.0.1:9901", "admin_reads_need_token = false\n"),
            gateway(
                "127.0.0.1:9901",
                "admin_reads_need_token = true\n[registry]\ntoken = \"s3cret\"\n",
            ),
        ] {
            let cfg = compile(Path::new("routes.toml"), &ok).map_err(|e| e.to_string());
            assert!(cfg.is_ok(), "{ok}\n{}", cfg.unwrap_err());
        }
        // Reads need the token too: without registration a reachable listener still needs
        // one, and so does a loopback one that asks for it.
        for (cfg, key, says) in [
            (
                gateway("0.0.0.0:9901", "[registry]\nregistration = false\n"),
                "gateway.admin",
                "its reads",
            ),
            (
                gateway("0.0.0.0:9901", "").replace(
                    "[services.orders]\n",
                    "[services.orders]\nregistration = false\n",
                ),
                "gateway.admin",
                "its reads",
            ),
            (
                gateway("127.0.0.1:9901", "admin_reads_need_token = true\n"),
                "gateway.admin_reads_need_token",
                "no token is configured",
            ),
        ] {
            let d = errors(&cfg);
            assert_eq!(d.len(), 1, "{cfg}: {d:#?}");
            assert_eq!(d[0].key, key, "{d:#?}");
            assert!(d[0].message.contains(says), "{d:#?}");
        }
        // An unset `token_env` is its own error, not also this one.
        let m = messages(&gateway(
            "0.0.0.0:9901",
            "[registry]\ntoken_env = \"FICUS_TEST_TOKEN_THAT_IS_NEVER_SET\"\n",
        ));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("is not set"), "{m:?}");
    }

    #[test]
    fn the_admin_connection_cap_must_let_one_in() {
        let d = errors(&format!(
            "[gateway.limits]\nadmin_connections = 0\n{BASE}{ROUTE}"
        ));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].key, "gateway.limits.admin_connections");
    }
}
