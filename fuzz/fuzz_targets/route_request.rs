//! Path normalization and routing: `normalize` on any bytes, and `route_request` (what the
//! proxy and `ficus explain` call) on any HTTP/1 request head, against the route table in
//! `fuzz/fixtures/routes.toml`.
//!
//! Checked, besides "no panic":
//! - a normalized path is a fixed point: written in wire form and normalized again, it
//!   comes back unchanged;
//! - a normalized path holds no `%` followed by two hex digits (a second decoder would
//!   read an escape the gateway never saw: the double-encoding trick `normalize` refuses);
//! - a routed request's upstream target is one request-line token (no space or control
//!   byte can be smuggled into the upstream request line), starts with `/`,
//!   and a rewriting route's pattern has captures for the path it matched.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use ficus::config::Config;
use ficus::proxy::route::route_request;
use ficus::router::normalize::{encode_path, normalize, split_target};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(ficus_fuzz::routing_config)
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// The properties every normalized path has.
fn check_normalized(raw: &[u8], path: &str) {
    assert!(path.starts_with('/'), "{raw:?} normalized to {path:?}");
    let b = path.as_bytes();
    for i in memchr_iter_percent(b) {
        assert!(
            !(b.get(i + 1).copied().is_some_and(is_hex)
                && b.get(i + 2).copied().is_some_and(is_hex)),
            "{:?} normalized to {path:?}, which a second decoder decodes again",
            String::from_utf8_lossy(raw)
        );
    }
    let mut wire = String::new();
    encode_path(path, &mut wire);
    match normalize(wire.as_bytes()) {
        Ok(again) => assert_eq!(
            again.path, path,
            "{raw:?}: the wire form {wire:?} of {path:?} normalizes to {:?}",
            again.path
        ),
        Err(e) => panic!("{raw:?}: the wire form {wire:?} of {path:?} is refused: {e}"),
    }
}

fn memchr_iter_percent(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
    b.iter()
        .enumerate()
        .filter(|(_, &c)| c == b'%')
        .map(|(i, _)| i)
}

fuzz_target!(|data: &[u8]| {
    // The normalizer alone, on the input as a request target.
    let (path, _query) = split_target(data);
    if let Ok(n) = normalize(path) {
        check_normalized(path, &n.path);
    }
    // The whole routing decision, on the input as a request head.
    let Some((req, _)) = ficus_fuzz::parse_head(data) else {
        return;
    };
    let cfg = config();
    let Ok(routed) = route_request(&req, cfg) else {
        return;
    };
    check_normalized(req.raw_path(), &routed.path);
    let route = cfg.router.route(routed.index);
    if route.rewrite.is_some() {
        assert!(
            route.pattern.captures(&routed.path).is_some(),
            "route {} matched {:?} but its pattern captures nothing there",
            route.name,
            routed.path
        );
    }
    if let Some(target) = &routed.target {
        assert!(target.starts_with('/'), "upstream target {target:?}");
        assert!(
            target.bytes().all(|b| b > b' ' && b != 0x7f),
            "upstream target {target:?} for {:?} is not one request-line token",
            String::from_utf8_lossy(req.raw_path())
        );
    }
});
