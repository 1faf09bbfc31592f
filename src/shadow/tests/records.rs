//! Learned noise, per-route records, redacted samples.

use super::*;

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
