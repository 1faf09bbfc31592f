//! The spelling a case-keeping pingora header records for a name the gateway adds, without
//! allocating.
//!
//! pingora keeps a second map of original spellings when `preserve_header_case` is on.
//! Given a `HeaderName`, it records the Title-Case form for the dozen names it knows
//! (`Content-Type`, `Server`, ...) and otherwise copies the lowercase name into a fresh
//! buffer: one allocation per header added, on every response. For the names the gateway
//! and its plugins add on the request path this module hands pingora the same lowercase
//! spelling as a `&'static str`, which it takes without copying. The bytes on the wire are
//! the same; the tests hold that for every name listed here.
//!
//! Names pingora titles itself are not listed: for those it needs no copy anyway.

use http::HeaderName;

macro_rules! lowercase_spellings {
    ($($name:literal),* $(,)?) => {
        /// Every name [`static_spelling`] knows, for the tests.
        #[cfg(test)]
        const KNOWN: &[&str] = &[$($name),*];

        /// pingora's spelling of `name` as a static string, when it is one the gateway adds
        /// often; `None` for any other name (then give pingora the `HeaderName`).
        pub fn static_spelling(name: &HeaderName) -> Option<&'static str> {
            match name.as_str() {
                $($name => Some($name),)*
                _ => None,
            }
        }
    };
}

lowercase_spellings!(
    // CORS (plugins/src/cors)
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "vary",
    // rate limits (plugins/src/ratelimit/fields.rs) and the gateway's own answers
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "www-authenticate",
    "allow",
);

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::ResponseHeader;

    fn wire(h: &ResponseHeader) -> Vec<u8> {
        let mut buf = Vec::new();
        h.header_to_h1_wire(&mut buf);
        buf
    }

    /// The static spelling puts the same bytes on the wire as pingora's own for the name.
    #[test]
    fn spellings_are_pingoras_own() {
        for s in KNOWN {
            let name = HeaderName::from_static(s);
            assert_eq!(static_spelling(&name), Some(*s));
            let mut ours = ResponseHeader::build(200, None).unwrap();
            ours.insert_header(*s, "v").unwrap();
            let mut theirs = ResponseHeader::build(200, None).unwrap();
            theirs.insert_header(name.clone(), "v").unwrap();
            assert_eq!(
                String::from_utf8(wire(&ours)).unwrap(),
                String::from_utf8(wire(&theirs)).unwrap(),
                "{s}"
            );
        }
    }

    #[test]
    fn other_names_are_left_to_pingora() {
        for name in [
            http::header::CONTENT_TYPE,
            http::header::SERVER,
            HeaderName::from_static("x-upstream-mixed"),
        ] {
            assert_eq!(static_spelling(&name), None, "{name}");
        }
    }
}
