//! `[gateway] legacy`: which services the migration board counts as the legacy, checked
//! against the services once they are known.

use super::compiler::{span_of, Compiler};
use super::diag::closest_name;
use super::raw::RawGateway;

/// `legacy`: the names it gives, each a known service (an unknown one is an error with a
/// "did you mean"; one whose own section failed is already reported). `services` are the
/// services' names, `failed` those whose sections did not compile. Without `legacy`, a
/// config that is moving traffic (`migrating`: some route has a split or a shadow) gets a
/// warning: the migration board then shows no shares rather than guess which side is the
/// legacy.
pub(super) fn compile_legacy(
    c: &mut Compiler<'_>,
    g: &RawGateway,
    services: &[&str],
    failed: &std::collections::HashSet<String>,
    migrating: bool,
) -> Vec<String> {
    let Some(raw) = &g.legacy else {
        if migrating {
            c.d.warning(
                0..0,
                "gateway.legacy",
                "routes split or shadow traffic, but `[gateway] legacy` does not say which \
                 services are the legacy: the migration board (/migration, `ficus status`) \
                 cannot show how much traffic the legacy still serves",
                Some("add e.g. `legacy = \"monolith\"` to `[gateway]`".into()),
            );
        }
        return Vec::new();
    };
    let span = span_of(raw);
    if raw.get_ref().0.is_empty() {
        c.d.error_hint(
            span.clone(),
            "gateway.legacy",
            "`legacy` lists no service",
            "name the legacy service(s), e.g. `legacy = \"monolith\"`, or remove the key",
        );
    }
    let mut names: Vec<String> = Vec::new();
    for entry in &raw.get_ref().0 {
        let name = entry.get_ref();
        // A list entry is reported at its own position; a single name at the value's.
        let at = if entry.span().is_empty() {
            span.clone()
        } else {
            entry.span()
        };
        if services.contains(&name.as_str()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
            continue;
        }
        if failed.contains(name) {
            continue;
        }
        let hint = match closest_name(name, services) {
            Some(s) => format!("did you mean `{s}`?"),
            None if services.is_empty() => "define it under `[services.NAME]`".to_string(),
            None => format!("known services: {}", services.join(", ")),
        };
        c.d.error_hint(
            at,
            "gateway.legacy",
            format!("unknown legacy service `{name}`"),
            hint,
        );
    }
    names
}
