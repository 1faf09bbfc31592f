//! A route's `shadow = { … }`: the shadow service, which requests are copied, the bounds
//! on each copy, its own path rules, and the comparison. Every problem is reported with
//! its key; copying requests that are not safe is allowed but warned about.

use http::Method;
use std::ops::Range;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::{RawRoute, RawShadow};
use super::routes::{path_rewrite, strip_prefix, ServiceNames};
use crate::router::pattern::PathPattern;
use crate::shadow::route::{
    RouteShadow, DEFAULT_MAX_BODY, DEFAULT_QUEUE, DEFAULT_SAMPLE, DEFAULT_TIMEOUT, MAX_MAX_BODY,
    MAX_QUEUE,
};

/// Methods copied when the route lists none: those without side effects.
const SAFE: [Method; 2] = [Method::GET, Method::HEAD];

/// The route's shadow, or `None` (none configured, or reported as broken). `service` is
/// the route's own service when it has no split.
pub(super) fn route_shadow(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    key: &str,
    raw: &RawRoute,
    service: Option<usize>,
    pattern: Option<&PathPattern>,
) -> Option<RouteShadow> {
    let spanned = raw.shadow.as_ref()?;
    let s = spanned.get_ref();
    let key = format!("{key}.shadow");
    let before = c.d.error_count();
    let shadow_service = names.resolve(
        &mut c.d,
        &s.service,
        &format!("{key}.service"),
        "shadow service",
    );
    if shadow_service.is_some() && shadow_service == service {
        c.d.error_hint(
            span_of(&s.service),
            format!("{key}.service"),
            "the shadow service is the route's own service",
            "shadow traffic goes to the new service that is not yet answering: name it here",
        );
    }
    let sample = sample(c, &key, s);
    let methods = methods(c, &key, s);
    let timeout = c
        .positive_duration(
            &s.timeout,
            &format!("{key}.timeout"),
            "a zero timeout fails every copy",
        )
        .unwrap_or(DEFAULT_TIMEOUT);
    let max_body = bounded(
        c,
        &key,
        "max_body_bytes",
        &s.max_body_bytes,
        1,
        MAX_MAX_BODY,
    )
    .unwrap_or(DEFAULT_MAX_BODY);
    let queue = bounded(c, &key, "queue", &s.queue, 1, MAX_QUEUE).unwrap_or(DEFAULT_QUEUE);
    let strip_prefix = strip_prefix(c, &key, s.strip_prefix.as_ref(), pattern);
    let rewrite = path_rewrite(
        c,
        &key,
        s.rewrite.as_ref(),
        s.strip_prefix.is_some(),
        pattern,
    );
    let compare = compare(c, &key, spanned.span(), s, max_body);
    if c.d.error_count() > before {
        return None;
    }
    Some(RouteShadow {
        service: shadow_service?,
        sample,
        methods,
        timeout,
        max_body,
        queue,
        strip_prefix,
        rewrite,
        compare: compare?,
    })
}

fn sample(c: &mut Compiler<'_>, key: &str, s: &RawShadow) -> f64 {
    let Some(v) = &s.sample else {
        return DEFAULT_SAMPLE;
    };
    let x = *v.get_ref();
    if x == 0.0 {
        c.d.warning(
            span_of(v),
            format!("{key}.sample"),
            "sample = 0: no request is copied",
            Some("remove `shadow` to stop shadowing, or give a share such as 0.05".into()),
        );
    }
    // `!(… contains …)` also refuses NaN.
    if !(0.0..=1.0).contains(&x) {
        c.d.error_hint(
            span_of(v),
            format!("{key}.sample"),
            format!("sample = {x}: a share of requests is between 0 and 1"),
            "0.25 copies a quarter of the route's requests; 1 copies them all",
        );
    }
    x
}

fn methods(c: &mut Compiler<'_>, key: &str, s: &RawShadow) -> Vec<Method> {
    let Some(list) = &s.methods else {
        return SAFE.to_vec();
    };
    let mkey = format!("{key}.methods");
    let mut methods = Vec::new();
    let mut unsafe_ones = Vec::new();
    for m in list.get_ref() {
        let text = m.get_ref().to_ascii_uppercase();
        match Method::from_bytes(text.as_bytes()) {
            Ok(method) if !methods.contains(&method) => {
                if !method.is_safe() {
                    unsafe_ones.push(method.to_string());
                }
                methods.push(method);
            }
            Ok(_) => c.d.error(
                span_of(m),
                mkey.clone(),
                format!("`{text}` is listed twice"),
            ),
            Err(_) => c.d.error(
                span_of(m),
                mkey.clone(),
                format!("`{}` is not an HTTP method", m.get_ref()),
            ),
        }
    }
    if list.get_ref().is_empty() {
        c.d.error_hint(
            span_of(list),
            mkey.clone(),
            "no method listed: nothing would be copied",
            "leave `methods` out to copy GET and HEAD requests, or remove `shadow`",
        );
    }
    if !unsafe_ones.is_empty() {
        c.d.warning(
            span_of(list),
            mkey,
            format!(
                "copies of {} requests reach the shadow service as well as the primary: anything they change happens twice",
                unsafe_ones.join(", ")
            ),
            Some("the shadow must not share side effects with the primary (database, payments, mail); copies carry `X-Ficus-Shadow: 1` so it can skip them".into()),
        );
    }
    methods
}

/// An integer key within `lo..=hi`.
fn bounded(
    c: &mut Compiler<'_>,
    key: &str,
    name: &str,
    v: &Option<Spanned<i64>>,
    lo: usize,
    hi: usize,
) -> Option<usize> {
    let v = v.as_ref()?;
    let n = *v.get_ref();
    match usize::try_from(n) {
        Ok(n) if (lo..=hi).contains(&n) => Some(n),
        _ => {
            c.d.error(
                span_of(v),
                format!("{key}.{name}"),
                format!("{name} = {n}: must be between {lo} and {hi}"),
            );
            None
        }
    }
}

fn compare(
    c: &mut Compiler<'_>,
    key: &str,
    span: Range<usize>,
    s: &RawShadow,
    max_body: usize,
) -> Option<crate::shadow::ShadowComparison> {
    let (config, span) = match &s.compare {
        Some(cmp) => (cmp.get_ref().clone(), span_of(cmp)),
        None => (Default::default(), span),
    };
    match config.compile() {
        Ok(mut cmp) => {
            // What was kept of a body is compared whole: the copy's bound is the
            // comparison's.
            cmp.limits.max_body = max_body;
            Some(cmp)
        }
        Err(errors) => {
            for e in errors {
                c.d.error(span.clone(), format!("{key}.compare"), e.to_string());
            }
            None
        }
    }
}
