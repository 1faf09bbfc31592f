//! Policy sections (`[access.NAME]`, and with the issues that follow `[auth.NAME]`,
//! `[rate_limits.NAME]`, `[cors.NAME]`) and the route keys that name them.
//!
//! Every built-in policy kind is listed here, in [`read_policy_section`] and
//! [`POLICY_SECTIONS`]: no global or link-time registration. A section is deserialized
//! into its kind's typed config (every unknown key and wrong type reported at its
//! position, with did-you-mean hints), then checked and compiled by the kind; problems the
//! kind reports keep their spans. A compiled policy becomes an instance, reusing the
//! running one when its settings did not change (see `crate::policy`).

use ficus_plugins::access::Access;
use ficus_plugins::auth::gate::AuthGate;
use ficus_plugins::auth::introspection::Introspection;
use ficus_plugins::auth::jwt::Jwt;
use ficus_plugins::auth::requirements::Requirements;
use ficus_plugins::cors::Cors;
use ficus_plugins::ratelimit::{self, RateLimit};
use ficus_plugins::{auth, CompileContext, PolicyKind, Problem, Severity, Stage};
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use toml::de::DeValue;
use toml::Spanned;

use super::compiler::{deserialize, Compiler};
use super::diag::closest_name;
use super::identity::{rate_limit_header_keys, HeaderKey};
use super::raw::{NameList, PolicyRef, RawGateway, RawRoute};
use super::recover::locate;
use crate::policy::{instantiate, Chain, Link, Policies, PolicyInstance};

/// The top-level tables that hold policies, as `(section, route key)`.
pub const POLICY_SECTIONS: [(&str, &str); 4] = [
    (Access::SECTION, "access"),
    (auth::SECTION, "auth"),
    (Cors::SECTION, "cors"),
    (ratelimit::SECTION, ratelimit::ROUTE_KEY),
];

/// Policies read from the file.
#[derive(Default)]
pub struct PolicySections {
    pub compiled: Policies,
    /// `(section, name)` of policies whose section had errors: routes naming them are not
    /// told "unknown policy" on top.
    pub failed: HashSet<(&'static str, String)>,
    /// Where each policy is defined, for "not used" warnings.
    pub spans: Vec<(&'static str, String, Range<usize>)>,
    /// Sections that are not a table of policies at all (reported once, so routes naming
    /// one of their policies are not told "unknown policy" on top).
    pub broken_sections: HashSet<&'static str>,
    /// The `header:` parts of rate-limit keys, by policy name, with their positions: checked
    /// against the identity headers once every auth policy is read.
    pub header_keys: Vec<(String, HeaderKey)>,
}

/// Reads a policy section if `section` names a policy kind; `false` when it does not.
pub fn read_policy_section(
    c: &mut Compiler<'_>,
    section: &str,
    value: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
) -> bool {
    match section {
        Access::SECTION => read_section(
            c,
            Access::SECTION,
            value,
            out,
            previous,
            read_entry::<Access>,
        ),
        auth::SECTION => read_section(c, auth::SECTION, value, out, previous, read_auth_entry),
        Cors::SECTION => read_section(c, Cors::SECTION, value, out, previous, read_entry::<Cors>),
        ratelimit::SECTION => read_section(
            c,
            ratelimit::SECTION,
            value,
            out,
            previous,
            read_rate_limit_entry,
        ),
        _ => return false,
    }
    true
}

/// Reads one `[SECTION.NAME]` table into a policy.
type ReadEntry = fn(
    &mut Compiler<'_>,
    &str,
    std::ops::Range<usize>,
    Spanned<DeValue<'_>>,
    &mut PolicySections,
    Option<&Policies>,
);

/// Checks that `value` is a table of named policies and reads each with `read`.
fn read_section(
    c: &mut Compiler<'_>,
    section: &'static str,
    value: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
    read: ReadEntry,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        out.broken_sections.insert(section);
        c.d.error_hint(
            span,
            section,
            format!("`{section}` must be a table of named policies"),
            format!("write each policy as a `[{section}.NAME]` section"),
        );
        return;
    };
    for (name, v) in table {
        let name_span = name.span();
        let name = name.into_inner().to_string();
        // `[access]` with keys right under it: those keys are not policies.
        if !matches!(v.get_ref(), DeValue::Table(_)) {
            c.d.error_hint(
                name_span,
                format!("{section}.{name}"),
                format!("`{section}.{name}` is not a policy"),
                format!(
                    "each policy is a named table: write `[{section}.NAME]` and its keys under it"
                ),
            );
            out.broken_sections.insert(section);
            continue;
        }
        // Names label logs, `/policies` and `explain` output, one per line.
        if name.is_empty() || name.chars().any(char::is_control) {
            c.d.error_hint(
                name_span.clone(),
                section,
                format!(
                    "the name of a `[{section}.NAME]` policy must not be empty or hold control characters"
                ),
                format!("name it like `[{section}.office]`"),
            );
            out.failed.insert((section, name));
            continue;
        }
        out.spans.push((section, name.clone(), name_span.clone()));
        read(c, &name, name_span, v, out, previous);
    }
}

/// The kinds of `[auth.NAME]`, by their `type`.
const AUTH_TYPES: [&str; 2] = ["jwt", "introspection"];

/// `[auth.NAME]`: its `type` (default `jwt`) picks the kind.
fn read_auth_entry(
    c: &mut Compiler<'_>,
    name: &str,
    name_span: std::ops::Range<usize>,
    v: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
) {
    let key = format!("{}.{name}", auth::SECTION);
    let kind = v
        .get_ref()
        .get("type")
        .map(|t| (t.span(), t.get_ref().as_str()));
    match kind {
        None | Some((_, Some("jwt"))) => read_entry::<Jwt>(c, name, name_span, v, out, previous),
        Some((_, Some("introspection"))) => {
            read_entry::<Introspection>(c, name, name_span, v, out, previous)
        }
        Some((at, other)) => {
            let hint = match other.and_then(|o| closest_name(o, &AUTH_TYPES)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the types are {}", AUTH_TYPES.join(" and ")),
            };
            let what = other.map_or("this".to_string(), |o| format!("`{o}`"));
            c.d.error_hint(
                at,
                format!("{key}.type"),
                format!("{what} is not an auth type"),
                hint,
            );
            out.failed.insert((auth::SECTION, name.to_string()));
        }
    }
}

/// `[rate_limits.NAME]`: its `header:` keys are noted with their positions (see
/// `identity`), then the policy is read like any other.
fn read_rate_limit_entry(
    c: &mut Compiler<'_>,
    name: &str,
    name_span: std::ops::Range<usize>,
    v: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
) {
    for k in rate_limit_header_keys(&v) {
        out.header_keys.push((name.to_string(), k));
    }
    read_entry::<RateLimit>(c, name, name_span, v, out, previous);
}

/// Deserializes, compiles and instantiates one `[K::SECTION.NAME]` table.
fn read_entry<K: PolicyKind>(
    c: &mut Compiler<'_>,
    name: &str,
    _name_span: std::ops::Range<usize>,
    v: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
) {
    let key = format!("{}.{name}", K::SECTION);
    let section_span = v.span();
    // The section as written: a value's position names its key (an entry the kind
    // reports may sit after entries serde already dropped, so its own index is off).
    let as_written = v.clone();
    let Some(config) = deserialize::<K::Config>(c, v, &key) else {
        out.failed.insert((K::SECTION, name.to_string()));
        return;
    };
    let mut cx = CompileContext::new(&c.base_dir);
    let settings = K::compile(config, &mut cx);
    let problems = cx.into_problems();
    report(c, problems, Some(&as_written), &section_span, &key);
    match settings {
        Some(s) => out.compiled.insert(instantiate::<K>(name, s, previous)),
        None => {
            out.failed.insert((K::SECTION, name.to_string()));
        }
    }
}

/// Reports what a kind's compile step found, each at its position and named by its key
/// under `key`.
fn report(
    c: &mut Compiler<'_>,
    problems: Vec<Problem>,
    as_written: Option<&Spanned<DeValue<'_>>>,
    whole: &std::ops::Range<usize>,
    key: &str,
) {
    for p in problems {
        let located = p
            .span
            .as_ref()
            .zip(as_written)
            .and_then(|(at, w)| locate(w, at));
        let at = p.span.unwrap_or_else(|| whole.clone());
        let full = match (located, p.key.is_empty()) {
            (Some(path), _) => format!("{key}.{path}"),
            (None, true) => key.to_string(),
            (None, false) => format!("{key}.{}", p.key),
        };
        match (p.severity, p.hint) {
            (Severity::Error, Some(hint)) => c.d.error_hint(at, full, p.message, hint),
            (Severity::Error, None) => c.d.error(at, full, p.message),
            (Severity::Warning, hint) => c.d.warning(at, full, p.message, hint),
        }
    }
}

/// The policy a route key names; an unknown name is an error with a hint.
fn resolve(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    section: &'static str,
    name: &Spanned<String>,
    key: &str,
) -> Option<Arc<PolicyInstance>> {
    let n = name.get_ref();
    if let Some(p) = sections.compiled.get(section, n) {
        used.insert((section, n.clone()));
        return Some(p.clone());
    }
    if sections.failed.contains(&(section, n.clone())) || sections.broken_sections.contains(section)
    {
        used.insert((section, n.clone()));
        return None;
    }
    let known: Vec<&str> = sections
        .spans
        .iter()
        .filter(|(s, _, _)| *s == section)
        .map(|(_, n, _)| n.as_str())
        .collect();
    let suggestion = closest_name(n, &known);
    if let Some(s) = suggestion {
        used.insert((section, s.to_string()));
    }
    let hint = match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("define it under `[{section}.{n}]`"),
        None => format!("known {section} policies: {}", known.join(", ")),
    };
    c.d.error_hint(
        name.span(),
        key,
        format!("unknown {section} policy `{n}`"),
        hint,
    );
    None
}

/// The gateway-wide default policies of routes that name none (`[gateway] cors`,
/// `[gateway] rate_limit`), resolved once: an unknown name is reported at the gateway key,
/// once, not once per route.
#[derive(Default)]
pub struct PolicyDefaults {
    cors: Option<Arc<PolicyInstance>>,
    rate_limit: Option<Arc<PolicyInstance>>,
}

/// Resolves the `[gateway]` defaults.
pub fn policy_defaults(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    gateway: Option<&RawGateway>,
) -> PolicyDefaults {
    let Some(g) = gateway else {
        return PolicyDefaults::default();
    };
    let rate_limit_key = format!("gateway.{}", ratelimit::ROUTE_KEY);
    PolicyDefaults {
        cors: g
            .cors
            .as_ref()
            .and_then(|n| resolve(c, sections, used, Cors::SECTION, n, "gateway.cors")),
        rate_limit: g
            .rate_limit
            .as_ref()
            .and_then(|n| resolve(c, sections, used, RateLimit::SECTION, n, &rate_limit_key)),
    }
}

/// The chain of policies a route names (or `[gateway]` names for it).
pub fn route_chain(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    defaults: &PolicyDefaults,
    route_key: &str,
    raw: &RawRoute,
) -> Chain {
    let mut links = Vec::new();
    links.extend(defaulted_link(
        c,
        sections,
        used,
        defaults.cors.as_ref(),
        Cors::SECTION,
        raw.cors.as_ref(),
        format!("{route_key}.cors"),
    ));
    if let Some(name) = &raw.access {
        let key = format!("{route_key}.access");
        links.extend(resolve(c, sections, used, Access::SECTION, name, &key).map(Link::policy));
    }
    links.extend(auth_gate(c, sections, used, route_key, raw));
    links.extend(defaulted_link(
        c,
        sections,
        used,
        defaults.rate_limit.as_ref(),
        RateLimit::SECTION,
        raw.rate_limit.as_ref(),
        format!("{route_key}.{}", ratelimit::ROUTE_KEY),
    ));
    Chain::new(links)
}

/// A policy a route names with a key that has a gateway default (`cors`, `rate_limit`):
/// the route's own, else the default; `false` opts out.
#[allow(clippy::too_many_arguments)]
fn defaulted_link(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    default: Option<&Arc<PolicyInstance>>,
    section: &'static str,
    route_ref: Option<&Spanned<PolicyRef>>,
    key: String,
) -> Option<Link> {
    let policy = match route_ref {
        None => default.cloned(),
        Some(r) => match r.get_ref() {
            PolicyRef::Off => None,
            PolicyRef::Name(n) => {
                let name = Spanned::new(r.span(), n.clone());
                resolve(c, sections, used, section, &name, &key)
            }
        },
    };
    policy.map(Link::policy)
}

/// The route's auth step: its `auth` policies with its `scopes` and `claims`.
fn auth_gate(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    route_key: &str,
    raw: &RawRoute,
) -> Option<Link> {
    let mut cx = CompileContext::new(&c.base_dir);
    let requirements = Requirements::compile(raw.scopes.as_ref(), &raw.claims, &mut cx);
    let problems = cx.into_problems();
    report(c, problems, None, &(0..0), route_key);
    let Some(list) = &raw.auth else {
        if let Some(s) = &raw.scopes {
            c.d.error_hint(
                s.span(),
                format!("{route_key}.scopes"),
                "`scopes` needs `auth`: there is no verified token to take scopes from",
                "name an auth policy on the route: auth = \"NAME\"",
            );
        } else if let Some(rule) = raw.claims.first() {
            c.d.error_hint(
                rule.span(),
                format!("{route_key}.claims"),
                "`claims` needs `auth`: there is no verified token to take claims from",
                "name an auth policy on the route: auth = \"NAME\"",
            );
        }
        return None;
    };
    let key = format!("{route_key}.auth");
    let names = NameList::names(list);
    if names.is_empty() {
        c.d.error_hint(
            list.span(),
            key,
            "`auth = []` names no policy",
            "name one (auth = \"corp\") or leave `auth` out",
        );
        return None;
    }
    let mut instances: Vec<Arc<PolicyInstance>> = Vec::new();
    let mut complete = true;
    for (i, name) in names.iter().enumerate() {
        let key = match list.get_ref() {
            NameList::One(_) => key.clone(),
            NameList::List(_) => format!("{key}[{i}]"),
        };
        match resolve(c, sections, used, auth::SECTION, name, &key) {
            Some(p) if instances.iter().any(|q| q.id == p.id) => c.d.warning(
                name.span(),
                key,
                format!("auth policy `{}` is named twice", name.get_ref()),
                None,
            ),
            Some(p) => instances.push(p),
            None => complete = false,
        }
    }
    // An error was reported; the config will not run, so no gate is needed.
    if !complete {
        return None;
    }
    let authenticators = instances
        .iter()
        .filter_map(|p| p.plugin.clone().authenticator())
        .collect();
    Some(Link {
        stage: Stage::Auth,
        plugin: Arc::new(AuthGate::new(authenticators, requirements)),
        policies: instances,
    })
}

/// The route key that names a policy of `section` (`rate_limits` → `rate_limit`).
fn route_key(section: &str) -> &str {
    POLICY_SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(section, |(_, k)| k)
}

/// Policies no route names: a warning (a policy written but never attached protects
/// nothing, which is worth knowing).
pub fn warn_unused(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &HashSet<(&'static str, String)>,
) {
    for (section, name, span) in &sections.spans {
        let key = (*section, name.clone());
        // A policy with errors was reported already.
        if !used.contains(&key) && !sections.failed.contains(&key) {
            c.d.warning(
                span.clone(),
                format!("{section}.{name}"),
                format!("{section} policy `{name}` is not used by any route"),
                Some(format!(
                    "name it on a route: {} = \"{name}\"",
                    route_key(section)
                )),
            );
        }
    }
}
