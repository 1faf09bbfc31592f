//! Comparing one primary and one shadow answer: JSON structure, ignores, tolerance,
//! bodies that are not JSON, bounds, status and headers.

use super::*;

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
