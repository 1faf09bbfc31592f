//! `[gateway.limits]` keys that bound what requests may hold at once: HTTP/2 streams per
//! connection, requests holding an upstream connection (per client connection, per client
//! address and for the whole gateway), requests waiting for one, and how long a response
//! may make no progress toward its client.
//!
//! Compiled here so `limits.rs` only places the result; enforced in
//! `src/proxy/in_flight.rs` and `src/server.rs` (the HTTP/2 settings).

use std::time::Duration;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::raw::RawLimits;

/// What requests may hold in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightLimits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` of client HTTP/2 connections (from start; a reload
    /// does not change connections already open).
    pub h2_max_concurrent_streams: u32,
    /// Requests holding (or about to open) an upstream connection, gateway-wide. A request
    /// over it gets 503 with `Retry-After`.
    pub max_upstream_requests: usize,
    /// Requests of one client connection (HTTP/2 streams) holding an upstream connection at
    /// once; the others wait for a slot, at most `client_stall_timeout`, then get 503.
    pub max_upstream_requests_per_connection: usize,
    /// Requests of one client address (the peer, or the address taken from
    /// `X-Forwarded-For` when the peer is a trusted proxy) holding an upstream connection at
    /// once, and also waiting for one; over it, 503 at once. It also turns on the fair
    /// share and the reserve (`src/proxy/fair_share.rs`). 0: no cap per client, and
    /// neither of those.
    pub max_upstream_requests_per_client: usize,
    /// Requests waiting for a slot of their connection, gateway-wide; one more gets 503 at
    /// once instead of waiting. 0: a request never waits.
    pub max_waiting_upstream_requests: usize,
    /// The longest one piece of a proxied response (what one upstream read returned, at
    /// most 64 KiB) may take to reach the client; then the stream is reset and its upstream
    /// connection closed. Never longer than `send_timeout`.
    pub client_stall_timeout: Duration,
}

impl Default for InFlightLimits {
    fn default() -> Self {
        InFlightLimits {
            // pingora's and nginx's order of magnitude (100 and 128): enough for a browser's
            // page load, which queues the rest on its side.
            h2_max_concurrent_streams: 100,
            // Each stalled proxied stream can hold about 300 KiB in the gateway (pingora's
            // read buffer and task pipe) and one upstream socket: 2,048 bound that to about
            // 600 MiB and as many sockets, and stay under a 4,096 descriptor limit.
            max_upstream_requests: 2048,
            // A browser's page load on one connection rarely needs more at once; what one
            // client may hold over all its connections is `max_upstream_requests_per_client`.
            max_upstream_requests_per_connection: 16,
            max_upstream_requests_per_client: per_client_default(2048),
            // A waiting stream costs about 23 KB (its task, the request head and context):
            // 2,048 of them about 50 MB, whatever the number of connections.
            max_waiting_upstream_requests: 2048,
            client_stall_timeout: Duration::from_secs(15),
        }
    }
}

/// The share of the gateway-wide cap one client address may hold when
/// `max_upstream_requests_per_client` is not set: a quarter, so that at least four
/// addresses are needed to take every slot, while one busy address behind a NAT still has
/// hundreds.
const PER_CLIENT_SHARE: usize = 4;

fn per_client_default(max_upstream_requests: usize) -> usize {
    (max_upstream_requests / PER_CLIENT_SHARE).max(1)
}

/// Reads the keys of `[gateway.limits]` that belong here; zero is refused for each, except
/// for the per-client cap (0: off) and the waiting bound (0: never wait).
pub(super) fn compile(c: &mut Compiler<'_>, l: &RawLimits) -> InFlightLimits {
    let d = InFlightLimits::default();
    let max_upstream_requests = at_least_one(
        c,
        &l.max_upstream_requests,
        "max_upstream_requests",
        "every proxied request would be refused",
    )
    .unwrap_or(d.max_upstream_requests);
    InFlightLimits {
        h2_max_concurrent_streams: at_least_one(
            c,
            &l.h2_max_concurrent_streams,
            "h2_max_concurrent_streams",
            "no HTTP/2 client could send a request",
        )
        .unwrap_or(d.h2_max_concurrent_streams),
        max_upstream_requests,
        max_upstream_requests_per_connection: at_least_one(
            c,
            &l.max_upstream_requests_per_connection,
            "max_upstream_requests_per_connection",
            "every proxied request would be refused",
        )
        .unwrap_or(d.max_upstream_requests_per_connection),
        max_upstream_requests_per_client: l
            .max_upstream_requests_per_client
            .as_ref()
            .map_or(per_client_default(max_upstream_requests), |v| *v.get_ref()),
        max_waiting_upstream_requests: l
            .max_waiting_upstream_requests
            .as_ref()
            .map_or(d.max_waiting_upstream_requests, |v| *v.get_ref()),
        client_stall_timeout: c
            .positive_duration(
                &l.client_stall_timeout,
                "gateway.limits.client_stall_timeout",
                "every proxied response would be cut as soon as the client's buffers fill",
            )
            .unwrap_or(d.client_stall_timeout),
    }
}

fn at_least_one<T: Copy + PartialEq + From<u8>>(
    c: &mut Compiler<'_>,
    v: &Option<Spanned<T>>,
    key: &str,
    zero_means: &str,
) -> Option<T> {
    let v = v.as_ref()?;
    if *v.get_ref() == T::from(0) {
        c.d.error(
            span_of(v),
            format!("gateway.limits.{key}"),
            format!("{key} is 0: {zero_means}; it must be at least 1"),
        );
        return None;
    }
    Some(*v.get_ref())
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::super::diag::Severity;
    use super::super::testing::{errors, BASE};
    use super::*;
    use std::path::Path;

    #[test]
    fn keys_are_read_and_default() {
        let src = format!(
            "[gateway.limits]\nh2_max_concurrent_streams = 8\nmax_upstream_requests = 50\n\
             max_upstream_requests_per_connection = 4\nmax_upstream_requests_per_client = 0\n\
             max_waiting_upstream_requests = 7\nclient_stall_timeout = \"2s\"\n{BASE}"
        );
        let cfg = compile(Path::new("routes.toml"), &src).unwrap();
        assert_eq!(
            cfg.gateway.limits.in_flight,
            InFlightLimits {
                h2_max_concurrent_streams: 8,
                max_upstream_requests: 50,
                max_upstream_requests_per_connection: 4,
                max_upstream_requests_per_client: 0,
                max_waiting_upstream_requests: 7,
                client_stall_timeout: Duration::from_secs(2),
            }
        );
        // The per-client cap follows the gateway-wide cap unless it is set.
        let src = format!("[gateway.limits]\nmax_upstream_requests = 100\n{BASE}");
        let cfg = compile(Path::new("routes.toml"), &src).unwrap();
        assert_eq!(
            cfg.gateway
                .limits
                .in_flight
                .max_upstream_requests_per_client,
            25
        );
        let dflt = compile(Path::new("routes.toml"), BASE).unwrap();
        assert_eq!(dflt.gateway.limits.in_flight, InFlightLimits::default());
    }

    #[test]
    fn zero_is_refused_at_its_key() {
        for (key, value) in [
            ("h2_max_concurrent_streams", "0"),
            ("max_upstream_requests", "0"),
            ("max_upstream_requests_per_connection", "0"),
            ("client_stall_timeout", "\"0s\""),
        ] {
            let d: Vec<_> = errors(&format!("[gateway.limits]\n{key} = {value}\n{BASE}"))
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            assert_eq!(d.len(), 1, "{key}: {d:#?}");
            assert_eq!(d[0].key, format!("gateway.limits.{key}"));
            assert_eq!(d[0].line, 2, "{key}: {d:#?}");
        }
    }
}
