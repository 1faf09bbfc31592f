mod common;
use common::*;

fn setup(trusted: Option<&str>) -> (Gateway, Origin) {
    let o = Origin::start("o");
    let gw = catch_all_gateway(&o, |c| {
        c.gateway(|g| {
            if let Some(t) = trusted {
                g.set("trusted_proxies", format!("[{}]", toml_str(t)));
            }
        })
    });
    (gw, o)
}

fn spoofed(gw: &Gateway) -> RawResponse {
    get_raw(
        gw.listen,
        "/x",
        "api.example.com",
        &[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
}

#[test]
fn forwarded_headers_from_untrusted_peer_are_replaced() {
    let (gw, _o) = setup(None);
    let r = spoofed(&gw);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.origin_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.origin_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.origin_header("x-forwarded-host").as_deref(),
        Some("api.example.com")
    );
}

#[test]
fn forwarded_headers_from_untrusted_peer_other_cidr() {
    // a trusted_proxies list that does not include the client
    let (gw, _o) = setup(Some("10.0.0.0/8"));
    let r = spoofed(&gw);
    assert_eq!(
        r.origin_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.origin_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.origin_header("x-forwarded-host").as_deref(),
        Some("api.example.com")
    );
}

#[test]
fn forwarded_headers_from_trusted_peer_are_kept_and_appended() {
    let (gw, _o) = setup(Some("127.0.0.1/32"));
    let r = spoofed(&gw);
    assert_eq!(r.status, 200);
    let xff = r.origin_header("x-forwarded-for").unwrap_or_default();
    let parts: Vec<_> = xff.split(',').map(str::trim).collect();
    assert_eq!(parts, vec!["1.2.3.4", "127.0.0.1"], "XFF was {xff:?}");
    assert_eq!(
        r.origin_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.origin_header("x-forwarded-host").as_deref(),
        Some("evil.example")
    );

    // trusted peer without incoming headers: gateway fills them in
    let r = get_raw(gw.listen, "/x", "api.example.com", &[]);
    assert_eq!(
        r.origin_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.origin_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.origin_header("x-forwarded-host").as_deref(),
        Some("api.example.com")
    );
}

fn is_sane_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[test]
fn request_id_propagated_or_generated() {
    let (gw, _o) = setup(None);
    let r = get_raw(gw.listen, "/x", "t", &[("X-Request-Id", "abc-123")]);
    assert_eq!(r.origin_header("x-request-id").as_deref(), Some("abc-123"));
    assert_eq!(r.header("x-request-id"), Some("abc-123"));

    let r1 = get_raw(gw.listen, "/x", "t", &[]);
    let r2 = get_raw(gw.listen, "/x", "t", &[]);
    let id1 = r1
        .origin_header("x-request-id")
        .expect("generated id sent upstream");
    let id2 = r2
        .origin_header("x-request-id")
        .expect("generated id sent upstream");
    assert!(is_sane_id(&id1), "{id1:?}");
    assert_ne!(id1, id2, "generated ids must be unique");
    assert_eq!(
        r1.header("x-request-id"),
        Some(id1.as_str()),
        "response carries the same id"
    );

    // boundary: 128 visible characters is still sane
    let max = "b".repeat(128);
    let r = get_raw(gw.listen, "/x", "t", &[("X-Request-Id", &max)]);
    assert_eq!(
        r.origin_header("x-request-id").as_deref(),
        Some(max.as_str())
    );

    // insane values are replaced
    let long = "a".repeat(200);
    let r = get_raw(gw.listen, "/x", "t", &[("X-Request-Id", &long)]);
    let id = r.origin_header("x-request-id").unwrap();
    assert_ne!(id, long);
    assert!(is_sane_id(&id), "{id:?}");
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    let r = get_raw(gw.listen, "/x", "t", &[("X-Request-Id", "has space")]);
    let id = r.origin_header("x-request-id").unwrap();
    assert_ne!(id, "has space");
    assert!(is_sane_id(&id), "{id:?}");
}

/// A catch-all gateway with `trace_context = "<mode>"`.
fn trace_setup(mode: &str) -> (Gateway, Origin) {
    let o = Origin::start("o");
    let gw = catch_all_gateway(&o, |c| {
        c.gateway(|g| {
            g.set_str("trace_context", mode);
        })
    });
    (gw, o)
}

/// `continue`: a valid client trace is continued, nothing is started, an invalid one is
/// dropped. `off`: the client's header goes through byte for byte, and none is added.
#[test]
fn trace_context_continue_and_off() {
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (gw, o) = trace_setup("continue");
    let r = get_raw(gw.listen, "/x", "t", &[("traceparent", valid)]);
    let tp = r.origin_header("traceparent").expect("continued");
    let (trace, parent, _) = parse_traceparent(&tp).unwrap();
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parent, "00f067aa0ba902b7");
    get_raw(gw.listen, "/x", "t", &[]);
    assert_eq!(
        o.last().unwrap().header("traceparent"),
        None,
        "none started"
    );
    get_raw(gw.listen, "/x", "t", &[("traceparent", "garbage")]);
    assert_eq!(
        o.last().unwrap().header("traceparent"),
        None,
        "invalid dropped"
    );
    drop(gw);

    let (gw, o) = trace_setup("off");
    for incoming in [valid, "garbage"] {
        get_raw(gw.listen, "/x", "t", &[("traceparent", incoming)]);
        assert_eq!(o.last().unwrap().header("traceparent"), Some(incoming));
    }
    get_raw(gw.listen, "/x", "t", &[]);
    assert_eq!(o.last().unwrap().header("traceparent"), None);
}

fn parse_traceparent(tp: &str) -> Option<(String, String, String)> {
    let p: Vec<_> = tp.split('-').collect();
    if p.len() != 4 || p[0] != "00" {
        return None;
    }
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(p[1], 32) || !hex(p[2], 16) || !hex(p[3], 2) {
        return None;
    }
    if p[1].bytes().all(|b| b == b'0') || p[2].bytes().all(|b| b == b'0') {
        return None;
    }
    Some((p[1].to_string(), p[2].to_string(), p[3].to_string()))
}

#[test]
fn traceparent_continues_trace_with_new_parent() {
    let (gw, _o) = setup(None);
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_raw(gw.listen, "/x", "t", &[("traceparent", incoming)]);
    let tp = r
        .origin_header("traceparent")
        .expect("traceparent upstream");
    let (trace, parent, _) =
        parse_traceparent(&tp).unwrap_or_else(|| panic!("invalid traceparent {tp:?}"));
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "parent-id must be the gateway's own span"
    );
}

#[test]
fn traceparent_generated_when_absent_or_invalid() {
    let (gw, _o) = setup(None);
    let mut traces = Vec::new();
    for incoming in [
        None,
        Some("garbage"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
    ] {
        let headers: Vec<(&str, &str)> = incoming
            .map(|v| vec![("traceparent", v)])
            .unwrap_or_default();
        let r = get_raw(gw.listen, "/x", "t", &headers);
        let tp = r
            .origin_header("traceparent")
            .unwrap_or_else(|| panic!("no traceparent upstream for incoming {incoming:?}"));
        let (trace, _, _) = parse_traceparent(&tp)
            .unwrap_or_else(|| panic!("invalid traceparent {tp:?} for incoming {incoming:?}"));
        assert!(
            !trace.eq_ignore_ascii_case("4bf92f3577b34da6a3ce929d0e0e4736"),
            "invalid incoming {incoming:?} must not be continued"
        );
        traces.push(trace);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 5, "fresh trace ids must differ");
}

#[test]
fn hop_by_hop_headers_removed() {
    let (gw, o) = setup(None);
    let req = "GET /x HTTP/1.1\r\nHost: t\r\n\
               Connection: keep-alive, X-Secret-Hop\r\n\
               X-Secret-Hop: 1\r\n\
               Keep-Alive: timeout=5\r\n\
               Proxy-Connection: keep-alive\r\n\
               TE: trailers\r\n\
               Trailer: X-Foo\r\n\
               Upgrade: h2c-ish\r\n\
               X-Normal: yes\r\n\r\n";
    let r = raw_request(gw.listen, req.as_bytes());
    assert_eq!(r.status, 200);
    let seen = o.last().unwrap();
    let mut leaked = Vec::new();
    for h in [
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        if let Some(v) = seen.header(h) {
            leaked.push(format!("{h}: {v}"));
        }
    }
    if let Some(c) = seen.header("connection") {
        if c.to_ascii_lowercase().contains("x-secret-hop") {
            leaked.push(format!("connection: {c}"));
        }
    }
    assert!(
        leaked.is_empty(),
        "hop-by-hop headers forwarded: {leaked:?}"
    );
    assert_eq!(seen.header("x-normal"), Some("yes"));
}

/// The rest of the hop-by-hop set, an h2c upgrade (forwarded as a plain request), a
/// nomination a client must not be able to use to make the gateway drop a header (400),
/// and `Content-Length` next to chunked framing (the upstream gets the chunked framing
/// alone).
#[test]
fn hop_by_hop_edge_cases() {
    let (gw, o) = setup(None);
    let req = "GET /y HTTP/1.1\r\nHost: t\r\n\
               Connection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\n\
               HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\
               Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
               Proxy-Authenticate: Basic\r\n\r\n";
    let r = raw_request(gw.listen, req.as_bytes());
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let seen = o.last().unwrap();
    for h in [
        "connection",
        "upgrade",
        "http2-settings",
        "proxy-authorization",
        "proxy-authenticate",
    ] {
        assert_eq!(seen.header(h), None, "{h} was forwarded");
    }

    for nominated in ["X-Forwarded-For", "host", "\"x-forwarded-proto\"", ":path"] {
        let req = format!("GET /z HTTP/1.1\r\nHost: t\r\nConnection: close, {nominated}\r\n\r\n");
        let r = raw_request(gw.listen, req.as_bytes());
        assert_eq!(r.status, 400, "Connection: close, {nominated}");
    }
    assert_eq!(
        o.received().len(),
        1,
        "a refused nomination reached the upstream"
    );

    let r = raw_request(
        gw.listen,
        b"POST /te HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    // The smuggling pair is refused (tests/malformed.rs has the cases).
    assert_eq!(r.status, 400);
}

fn case_setup(preserve: Option<bool>) -> (Gateway, Origin) {
    let o = Origin::builder("o")
        .fallback(Handler::echo().header("X-Upstream-Mixed", "1"))
        .start();
    let gw = catch_all_gateway(&o, |c| {
        c.gateway(|g| {
            if let Some(p) = preserve {
                g.set("preserve_header_case", p);
            }
        })
        .edit_route("all", |r| {
            r.set("request_headers", r#"{ set = { "X-Route-Set" = "r" } }"#)
                .set("response_headers", r#"{ set = { "X-Resp-Set" = "s" } }"#);
        })
    });
    (gw, o)
}

const MIXED_CASE_REQUEST: &str = "GET /case HTTP/1.1\r\nHost: t\r\nX-Legacy-Token: abc\r\nx-lower: 1\r\nConnection: close\r\n\r\n";

/// By default (and with `preserve_header_case = true`) names keep the spelling they came
/// with, both ways: legacy backends that compare header names case-sensitively keep working.
#[test]
fn header_names_keep_their_spelling_by_default() {
    for preserve in [None, Some(true)] {
        let (gw, o) = case_setup(preserve);
        let r = raw_request(gw.listen, MIXED_CASE_REQUEST.as_bytes());
        assert_eq!(r.status, 200);
        let seen = o.last().expect("request reached the origin");
        let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "X-Legacy-Token",
            "x-lower",
            "X-Forwarded-For",
            "X-Request-Id",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let resp_names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            resp_names.contains(&"X-Upstream-Mixed"),
            "response names: {resp_names:?}"
        );
        assert_eq!(r.header("x-resp-set"), Some("s"));
        assert_eq!(seen.header("x-route-set"), Some("r"));
    }
}

/// With `preserve_header_case = false` names go out in canonical form (standard names
/// Title-Case, others lowercase); values and every gateway header are unchanged.
#[test]
fn canonical_header_case_when_not_preserved() {
    let (gw, o) = case_setup(Some(false));
    let r = raw_request(gw.listen, MIXED_CASE_REQUEST.as_bytes());
    assert_eq!(r.status, 200);
    let seen = o.last().expect("request reached the origin");
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "x-legacy-token",
        "x-lower",
        "Host",
        "x-forwarded-for",
        "x-request-id",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(seen.header("x-legacy-token"), Some("abc"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-route-set"), Some("r"));
    assert!(seen.header("traceparent").is_some());
    assert_eq!(seen.header("x-request-id"), r.header("x-request-id"));
    let resp_names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        resp_names.contains(&"x-upstream-mixed"),
        "response names: {resp_names:?}"
    );
    assert_eq!(r.header("x-resp-set"), Some("s"));
}

/// Forwarding headers other than X-Forwarded-For/-Proto/-Host that backends trust (client
/// address, scheme, original path) are dropped from untrusted peers and kept from trusted
/// proxies.
#[test]
fn other_forwarding_headers_only_from_trusted_proxies() {
    let spoof = [
        ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Real-IP", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Prefix", "/evil"),
        ("X-Original-URL", "/admin/x"),
        ("X-Rewrite-URL", "/admin/x"),
        ("X-Custom", "kept"),
    ];
    let (gw, o) = setup(None);
    assert_eq!(get_raw(gw.listen, "/x", "t", &spoof).status, 200);
    let seen = o.last().unwrap();
    for (name, _) in &spoof[..7] {
        assert_eq!(seen.header(name), None, "{name} from an untrusted client");
    }
    assert_eq!(seen.header("x-custom"), Some("kept"));

    let (gw, o) = setup(Some("127.0.0.1/32"));
    assert_eq!(get_raw(gw.listen, "/x", "t", &spoof).status, 200);
    let seen = o.last().unwrap();
    for (name, value) in &spoof {
        assert_eq!(
            seen.header(name),
            Some(*value),
            "{name} from a trusted proxy"
        );
    }
}

/// X-Forwarded-Host keeps an IPv6 literal's brackets, and is absent for an empty Host.
#[test]
fn forwarded_host_edge_cases() {
    let (gw, o) = setup(None);
    assert_eq!(get_raw(gw.listen, "/x", "[::1]:8080", &[]).status, 200);
    assert_eq!(o.last().unwrap().header("x-forwarded-host"), Some("[::1]"));
    let r = raw_request(
        gw.listen,
        b"GET /x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(o.last().unwrap().header("x-forwarded-host"), None);
}

/// An HTTP/1.0 request without Host reaches the upstream (spoken to in HTTP/1.1) with one:
/// the absolute-form target's authority, else the instance's address.
#[test]
fn http10_without_host_gets_one_upstream() {
    let (gw, o) = setup(None);
    let r = raw_request(gw.listen, b"GET /plain HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        o.last().unwrap().header("host"),
        Some(o.addr().to_string().as_str())
    );
    let r = raw_request(
        gw.listen,
        b"GET http://shop.example:81/abs HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = o.last().unwrap();
    assert_eq!(seen.path, "/abs");
    assert_eq!(seen.header("host"), Some("shop.example:81"));
}

/// Underscore spellings of the gateway's headers (`X_Forwarded_For`, `X_Real_IP`,
/// `X_Original_URL`...), which CGI-style backends read as the dashed ones, never reach the
/// upstream, from any peer.
#[test]
fn underscore_spellings_of_forwarding_headers_are_removed() {
    let spoof = [
        ("X_Forwarded_For", "6.6.6.6"),
        ("X_Real_IP", "6.6.6.6"),
        ("True_Client_IP", "6.6.6.6"),
        ("X_Original_URL", "/admin/x"),
        ("X_Request_Id", "spoofed"),
        ("X_Custom", "kept"),
    ];
    for trusted in [None, Some("127.0.0.1/32")] {
        let (gw, o) = setup(trusted);
        assert_eq!(get_raw(gw.listen, "/x", "t", &spoof).status, 200);
        let seen = o.last().unwrap();
        for (name, _) in &spoof[..5] {
            assert_eq!(seen.header(name), None, "{name} (trusted: {trusted:?})");
        }
        assert_eq!(seen.header("x_custom"), Some("kept"));
    }
}
