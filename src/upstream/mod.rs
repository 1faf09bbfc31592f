//! Upstream connection details: peer templates (address, TLS, SNI, CA, pool idle time),
//! per-attempt timeouts and retry policy (`attempt.rs`), and the smooth weighted round-robin
//! schedule; the service's own OAuth2 token toward upstreams (`credentials`).
//!
//! Each instance carries a ready-made [`HttpPeer`] template so the request path only clones
//! it. Which instance to use is decided by the registry (src/registry).

mod attempt;
pub mod credentials;

pub use attempt::{RetryPolicy, Timeouts};

use pingora_core::protocols::l4::ext::TcpKeepalive;
use pingora_core::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Built-in upstream timeouts, used when neither the route nor the service sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keep-alive on upstream connections: a pooled connection whose peer vanished (host
/// gone, a middlebox dropped the flow) is detected by the kernel after about
/// idle + interval × count, without a timer per request in the gateway.
pub const UPSTREAM_KEEPALIVE: TcpKeepalive = TcpKeepalive {
    idle: Duration::from_secs(60),
    interval: Duration::from_secs(10),
    count: 3,
    #[cfg(target_os = "linux")]
    user_timeout: Duration::from_secs(0),
};

/// Upstream TLS settings of a service.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub sni: String,
    pub verify: bool,
    /// DER certificates of a private CA, if configured.
    pub ca: Option<Vec<Vec<u8>>>,
}

/// A peer for one attempt: the instance's template with the effective timeouts.
/// `start` is when the request arrived, so `total` bounds the wait for the response head
/// from the start of the request (the clock is only read when a total is set).
pub fn peer_with_timeouts(template: &HttpPeer, t: Timeouts, start: Instant) -> Box<HttpPeer> {
    let mut peer = Box::new(template.clone());
    let connect = t.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let mut read = t.read.unwrap_or(DEFAULT_READ_TIMEOUT);
    let mut connect_total = connect;
    if let Some(total) = t.total {
        let left = total
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        read = read.min(left);
        connect_total = connect_total.min(left);
    }
    peer.options.connection_timeout = Some(connect_total);
    peer.options.total_connection_timeout = Some(connect_total + connect);
    peer.options.read_timeout = Some(read);
    peer.options.write_timeout = Some(read);
    peer
}

/// The peer template of an instance: address, TLS and SNI, pool idle time, CA.
///
/// Without `pool_idle`, a pooled connection stays until the upstream closes it (pingora
/// watches every idle connection and drops it the moment the peer closes) or the pool
/// evicts it; an idle timeout costs one timer registration per request, see
/// docs/performance.md.
pub fn make_peer(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    pool_idle: Option<Duration>,
) -> HttpPeer {
    let mut peer = match tls {
        // Without a configured name (only allowed with `verify = false`), present the
        // address: rustls cannot start a handshake with an empty server name.
        Some(t) if t.sni.is_empty() => HttpPeer::new(addr, true, addr.ip().to_string()),
        Some(t) => HttpPeer::new(addr, true, t.sni.clone()),
        None => HttpPeer::new(addr, false, String::new()),
    };
    peer.options.idle_timeout = pool_idle;
    // The gateway removes hop-by-hop headers itself, in one pass over the names
    // (`proxy::headers::hop_by_hop::strip_hop_by_hop_request`); pingora's standard pass
    // would look each of ten names up again on every request.
    peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
    peer.options.tcp_keepalive = Some(UPSTREAM_KEEPALIVE.clone());
    if let Some(t) = tls {
        peer.options.verify_cert = t.verify;
        peer.options.verify_hostname = t.verify;
        // pingora pools connections by peer hash, which covers the address, SNI and the
        // verify flags but not the trusted CAs: without this, a service trusting only its
        // own CA could reuse a connection another service verified against a different
        // one (or the system roots), and a reload changing `ca_file` would keep using
        // connections verified under the old one.
        peer.group_key = trust_key(t.ca.as_deref());
        if let Some(ca) = &t.ca {
            use pingora_core::utils::tls::{parse_x509, WrappedX509};
            let certs: Vec<WrappedX509> = ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            peer.options.ca = Some(Arc::from(certs.into_boxed_slice()));
        }
    }
    peer
}

/// A pool key for a set of trusted CA certificates (`None`: the system roots).
fn trust_key(ca: Option<&[Vec<u8>]>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match ca {
        None => 0u8.hash(&mut h),
        Some(certs) => {
            1u8.hash(&mut h);
            for c in certs {
                c.hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Upper bound on the precomputed schedule; weights are scaled down past it.
const MAX_SCHEDULE: u64 = 4096;

/// nginx's smooth weighted round robin, unrolled into a fixed sequence: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c, so a heavy instance never gets a burst.
pub fn smooth_wrr_schedule(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return Vec::new();
    }
    // Keep the schedule bounded for absurd weights; proportions survive the scaling.
    let scale = total.div_ceil(MAX_SCHEDULE);
    let weights: Vec<i64> = weights
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                (u64::from(w) / scale).max(1) as i64
            }
        })
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_is_proportional_and_interleaved() {
        let s = smooth_wrr_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wrr_schedule(&[1, 2]), vec![1, 0, 1]);
        assert!(smooth_wrr_schedule(&[]).is_empty());
        assert!(smooth_wrr_schedule(&[0]).is_empty());
    }

    #[test]
    fn huge_weights_stay_bounded() {
        let s = smooth_wrr_schedule(&[u32::MAX, 1]);
        assert!(s.len() <= 4097);
        assert!(s.contains(&1));
    }
}
