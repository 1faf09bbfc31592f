//! One request/answer exchange with an instance of a service, for shadow copies (and the
//! primary's second answer that noise is learned from): pingora's own client, so TLS, SNI,
//! trusted CAs and connection pooling are those the service's primary traffic uses.
//!
//! Bounded in time (the whole exchange) and size (the answer body); the instance's
//! outlier and breaker state are left alone: a shadow copy says nothing the primary
//! traffic relies on.

use bytes::Bytes;
use http::HeaderMap;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;

use crate::registry::{PickContext, ServiceState};

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why an exchange gave no answer.
#[derive(Debug, Error)]
pub enum ExchangeError {
    #[error("the service has no usable instance")]
    Unavailable,
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer's body is over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
}

/// The process's client connections for shadow exchanges, pooled per instance.
fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// Informational answers (`100 Continue`, `103 Early Hints`) read past at most.
const MAX_INFORMATIONAL: usize = 8;

/// Sends `head` and `body` to an instance of `service` and reads its answer.
pub async fn exchange(
    service: &ServiceState,
    head: RequestHeader,
    body: Bytes,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, ExchangeError> {
    let (member, _permit) = service
        .pick(&PickContext::default())
        .map_err(|_| ExchangeError::Unavailable)?;
    let mut peer = member.peer.clone();
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    let run = async {
        // Boxed, as the connect future (TLS included) is large.
        let (mut session, _reused) = Box::pin(connector().get_http_session(&peer))
            .await
            .map_err(|e| ExchangeError::Failed(format!("connect {}: {e}", member.addr)))?;
        let failed = |e: Box<pingora_error::Error>| ExchangeError::Failed(e.to_string());
        let head = framed(head, &body, session.as_http1().is_some());
        session
            .write_request_header(Box::new(head))
            .await
            .map_err(failed)?;
        if !body.is_empty() {
            session
                .write_request_body(body, true)
                .await
                .map_err(failed)?;
        }
        session.finish_request_body().await.map_err(failed)?;
        let mut informational = 0;
        let (status, headers) = loop {
            session.read_response_header().await.map_err(failed)?;
            let Some(resp) = session.response_header() else {
                return Err(ExchangeError::Failed("no response head".into()));
            };
            if !resp.status.is_informational() {
                break (resp.status.as_u16(), resp.headers.clone());
            }
            informational += 1;
            if informational > MAX_INFORMATIONAL {
                return Err(ExchangeError::Failed(format!(
                    "more than {MAX_INFORMATIONAL} interim (1xx) answers"
                )));
            }
        };
        let mut kept = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
            if kept.len() + chunk.len() > max_body {
                return Err(ExchangeError::TooLarge(max_body));
            }
            kept.extend_from_slice(&chunk);
        }
        if session.response_done() {
            connector()
                .release_http_session(session, &peer, peer.options.idle_timeout)
                .await;
        }
        Ok(Answer {
            status,
            headers,
            body: kept,
        })
    };
    match tokio::time::timeout(timeout, Box::pin(run)).await {
        Ok(result) => result,
        Err(_) => Err(ExchangeError::Timeout(timeout)),
    }
}

/// The copy's head for the protocol of the connection it goes out on. The primary's
/// upstream request was shaped for the primary's connection (HTTP/1.1 or HTTP/2), and the
/// whole body is at hand: it is sent with a `Content-Length`, never chunked.
fn framed(mut head: RequestHeader, body: &Bytes, h1: bool) -> RequestHeader {
    head.remove_header(&http::header::TRANSFER_ENCODING);
    if !body.is_empty() {
        let _ = head.insert_header(http::header::CONTENT_LENGTH, body.len());
    }
    if h1 {
        head.set_version(http::Version::HTTP_11);
        // An HTTP/2 request names its host in the target's authority.
        if !head.headers.contains_key(http::header::HOST) {
            if let Some(authority) = head.uri.authority().map(|a| a.as_str().to_owned()) {
                let _ = head.insert_header(http::header::HOST, authority);
            }
        }
    }
    head
}
