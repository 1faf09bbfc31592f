//! What `ficus explain` says about a split route: its sides with their weights and upstream
//! paths, stickiness, the override, the fallback, and the side this request would take.
//! The side is chosen by the proxy's own [`split::choose`], so the explanation cannot
//! disagree with the gateway (a `claim` or `client_ip` key is not known here: explain has
//! no verified token and no client address, and says so).

use std::fmt::Write;

use crate::config::Config;
use crate::proxy::route::Routed;
use crate::proxy::split::{self, Choice, Request};
use crate::router::{Route, Split, StickyKey};
use pingora_http::RequestHeader;

/// Appends the split lines for a request that matched `route`.
pub fn describe(
    out: &mut String,
    cfg: &Config,
    route: &Route,
    split: &Split,
    req: &RequestHeader,
    routed: Option<&Routed>,
) {
    let name = |i: usize| cfg.services[i].name.as_str();
    let mut how = vec!["sides in config order".to_string()];
    match &split.sticky {
        Some(k) => how.push(format!("sticky on the {k}")),
        None => how.push("not sticky: each request is placed at random by weight".into()),
    }
    if let Some(h) = &split.override_header {
        how.push(format!(
            "override header `{h}` may name a side (removed before forwarding)"
        ));
    }
    let _ = writeln!(out, "split ({}):", how.join("; "));
    for (i, side) in split.sides.iter().enumerate() {
        let path = routed.map(|r| route.side_target(side, &r.path, req.uri.query()));
        let _ = writeln!(
            out,
            "  {}  weight {} ({:.1}%){}{}",
            name(side.service),
            side.weight,
            split.percent(i),
            path.map(|p| format!("  upstream path: {p}"))
                .unwrap_or_default(),
            if side.has_own_path_rules() {
                "  (its own path rules)"
            } else {
                ""
            }
        );
    }
    if routed.is_none() {
        return;
    }
    let chosen = split::choose(
        split,
        &Request {
            headers: &req.headers,
            identity: None,
            client_ip: None,
            services: &cfg.services,
        },
    );
    if chosen.override_ignored {
        let _ = writeln!(
            out,
            "override: ignored, the header names no service of this split"
        );
    }
    let side = name(split.sides[chosen.side].service);
    let line = match (chosen.choice, &split.sticky) {
        (Choice::Override, _) => format!("this request: side `{side}` (forced by the override header)"),
        (Choice::Sticky, Some(k)) => format!("this request: side `{side}` (by its {k}; the same value always lands here)"),
        (_, Some(k @ (StickyKey::Claim(_) | StickyKey::ClientIp))) => format!(
            "this request: placed by its {k}, which explain cannot know; a request without one goes to a random side by weight"
        ),
        (_, Some(k)) => format!(
            "this request: a random side by weight (it carries no {k})"
        ),
        (_, None) => "this request: a random side by weight".to_string(),
    };
    let _ = writeln!(out, "{line}");
    match route.fallback {
        Some(fb) => {
            let _ = writeln!(
                out,
                "fallback: {} (used when the chosen side's breaker is open or it has no healthy instance)",
                name(fb)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "fallback: none (a request placed on an unavailable side gets 503)"
            );
        }
    }
}

/// `explain`'s lines for a shadowed route: where copies go, which requests are copied
/// (and whether this one would be), the bounds, and what is compared.
pub fn describe_shadow(
    out: &mut String,
    cfg: &Config,
    route: &Route,
    shadow: &crate::shadow::route::RouteShadow,
    req: &RequestHeader,
    routed: Option<&Routed>,
) {
    let methods: Vec<&str> = shadow.methods.iter().map(|m| m.as_str()).collect();
    let _ = writeln!(
        out,
        "shadow: copies to {} after the client has its answer ({:.1}% of {} requests; timeout {:?}; bodies up to {} bytes each way; at most {} in flight, more are dropped)",
        cfg.services[shadow.service].name,
        shadow.sample * 100.0,
        methods.join("/"),
        shadow.timeout,
        shadow.max_body,
        shadow.queue
    );
    let copied = shadow.copies(&req.method);
    let path = routed
        .filter(|_| copied)
        .and_then(|r| route.shadow_target(shadow, &r.path, req.uri.query()));
    let _ = writeln!(
        out,
        "  this request: {}{}",
        if copied {
            format!("{} is copied", req.method)
        } else {
            format!("{} is not copied", req.method)
        },
        path.map(|p| format!(", shadow path {p}"))
            .unwrap_or_default()
    );
    let cmp = &shadow.compare;
    let mut what = vec!["status".to_string()];
    let headers: Vec<&str> = cmp.headers().map(|h| h.as_str()).collect();
    if !headers.is_empty() {
        what.push(format!("headers {}", headers.join(", ")));
    }
    what.push("body (JSON field by field, else by digest)".into());
    let _ = writeln!(out, "  compared: {}", what.join(", "));
    let ignored: Vec<&str> = cmp.ignored().collect();
    if !ignored.is_empty() {
        let _ = writeln!(out, "  ignored: {}", ignored.join(", "));
    }
    if cmp.tolerance() > 0.0 {
        let _ = writeln!(
            out,
            "  numbers within {}% of each other are equal",
            cmp.tolerance() * 100.0
        );
    }
    let redacted: Vec<&str> = cmp.redacted().collect();
    if !redacted.is_empty() {
        let _ = writeln!(out, "  redacted in samples: {}", redacted.join(", "));
    }
    if cmp.noise_sample() > 0.0 {
        let _ = writeln!(
            out,
            "  noise: {:.1}% of copies also ask the primary again; fields that differ between its two answers are not counted",
            cmp.noise_sample() * 100.0
        );
    }
}
