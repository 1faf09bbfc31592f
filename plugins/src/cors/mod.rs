//! `[cors.NAME]`: cross-origin resource sharing, decided at the edge.
//!
//! ```toml
//! [cors.shop]
//! origins = ["https://shop.example.com", "https://*.example.com"]
//! methods = ["GET", "POST", "PUT"]
//! headers = ["Content-Type", "X-Custom"]
//! expose_headers = ["X-Request-Id"]
//! credentials = true
//! max_age = "600s"
//! ```
//!
//! The policy runs first in a route's chain ([`Stage::Preflight`]). A preflight is answered
//! by the gateway (`204` with the policy's headers, or `403` without any) and never reaches
//! the upstream or the auth stage. Every other response of the route, proxied or written
//! by the gateway (a `401`, a `429`, a `502`), gets `Access-Control-Allow-Origin` for an
//! admitted origin, `Vary: Origin` when the answer depends on the origin, and never the
//! upstream's own `Access-Control-*` headers. docs/cors.md has the rules.
//!
//! - `origin.rs`: origin entries and the request's `Origin`, parsed and matched.
//! - `settings.rs`: the compiled policy and its decisions (shared with `ficus explain`).
//! - `plugin.rs`: the hooks that turn decisions into answers and header edits.
//!
//! This file reads and checks the section; it does not run on the request path.

pub mod origin;
mod plugin;
pub mod settings;

use http::{HeaderName, Method};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

use crate::duration::try_parse_duration;
use crate::{CompileContext, Plugin, PolicyKind, Stage};
use origin::{OriginRule, Origins};
pub use plugin::CorsPlugin;
pub use settings::{CorsSettings, OriginCheck, PreflightGrant, PreflightRefusal};

/// The routes.toml table and route key.
pub const SECTION: &str = "cors";

/// The longest `max_age` any browser honours (Firefox: 24 hours; Chromium caps at 2).
const LONGEST_HONOURED_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// `[cors.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed: `scheme://host[:port]`, `scheme://*.suffix[:port]`, `null`, or
    /// `*` alone.
    pub origins: Spanned<Vec<Spanned<String>>>,
    /// Methods a preflight may ask for (GET, HEAD and POST always may).
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// Request headers a preflight may ask for (the CORS-safelisted ones always may).
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<Spanned<String>>,
    /// Whether scripts may send cookies and HTTP authentication and read the answer.
    pub credentials: Option<Spanned<bool>>,
    /// How long a browser may cache a preflight's answer (whole seconds).
    pub max_age: Option<Spanned<String>>,
}

/// The `cors` policy kind.
pub struct Cors;

impl PolicyKind for Cors {
    const SECTION: &'static str = SECTION;
    const STAGE: Stage = Stage::Preflight;
    type Config = CorsConfig;
    type Settings = CorsSettings;

    fn compile(config: CorsConfig, cx: &mut CompileContext<'_>) -> Option<CorsSettings> {
        let credentials = config.credentials.as_ref().is_some_and(|c| *c.get_ref());
        let origins = compile_origins(&config.origins, credentials, cx);
        let methods = compile_methods(&config.methods, cx);
        let headers = compile_header_names(&config.headers, "headers", cx);
        let expose = compile_header_names(&config.expose_headers, "expose_headers", cx);
        let max_age = compile_max_age(config.max_age.as_ref(), cx);
        if cx.has_errors() {
            return None;
        }
        let expose_headers = expose.into_iter().map(|(_, written)| written).collect();
        let headers = headers.into_iter().map(|(name, _)| name).collect();
        Some(CorsSettings::new(
            origins?,
            methods,
            headers,
            expose_headers,
            credentials,
            max_age,
        ))
    }

    fn build(name: &str, settings: Arc<CorsSettings>) -> Arc<dyn Plugin> {
        Arc::new(CorsPlugin::new(name, settings))
    }
}

/// `origins`: `*` alone, or a list of origins, patterns and `null`.
fn compile_origins(
    list: &Spanned<Vec<Spanned<String>>>,
    credentials: bool,
    cx: &mut CompileContext<'_>,
) -> Option<Origins> {
    if list.get_ref().is_empty() {
        cx.error_hint(
            Some(list.span()),
            "origins",
            "an empty `origins` list would refuse every browser",
            "list the origins whose pages may call these routes, like [\"https://shop.example.com\"]",
        );
        return None;
    }
    let mut rules: Vec<OriginRule> = Vec::new();
    let mut null = None;
    let mut star = None;
    for (i, entry) in list.get_ref().iter().enumerate() {
        let key = format!("origins[{i}]");
        match entry.get_ref().as_str() {
            "*" => star = Some((entry.span(), key)),
            "null" => null = Some((entry.span(), key)),
            written => match OriginRule::parse(written) {
                Ok(rule) if rules.contains(&rule) => {}
                Ok(rule) => rules.push(rule),
                Err(e) => cx.error_hint(
                    Some(entry.span()),
                    &key,
                    format!("origin `{written}` {e}"),
                    e.hint(),
                ),
            },
        }
    }
    if let Some((span, key)) = star {
        if credentials {
            // Browsers refuse `Access-Control-Allow-Origin: *` on a credentialed request;
            // echoing every origin instead would let any site act as the signed-in user.
            cx.error_hint(
                Some(span),
                &key,
                "`*` cannot be used with `credentials = true`: it would let every site on the web send this route the user's cookies and read the answer",
                "list the origins that may send credentials, like [\"https://shop.example.com\"], or drop `credentials`",
            );
            return None;
        }
        if list.get_ref().len() > 1 {
            cx.warning(
                Some(span),
                &key,
                "`*` admits every origin: the other `origins` entries change nothing",
            );
        }
        return Some(Origins::Any);
    }
    if let Some((span, key)) = &null {
        cx.warning(
            Some(span.clone()),
            key,
            "`null` is the origin of sandboxed frames, `file:` pages and some redirects: any site can make a request that carries it",
        );
    }
    Some(Origins::List {
        rules,
        null: null.is_some(),
    })
}

/// Methods a browser can never send (the Fetch standard's forbidden methods).
const FORBIDDEN_METHODS: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];

/// `methods`: tokens, compared as written (methods are case-sensitive).
fn compile_methods(list: &[Spanned<String>], cx: &mut CompileContext<'_>) -> Vec<Method> {
    let mut out: Vec<Method> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let key = format!("methods[{i}]");
        let written = entry.get_ref();
        let upper = written.to_ascii_uppercase();
        if written == "*" {
            cx.error_hint(
                Some(entry.span()),
                &key,
                "`*` is not a method: a credentialed request may not use it, and ficus answers with the methods listed",
                "list the methods, like [\"PUT\", \"DELETE\"]; GET, HEAD and POST are always allowed",
            );
            continue;
        }
        let Ok(method) = Method::from_bytes(written.as_bytes()) else {
            cx.error_hint(
                Some(entry.span()),
                &key,
                format!("`{written}` is not an HTTP method"),
                "a method is a token like PUT or PATCH",
            );
            continue;
        };
        if FORBIDDEN_METHODS.contains(&upper.as_str()) {
            cx.error_hint(
                Some(entry.span()),
                &key,
                format!(
                    "browsers never send `{written}` (a forbidden method of the Fetch standard)"
                ),
                "leave it out",
            );
            continue;
        }
        if *written != upper && Method::from_bytes(upper.as_bytes()).is_ok_and(|m| is_standard(&m))
        {
            cx.warning(
                Some(entry.span()),
                &key,
                format!(
                    "methods are case-sensitive: `{written}` allows requests that spell it `{written}`, not `{upper}`"
                ),
            );
        }
        if !out.contains(&method) {
            out.push(method);
        }
    }
    out
}

fn is_standard(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(m)
}

/// `headers` and `expose_headers`: header names, each with its spelling as written.
fn compile_header_names(
    list: &[Spanned<String>],
    what: &str,
    cx: &mut CompileContext<'_>,
) -> Vec<(HeaderName, String)> {
    let mut out: Vec<(HeaderName, String)> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let key = format!("{what}[{i}]");
        let written = entry.get_ref();
        if written == "*" {
            cx.error_hint(
                Some(entry.span()),
                &key,
                "`*` is not a header name: browsers ignore it on credentialed requests, and ficus answers with the names listed",
                format!("list the header names, like {what} = [\"X-Request-Id\"]"),
            );
            continue;
        }
        match HeaderName::from_bytes(written.as_bytes()) {
            Ok(name) if out.iter().any(|(n, _)| *n == name) => {}
            Ok(name) => out.push((name, written.clone())),
            Err(_) => cx.error_hint(
                Some(entry.span()),
                &key,
                format!("`{written}` is not a header name"),
                "a header name is a token like X-Request-Id: letters, digits and !#$%&'*+-.^_`|~",
            ),
        }
    }
    out
}

/// `max_age`: whole seconds, as `Access-Control-Max-Age` counts them.
fn compile_max_age(v: Option<&Spanned<String>>, cx: &mut CompileContext<'_>) -> Option<Duration> {
    let v = v?;
    let d = match try_parse_duration(v.get_ref()) {
        Ok(d) => d,
        Err(e) => {
            cx.error_hint(
                Some(v.span()),
                "max_age",
                format!("`{}` is not a valid duration: {e}", v.get_ref()),
                "write a duration like \"600s\" or \"10m\"",
            );
            return None;
        }
    };
    if d.subsec_nanos() != 0 {
        cx.error_hint(
            Some(v.span()),
            "max_age",
            format!("`{}` is not a whole number of seconds", v.get_ref()),
            "Access-Control-Max-Age counts whole seconds: write \"600s\" or \"10m\"",
        );
        return None;
    }
    if d > LONGEST_HONOURED_MAX_AGE {
        cx.warning(
            Some(v.span()),
            "max_age",
            "browsers cache a preflight for at most 24 hours (Firefox; Chromium 2 hours) whatever `max_age` says",
        );
    }
    Some(d)
}

#[cfg(test)]
mod tests;
