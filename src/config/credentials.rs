//! A service's `client_credentials = { ... }`: compiled into a [`ClientCredentialsSpec`].
//!
//! The secret comes from a file or an environment variable, read now, so `ficus check`
//! finds a missing one; an inline `client_secret` is refused. No message here ever holds
//! a secret's value (nor the token URL, which could hold a password when it is wrong).

use oauth2::url::{Host, Url};
use std::ops::Range;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::RawClientCredentials;
use crate::upstream::credentials::{ClientCredentialsSpec, Secret, DEFAULT_TIMEOUT};

/// Compiles `client_credentials` of the service whose key is `service_key`; `None` when
/// it has errors (reported).
pub(super) fn compile(
    c: &mut Compiler<'_>,
    service_key: &str,
    raw: &Spanned<RawClientCredentials>,
) -> Option<ClientCredentialsSpec> {
    let key = format!("{service_key}.client_credentials");
    let span = span_of(raw);
    let raw = raw.get_ref();
    let token_url = token_url(c, &key, &raw.token_url);
    let client_secret = client_secret(c, &key, &span, raw);
    let client_id = client_id(c, &key, &raw.client_id);
    let scopes_ok = raw
        .scopes
        .iter()
        .all(|s| scope(c, &format!("{key}.scopes"), s));
    let resource_ok = raw.resource.as_ref().is_none_or(|r| resource(c, &key, r));
    let audience_ok = raw.audience.as_ref().is_none_or(|a| {
        let blank = a.get_ref().trim().is_empty();
        if blank {
            c.d.error_hint(
                span_of(a),
                format!("{key}.audience"),
                "`audience` is empty",
                "name the API the token is for, or leave the key out",
            );
        }
        !blank
    });
    // `Some(None)`: the file is unusable (reported).
    let ca = raw
        .ca_file
        .as_ref()
        .map(|f| c.ca_certs(f.get_ref(), span_of(f), &format!("{key}.ca_file")));
    let timeout = c
        .positive_duration(
            &raw.timeout,
            &format!("{key}.timeout"),
            "every token request would fail",
        )
        .unwrap_or(DEFAULT_TIMEOUT);
    if !(scopes_ok && resource_ok && audience_ok) || matches!(ca, Some(None)) {
        return None;
    }
    Some(ClientCredentialsSpec {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes: raw.scopes.iter().map(|s| s.get_ref().clone()).collect(),
        resource: raw.resource.as_ref().map(|r| r.get_ref().clone()),
        audience: raw.audience.as_ref().map(|a| a.get_ref().clone()),
        ca: ca.flatten(),
        timeout,
    })
}

/// `token_url`: an absolute http(s) URL with a host, no credentials and no fragment
/// (RFC 6749 §3.2). Plain http to a host other than loopback is a warning: the secret and
/// the tokens would cross the network in clear text.
fn token_url(c: &mut Compiler<'_>, key: &str, raw: &Spanned<String>) -> Option<String> {
    let key = format!("{key}.token_url");
    let at = span_of(raw);
    let refuse = |c: &mut Compiler<'_>, message: &str, hint: &str| {
        c.d.error_hint(at.clone(), key.clone(), message, hint);
        None
    };
    let url = match Url::parse(raw.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            return refuse(
                c,
                &format!("`token_url` is not a URL ({e})"),
                "write the token endpoint's absolute URL, e.g. \"https://idp.example.com/oauth2/token\"",
            )
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return refuse(
            c,
            "`token_url` must be an http or https URL",
            "write the token endpoint's absolute URL, e.g. \"https://idp.example.com/oauth2/token\"",
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse(
            c,
            "`token_url` must not carry credentials",
            "the client authenticates with `client_id` and its secret (HTTP Basic); remove `user:password@`",
        );
    }
    if url.fragment().is_some() {
        return refuse(
            c,
            "`token_url` must not have a fragment (RFC 6749 §3.2)",
            "remove the `#...` part",
        );
    }
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => {
            return refuse(
                c,
                "`token_url` has no host",
                "e.g. \"https://idp.example.com/oauth2/token\"",
            )
        }
    };
    if url.scheme() == "http" && !loopback {
        c.d.warning(
            at,
            key,
            "`token_url` is plain http to a host that is not loopback: the client secret and the tokens cross the network unencrypted",
            Some("use https".into()),
        );
    }
    Some(url.to_string())
}

/// The secret: exactly one of `client_secret_file` and `client_secret_env`; an inline
/// `client_secret` is refused.
fn client_secret(
    c: &mut Compiler<'_>,
    key: &str,
    span: &Range<usize>,
    raw: &RawClientCredentials,
) -> Option<Secret> {
    const WHERE: &str = "put the secret in a file and set `client_secret_file = \"...\"`, or in an environment variable and set `client_secret_env = \"VAR\"`";
    if let Some(inline) = &raw.client_secret {
        c.d.error_hint(
            span_of(inline),
            format!("{key}.client_secret"),
            "an inline `client_secret` is not accepted: secrets do not belong in routes.toml",
            WHERE,
        );
        return None;
    }
    match (&raw.client_secret_file, &raw.client_secret_env) {
        (Some(file), None) => c
            .secret_from_file(file, &format!("{key}.client_secret_file"))
            .map(Secret::new),
        (None, Some(env)) => c
            .secret_from_env(
                env,
                &format!("{key}.client_secret_env"),
                "client secret",
                "use `client_secret_file`",
            )
            .map(Secret::new),
        (Some(_), Some(env)) => {
            c.d.error_hint(
                span_of(env),
                format!("{key}.client_secret_env"),
                "both `client_secret_file` and `client_secret_env` are set",
                "keep one of them",
            );
            None
        }
        (None, None) => {
            c.d.error_hint(
                span.clone(),
                key,
                "client credentials need the client's secret",
                WHERE,
            );
            None
        }
    }
}

/// `client_id`: visible ASCII and spaces (RFC 6749 appendix A.1), not blank.
fn client_id(c: &mut Compiler<'_>, key: &str, raw: &Spanned<String>) -> Option<String> {
    let id = raw.get_ref();
    if id.trim().is_empty() || !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        c.d.error_hint(
            span_of(raw),
            format!("{key}.client_id"),
            "`client_id` must be printable ASCII and not blank",
            "use the client id the identity provider gave this gateway",
        );
        return None;
    }
    Some(id.clone())
}

/// One scope: a scope-token of RFC 6749 §3.3 (visible ASCII but `"` and `\`).
fn scope(c: &mut Compiler<'_>, key: &str, raw: &Spanned<String>) -> bool {
    let s = raw.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e));
    if !ok {
        c.d.error_hint(
            span_of(raw),
            key,
            format!("{s:?} is not a scope"),
            "a scope is visible ASCII without spaces, `\"` or `\\`; list each scope as a string of its own: scopes = [\"orders:read\", \"orders:write\"]",
        );
    }
    ok
}

/// `resource`: an absolute URI without a fragment (RFC 8707 §2).
fn resource(c: &mut Compiler<'_>, key: &str, raw: &Spanned<String>) -> bool {
    let ok = Url::parse(raw.get_ref()).is_ok_and(|u| u.fragment().is_none());
    if !ok {
        c.d.error_hint(
            span_of(raw),
            format!("{key}.resource"),
            "`resource` must be an absolute URI without a fragment (RFC 8707)",
            "e.g. \"https://api.example.com/orders\" or \"urn:api:shop\"",
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::diag::Severity;
    use super::super::testing::{errors, BASE, ROUTE};
    use std::path::Path;

    /// `BASE` and `ROUTE` with `client_credentials = { <keys> }` on the orders service.
    fn with_credentials(keys: &str) -> String {
        format!("{BASE}client_credentials = {{ {keys} }}\n{ROUTE}")
    }

    fn messages_at(src: &str) -> Vec<(usize, usize, String, String)> {
        errors(src)
            .into_iter()
            .map(|d| (d.line, d.column, d.key, d.message))
            .collect()
    }

    #[test]
    fn a_complete_entry_compiles_with_the_secret_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gw.secret"), "s3cret\n").unwrap();
        let src = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_file = \"gw.secret\", scopes = [\"orders:read\", \"orders:write\"], resource = \"urn:api:shop\", audience = \"shop\", timeout = \"2s\"",
        );
        let cfg = compile(&dir.path().join("routes.toml"), &src).unwrap();
        let cc = cfg.services[0].client_credentials.as_ref().unwrap();
        assert_eq!(cc.client_secret.expose(), "s3cret");
        assert_eq!(cc.scopes, ["orders:read", "orders:write"]);
        assert_eq!(cc.resource.as_deref(), Some("urn:api:shop"));
        assert_eq!(cc.audience.as_deref(), Some("shop"));
        assert_eq!(cc.timeout, std::time::Duration::from_secs(2));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn an_inline_secret_is_refused_without_echoing_it() {
        let src = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret = \"hunter2\"",
        );
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].key, "services.orders.client_credentials.client_secret");
        assert!(d[0].message.contains("inline `client_secret`"), "{d:?}");
        let hint = d[0].hint.as_deref().unwrap();
        assert!(hint.contains("client_secret_file") && hint.contains("client_secret_env"));
        assert!(!d[0].to_string().contains("hunter2"), "{}", d[0]);
    }

    #[test]
    fn every_bad_value_is_reported_at_its_own_position() {
        let src = with_credentials(
            "token_url = \"ftp://idp.example.com/token\", client_id = \"\", client_secret_file = \"missing.secret\", scopes = [\"orders read\"], resource = \"not a uri\", timeout = \"0s\"",
        );
        let got = messages_at(&src);
        let keys: Vec<&str> = got.iter().map(|(_, _, k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "services.orders.client_credentials.token_url",
                "services.orders.client_credentials.client_id",
                "services.orders.client_credentials.client_secret_file",
                "services.orders.client_credentials.scopes",
                "services.orders.client_credentials.resource",
                "services.orders.client_credentials.timeout",
            ],
            "{got:#?}"
        );
        // All on the service's line, each at its own column.
        assert!(got.iter().all(|(line, ..)| *line == got[0].0), "{got:#?}");
        let columns: Vec<usize> = got.iter().map(|(_, col, ..)| *col).collect();
        assert!(columns.windows(2).all(|w| w[0] < w[1]), "{got:#?}");
        assert!(got[2].3.contains("cannot read"), "{got:#?}");
    }

    #[test]
    fn the_secret_needs_exactly_one_source() {
        let none =
            with_credentials("token_url = \"https://idp.example.com/token\", client_id = \"gw\"");
        assert!(messages_at(&none)[0].3.contains("need the client's secret"));
        std::env::set_var("FICUS_TEST_CC_SECRET_BOTH", "x");
        let both = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_file = \"a\", client_secret_env = \"FICUS_TEST_CC_SECRET_BOTH\"",
        );
        assert!(messages_at(&both)[0].3.contains("both"));
        let unset = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_env = \"FICUS_TEST_CC_SECRET_UNSET\"",
        );
        assert!(messages_at(&unset)[0].3.contains("is not set"));
        std::env::set_var("FICUS_TEST_CC_SECRET_EMPTY", " ");
        let empty = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_env = \"FICUS_TEST_CC_SECRET_EMPTY\"",
        );
        assert!(messages_at(&empty)[0].3.contains("is empty"));
        std::env::set_var("FICUS_TEST_CC_SECRET_SET", "from-env");
        let set = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_env = \"FICUS_TEST_CC_SECRET_SET\"",
        );
        let cfg = compile(Path::new("routes.toml"), &set).unwrap();
        let cc = cfg.services[0].client_credentials.as_ref().unwrap();
        assert_eq!(cc.client_secret.expose(), "from-env");
    }

    #[test]
    fn token_urls() {
        std::env::set_var("FICUS_TEST_CC_URLS", "x");
        let with_url = |url: &str| {
            with_credentials(&format!(
                "token_url = \"{url}\", client_id = \"gw\", client_secret_env = \"FICUS_TEST_CC_URLS\""
            ))
        };
        for bad in [
            "idp.example.com/token",
            "https://gw:pw@idp.example.com/token",
            "https://idp.example.com/token#x",
        ] {
            let d = errors(&with_url(bad));
            assert_eq!(d.len(), 1, "{bad}: {d:#?}");
            assert!(!d[0].to_string().contains("pw@"), "{}", d[0]);
        }
        // Plain http: fine on loopback, a warning elsewhere.
        for quiet in [
            "http://127.0.0.1:9000/token",
            "http://localhost/token",
            "http://[::1]/t",
        ] {
            let cfg = compile(Path::new("routes.toml"), &with_url(quiet)).unwrap();
            assert!(cfg.warnings.is_empty(), "{quiet}: {:?}", cfg.warnings);
        }
        let cfg = compile(
            Path::new("routes.toml"),
            &with_url("http://idp.example.com/token"),
        )
        .unwrap();
        assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
        assert_eq!(cfg.warnings[0].severity, Severity::Warning);
        assert!(cfg.warnings[0].message.contains("unencrypted"));
    }

    #[test]
    fn an_unknown_key_gets_a_suggestion() {
        let src = with_credentials(
            "token_url = \"https://idp.example.com/token\", client_id = \"gw\", client_secret_env = \"FICUS_TEST_CC_KEYS\", scope = [\"a\"]",
        );
        std::env::set_var("FICUS_TEST_CC_KEYS", "x");
        let d = errors(&src);
        assert_eq!(
            d[0].key, "services.orders.client_credentials.scope",
            "{d:#?}"
        );
        assert!(
            d[0].hint
                .as_deref()
                .unwrap()
                .contains("did you mean `scopes`?"),
            "{d:?}"
        );
    }
}
