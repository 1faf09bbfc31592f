//! A route's requirements on a verified identity: `scopes` (every one granted) and
//! `claims` rules (every one met).
//!
//! ```toml
//! [[routes]]
//! auth = "corp"
//! scopes = ["orders:read"]
//! claims = [
//!   { claim = "realm_access.roles", contains = "admin" },   # nested claims by dotted path
//!   { claim = "tenant", equals = "acme" },
//!   { claim = "tier", one_of = ["gold", "silver"] },
//! ]
//! ```
//!
//! `contains` looks into an array claim for an equal element; a string claim contains only
//! itself (never a word or a substring of it: free text such as a name must not match by
//! accident; scopes have `scopes`).
//! Values compare as JSON: a string equals a string, a number a number of the same value.

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::{CompileContext, Identity};

/// One `claims` rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleConfig {
    pub claim: Spanned<String>,
    pub equals: Option<Spanned<toml::Value>>,
    pub one_of: Option<Spanned<Vec<toml::Value>>>,
    pub contains: Option<Spanned<toml::Value>>,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    Equals(Value),
    OneOf(Vec<Value>),
    Contains(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    /// Dotted path (`realm_access.roles`).
    pub claim: String,
    pub test: ClaimTest,
}

impl ClaimRule {
    pub fn holds(&self, id: &Identity) -> bool {
        let Some(v) = id.claim(&self.claim) else {
            return false;
        };
        match &self.test {
            ClaimTest::Equals(want) => same(v, want),
            ClaimTest::OneOf(options) => options.iter().any(|w| same(v, w)),
            ClaimTest::Contains(want) => match (v, want) {
                (Value::Array(items), _) => items.iter().any(|i| same(i, want)),
                (Value::String(_), _) => same(v, want),
                _ => false,
            },
        }
    }
}

/// JSON equality, with numbers compared by value (`5` and `5.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// What a route requires of a verified identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    pub scopes: Vec<String>,
    pub claims: Vec<ClaimRule>,
}

/// Why an identity does not meet a route's requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    Scope,
    Claim,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.claims.is_empty()
    }

    pub fn check(&self, id: &Identity) -> Result<(), Unmet> {
        if !self.scopes.iter().all(|s| id.scopes.iter().any(|g| g == s)) {
            return Err(Unmet::Scope);
        }
        if !self.claims.iter().all(|r| r.holds(id)) {
            return Err(Unmet::Claim);
        }
        Ok(())
    }

    /// Compiles a route's `scopes` and `claims` (keys in problems are relative to the route).
    pub fn compile(
        scopes: Option<&Spanned<Vec<Spanned<String>>>>,
        claims: &[Spanned<ClaimRuleConfig>],
        cx: &mut CompileContext<'_>,
    ) -> Requirements {
        let mut out = Requirements::default();
        for (i, s) in scopes.map_or(&[][..], |s| s.get_ref()).iter().enumerate() {
            let v = s.get_ref();
            // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
            let valid = !v.is_empty()
                && v.bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
            if !valid {
                cx.error_hint(
                    Some(s.span()),
                    &format!("scopes[{i}]"),
                    format!("`{v}` is not a scope"),
                    "a scope is one word of printable ASCII, like `orders:read`",
                );
            } else if !out.scopes.contains(v) {
                out.scopes.push(v.clone());
            }
        }
        for (i, rule) in claims.iter().enumerate() {
            let key = format!("claims[{i}]");
            let r = rule.get_ref();
            let path = r.claim.get_ref();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                cx.error_hint(
                    Some(r.claim.span()),
                    &format!("{key}.claim"),
                    format!("`{path}` is not a claim path"),
                    "name a claim (`tenant`) or a nested one (`realm_access.roles`)",
                );
                continue;
            }
            let test = match (&r.equals, &r.one_of, &r.contains) {
                (Some(v), None, None) => json(v, &key, cx).map(ClaimTest::Equals),
                (None, Some(list), None) if !list.get_ref().is_empty() => list
                    .get_ref()
                    .iter()
                    .map(|v| to_json(v).ok_or(()))
                    .collect::<Result<Vec<_>, ()>>()
                    .map_err(|_| {
                        cx.error(
                            Some(list.span()),
                            &format!("{key}.one_of"),
                            "claim values are strings, numbers or booleans",
                        )
                    })
                    .ok()
                    .map(ClaimTest::OneOf),
                (None, Some(list), None) => {
                    cx.error(
                        Some(list.span()),
                        &format!("{key}.one_of"),
                        "`one_of` is empty: no token could meet it",
                    );
                    None
                }
                (None, None, Some(v)) => json(v, &key, cx).map(ClaimTest::Contains),
                _ => {
                    cx.error_hint(
                        Some(rule.span()),
                        &key,
                        "a claim rule has exactly one of `equals`, `one_of` or `contains`",
                        "for example { claim = \"realm_access.roles\", contains = \"admin\" }",
                    );
                    None
                }
            };
            if let Some(test) = test {
                out.claims.push(ClaimRule {
                    claim: path.clone(),
                    test,
                });
            }
        }
        out
    }
}

fn json(v: &Spanned<toml::Value>, key: &str, cx: &mut CompileContext<'_>) -> Option<Value> {
    let out = to_json(v.get_ref());
    if out.is_none() {
        cx.error(
            Some(v.span()),
            key,
            "claim values are strings, numbers or booleans",
        );
    }
    out
}

fn to_json(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn id(claims: Value) -> Identity {
        super::super::identity_from_claims("corp", claims)
    }

    fn rule(claim: &str, test: ClaimTest) -> ClaimRule {
        ClaimRule {
            claim: claim.into(),
            test,
        }
    }

    #[test]
    fn rules_hold_or_not() {
        let who = id(serde_json::json!({
            "tenant": "acme", "level": 5, "groups": "staff admins",
            "realm_access": {"roles": ["admin", "user"]}
        }));
        assert!(rule("tenant", ClaimTest::Equals("acme".into())).holds(&who));
        assert!(!rule("tenant", ClaimTest::Equals("acme2".into())).holds(&who));
        assert!(rule("level", ClaimTest::Equals(serde_json::json!(5.0))).holds(&who));
        assert!(!rule("level", ClaimTest::Equals("5".into())).holds(&who));
        assert!(rule("tenant", ClaimTest::OneOf(vec!["x".into(), "acme".into()])).holds(&who));
        assert!(rule("realm_access.roles", ClaimTest::Contains("admin".into())).holds(&who));
        assert!(!rule("realm_access.roles", ClaimTest::Contains("adm".into())).holds(&who));
        assert!(!rule("groups", ClaimTest::Contains("admins".into())).holds(&who));
        assert!(rule("groups", ClaimTest::Contains("staff admins".into())).holds(&who));
        assert!(!rule("missing", ClaimTest::Contains("admin".into())).holds(&who));
    }

    #[test]
    fn scopes_all_required() {
        let r = Requirements {
            scopes: vec!["a".into(), "b".into()],
            claims: vec![],
        };
        let mut who = id(serde_json::json!({"scope": "a b c"}));
        assert_eq!(r.check(&who), Ok(()));
        who.scopes = vec!["a".to_string()].into();
        assert_eq!(r.check(&who), Err(Unmet::Scope));
        who.claims = Arc::new(Value::Null);
        assert!(Requirements::default().check(&who).is_ok());
    }
}
