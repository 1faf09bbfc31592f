//! The CORS kind's compile step and the plugin's hooks, driven directly.

use super::*;
use crate::{
    HeaderEdits, HeaderOp, Outcome, RequestState, RequestView, ResponseHead, Severity, Source,
};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::path::Path;

const SHOP: &str = r#"
origins = ["https://shop.example.com", "https://*.example.com"]
methods = ["GET", "POST", "PUT"]
headers = ["Content-Type", "X-Custom"]
expose_headers = ["X-Request-Id"]
credentials = true
max_age = "600s"
"#;

fn compile(src: &str) -> (Option<CorsSettings>, Vec<crate::Problem>) {
    let cfg: CorsConfig = toml::from_str(src).unwrap();
    let mut cx = CompileContext::new(Path::new("."));
    let s = Cors::compile(cfg, &mut cx);
    (s, cx.into_problems())
}

fn plugin(src: &str) -> Arc<dyn Plugin> {
    let (s, p) = compile(src);
    Cors::build("shop", Arc::new(s.unwrap_or_else(|| panic!("{p:?}"))))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Runs the request hook as the gateway does; returns the outcome and the state.
async fn request(p: &dyn Plugin, h: &HeaderMap, preflight: bool) -> (Outcome, RequestState) {
    let mut state = RequestState::new();
    let mut upstream = HeaderEdits::default();
    let method = if preflight {
        Method::OPTIONS
    } else {
        Method::GET
    };
    let mut view = RequestView {
        method: &method,
        path: "/orders/1",
        query: None,
        headers: h,
        client_ip: None,
        route: "orders",
        request_id: "id",
        preflight,
        state: &mut state,
        upstream: &mut upstream,
    };
    let out = p.on_request(&mut view).await;
    assert!(upstream.is_empty());
    (out, state)
}

/// Runs the response hook on a response with `response` headers; returns the head after
/// the edits.
async fn respond(
    p: &dyn Plugin,
    req: &HeaderMap,
    response: &HeaderMap,
    state: &RequestState,
) -> HeaderMap {
    respond_from(p, req, response, state, Source::Upstream).await
}

/// [`respond`] for a response from `source`.
async fn respond_from(
    p: &dyn Plugin,
    req: &HeaderMap,
    response: &HeaderMap,
    state: &RequestState,
    source: Source,
) -> HeaderMap {
    let mut edits = HeaderEdits::default();
    let mut head = ResponseHead {
        status: StatusCode::OK,
        headers: response,
        source,
        method: &Method::GET,
        request_headers: req,
        route: "orders",
        state,
        edits: &mut edits,
    };
    p.on_response(&mut head).await;
    let mut out = response.clone();
    for op in edits.take() {
        match op {
            HeaderOp::Set(n, v) => {
                out.insert(n, v);
            }
            HeaderOp::Append(n, v) => {
                out.append(n, v);
            }
            HeaderOp::Remove(n) => {
                out.remove(n);
            }
        }
    }
    out
}

fn get<'h>(h: &'h HeaderMap, name: &http::HeaderName) -> Option<&'h str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn the_issue_example_compiles() {
    let (s, problems) = compile(SHOP);
    assert!(problems.is_empty(), "{problems:?}");
    let s = s.unwrap();
    assert!(s.credentials);
    assert_eq!(s.max_age, Some(Duration::from_secs(600)));
    assert_eq!(s.allow_methods, "GET, POST, PUT");
    assert_eq!(s.expose_value.as_ref().unwrap(), "X-Request-Id");
    assert_eq!(s.max_age_value.as_ref().unwrap(), "600");
    assert_eq!(
        s.origins.to_string(),
        "https://shop.example.com, https://*.example.com"
    );
}

#[test]
fn star_with_credentials_is_refused_with_a_hint() {
    let (s, problems) = compile("origins = [\"*\"]\ncredentials = true");
    assert!(s.is_none());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "origins[0]");
    assert!(problems[0]
        .message
        .contains("`*` cannot be used with `credentials = true`"));
    assert!(problems[0]
        .hint
        .as_ref()
        .unwrap()
        .contains("list the origins"));
    let (s, problems) = compile("origins = [\"*\"]");
    assert_eq!(s.unwrap().origins, Origins::Any);
    assert!(problems.is_empty());
}

#[test]
fn every_bad_value_is_reported_at_its_key() {
    let (s, problems) = compile(
        r#"
origins = ["https://a.com/", "example.com", "https://a.*.com", "https://a.com:99999", "https://a.com/x?y"]
methods = ["P UT", "*", "TRACE"]
headers = ["X Bad", "*"]
expose_headers = ["Bad:Name"]
max_age = "1.5s"
"#,
    );
    assert!(s.is_none());
    let errors: Vec<(&str, &str)> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| (p.key.as_str(), p.message.as_str()))
        .collect();
    let want = [
        ("origins[0]", "ends with `/`"),
        ("origins[1]", "has no scheme"),
        ("origins[2]", "only a whole first label may be `*`"),
        ("origins[3]", "invalid port `99999`"),
        ("origins[4]", "has a path"),
        ("methods[0]", "is not an HTTP method"),
        ("methods[1]", "`*` is not a method"),
        ("methods[2]", "browsers never send `TRACE`"),
        ("headers[0]", "`X Bad` is not a header name"),
        ("headers[1]", "`*` is not a header name"),
        ("expose_headers[0]", "`Bad:Name` is not a header name"),
        ("max_age", "not a whole number of seconds"),
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for ((key, msg), (wkey, wmsg)) in errors.iter().zip(want) {
        assert_eq!(*key, wkey);
        assert!(msg.contains(wmsg), "{key}: {msg}");
    }
    assert!(problems
        .iter()
        .all(|p| p.span.is_some() && p.hint.is_some()));
}

#[test]
fn warnings_for_null_lowercase_methods_and_long_max_age() {
    let (s, problems) = compile(
        "origins = [\"null\", \"https://a.com\"]\nmethods = [\"patch\"]\nmax_age = \"48h\"",
    );
    assert!(s.is_some());
    let warnings: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(warnings, ["origins[0]", "methods[0]", "max_age"]);
    assert!(problems.iter().all(|p| p.severity == Severity::Warning));
    let (_, problems) = compile("origins = []");
    assert!(problems[0].message.contains("empty `origins`"));
    let (s, problems) = compile("origins = [\"*\", \"https://a.com\"]");
    assert_eq!(s.unwrap().origins, Origins::Any);
    assert_eq!(problems[0].severity, Severity::Warning);
}

#[test]
fn unknown_keys_and_missing_origins_are_serde_errors() {
    assert!(toml::from_str::<CorsConfig>("origins = []\norigin = \"x\"").is_err());
    assert!(toml::from_str::<CorsConfig>("methods = [\"PUT\"]").is_err());
}

#[tokio::test]
async fn an_admitted_preflight_is_answered_with_every_header() {
    let p = plugin(SHOP);
    let req = headers(&[
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type,x-custom"),
    ]);
    let (out, state) = request(&*p, &req, true).await;
    let Outcome::Respond(r) = out else {
        panic!("not answered: {out:?}")
    };
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let h: HeaderMap = r.headers.iter().cloned().collect();
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://app.example.com")
    );
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, POST, PUT")
    );
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_HEADERS),
        Some("content-type,x-custom")
    );
    assert_eq!(get(&h, &ACCESS_CONTROL_MAX_AGE), Some("600"));
    assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
    assert_eq!(
        get(&h, &VARY),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
    // The response hook leaves the answer as built.
    let after = respond(&*p, &req, &h, &state).await;
    assert_eq!(after, h);
}

#[tokio::test]
async fn refused_preflights_get_403_and_no_cors_headers() {
    let p = plugin(SHOP);
    let cases = [
        (
            "https://example.com.evil.com",
            "PUT",
            "",
            "origin not allowed",
        ),
        (
            "https://app.example.com",
            "DELETE",
            "",
            "method not allowed",
        ),
        ("https://app.example.com", "put", "", "method not allowed"),
        (
            "https://app.example.com",
            "PUT",
            "x-custom, x-other",
            "request header not allowed",
        ),
    ];
    for (origin, method, hdrs, why) in cases {
        let mut pairs = vec![
            ("origin", origin),
            ("access-control-request-method", method),
        ];
        if !hdrs.is_empty() {
            pairs.push(("access-control-request-headers", hdrs));
        }
        let req = headers(&pairs);
        let (out, state) = request(&*p, &req, true).await;
        let Outcome::Respond(r) = out else {
            panic!("not answered: {out:?}")
        };
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin} {method} {hdrs}");
        assert!(
            matches!(&r.body, crate::Body::Error(m) if m.contains(why)),
            "{:?}",
            r.body
        );
        assert!(
            r.headers
                .iter()
                .all(|(n, _)| !n.as_str().starts_with("access-control-")),
            "{:?}",
            r.headers
        );
        let h: HeaderMap = r.headers.iter().cloned().collect();
        assert_eq!(respond(&*p, &req, &h, &state).await, h);
    }
    let mut samples = Vec::new();
    p.metrics(&mut samples);
    let value = |result: &str| {
        samples
            .iter()
            .find(|s| s.labels.contains(&("result", result.to_string())))
            .unwrap()
            .value
    };
    assert_eq!(value("refused_origin"), 1);
    assert_eq!(value("refused_method"), 2);
    assert_eq!(value("refused_header"), 1);
    assert_eq!(value("allowed"), 0);
}

#[tokio::test]
async fn safelisted_methods_and_headers_need_not_be_listed() {
    let p = plugin("origins = [\"https://a.com\"]");
    let req = headers(&[
        ("origin", "https://a.com"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "Content-Type, ACCEPT"),
    ]);
    let (Outcome::Respond(r), _) = request(&*p, &req, true).await else {
        panic!("not answered")
    };
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let h: HeaderMap = r.headers.into_iter().collect();
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, HEAD, POST")
    );
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_HEADERS),
        Some("Content-Type, ACCEPT")
    );
    assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    assert!(h.get(ACCESS_CONTROL_MAX_AGE).is_none());
}

#[tokio::test]
async fn actual_responses_echo_an_admitted_origin_and_replace_the_upstreams_headers() {
    let p = plugin(SHOP);
    let upstream = headers(&[
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "false"),
        ("access-control-expose-headers", "X-Secret"),
        ("vary", "Accept-Encoding"),
        ("content-type", "application/json"),
    ]);
    let req = headers(&[("origin", "https://shop.example.com")]);
    let (out, state) = request(&*p, &req, false).await;
    assert_eq!(out, Outcome::Continue);
    let h = respond(&*p, &req, &upstream, &state).await;
    assert_eq!(
        get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://shop.example.com")
    );
    assert_eq!(h.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().count(), 1);
    assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
    assert_eq!(
        get(&h, &ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("X-Request-Id")
    );
    assert_eq!(get(&h, &VARY), Some("Accept-Encoding, Origin"));
    assert_eq!(h.get_all(VARY).iter().count(), 1);
    assert_eq!(
        get(&h, &http::header::CONTENT_TYPE),
        Some("application/json")
    );

    // A refused origin: the upstream's CORS headers are gone too, the policy decides.
    let req = headers(&[("origin", "https://evilexample.com")]);
    let h = respond(&*p, &req, &upstream, &state).await;
    assert!(
        h.keys().all(|n| !n.as_str().starts_with("access-control-")),
        "{h:?}"
    );
    assert_eq!(get(&h, &VARY), Some("Accept-Encoding, Origin"));

    // No Origin: no CORS headers, but the answer depends on the origin.
    let h = respond(&*p, &HeaderMap::new(), &HeaderMap::new(), &state).await;
    assert_eq!(get(&h, &VARY), Some("Origin"));
    assert_eq!(h.len(), 1);

    // A Vary that names Origin already (any case), or `*`, is left as it is.
    for vary in ["origin", "Accept, ORIGIN", "*"] {
        let up = headers(&[("vary", vary)]);
        let h = respond(&*p, &req, &up, &state).await;
        assert_eq!(h.get_all(VARY).iter().collect::<Vec<_>>(), [vary]);
    }
    // Two Vary lines are merged into one.
    let up = headers(&[("vary", "Accept"), ("vary", "Accept-Language")]);
    let h = respond(&*p, &req, &up, &state).await;
    assert_eq!(
        h.get_all(VARY).iter().collect::<Vec<_>>(),
        ["Accept, Accept-Language, Origin"]
    );
}

#[tokio::test]
async fn two_origin_headers_are_no_origin() {
    let p = plugin(SHOP);
    let req = headers(&[
        ("origin", "https://shop.example.com"),
        ("origin", "https://shop.example.com"),
    ]);
    let h = respond(&*p, &req, &HeaderMap::new(), &RequestState::new()).await;
    assert!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert_eq!(get(&h, &VARY), Some("Origin"));
}

#[tokio::test]
async fn a_star_policy_answers_star_and_does_not_vary() {
    let p = plugin("origins = [\"*\"]\nexpose_headers = [\"X-Request-Id\"]");
    for req in [headers(&[("origin", "null")]), HeaderMap::new()] {
        let h = respond(
            &*p,
            &req,
            &headers(&[("vary", "Accept")]),
            &RequestState::new(),
        )
        .await;
        assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(
            get(&h, &ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("X-Request-Id")
        );
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(get(&h, &VARY), Some("Accept"));
    }
    let req = headers(&[
        ("origin", "https://anyone.example"),
        ("access-control-request-method", "GET"),
    ]);
    let (Outcome::Respond(r), _) = request(&*p, &req, true).await else {
        panic!("not answered")
    };
    let h: HeaderMap = r.headers.into_iter().collect();
    assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert!(h.get(ACCESS_CONTROL_ALLOW_HEADERS).is_none());
}

#[tokio::test]
async fn null_is_admitted_only_when_listed() {
    let listed = plugin("origins = [\"null\"]");
    let unlisted = plugin("origins = [\"https://a.com\"]");
    let req = headers(&[("origin", "null")]);
    let h = respond(&*listed, &req, &HeaderMap::new(), &RequestState::new()).await;
    assert_eq!(get(&h, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("null"));
    let h = respond(&*unlisted, &req, &HeaderMap::new(), &RequestState::new()).await;
    assert!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[test]
fn a_reordered_or_equal_section_is_the_same_policy_and_a_changed_one_is_not() {
    let a = compile(SHOP).0.unwrap();
    let b = compile(SHOP).0.unwrap();
    assert_eq!(a, b);
    let c = compile(&SHOP.replace("600s", "601s")).0.unwrap();
    assert_ne!(a, c);
}

#[test]
fn preflight_check_reads_requested_headers_over_several_lines() {
    let s = compile(SHOP).0.unwrap();
    let req = headers(&[
        ("origin", "https://shop.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-custom"),
        ("access-control-request-headers", "content-type"),
    ]);
    let grant = s.check_preflight(&req).unwrap();
    assert_eq!(grant.headers.unwrap(), "x-custom, content-type");
    let req = headers(&[
        ("origin", "https://shop.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", " , "),
    ]);
    assert_eq!(s.check_preflight(&req).unwrap().headers, None);
    let req = headers(&[("origin", "https://shop.example.com")]);
    assert_eq!(s.check_preflight(&req), Err(PreflightRefusal::Method));
}

#[tokio::test]
async fn the_gateways_own_answers_expose_their_retry_and_refusal_fields() {
    let p = plugin("origins = [\"*\"]\nexpose_headers = [\"X-Request-Id\", \"retry-after\"]");
    let req = headers(&[("origin", "https://anyone.example")]);
    let state = RequestState::new();
    let own = respond_from(&*p, &req, &HeaderMap::new(), &state, Source::Gateway).await;
    assert_eq!(
        get(&own, &ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("X-Request-Id, retry-after, RateLimit-Policy, RateLimit, WWW-Authenticate")
    );
    let proxied = respond_from(&*p, &req, &HeaderMap::new(), &state, Source::Upstream).await;
    assert_eq!(
        get(&proxied, &ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("X-Request-Id, retry-after")
    );
    // A policy that lists nothing still exposes them on its own answers, and nothing else.
    let p = plugin("origins = [\"*\"]");
    let own = respond_from(&*p, &req, &HeaderMap::new(), &state, Source::Gateway).await;
    assert_eq!(
        get(&own, &ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("Retry-After, RateLimit-Policy, RateLimit, WWW-Authenticate")
    );
    let proxied = respond_from(&*p, &req, &HeaderMap::new(), &state, Source::Upstream).await;
    assert!(proxied.get(ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
}
