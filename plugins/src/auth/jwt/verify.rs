//! What a token must look like and what its claims must say: the shape of a compact JWS
//! (three base64url segments, a JSON header and a JSON payload, both objects), the header
//! fields ficus reads (`alg`, `kid`, `typ`), and the registered claims (`exp`, `nbf`,
//! `iat`, `iss`, `aud`, the lifetime), each checked here, explicitly, on the decoded
//! payload.
//!
//! Nothing here verifies a signature or touches a key: a token that passes these checks is
//! still unverified. The policy checks claims before the signature so that junk (expired,
//! foreign, malformed tokens) costs no cryptography; nothing is accepted before the
//! signature is verified too.
//!
//! Header fields other than `alg`, `kid`, `typ` and `crit` are never read: a token's `jku`,
//! `x5u`, `jwk` or `x5c` cannot point ficus at a key or a URL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::auth::Refusal;

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Unverified<'t> {
    /// `HEADER.PAYLOAD` as sent: the bytes the signature covers.
    pub signing_input: &'t str,
    /// The signature segment, base64url.
    pub signature: &'t str,
    /// The header's `alg`, one ficus knows (`none` and unknown names are refused).
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
}

/// Splits and decodes a compact JWS. Refuses with [`Refusal::Malformed`] anything that is
/// not three base64url segments with a JSON object header (with a string `alg`) and a JSON
/// object payload, and with [`Refusal::Algorithm`] an `alg` ficus does not know (`none`).
pub fn parse(token: &str) -> Result<Unverified<'_>, Refusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    // The signature is decoded by the signature check; here only its alphabet is checked,
    // so a malformed one is reported as such. An empty one is left to the algorithm check
    // (`alg: none` tokens end in a dot).
    if header.is_empty() || payload.is_empty() || !is_base64url(signature) {
        return Err(Refusal::Malformed);
    }
    let mut header = json_object(header)?;
    let claims = json_object(payload)?;
    let text = |v: Option<Value>| match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::Malformed),
    };
    let Some(Value::String(alg)) = header.remove("alg") else {
        return Err(Refusal::Malformed);
    };
    let kid = text(header.remove("kid"))?;
    let typ = text(header.remove("typ"))?;
    // RFC 7515 §4.1.11: a recipient that does not understand a critical extension must
    // refuse the token. ficus understands none (`b64: false` would change what is signed).
    if header.contains_key("crit") {
        return Err(Refusal::Malformed);
    }
    let alg = algorithm(&alg).ok_or(Refusal::Algorithm)?;
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Unverified {
        signing_input,
        signature,
        alg,
        kid,
        typ,
        claims,
    })
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A base64url segment holding a JSON object. Padding, the standard alphabet and
/// non-canonical trailing bits are refused.
fn json_object(segment: &str) -> Result<Map<String, Value>, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Refusal::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::Malformed),
    }
}

/// Every algorithm name ficus can verify (RFC 7518 §3.1 spellings), for parsing config
/// and token headers alike. `none` is not one of them.
pub const ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The algorithm spelled `name` exactly (names are case-sensitive, RFC 7515 §4.1.1).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The RFC 7518 name of `alg`.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("?", |(n, _)| n)
}

/// The claim checks of a policy, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// `iss` must equal this.
    pub issuer: Option<String>,
    /// `aud` (a string or an array) must hold one of these; empty: not checked.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` (and `iat` with a lifetime), in seconds.
    pub leeway: i64,
    /// The longest `exp - iat` accepted, in seconds.
    pub max_lifetime: Option<i64>,
    /// The required header `typ`, normalized by [`media_type`].
    pub require_typ: Option<String>,
}

impl ClaimRules {
    /// Checks the header's `typ` and the registered claims at `now` (seconds since the
    /// epoch). Returns the token's `exp`.
    ///
    /// In order: `typ`; the types of `exp` (required), `nbf` and `iat` (numbers when
    /// present); expiry and not-before with the leeway; `iss`; `aud`; the lifetime.
    pub fn check(&self, t: &Unverified<'_>, now: i64) -> Result<i64, Refusal> {
        if let Some(want) = &self.require_typ {
            match &t.typ {
                Some(typ) if media_type(typ) == *want => {}
                _ => return Err(Refusal::WrongType),
            }
        }
        let claims = &t.claims;
        // A present claim of the wrong type is refused, never skipped (CVE-2026-25537 was
        // a library skipping the expiry check for an `exp` given as a string).
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(Refusal::InvalidClaims)?;
        let date = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => numeric_date(v).map(Some).ok_or(Refusal::InvalidClaims),
        };
        let nbf = date("nbf")?;
        let iat = date("iat")?;
        // RFC 7519 §4.1.4: not accepted on or after `exp`.
        if now >= exp.saturating_add(self.leeway) {
            return Err(Refusal::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(Refusal::NotYetValid);
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Refusal::WrongIssuer);
            }
        }
        if !self.audience.is_empty() && !self.audience_matches(claims.get("aud")) {
            return Err(Refusal::WrongAudience);
        }
        if let Some(max) = self.max_lifetime {
            let iat = iat.ok_or(Refusal::InvalidClaims)?;
            // A token "issued" in the future would carry its lifetime check past the
            // maximum: `exp - iat` is short while `exp - now` is not.
            if iat > now.saturating_add(self.leeway) {
                return Err(Refusal::NotYetValid);
            }
            if exp.saturating_sub(iat) > max {
                return Err(Refusal::Lifetime);
            }
        }
        Ok(exp)
    }

    fn audience_matches(&self, aud: Option<&Value>) -> bool {
        let wanted = |a: &str| self.audience.iter().any(|w| w == a);
        match aud {
            Some(Value::String(a)) => wanted(a),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(wanted),
            _ => false,
        }
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, possibly fractional, as whole
/// seconds (rounded down, saturating). Anything else (a string, `null`) is `None`.
fn numeric_date(v: &Value) -> Option<i64> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.as_u64().is_some() {
        return Some(i64::MAX);
    }
    // `as` saturates for out-of-range floats; NaN cannot come out of JSON.
    n.as_f64().map(|f| f.floor() as i64)
}

/// A `typ` value compared the way RFC 7515 §4.1.9 says media types compare: without case
/// and with the `application/` prefix optional (`application/at+JWT` is `at+jwt`).
pub fn media_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn token(header: Value, claims: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&claims))
    }

    const NOW: i64 = 1_700_000_000;

    fn check(rules: &ClaimRules, header: Value, claims: Value) -> Result<i64, Refusal> {
        let t = token(header, claims);
        rules.check(&parse(&t)?, NOW)
    }

    fn rs256() -> Value {
        json!({"alg": "RS256", "kid": "k1"})
    }

    #[test]
    fn shapes_are_checked_before_anything_else() {
        let good = token(rs256(), json!({"exp": NOW + 60}));
        let t = parse(&good).unwrap();
        assert_eq!(t.alg, Algorithm::RS256);
        assert_eq!(t.kid.as_deref(), Some("k1"));
        assert_eq!(t.signature, "c2ln");
        assert_eq!(format!("{}.c2ln", t.signing_input), good);

        let h = b64(&rs256());
        let p = b64(&json!({"exp": 1}));
        let malformed = [
            "".to_string(),
            "abc".to_string(),
            format!("{h}.{p}"),
            format!("{h}.{p}.sig.extra"),
            format!("{h}.{p}.si+g"),
            format!(".{p}.sig"),
            format!("{h}..sig"),
            format!("{h}=.{p}.sig"),
            format!("{h}.{p}=.sig"),
            format!("{h}.!!.sig"),
            // Not JSON, or JSON but not an object.
            format!("{}.{p}.sig", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.{p}.sig", b64(&json!(["RS256"]))),
            format!("{h}.{}.sig", b64(&json!("a string"))),
            format!("{h}.{}.sig", b64(&json!([1, 2]))),
            format!("{h}.{}.sig", URL_SAFE_NO_PAD.encode("{\"exp\": 1")),
            // Header fields of the wrong type, a missing alg, a critical extension.
            format!("{}.{p}.sig", b64(&json!({"typ": "JWT"}))),
            format!("{}.{p}.sig", b64(&json!({"alg": 256}))),
            format!("{}.{p}.sig", b64(&json!({"alg": "RS256", "kid": 7}))),
            format!(
                "{}.{p}.sig",
                b64(&json!({"alg": "RS256", "typ": ["at+jwt"]}))
            ),
            format!(
                "{}.{p}.sig",
                b64(&json!({"alg": "RS256", "b64": false, "crit": ["b64"]}))
            ),
        ];
        for t in &malformed {
            assert_eq!(parse(t).unwrap_err(), Refusal::Malformed, "{t}");
        }
    }

    #[test]
    fn alg_none_and_unknown_names_are_refused() {
        for alg in ["none", "None", "NONE", "rs256", "HS257", ""] {
            let t = format!(
                "{}.{}.",
                b64(&json!({"alg": alg})),
                b64(&json!({"exp": NOW + 60}))
            );
            assert_eq!(parse(&t).unwrap_err(), Refusal::Algorithm, "{alg}");
        }
    }

    #[test]
    fn key_and_url_headers_are_never_read() {
        let t = token(
            json!({"alg": "RS256", "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/c",
                   "jwk": {"kty": "oct", "k": "c2VjcmV0"}, "x5c": ["MIIB"]}),
            json!({"exp": NOW + 60}),
        );
        let t = parse(&t).unwrap();
        assert_eq!(t.kid, None);
        assert_eq!(t.alg, Algorithm::RS256);
    }

    #[test]
    fn exp_is_required_and_must_be_a_number() {
        let r = ClaimRules::default();
        let bad = [
            json!({}),
            json!({"exp": null}),
            // CVE-2026-25537: a string exp must not skip the expiry check.
            json!({"exp": "1700000060"}),
            json!({"exp": (NOW - 1000).to_string()}),
            json!({"exp": true}),
            json!({"exp": [NOW + 60]}),
            json!({"exp": NOW + 60, "nbf": "0"}),
            json!({"exp": NOW + 60, "iat": "0"}),
            json!({"exp": NOW + 60, "iat": null}),
        ];
        for claims in bad {
            assert_eq!(
                check(&r, rs256(), claims.clone()),
                Err(Refusal::InvalidClaims),
                "{claims}"
            );
        }
        assert_eq!(
            check(
                &r,
                rs256(),
                json!({"exp": NOW + 60, "nbf": NOW, "iat": NOW})
            ),
            Ok(NOW + 60)
        );
        // NumericDate may be fractional.
        assert_eq!(
            check(&r, rs256(), json!({"exp": (NOW + 60) as f64 + 0.9})),
            Ok(NOW + 60)
        );
        // Out of range: saturates, never wraps into the past or the future.
        assert!(check(&r, rs256(), json!({"exp": 1e300})).is_ok());
        assert_eq!(
            check(&r, rs256(), json!({"exp": -1e300})),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn expiry_and_not_before_with_leeway_edges() {
        let strict = ClaimRules::default();
        assert_eq!(
            check(&strict, rs256(), json!({"exp": NOW + 1})),
            Ok(NOW + 1)
        );
        assert_eq!(
            check(&strict, rs256(), json!({"exp": NOW})),
            Err(Refusal::Expired)
        );
        let r = ClaimRules {
            leeway: 30,
            ..ClaimRules::default()
        };
        assert!(check(&r, rs256(), json!({"exp": NOW - 29})).is_ok());
        assert_eq!(
            check(&r, rs256(), json!({"exp": NOW - 30})),
            Err(Refusal::Expired)
        );
        let exp = NOW + 600;
        assert!(check(&r, rs256(), json!({"exp": exp, "nbf": NOW + 30})).is_ok());
        assert_eq!(
            check(&r, rs256(), json!({"exp": exp, "nbf": NOW + 31})),
            Err(Refusal::NotYetValid)
        );
        assert_eq!(
            check(&strict, rs256(), json!({"exp": exp, "nbf": NOW + 1})),
            Err(Refusal::NotYetValid)
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let r = ClaimRules {
            issuer: Some("https://idp.example.com/realms/shop".into()),
            ..ClaimRules::default()
        };
        let exp = NOW + 60;
        assert!(check(
            &r,
            rs256(),
            json!({"exp": exp, "iss": "https://idp.example.com/realms/shop"})
        )
        .is_ok());
        for iss in [
            json!("https://idp.example.com/realms/shop/"),
            json!("https://IDP.example.com/realms/shop"),
            json!("https://evil.example.com"),
            json!(["https://idp.example.com/realms/shop"]),
            json!(null),
        ] {
            assert_eq!(
                check(&r, rs256(), json!({"exp": exp, "iss": iss})),
                Err(Refusal::WrongIssuer)
            );
        }
        assert_eq!(
            check(&r, rs256(), json!({"exp": exp})),
            Err(Refusal::WrongIssuer)
        );
    }

    #[test]
    fn audience_string_or_list_must_hold_one_configured() {
        let r = ClaimRules {
            audience: vec!["urn:api:shop".into(), "urn:api:shop2".into()],
            ..ClaimRules::default()
        };
        let exp = NOW + 60;
        for aud in [
            json!("urn:api:shop"),
            json!("urn:api:shop2"),
            json!(["other", "urn:api:shop"]),
            json!([1, null, "urn:api:shop2"]),
        ] {
            assert!(
                check(&r, rs256(), json!({"exp": exp, "aud": aud.clone()})).is_ok(),
                "{aud}"
            );
        }
        for aud in [
            json!("urn:api:other"),
            json!([]),
            json!(["urn:api:shopx"]),
            json!({"aud": "urn:api:shop"}),
            json!("URN:API:SHOP"),
        ] {
            assert_eq!(
                check(&r, rs256(), json!({"exp": exp, "aud": aud.clone()})),
                Err(Refusal::WrongAudience),
                "{aud}"
            );
        }
        assert_eq!(
            check(&r, rs256(), json!({"exp": exp})),
            Err(Refusal::WrongAudience)
        );
        // Not configured: not checked.
        assert!(check(
            &ClaimRules::default(),
            rs256(),
            json!({"exp": exp, "aud": "x"})
        )
        .is_ok());
    }

    #[test]
    fn required_typ_compares_as_a_media_type() {
        let r = ClaimRules {
            require_typ: Some(media_type("at+jwt")),
            ..ClaimRules::default()
        };
        let claims = json!({"exp": NOW + 60});
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(
                check(&r, json!({"alg": "RS256", "typ": typ}), claims.clone()).is_ok(),
                "{typ}"
            );
        }
        for header in [
            json!({"alg": "RS256", "typ": "JWT"}),
            json!({"alg": "RS256", "typ": "application/jwt"}),
            json!({"alg": "RS256", "typ": "at+jwt2"}),
            json!({"alg": "RS256"}),
        ] {
            assert_eq!(
                check(&r, header.clone(), claims.clone()),
                Err(Refusal::WrongType),
                "{header}"
            );
        }
        assert_eq!(media_type("application/AT+JWT"), "at+jwt");
    }

    #[test]
    fn lifetime_needs_iat_and_is_bounded() {
        let r = ClaimRules {
            max_lifetime: Some(3600),
            leeway: 30,
            ..ClaimRules::default()
        };
        let iat = NOW - 10;
        assert!(check(&r, rs256(), json!({"exp": iat + 3600, "iat": iat})).is_ok());
        assert_eq!(
            check(&r, rs256(), json!({"exp": iat + 3601, "iat": iat})),
            Err(Refusal::Lifetime)
        );
        assert_eq!(
            check(&r, rs256(), json!({"exp": NOW + 60})),
            Err(Refusal::InvalidClaims)
        );
        // Issued in the future: the lifetime would not bound how long it stays valid.
        let future = NOW + 86_400 * 365;
        assert_eq!(
            check(&r, rs256(), json!({"exp": future + 60, "iat": future})),
            Err(Refusal::NotYetValid)
        );
        assert!(check(&r, rs256(), json!({"exp": NOW + 90, "iat": NOW + 30})).is_ok());
        // Without max_lifetime, a long-lived token passes.
        assert!(check(
            &ClaimRules::default(),
            rs256(),
            json!({"exp": NOW + 86_400 * 365})
        )
        .is_ok());
    }

    #[test]
    fn checks_run_in_a_fixed_order() {
        // Expired and from the wrong issuer: the expiry is reported (checked first).
        let r = ClaimRules {
            issuer: Some("a".into()),
            audience: vec!["b".into()],
            ..ClaimRules::default()
        };
        assert_eq!(
            check(&r, rs256(), json!({"exp": NOW - 5, "iss": "x", "aud": "y"})),
            Err(Refusal::Expired)
        );
        assert_eq!(
            check(&r, rs256(), json!({"exp": NOW + 5, "iss": "x", "aud": "y"})),
            Err(Refusal::WrongIssuer)
        );
        assert_eq!(
            check(&r, rs256(), json!({"exp": NOW + 5, "iss": "a", "aud": "y"})),
            Err(Refusal::WrongAudience)
        );
    }
}
