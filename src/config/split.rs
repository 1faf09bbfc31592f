//! A route's upstream: its one `service`, or a `split` between services with `sticky` and
//! `override`. Compiles the split's sides (weights, per-side `strip_prefix`/`rewrite`) and
//! reports every problem with the key's position and a hint.
//!
//! The arithmetic of choosing a side lives in `router::split`; this file only builds it.

use http::HeaderName;
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::{RawRoute, RawSplitSide, RawSticky};
use super::routes::{path_rewrite, strip_prefix, ServiceNames};
use crate::router::pattern::PathPattern;
use crate::router::{Side, Split, StickyKey};

/// The route's service (for a split: its first side's) and its split. The service is
/// `None` when the route cannot be built (reported).
pub(super) fn route_upstream(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    key: &str,
    span: &Range<usize>,
    raw: &RawRoute,
    pattern: Option<&PathPattern>,
) -> (Option<usize>, Option<Split>) {
    match (&raw.service, &raw.split) {
        (Some(svc), None) => {
            let service = names.resolve(&mut c.d, svc, &format!("{key}.service"), "service");
            refuse_split_keys(c, key, raw);
            (service, None)
        }
        (None, Some(sides)) => {
            let split = split(c, names, key, raw, sides, pattern);
            (split.as_ref().map(|s| s.sides[0].service), split)
        }
        (Some(svc), Some(sides)) => {
            // Both are still checked, so one run of `ficus check` reports everything.
            names.resolve(&mut c.d, svc, &format!("{key}.service"), "service");
            split(c, names, key, raw, sides, pattern);
            c.d.error_hint(
                span_of(sides),
                format!("{key}.split"),
                "a route has either `service` or `split`, not both",
                "keep `split` to share traffic between services (list the old service in it), or `service` to send everything to one",
            );
            (None, None)
        }
        (None, None) => {
            c.d.error_hint(
                span.clone(),
                format!("{key}.service"),
                "the route names no service",
                "add `service = \"NAME\"`, or `split = [{ service = \"A\", weight = 90 }, { service = \"B\", weight = 10 }]`",
            );
            refuse_split_keys(c, key, raw);
            (None, None)
        }
    }
}

/// `sticky` and `override` only mean something on a split.
fn refuse_split_keys(c: &mut Compiler<'_>, key: &str, raw: &RawRoute) {
    if let Some(s) = &raw.sticky {
        c.d.error_hint(
            span_of(s),
            format!("{key}.sticky"),
            "`sticky` without a `split`: there is no side to stick to",
            "remove `sticky`, or replace `service` with `split = [...]`",
        );
    }
    if let Some(o) = &raw.split_override {
        c.d.error_hint(
            span_of(o),
            format!("{key}.override"),
            "`override` without a `split`: there is no side to force",
            "remove `override`, or replace `service` with `split = [...]`",
        );
    }
}

fn split(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    key: &str,
    raw: &RawRoute,
    sides: &Spanned<Vec<Spanned<RawSplitSide>>>,
    pattern: Option<&PathPattern>,
) -> Option<Split> {
    let skey = format!("{key}.split");
    if sides.get_ref().is_empty() {
        c.d.error_hint(
            span_of(sides),
            skey,
            "`split` is empty",
            "list the services with their weights: [{ service = \"A\", weight = 90 }, { service = \"B\", weight = 10 }]",
        );
        return None;
    }
    let mut compiled = Vec::new();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut ok = true;
    for (i, side) in sides.get_ref().iter().enumerate() {
        let side_key = format!("{skey}[{i}]");
        match self::side(c, names, &side_key, side.get_ref(), pattern) {
            Some(s) => {
                if let Some(first) = seen.insert(s.service, i) {
                    c.d.error_hint(
                        span_of(&side.get_ref().service),
                        format!("{side_key}.service"),
                        format!(
                            "service `{}` is in the split twice",
                            side.get_ref().service.get_ref()
                        ),
                        format!(
                            "it is already {skey}[{first}]; give one side the sum of the weights"
                        ),
                    );
                    ok = false;
                }
                compiled.push(s);
            }
            None => ok = false,
        }
    }
    let sticky = raw.sticky.as_ref().and_then(|s| sticky(c, key, s));
    let override_header = raw.split_override.as_ref().and_then(|o| {
        let h = &o.get_ref().header;
        let okey = format!("{key}.override.header");
        let name = header_name(c, &okey, h)?;
        if needed_upstream(&name) {
            c.d.error_hint(
                span_of(h),
                okey,
                format!("`{name}` cannot be the override header: the gateway removes the override header before forwarding, and the request needs this one"),
                "use a header of its own, such as \"X-Ficus-Target\"",
            );
            return None;
        }
        Some(name)
    });
    if !ok {
        return None;
    }
    let split = Split::new(compiled, sticky, override_header);
    if split.is_none() {
        c.d.error_hint(
            span_of(sides),
            skey,
            "every weight of the split is 0: no side would get traffic",
            "give at least one side a weight above 0",
        );
    }
    split
}

/// One side: a known service, a weight of 0 or more, and its own path rules.
fn side(
    c: &mut Compiler<'_>,
    names: &mut ServiceNames<'_>,
    key: &str,
    side: &RawSplitSide,
    pattern: Option<&PathPattern>,
) -> Option<Side> {
    let service = names.resolve(
        &mut c.d,
        &side.service,
        &format!("{key}.service"),
        "split service",
    );
    let w = *side.weight.get_ref();
    let weight = match u32::try_from(w) {
        Ok(w) => Some(w),
        Err(_) => {
            c.d.error_hint(
                span_of(&side.weight),
                format!("{key}.weight"),
                format!("weight {w} is out of range"),
                "weights are whole numbers from 0 (no traffic) upwards; they are shares of their sum, e.g. 90 and 10",
            );
            None
        }
    };
    let strip = strip_prefix(c, key, side.strip_prefix.as_ref(), pattern);
    let rewrite = path_rewrite(
        c,
        key,
        side.rewrite.as_ref(),
        side.strip_prefix.is_some(),
        pattern,
    );
    // A side's own rules replace the route's (they are not combined; see docs/decisions.md).
    Some(Side {
        service: service?,
        weight: weight?,
        strip_prefix: strip,
        rewrite,
    })
}

/// `sticky`: exactly one of `cookie`, `header`, `claim`, `client_ip = true`.
fn sticky(c: &mut Compiler<'_>, key: &str, s: &Spanned<RawSticky>) -> Option<StickyKey> {
    let skey = format!("{key}.sticky");
    let raw = s.get_ref();
    let mut keys = Vec::new();
    if let Some(v) = &raw.cookie {
        keys.push(non_empty(c, &format!("{skey}.cookie"), v).map(StickyKey::Cookie));
    }
    if let Some(v) = &raw.header {
        keys.push(header_name(c, &format!("{skey}.header"), v).map(StickyKey::Header));
    }
    if let Some(v) = &raw.claim {
        keys.push(non_empty(c, &format!("{skey}.claim"), v).map(StickyKey::Claim));
    }
    if let Some(v) = &raw.client_ip {
        if *v.get_ref() {
            keys.push(Some(StickyKey::ClientIp));
        } else {
            c.d.error_hint(
                span_of(v),
                format!("{skey}.client_ip"),
                "`client_ip = false` names no key",
                "write `client_ip = true`, or another key, or remove `sticky`",
            );
            keys.push(None);
        }
    }
    match keys.len() {
        1 => keys.pop().flatten(),
        0 => {
            c.d.error_hint(
                span_of(s),
                skey,
                "`sticky` names no key",
                "write one of { cookie = \"uid\" }, { header = \"X-User\" }, { claim = \"sub\" }, { client_ip = true }",
            );
            None
        }
        _ => {
            c.d.error_hint(
                span_of(s),
                skey,
                "`sticky` names more than one key",
                "a user is kept on a side by one key: keep one of cookie, header, claim, client_ip",
            );
            None
        }
    }
}

fn non_empty(c: &mut Compiler<'_>, key: &str, v: &Spanned<String>) -> Option<String> {
    let s = v.get_ref().trim();
    if s.is_empty() {
        c.d.error(span_of(v), key, "the name is empty");
        return None;
    }
    Some(s.to_string())
}

/// Headers a request cannot lose on its way upstream (the override header is removed):
/// framing, routing, credentials, tracing and the gateway's own.
fn needed_upstream(name: &HeaderName) -> bool {
    const NEEDED: [&str; 16] = [
        "host",
        "authorization",
        "cookie",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "x-request-id",
        "traceparent",
        "tracestate",
        "x-ficus-shadow",
    ];
    NEEDED.contains(&name.as_str()) || super::compiler::is_hop_by_hop(name)
}

fn header_name(c: &mut Compiler<'_>, key: &str, v: &Spanned<String>) -> Option<HeaderName> {
    match HeaderName::from_bytes(v.get_ref().as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            c.d.error(
                span_of(v),
                key,
                format!("`{}` is not a valid header name", v.get_ref()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;

    const SERVICES: &str = "[services.monolith]\ninstances = [\"127.0.0.1:1\"]\n[services.orders]\ninstances = [\"127.0.0.1:2\"]\n";

    fn check(route_keys: &str) -> Vec<String> {
        messages(&format!(
            "{SERVICES}[[routes]]\nname = \"o\"\nmatch = {{ path = \"/orders/**\" }}\n{route_keys}"
        ))
    }

    #[test]
    fn a_valid_split_compiles() {
        let m = check("split = [{ service = \"monolith\", weight = 90 }, { service = \"orders\", weight = 0, rewrite = \"/v2/orders/{**}\" }]\nsticky = { cookie = \"uid\" }\noverride = { header = \"X-Ficus-Target\" }\nfallback = \"monolith\"\n");
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn service_and_split_or_neither() {
        let m = check("service = \"monolith\"\nsplit = [{ service = \"orders\", weight = 1 }]\n");
        assert!(
            m.iter().any(|m| m.contains("either `service` or `split`")),
            "{m:?}"
        );
        let m = check("fallback = \"monolith\"\n");
        assert!(m.iter().any(|m| m.contains("names no service")), "{m:?}");
    }

    #[test]
    fn bad_sides_are_named() {
        let m = check("split = [{ service = \"monolit\", weight = 90 }, { service = \"orders\", weight = -1 }]\n");
        assert!(
            m.iter()
                .any(|m| m.contains("unknown split service `monolit`")
                    && m.contains("did you mean `monolith`")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m.contains("weight -1 is out of range")),
            "{m:?}"
        );
        let m = check("split = [{ service = \"orders\", weight = 0 }, { service = \"monolith\", weight = 0 }]\n");
        assert!(
            m.iter()
                .any(|m| m.contains("every weight of the split is 0")),
            "{m:?}"
        );
        let m = check("split = [{ service = \"orders\", weight = 1 }, { service = \"orders\", weight = 2 }]\n");
        assert!(m.iter().any(|m| m.contains("in the split twice")), "{m:?}");
        let m = check("split = [{ service = \"orders\", weight = 1, rewrite = \"/v2/{nope}\" }]\n");
        assert!(
            m.iter()
                .any(|m| m.contains("split[0].rewrite") && m.contains("nope")),
            "{m:?}"
        );
        let m =
            check("split = [{ service = \"orders\", weight = 1, strip_prefix = \"/other\" }]\n");
        assert!(
            m.iter().any(|m| m.contains("split[0].strip_prefix")),
            "{m:?}"
        );
    }

    #[test]
    fn the_override_cannot_be_a_header_the_request_needs() {
        for h in [
            "Host",
            "authorization",
            "Cookie",
            "Content-Length",
            "Connection",
            "X-Request-Id",
        ] {
            let m = check(&format!("split = [{{ service = \"monolith\", weight = 1 }}, {{ service = \"orders\", weight = 1 }}]\noverride = {{ header = \"{h}\" }}\n"));
            assert!(
                m.iter()
                    .any(|m| m.contains("cannot be the override header")),
                "{h}: {m:?}"
            );
        }
    }

    #[test]
    fn sticky_and_override_need_a_split_and_one_key() {
        let m = check("service = \"orders\"\nsticky = { cookie = \"uid\" }\noverride = { header = \"X-T\" }\n");
        assert!(
            m.iter().any(|m| m.contains("`sticky` without a `split`")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m.contains("`override` without a `split`")),
            "{m:?}"
        );
        let side = "split = [{ service = \"orders\", weight = 1 }]\n";
        let m = check(&format!(
            "{side}sticky = {{ cookie = \"uid\", header = \"X-User\" }}\n"
        ));
        assert!(m.iter().any(|m| m.contains("more than one key")), "{m:?}");
        let m = check(&format!("{side}sticky = {{}}\n"));
        assert!(m.iter().any(|m| m.contains("names no key")), "{m:?}");
        let m = check(&format!("{side}sticky = {{ client_ip = false }}\n"));
        assert!(m.iter().any(|m| m.contains("client_ip = false")), "{m:?}");
        let m = check(&format!("{side}override = {{ header = \"bad header\" }}\n"));
        assert!(
            m.iter().any(|m| m.contains("not a valid header name")),
            "{m:?}"
        );
    }
}
