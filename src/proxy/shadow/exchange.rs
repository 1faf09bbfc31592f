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
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;

use super::pool;
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

/// Sends a copy of `base` (made ready by `prepare`, which says `false` when it cannot be)
/// and `body` to an instance of `service` and reads its answer. `base` itself is left
/// as it is: the caller keeps it for the comparison's samples.
pub async fn exchange<F>(
    service: &ServiceState,
    base: &RequestHeader,
    prepare: F,
    body: Bytes,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, ExchangeError>
where
    F: Fn(&mut RequestHeader) -> bool,
{
    let copy = || {
        let mut head = base.clone();
        prepare(&mut head)
            .then_some(head)
            .ok_or_else(|| ExchangeError::Failed("the copy's request could not be made".into()))
    };
    let (member, _permit) = service
        .pick(&PickContext::default())
        .map_err(|_| ExchangeError::Unavailable)?;
    let mut peer = member.peer.clone();
    // The whole exchange is under one deadline (below); a deadline per read and write
    // would only add timers.
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    let run = async {
        // A kept connection that its server closes just as it is taken fails before any
        // answer: a request without side effects is sent again on a new connection. One
        // with side effects (a copied `POST`) cannot be sent twice, so it never takes that
        // risk: it goes on a new connection (its connection is kept afterwards).
        let reused = match base.method.is_safe() {
            true => pool::pool().take(&peer),
            false => None,
        };
        if let Some(session) = reused {
            match once(HttpSession::H1(session), copy()?, &body, max_body, &peer).await {
                Err(Attempt::Unanswered(e)) => {
                    tracing::debug!(error = %e, "kept shadow connection unusable");
                }
                done => return done.map_err(Attempt::into_error),
            }
        }
        // Boxed, as the connect future (TLS included) is large.
        let (session, _reused) = Box::pin(connector().get_http_session(&peer))
            .await
            .map_err(|e| ExchangeError::Failed(format!("connect {}: {e}", member.addr)))?;
        once(session, copy()?, &body, max_body, &peer)
            .await
            .map_err(Attempt::into_error)
    };
    match tokio::time::timeout(timeout, Box::pin(run)).await {
        Ok(result) => result,
        Err(_) => Err(ExchangeError::Timeout(timeout)),
    }
}

/// How an attempt on one connection ended without an answer.
enum Attempt {
    /// Nothing of an answer came: on a kept connection, most likely closed by its server.
    Unanswered(String),
    /// Failed once the answer had begun, or for a reason another connection would not mend.
    Failed(ExchangeError),
}

impl Attempt {
    fn into_error(self) -> ExchangeError {
        match self {
            Attempt::Unanswered(m) => ExchangeError::Failed(m),
            Attempt::Failed(e) => e,
        }
    }
}

/// One request and its answer on `session`, which goes back to the pool (HTTP/1) or to
/// pingora's (HTTP/2) when the answer is complete.
async fn once(
    mut session: HttpSession,
    head: RequestHeader,
    body: &Bytes,
    max_body: usize,
    peer: &HttpPeer,
) -> Result<Answer, Attempt> {
    let unanswered = |e: Box<pingora_error::Error>| Attempt::Unanswered(e.to_string());
    let failed =
        |e: Box<pingora_error::Error>| Attempt::Failed(ExchangeError::Failed(e.to_string()));
    let head = framed(head, body, session.as_http1().is_some());
    session
        .write_request_header(Box::new(head))
        .await
        .map_err(unanswered)?;
    if !body.is_empty() {
        session
            .write_request_body(body.clone(), true)
            .await
            .map_err(unanswered)?;
    }
    session.finish_request_body().await.map_err(unanswered)?;
    let mut informational = 0;
    let (status, headers) = loop {
        session.read_response_header().await.map_err(unanswered)?;
        let Some(resp) = session.response_header() else {
            return Err(Attempt::Unanswered("no response head".into()));
        };
        if !resp.status.is_informational() {
            break (resp.status.as_u16(), resp.headers.clone());
        }
        informational += 1;
        if informational > MAX_INFORMATIONAL {
            return Err(Attempt::Failed(ExchangeError::Failed(format!(
                "more than {MAX_INFORMATIONAL} interim (1xx) answers"
            ))));
        }
    };
    let mut kept = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
        if kept.len() + chunk.len() > max_body {
            return Err(Attempt::Failed(ExchangeError::TooLarge(max_body)));
        }
        kept.extend_from_slice(&chunk);
    }
    if session.response_done() {
        match session {
            HttpSession::H1(h1) => pool::pool().put(h1, peer).await,
            other => {
                connector()
                    .release_http_session(other, peer, peer.options.idle_timeout)
                    .await
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: kept,
    })
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
