//! The top-level sections of routes.toml: the document split into `[gateway]` (read first,
//! for the bounds on the file), `[registry]`, `[services.NAME]`, `[[routes]]` (kept parsed,
//! compiled later one route at a time) and the policy sections, each deserialized on its own;
//! unknown top-level keys and an empty file are reported here.

use std::collections::HashSet;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::compiler::{deserialize, Compiler};
use super::diag::did_you_mean;
use super::raw::{RawGateway, RawRegistry, RawService};
use super::{bounds, field_names, policies, ConfigError};
use crate::policy::Policies;

/// The top-level sections of the file, each deserialized on its own so that an error in
/// one does not hide the errors of the others.
#[derive(Default)]
pub(super) struct Sections<'i> {
    pub(super) gateway: Option<RawGateway>,
    pub(super) registry: RawRegistry,
    /// Services that deserialized: name, span of the name, section.
    pub(super) services: Vec<(String, Range<usize>, RawService)>,
    /// Services whose section had errors: routes naming them are not told "unknown service".
    pub(super) failed_services: HashSet<String>,
    /// `[[routes]]` as parsed: deserialized and compiled one by one once the services and
    /// policies are known, so the raw form of every route is never held at once.
    pub(super) routes: Option<Spanned<DeValue<'i>>>,
    pub(super) saw_routes: bool,
    /// No keys at all: an empty file, or only comments (as after a truncated write).
    pub(super) no_keys: bool,
    /// Policy sections (`[access.NAME]`...), compiled.
    pub(super) policies: policies::PolicySections,
    /// `max_config_bytes` and `max_routes`, compiled first: they decide whether the rest
    /// is read at all.
    pub(super) bounds: bounds::ConfigBounds,
}

/// Splits the document into its sections, reporting unknown top-level keys. `[gateway]`
/// is read first: its bounds on the file's size and route count are checked before
/// anything else is (`bytes` is the file's size, `file` its name for the error).
pub(super) fn read_sections<'i>(
    c: &mut Compiler<'_>,
    doc: Spanned<DeTable<'i>>,
    previous: Option<&Policies>,
    bytes: usize,
    file: &str,
) -> Result<Sections<'i>, ConfigError> {
    let mut doc = doc.into_inner();
    let mut s = Sections {
        no_keys: doc.is_empty(),
        ..Sections::default()
    };
    if let Some(g) = doc.remove("gateway") {
        s.gateway = deserialize::<RawGateway>(c, g, "gateway");
    }
    let raw = s.gateway.as_ref();
    s.bounds = bounds::compile_bounds(
        c,
        raw.and_then(|g| g.max_config_bytes.as_ref()),
        raw.and_then(|g| g.max_routes.as_ref()),
    );
    if bytes as u64 > s.bounds.max_config_bytes {
        return Err(ConfigError::TooLarge {
            path: file.to_string(),
            bytes: bytes as u64,
            limit: s.bounds.max_config_bytes,
        });
    }
    let routes = doc.get("routes").and_then(|r| r.get_ref().as_array());
    if let Some(routes) = routes.map(|r| r.len()) {
        if routes > s.bounds.max_routes {
            return Err(ConfigError::TooManyRoutes {
                path: file.to_string(),
                routes,
                limit: s.bounds.max_routes,
            });
        }
    }
    for (key, value) in doc {
        let kspan = key.span();
        match key.get_ref().as_ref() {
            "services" => read_services(c, value, &mut s),
            "registry" => {
                if let Some(r) = deserialize::<RawRegistry>(c, value, "registry") {
                    s.registry = r;
                }
            }
            "routes" => {
                // Compiled last, one route at a time (see `routes::compile_routes`).
                s.saw_routes = true;
                s.routes = Some(value);
            }
            other if policies::read_policy_section(c, other, value, &mut s.policies, previous) => {}
            other => {
                let known = ["gateway", "registry", "services", "routes"]
                    .into_iter()
                    .chain(policies::POLICY_SECTIONS.iter().map(|(s, _)| *s));
                let hint = match did_you_mean(other, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        field_names::sections_with_key(other).unwrap_or_else(top_level_sections)
                    }
                };
                c.d.error_hint(
                    kspan,
                    other,
                    format!("unknown top-level key `{other}`"),
                    hint,
                );
            }
        }
    }
    Ok(s)
}

/// Every top-level section, the policy kinds included, for the hint of an unknown key.
fn top_level_sections() -> String {
    let policies: Vec<String> = policies::POLICY_SECTIONS
        .iter()
        .map(|(s, _)| format!("`[{s}.NAME]`"))
        .collect();
    format!(
        "the top-level sections are `[gateway]`, `[registry]`, `[services.NAME]`, `[[routes]]` and the policies {}",
        policies.join(", ")
    )
}

fn read_services(c: &mut Compiler<'_>, value: Spanned<DeValue<'_>>, s: &mut Sections<'_>) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => {
            for (name, v) in t {
                let sspan = name.span();
                let name = name.into_inner().to_string();
                let key = format!("services.{name}");
                match deserialize::<RawService>(c, v, &key) {
                    Some(raw) => s.services.push((name, sspan, raw)),
                    None => {
                        s.failed_services.insert(name);
                    }
                }
            }
        }
        _ => c.d.error(
            span,
            "services",
            "`services` must be a table of named services",
        ),
    }
}

/// An empty file is an error; a file without routes works but answers 404 to everything.
pub(super) fn warn_if_empty(c: &mut Compiler<'_>, s: &Sections<'_>) {
    if s.no_keys {
        c.d.error_hint(
            0..0,
            "",
            "the config is empty",
            "see routes.toml in the repository for a starting point",
        );
    } else if !s.saw_routes {
        c.d.warning(
            0..0,
            "routes",
            "no routes: every request gets 404",
            Some("add a `[[routes]]` section".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::testing::{errors, BASE};
    use std::path::Path;

    #[test]
    fn every_unknown_key_and_type_error_in_one_table_is_reported() {
        let src = "[gateway]\ngrace_period = 10\nthreads = \"4\"\ncolour = 1\n\n[services.monolith]\ninstances = [\"127.0.0.1:1\"]\nmax_concurrent = \"x\"\n\n[[routes]]\nname = \"legacy\"\nmatch = { path = \"/**\", methods = \"GET\" }\nservice = \"monolith\"\nstrip_prefx = \"/x\"\nretires = { attempts = 3 }\ntimeouts = { read = 5 }\n";
        let d = errors(src);
        let at: Vec<(usize, usize, &str)> = d
            .iter()
            .map(|d| (d.line, d.column, d.key.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (2, 16, "gateway.grace_period"),
                (3, 11, "gateway.threads"),
                (4, 1, "gateway.colour"),
                (8, 18, "services.monolith.max_concurrent"),
                (12, 35, "routes[0].match.methods"),
                (14, 1, "routes[0].strip_prefx"),
                (15, 1, "routes[0].retires"),
                (16, 21, "routes[0].timeouts.read"),
            ],
            "{d:#?}"
        );
        assert!(d[0].hint.as_deref().unwrap().contains("\"10s\""), "{d:?}");
        assert!(d[4].hint.as_deref().unwrap().contains("is a list"), "{d:?}");
        assert!(
            d[5].hint.as_deref().unwrap().contains("`strip_prefix`"),
            "{d:?}"
        );
    }

    #[test]
    fn no_follow_on_errors_after_a_section_fails() {
        // A misspelled required key: the route cannot be built, but neither "missing field"
        // nor "no routes" nor "service not used" is reported on top of the typo.
        let src = format!("{BASE}[[routes]]\nname = \"o\"\nmatch = {{ path = \"/o/**\" }}\nservcie = \"orders\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("unknown field `servcie`"), "{d:?}");
        // A service whose own table is broken is not "unknown" to its routes.
        let src = "[services.monolith]\ninstances = \"127.0.0.1:1\"\nbogus = 1\n[services.orders]\ninstances = [\"127.0.0.1:2\"]\n[[routes]]\nname = \"m\"\nmatch = { path = \"/**\" }\nservice = \"monolith\"\nfallback = \"orders\"\n";
        let d = errors(src);
        assert!(
            !d.iter().any(|d| d.message.contains("unknown service")),
            "{d:#?}"
        );
        assert_eq!(d.len(), 2, "{d:#?}");
    }

    #[test]
    fn a_failing_section_reports_unfixable_errors_once() {
        // A route without `match` cannot be repaired by dropping keys.
        let src = format!("{BASE}[[routes]]\nname = \"o\"\nservice = \"orders\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("missing field `match`"), "{d:?}");
    }
    #[test]
    fn files_without_routes() {
        for empty in ["", "  \n", "# only a comment\n"] {
            let d = errors(empty);
            assert!(
                d[0].message.contains("the config is empty"),
                "{empty:?}: {d:?}"
            );
        }
        for routeless in ["[gateway]\n", BASE] {
            let cfg = compile(Path::new("routes.toml"), routeless).unwrap();
            assert!(
                cfg.warnings
                    .iter()
                    .any(|w| w.message.contains("no routes: every request gets 404")),
                "{routeless:?}: {:?}",
                cfg.warnings
            );
        }
    }
    #[test]
    fn unknown_top_level_key() {
        let d = errors("[gatway]\nlisten = []\n");
        assert!(d[0].message.contains("unknown top-level key `gatway`"));
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `gateway`?"));
        // A key of a section written at the top says where it belongs.
        let d = errors("outlier = { consecutive_failures = 5 }\n");
        assert_eq!(
            d[0].hint.as_deref(),
            Some("`outlier` is a key of `[services.NAME]`: put it under that section")
        );
        // Anything else lists every section, each policy kind included.
        let d = errors("zzzzzzzz = 1\n");
        let hint = d[0].hint.as_deref().unwrap();
        for s in [
            "[access.NAME]",
            "[auth.NAME]",
            "[cors.NAME]",
            "[rate_limits.NAME]",
        ] {
            assert!(hint.contains(s), "{hint}");
        }
    }
}
