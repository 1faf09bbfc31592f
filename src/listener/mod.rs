//! The client connection around pingora's HTTP sessions: the request-head layer that
//! reads each head under a deadline and enforces the head limits ([`HeaderDeadline`]), and
//! the streams it hands to pingora, which give back the bytes it already read
//! ([`replay::Replay`]), send what pingora leaves in the write buffer whenever the proxy
//! waits ([`flush_before_read::FlushBeforeRead`]), keep a pipelined next request for the
//! head layer ([`hold_next::HoldNext`]), and cut HTTP/2 connections that flood
//! control frames ([`h2_guard::H2Guard`]). It also finishes TLS handshakes under a deadline
//! ([`tls_handshake`]), after the cap on connections per client address
//! ([`client_conns`]). It is about connections: it wraps whatever HTTP app it is given
//! and knows nothing about routes or upstreams.

pub mod client_conns;
pub mod flush_before_read;
pub mod h2_cuts;
pub mod h2_frames;
pub mod h2_guard;
pub mod head;
pub mod header_deadline;
pub mod hold_next;
pub mod replay;
pub mod request_end;
pub mod tls_handshake;

pub use header_deadline::HeaderDeadline;
