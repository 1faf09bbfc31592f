//! Why the gateway answers a request itself, and the one place where internal errors
//! become HTTP statuses.
//!
//! A [`GatewayError`] travels inside pingora's error (as its cause, see
//! [`GatewayError::into_pingora`] and [`GatewayError::of`]) from the phase that decided it
//! to `fail_to_proxy`: one channel, nothing stashed aside. Every gateway-made error is a
//! small JSON body `{"error": "...", "request_id": "..."}` with the request id also in
//! `x-request-id`. Messages are fixed strings chosen here: no addresses, no library error
//! text ever reaches a client.

use pingora_error::{Error, ErrorSource, ErrorType};

use crate::metrics::UpstreamErrorKind;
use crate::router::normalize::PathError;

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub enum GatewayError {
    BadPath(PathError),
    /// A request the gateway cannot parse (bad header).
    BadRequest,
    PathNotAllowed,
    NoRoute,
    /// `TRACE` on a route that does not list it.
    TraceNotAllowed,
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    /// A `Transfer-Encoding` other than plain `chunked`.
    UnsupportedTransferCoding,
    SlowClient,
    /// The client closed the connection (or reset its HTTP/2 stream) before the answer was
    /// complete. Only ever logged: there is nobody to answer.
    ClientClosed,
    /// The client stopped reading the response for `send_timeout`. Only ever logged.
    ClientNotReading,
    /// An upgraded connection (WebSocket) was closed after its upstream stayed silent for
    /// the `read` timeout. Only ever logged.
    TunnelIdle,
    NoInstance,
    /// The service's circuit breaker is open.
    CircuitOpen,
    /// The service's bulkhead (`max_concurrent`) is full.
    AtCapacity,
    /// The gateway's cap on requests holding an upstream connection is reached (for the
    /// whole gateway, or for the client's connection after waiting); see `in_flight.rs`.
    Overloaded,
    /// The service has client credentials and no token can be had for it now (token
    /// endpoint down, refusing, or backing off after failures).
    UpstreamCredentials,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamFailed,
    Internal,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            GatewayError::BadPath(_) | GatewayError::PathNotAllowed | GatewayError::BadRequest => {
                400
            }
            GatewayError::NoRoute => 404,
            GatewayError::TraceNotAllowed => 405,
            GatewayError::SlowClient => 408,
            // nginx's convention for "client closed request"; never sent.
            GatewayError::ClientClosed => 499,
            GatewayError::ClientNotReading => 408,
            GatewayError::TunnelIdle => 504,
            GatewayError::BodyTooLarge => 413,
            GatewayError::UriTooLong => 414,
            GatewayError::HeadersTooLarge => 431,
            GatewayError::Internal => 500,
            GatewayError::UnsupportedTransferCoding => 501,
            GatewayError::UpstreamUnreachable | GatewayError::UpstreamFailed => 502,
            GatewayError::NoInstance
            | GatewayError::CircuitOpen
            | GatewayError::AtCapacity
            | GatewayError::Overloaded
            | GatewayError::UpstreamCredentials => 503,
            GatewayError::UpstreamTimeout => 504,
        }
    }

    /// The client-facing message.
    pub fn message(self) -> &'static str {
        match self {
            GatewayError::BadPath(PathError::NotAbsolute) => "request path must start with /",
            GatewayError::BadPath(PathError::InvalidEncoding) => "invalid percent-encoding in path",
            GatewayError::BadPath(PathError::InvalidUtf8) => "path is not valid UTF-8",
            GatewayError::BadPath(PathError::Nul) => "NUL byte in path",
            GatewayError::BadPath(PathError::DoubleEncoding) => "double percent-encoding in path",
            GatewayError::BadPath(PathError::AboveRoot) => "path climbs above the root",
            GatewayError::BadPath(PathError::Control) => "control character in path",
            GatewayError::BadRequest => "malformed request",
            GatewayError::PathNotAllowed => {
                "path contains an encoded slash, backslash or ';' that this route does not accept"
            }
            GatewayError::NoRoute => "no route matches this request",
            GatewayError::TraceNotAllowed => "TRACE is not allowed on this route",
            GatewayError::UriTooLong => "request URI too long",
            GatewayError::HeadersTooLarge => "request headers too large",
            GatewayError::BodyTooLarge => "request body too large",
            GatewayError::SlowClient => "request not received in time",
            GatewayError::ClientClosed => "client closed the connection",
            GatewayError::ClientNotReading => "client stopped reading the response",
            GatewayError::TunnelIdle => "upgraded connection idle past the read timeout",
            GatewayError::UnsupportedTransferCoding => {
                "transfer coding not supported (only chunked)"
            }
            GatewayError::NoInstance => "no healthy instance of the upstream service",
            GatewayError::CircuitOpen => "upstream service is failing; circuit breaker open",
            GatewayError::AtCapacity => "upstream service is at its concurrency limit",
            GatewayError::Overloaded => "the gateway is at its limit of requests in flight",
            GatewayError::UpstreamCredentials => {
                "the gateway's credentials for the upstream service are unavailable"
            }
            GatewayError::UpstreamUnreachable => "upstream service unreachable",
            GatewayError::UpstreamTimeout => "upstream service timed out",
            GatewayError::UpstreamFailed => "upstream service failed",
            GatewayError::Internal => "internal gateway error",
        }
    }

    /// A pingora error with this gateway error's status, carrying the gateway error as its
    /// cause so [`GatewayError::of`] finds it again.
    pub fn into_pingora(self) -> Box<Error> {
        Error::because(ErrorType::HTTPStatus(self.status()), self.message(), self)
    }

    /// The gateway error a pingora error carries, if a phase of ours raised it.
    pub fn of(e: &Error) -> Option<GatewayError> {
        e.root_cause().downcast_ref::<GatewayError>().copied()
    }
}

/// Classifies a pingora error from proxying into a gateway error and, for upstream
/// failures, the metrics label.
pub fn classify(e: &Error) -> (GatewayError, Option<UpstreamErrorKind>) {
    use ErrorType::*;
    // Decided by a phase of ours (breaker, bulkhead, no instance, body limit).
    if let Some(own) = GatewayError::of(e) {
        let kind = match own {
            GatewayError::CircuitOpen => Some(UpstreamErrorKind::CircuitOpen),
            GatewayError::AtCapacity => Some(UpstreamErrorKind::AtCapacity),
            GatewayError::NoInstance => Some(UpstreamErrorKind::NoInstance),
            _ => None,
        };
        return (own, kind);
    }
    match (e.etype(), e.esource()) {
        // pingora's own: a request body longer than its Content-Length, say.
        (HTTPStatus(413), _) => (GatewayError::BodyTooLarge, None),
        (HTTPStatus(_), _) => (GatewayError::Internal, None),
        (ReadTimedout, ErrorSource::Downstream) => (GatewayError::SlowClient, None),
        (WriteTimedout, ErrorSource::Downstream) => (GatewayError::ClientNotReading, None),
        (ConnectTimedout, _) => (
            GatewayError::UpstreamTimeout,
            Some(UpstreamErrorKind::ConnectTimeout),
        ),
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (
            GatewayError::UpstreamTimeout,
            Some(UpstreamErrorKind::ReadTimeout),
        ),
        // pingora reports some client framing errors (bytes after the end of a request
        // body) as connect errors of the downstream: they are the client's.
        (ConnectError, ErrorSource::Downstream) => (GatewayError::BadRequest, None),
        (ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError, _) => (
            GatewayError::UpstreamUnreachable,
            Some(UpstreamErrorKind::ConnectRefused),
        ),
        (TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError, _) => (
            GatewayError::UpstreamUnreachable,
            Some(UpstreamErrorKind::Tls),
        ),
        (ConnectionClosed | ReadError | WriteError, ErrorSource::Upstream) => (
            GatewayError::UpstreamFailed,
            Some(UpstreamErrorKind::Closed),
        ),
        (_, ErrorSource::Upstream) => {
            (GatewayError::UpstreamFailed, Some(UpstreamErrorKind::Other))
        }
        (ConnectionClosed | ReadError | WriteError | H2Error, ErrorSource::Downstream) => {
            (GatewayError::ClientClosed, None)
        }
        (InvalidHTTPHeader | H1Error | InvalidH2, ErrorSource::Downstream) => {
            (GatewayError::BadRequest, None)
        }
        // A request body that breaks its own framing (bad chunk size, bad trailer).
        (Custom("InvalidChunk" | "InvalidTrailerEnd"), ErrorSource::Downstream) => {
            (GatewayError::BadRequest, None)
        }
        _ => (GatewayError::Internal, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::HeadersTooLarge.status(), 431);
    }

    #[test]
    fn a_gateway_error_survives_the_trip_through_pingora() {
        let e = GatewayError::CircuitOpen.into_pingora();
        assert_eq!(GatewayError::of(&e), Some(GatewayError::CircuitOpen));
        assert_eq!(
            classify(&e),
            (
                GatewayError::CircuitOpen,
                Some(UpstreamErrorKind::CircuitOpen)
            )
        );
        let e = GatewayError::BodyTooLarge.into_pingora();
        assert_eq!(classify(&e).0.status(), 413);
        assert_eq!(
            GatewayError::of(&Error::new(ErrorType::ConnectRefused)),
            None
        );
    }

    #[test]
    fn classification() {
        let mut e = Error::new(ErrorType::ConnectRefused);
        e.as_up();
        assert_eq!(classify(&e).0.status(), 502);
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.as_up();
        assert_eq!(classify(&e).0.status(), 504);
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.as_down();
        assert_eq!(classify(&e).0.status(), 408);
        assert_eq!(
            classify(&Error::new(ErrorType::HTTPStatus(413))).0.status(),
            413
        );
    }
}
