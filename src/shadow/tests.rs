//! The comparison rules, noise learning and records, end to end through the public API.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::*;

fn compile(f: impl FnOnce(&mut CompareConfig)) -> ShadowComparison {
    let mut cfg = CompareConfig::default();
    f(&mut cfg);
    cfg.compile().expect("test configs are valid")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn json() -> HeaderMap {
    headers(&[("content-type", "application/json")])
}

fn resp<'a>(h: &'a HeaderMap, body: &'a str) -> Response<'a> {
    Response {
        status: 200,
        headers: h,
        body: body.as_bytes(),
    }
}

fn cmp_json(c: &ShadowComparison, a: &str, b: &str) -> Comparison {
    let h = json();
    c.compare(&resp(&h, a), &resp(&h, b))
}

/// (kind, concrete path) of each kept difference.
fn found(c: &Comparison) -> Vec<(DifferenceKind, &str)> {
    c.differences
        .iter()
        .map(|d| (d.kind, d.path.as_str()))
        .collect()
}

use DifferenceKind::*;

#[test]
fn reordered_keys_match() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"id": 7, "name": "tea", "tags": ["a", "b"], "price": {"amount": 3.5, "currency": "EUR"}}"#,
        r#"{"price": {"currency": "EUR", "amount": 3.5}, "tags": ["a", "b"], "name": "tea", "id": 7}"#,
    );
    assert!(c.matched(), "{c:#?}");
    assert_eq!(c.body, BodyMode::Json);
    // Array order is not ignored: arrays compare by index.
    let c = cmp_json(&ShadowComparison::default(), r#"[1, 2]"#, r#"[2, 1]"#);
    assert_eq!(found(&c), [(ValueChanged, "$[0]"), (ValueChanged, "$[1]")]);
}

#[test]
fn a_changed_value_names_its_concrete_and_normalized_path() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"items": [{"sku": "a", "price": 2}, {"sku": "b", "price": 3}]}"#,
        r#"{"items": [{"sku": "a", "price": 2}, {"sku": "b", "price": 4}]}"#,
    );
    assert!(!c.matched());
    assert_eq!(
        c.differences,
        [Difference {
            kind: ValueChanged,
            field: "$.items[*].price".into(),
            path: "$.items[1].price".into(),
            primary: Some("3".into()),
            shadow: Some("4".into()),
        }]
    );
    assert_eq!(c.fields, ["$.items[*].price"]);
}

#[test]
fn ignored_paths_including_wildcards_are_skipped() {
    let c = compile(|c| {
        c.ignore = vec![
            "$.timestamp".into(),
            "$.items[*].etag".into(),
            r#"$["odd key"]"#.into(),
            "$.meta".into(),
            "$.list[1]".into(),
        ]
    });
    let primary = r#"{"timestamp": 1, "odd key": "x", "meta": {"host": "a", "took": 3},
        "list": [1, 2, 3],
        "items": [{"etag": "e1", "price": 1}, {"etag": "e2", "price": 2}]}"#;
    // Every ignored place differs, is missing or is extra; nothing else changes.
    let shadow = r#"{"timestamp": "2024", "odd key": "y", "meta": {"took": 9, "new": true},
        "list": [1, 20, 3],
        "items": [{"etag": "f1", "price": 1}, {"price": 2}]}"#;
    let out = cmp_json(&c, primary, shadow);
    assert!(out.matched(), "{out:#?}");

    // A difference next to an ignored field is still found.
    let shadow = shadow.replace(r#"{"price": 2}"#, r#"{"price": 5, "etag": "zz"}"#);
    let out = cmp_json(&c, primary, &shadow);
    assert_eq!(found(&out), [(ValueChanged, "$.items[1].price")]);
    // `[1]` ignores that element only.
    let shadow = shadow.replace("[1, 20, 3]", "[1, 20, 4]");
    let out = cmp_json(&c, primary, &shadow);
    let mut f = found(&out);
    f.sort();
    assert_eq!(
        f,
        [
            (ValueChanged, "$.items[1].price"),
            (ValueChanged, "$.list[2]")
        ]
    );
    // `$` ignores the whole body (status and headers are still compared).
    let all = compile(|c| c.ignore = vec!["$".into()]);
    assert!(cmp_json(&all, r#"{"a": 1}"#, r#"[false]"#).matched());
}

#[test]
fn numbers_use_the_relative_tolerance_for_floats_only() {
    let tol = compile(|c| c.tolerance = 0.001);
    let exact = ShadowComparison::default();
    let same = |c: &ShadowComparison, a: &str, b: &str| cmp_json(c, a, b).matched();
    assert!(same(&tol, "[100.0]", "[100.09]"));
    assert!(!same(&tol, "[100.0]", "[100.2]"));
    assert!(same(&tol, "[-5.0]", "[-5.004]"));
    assert!(!same(&exact, "[100.0]", "[100.09]"));
    // Integers are exact whatever the tolerance.
    assert!(!same(&tol, "[1000000]", "[1000001]"));
    // A float on either side brings the tolerance in; 1 and 1.0 are the same number.
    assert!(same(&tol, "[1000000]", "[1000000.5]"));
    assert!(same(&exact, "[1]", "[1.0]"));
    assert!(same(&exact, "[0]", "[0.0]"));
    assert!(same(&exact, "[2e3]", "[2000]"));
    // Relative: near zero only zero matches.
    assert!(!same(&tol, "[0.0]", "[0.000001]"));
    // Large integers beyond i64 compare exactly too.
    assert!(!same(
        &tol,
        "[18446744073709551615]",
        "[18446744073709551614]"
    ));
}

#[test]
fn a_type_change_is_its_own_kind() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"id": 1, "tags": [], "note": null, "ok": true}"#,
        r#"{"id": "1", "tags": {}, "note": {"a": 1}, "ok": "true"}"#,
    );
    let mut f = found(&c);
    f.sort();
    assert_eq!(
        f,
        [
            (TypeChanged, "$.id"),
            (TypeChanged, "$.note"),
            (TypeChanged, "$.ok"),
            (TypeChanged, "$.tags")
        ]
    );
    let id = c.differences.iter().find(|d| d.path == "$.id").unwrap();
    assert_eq!(id.primary.as_deref(), Some("1"));
    assert_eq!(id.shadow.as_deref(), Some(r#""1""#));
}

#[test]
fn missing_and_extra_fields() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"a": 1, "b": {"c": [1]}}"#,
        r#"{"a": 1, "d": "new"}"#,
    );
    assert_eq!(found(&c), [(Missing, "$.b"), (Extra, "$.d")]);
    assert_eq!(c.differences[0].primary.as_deref(), Some(r#"{"c":[1]}"#));
    assert_eq!(c.differences[0].shadow, None);
    assert_eq!(c.differences[1].primary, None);
    assert_eq!(c.differences[1].shadow.as_deref(), Some(r#""new""#));
}

#[test]
fn arrays_of_different_lengths() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"a": [1, 2, 3]}"#,
        r#"{"a": [1, 9]}"#,
    );
    assert_eq!(found(&c), [(ValueChanged, "$.a[1]"), (ArrayLength, "$.a")]);
    let len = &c.differences[1];
    assert_eq!(
        (len.primary.as_deref(), len.shadow.as_deref()),
        (Some("3"), Some("2"))
    );
}

#[test]
fn nested_differences_carry_the_full_path() {
    let c = cmp_json(
        &ShadowComparison::default(),
        r#"{"order": {"lines": [{"item": {"dims": [1, {"w": 2}]}}], "x": {"y z": {"q": 1}}}}"#,
        r#"{"order": {"lines": [{"item": {"dims": [1, {"w": 3}]}}], "x": {"y z": {"q": 2}}}}"#,
    );
    assert_eq!(
        found(&c),
        [
            (ValueChanged, "$.order.lines[0].item.dims[1].w"),
            (ValueChanged, r#"$.order.x["y z"].q"#)
        ]
    );
    assert_eq!(c.fields[0], "$.order.lines[*].item.dims[*].w");
}

#[test]
fn non_json_bodies_compare_by_hash_and_length() {
    let html = headers(&[("content-type", "text/html")]);
    let same = ShadowComparison::default()
        .compare(&resp(&html, "<p>hello</p>"), &resp(&html, "<p>hello</p>"));
    assert!(same.matched());
    assert_eq!(same.body, BodyMode::Bytes);

    let out = ShadowComparison::default()
        .compare(&resp(&html, "<p>hello</p>"), &resp(&html, "<p>hullo!</p>"));
    assert_eq!(out.body, BodyMode::Bytes);
    assert_eq!(found(&out), [(Body, "body")]);
    let hex: String = Sha256::digest(b"<p>hullo!</p>")[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        out.differences[0].shadow.as_deref(),
        Some(format!("13 bytes, sha256 {hex}…").as_str())
    );
    assert!(out.differences[0]
        .primary
        .as_deref()
        .unwrap()
        .starts_with("12 bytes, "));

    // Both empty: a match; one empty: a body difference.
    let none = HeaderMap::new();
    assert_eq!(
        ShadowComparison::default()
            .compare(&resp(&none, ""), &resp(&none, ""))
            .body,
        BodyMode::Empty
    );
    assert!(!ShadowComparison::default()
        .compare(&resp(&none, ""), &resp(&none, "x"))
        .matched());
}

#[test]
fn json_is_recognised_by_type_or_by_sniffing() {
    let c = ShadowComparison::default();
    let problem = headers(&[("content-type", "application/problem+json; charset=utf-8")]);
    let none = HeaderMap::new();
    let (a, b) = (r#"{"a":1,"b":2}"#, r#" {"b":2,"a":1}"#);
    let out = c.compare(&resp(&problem, a), &resp(&problem, b));
    assert_eq!((out.body, out.matched()), (BodyMode::Json, true));
    let out = c.compare(&resp(&none, a), &resp(&none, b));
    assert_eq!((out.body, out.matched()), (BodyMode::Json, true));
    // Declared on one side only is enough.
    let out = c.compare(&resp(&problem, a), &resp(&none, b));
    assert_eq!(out.body, BodyMode::Json);
}

#[test]
fn invalid_json_on_one_side_falls_back_to_bytes() {
    let out = cmp_json(&ShadowComparison::default(), r#"{"a": 1}"#, r#"{"a": 1"#);
    assert_eq!(out.body, BodyMode::InvalidJson);
    assert_eq!(found(&out), [(Body, "body")]);
    // An HTML error page from a shadow that says JSON.
    let out = cmp_json(
        &ShadowComparison::default(),
        r#"{"a": 1}"#,
        "<html>oops</html>",
    );
    assert_eq!(out.body, BodyMode::InvalidJson);
    assert!(!out.matched());
}

#[test]
fn a_body_over_the_limit_is_compared_by_hash_only() {
    let mut c = ShadowComparison::default();
    c.limits.max_body = 64;
    let big_a = format!(r#"{{"pad": "{}", "a": 1, "b": 2}}"#, "x".repeat(80));
    let big_b = format!(r#"{{"b": 2, "pad": "{}", "a": 1}}"#, "x".repeat(80));
    // Structurally equal, but too large to parse: bytes decide.
    let out = cmp_json(&c, &big_a, &big_b);
    assert_eq!(out.body, BodyMode::TooLarge);
    assert_eq!(found(&out), [(Body, "body")]);
    let out = cmp_json(&c, &big_a, &big_a);
    assert!(out.matched());
    assert_eq!(out.body, BodyMode::TooLarge);
}

#[test]
fn depth_is_bounded() {
    let mut c = ShadowComparison::default();
    c.limits.max_depth = 3;
    let out = cmp_json(
        &c,
        r#"{"a": {"b": {"c": {"d": {"e": 1, "f": 1}}}}}"#,
        r#"{"a": {"b": {"c": {"d": {"f": 1, "e": 2}}}}}"#,
    );
    // Compared as one value at the bound, exactly (member order still ignored).
    assert_eq!(found(&out), [(ValueChanged, "$.a.b.c")]);
    assert!(cmp_json(
        &c,
        r#"{"a": {"b": {"c": {"d": {"e": 1, "f": 1}}}}}"#,
        r#"{"a": {"b": {"c": {"d": {"f": 1, "e": 1}}}}}"#,
    )
    .matched());

    // Nesting past serde_json's own limit is not JSON to us: bytes, no stack overflow.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deeper = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let out = cmp_json(&ShadowComparison::default(), &deep, &deeper);
    assert_eq!(out.body, BodyMode::InvalidJson);
    assert!(!out.matched());
}

#[test]
fn differences_are_capped_and_the_rest_counted() {
    let mut c = ShadowComparison::default();
    c.limits.max_differences = 5;
    c.limits.max_fields = 10;
    let a: Vec<String> = (0..40).map(|i| format!(r#""k{i}": 1"#)).collect();
    let b: Vec<String> = (0..40).map(|i| format!(r#""k{i}": 2"#)).collect();
    let out = cmp_json(
        &c,
        &format!("{{{}}}", a.join(",")),
        &format!("{{{}}}", b.join(",")),
    );
    assert_eq!(out.differences.len(), 5);
    assert_eq!(out.omitted, 35);
    assert_eq!(out.fields.len(), 10);
    assert_eq!(out.fields_omitted, 30);
    assert!(!out.matched());

    // Many elements of one array differing are one field.
    let a = format!("[{}]", vec!["1"; 1000].join(","));
    let b = format!("[{}]", vec!["2"; 1000].join(","));
    let out = cmp_json(&c, &a, &b);
    assert_eq!(out.fields, ["$[*]"]);
    assert_eq!(out.omitted, 995);
}

#[test]
fn status_and_chosen_headers() {
    let c = compile(|c| c.headers = vec!["Content-Type".into(), "X-Version".into()]);
    let a = headers(&[("content-type", "application/json"), ("x-other", "1")]);
    let b = headers(&[
        ("Content-Type", "application/json; charset=utf-8"),
        ("x-version", "2"),
        ("x-other", "2"),
    ]);
    let primary = Response {
        status: 200,
        headers: &a,
        body: b"{}",
    };
    let shadow = Response {
        status: 201,
        headers: &b,
        body: b"{}",
    };
    let out = c.compare(&primary, &shadow);
    assert_eq!(
        found(&out),
        [
            (Status, "status"),
            (Header, "header:content-type"),
            (Header, "header:x-version")
        ]
    );
    assert_eq!(out.differences[0].primary.as_deref(), Some("200"));
    assert_eq!(out.differences[0].shadow.as_deref(), Some("201"));
    assert_eq!(out.differences[2].primary, None);
    assert_eq!(out.differences[2].shadow.as_deref(), Some("2"));
    // An unlisted header (x-other) is not compared; equal headers match.
    assert!(c.compare(&primary, &primary).matched());

    // A sensitive header may be compared, but its values never show.
    let c = compile(|c| c.headers = vec!["set-cookie".into()]);
    let a = headers(&[("set-cookie", "sid=one")]);
    let b = headers(&[("set-cookie", "sid=two")]);
    let out = c.compare(&resp(&a, ""), &resp(&b, ""));
    assert_eq!(out.differences[0].primary.as_deref(), Some(REDACTED));
    assert_eq!(out.differences[0].shadow.as_deref(), Some(REDACTED));
}

fn request(h: &HeaderMap) -> SampleRequest<'_> {
    SampleRequest {
        method: "GET",
        path: "/orders/1?token=secret-query",
        headers: h,
    }
}

#[test]
fn learned_noise_is_excused_and_a_real_mismatch_still_counts() {
    let c = compile(|c| c.headers = vec!["x-request-id".into()]);
    let record = ShadowRecord::new(RecordLimits::default());
    let req_h = HeaderMap::new();
    let req = request(&req_h);
    let (h1, h2, h3) = (
        headers(&[("content-type", "application/json"), ("x-request-id", "1")]),
        headers(&[("content-type", "application/json"), ("x-request-id", "2")]),
        headers(&[("content-type", "application/json"), ("x-request-id", "3")]),
    );
    let p1 = r#"{"id": 1, "ts": "10:00:01", "items": [{"n": "a", "at": 1}], "price": 5}"#;
    let p2 = r#"{"id": 1, "ts": "10:00:02", "items": [{"n": "a", "at": 2}], "price": 5}"#;

    // Before any noise is learned the timestamp is a mismatch.
    let shadow_ts_only =
        r#"{"id": 1, "ts": "10:00:03", "items": [{"n": "a", "at": 3}], "price": 5}"#;
    let out = record.compare(&c, &req, &resp(&h1, p1), &resp(&h3, shadow_ts_only));
    assert!(!out.matched());

    // Two primary answers teach three noisy fields.
    let learned = record.learn_noise(&c, &resp(&h1, p1), &resp(&h2, p2));
    assert_eq!(learned, Learned::Differences { new: 3 });
    // The same pair again teaches nothing new.
    assert_eq!(
        record.learn_noise(&c, &resp(&h1, p1), &resp(&h2, p2)),
        Learned::Differences { new: 0 }
    );

    // Only noise differs: a match, excused.
    let out = record.compare(&c, &req, &resp(&h1, p1), &resp(&h3, shadow_ts_only));
    assert!(out.matched(), "{out:#?}");
    assert_eq!(out.noise, 3);

    // Noise and a real mismatch: still a mismatch, at the real field only.
    let real = r#"{"id": 1, "ts": "10:00:04", "items": [{"n": "a", "at": 4}], "price": 6}"#;
    let out = record.compare(&c, &req, &resp(&h1, p1), &resp(&h3, real));
    assert!(!out.matched());
    assert_eq!(found(&out), [(ValueChanged, "$.price")]);
    assert_eq!(out.noise, 3);

    let report = record.report();
    assert_eq!(
        (report.compared, report.matched, report.mismatched),
        (3, 1, 2)
    );
    assert_eq!(report.excused_by_noise, 1);
    assert_eq!(report.noise.pairs, 2);
    let noise: Vec<&str> = report
        .noise
        .fields
        .iter()
        .filter(|f| f.noise)
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(noise, ["$.items[*].at", "$.ts", "header:x-request-id"]);
    // The fields table keeps the pre-learning mismatch, marked as noise now.
    let price = report.fields.iter().find(|f| f.field == "$.price").unwrap();
    assert_eq!((price.count, price.noise), (1, false));
    let ts = report.fields.iter().find(|f| f.field == "$.ts").unwrap();
    // Counted once, before it was learned; excused after.
    assert_eq!((ts.count, ts.noise), (1, true));
}

#[test]
fn noise_on_a_parent_covers_its_children() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::default();
    let h = json();
    // One primary answer has a debug block, the other not.
    record.learn_noise(
        &c,
        &resp(&h, r#"{"id": 1, "debug": {"host": "a"}}"#),
        &resp(&h, r#"{"id": 1}"#),
    );
    let req_h = HeaderMap::new();
    let out = record.compare(
        &c,
        &request(&req_h),
        &resp(&h, r#"{"id": 1, "debug": {"host": "a", "ms": 1}}"#),
        &resp(&h, r#"{"id": 1, "debug": {"host": "b"}}"#),
    );
    assert!(out.matched(), "{out:#?}");
    assert_eq!(out.noise, 2);
    // A sibling is not covered.
    let out = record.compare(
        &c,
        &request(&req_h),
        &resp(&h, r#"{"id": 1}"#),
        &resp(&h, r#"{"id": 2}"#),
    );
    assert_eq!(found(&out), [(ValueChanged, "$.id")]);
}

#[test]
fn noise_on_an_array_length_does_not_excuse_its_elements() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::default();
    let h = json();
    // A feed that grew between the two primary calls.
    record.learn_noise(
        &c,
        &resp(&h, r#"{"feed": [1, 2]}"#),
        &resp(&h, r#"{"feed": [1, 2, 3]}"#),
    );
    let req_h = HeaderMap::new();
    let primary = resp(&h, r#"{"feed": [1, 2, 3]}"#);
    // Only the length differs: excused.
    let out = record.compare(
        &c,
        &request(&req_h),
        &primary,
        &resp(&h, r#"{"feed": [1, 2]}"#),
    );
    assert!(out.matched(), "{out:#?}");
    // A wrong element is still a mismatch.
    let out = record.compare(
        &c,
        &request(&req_h),
        &primary,
        &resp(&h, r#"{"feed": [1, 5]}"#),
    );
    assert_eq!(found(&out), [(ValueChanged, "$.feed[1]")]);
    assert_eq!(out.noise, 1);
    let noise = &record.report().noise.fields[0];
    assert_eq!(
        (noise.field.as_str(), noise.noise, noise.covers_subtree),
        ("$.feed", true, false)
    );
}

#[test]
fn a_primary_disagreeing_on_status_teaches_nothing() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::default();
    let h = json();
    let ok = resp(&h, r#"{"id": 1}"#);
    let failed = Response {
        status: 503,
        headers: &h,
        body: br#"{"error": "busy"}"#,
    };
    assert_eq!(record.learn_noise(&c, &ok, &failed), Learned::Discarded);
    let req_h = HeaderMap::new();
    let out = record.compare(&c, &request(&req_h), &ok, &failed);
    assert_eq!(found(&out)[0], (Status, "status"));
    let report = record.report();
    assert_eq!((report.noise.pairs, report.noise.discarded), (0, 1));
    assert!(report.noise.fields.is_empty());
}

#[test]
fn a_noise_threshold_above_one_needs_that_many_pairs() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::with_noise(RecordLimits::default(), NoiseModel::new(2, 16));
    let h = json();
    let (a, b) = (resp(&h, r#"{"t": 1}"#), resp(&h, r#"{"t": 2}"#));
    assert_eq!(
        record.learn_noise(&c, &a, &b),
        Learned::Differences { new: 0 }
    );
    let req_h = HeaderMap::new();
    assert!(!record.compare(&c, &request(&req_h), &a, &b).matched());
    assert_eq!(
        record.learn_noise(&c, &a, &b),
        Learned::Differences { new: 1 }
    );
    assert!(record.compare(&c, &request(&req_h), &a, &b).matched());
}

#[test]
fn samples_redact_credentials_and_configured_fields() {
    let c = compile(|c| {
        c.redact = vec!["$.card.number".into(), "$.users[*].ssn".into()];
        c.headers = vec!["set-cookie".into()];
    });
    let record = ShadowRecord::default();
    let req_h = headers(&[
        ("authorization", "Bearer req-secret"),
        ("cookie", "sid=req-secret"),
        ("proxy-authorization", "Basic req-secret"),
        ("accept", "application/json"),
    ]);
    let a_h = headers(&[
        ("content-type", "application/json"),
        ("set-cookie", "sid=resp-secret-1"),
    ]);
    let b_h = headers(&[
        ("content-type", "application/json"),
        ("set-cookie", "sid=resp-secret-2"),
    ]);
    let primary = r#"{"card": {"number": "4111-card-secret", "exp": "12/30"},
        "users": [{"name": "ann", "ssn": "ssn-secret-1"}], "gone": {"card": {"number": "x"}}}"#;
    let shadow = r#"{"card": {"number": "4242-card-secret", "exp": "12/31"},
        "users": [{"name": "bob", "ssn": "ssn-secret-2"}], "extra": {"ssn": "not-redacted"}}"#;
    let shadow_no_card = r#"{"users": [{"name": "ann", "ssn": "ssn-secret-3"}]}"#;
    record.compare(
        &c,
        &request(&req_h),
        &resp(&a_h, primary),
        &resp(&b_h, shadow),
    );
    // The card missing as a whole: its rendered value must still hide the number.
    record.compare(
        &c,
        &request(&req_h),
        &resp(&a_h, primary),
        &resp(&b_h, shadow_no_card),
    );
    let report = record.report();
    let text = serde_json::to_string(&report).unwrap();
    for secret in [
        "req-secret",
        "resp-secret",
        "card-secret",
        "ssn-secret",
        "secret-query",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // What is not secret is still there to debug with.
    assert!(text.contains("12/31"), "{text}");
    assert!(text.contains("not-redacted"), "{text}");
    assert!(text.contains("application/json"), "{text}");
    let sample = &report.samples[1];
    assert_eq!(sample.path, "/orders/1");
    assert!(sample
        .request_headers
        .contains(&("authorization".into(), REDACTED.into())));
    let number = sample
        .differences
        .iter()
        .find(|d| d.path == "$.card.number")
        .unwrap();
    assert_eq!(number.primary.as_deref(), Some(REDACTED));
    let missing_card = report.samples[0]
        .differences
        .iter()
        .find(|d| d.path == "$.card")
        .unwrap();
    assert_eq!(
        missing_card.primary.as_deref(),
        Some(r#"{"exp":"12/30","number":"[redacted]"}"#)
    );
}

#[test]
fn records_are_bounded() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::new(RecordLimits {
        max_fields: 3,
        max_samples: 2,
        max_sample_headers: 1,
    });
    let h = headers(&[("content-type", "application/json"), ("x-a", "1")]);
    let req_h = headers(&[("x-1", "1"), ("x-2", "2")]);
    for i in 0..10 {
        record.compare(
            &c,
            &request(&req_h),
            &resp(&h, "{}"),
            &resp(&h, &format!(r#"{{"f{i}": {i}}}"#)),
        );
    }
    let report = record.report();
    assert_eq!(report.mismatched, 10);
    assert_eq!(report.fields.len(), 3);
    assert_eq!(report.fields_overflow, 7);
    assert_eq!(report.samples.len(), 2);
    // Newest first.
    assert_eq!(report.samples[0].differences[0].path, "$.f9");
    assert_eq!(report.samples[1].differences[0].path, "$.f8");
    assert_eq!(report.samples[0].request_headers.len(), 1);
    assert_eq!(report.samples[0].primary.headers.len(), 1);
}

#[test]
fn counters_rates_and_json_round_trip() {
    let c = ShadowComparison::default();
    let record = ShadowRecord::default();
    assert_eq!(record.report().match_rate, None);
    let h = json();
    let req_h = HeaderMap::new();
    for body in [r#"{"a":1}"#, r#"{"a":1}"#, r#"{"a":1}"#, r#"{"a":2}"#] {
        record.compare(
            &c,
            &request(&req_h),
            &resp(&h, r#"{"a":1}"#),
            &resp(&h, body),
        );
    }
    record.shadow_error();
    record.shadow_timeout();
    record.shadow_timeout();
    record.dropped();
    let report = record.report();
    assert_eq!(report.match_rate, Some(0.75));
    assert_eq!(
        (report.shadow_errors, report.shadow_timeouts, report.dropped),
        (1, 2, 1)
    );
    assert_eq!(report.fields[0].field, "$.a");
    let text = serde_json::to_string(&report).unwrap();
    let back: ShadowReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    assert!(text.contains(r#""kind":"value_changed""#), "{text}");
}

#[test]
fn a_record_is_shared_between_threads() {
    let c = Arc::new(ShadowComparison::default());
    let record = Arc::new(ShadowRecord::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (c, record) = (c.clone(), record.clone());
            std::thread::spawn(move || {
                let h = json();
                let req_h = HeaderMap::new();
                for i in 0..250 {
                    let shadow = if i % 5 == 0 {
                        r#"{"a":2}"#
                    } else {
                        r#"{"a":1}"#
                    };
                    record.compare(
                        &c,
                        &request(&req_h),
                        &resp(&h, r#"{"a":1}"#),
                        &resp(&h, shadow),
                    );
                    if t == 0 && i == 100 {
                        record.learn_noise(&c, &resp(&h, "[1]"), &resp(&h, "[1]"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = record.report();
    assert_eq!(
        (report.compared, report.matched, report.mismatched),
        (1000, 800, 200)
    );
}

#[test]
fn the_sensitive_header_list_names_the_credential_headers() {
    for h in [AUTHORIZATION, COOKIE, SET_COOKIE] {
        assert!(SENSITIVE_HEADERS.contains(&h));
    }
    assert!(!SENSITIVE_HEADERS.contains(&CONTENT_TYPE));
}

#[test]
fn the_noise_table_is_bounded() {
    let c = ShadowComparison::default();
    let mut noise = NoiseModel::new(1, 2);
    let pair = cmp_json(
        &c,
        r#"{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}"#,
        r#"{"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}"#,
    );
    assert_eq!(noise.learn(&pair), Learned::Differences { new: 2 });
    let report = noise.report();
    assert_eq!(report.fields.len(), 2);
    assert_eq!(report.fields_overflow, 3);
    // A field that did not fit is not noise.
    assert!(noise.is_noise("$.a"));
    assert!(!noise.is_noise("$.e"));
}
