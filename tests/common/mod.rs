//! The shared test harness; tests/README.md tells how to use it.
//!
//! * [`process`]: one fixture for every real program (spawn, readiness probe, logs, stop).
//! * [`gateway`]: the `ficus` binary on a config, on ports it picked and reported.
//! * [`origin`]: the in-process origin with per-path handlers.
//! * [`config`]: routes.toml from a builder.
//! * [`wire`], [`ws`]: a raw HTTP/1.1 client and WebSocket frames, by hand.
//! * [`registry`], [`metrics`]: reading `/registry` and `/metrics`.
//! * [`tls`]: a test CA and an HTTPS front. [`dnsmasq`], [`browser`]: the real DNS server
//!   and headless Chromium.
//! * [`cors_page`]: a page on its own origin whose script fetches through the gateway in
//!   Chromium, for CORS tests.
//! * [`auth`]: what the authentication tests share (tokens sent, the answers the spec fixes).
//! * [`redis`]: a real redis-server (stop, start again, pause) and raw commands to it.
//! * [`oidc`]: a real OpenID provider (npm oidc-provider under Node); [`jwt`]: tokens
//!   tests sign themselves.
#![allow(dead_code, unused_imports)]

pub mod auth;
pub mod browser;
pub mod config;
pub mod cors_page;
pub mod dnsmasq;
pub mod gateway;
pub mod jwt;
pub mod metrics;
pub mod oidc;
pub mod origin;
pub mod process;
pub mod redis;
pub mod registry;
pub mod tls;
pub mod wire;
pub mod ws;

pub use auth::*;
pub use config::*;
pub use cors_page::*;
pub use gateway::*;
pub use jwt::*;
pub use metrics::*;
pub use oidc::*;
pub use origin::*;
pub use process::*;
pub use redis::*;
pub use registry::*;
pub use tls::*;
pub use wire::*;
pub use ws::*;

use std::time::{Duration, Instant};

/// Poll `f` until it returns `Some`, or `None` after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `ficus ARGS` (30 s timeout) and return (exit code, stdout, stderr).
pub fn ficus(args: &[&str]) -> (i32, String, String) {
    let mut p = ProcessBuilder::new("ficus", bin())
        .args(args)
        .env("NO_COLOR", "1")
        .start();
    let status = p.wait_exit(CLI_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "`ficus {}` did not exit within {CLI_TIMEOUT:?}\n{}",
            args.join(" "),
            p.logs_excerpt()
        )
    });
    (status.code().unwrap_or(-1), p.stdout(), p.stderr())
}

/// `ficus check` on `text` written to a routes file of its own: (exit code, stdout and
/// stderr together).
pub fn check_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("routes.toml");
    std::fs::write(&p, text).unwrap();
    let (code, out, err) = ficus(&["check", p.to_str().unwrap()]);
    (code, format!("{out}\n{err}"))
}

/// The `orders` route's shadow record (`GET /shadow/orders`).
pub fn report(gw: &Gateway) -> serde_json::Value {
    let r = gw.admin_get("/shadow/orders").expect("admin answers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits until the route's record has `n` outcomes (compared, errors, timeouts, dropped,
/// too large): copies are compared after the client has its answer.
pub fn wait_outcomes(gw: &Gateway, n: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = poll_until(Duration::from_secs(10), || {
        last = report(gw);
        let total: u64 = [
            "compared",
            "shadow_errors",
            "shadow_timeouts",
            "dropped",
            "too_large_answers",
        ]
        .iter()
        .map(|k| last[k].as_u64().unwrap_or(0))
        .sum();
        (total >= n).then_some(())
    });
    assert!(
        done.is_some(),
        "the record never reached {n} outcomes: {last:#}"
    );
    last
}

/// An origin that answers every request `{"ok": true}`.
pub fn ok_origin(name: &str) -> Origin {
    Origin::builder(name)
        .fallback(Handler::new(|_| {
            Reply::json(serde_json::json!({"ok": true}))
        }))
        .start()
}

/// Services `monolith` (primary) and `orders-v2` (shadow), a route `orders` on
/// `/orders/**` served by the monolith with `shadow = SHADOW`.
pub fn shadow_config(mono: &Origin, v2: &Origin, shadow: &str) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("monolith", &[mono.addr()])
        .service("orders-v2", &[v2.addr()])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.set("shadow", shadow);
        })
        .route("other", "/other/**", "monolith")
        .build()
}

/// A gateway with one catch-all route `all` to a service named after `o`, after `edit` of
/// that config (gateway keys, limits, `edit_route("all", ...)`).
pub fn catch_all_gateway(o: &Origin, edit: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Gateway {
    let cfg = ConfigBuilder::new()
        .service(o.name(), &[o.addr()])
        .catch_all(o.name());
    Gateway::start(&edit(cfg).build())
}
