//! Many hot reloads under load: no failed request, memory flat, and the background tasks
//! (health probes, key-set refresh, client-credentials refresh, DNS discovery) neither
//! duplicated nor stopped by the reloads.
//!
//! The short version runs by default (30 reloads in about 15 s); `FICUS_LONG_TESTS=1` runs
//! the full one (100 reloads in about 60 s).

mod common;
mod load;
use common::dnsmasq::Dnsmasq;
use common::*;
use load::{Load, Request};
use serde_json::json;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://idp.soak.test";
const AUDIENCE: &str = "soak-api";
/// The health probe interval: 10 probes per second per instance.
const PROBE_INTERVAL_MS: u64 = 100;
/// How long a probe or key-fetch rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// The client-credentials token lives 4 s (`expires_in`): ficus refreshes it after half of
/// that.
const TOKEN_LIFETIME_SECS: u64 = 4;
const TOKEN_REFRESH: Duration = Duration::from_secs(TOKEN_LIFETIME_SECS / 2);
/// The DNS name of service `named` (dnsmasq answers with TTL 1 s).
const DNS_NAME: &str = "named.soak.test";
/// Resident memory may grow by this much from the 10th reload to the last (allocator
/// slack); a leak of the compiled config per reload would pass it within a few dozen
/// reloads.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// The config of generation `n`: a health-checked service, a JWT policy whose key set
/// expires every second, a service with client credentials whose token is refreshed every
/// [`TOKEN_REFRESH`], a service found through DNS (TTL 1 s), a route to each, and one route
/// whose name changes with `n` (so that every rewrite is a real reload).
fn config(o: &Origin, idp: &Origin, dns: &Dnsmasq, n: usize) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .table("auth.corp", |t| {
            t.set_str("issuer", ISSUER)
                .set_str("jwks", &format!("http://{}/jwks", idp.addr()))
                .set_str("audience", AUDIENCE)
                .set("jwks_refresh", r#"{ min = "1s", max = "1s" }"#);
        })
        .service_with("o", &[o.addr()], |s| {
            s.set(
                "health",
                format!(r#"{{ path = "/health", interval = "{PROBE_INTERVAL_MS}ms", timeout = "500ms" }}"#),
            );
        })
        .service_with("cc", &[o.addr()], |s| {
            s.set(
                "client_credentials",
                format!(
                    "{{ token_url = {}, client_id = \"soak\", client_secret_file = \"gw.secret\" }}",
                    toml_str(&format!("http://{}/token", idp.addr()))
                ),
            );
        })
        .service_with("named", &[], |s| {
            s.set(
                "dns",
                format!(
                    r#"{{ name = "{DNS_NAME}", port = {}, min_ttl = "1s", max_ttl = "1s", resolver = "{}" }}"#,
                    o.addr().port(),
                    dns.addr
                ),
            );
        })
        .route("plain", "/plain/**", "o")
        .route("named", "/named/**", "named")
        .route("cc", "/cc/**", "cc")
        .route_with("secure", "/secure/**", "o", |r| {
            r.set_str("auth", "corp");
        })
        .route(&format!("extra{n}"), &format!("/extra{n}/**"), "o")
        .build()
}

/// Resident memory of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Events per second of `count` over [`RATE_WINDOW`].
fn rate(count: impl Fn() -> usize) -> f64 {
    let start = count();
    let t = Instant::now();
    std::thread::sleep(RATE_WINDOW);
    (count() - start) as f64 / t.elapsed().as_secs_f64()
}

fn soak(reloads: usize, over: Duration) {
    let key = TestKey::generate("soak");
    let idp = Origin::builder("idp")
        .route(
            "/jwks",
            Reply::json(TestKey::jwks(&[&key])).header("cache-control", "max-age=1"),
        )
        .route(
            "/token",
            Reply::json(json!({
                "access_token": "soak-token", "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECS,
            })),
        )
        .start();
    let fetches = |path: &str| {
        idp.received()
            .iter()
            .filter(|r| r.path_only() == path)
            .count()
    };
    let o = Origin::start("o");
    let dns = Dnsmasq::start();
    dns.set_hosts(DNS_NAME, &[o.addr().ip()]);
    let lookups = || dns.log().matches(&format!("query[A] {DNS_NAME}")).count();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.secret"), "soak-secret\n").unwrap();
    let gw = Gateway::builder(&config(&o, &idp, &dns, 0))
        .dir(dir)
        .start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = key.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "soak", "iat": now, "exp": now + 3600,
    }));
    let secure = wait_for_keys(&gw, "/secure/x", &token);
    assert_eq!(secure.status, 200, "{}", secure.text());

    let load = Load::start(
        gw.listen,
        vec![
            Request::get("/plain/a"),
            Request::get("/secure/b").header("authorization", &format!("Bearer {token}")),
            Request::get("/cc/c"),
            Request::get("/named/d"),
        ],
        200,
        3,
        1,
    );
    let probes_before = rate(|| o.health_checks());
    let fetches_before = rate(|| fetches("/jwks"));
    let (jwks_at_start, tokens_at_start) = (fetches("/jwks"), fetches("/token"));
    let lookups_at_start = lookups();

    let pause = over / reloads as u32;
    let mut rss_early = 0;
    let started = Instant::now();
    for n in 1..=reloads {
        gw.reload(&config(&o, &idp, &dns, n));
        if n == 10.min(reloads) {
            rss_early = rss_kib(gw.pid());
        }
        // Paced to spread the reloads over `over`, not to wait for anything.
        if let Some(rest) = (started + pause * n as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    let took = started.elapsed();
    assert_eq!(gw.generation(), 1 + reloads as u64);
    let jwks_during = fetches("/jwks") - jwks_at_start;
    let tokens_during = fetches("/token") - tokens_at_start;
    let lookups_during = lookups() - lookups_at_start;

    let probes_after = rate(|| o.health_checks());
    let fetches_after = rate(|| fetches("/jwks"));
    let rss_end = rss_kib(gw.pid());
    let tally = load.stop();
    eprintln!(
        "{reloads} reloads in {took:?}; load {tally:?}; health probes/s {probes_before:.1} -> \
         {probes_after:.1}; JWKS fetches/s {fetches_before:.2} -> {fetches_after:.2}; during \
         the reloads {jwks_during} JWKS fetches, {tokens_during} token requests and \
         {lookups_during} DNS lookups; RSS \
         after reload 10 {rss_early} KiB, at the end {rss_end} KiB"
    );

    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.reasons);
    assert!(tally.ok > 1000, "too little load: {tally:?}");
    // One prober per instance whatever the number of reloads: at most one probe per
    // interval (the next one is due an interval after the last ended), and the same rate
    // after the reloads as before; a second prober would double it.
    let most = 1000.0 / PROBE_INTERVAL_MS as f64 * 1.2;
    assert!(
        probes_before > 2.0 && probes_before < most,
        "health probes before the reloads: {probes_before:.1}/s (at most {most}/s)"
    );
    assert!(
        probes_after > probes_before * 0.65 && probes_after < probes_before * 1.45,
        "health probes went from {probes_before:.1}/s to {probes_after:.1}/s"
    );
    // One key-set refresher: about one fetch a second (max-age=1), before and after.
    assert!(
        fetches_after < 2.0 && fetches_after < fetches_before * 1.5 + 0.5,
        "JWKS fetches per second went from {fetches_before:.2} to {fetches_after:.2}"
    );
    // Over the whole reload phase: one key-set fetch a second and one token request per
    // refresh interval, as from one refresher each (a second one would double them, a
    // refresher lost in a reload would stop them).
    let secs = took.as_secs_f64();
    assert!(
        (jwks_during as f64) <= secs * 1.3 + 2.0 && (jwks_during as f64) >= secs * 0.5,
        "{jwks_during} JWKS fetches in {secs:.0} s of reloads"
    );
    let token_refreshes = secs / TOKEN_REFRESH.as_secs_f64();
    assert!(
        (tokens_during as f64) <= token_refreshes * 1.3 + 2.0
            && (tokens_during as f64) >= token_refreshes * 0.5,
        "{tokens_during} token requests in {secs:.0} s of reloads (one refresh per {TOKEN_REFRESH:?})"
    );
    assert!(
        (lookups_during as f64) <= secs * 1.3 + 2.0 && (lookups_during as f64) >= secs * 0.5,
        "{lookups_during} DNS lookups of {DNS_NAME} (TTL 1 s) in {secs:.0} s of reloads"
    );
    assert!(
        rss_end <= rss_early + RSS_SLACK_KIB,
        "RSS grew from {rss_early} KiB (reload 10) to {rss_end} KiB (reload {reloads})"
    );
}

#[test]
fn many_reloads_under_load() {
    if std::env::var_os("FICUS_LONG_TESTS").is_some() {
        soak(100, Duration::from_secs(60));
    } else {
        soak(30, Duration::from_secs(15));
    }
}
