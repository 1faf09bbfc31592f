//! `[[routes]]` as parsed, deserialized one route at a time.
//!
//! Each route's raw form is handed on and dropped before the next is read, so a file with
//! 100,000 routes never holds 100,000 raw routes (each about 1.5 KiB) next to the parsed
//! document and the compiled routes. Compiling is `routes.rs`'s business.

use std::ops::Range;
use toml::de::DeValue;
use toml::Spanned;

use super::compiler::{deserialize, Compiler};
use super::raw::RawRoute;

/// Calls `f` with each route of `[[routes]]` that deserializes (file position, span, raw
/// route); returns the routes that did not, with the `service` each named if any.
pub(super) fn each_raw_route(
    c: &mut Compiler<'_>,
    value: Option<Spanned<DeValue<'_>>>,
    mut f: impl FnMut(&mut Compiler<'_>, usize, Range<usize>, RawRoute),
) -> Vec<(usize, Option<Spanned<String>>)> {
    let mut failed = Vec::new();
    let Some(value) = value else {
        return failed;
    };
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        c.d.error_hint(
            span,
            "routes",
            "`routes` must be an array of tables",
            "write each route as a `[[routes]]` section",
        );
        return failed;
    };
    for (i, v) in items.into_iter().enumerate() {
        let rspan = v.span();
        let service = v.get_ref().get("service").and_then(|svc| {
            let name = svc.get_ref().as_str()?;
            Some(Spanned::new(svc.span(), name.to_string()))
        });
        let before = c.d.items.len();
        match deserialize::<RawRoute>(c, v, &format!("routes[{i}]")) {
            // A route left with neither `service` nor `split` after its bad keys were
            // dropped most likely misspelled one of them: reported once, as the typo, not
            // again as "names no service".
            Some(r) if r.service.is_none() && r.split.is_none() && c.d.items.len() > before => {
                failed.push((i, service))
            }
            Some(r) => f(c, i, rspan, r),
            None => failed.push((i, service)),
        }
    }
    failed
}
