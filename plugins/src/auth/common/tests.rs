//! The unit tests of what every auth policy kind shares: bearer tokens found (and
//! refused) in a header, a cookie or the query, the token removed from where it came,
//! and the identity sent upstream as headers.

use super::*;
use crate::RequestState;
use http::Method;

fn find(
    source: TokenSource,
    headers: &[(&str, &str)],
    query: Option<&str>,
) -> Result<Option<String>, Refusal> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut state = RequestState::new();
    let mut edits = HeaderEdits::default();
    let req = RequestView {
        method: &Method::GET,
        path: "/",
        query,
        headers: &map,
        client_ip: None,
        route: "r",
        request_id: "id",
        preflight: false,
        state: &mut state,
        upstream: &mut edits,
    };
    let s = CommonSettings {
        token: source,
        max_token_size: 16,
        ..CommonSettings::default()
    };
    s.find_token(&req).map(|t| t.map(|t| t.into_owned()))
}

#[test]
fn bearer_tokens() {
    let b = TokenSource::Bearer;
    assert_eq!(
        find(b.clone(), &[("authorization", "Bearer abc")], None),
        Ok(Some("abc".into()))
    );
    assert_eq!(
        find(b.clone(), &[("authorization", "bearer   abc")], None),
        Ok(Some("abc".into()))
    );
    assert_eq!(
        find(b.clone(), &[("authorization", "Basic abc")], None),
        Ok(None)
    );
    assert_eq!(find(b.clone(), &[], None), Ok(None));
    assert_eq!(
        find(b.clone(), &[("authorization", "Bearer ")], None),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        find(b.clone(), &[("authorization", "Bearer a b")], None),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        find(
            b.clone(),
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
            None
        ),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        find(
            b.clone(),
            &[("authorization", "Bearer 0123456789abcdefX")],
            None
        ),
        Err(Refusal::TooLarge)
    );
    for bad in ["Bearer a,b", "Bearer a\tb", "Bearer é"] {
        let h = HeaderValue::from_bytes(bad.as_bytes()).expect("a valid header value");
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, h);
        assert_eq!(bearer(&headers), Err(Refusal::Malformed), "{bad:?}");
    }
    assert!(token_bytes(b"eyJ0eXAi.eyJzdWIi.c2ln-_~+/="));
    assert!(!token_bytes(b"a b") && !token_bytes(b"a,b") && !token_bytes(b"\x80"));
}

#[test]
fn cookies_headers_and_query() {
    let c = TokenSource::Cookie("at".into());
    assert_eq!(
        find(c.clone(), &[("cookie", "x=1; at=tok; y=2")], None),
        Ok(Some("tok".into()))
    );
    assert_eq!(
        find(c.clone(), &[("cookie", "at=a"), ("cookie", "at=b")], None),
        Err(Refusal::Malformed)
    );
    assert_eq!(find(c, &[("cookie", "cat=a")], None), Ok(None));
    let h = TokenSource::Header(HeaderName::from_static("x-token"));
    assert_eq!(find(h, &[("x-token", " t ")], None), Ok(Some("t".into())));
    let q = TokenSource::Query("access_token".into());
    assert_eq!(
        find(q.clone(), &[], Some("a=1&access_token=t%2Bx")),
        Ok(Some("t+x".into()))
    );
    assert_eq!(
        find(q.clone(), &[], Some("access_token=a&access_token=b")),
        Err(Refusal::Malformed)
    );
    assert_eq!(find(q.clone(), &[], Some("xaccess_token=a")), Ok(None));
    assert_eq!(find(q, &[("authorization", "Bearer abc")], None), Ok(None));
}

#[test]
fn the_token_is_removed_from_where_it_came() {
    let mut h = HeaderMap::new();
    h.append(
        http::header::COOKIE,
        HeaderValue::from_static("a=1; at=secret"),
    );
    h.append(http::header::COOKIE, HeaderValue::from_static("b=2"));
    let s = CommonSettings {
        token: TokenSource::Cookie("at".into()),
        ..CommonSettings::default()
    };
    let mut edits = HeaderEdits::default();
    s.remove_token(&h, &mut edits);
    assert_eq!(
        edits.ops(),
        [crate::HeaderOp::Set(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; b=2")
        )]
    );
    let only = {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_static("at=secret"));
        h
    };
    let mut edits = HeaderEdits::default();
    s.remove_token(&only, &mut edits);
    assert_eq!(edits.ops(), [crate::HeaderOp::Remove(http::header::COOKIE)]);
    let s = CommonSettings {
        token: TokenSource::Header(HeaderName::from_static("x-token")),
        ..CommonSettings::default()
    };
    let mut edits = HeaderEdits::default();
    s.remove_token(&h, &mut edits);
    assert_eq!(
        edits.ops(),
        [crate::HeaderOp::Remove(HeaderName::from_static("x-token"))]
    );
}

#[test]
fn identity_goes_upstream_as_headers() {
    let s = CommonSettings {
        claims_to_headers: vec![
            ("sub".into(), HeaderName::from_static("x-user-id")),
            (
                "realm_access.roles".into(),
                HeaderName::from_static("x-roles"),
            ),
            ("missing".into(), HeaderName::from_static("x-missing")),
            ("evil".into(), HeaderName::from_static("x-evil")),
        ],
        forward_authorization: false,
        forward_claims: Some(HeaderName::from_static("x-claims")),
        ..CommonSettings::default()
    };
    let id = super::super::identity_from_claims(
        "corp",
        serde_json::json!({"sub": "u1", "realm_access": {"roles": ["a", "b"]}, "evil": "x\r\ny"}),
    );
    let mut edits = HeaderEdits::default();
    s.forward_identity(&id, &HeaderMap::new(), &mut edits);
    let ops = edits.ops();
    assert!(ops.contains(&crate::HeaderOp::Set(
        HeaderName::from_static("x-user-id"),
        HeaderValue::from_static("u1")
    )));
    assert!(ops.contains(&crate::HeaderOp::Set(
        HeaderName::from_static("x-roles"),
        HeaderValue::from_static("[\"a\",\"b\"]")
    )));
    assert!(ops.contains(&crate::HeaderOp::Remove(http::header::AUTHORIZATION)));
    assert!(!ops
        .iter()
        .any(|o| matches!(o, crate::HeaderOp::Set(n, _) if n == "x-missing" || n == "x-evil")));
    assert!(ops
        .iter()
        .any(|o| matches!(o, crate::HeaderOp::Set(n, _) if n == "x-claims")));
}
