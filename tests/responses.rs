//! One way out: every answer the gateway writes itself passes the same response step as a
//! proxied one. On a routed request it carries the route's `response_headers`; every one
//! carries the request id.

mod common;
use common::*;

/// A route with response edits in front of `o`, another in front of a dead instance, one
/// with no instance at all, and a policy that refuses everyone.
fn config(o: &Origin) -> String {
    let dead = free_addr();
    format!(
        r#"
[gateway]
listen = ["{{listen}}"]
admin = "{{admin}}"
threads = 2

[access.nobody]
allow = ["192.0.2.1"]

[services.o]
instances = ["{o}"]

[services.dead]
instances = ["{dead}"]

[services.empty]
instances = []

[[routes]]
name = "edited"
match = {{ path = "/edited/**" }}
service = "o"
response_headers = {{ set = {{ "x-route" = "edited" }} }}

[[routes]]
name = "refused"
match = {{ path = "/refused/**" }}
service = "o"
access = "nobody"
response_headers = {{ set = {{ "x-route" = "refused" }} }}

[[routes]]
name = "dead"
match = {{ path = "/dead/**" }}
service = "dead"
response_headers = {{ set = {{ "x-route" = "dead" }} }}

[[routes]]
name = "empty"
match = {{ path = "/empty/**" }}
service = "empty"
response_headers = {{ set = {{ "x-route" = "empty" }} }}
"#,
        o = o.addr()
    )
}

#[test]
fn every_gateway_answer_on_a_route_carries_its_response_edits_and_the_request_id() {
    let o = Origin::start("o");
    let gw = Gateway::start(&config(&o));
    let send = |line: &str| {
        raw_request(
            gw.listen,
            format!(
                "{line}\r\nHost: shop.example\r\nX-Request-Id: rid-7\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let cases = [
        ("GET /edited/x HTTP/1.1", 200, Some("edited")),
        ("GET /refused/x HTTP/1.1", 403, Some("refused")),
        ("TRACE /edited/x HTTP/1.1", 405, Some("edited")),
        ("GET /edited/a;b HTTP/1.1", 400, Some("edited")),
        ("GET /dead/x HTTP/1.1", 502, Some("dead")),
        ("GET /empty/x HTTP/1.1", 503, Some("empty")),
        // No route: nothing of any route's, but the request id.
        ("GET /nowhere HTTP/1.1", 404, None),
        ("OPTIONS * HTTP/1.1", 200, None),
    ];
    for (line, status, route) in cases {
        let r = send(line);
        assert_eq!(r.status, status, "{line}: {}", r.text());
        assert_eq!(r.header("x-request-id"), Some("rid-7"), "{line}");
        assert_eq!(r.header("x-route"), route, "{line}");
        if status >= 400 {
            assert_eq!(r.json()["request_id"], "rid-7", "{line}");
        }
    }
}
