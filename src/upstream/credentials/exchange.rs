//! The client-credentials token request (RFC 6749 §4.4), made with the `oauth2` crate
//! (docs/decisions.md #28): the client authenticates with HTTP Basic, asks for the
//! configured scopes, and adds `resource` (RFC 8707) and `audience` when set.
//!
//! Its HTTP client follows no redirects (a token request is never re-sent elsewhere with
//! the credentials), trusts the webpki roots plus the configured CA, and keeps no idle
//! connections: a token is fetched every few minutes at most, and a pooled connection
//! would tie the client to whichever runtime opened it.

use async_trait::async_trait;
use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    reqwest, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};

use super::source::{Fetched, TokenEndpoint};
use super::{ClientCredentialsSpec, FetchError};

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A service's token endpoint, ready to ask.
pub struct OAuth2Endpoint {
    /// The OAuth2 client, or why it could not be set up (reported on every fetch).
    client: Result<(Client, reqwest::Client), FetchError>,
    scopes: Vec<Scope>,
    /// `resource` and `audience`, when set.
    extra: Vec<(&'static str, String)>,
}

impl OAuth2Endpoint {
    pub fn new(spec: &ClientCredentialsSpec) -> OAuth2Endpoint {
        let mut extra = Vec::new();
        if let Some(r) = &spec.resource {
            extra.push(("resource", r.clone()));
        }
        if let Some(a) = &spec.audience {
            extra.push(("audience", a.clone()));
        }
        OAuth2Endpoint {
            client: clients(spec),
            scopes: spec.scopes.iter().cloned().map(Scope::new).collect(),
            extra,
        }
    }
}

/// The OAuth2 client and the HTTP client it sends with.
fn clients(spec: &ClientCredentialsSpec) -> Result<(Client, reqwest::Client), FetchError> {
    let token_url = TokenUrl::new(spec.token_url.clone())
        .map_err(|e| FetchError::Client(format!("token_url: {e}")))?;
    let oauth = BasicClient::new(ClientId::new(spec.client_id.clone()))
        .set_client_secret(ClientSecret::new(spec.client_secret.expose().to_string()))
        .set_token_uri(token_url);
    let mut http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(spec.timeout);
    for der in spec.ca.iter().flatten() {
        let cert = reqwest::Certificate::from_der(der)
            .map_err(|e| FetchError::Client(format!("ca_file: {e}")))?;
        http = http.add_root_certificate(cert);
    }
    let http = http
        .build()
        .map_err(|e| FetchError::Client(error_chain(&e)))?;
    Ok((oauth, http))
}

#[async_trait]
impl TokenEndpoint for OAuth2Endpoint {
    async fn fetch(&self) -> Result<Fetched, FetchError> {
        let (oauth, http) = self.client.as_ref().map_err(Clone::clone)?;
        let mut request = oauth
            .exchange_client_credentials()
            .add_scopes(self.scopes.iter().cloned());
        for (name, value) in &self.extra {
            request = request.add_extra_param(*name, value.as_str());
        }
        let response = request.request_async(http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => FetchError::Refused(r.to_string()),
            RequestTokenError::Request(e) => FetchError::Unreachable(error_chain(&e)),
            // Only where in the answer and what kind of error: serde's message can quote
            // a value from the answer, which may be a token.
            RequestTokenError::Parse(e, _) => FetchError::BadResponse(format!(
                "at `{}`: {:?} error at line {} column {}",
                e.path(),
                e.inner().classify(),
                e.inner().line(),
                e.inner().column()
            )),
            RequestTokenError::Other(m) => FetchError::BadResponse(m),
        })?;
        // The type is case-insensitive (RFC 6749 §5.1): oauth2 lower-cases it.
        if response.token_type() != &BasicTokenType::Bearer {
            let other = response.token_type().as_ref().to_string();
            return Err(FetchError::NotBearer(other));
        }
        Ok(Fetched {
            access_token: response.access_token().secret().clone(),
            expires_in: response.expires_in(),
        })
    }
}

/// An error and its causes, `: `-separated (reqwest puts the useful part, "connection
/// refused", in a cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Secret, DEFAULT_TIMEOUT};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot token endpoint: answers one request with `status` and `body`, and
    /// returns the request it read (head and form body).
    async fn endpoint(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nlocation: http://127.0.0.1:1/elsewhere\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let served = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then as many body bytes as its Content-Length says.
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if request.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, served)
    }

    fn spec(token_url: String) -> ClientCredentialsSpec {
        ClientCredentialsSpec {
            token_url,
            client_id: "gw:1".into(),
            client_secret: Secret::new("p@ss word"),
            scopes: vec!["orders:read".into(), "orders:write".into()],
            resource: Some("urn:api:shop".into()),
            audience: Some("shop".into()),
            ca: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    #[tokio::test]
    async fn the_request_carries_basic_auth_the_grant_scopes_resource_and_audience() {
        let (url, served) = endpoint(
            "200 OK",
            r#"{"access_token":"abc.def","token_type":"Bearer","expires_in":300}"#,
        )
        .await;
        let fetched = OAuth2Endpoint::new(&spec(url)).fetch().await.unwrap();
        assert_eq!(fetched.access_token, "abc.def");
        assert_eq!(
            fetched.expires_in,
            Some(std::time::Duration::from_secs(300))
        );
        let request = served.await.unwrap();
        // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
        let basic = "Basic Z3clM0ExOnAlNDBzcyt3b3Jk";
        assert!(
            request.contains(&format!("authorization: {basic}\r\n")),
            "{request}"
        );
        let form = request.split("\r\n\r\n").nth(1).unwrap();
        let mut fields: Vec<&str> = form.split('&').collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "audience=shop",
                "grant_type=client_credentials",
                "resource=urn%3Aapi%3Ashop",
                "scope=orders%3Aread+orders%3Awrite",
            ],
            "{request}"
        );
        assert!(
            !form.contains("p%40ss"),
            "the secret is in the form: {form}"
        );
    }

    #[tokio::test]
    async fn refusals_redirects_and_other_token_types_are_errors() {
        let (url, _) = endpoint(
            "401 Unauthorized",
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
        .await;
        let e = OAuth2Endpoint::new(&spec(url)).fetch().await.err().unwrap();
        assert_eq!(
            e,
            FetchError::Refused("invalid_client: client authentication failed".into())
        );
        // A redirect is not followed (the credentials would go elsewhere).
        let (url, _) = endpoint("307 Temporary Redirect", "{}").await;
        let e = OAuth2Endpoint::new(&spec(url)).fetch().await.err().unwrap();
        assert!(matches!(e, FetchError::BadResponse(_)), "{e:?}");
        let (url, _) = endpoint(
            "200 OK",
            r#"{"access_token":"abc","token_type":"DPoP","expires_in":300}"#,
        )
        .await;
        let e = OAuth2Endpoint::new(&spec(url)).fetch().await.err().unwrap();
        assert_eq!(e, FetchError::NotBearer("dpop".into()));
        // An answer that is not a token response says where, not what it held.
        let (url, _) = endpoint(
            "200 OK",
            r#"{"access_token":"secret-token-value","token_type":"bearer","expires_in":"soon"}"#,
        )
        .await;
        let e = OAuth2Endpoint::new(&spec(url)).fetch().await.err().unwrap();
        let shown = e.to_string();
        assert!(matches!(e, FetchError::BadResponse(_)), "{e:?}");
        assert!(shown.contains("expires_in"), "{shown}");
        assert!(
            !shown.contains("secret-token-value") && !shown.contains("soon"),
            "{shown}"
        );
    }
}
