//! What `ficus check` says about rate limits: every bad value at its line and column with
//! a hint, unknown policies with did-you-mean (a bad `[gateway]` default once, not once per
//! route), and never a password it was shown.

mod common;
use common::*;

const BASE: &str = r#"[gateway]
listen = ["127.0.0.1:18080"]
admin = "127.0.0.1:19901"
rate_limit = "per_clinet"

[rate_limits.per_client]
limits = [
  { key = "client-ip", rate = "100/sec", burst = 0 },
  { key = ["route", "header:X Key"], rate = "0/s" },
]
headers = "sometimes"

[rate_limits.partners]
store = "redis"
redis = "redis://app:s3cret-pw@127.0.0.1:6379/0"
on_store_error = "fail-opn"
limits = [{ key = "claims:client_id", rate = "6000/min", burst = 100 }]

[services.o]
instances = ["127.0.0.1:8081"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"

[[routes]]
name = "b"
match = { path = "/b/**" }
service = "o"

[[routes]]
name = "c"
match = { path = "/c/**" }
service = "o"
rate_limit = "partner"
"#;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("routes.toml");
    std::fs::write(&p, text).unwrap();
    let (code, out, err) = ficus(&["check", p.to_str().unwrap()]);
    (
        code,
        format!("{out}\n{err}").replace(&p.display().to_string(), "routes.toml"),
    )
}

/// The line of `out` reporting `key`, which must sit at `line:col`.
#[track_caller]
fn reported(out: &str, line: usize, col: usize, key: &str) -> String {
    let at = format!("routes.toml:{line}:{col}: error:");
    let hit = out
        .lines()
        .position(|l| l.starts_with(&at) && l.contains(&format!("(key `{key}`)")))
        .unwrap_or_else(|| panic!("no error for `{key}` at {line}:{col} in:\n{out}"));
    let lines: Vec<&str> = out.lines().collect();
    format!("{}\n{}", lines[hit], lines.get(hit + 1).unwrap_or(&""))
}

#[test]
fn check_reports_every_rate_limit_error_at_its_position() {
    let (code, out) = check(BASE);
    assert_eq!(code, 2, "{out}");
    let e = reported(&out, 8, 11, "rate_limits.per_client.limits[0].key");
    assert!(e.contains("`client-ip` is not a rate-limit key"), "{e}");
    assert!(e.contains("hint: did you mean `client_ip`?"), "{e}");
    let e = reported(&out, 8, 31, "rate_limits.per_client.limits[0].rate");
    assert!(e.contains("`100/sec` has an unknown unit"), "{e}");
    assert!(e.contains("N/s, N/min or N/h"), "{e}");
    let e = reported(&out, 8, 50, "rate_limits.per_client.limits[0].burst");
    assert!(e.contains("burst 0 admits nothing"), "{e}");
    let e = reported(&out, 9, 21, "rate_limits.per_client.limits[1].key[1]");
    assert!(e.contains("`X Key` is not a valid header name"), "{e}");
    let e = reported(&out, 9, 45, "rate_limits.per_client.limits[1].rate");
    assert!(e.contains("the count must be at least 1"), "{e}");
    let e = reported(&out, 11, 11, "rate_limits.per_client.headers");
    assert!(e.contains("\"refusals\" or \"always\" or \"off\""), "{e}");
    let e = reported(&out, 15, 9, "rate_limits.partners.redis");
    assert!(e.contains("the Redis URL holds a password"), "{e}");
    assert!(e.contains("redis_password_file"), "{e}");
    assert!(
        !out.contains("s3cret-pw"),
        "the password was printed:\n{out}"
    );
    let e = reported(&out, 16, 18, "rate_limits.partners.on_store_error");
    assert!(e.contains("\"fail-open\" or \"fail-closed\""), "{e}");
    let e = reported(&out, 17, 19, "rate_limits.partners.limits[0].key");
    assert!(e.contains("did you mean `claim:client_id`?"), "{e}");
    // Unknown policies: the route's own, and the gateway default once for routes a and b.
    let e = reported(&out, 36, 14, "routes[2].rate_limit");
    assert!(e.contains("did you mean `partners`?"), "{e}");
    let e = reported(&out, 4, 14, "gateway.rate_limit");
    assert!(e.contains("unknown rate_limits policy `per_clinet`"), "{e}");
    assert!(e.contains("did you mean `per_client`?"), "{e}");
    assert_eq!(out.matches("per_clinet").count(), 1, "{out}");
}

#[test]
fn check_accepts_a_valid_policy_and_refuses_tls_to_redis() {
    let ok = r#"[gateway]
listen = ["127.0.0.1:18080"]
admin = "127.0.0.1:19901"
rate_limit = "per_client"

[rate_limits.per_client]
limits = [
  { key = "client_ip", rate = "100/s", burst = 200 },
  { key = "route", rate = "2000/s", burst = 2000 },
]

[services.o]
instances = ["127.0.0.1:8081"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"

[[routes]]
name = "health"
match = { path = "/health" }
service = "o"
rate_limit = false
"#;
    let (code, out) = check(ok);
    assert_eq!(code, 0, "{out}");
    let redis = ok.replace(
        "[rate_limits.per_client]\n",
        "[rate_limits.per_client]\nstore = \"redis\"\nredis = \"redis://127.0.0.1:6379/0\"\nredis_password_env = \"FICUS_TEST_UNSET_VAR\"\n",
    );
    let (code, out) = check(&redis);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("environment variable `FICUS_TEST_UNSET_VAR` is not set"),
        "{out}"
    );
    let redis = redis.replace("redis_password_env = \"FICUS_TEST_UNSET_VAR\"\n", "");
    // A Redis policy checks without Redis running: `check` never connects.
    let (code, out) = check(&redis);
    assert_eq!(code, 0, "{out}");
    let tls = redis.replace("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379/0");
    let (code, out) = check(&tls);
    assert_eq!(code, 2, "{out}");
    reported(&out, 8, 9, "rate_limits.per_client.redis");
    assert!(
        out.contains("`rediss://` (TLS to Redis) is not supported"),
        "{out}"
    );
    assert!(out.contains("1 error(s)"), "{out}");
}

/// QA D3: the "not used" warning names the route key that would use the policy.
#[test]
fn an_unused_policy_is_a_warning_naming_the_route_key() {
    let (code, out) = check(
        r#"[rate_limits.spare]
limits = [{ key = "client_ip", rate = "10/s" }]

[services.o]
instances = ["127.0.0.1:8081"]

[[routes]]
name = "a"
match = { path = "/a/**" }
service = "o"
"#,
    );
    assert_eq!(code, 1, "warnings only: {out}");
    assert!(
        out.contains("rate_limits policy `spare` is not used by any route"),
        "{out}"
    );
    assert!(out.contains("rate_limit = \"spare\""), "{out}");
    assert!(!out.contains("rate_limits = \"spare\""), "{out}");
}
