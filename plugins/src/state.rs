//! Typed per-request state shared along the plugin chain.
//!
//! Each request carries one [`RequestState`] (an `http::Extensions`: a map keyed by type).
//! A plugin stores its result as a value of its own type; later plugins, the gateway's
//! upstream-request step and the access log read it by type. Types, not strings, so a
//! misspelled key cannot silently read nothing.
//!
//! ```
//! use ficus_plugins::{Identity, RequestState};
//!
//! let mut state = RequestState::new();
//! state.insert(Identity::new("corp").with_subject("alice"));
//! assert_eq!(state.get::<Identity>().and_then(|i| i.subject.as_deref()), Some("alice"));
//! ```

use std::sync::Arc;

/// The per-request state map.
pub type RequestState = http::Extensions;

/// Who a request was verified to come from, stored by an authentication plugin.
///
/// The rate limiter keys on it (`claim:sub`), the upstream-request step turns it into
/// headers for the service, and the access log records `subject` and `client_id`.
///
/// Cheap to clone (every field is shared): a cached identity is handed to each request
/// its token comes with.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The policy that verified the credential (`[auth.NAME]`).
    pub policy: Arc<str>,
    /// The subject (`sub`) the credential was issued to.
    pub subject: Option<Arc<str>>,
    /// The OAuth2 client the credential was issued to (`client_id` / `azp`).
    pub client_id: Option<Arc<str>>,
    /// Granted scopes.
    pub scopes: Arc<[String]>,
    /// Every claim of the credential, for claim rules and claim-keyed limits.
    pub claims: Arc<serde_json::Value>,
}

impl Identity {
    /// An identity verified by `policy`, with no subject, client, scopes or claims yet.
    pub fn new(policy: &str) -> Identity {
        Identity {
            policy: policy.into(),
            subject: None,
            client_id: None,
            scopes: Arc::new([]),
            claims: Arc::new(serde_json::Value::Null),
        }
    }

    pub fn with_subject(mut self, subject: impl Into<Arc<str>>) -> Identity {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_client_id(mut self, client_id: impl Into<Arc<str>>) -> Identity {
        self.client_id = Some(client_id.into());
        self
    }

    /// A claim by dotted path (`realm_access.roles`); `None` when absent.
    pub fn claim(&self, path: &str) -> Option<&serde_json::Value> {
        path.split('.')
            .try_fold(&*self.claims, |v, key| v.as_object()?.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_claims_by_path() {
        let mut id = Identity::new("corp");
        id.claims = Arc::new(serde_json::json!({
            "sub": "u1",
            "realm_access": { "roles": ["admin"] }
        }));
        assert_eq!(id.claim("sub"), Some(&serde_json::json!("u1")));
        assert_eq!(
            id.claim("realm_access.roles"),
            Some(&serde_json::json!(["admin"]))
        );
        assert_eq!(id.claim("realm_access.missing"), None);
        assert_eq!(id.claim("sub.deeper"), None);
    }
}
