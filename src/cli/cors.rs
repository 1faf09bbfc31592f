//! What `ficus explain` says about CORS: the route's policy, and for a request with an
//! `Origin` what the gateway answers. The decisions are the policy's own
//! ([`CorsSettings::check_origin`], [`CorsSettings::check_preflight`]), so the explanation
//! cannot disagree with the gateway.

use ficus_plugins::cors::{Cors, CorsSettings, OriginCheck};
use ficus_plugins::PolicyKind;
use http::HeaderMap;
use std::fmt::Write;

use crate::router::Route;

/// Appends the CORS lines for a request that matched `route`.
pub fn describe(out: &mut String, route: &Route, request: &HeaderMap, preflight: bool) {
    let policy = route
        .chain
        .policies
        .iter()
        .find(|p| p.kind == Cors::SECTION);
    let Some((name, s)) = policy.and_then(|p| Some((&p.name, p.settings::<CorsSettings>()?)))
    else {
        if preflight {
            let _ = writeln!(
                out,
                "cors: none on this route: the preflight is proxied to the upstream like any request"
            );
        }
        return;
    };
    let _ = writeln!(out, "cors: policy \"{name}\": {}", summary(s));
    if preflight {
        let line = match s.check_preflight(request) {
            Ok(grant) => format!(
                "preflight: answered by the gateway with 204 (Access-Control-Allow-Origin: {}); not forwarded, not authenticated",
                grant
                    .origin
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("*")
            ),
            Err(why) => format!(
                "preflight: refused by the gateway with 403 and no CORS headers ({})",
                why.message()
            ),
        };
        let _ = writeln!(out, "  {line}");
        return;
    }
    let line = match s.check_origin(request) {
        OriginCheck::Any => "any origin: Access-Control-Allow-Origin: *".to_string(),
        OriginCheck::Allowed(v) => format!(
            "origin {} is allowed: Access-Control-Allow-Origin echoes it{}, with Vary: Origin",
            v.to_str().unwrap_or("?"),
            if s.credentials {
                ", Access-Control-Allow-Credentials: true"
            } else {
                ""
            }
        ),
        OriginCheck::Refused => {
            "the Origin is not allowed: no CORS headers (the browser hides the answer), Vary: Origin"
                .to_string()
        }
        OriginCheck::Absent => {
            "no Origin (not a cross-origin browser request): no CORS headers, Vary: Origin"
                .to_string()
        }
    };
    let _ = writeln!(out, "  {line}");
}

/// The policy in one line.
fn summary(s: &CorsSettings) -> String {
    let mut parts = vec![format!("origins {}", s.origins)];
    let methods: Vec<&str> = s.methods.iter().map(|m| m.as_str()).collect();
    parts.push(if methods.is_empty() {
        "methods GET, HEAD, POST".to_string()
    } else {
        format!("methods {} (GET, HEAD, POST always)", methods.join(", "))
    });
    if !s.headers.is_empty() {
        let h: Vec<&str> = s.headers.iter().map(|h| h.as_str()).collect();
        parts.push(format!("headers {}", h.join(", ")));
    }
    if !s.expose_headers.is_empty() {
        parts.push(format!("exposes {}", s.expose_headers.join(", ")));
    }
    parts.push(if s.credentials {
        "credentials allowed".to_string()
    } else {
        "no credentials".to_string()
    });
    if let Some(age) = s.max_age {
        parts.push(format!("max_age {}s", age.as_secs()));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    const CFG: &str = r#"
[gateway]
cors = "shop"

[cors.shop]
origins = ["https://shop.example.com", "https://*.example.com"]
methods = ["PUT"]
headers = ["X-Custom"]
expose_headers = ["X-Request-Id"]
credentials = true
max_age = "600s"

[services.o]
instances = ["127.0.0.1:9"]

[[routes]]
name = "orders"
match = { path = "/orders/**" }
service = "o"

[[routes]]
name = "open"
match = { path = "/**" }
service = "o"
cors = false
"#;

    fn explain(method: &str, url: &str, headers: &[&str]) -> String {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(CFG.as_bytes()).unwrap();
        let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        super::super::explain(f.path(), method, url, &headers).unwrap()
    }

    #[test]
    fn explain_shows_the_policy_and_its_answer() {
        let out = explain("GET", "/orders/1", &["Origin: https://a.example.com"]);
        assert!(
            out.contains("cors: policy \"shop\": origins https://shop.example.com, https://*.example.com; methods PUT (GET, HEAD, POST always); headers x-custom; exposes X-Request-Id; credentials allowed; max_age 600s"),
            "{out}"
        );
        assert!(
            out.contains("origin https://a.example.com is allowed"),
            "{out}"
        );
        assert!(
            out.contains("policies (in the order they run): cors = \"shop\""),
            "{out}"
        );
        let out = explain(
            "GET",
            "/orders/1",
            &["Origin: https://example.com.evil.com"],
        );
        assert!(out.contains("the Origin is not allowed"), "{out}");
        let out = explain(
            "OPTIONS",
            "/orders/1",
            &[
                "Origin: https://a.example.com",
                "Access-Control-Request-Method: PUT",
                "Access-Control-Request-Headers: x-custom",
            ],
        );
        assert!(
            out.contains("preflight: answered by the gateway with 204 (Access-Control-Allow-Origin: https://a.example.com)"),
            "{out}"
        );
        let out = explain(
            "OPTIONS",
            "/orders/1",
            &[
                "Origin: https://a.example.com",
                "Access-Control-Request-Method: DELETE",
            ],
        );
        assert!(out.contains("refused by the gateway with 403"), "{out}");
        assert!(out.contains("method not allowed"), "{out}");
        // The opted-out route has no policy: its preflight goes upstream.
        let out = explain(
            "OPTIONS",
            "/other",
            &[
                "Origin: https://a.example.com",
                "Access-Control-Request-Method: PUT",
            ],
        );
        assert!(out.contains("matched route: open"), "{out}");
        assert!(out.contains("cors: none on this route"), "{out}");
    }
}
