//! The CORS origin matcher: `origins` entries as `[cors.NAME]` compiles them, a request's
//! `Origin` (and a preflight's method and headers) as a policy judges them.
//!
//! Input: lines. Every line but the last is an `origins` entry; the last is the request's
//! `Origin` value, optionally followed by a tab, the requested method, a tab and the
//! requested headers. Checked, besides "no panic":
//! - an entry that compiles prints as an entry that compiles to the same rule;
//! - an exact origin admits its own printed form;
//! - the byte-for-byte fast path never admits what parsing and matching would refuse;
//! - a `*.suffix` pattern admits only a host of exactly one more non-empty label ending in
//!   the suffix, with the rule's scheme;
//! - a granted preflight has an admitted origin, an allowed method and allowed headers.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

use ficus_plugins::cors::origin::{parse_request_origin, OriginRule, Origins, RequestOriginValue};
use ficus_plugins::cors::CorsSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let Some(request) = lines.pop() else {
        return;
    };
    let mut rules = Vec::new();
    let mut null = false;
    for entry in lines {
        if entry == "null" {
            null = true;
            continue;
        }
        let Ok(rule) = OriginRule::parse(entry) else {
            continue;
        };
        let printed = rule.to_string();
        assert_eq!(
            OriginRule::parse(&printed).as_ref(),
            Ok(&rule),
            "{entry:?} prints as {printed:?}"
        );
        if !rule.is_pattern() {
            let one = Origins::List {
                rules: vec![rule.clone()],
                null: false,
            };
            assert!(
                one.admits(printed.as_bytes()),
                "{entry:?} refuses {printed:?}"
            );
        }
        rules.push(rule);
    }
    let mut parts = request.splitn(3, '\t');
    let origin = parts.next().unwrap_or("");
    let method = parts.next();
    let asked_headers = parts.next();

    let parsed = parse_request_origin(origin.as_bytes());
    for rule in &rules {
        let matched = match parsed {
            Some(RequestOriginValue::Tuple(o)) => rule.matches(&o),
            _ => false,
        };
        if rule.is_exactly(origin.as_bytes()) {
            assert!(
                matched,
                "fast path admits {origin:?} for {rule}, matching does not"
            );
        }
        if let (true, true, Some(RequestOriginValue::Tuple(o))) =
            (matched, rule.is_pattern(), parsed)
        {
            // `scheme://*.suffix[:port]`
            let printed = rule.to_string();
            let after = &printed[printed.find("://*").map_or(0, |i| i + 4)..];
            let suffix = after.split(':').next().unwrap_or(after);
            let host = o.host.to_ascii_lowercase();
            let label = host.strip_suffix(suffix);
            assert!(
                label.is_some_and(|l| !l.is_empty() && !l.contains('.')),
                "{rule} admits host {:?}",
                o.host
            );
            assert!(printed
                .to_ascii_lowercase()
                .starts_with(&format!("{}://", o.scheme.to_ascii_lowercase())));
        }
    }

    let origins = Origins::List { rules, null };
    let admitted = origins.admits(origin.as_bytes());
    let settings = CorsSettings::new(
        origins,
        vec![Method::PUT, Method::DELETE],
        vec![HeaderName::from_static("x-api-key")],
        vec!["x-total".to_string()],
        true,
        None,
    );
    let mut headers = HeaderMap::new();
    let Ok(ov) = HeaderValue::from_str(origin) else {
        return;
    };
    headers.insert(http::header::ORIGIN, ov);
    if let Some(m) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert(http::header::ACCESS_CONTROL_REQUEST_METHOD, m);
    }
    if let Some(h) = asked_headers {
        for line in h.split('\t') {
            if let Ok(v) = HeaderValue::from_str(line) {
                headers.append(http::header::ACCESS_CONTROL_REQUEST_HEADERS, v);
            }
        }
    }
    if let Ok(grant) = settings.check_preflight(&headers) {
        assert!(admitted, "preflight granted to a refused origin {origin:?}");
        assert_eq!(
            grant.origin.map(HeaderValue::as_bytes),
            Some(origin.as_bytes())
        );
        let m = headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .map(|v| v.as_bytes().trim_ascii())
            .unwrap_or_default();
        assert!(settings.allows_method(m), "granted method {m:?}");
        if let Some(list) = &grant.headers {
            for name in list.as_bytes().split(|&b| b == b',') {
                let name = name.trim_ascii();
                assert!(
                    name.is_empty() || settings.allows_header(name),
                    "granted header {name:?}"
                );
            }
        }
    }
});
