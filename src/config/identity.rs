//! Checks across sections: keys that read a request (a split's `sticky`, a rate limit's
//! `header:` key, a service's `hash_on`) against the identity headers the auth policies
//! set, a sticky claim on a route without `auth`, and a CORS policy that would refuse the
//! preflight of its own route's token header.
//!
//! ficus removes clients' copies of every identity header (`claims_to_headers`,
//! `forward_claims` of any `[auth.NAME]`) from every request before the upstream, and
//! sets the verified values after `auth`: a key that names one reads the copy the client
//! chose, never the verified value. These are config checks only: nothing here runs per
//! request.

use ficus_plugins::auth::{self, TokenSource};
use ficus_plugins::cors::{Cors, CorsSettings};
use ficus_plugins::PolicyKind;
use http::HeaderName;
use std::collections::HashSet;
use std::ops::Range;
use toml::de::DeValue;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::RawRoute;
use super::sections::Sections;
use crate::policy::{Chain, Policies};

/// What an identity header carries.
enum Carries {
    /// One claim, by its path (`claims_to_headers`).
    Claim(String),
    /// Every verified claim (`forward_claims`).
    AllClaims,
}

/// One header an auth policy sets from the verified identity.
struct IdentityHeader {
    /// The header's name as compared: lower case, `_` as `-` (a policy may write it with
    /// `_`; the removal treats both spellings as one).
    dashed: String,
    policy: String,
    carries: Carries,
}

/// The identity headers of every auth policy that compiled, in file order.
pub(super) struct IdentityHeaders(Vec<IdentityHeader>);

impl IdentityHeaders {
    pub(super) fn of(policies: &Policies) -> IdentityHeaders {
        let mut out = Vec::new();
        for p in policies.iter().filter(|p| p.kind == auth::SECTION) {
            let Some(a) = p.plugin.clone().authenticator() else {
                continue;
            };
            let common = a.common();
            for (claim, header) in &common.claims_to_headers {
                out.push(IdentityHeader {
                    dashed: dashed(header.as_str()),
                    policy: p.name.to_string(),
                    carries: Carries::Claim(claim.clone()),
                });
            }
            if let Some(h) = &common.forward_claims {
                out.push(IdentityHeader {
                    dashed: dashed(h.as_str()),
                    policy: p.name.to_string(),
                    carries: Carries::AllClaims,
                });
            }
        }
        IdentityHeaders(out)
    }

    /// The identity header `written` names, if it is one: compared without regard to case
    /// and with `_` as `-`, as the removal does (`x_user_id` is removed with `X-User-Id`).
    /// A name that is not a header name is reported elsewhere.
    fn find(&self, written: &str) -> Option<&IdentityHeader> {
        let written = dashed(written.trim());
        self.0.iter().find(|h| h.dashed == written)
    }
}

/// A header name as the identity-header removal compares it: lower case, `_` as `-`.
fn dashed(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

impl IdentityHeader {
    /// The error's message: what the header is and why the key cannot work.
    fn message(&self, written: &str) -> String {
        let carries = match &self.carries {
            Carries::Claim(c) => format!("claim `{c}`"),
            Carries::AllClaims => "every verified claim, as `forward_claims`".to_string(),
        };
        format!(
            "`{written}` is an identity header set by auth policy `{}` ({carries}): clients' copies are removed before the upstream, so this key would read a value the client chose",
            self.policy
        )
    }

    /// The claim to name instead (`sub` when the header carries every claim).
    fn claim(&self) -> &str {
        match &self.carries {
            Carries::Claim(c) => c,
            Carries::AllClaims => "sub",
        }
    }
}

/// A `header:NAME` part of a rate limit's key, as written, with its position.
pub(super) struct HeaderKey {
    /// The key's path under the policy (`limits[0].key`, `limits[1].key[1]`).
    key: String,
    header: String,
    span: Range<usize>,
}

/// The `header:` parts of the keys of a `[rate_limits.NAME]` table as written (the
/// compiled policy keeps no positions). A table of the wrong shape yields nothing: the
/// policy's own compile step reports it.
pub(super) fn rate_limit_header_keys(table: &Spanned<DeValue<'_>>) -> Vec<HeaderKey> {
    let mut out = Vec::new();
    let DeValue::Table(t) = table.get_ref() else {
        return out;
    };
    let Some(DeValue::Array(limits)) = t
        .iter()
        .find(|(k, _)| k.get_ref() == "limits")
        .map(|(_, v)| v.get_ref())
    else {
        return out;
    };
    for (i, limit) in limits.iter().enumerate() {
        let DeValue::Table(l) = limit.get_ref() else {
            continue;
        };
        let Some((_, key)) = l.iter().find(|(k, _)| k.get_ref() == "key") else {
            continue;
        };
        let parts: Vec<(String, &Spanned<DeValue<'_>>)> = match key.get_ref() {
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .map(|(j, p)| (format!("limits[{i}].key[{j}]"), p))
                .collect(),
            _ => vec![(format!("limits[{i}].key"), key)],
        };
        for (path, part) in parts {
            if let DeValue::String(s) = part.get_ref() {
                if let Some(h) = s.strip_prefix("header:") {
                    out.push(HeaderKey {
                        key: path,
                        header: h.trim().to_string(),
                        span: part.span(),
                    });
                }
            }
        }
    }
    out
}

/// Rate-limit `header:` keys and services' `hash_on` headers that name an identity
/// header: errors at the key.
pub(super) fn check_policy_and_service_keys(
    c: &mut Compiler<'_>,
    ids: &IdentityHeaders,
    sections: &Sections<'_>,
) {
    for (policy, k) in &sections.policies.header_keys {
        if let Some(id) = ids.find(&k.header) {
            c.d.error_hint(
                k.span.clone(),
                format!("rate_limits.{policy}.{}", k.key),
                id.message(&k.header),
                format!(
                    "use `claim:{}`: the verified claim itself (a request without a verified identity counts by its client address)",
                    id.claim()
                ),
            );
        }
    }
    for (name, _, raw) in &sections.services {
        let hashed = raw.lb.as_ref().is_some_and(|l| l.get_ref() == "hash");
        let Some(on) = raw.hash_on.as_ref().filter(|_| hashed) else {
            continue;
        };
        let Some(header) = on.get_ref().strip_prefix("header:").map(str::trim) else {
            continue;
        };
        if let Some(id) = ids.find(header) {
            c.d.error_hint(
                span_of(on),
                format!("services.{name}.hash_on"),
                id.message(header),
                format!(
                    "`hash_on` reads no claims: hash on a header no auth policy sets, on `cookie:NAME` or on `client_ip`; to keep each user on one service by the verified identity, split the route and use `sticky = {{ claim = \"{}\" }}`",
                    id.claim()
                ),
            );
        }
    }
}

/// Pairs of (CORS policy, header) already warned about, so a policy shared by many routes
/// is reported once.
pub(super) type Warned = HashSet<(String, HeaderName)>;

/// A route's `sticky` against its `auth`, and its CORS policy against its auth policies'
/// token headers.
pub(super) fn check_route(
    c: &mut Compiler<'_>,
    ids: &IdentityHeaders,
    key: &str,
    raw: &RawRoute,
    chain: &Chain,
    warned: &mut Warned,
) {
    if let Some(sticky) = &raw.sticky {
        let sticky = sticky.get_ref();
        if let Some(h) = &sticky.header {
            if let Some(id) = ids.find(h.get_ref()) {
                c.d.error_hint(
                    span_of(h),
                    format!("{key}.sticky.header"),
                    id.message(h.get_ref()),
                    format!(
                        "use `sticky = {{ claim = \"{}\" }}`: the verified claim itself (on a route with `auth`)",
                        id.claim()
                    ),
                );
            }
        }
        // There is no gateway-wide `auth`: a route's effective auth is its own. (Without a
        // split, `sticky` itself is the error.)
        if let (Some(claim), None, Some(_)) = (&sticky.claim, &raw.auth, &raw.split) {
            c.d.error_hint(
                span_of(claim),
                format!("{key}.sticky.claim"),
                format!(
                    "`sticky = {{ claim = \"{}\" }}` on a route without `auth`: no request has a verified claim, so every request would be placed at random",
                    claim.get_ref()
                ),
                "add `auth = \"NAME\"` to the route, or keep users on a side by a cookie, a header or `client_ip = true`",
            );
        }
    }
    check_cors_allows_token_headers(c, key, raw, chain, warned);
}

/// Warns when the route's CORS policy does not allow the request header an auth policy
/// of the route reads its token from: a page's call with the token gets its preflight
/// refused (`Cookie` and query tokens need no preflight header).
fn check_cors_allows_token_headers(
    c: &mut Compiler<'_>,
    key: &str,
    raw: &RawRoute,
    chain: &Chain,
    warned: &mut Warned,
) {
    let Some(cors) = chain.policies.iter().find(|p| p.kind == Cors::SECTION) else {
        return;
    };
    let Some(settings) = cors.settings::<CorsSettings>() else {
        return;
    };
    let Some(auth_key) = &raw.auth else {
        return;
    };
    for p in chain.policies.iter().filter(|p| p.kind == auth::SECTION) {
        let Some(a) = p.plugin.clone().authenticator() else {
            continue;
        };
        let header = match &a.common().token {
            TokenSource::Bearer => http::header::AUTHORIZATION,
            TokenSource::Header(h) => h.clone(),
            TokenSource::Cookie(_) | TokenSource::Query(_) => continue,
        };
        if settings.headers.contains(&header)
            || !warned.insert((cors.name.to_string(), header.clone()))
        {
            continue;
        }
        c.d.warning(
            span_of(auth_key),
            format!("{key}.auth"),
            format!(
                "auth policy `{}` reads its token from the `{header}` header, which CORS policy `{}` does not allow: a browser's preflight for a call that sends the token is refused (403)",
                p.name, cors.name
            ),
            Some(format!(
                "add \"{}\" to `headers` of `[cors.{}]`",
                display_name(&header),
                cors.name
            )),
        );
    }
}

/// A header name as people write it in a config (`Authorization`, `X-Api-Key`).
fn display_name(h: &HeaderName) -> String {
    h.as_str()
        .split('-')
        .map(|part| {
            let mut cs = part.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, BASE};
    use super::super::{compile, Severity};
    use std::path::Path;

    const AUTH: &str = "[auth.corp]\nissuer = \"http://127.0.0.1:1\"\naudience = \"api\"\nclaims_to_headers = { sub = \"X-User-Id\" }\nforward_claims = \"X-Claims\"\n[services.next]\ninstances = [\"127.0.0.1:9\"]\n";

    fn split_route(keys: &str) -> String {
        format!("[[routes]]\nname = \"o\"\nmatch = {{ path = \"/o/**\" }}\nsplit = [{{ service = \"orders\", weight = 1 }}, {{ service = \"next\", weight = 1 }}]\n{keys}")
    }

    fn keyed(src: &str) -> Vec<(String, String, String)> {
        errors(src)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.key, d.message, d.hint.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn keys_that_read_an_identity_header_are_refused_whatever_its_case() {
        let src = format!(
            "{BASE}{AUTH}[rate_limits.rl]\nlimits = [{{ key = [\"route\", \"header:x_user-ID\"], rate = \"1/s\" }}, {{ key = \"header:X-Api-Key\", rate = \"1/s\" }}]\n[services.h]\ninstances = [\"127.0.0.1:7\"]\nlb = \"hash\"\nhash_on = \"header:X-CLAIMS\"\n{}rate_limit = \"rl\"\nauth = \"corp\"\n[[routes]]\nname = \"h\"\nmatch = {{ path = \"/h/**\" }}\nservice = \"h\"\n",
            split_route("sticky = { header = \"x-user-id\" }\n")
        );
        let d = keyed(&src);
        assert_eq!(d.len(), 3, "{d:#?}");
        let (key, message, hint) = &d[0];
        assert_eq!(key, "rate_limits.rl.limits[0].key[1]");
        assert!(message.starts_with("`x_user-ID` is an identity header set by auth policy `corp` (claim `sub`): clients' copies are removed"), "{message}");
        assert!(hint.starts_with("use `claim:sub`"), "{hint}");
        let (key, message, hint) = &d[1];
        assert_eq!(key, "services.h.hash_on");
        assert!(
            message.contains("(every verified claim, as `forward_claims`)"),
            "{message}"
        );
        assert!(hint.contains("`hash_on` reads no claims"), "{hint}");
        let (key, _, hint) = &d[2];
        assert_eq!(key, "routes[0].sticky.header");
        assert!(
            hint.starts_with("use `sticky = { claim = \"sub\" }`"),
            "{hint}"
        );
    }

    #[test]
    fn an_identity_header_written_with_underscores_is_one_too() {
        // The policy writes the header with `_`; keys name it either way.
        let auth = AUTH.replace("X-User-Id", "X_User_Id");
        let src = format!(
            "{BASE}{auth}[rate_limits.rl]\nlimits = [{{ key = \"header:X_User_Id\", rate = \"1/s\" }}, {{ key = \"header:x-user-id\", rate = \"1/s\" }}]\n{}rate_limit = \"rl\"\nauth = \"corp\"\n",
            split_route("sticky = { header = \"X_USER_ID\" }\n")
        );
        let d = keyed(&src);
        let keys: Vec<&str> = d.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rate_limits.rl.limits[0].key",
                "rate_limits.rl.limits[1].key",
                "routes[0].sticky.header"
            ],
            "{d:#?}"
        );
    }

    #[test]
    fn a_sticky_claim_needs_the_routes_auth() {
        let d = keyed(&format!(
            "{BASE}{AUTH}{}",
            split_route("sticky = { claim = \"sub\" }\n")
        ));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].0, "routes[0].sticky.claim");
        assert!(d[0].1.contains("on a route without `auth`"), "{d:?}");
        let ok = format!(
            "{BASE}{AUTH}{}",
            split_route("sticky = { claim = \"sub\" }\nauth = \"corp\"\n")
        );
        assert_eq!(keyed(&ok), vec![]);
    }

    #[test]
    fn a_cors_policy_that_refuses_the_token_header_is_warned_about_once() {
        let route = |name: &str, path: &str| {
            format!("[[routes]]\nname = \"{name}\"\nmatch = {{ path = \"{path}\" }}\nservice = \"orders\"\nauth = \"corp\"\n")
        };
        let cors = |headers: &str| {
            format!("[gateway]\ncors = \"shop\"\n[cors.shop]\norigins = [\"https://shop.example.com\"]\nheaders = {headers}\n")
        };
        let src = format!(
            "{BASE}{}{AUTH}{}{}",
            cors("[\"Content-Type\"]"),
            route("a", "/a/**"),
            route("b", "/b/**")
        );
        let cfg = compile(Path::new("routes.toml"), &src).expect("warnings only");
        let w: Vec<_> = cfg
            .warnings
            .iter()
            .filter(|w| w.message.contains("does not allow"))
            .collect();
        assert_eq!(w.len(), 1, "{w:#?}");
        assert_eq!(w[0].key, "routes[0].auth");
        assert_eq!(
            w[0].hint.as_deref(),
            Some("add \"Authorization\" to `headers` of `[cors.shop]`")
        );
        let src = format!(
            "{BASE}{}{AUTH}{}",
            cors("[\"authorization\"]"),
            route("a", "/a/**")
        );
        let cfg = compile(Path::new("routes.toml"), &src).expect("warnings only");
        assert!(
            !cfg.warnings
                .iter()
                .any(|w| w.message.contains("does not allow")),
            "{:#?}",
            cfg.warnings
        );
    }
}
