//! A compiled CORS policy and its decisions: whether a request's origin is admitted, and
//! whether a preflight is. Pure functions of the settings and the request headers, shared
//! by the plugin (`plugin.rs`) and `ficus explain`, so the explanation is the decision.
//!
//! The headers every answer carries that do not depend on the request
//! (`Access-Control-Allow-Methods`, `-Expose-Headers`, `-Max-Age`) are built here once.

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::time::Duration;

use super::origin::Origins;

/// Methods a browser sends cross-origin without asking for them in a preflight (the CORS-
/// safelisted methods of the Fetch standard): a preflight may still name one (because of a
/// custom header), and its method check then always passes.
pub const SAFELISTED_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];

/// Request headers a policy need not list (the CORS-safelisted request-header names of the
/// Fetch standard). A browser names one in `Access-Control-Request-Headers` only when its
/// value is outside the safelist (`Content-Type: application/json`, say); an allowed origin
/// may send those too.
pub const SAFELISTED_HEADERS: [&str; 5] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "range",
];

/// Response fields the gateway's own answers carry for a page to act on: when to retry a
/// `429` (or a fail-closed `503`) and how much is left, and why a `401`/`403` was refused.
/// None is CORS-safelisted, so they are exposed on the gateway's answers whatever
/// `expose_headers` lists; a proxied response exposes only what the policy lists.
pub const GATEWAY_ANSWER_FIELDS: [&str; 4] = [
    "Retry-After",
    "RateLimit-Policy",
    "RateLimit",
    "WWW-Authenticate",
];

/// A compiled `[cors.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    pub origins: Origins,
    /// Methods a preflight may ask for besides [`SAFELISTED_METHODS`], as written.
    pub methods: Vec<Method>,
    /// Request headers a preflight may ask for besides [`SAFELISTED_HEADERS`].
    pub headers: Vec<HeaderName>,
    /// Response headers scripts may read, as written.
    pub expose_headers: Vec<String>,
    pub credentials: bool,
    /// How long a browser may cache a preflight's answer; `None`: the browser's default.
    pub max_age: Option<Duration>,
    /// `Access-Control-Allow-Methods`.
    pub(super) allow_methods: HeaderValue,
    /// `Access-Control-Expose-Headers`, when `expose_headers` is not empty.
    pub(super) expose_value: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers` on the gateway's own answers: `expose_headers` and
    /// [`GATEWAY_ANSWER_FIELDS`] (those not listed already).
    pub(super) expose_on_gateway_answers: HeaderValue,
    /// `Access-Control-Max-Age`.
    pub(super) max_age_value: Option<HeaderValue>,
}

impl CorsSettings {
    /// Settings with their fixed header values built.
    pub fn new(
        origins: Origins,
        methods: Vec<Method>,
        headers: Vec<HeaderName>,
        expose_headers: Vec<String>,
        credentials: bool,
        max_age: Option<Duration>,
    ) -> CorsSettings {
        let allow_methods = if methods.is_empty() {
            HeaderValue::from_static("GET, HEAD, POST")
        } else {
            joined(methods.iter().map(Method::as_str))
        };
        let expose_value =
            (!expose_headers.is_empty()).then(|| joined(expose_headers.iter().map(String::as_str)));
        let expose_on_gateway_answers = joined(
            expose_headers.iter().map(String::as_str).chain(
                GATEWAY_ANSWER_FIELDS
                    .into_iter()
                    .filter(|f| !expose_headers.iter().any(|e| e.eq_ignore_ascii_case(f))),
            ),
        );
        let max_age_value = max_age.map(|d| HeaderValue::from(d.as_secs()));
        CorsSettings {
            origins,
            methods,
            headers,
            expose_headers,
            credentials,
            max_age,
            allow_methods,
            expose_value,
            expose_on_gateway_answers,
            max_age_value,
        }
    }

    /// What the policy makes of a request's `Origin`.
    pub fn check_origin<'h>(&self, request: &'h HeaderMap) -> OriginCheck<'h> {
        if self.origins == Origins::Any {
            return OriginCheck::Any;
        }
        let mut values = request.get_all(ORIGIN).iter();
        let Some(value) = values.next() else {
            return OriginCheck::Absent;
        };
        // Browsers send one origin. Two `Origin` lines are no origin anyone can vouch for.
        if values.next().is_some() || !self.origins.admits(value.as_bytes()) {
            return OriginCheck::Refused;
        }
        OriginCheck::Allowed(value)
    }

    /// Judges a preflight: its origin, the method it asks for and every header it asks for.
    pub fn check_preflight<'h>(
        &self,
        request: &'h HeaderMap,
    ) -> Result<PreflightGrant<'h>, PreflightRefusal> {
        let origin = match self.check_origin(request) {
            OriginCheck::Any => None,
            OriginCheck::Allowed(v) => Some(v),
            OriginCheck::Absent | OriginCheck::Refused => return Err(PreflightRefusal::Origin),
        };
        let method = request
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .map(|m| m.as_bytes().trim_ascii())
            .ok_or(PreflightRefusal::Method)?;
        if !self.allows_method(method) {
            return Err(PreflightRefusal::Method);
        }
        let mut lines = request.get_all(ACCESS_CONTROL_REQUEST_HEADERS).iter();
        let requested = match (lines.next(), lines.next()) {
            (None, _) => None,
            (Some(one), None) => Some(one.clone()),
            // Several lines mean the same as one joined with commas (RFC 9110 §5.3).
            (Some(_), Some(_)) => Some(joined(
                request
                    .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )),
        };
        let mut any = false;
        if let Some(list) = &requested {
            for name in list.as_bytes().split(|&b| b == b',') {
                let name = name.trim_ascii();
                if name.is_empty() {
                    continue;
                }
                if !self.allows_header(name) {
                    return Err(PreflightRefusal::Header);
                }
                any = true;
            }
        }
        Ok(PreflightGrant {
            origin,
            headers: requested.filter(|_| any),
        })
    }

    /// Methods are compared byte for byte, as the Fetch standard does (methods are
    /// case-sensitive; browsers upper-case only the six standard ones they normalize).
    pub fn allows_method(&self, method: &[u8]) -> bool {
        SAFELISTED_METHODS
            .iter()
            .chain(&self.methods)
            .any(|m| m.as_str().as_bytes() == method)
    }

    /// Header names are compared without regard to ASCII case.
    pub fn allows_header(&self, name: &[u8]) -> bool {
        SAFELISTED_HEADERS
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            || self
                .headers
                .iter()
                .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// Values joined with `, `. Every part is a token or a header value, so the result is a
/// valid header value; should it not be, the header is left empty rather than panicking.
fn joined<'a>(parts: impl Iterator<Item = &'a str>) -> HeaderValue {
    let mut s = String::new();
    for p in parts {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(p);
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What a policy makes of a request's `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck<'h> {
    /// The policy admits every origin (`origins = ["*"]`); the answer does not depend on
    /// the request's `Origin`.
    Any,
    /// Admitted: this `Origin` value is echoed.
    Allowed(&'h HeaderValue),
    /// Not admitted (or not a single serialized origin).
    Refused,
    /// The request has no `Origin`.
    Absent,
}

/// An admitted preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightGrant<'h> {
    /// The origin to echo; `None` for a policy that admits every origin (`*`).
    pub origin: Option<&'h HeaderValue>,
    /// The requested headers to echo in `Access-Control-Allow-Headers`; `None` when none
    /// were asked for.
    pub headers: Option<HeaderValue>,
}

/// Why a preflight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightRefusal {
    Origin = 0,
    Method = 1,
    Header = 2,
}

impl PreflightRefusal {
    /// The refusal's message: fixed text, nothing from the request.
    pub fn message(self) -> &'static str {
        match self {
            PreflightRefusal::Origin => "CORS preflight refused: origin not allowed",
            PreflightRefusal::Method => "CORS preflight refused: method not allowed",
            PreflightRefusal::Header => "CORS preflight refused: request header not allowed",
        }
    }

    /// Every reason, in discriminant order.
    pub const ALL: [PreflightRefusal; 3] = [
        PreflightRefusal::Origin,
        PreflightRefusal::Method,
        PreflightRefusal::Header,
    ];

    /// The `result` label of `ficus_cors_preflights_total`.
    pub fn metric_result(self) -> &'static str {
        match self {
            PreflightRefusal::Origin => "refused_origin",
            PreflightRefusal::Method => "refused_method",
            PreflightRefusal::Header => "refused_header",
        }
    }
}
