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
use ficus_plugins::{CompileContext, PolicyKind, Severity};
use std::collections::HashSet;
use std::ops::Range;
use toml::de::DeValue;
use toml::Spanned;

use super::compiler::{deserialize, Compiler};
use super::diag::closest_name;
use super::raw::RawRoute;
use super::recover::locate;
use crate::policy::{instantiate, Chain, Policies, PolicyInstance};

/// The top-level tables that hold policies, as `(section, route key)`.
pub const POLICY_SECTIONS: [(&str, &str); 1] = [(Access::SECTION, "access")];

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
        Access::SECTION => read_kind::<Access>(c, value, out, previous),
        _ => return false,
    }
    true
}

/// Deserializes, compiles and instantiates every `[K::SECTION.NAME]` table.
fn read_kind<K: PolicyKind>(
    c: &mut Compiler<'_>,
    value: Spanned<DeValue<'_>>,
    out: &mut PolicySections,
    previous: Option<&Policies>,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        out.broken_sections.insert(K::SECTION);
        c.d.error_hint(
            span,
            K::SECTION,
            format!("`{}` must be a table of named policies", K::SECTION),
            format!("write each policy as a `[{}.NAME]` section", K::SECTION),
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
                format!("{}.{name}", K::SECTION),
                format!("`{}.{name}` is not a policy", K::SECTION),
                format!(
                    "each policy is a named table: write `[{}.NAME]` and its keys under it",
                    K::SECTION
                ),
            );
            out.broken_sections.insert(K::SECTION);
            continue;
        }
        let key = format!("{}.{name}", K::SECTION);
        // Names label logs, `/policies` and `explain` output, one per line.
        if name.is_empty() || name.chars().any(char::is_control) {
            c.d.error_hint(
                name_span.clone(),
                K::SECTION,
                format!(
                    "the name of a `[{}.NAME]` policy must not be empty or hold control characters",
                    K::SECTION
                ),
                format!("name it like `[{}.office]`", K::SECTION),
            );
            out.failed.insert((K::SECTION, name));
            continue;
        }
        let section_span = v.span();
        // The section as written: a value's position names its key (an entry the kind
        // reports may sit after entries serde already dropped, so its own index is off).
        let as_written = v.clone();
        out.spans
            .push((K::SECTION, name.clone(), name_span.clone()));
        let Some(config) = deserialize::<K::Config>(c, v, &key) else {
            out.failed.insert((K::SECTION, name));
            continue;
        };
        let mut cx = CompileContext::new(&c.base_dir);
        let settings = K::compile(config, &mut cx);
        for p in cx.into_problems() {
            let located = p.span.as_ref().and_then(|at| locate(&as_written, at));
            let at = p.span.unwrap_or_else(|| section_span.clone());
            let full = match (located, p.key.is_empty()) {
                (Some(path), _) => format!("{key}.{path}"),
                (None, true) => key.clone(),
                (None, false) => format!("{key}.{}", p.key),
            };
            match (p.severity, p.hint) {
                (Severity::Error, Some(hint)) => c.d.error_hint(at, full, p.message, hint),
                (Severity::Error, None) => c.d.error(at, full, p.message),
                (Severity::Warning, hint) => c.d.warning(at, full, p.message, hint),
            }
        }
        match settings {
            Some(s) => out.compiled.insert(instantiate::<K>(&name, s, previous)),
            None => {
                out.failed.insert((K::SECTION, name));
            }
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
) -> Option<std::sync::Arc<PolicyInstance>> {
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

/// The chain of policies a route names.
pub fn route_chain(
    c: &mut Compiler<'_>,
    sections: &PolicySections,
    used: &mut HashSet<(&'static str, String)>,
    route_key: &str,
    raw: &RawRoute,
) -> Chain {
    let mut policies = Vec::new();
    if let Some(name) = &raw.access {
        let key = format!("{route_key}.access");
        policies.extend(resolve(c, sections, used, Access::SECTION, name, &key));
    }
    Chain::new(policies)
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
                Some(format!("name it on a route: {section} = \"{name}\"")),
            );
        }
    }
}
