//! What HTTP's grammar allows in the parts of a request the gateway reads itself, checked
//! on the bytes as they arrived. The proxy uses it to refuse a request and `ficus explain`
//! to say that it would, so both apply the same rule. What to do about a value that fails
//! is the caller's policy: nothing here knows about routes, upstreams or the config.

pub mod host;
