//! The client connection around pingora's HTTP sessions: the request-head layer that
//! reads each head under a deadline and enforces the head limits ([`HeaderDeadline`]), and
//! the streams it hands to pingora, which give back the bytes it already read
//! ([`replay::Replay`]) and send what pingora leaves in the write buffer whenever the proxy
//! waits ([`flush_before_read::FlushBeforeRead`]). It is about connections: it wraps
//! whatever HTTP app it is given and knows nothing about routes or upstreams.

pub mod flush_before_read;
pub mod header_deadline;
pub mod replay;

pub use header_deadline::HeaderDeadline;
