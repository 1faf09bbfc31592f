//! Shadow comparison cost for a typical ~2 KB JSON answer (criterion): a pair that
//! matches (members in another order) and a pair with one differing field, with the
//! kind of `compare` config a route would have (two ignores, a tolerance, a header).

use criterion::{criterion_group, criterion_main, Criterion};
use ficus::shadow::{CompareConfig, Response};
use http::HeaderMap;
use std::hint::black_box;

/// An order with sixteen lines: about 2 KB of JSON. `price_of_line_7` is the one value
/// the "differing" pair changes; `reversed` writes every object's members backwards.
fn order(price_of_line_7: f64, reversed: bool) -> String {
    let line = |i: usize| {
        let price = if i == 7 {
            price_of_line_7
        } else {
            9.99 + i as f64
        };
        let mut fields = [
            format!(r#""sku":"SKU-{i:05}""#),
            format!(r#""name":"Item number {i}""#),
            format!(r#""qty":{}"#, i % 4 + 1),
            format!(r#""price":{price}"#),
            format!(r#""etag":"W/\"{i:08x}\"""#),
            format!(r#""tags":["a{i}","b{i}"]"#),
        ];
        if reversed {
            fields.reverse();
        }
        format!("{{{}}}", fields.join(","))
    };
    let lines: Vec<String> = (0..16).map(line).collect();
    let mut top = [
        r#""id":"ord-7f3a""#.to_owned(),
        r#""customer":{"id":42,"name":"Ann Example","tier":"gold"}"#.to_owned(),
        format!(r#""lines":[{}]"#, lines.join(",")),
        r#""total":1234.56"#.to_owned(),
        r#""currency":"EUR""#.to_owned(),
        r#""timestamp":"2026-12-05T10:00:00Z""#.to_owned(),
    ];
    if reversed {
        top.reverse();
    }
    format!("{{{}}}", top.join(","))
}

fn compare(c: &mut Criterion) {
    let cmp = CompareConfig {
        ignore: vec!["$.timestamp".into(), "$.lines[*].etag".into()],
        tolerance: 0.001,
        headers: vec!["content-type".into()],
        ..Default::default()
    }
    .compile()
    .expect("bench config is valid");
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let primary = order(16.99, false);
    let same = order(16.99, true);
    let differs = order(17.99, true);
    assert!((1800..2600).contains(&primary.len()), "{}", primary.len());
    fn resp<'a>(headers: &'a HeaderMap, body: &'a str) -> Response<'a> {
        Response {
            status: 200,
            headers,
            body: body.as_bytes(),
        }
    }
    let (p, s, d) = (
        resp(&headers, &primary),
        resp(&headers, &same),
        resp(&headers, &differs),
    );
    assert!(cmp.compare(&p, &s).matched());
    assert_eq!(cmp.compare(&p, &d).differences.len(), 1);

    let mut group = c.benchmark_group("shadow_compare_2kb");
    group.bench_function("matching", |b| {
        b.iter(|| cmp.compare(black_box(&p), black_box(&s)))
    });
    group.bench_function("one_field_differs", |b| {
        b.iter(|| cmp.compare(black_box(&p), black_box(&d)))
    });
    group.bench_function("parse_only_baseline", |b| {
        b.iter(|| {
            let a: serde_json::Value = serde_json::from_slice(black_box(p.body)).ok()?;
            let b: serde_json::Value = serde_json::from_slice(black_box(s.body)).ok()?;
            Some((a, b))
        })
    });
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
