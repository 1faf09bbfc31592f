//! The comparison rules, noise learning and records, end to end through the public API.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::*;

mod compare;
mod records;

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
