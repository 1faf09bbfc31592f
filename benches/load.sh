#!/usr/bin/env bash
# ficus load benchmark: ficus side by side with its references, on a 2-core box.
#
# Method (see docs/performance.md): the load generator alone on core 0, the
# upstream and the proxy under test on core 1, one worker per proxy; every
# scenario runs in every round, round-robin, and each scenario is reported as
# its median and as ratios to nginx-as-proxy (and to bare pingora) measured in
# the same round.
#
# Scenarios:
#   direct     wrk -> upstream nginx (the ceiling)
#   nginx      wrk -> nginx reverse proxy (1 worker, upstream keepalive 64) -> upstream
#   bare       wrk -> bare-pingora (1 thread; benches/bare-pingora) -> upstream (the framework's floor)
#   bare-full  the same bare-pingora process, sent ficus-full's request (its 1.4 KiB
#              Authorization header and Origin): the floor for that request, so that
#              ficus-full ÷ bare-full is ficus's own cost and not the bigger request's
#   ficus      wrk -> ficus (threads = 1, access_log = "off", one plain route) -> upstream
#   ficus-log  same as ficus with access_log = "json" written to a file
#   ficus-canonical  same as ficus with preserve_header_case = false (header names in
#              canonical case, no second table of original spellings to keep up)
#   ficus-registry  same as ficus with the registry's per-request bookkeeping switched on:
#              active health probes, outlier detection, a circuit breaker, a bulkhead and
#              least-request balancing (the service-registry issue's "must not show" case)
#   ficus-jwt  the plain route with auth = "bench": an [auth.bench] jwt policy with a local
#              RSA 2048 public key (algorithms = ["RS256"], issuer, audience,
#              claims_to_headers = { sub = "X-User-Id" }); wrk and oha send one valid
#              token on every request: after the first, every request is a cache hit
#   ficus-jwt-miss  the same policy with cache_size = 100, and wrk cycles through a pool
#              of JWT_POOL (10,000) distinct valid tokens (benches/jwt-pool.lua): nearly
#              every request is a full RS256 verification (the share of cache misses is
#              read from /metrics and reported). No oha part: oha cannot vary a header
#              per request.
#   ficus-bearer  the plain route, no policy, and wrk and oha send ficus-jwt's token: what
#              the token's 1.5 KB cost the proxy without any auth work (ficus-jwt ÷
#              ficus-bearer is the auth step alone)
#              The keys and tokens are made at the start by benches/jwt-tokens.js (node).
#              Before measuring, both check that a request with a token gets 200, and
#              that one without a token, or with a bad signature, gets 401.
#   ficus-rl-cors  the plain route with rate_limit = "bench" (a local [rate_limits.bench],
#              key client_ip, 1000000/s, burst 1000000: never hit) and cors = "bench"
#              (origins ["https://app.example.com"], credentials, expose_headers
#              ["X-Request-Id"]); wrk and oha send that allowed Origin on every request
#   ficus-origin  the plain route, no policy, with the same Origin header (ficus-rl-cors ÷
#              ficus-origin is the two policies' cost alone)
#              Before measuring: a request with the Origin gets 200 and (ficus-rl-cors)
#              Access-Control-Allow-Origin, a preflight gets 204, and a short-lived second
#              instance with the same policies at 1/h, burst 1, answers 200 then 429.
#   ficus-rl-redis  the plain route with a Redis-backed [rate_limits.bench] (store = "redis",
#              on_store_error = "fail-closed", client_ip, 1000000/s, burst 1000000: never
#              hit). The script starts its own redis-server (--save '' --appendonly no) on
#              a free loopback port, pinned to SERVER_CPU like ficus (one box: the proxy,
#              its upstream and its store share a core), and reports redis-server's CPU per
#              request next to ficus's. Before measuring: a request gets 200, Redis holds
#              a key, and a second instance at 1/h, burst 1 (Redis db 1) answers 200 then 429.
#   ficus-split  the plain route with split = [{ service = "a", weight = 50 },
#              { service = "b", weight = 50 }] instead of service: two services with the
#              same upstream instance, no sticky key (random placement). Before measuring:
#              /metrics shows ficus_split_requests_total > 0 for both sides after 40
#              requests; per sample, each side's share of the placements is recorded.
#   ficus-shadow  the plain route with shadow = { service = "shadow", sample = 1.0,
#              queue = SHADOW_QUEUE (1024) }, service "shadow" the same upstream
#              instance: the upstream serves every request twice, on the same core as
#              ficus, so the copy's cost shows in ficus's CPU and again in the
#              upstream's (both are in the table). Before measuring: after a
#              few requests GET /shadow/plain (admin) shows compared > 0, matched ==
#              compared, nothing dropped or failed. Before and after every sample the
#              script waits for the copies in flight to finish (in_flight 0; the end of the
#              CPU window is after that wait), and records the sample's copies compared,
#              mismatched, failed and dropped (queue full); /shadow/plain's totals after the
#              run are printed under the summary.
#   ficus-full  the whole stack of issue 13's target on one route: auth = "bench" (ficus-jwt's
#              RS256 policy, one token: cache hits), rate_limit and cors as in ficus-rl-cors,
#              a service of two instances (the upstream nginx listens on a second port)
#              with active health probes and least_request balancing, and the JSON access
#              log written to a file as in ficus-log; wrk and oha send the token and the
#              allowed Origin. Before measuring: 200 with Access-Control-Allow-Origin, 401
#              without the token, and both instances answered (upstream access counts).
#   pingap-log pingap as above with its access log on (`access_log = "DIR combined"`: its
#              combined format, to files under a directory), for ficus-log ÷ pingap-log
#   pingap     pingap (PINGAP_BIN, else pingap on PATH, else $CARGO_TARGET_DIR/pingap/bin/pingap,
#              installed there with `cargo install pingap --version 0.13.1 --locked` when
#              missing: 0.13.1 is the newest release that builds with Rust 1.95) as a plain
#              proxy to the upstream: one location, one upstream, threads = 1, its other
#              settings at their defaults, no access log. The other pingora-based gateway,
#              for ficus ÷ pingap in the same rounds.
#
# Usage: bash benches/load.sh
# Knobs (environment):
#   SCENARIOS   default "direct nginx bare ficus ficus-canonical ficus-registry ficus-log"
#   ROUNDS      default 5
#   DURATION    wrk (and oha) duration per sample, default 10s
#   WARMUP      warm-up before each sample, default 2s
#   CONNS       wrk/oha connections, default 32
#   RATE        oha fixed offered load in requests/s, default 20000
#   OHA         1 (default) to run the fixed-rate latency part when oha is available, 0 to skip it
#   LOADGEN_CPU default 0; SERVER_CPU default 1
#   ALT_BIN     another ficus binary, for the scenario "ficus-alt" (same config as "ficus"):
#               A/B two builds in the same rounds, e.g. before and after a change
#   REQUEST_HEADERS  "minimal" (default: wrk's own request, Host only), a count N (N fields
#               in all, see benches/request-headers.sh) or "browser" (ten
#               headers a browser sends on a page load: User-Agent, Accept, Cookie, ...)
#   JWT_POOL    distinct tokens for ficus-jwt-miss, default 10000
#   SHADOW_QUEUE  ficus-shadow's queue (copies in flight at once), default 1024 (ficus: 1..10000)
#   MAX_STEAL   samples with more CPU steal than this (percent, default 5) are left out of
#               the medians and ratios and listed under the tables
#   RESUMMARIZE path to an earlier run's CSV: print its summary (with this MAX_STEAL), run nothing
#   SKIP_BUILD  1 to use the binaries already in $CARGO_TARGET_DIR/release (default target/release)
#   KEEP_TMP    1 to keep the temp dir (configs, logs) after the run
# Results: a markdown summary on stdout, and the raw samples plus the summary
# under $CARGO_TARGET_DIR/bench-results/ (default target/bench-results/).
set -euo pipefail

SCENARIOS=${SCENARIOS:-"direct nginx bare ficus ficus-canonical ficus-registry ficus-log"}
# shellcheck source=benches/request-headers.sh
source "$(dirname "${BASH_SOURCE[0]}")/request-headers.sh"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
RATE=${RATE:-20000}
OHA=${OHA:-1}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
JWT_POOL=${JWT_POOL:-10000}
MAX_STEAL=${MAX_STEAL:-5}
SHADOW_QUEUE=${SHADOW_QUEUE:-1024}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[load.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '\n[load.sh] ERROR: %s\n\n' "$*" >&2
    exit 1
}
loud() {
    printf '\n[load.sh] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf '[load.sh] !!! %s\n' "$@" >&2
    printf '[load.sh] !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

# "10s" / "2m" / "500ms" / "10" -> whole seconds (rounded up), for timeouts and reports.
to_seconds() {
    python3 -c '
import re, sys, math
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", sys.argv[1])
if not m:
    sys.exit("bad duration: " + sys.argv[1])
v = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
print(max(1, math.ceil(v)))' "$1"
}

# summarize CSV SCENARIOS RATE HAVE_OHA REQUEST_HEADERS: the markdown summary of a run's
# samples. Samples with errors, and samples during which the CPU steal was above MAX_STEAL
# percent, are left out of the medians and ratios (and listed).
summarize() {
    MAX_STEAL=$MAX_STEAL python3 - "$@" <<'PY'
import csv, os, statistics as st, sys

path, scenarios, rate, have_oha = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4] == "1"
request_headers = sys.argv[5]
rows = list(csv.DictReader(open(path)))
f = lambda v: float(v) if v not in ("", None) else None

max_steal = float(os.environ.get("MAX_STEAL") or "inf")
def stolen(r):
    return r.get("steal_pct") not in ("", None) and float(r["steal_pct"]) > max_steal

def samples(sc, tool):
    return [r for r in rows if r["scenario"] == sc and r["tool"] == tool and r["ok"] == "1"
            and not stolen(r)]

def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None

def by_round(sc, tool, key):
    return {r["round"]: f(r[key]) for r in samples(sc, tool) if f(r[key]) is not None}

def ratio(sc, ref, tool, key):
    if ref not in scenarios:
        return "n/a"
    a, b = by_round(sc, tool, key), by_round(ref, tool, key)
    rs = [a[k] / b[k] for k in a if k in b and b[k]]
    if not rs:
        return "n/a"
    return "%.2f (%.2f–%.2f)" % (st.median(rs), min(rs), max(rs))

def num(v, fmt):
    return "–" if v is None else fmt % v

label = {
    "direct": "direct to upstream nginx",
    "nginx": "nginx as proxy",
    "bare": "bare pingora",
    "ficus": "ficus, plain route",
    "ficus-log": "ficus, plain route, JSON access log",
    "ficus-canonical": "ficus, plain route, preserve_header_case = false",
    "ficus-alt": "ALT_BIN (another ficus build), plain route",
    "ficus-registry": "ficus, registry features on",
    "ficus-jwt": "ficus, RS256 JWT route, one token (cache hit)",
    "ficus-jwt-miss": "ficus, RS256 JWT route, token pool (cache miss)",
    "ficus-bearer": "ficus, plain route, no policy, the JWT's Authorization header",
    "ficus-origin": "ficus, plain route, no policy, an Origin header",
    "ficus-rl-cors": "ficus, local rate limit (never hit) + CORS, allowed Origin",
    "ficus-rl-redis": "ficus, Redis rate limit (never hit), redis-server on the server core",
    "ficus-split": "ficus, split 50/50 over two services (same upstream), random placement",
    "ficus-shadow": "ficus, shadow copy of every request (sample 1.0) to the same upstream",
    "bare-full": "bare pingora, sent ficus-full's request (token, Origin)",
    "ficus-full": "ficus, full stack: JWT (hit) + rate limit + CORS + 2 health-checked instances (least_request) + JSON access log",
    "pingap": "pingap 0.13 as a plain proxy (1 thread, access log off)",
    "pingap-log": "pingap 0.13, its combined access log to a file",
}

def diff(sc, ref, tool, key):
    if ref not in scenarios:
        return "n/a"
    a, b = by_round(sc, tool, key), by_round(ref, tool, key)
    ds = [a[k] - b[k] for k in a if k in b]
    if not ds:
        return "n/a"
    return "%+.2f (%+.2f to %+.2f)" % (st.median(ds), min(ds), max(ds))
n_rounds = len({r["round"] for r in rows})
print("wrk -t1 -c32, %d round(s), request headers: %s; medians over successful samples; "
      "ratios are per round (median, min–max). CPU = utime+stime of the server process "
      "(nginx: its worker; direct: the upstream worker) per request. RSS after warm-up."
      % (n_rounds, request_headers))
print()
print("| scenario | ok/rounds | median rps | median p50 | median p99 | median CPU µs/req "
      "| of which user | RSS | rps ÷ nginx-proxy | CPU ÷ nginx-proxy | rps ÷ bare | CPU ÷ bare |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for sc in scenarios:
    s = samples(sc, "wrk")
    n_all = len([r for r in rows if r["scenario"] == sc and r["tool"] == "wrk"])
    rss = med([f(r["rss_kb"]) for r in s])
    print("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        label.get(sc, sc), len(s), n_all,
        num(med([f(r["rps"]) for r in s]), "%.0f"),
        num(med([f(r["p50_us"]) for r in s]), "%.0f µs"),
        num(med([f(r["p99_us"]) for r in s]), "%.0f µs"),
        num(med([f(r["cpu_us_per_req"]) for r in s]), "%.2f"),
        num(med([f(r.get("user_cpu_us_per_req")) for r in s]), "%.2f"),
        num(rss / 1024 if rss else None, "%.1f MiB"),
        ratio(sc, "nginx", "wrk", "rps"), ratio(sc, "nginx", "wrk", "cpu_us_per_req"),
        ratio(sc, "bare", "wrk", "rps"), ratio(sc, "bare", "wrk", "cpu_us_per_req"),
    ))
if "ficus-full" in scenarios and "bare-full" in scenarios:
    print()
    print("ficus-full ÷ bare-full (the same request bytes; ficus's own cost of the full stack): "
          "rps %s, CPU per request %s" % (ratio("ficus-full", "bare-full", "wrk", "rps"),
                                           ratio("ficus-full", "bare-full", "wrk", "cpu_us_per_req")))
if "pingap-log" in scenarios:
    print()
    for sc in ("ficus-log", "ficus-full"):
        if sc in scenarios:
            print("%s ÷ pingap-log (both with an access log): rps %s, CPU per request %s" % (
                sc, ratio(sc, "pingap-log", "wrk", "rps"), ratio(sc, "pingap-log", "wrk", "cpu_us_per_req")))
if "pingap" in scenarios:
    print()
    for sc in ("ficus", "ficus-log", "ficus-full"):
        if sc in scenarios:
            print("%s ÷ pingap: rps %s, CPU per request %s" % (
                sc, ratio(sc, "pingap", "wrk", "rps"), ratio(sc, "pingap", "wrk", "cpu_us_per_req")))
if "ficus" in scenarios and "ficus-registry" in scenarios:
    print()
    print("ficus-registry ÷ ficus: rps %s, CPU per request %s" % (
        ratio("ficus-registry", "ficus", "wrk", "rps"), ratio("ficus-registry", "ficus", "wrk", "cpu_us_per_req")))
if "ficus" in scenarios and "ficus-alt" in scenarios:
    print()
    print("ficus ÷ ficus-alt (this build ÷ ALT_BIN): rps %s, CPU per request %s" % (
        ratio("ficus", "ficus-alt", "wrk", "rps"), ratio("ficus", "ficus-alt", "wrk", "cpu_us_per_req")))
jwt = [sc for sc in ("ficus-bearer", "ficus-jwt", "ficus-jwt-miss") if sc in scenarios]
if jwt and "ficus" in scenarios:
    print()
    print("JWT routes against the plain ficus route, per round (median, min–max); "
          "token cache misses from ficus_auth_cache_total:")
    print()
    print("| scenario | rps ÷ ficus | CPU ÷ ficus | CPU µs/req − ficus | token cache misses |")
    print("|---|---|---|---|---|")
    for sc in jwt:
        mp = med([f(r.get("auth_cache_miss_pct")) for r in samples(sc, "wrk")])
        print("| %s | %s | %s | %s | %s |" % (
            label[sc], ratio(sc, "ficus", "wrk", "rps"), ratio(sc, "ficus", "wrk", "cpu_us_per_req"),
            diff(sc, "ficus", "wrk", "cpu_us_per_req"), num(mp, "%.2f%%")))
    if "ficus-bearer" in jwt and "ficus-jwt" in jwt:
        print()
        print("ficus-jwt ÷ ficus-bearer (the auth step alone, same request bytes): rps %s, CPU %s, "
              "CPU µs/req %s" % (ratio("ficus-jwt", "ficus-bearer", "wrk", "rps"),
                                 ratio("ficus-jwt", "ficus-bearer", "wrk", "cpu_us_per_req"),
                                 diff("ficus-jwt", "ficus-bearer", "wrk", "cpu_us_per_req")))
    if "ficus-jwt" in jwt and "ficus-jwt-miss" in jwt:
        print()
        print("ficus-jwt-miss − ficus-jwt, CPU µs per request (the cost of a verification): %s; "
              "rps ratio %s" % (diff("ficus-jwt-miss", "ficus-jwt", "wrk", "cpu_us_per_req"),
                                ratio("ficus-jwt-miss", "ficus-jwt", "wrk", "rps")))
rl = [sc for sc in ("ficus-origin", "ficus-rl-cors", "ficus-rl-redis") if sc in scenarios]
if rl and "ficus" in scenarios:
    print()
    print("Rate limiting and CORS (issue 11) against the plain ficus route, per round (median, "
          "min–max). \"ficus + redis\" adds redis-server's utime+stime to ficus's; the p50/p99 "
          "differences are oha's at the fixed rate:")
    print()
    print("| scenario | rps ÷ ficus | CPU ÷ ficus | CPU µs/req − ficus | redis-server CPU µs/req "
          "| ficus + redis CPU µs/req − ficus | Redis script calls/req | oha p50 − ficus | oha p99 − ficus |")
    print("|---|---|---|---|---|---|---|---|---|")
    us = lambda v: v if v == "n/a" else v + " µs"
    def combined_diff(sc):
        a = {r["round"]: f(r["cpu_us_per_req"]) + f(r["store_cpu_us_per_req"])
             for r in samples(sc, "wrk")
             if f(r["cpu_us_per_req"]) is not None and f(r.get("store_cpu_us_per_req")) is not None}
        b = by_round("ficus", "wrk", "cpu_us_per_req")
        ds = [a[k] - b[k] for k in a if k in b]
        return "%+.2f (%+.2f to %+.2f)" % (st.median(ds), min(ds), max(ds)) if ds else "n/a"
    for sc in rl:
        s = samples(sc, "wrk")
        store = med([f(r.get("store_cpu_us_per_req")) for r in s])
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label[sc], ratio(sc, "ficus", "wrk", "rps"), ratio(sc, "ficus", "wrk", "cpu_us_per_req"),
            diff(sc, "ficus", "wrk", "cpu_us_per_req"), num(store, "%.2f"),
            combined_diff(sc) if store is not None else "–",
            num(med([f(r.get("store_cmds_per_req")) for r in s]), "%.2f"),
            us(diff(sc, "ficus", "oha", "p50_us")), us(diff(sc, "ficus", "oha", "p99_us"))))
    if "ficus-rl-cors" in rl:
        a = by_round("ficus-rl-cors", "wrk", "rps")
        b = by_round("ficus", "wrk", "rps")
        rs = [a[k] / b[k] for k in a if k in b and b[k]]
        if rs:
            m = st.median(rs)
            print()
            print("Issue budget, ficus-rl-cors at most 3%% below ficus: median ratio %.3f, %s "
                  "(%d of %d rounds at 0.97 or above)" % (
                      m, "met" if m >= 0.97 else "**not met**", sum(r >= 0.97 for r in rs), len(rs)))
    if "ficus-rl-cors" in rl and "ficus-origin" in rl:
        print()
        print("ficus-rl-cors ÷ ficus-origin (the two policies alone, same request bytes): rps %s, "
              "CPU %s, CPU µs/req %s" % (ratio("ficus-rl-cors", "ficus-origin", "wrk", "rps"),
                                         ratio("ficus-rl-cors", "ficus-origin", "wrk", "cpu_us_per_req"),
                                         diff("ficus-rl-cors", "ficus-origin", "wrk", "cpu_us_per_req")))
i12 = [sc for sc in ("ficus-split", "ficus-shadow") if sc in scenarios]
if i12 and "ficus" in scenarios:
    print()
    print("Splits and shadow traffic (issue 12) against the plain ficus route, per round (median, "
          "min–max). CPU is ficus's; upstream CPU is the upstream nginx worker's, which also serves "
          "ficus-shadow's copies, on the same core as ficus. oha p50/p99 are medians at the fixed "
          "rate, ficus's from the same run in brackets. Counts are summed over the measured samples "
          "(warm-ups and checks left out); a dropped copy is one the shadow's queue had no room for.")
    print()
    print("| scenario | rps ÷ ficus | CPU ÷ ficus | CPU µs/req − ficus | upstream CPU µs/req − ficus "
          "| oha p50 (ficus) | oha p99 (ficus) | oha p99 − ficus | split side a's share / shadow copies "
          "| copies dropped, wrk · oha |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    us = lambda v: v if v == "n/a" else v + " µs"
    def total(sc, tool, key):
        vs = [f(r.get(key)) for r in samples(sc, tool)]
        vs = [v for v in vs if v is not None]
        return int(sum(vs)) if vs else None
    def dropped(sc, tool):
        d = total(sc, tool, "shadow_dropped")
        if d is None:
            return "–"
        req = total(sc, tool, "requests") or 0
        txt = "%d (%.2f%% of %d requests)" % (d, 100.0 * d / req, req) if req else str(d)
        return "**%s**" % txt if d > 0 else txt
    p50f = med([f(r["p50_us"]) for r in samples("ficus", "oha")])
    p99f = med([f(r["p99_us"]) for r in samples("ficus", "oha")])
    for sc in i12:
        s = samples(sc, "wrk")
        if sc == "ficus-split":
            shares = [f(r.get("split_a_share")) for r in s + samples(sc, "oha")]
            shares = [x for x in shares if x is not None]
            extra = ("a: %.1f%% (%.1f–%.1f%%)" % (100 * st.median(shares), 100 * min(shares), 100 * max(shares))
                     if shares else "–")
            drops = "–"
        else:
            c = [total(sc, t, k) for t in ("wrk", "oha") for k in ("shadow_compared", "shadow_mismatched", "shadow_failed")]
            if all(x is None for x in c):
                extra = "–"
            else:
                c = [x or 0 for x in c]
                extra = "compared %d, mismatched %d, failed %d" % (c[0] + c[3], c[1] + c[4], c[2] + c[5])
            drops = "%s · %s" % (dropped(sc, "wrk"), dropped(sc, "oha"))
        print("| %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s | %s | %s |" % (
            label[sc], ratio(sc, "ficus", "wrk", "rps"), ratio(sc, "ficus", "wrk", "cpu_us_per_req"),
            diff(sc, "ficus", "wrk", "cpu_us_per_req"),
            diff(sc, "ficus", "wrk", "upstream_cpu_us_per_req"),
            num(med([f(r["p50_us"]) for r in samples(sc, "oha")]), "%.0f µs"), num(p50f, "%.0f µs"),
            num(med([f(r["p99_us"]) for r in samples(sc, "oha")]), "%.0f µs"), num(p99f, "%.0f µs"),
            us(diff(sc, "ficus", "oha", "p99_us")), extra, drops))
    def budget(sc, floor):
        a, b = by_round(sc, "wrk", "rps"), by_round("ficus", "wrk", "rps")
        rs = [a[k] / b[k] for k in a if k in b and b[k]]
        return (st.median(rs), sum(r >= floor for r in rs), len(rs)) if rs else None
    if "ficus-split" in i12:
        b = budget("ficus-split", 0.98)
        if b:
            print()
            print("Issue budget, ficus-split at most 2%% below ficus: median ratio %.3f, %s "
                  "(%d of %d rounds at 0.98 or above)" % (b[0], "met" if b[0] >= 0.98 else "**not met**", b[1], b[2]))
    if "ficus-shadow" in i12:
        b = budget("ficus-shadow", 0.90)
        d = total("ficus-shadow", "wrk", "shadow_dropped")
        if b:
            line = ("Issue budget, ficus-shadow's throughput at most 10%% below ficus at 100%% sampling: "
                    "median ratio %.3f (%d of %d rounds at 0.90 or above): %s" % (
                        b[0], b[1], b[2], "met" if b[0] >= 0.90 else "**not met**"))
            if d:
                line += (", but **%d copies were dropped**: the shadow did not copy every request, "
                         "so the ratio is for less work than the budget's" % d)
            print()
            print(line)
        if have_oha:
            a, fr = by_round("ficus-shadow", "oha", "p99_us"), by_round("ficus", "oha", "p99_us")
            ds = [a[k] - fr[k] for k in a if k in fr]
            own = sorted(fr.values())
            if ds:
                print()
                line = ("Client p99 at the fixed rate, ficus-shadow − ficus: median %+.0f µs (%+.0f to %+.0f) "
                        "over %d round(s)" % (st.median(ds), min(ds), max(ds), len(ds)))
                if len(own) >= 3:
                    spread = own[-1] - own[0]
                    m = st.median(ds)
                    line += ("; ficus's own p99 spans %.0f–%.0f µs across rounds (spread %.0f µs, the noise "
                             "yardstick): the difference is %s" % (
                                 own[0], own[-1], spread,
                                 "within it" if abs(m) <= spread else
                                 "**above it**" if m > 0 else "below it (shadow faster than the plain route?)"))
                else:
                    line += "; fewer than 3 rounds of ficus: no noise yardstick"
                do = total("ficus-shadow", "oha", "shadow_dropped")
                if do:
                    line += ("; **%d copies were dropped at the fixed rate**: the p99 is for a shadow "
                             "that skipped copies" % do)
                print(line)
    if have_oha:
        for sc in ["ficus"] + i12:
            ach = med([f(r["rps"]) for r in samples(sc, "oha")])
            if ach is not None and ach < 0.98 * float(rate):
                print()
                print("**%s's oha part reached %.0f of the %s requests/s offered**: its latencies "
                      "are a queue's; run again with a lower RATE" % (sc, ach, rate))
for sc in ("ficus", "ficus-canonical", "ficus-registry", "ficus-log", "ficus-alt"):
    if sc in scenarios and "bare" in scenarios:
        print()
        print("%s ÷ bare pingora: rps %s, CPU per request %s" % (
            sc, ratio(sc, "bare", "wrk", "rps"), ratio(sc, "bare", "wrk", "cpu_us_per_req")))

if have_oha:
    print()
    print("Fixed offered load: oha -q %s --latency-correction -c32, %d round(s), medians." % (rate, n_rounds))
    print()
    print("| scenario | ok/rounds | achieved rps | p50 | p99 | p99.9 | CPU µs/req | p99 ÷ nginx-proxy | p99 ÷ ficus |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sc in scenarios:
        s = samples(sc, "oha")
        n_all = len([r for r in rows if r["scenario"] == sc and r["tool"] == "oha"])
        if n_all == 0:
            print("| %s | no oha part | | | | | | | |" % label.get(sc, sc))
            continue
        print("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s |" % (
            label.get(sc, sc), len(s), n_all,
            num(med([f(r["rps"]) for r in s]), "%.0f"),
            num(med([f(r["p50_us"]) for r in s]), "%.0f µs"),
            num(med([f(r["p99_us"]) for r in s]), "%.0f µs"),
            num(med([f(r["p999_us"]) for r in s]), "%.0f µs"),
            num(med([f(r["cpu_us_per_req"]) for r in s]), "%.2f"),
            ratio(sc, "nginx", "oha", "p99_us"), ratio(sc, "ficus", "oha", "p99_us"),
        ))
steals = [f(r.get("steal_pct")) for r in rows if f(r.get("steal_pct")) is not None]
if steals:
    print()
    print("CPU steal (time the hypervisor gave this VM's CPUs to other guests) per sample: "
          "median %.1f%%, max %.1f%%. Above a few percent, absolute figures and even "
          "same-round ratios get noisy." % (st.median(steals), max(steals)))
high = [r for r in rows if r["ok"] == "1" and stolen(r)]
if high:
    print()
    print("**%d sample(s) with CPU steal above %g%% excluded:** %s" % (len(high), max_steal, ", ".join(
        "round %s %s %s (%s%%)" % (r["round"], r["scenario"], r["tool"], r["steal_pct"]) for r in high)))
failed = [r for r in rows if r["ok"] != "1"]
if failed:
    print()
    print("**%d failed sample(s) excluded:** %s" % (len(failed), ", ".join(
        "round %s %s %s" % (r["round"], r["scenario"], r["tool"]) for r in failed)))
PY
}

# RESUMMARIZE=path/to/load-STAMP.csv: print the summary of an earlier run (with this
# MAX_STEAL) and stop.
if [[ -n "${RESUMMARIZE:-}" ]]; then
    [[ -f "$RESUMMARIZE" ]] || die "RESUMMARIZE: no file $RESUMMARIZE"
    read -r rs_scenarios rs_rate rs_oha < <(python3 - "$RESUMMARIZE" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sc = list(dict.fromkeys(r["scenario"] for r in rows))
rate = next((r["offered_rps"] for r in rows if r["offered_rps"]), "0")
print(",".join(sc), rate, "1" if any(r["tool"] == "oha" for r in rows) else "-")
PY
)
    [[ "$rs_oha" == - ]] && rs_oha=""
    summarize "$RESUMMARIZE" "${rs_scenarios//,/ }" "$rs_rate" "$rs_oha" "$REQUEST_HEADERS"
    exit 0
fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive integer (got '$RATE')"
[[ "$JWT_POOL" =~ ^[1-9][0-9]*$ ]] || die "JWT_POOL must be a positive integer (got '$JWT_POOL')"
[[ "$SHADOW_QUEUE" =~ ^[1-9][0-9]*$ ]] || die "SHADOW_QUEUE must be a positive integer (got '$SHADOW_QUEUE')"
for s in $SCENARIOS; do
    case "$s" in
        direct | nginx | bare | bare-full | ficus | ficus-canonical | ficus-registry | ficus-log | ficus-alt | ficus-jwt | ficus-jwt-miss | ficus-bearer | ficus-origin | ficus-rl-cors | ficus-rl-redis | ficus-split | ficus-shadow | ficus-full | pingap | pingap-log) ;;
        *) die "unknown scenario '$s' (known: direct nginx bare bare-full ficus ficus-canonical ficus-registry ficus-log ficus-alt ficus-jwt ficus-jwt-miss ficus-bearer ficus-origin ficus-rl-cors ficus-rl-redis ficus-split ficus-shadow ficus-full pingap pingap-log)" ;;
    esac
done
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
want_ficus() { want ficus || want ficus-canonical || want ficus-log || want ficus-registry || want_jwt || want_rl || want_i12; }
want_jwt() { want ficus-jwt || want ficus-jwt-miss || want ficus-bearer || want ficus-full || want bare-full; }
want_rl() { want ficus-origin || want ficus-rl-cors || want ficus-rl-redis; }
want_i12() { want ficus-split || want ficus-shadow; }

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "need to install $* but apt-get is not available"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
command -v wrk >/dev/null || apt_install wrk
command -v taskset >/dev/null || apt_install util-linux
command -v pgrep >/dev/null || apt_install procps
command -v timeout >/dev/null || apt_install coreutils
if want_jwt; then command -v node >/dev/null || apt_install nodejs; fi
if want ficus-rl-redis; then
    # Debian's redis-server depends on redis-tools (redis-cli)
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
    command -v redis-server >/dev/null || die "redis-server not found after install"
    command -v redis-cli >/dev/null || die "redis-cli not found after install"
fi
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    apt_install nginx-light || apt_install nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx not found after install"
command -v cargo >/dev/null || die "cargo not found (need a Rust toolchain)"

OHA_BIN=""
if [[ "$OHA" == 1 ]]; then
    if command -v oha >/dev/null; then
        OHA_BIN=$(command -v oha)
    elif [[ -x "$HOME/.cargo/bin/oha" ]]; then
        OHA_BIN="$HOME/.cargo/bin/oha"
    else
        log "oha not found: cargo install oha --locked (takes a few minutes on 2 cores)"
        if cargo install oha --locked >&2; then
            OHA_BIN=$(command -v oha || echo "$HOME/.cargo/bin/oha")
        else
            loud "cargo install oha --locked FAILED" \
                "the fixed-rate latency part (oha) will be SKIPPED; throughput (wrk) still runs"
        fi
    fi
    if [[ -n "$OHA_BIN" ]] && ! "$OHA_BIN" --help 2>/dev/null | grep -q -- '--latency-correction'; then
        loud "$OHA_BIN has no --latency-correction flag; the fixed-rate latency part will be SKIPPED"
        OHA_BIN=""
    fi
fi
OHA_JSON_FLAG=()
OHA_EXTRA=()
if [[ -n "$OHA_BIN" ]]; then
    # one runtime thread (it is pinned to one core); finish in-flight requests at the
    # deadline instead of counting them as aborted.
    "$OHA_BIN" --help 2>/dev/null | grep -q -- '--worker-threads' && OHA_EXTRA+=(--worker-threads 1)
    "$OHA_BIN" --help 2>/dev/null | grep -q -- '--wait-ongoing-requests-after-deadline' && OHA_EXTRA+=(-w)
    if "$OHA_BIN" --help 2>/dev/null | grep -q -- '--output-format'; then
        OHA_JSON_FLAG=(--output-format json)
    else
        OHA_JSON_FLAG=(-j)
    fi
fi

# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BARE_BIN="$TARGET_DIR/release/bare-pingora"
FICUS_BIN="$TARGET_DIR/release/ficus"
if [[ "$SKIP_BUILD" != 1 ]]; then
    if want bare || want bare-full; then
        log "cargo build --release -p bare-pingora --bin bare-pingora"
        cargo build --release -p bare-pingora --bin bare-pingora >&2 || die "building bare-pingora failed"
    fi
    if want_ficus; then
        log "cargo build --release --bin ficus"
        cargo build --release --bin ficus >&2 ||
            die "building ficus failed (run the other scenarios with e.g. SCENARIOS=\"direct nginx bare\")"
    fi
fi
if want bare || want bare-full; then [[ -x "$BARE_BIN" ]] || die "$BARE_BIN missing"; fi
if want pingap || want pingap-log; then
    PINGAP_BIN=${PINGAP_BIN:-$(command -v pingap || true)}
    if [[ -z "$PINGAP_BIN" ]]; then
        PINGAP_BIN="$TARGET_DIR/pingap/bin/pingap"
        if [[ ! -x "$PINGAP_BIN" ]]; then
            log "pingap not found: cargo install pingap --version 0.13.1 --locked (a long build on 2 cores)"
            # its etcd client compiles protobuf definitions at build time
            command -v protoc >/dev/null || apt_install protobuf-compiler
            cargo install pingap --version 0.13.1 --locked --root "$TARGET_DIR/pingap" >&2 ||
                die "cargo install pingap failed (leave pingap out of SCENARIOS, or set PINGAP_BIN)"
        fi
    fi
    [[ -x "$PINGAP_BIN" ]] || die "pingap binary $PINGAP_BIN missing"
fi
if want_ficus; then [[ -x "$FICUS_BIN" ]] || die "$FICUS_BIN missing"; fi

# --------------------------------------------------------------------------
# Processes: everything started here is stopped on exit, by pid.
# --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/ficus-load.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody
PIDS=()          # started pids, in start order
declare -A STOPSIG=()
declare -A PNAME=()
FAILED_RUN=1

stop_pid() {
    local pid=$1 sig=$2 name=$3 i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # 10 s
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) still running 10 s after SIG$sig: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
        log "stopping ${#PIDS[@]} process(es)"
        for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
            pid=${PIDS[i]}
            stop_pid "$pid" "${STOPSIG[$pid]}" "${PNAME[$pid]}"
        done
    fi
    if [[ "$KEEP_TMP" == 1 || $FAILED_RUN == 1 ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME STOPSIG LOGFILE cmd... ; sets STARTED_PID
start() {
    local name=$1 sig=$2 logf=$3
    shift 3
    taskset -c "$SERVER_CPU" "$@" >>"$logf" 2>&1 </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STOPSIG[$STARTED_PID]=$sig
    PNAME[$STARTED_PID]=$name
    log "started $name: pid $STARTED_PID (core $SERVER_CPU): $*"
}

# wait_http NAME PID URL LOGFILE [EXPECT_BODY]: 200 within 30 s or die
wait_http() {
    local name=$1 pid=$2 url=$3 logf=$4 body=${5:-} code i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "---- $logf" >&2
            tail -n 40 "$logf" >&2 || true
            die "$name (pid $pid) exited before it became ready"
        fi
        code=$(curl -s -o "$TMP/probe.out" -w '%{http_code}' --max-time 1 "$url" || true)
        if [[ "$code" == 200 ]]; then
            if [[ -n "$body" ]] && ! grep -qF "$body" "$TMP/probe.out"; then
                echo "---- response body:" >&2
                cat "$TMP/probe.out" >&2
                die "$name answered $url with 200 but not the upstream's body '$body'"
            fi
            log "$name ready: $url"
            return 0
        fi
        sleep 0.1
    done
    echo "---- $logf" >&2
    tail -n 40 "$logf" >&2 || true
    die "$name did not answer 200 on $url within 30 s (last status: ${code:-none})"
}

# nginx worker pid = the only child of its master
nginx_worker() {
    local master=$1 w i
    for ((i = 0; i < 100; i++)); do
        w=$(pgrep -P "$master" | head -n1 || true)
        if [[ -n "$w" ]]; then
            echo "$w"
            return 0
        fi
        sleep 0.1
    done
    die "no worker process under nginx master $master"
}

# Free loopback ports: bind them all at once so they are distinct.
read -r P_UP P_NGINX P_BARE P_FICUS P_FICUS_ADMIN P_FLOG P_FLOG_ADMIN P_FREG P_FREG_ADMIN P_FCAN P_FCAN_ADMIN P_FALT P_FALT_ADMIN \
    P_FJWT P_FJWT_ADMIN P_FJWTM P_FJWTM_ADMIN P_FBEAR P_FBEAR_ADMIN \
    P_FORIG P_FORIG_ADMIN P_FRLC P_FRLC_ADMIN P_FRLC1 P_FRLC1_ADMIN \
    P_FRLR P_FRLR_ADMIN P_FRLR1 P_FRLR1_ADMIN P_REDIS \
    P_FSPL P_FSPL_ADMIN P_FSHD P_FSHD_ADMIN P_UP2 P_FFULL P_FFULL_ADMIN P_PINGAP P_PINGAPL < <(python3 -c '
import socket
socks = []
for _ in range(39):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))')

NGINX_E=()
if "$NGINX" -h 2>&1 | grep -q -- '-e filename'; then NGINX_E=(-e "$TMP/nginx-startup-error.log"); fi
mkdir -p "$TMP/nginx-tmp"

nginx_common() { # $1 = name
    cat <<EOF
worker_processes 1;
pid $TMP/$1.pid;
error_log $TMP/$1-error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    cat <<EOF
    access_log off;
    default_type text/plain;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
EOF
}

{
    nginx_common upstream
    echo "http {"
    nginx_http_common
    cat <<EOF
    server {
        listen 127.0.0.1:$P_UP;
        # a second instance for ficus-full's two-instance service (same worker)
        listen 127.0.0.1:$P_UP2;
        location / { return 200 "hello from upstream\n"; }
    }
}
EOF
} >"$TMP/upstream.conf"

{
    nginx_common nginx-proxy
    echo "http {"
    nginx_http_common
    cat <<EOF
    upstream up {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$TMP/nginx-proxy.conf"

ficus_conf() { # $1 listen port, $2 admin port, $3 access_log
    cat <<EOF
[gateway]
listen = ["127.0.0.1:$1"]
admin = "127.0.0.1:$2"
threads = 1
access_log = "$3"

[services.upstream]
instances = ["127.0.0.1:$P_UP"]

[[routes]]
name = "plain"
match = { path = "/**" }
service = "upstream"
EOF
}
ficus_conf "$P_FICUS" "$P_FICUS_ADMIN" off >"$TMP/ficus.toml"
ficus_conf "$P_FLOG" "$P_FLOG_ADMIN" json >"$TMP/ficus-log.toml"
ficus_conf "$P_FALT" "$P_FALT_ADMIN" off >"$TMP/ficus-alt.toml"
ficus_conf "$P_FBEAR" "$P_FBEAR_ADMIN" off >"$TMP/ficus-bearer.toml"
ficus_conf "$P_FCAN" "$P_FCAN_ADMIN" off | sed 's/^threads = 1$/threads = 1\npreserve_header_case = false/' >"$TMP/ficus-canonical.toml"
# Same route and upstream, with every registry feature that does per-request work.
cat >"$TMP/ficus-registry.toml" <<EOF
[gateway]
listen = ["127.0.0.1:$P_FREG"]
admin = "127.0.0.1:$P_FREG_ADMIN"
threads = 1
access_log = "off"

[services.upstream]
instances = ["127.0.0.1:$P_UP"]
health = { path = "/", interval = "1s", timeout = "500ms" }
outlier = { consecutive_failures = 5, base_ejection_time = "30s" }
breaker = { consecutive_failures = 5, failure_rate = 0.5, min_requests = 20, window = "10s", open_for = "10s" }
max_concurrent = 1000
lb = "least_request"

[[routes]]
name = "plain"
match = { path = "/**" }
service = "upstream"
EOF

# The JWT scenarios: a fresh RSA key pair, one token for the cache-hit scenario and a pool
# of distinct ones for the cache-miss scenario (node; a 2048-bit signature is ~1 ms each).
JWT_DIR="$TMP/jwt"
if want_jwt; then
    pool=0
    want ficus-jwt-miss && pool=$JWT_POOL
    log "making an RSA 2048 key pair and $((pool + 1)) RS256 tokens (benches/jwt-tokens.js)"
    node "$ROOT/benches/jwt-tokens.js" "$JWT_DIR" "$pool" >&2 || die "benches/jwt-tokens.js failed"
    JWT_TOKEN=$(<"$JWT_DIR/token.txt")
    [[ -n "$JWT_TOKEN" ]] || die "no token in $JWT_DIR/token.txt"
    if want ficus-jwt-miss; then
        n=$(wc -l <"$JWT_DIR/pool.txt")
        ((n == JWT_POOL)) || die "$JWT_DIR/pool.txt has $n tokens, not $JWT_POOL"
    fi
fi
# $1 listen port, $2 admin port, $3 extra lines for [auth.bench]
ficus_jwt_conf() {
    ficus_conf "$1" "$2" off
    cat <<EOF
auth = "bench"

[auth.bench]
type = "jwt"
public_key_file = "$JWT_DIR/public.pem"
algorithms = ["RS256"]
issuer = "https://idp.bench.invalid/realms/bench"
audience = "ficus-bench"
claims_to_headers = { sub = "X-User-Id" }
$3
EOF
}
# The hit scenario keeps the default cache (10,000 tokens; it holds one). The miss
# scenario's cache holds 100 tokens against a pool of JWT_POOL: when the cache is full an
# insert first drops expired entries and then an eighth of the entries, so it keeps doing
# the bounded-cache work of a busy gateway, and at most ~100 of the pool's tokens can be
# in it at any time (under 1% of requests at the default pool).
ficus_jwt_conf "$P_FJWT" "$P_FJWT_ADMIN" "" >"$TMP/ficus-jwt.toml"
ficus_jwt_conf "$P_FJWTM" "$P_FJWTM_ADMIN" "cache_size = 100" >"$TMP/ficus-jwt-miss.toml"
BENCH_ORIGIN="https://app.example.com"
# ficus-full: everything issue 13's "full stack" target names, on the one route.
if want ficus-full; then
    cat >"$TMP/ficus-full.toml" <<EOF
[gateway]
listen = ["127.0.0.1:$P_FFULL"]
admin = "127.0.0.1:$P_FFULL_ADMIN"
threads = 1
access_log = "json"

[services.upstream]
instances = ["127.0.0.1:$P_UP", "127.0.0.1:$P_UP2"]
health = { path = "/", interval = "1s", timeout = "500ms" }
lb = "least_request"

[[routes]]
name = "plain"
match = { path = "/**" }
service = "upstream"
auth = "bench"
rate_limit = "bench"
cors = "bench"

[auth.bench]
type = "jwt"
public_key_file = "$JWT_DIR/public.pem"
algorithms = ["RS256"]
issuer = "https://idp.bench.invalid/realms/bench"
audience = "ficus-bench"
claims_to_headers = { sub = "X-User-Id" }

[rate_limits.bench]
limits = [{ key = "client_ip", rate = "1000000/s", burst = 1000000 }]

[cors.bench]
origins = ["$BENCH_ORIGIN"]
credentials = true
expose_headers = ["X-Request-Id"]
EOF
fi

# The rate-limit and CORS scenarios (issue 11). The limits are never hit at any rate this
# box reaches (a million requests a second, a burst of a million); the "-tiny" configs,
# the same policies at 1/h with a burst of 1, are started briefly before measuring to
# show that the limit really refuses.
ficus_conf "$P_FORIG" "$P_FORIG_ADMIN" off >"$TMP/ficus-origin.toml"
ficus_rl_cors_conf() { # $1 listen port, $2 admin port, $3 rate, $4 burst
    ficus_conf "$1" "$2" off
    cat <<EOF
rate_limit = "bench"
cors = "bench"

[rate_limits.bench]
limits = [{ key = "client_ip", rate = "$3", burst = $4 }]

[cors.bench]
origins = ["$BENCH_ORIGIN"]
credentials = true
expose_headers = ["X-Request-Id"]
EOF
}
ficus_rl_redis_conf() { # $1 listen port, $2 admin port, $3 rate, $4 burst, $5 Redis db
    ficus_conf "$1" "$2" off
    cat <<EOF
rate_limit = "bench"

[rate_limits.bench]
store = "redis"
redis = "redis://127.0.0.1:$P_REDIS/$5"
on_store_error = "fail-closed"
limits = [{ key = "client_ip", rate = "$3", burst = $4 }]
EOF
}
ficus_rl_cors_conf "$P_FRLC" "$P_FRLC_ADMIN" 1000000/s 1000000 >"$TMP/ficus-rl-cors.toml"
ficus_rl_cors_conf "$P_FRLC1" "$P_FRLC1_ADMIN" 1/h 1 >"$TMP/ficus-rl-cors-tiny.toml"
ficus_rl_redis_conf "$P_FRLR" "$P_FRLR_ADMIN" 1000000/s 1000000 0 >"$TMP/ficus-rl-redis.toml"
ficus_rl_redis_conf "$P_FRLR1" "$P_FRLR1_ADMIN" 1/h 1 1 >"$TMP/ficus-rl-redis-tiny.toml"

# The split and shadow scenarios (issue 12): the plain route of ficus_conf, with the
# route's `service` line replaced. Every service has the one upstream instance.
ficus_route_conf() { # $1 listen port, $2 admin port, $3 extra [services.*] tables, $4 the route's service/split/shadow lines
    ficus_conf "$1" "$2" off | python3 -c '
import sys
conf, services, route = sys.stdin.read(), sys.argv[1], sys.argv[2]
line = "service = \"upstream\"\n"
assert conf.count(line) == 1, "ficus_conf changed: no single service line to replace"
conf = conf.replace("[[routes]]\n", services + "\n[[routes]]\n", 1).replace(line, route + "\n")
if "\"upstream\"" not in route:
    # a service no route uses is a ficus check warning
    up = "[services.upstream]\n"
    start = conf.index(up)
    conf = conf[:start] + conf[conf.index("\n\n", start) + 2:]
sys.stdout.write(conf)' "$3" "$4"
}
ficus_route_conf "$P_FSPL" "$P_FSPL_ADMIN" "[services.a]
instances = [\"127.0.0.1:$P_UP\"]

[services.b]
instances = [\"127.0.0.1:$P_UP\"]
" 'split = [{ service = "a", weight = 50 }, { service = "b", weight = 50 }]' >"$TMP/ficus-split.toml"
# The shadow service must be another service than the route's (ficus check refuses the
# route's own): "shadow", with the same instance. Compared: status and body (the default).
ficus_route_conf "$P_FSHD" "$P_FSHD_ADMIN" "[services.shadow]
instances = [\"127.0.0.1:$P_UP\"]
" "service = \"upstream\"
shadow = { service = \"shadow\", sample = 1.0, queue = $SHADOW_QUEUE }" >"$TMP/ficus-shadow.toml"

for c in upstream nginx-proxy; do
    "$NGINX" -t -q -p "$TMP" "${NGINX_E[@]}" -c "$TMP/$c.conf" -g 'daemon off;' >&2 ||
        die "nginx rejected $TMP/$c.conf"
done

UPSTREAM_BODY="hello from upstream"
declare -A URL=() SRV_PID=()

start upstream QUIT "$TMP/upstream.out" "$NGINX" -p "$TMP" "${NGINX_E[@]}" -c "$TMP/upstream.conf" -g 'daemon off;'
UP_MASTER=$STARTED_PID
wait_http upstream "$UP_MASTER" "http://127.0.0.1:$P_UP/" "$TMP/upstream-error.log" "$UPSTREAM_BODY"
UP_WORKER=$(nginx_worker "$UP_MASTER")
URL[direct]="http://127.0.0.1:$P_UP/"
SRV_PID[direct]=$UP_WORKER

if want nginx; then
    start nginx-proxy QUIT "$TMP/nginx-proxy.out" "$NGINX" -p "$TMP" "${NGINX_E[@]}" -c "$TMP/nginx-proxy.conf" -g 'daemon off;'
    m=$STARTED_PID
    wait_http nginx-proxy "$m" "http://127.0.0.1:$P_NGINX/" "$TMP/nginx-proxy-error.log" "$UPSTREAM_BODY"
    URL[nginx]="http://127.0.0.1:$P_NGINX/"
    SRV_PID[nginx]=$(nginx_worker "$m")
fi

if want bare || want bare-full; then
    start bare-pingora INT "$TMP/bare.log" "$BARE_BIN" --listen "127.0.0.1:$P_BARE" --upstream "127.0.0.1:$P_UP" --threads 1
    SRV_PID[bare]=$STARTED_PID
    wait_http bare-pingora "$STARTED_PID" "http://127.0.0.1:$P_BARE/" "$TMP/bare.log" "$UPSTREAM_BODY"
    URL[bare]="http://127.0.0.1:$P_BARE/"
    # bare-full: the same process; its samples measure it over their own interval
    SRV_PID[bare-full]=${SRV_PID[bare]}
    URL[bare-full]=${URL[bare]}
fi

# start_pingap NAME PORT [ACCESS_LOG]: pingap with one location and one upstream
start_pingap() {
    local name=$1 port=$2 access=${3:-}
    cat >"$TMP/$name.toml" <<EOF
[basic]
name = "pingap-bench"
pid_file = "$TMP/$name.pid"
log_level = "WARN"
threads = 1
[upstreams.up]
addrs = ["127.0.0.1:$P_UP"]
[locations.all]
path = "/"
upstream = "up"
[servers.bench]
addr = "127.0.0.1:$port"
locations = ["all"]
EOF
    [[ -n "$access" ]] && echo "access_log = \"$access\"" >>"$TMP/$name.toml"
    start "$name" INT "$TMP/$name.log" "$PINGAP_BIN" -c "$TMP/$name.toml"
    SRV_PID[$name]=$STARTED_PID
    wait_http "$name" "$STARTED_PID" "http://127.0.0.1:$port/" "$TMP/$name.log" "$UPSTREAM_BODY"
    URL[$name]="http://127.0.0.1:$port/"
}
if want pingap; then
    start_pingap pingap "$P_PINGAP"
fi
if want pingap-log; then
    # its own access log, in its "combined" format, to files under a directory
    mkdir -p "$TMP/pingap-access"
    start_pingap pingap-log "$P_PINGAPL" "$TMP/pingap-access combined"
    for ((i = 0; i < 20; i++)); do
        curl -s -o /dev/null "${URL[pingap-log]}"
    done
    # pingap's log task flushes on a timer (10 s by default): wait for the lines
    for ((i = 0; i < 150; i++)); do
        grep -rqs '"GET / HTTP/1.1" 200' "$TMP/pingap-access" && break
        sleep 0.1
    done
    grep -rqs '"GET / HTTP/1.1" 200' "$TMP/pingap-access" ||
        die "pingap-log: no access log line under $TMP/pingap-access after 20 requests"
    log "pingap-log: access log lines written under $TMP/pingap-access"
fi

# Starts a ficus scenario: $1 name, $2 binary, $3 port, $4 admin port (config $TMP/$1.toml).
start_ficus() {
    start "$1" INT "$TMP/$1.log" "$2" run --config "$TMP/$1.toml"
    SRV_PID[$1]=$STARTED_PID
    wait_http "$1" "$STARTED_PID" "http://127.0.0.1:$4/readyz" "$TMP/$1.log"
    wait_http "$1" "$STARTED_PID" "http://127.0.0.1:$3/" "$TMP/$1.log" "$UPSTREAM_BODY"
    URL[$1]="http://127.0.0.1:$3/"
}
want ficus && start_ficus ficus "$FICUS_BIN" "$P_FICUS" "$P_FICUS_ADMIN"
want ficus-canonical && start_ficus ficus-canonical "$FICUS_BIN" "$P_FCAN" "$P_FCAN_ADMIN"
if want ficus-alt; then
    [[ -x "${ALT_BIN:-}" ]] || die "scenario ficus-alt needs ALT_BIN=/path/to/another/ficus binary"
    start_ficus ficus-alt "$ALT_BIN" "$P_FALT" "$P_FALT_ADMIN"
fi
want ficus-registry && start_ficus ficus-registry "$FICUS_BIN" "$P_FREG" "$P_FREG_ADMIN"

# Per-scenario wrk and oha arguments (after the request-header ones); an oha part is
# skipped for a scenario marked in NO_OHA.
declare -A WRK_ARGS=() OHA_ARGS=() NO_OHA=() ADMIN_URL=() RL_ADMIN=() STORE_PID=()
# expect_status NAME URL STATUS [curl args...]: die unless URL answers STATUS
expect_status() {
    local name=$1 url=$2 want=$3 code
    shift 3
    code=$(curl -s -D "$TMP/probe.headers" -o "$TMP/probe.out" -w '%{http_code}' --max-time 5 "$@" "$url" || true)
    if [[ "$code" != "$want" ]]; then
        echo "---- response body:" >&2
        cat "$TMP/probe.out" >&2 || true
        echo "---- $TMP/$name.log" >&2
        tail -n 20 "$TMP/$name.log" >&2 || true
        die "$name: expected $want, got ${code:-no answer}: curl $* $url"
    fi
    if [[ "$want" == 200 ]] && ! grep -qF "$UPSTREAM_BODY" "$TMP/probe.out"; then
        die "$name answered 200 but not with the upstream's body: $(head -c 300 "$TMP/probe.out")"
    fi
}
# A JWT scenario that answered 401 quickly would look like throughput: check before any
# measurement that the token passes and that no token, or a bad signature, does not.
check_jwt() { # $1 name, $2 port, $3 admin port
    local url="http://127.0.0.1:$2/" t
    expect_status "$1" "$url" 200 -H "Authorization: Bearer $JWT_TOKEN"
    expect_status "$1" "$url" 401
    expect_status "$1" "$url" 401 -H "Authorization: Bearer $(<"$JWT_DIR/bad.txt")"
    if [[ "$1" == ficus-jwt-miss ]]; then
        for t in "$(head -n1 "$JWT_DIR/pool.txt")" "$(tail -n1 "$JWT_DIR/pool.txt")"; do
            expect_status "$1" "$url" 200 -H "Authorization: Bearer $t"
        done
    fi
    curl -s --max-time 5 "http://127.0.0.1:$3/metrics" | grep -q '^ficus_auth_cache_total{' ||
        die "$1: no ficus_auth_cache_total on http://127.0.0.1:$3/metrics (needed to report cache hits)"
    log "$1: a valid token gets 200; no token and a bad signature get 401"
}
# the ficus-jwt scenarios' first readiness probe has no token: wait for /readyz, then check
start_ficus_jwt() { # $1 name, $2 port, $3 admin port
    start "$1" INT "$TMP/$1.log" "$FICUS_BIN" run --config "$TMP/$1.toml"
    SRV_PID[$1]=$STARTED_PID
    wait_http "$1" "$STARTED_PID" "http://127.0.0.1:$3/readyz" "$TMP/$1.log"
    check_jwt "$1" "$2" "$3"
    URL[$1]="http://127.0.0.1:$2/"
    ADMIN_URL[$1]="http://127.0.0.1:$3"
}
if want ficus-jwt; then
    start_ficus_jwt ficus-jwt "$P_FJWT" "$P_FJWT_ADMIN"
    WRK_ARGS[ficus-jwt]="-H|Authorization: Bearer $JWT_TOKEN"
    OHA_ARGS[ficus-jwt]="-H|Authorization: Bearer $JWT_TOKEN"
fi
if want ficus-bearer; then
    start_ficus ficus-bearer "$FICUS_BIN" "$P_FBEAR" "$P_FBEAR_ADMIN"
    expect_status ficus-bearer "${URL[ficus-bearer]}" 200 -H "Authorization: Bearer $JWT_TOKEN"
    WRK_ARGS[ficus-bearer]="-H|Authorization: Bearer $JWT_TOKEN"
    OHA_ARGS[ficus-bearer]="-H|Authorization: Bearer $JWT_TOKEN"
fi
if want ficus-jwt-miss; then
    start_ficus_jwt ficus-jwt-miss "$P_FJWTM" "$P_FJWTM_ADMIN"
    # wrk's script arguments follow the URL: see sample()
    WRK_ARGS[ficus-jwt-miss]="-s|$ROOT/benches/jwt-pool.lua"
    NO_OHA[ficus-jwt-miss]=1
fi
# --- ficus-origin, ficus-rl-cors, ficus-rl-redis (issue 11) ---
# ficus check first: a config ficus refuses is clearer here than as "did not become ready"
check_conf() { # $1 name (config $TMP/$1.toml)
    local out rc=0
    out=$("$FICUS_BIN" check "$TMP/$1.toml" 2>&1) || rc=$?
    if ((rc >= 2)); then
        echo "$out" >&2
        [[ "$out" == *"not built in yet"* ]] &&
            die "$1: this ficus build has no Redis store yet (ficus check: \"not built in yet\"); leave ficus-rl-redis out of SCENARIOS"
        die "$1: ficus check refused $TMP/$1.toml"
    fi
    ((rc == 0)) || log "$1: ficus check warnings: $out"
}
# header_is 'Name: value' / header_absent Name: about the last expect_status's response
header_is() { # $1 scenario, $2 the header line
    tr -d '\r' <"$TMP/probe.headers" | grep -qixF -- "$2" ||
        die "$1: expected the response header '$2'; got: $(tr -d '\r' <"$TMP/probe.headers" | tr '\n' '|')"
}
header_absent() { # $1 scenario, $2 the header name
    if tr -d '\r' <"$TMP/probe.headers" | grep -qi -- "^$2:"; then
        die "$1: expected no $2 header; got: $(tr -d '\r' <"$TMP/probe.headers" | tr '\n' '|')"
    fi
    return 0
}
# "admitted limited store_errors" of the rate-limit policy "bench", from /metrics
rl_counts() { # $1 admin URL
    curl -s --max-time 5 "$1/metrics" | awk '
        /^ficus_rate_limit_requests_total\{/ && /policy="bench"/ && /result="admitted"/ {a += $NF}
        /^ficus_rate_limit_requests_total\{/ && /policy="bench"/ && /result="limited"/ {l += $NF}
        /^ficus_rate_limit_store_errors_total\{/ && /policy="bench"/ {e += $NF}
        END {printf "%d %d %d\n", a, l, e}'
}
# start_checked NAME PORT ADMIN_PORT: ficus check, start, wait for /readyz (the first request
# is the caller's check, so that a tiny limit's one admitted request is not spent here)
start_checked() {
    check_conf "$1"
    start "$1" INT "$TMP/$1.log" "$FICUS_BIN" run --config "$TMP/$1.toml"
    SRV_PID[$1]=$STARTED_PID
    wait_http "$1" "$STARTED_PID" "http://127.0.0.1:$3/readyz" "$TMP/$1.log"
}
# tiny_check NAME PORT ADMIN_PORT [curl args]: the policy at 1/h, burst 1, answers 200 then
# 429 (the brief second instance is stopped again at once)
tiny_check() {
    local name=$1 port=$2 admin=$3 c
    shift 3
    start_checked "$name" "$port" "$admin"
    expect_status "$name" "http://127.0.0.1:$port/" 200 "$@"
    expect_status "$name" "http://127.0.0.1:$port/" 429 "$@"
    tr -d '\r' <"$TMP/probe.headers" | grep -qi '^Retry-After: [0-9]' || die "$name: a 429 without Retry-After"
    read -r _ c _ < <(rl_counts "http://127.0.0.1:$admin")
    ((c >= 1)) || die "$name: a 429 but ficus_rate_limit_requests_total{result=\"limited\"} is $c"
    stop_pid "${SRV_PID[$name]}" INT "$name"
    unset "SRV_PID[$name]"
}
ORIGIN_HDR="Origin: $BENCH_ORIGIN"
if want bare-full; then
    WRK_ARGS[bare-full]="-H|Authorization: Bearer $JWT_TOKEN|-H|$ORIGIN_HDR"
    OHA_ARGS[bare-full]=${WRK_ARGS[bare-full]}
    expect_status bare-full "${URL[bare-full]}" 200 -H "Authorization: Bearer $JWT_TOKEN" -H "$ORIGIN_HDR"
fi
if want ficus-origin; then
    check_conf ficus-origin
    start_ficus ficus-origin "$FICUS_BIN" "$P_FORIG" "$P_FORIG_ADMIN"
    expect_status ficus-origin "${URL[ficus-origin]}" 200 -H "$ORIGIN_HDR"
    header_absent ficus-origin Access-Control-Allow-Origin
    WRK_ARGS[ficus-origin]="-H|$ORIGIN_HDR"
    OHA_ARGS[ficus-origin]="-H|$ORIGIN_HDR"
    log "ficus-origin: a request with $ORIGIN_HDR gets 200 without CORS headers"
fi
if want ficus-rl-cors; then
    tiny_check ficus-rl-cors-tiny "$P_FRLC1" "$P_FRLC1_ADMIN" -H "$ORIGIN_HDR"
    # the refusal carries the CORS headers too (the tiny check's last response is the 429)
    header_is ficus-rl-cors-tiny "Access-Control-Allow-Origin: $BENCH_ORIGIN"
    start_checked ficus-rl-cors "$P_FRLC" "$P_FRLC_ADMIN"
    u="http://127.0.0.1:$P_FRLC/"
    expect_status ficus-rl-cors "$u" 200 -H "$ORIGIN_HDR"
    header_is ficus-rl-cors "Access-Control-Allow-Origin: $BENCH_ORIGIN"
    header_is ficus-rl-cors "Access-Control-Allow-Credentials: true"
    header_is ficus-rl-cors "Access-Control-Expose-Headers: X-Request-Id"
    # methods = [] allows GET, HEAD and POST (a preflight for PUT is refused: 403)
    expect_status ficus-rl-cors "$u" 204 -X OPTIONS -H "$ORIGIN_HDR" -H "Access-Control-Request-Method: POST" \
        -H "Access-Control-Request-Headers: content-type"
    header_is ficus-rl-cors "Access-Control-Allow-Origin: $BENCH_ORIGIN"
    expect_status ficus-rl-cors "$u" 403 -X OPTIONS -H "$ORIGIN_HDR" -H "Access-Control-Request-Method: PUT"
    read -r a _ _ < <(rl_counts "http://127.0.0.1:$P_FRLC_ADMIN")
    ((a >= 1)) || die "ficus-rl-cors: no admitted request in ficus_rate_limit_requests_total{policy=\"bench\"}"
    URL[ficus-rl-cors]=$u
    RL_ADMIN[ficus-rl-cors]="http://127.0.0.1:$P_FRLC_ADMIN"
    WRK_ARGS[ficus-rl-cors]="-H|$ORIGIN_HDR"
    OHA_ARGS[ficus-rl-cors]="-H|$ORIGIN_HDR"
    log "ficus-rl-cors: 200 with Access-Control-Allow-Origin, preflight 204, the limit admits;" \
        "at 1/h the same policies answer 429 (with CORS headers)"
fi
redis_cli() { redis-cli -h 127.0.0.1 -p "$P_REDIS" "$@"; }
# script calls (EVALSHA, EVAL) Redis has run so far: one a decision. (INFO stats'
# total_commands_processed would count the TIME, GET and SET inside the script too.)
redis_cmds() {
    redis_cli info commandstats | tr -d '\r' | awk -F'[:=,]' '
        /^cmdstat_(evalsha|eval):/ {n += $3}
        END {print n + 0}'
}
if want ficus-rl-redis; then
    # pinned to SERVER_CPU with the upstream and ficus: one box, the store's CPU competes
    # with the proxy's, as it would for a gateway and a Redis on one machine
    start redis-server TERM "$TMP/redis.log" redis-server --bind 127.0.0.1 --port "$P_REDIS" \
        --save '' --appendonly no --dir "$TMP" --daemonize no
    REDIS_PID=$STARTED_PID
    for ((i = 0; i < 300; i++)); do
        kill -0 "$REDIS_PID" 2>/dev/null || {
            tail -n 20 "$TMP/redis.log" >&2
            die "redis-server (pid $REDIS_PID) exited before it became ready"
        }
        [[ "$(redis_cli ping 2>/dev/null)" == PONG ]] && break
        sleep 0.1
    done
    [[ "$(redis_cli ping 2>/dev/null)" == PONG ]] || die "redis-server did not answer PING within 30 s"
    log "redis-server ready on 127.0.0.1:$P_REDIS ($(redis-server --version | cut -d' ' -f3))"
    # Redis db 1, not 0: a bucket's name is the policy's, the limit's position and the
    # key's digest, not its rate, so in db 0 the measured instance would inherit the 1/h
    # instance's spent bucket and answer 429 for an hour
    tiny_check ficus-rl-redis-tiny "$P_FRLR1" "$P_FRLR1_ADMIN"
    # the 1/h bucket is kept for an hour: the store really is Redis (db 1)
    [[ -n "$(redis_cli -n 1 --scan --pattern '*' | head -n1)" ]] ||
        die "ficus-rl-redis-tiny: a 429, but Redis db 1 holds no key"
    start_checked ficus-rl-redis "$P_FRLR" "$P_FRLR_ADMIN"
    u="http://127.0.0.1:$P_FRLR/"
    q0=$(redis_cmds)
    expect_status ficus-rl-redis "$u" 200
    q1=$(redis_cmds)
    # (a bucket at 1000000/s is full again a microsecond later, so db 0 may hold no key
    # by now: the command count shows the request went through Redis)
    ((q1 > q0)) || die "ficus-rl-redis: a request got 200 but Redis ran no script call for it"
    read -r a _ e < <(rl_counts "http://127.0.0.1:$P_FRLR_ADMIN")
    ((a >= 1 && e == 0)) || die "ficus-rl-redis: admitted $a, store errors $e in /metrics"
    URL[ficus-rl-redis]=$u
    RL_ADMIN[ficus-rl-redis]="http://127.0.0.1:$P_FRLR_ADMIN"
    STORE_PID[ficus-rl-redis]=$REDIS_PID
    log "ficus-rl-redis: 200 through Redis ($((q1 - q0)) script call(s) for one request), no store errors;" \
        "at 1/h the same policy answers 429 and Redis holds its key"
fi

# --- ficus-split, ficus-shadow (issue 12) ---
BENCH_ROUTE=plain # the route's name in ficus_conf: /shadow/$BENCH_ROUTE, route="..." labels
declare -A SPLIT_ADMIN=() SHADOW_ADMIN=()
# "a b": the split route's placements on each side (all choices), from /metrics
split_counts() { # $1 admin URL
    curl -s --max-time 5 "$1/metrics" | awk -v route="route=\"$BENCH_ROUTE\"" '
        /^ficus_split_requests_total\{/ && index($0, route) && /service="a"/ {a += $NF}
        /^ficus_split_requests_total\{/ && index($0, route) && /service="b"/ {b += $NF}
        END {printf "%d %d\n", a, b}'
}
# "in_flight compared matched mismatched failed dropped" of the shadowed route, from
# GET /shadow/ROUTE; failed = shadow_errors + shadow_timeouts + too_large_answers
shadow_record() { # $1 admin URL
    curl -s --max-time 5 "$1/shadow/$BENCH_ROUTE" | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)
    print(r["in_flight"], r["compared"], r["matched"], r["mismatched"],
          r["shadow_errors"] + r["shadow_timeouts"] + r["too_large_answers"], r["dropped"])
except Exception as e:
    sys.exit("no shadow record: %s" % e)'
}
# shadow_drain NAME ADMIN_URL: waits (up to 30 s) until no copy is in flight; prints the
# seconds waited. Copies still running would otherwise land in the next sample's CPU
# window, or in another scenario's (the upstream is shared).
shadow_drain() {
    local name=$1 admin=$2 rec inflight i t0 t1
    t0=$(date +%s.%N)
    for ((i = 0; i < 300; i++)); do
        rec=$(shadow_record "$admin") || die "$name: no record at $admin/shadow/$BENCH_ROUTE"
        read -r inflight _ <<<"$rec"
        ((inflight == 0)) && break
        sleep 0.1
    done
    ((inflight == 0)) || loud "$name: $inflight shadow copies still in flight 30 s after the load stopped"
    t1=$(date +%s.%N)
    # 0 when none was in flight at the first look (the look itself takes a moment)
    if ((i == 0)); then echo 0; else python3 -c "print('%.1f' % ($t1 - $t0))"; fi
}
if want ficus-split; then
    check_conf ficus-split
    start_ficus ficus-split "$FICUS_BIN" "$P_FSPL" "$P_FSPL_ADMIN"
    for ((i = 0; i < 40; i++)); do expect_status ficus-split "${URL[ficus-split]}" 200; done
    read -r sa sb < <(split_counts "http://127.0.0.1:$P_FSPL_ADMIN")
    ((sa > 0 && sb > 0)) ||
        die "ficus-split: after 40 requests ficus_split_requests_total shows a=$sa b=$sb (both sides must have traffic)"
    SPLIT_ADMIN[ficus-split]="http://127.0.0.1:$P_FSPL_ADMIN"
    log "ficus-split: 200 with the upstream's body; after 40 requests ficus_split_requests_total a=$sa b=$sb"
fi
if want ficus-shadow; then
    check_conf ficus-shadow
    start_ficus ficus-shadow "$FICUS_BIN" "$P_FSHD" "$P_FSHD_ADMIN"
    for ((i = 0; i < 10; i++)); do expect_status ficus-shadow "${URL[ficus-shadow]}" 200; done
    adm="http://127.0.0.1:$P_FSHD_ADMIN"
    shadow_drain ficus-shadow "$adm" >/dev/null
    rec=$(shadow_record "$adm") || die "ficus-shadow: no record at $adm/shadow/$BENCH_ROUTE"
    read -r _ c m mm fl dr <<<"$rec"
    ((c > 0 && m == c && mm == 0 && fl == 0 && dr == 0)) ||
        die "ficus-shadow: after 10 requests $adm/shadow/$BENCH_ROUTE shows compared $c, matched $m," \
            "mismatched $mm, failed $fl, dropped $dr (want compared > 0, all matched, none failed or dropped):" \
            "$(curl -s --max-time 5 "$adm/shadow/$BENCH_ROUTE" | head -c 1500)"
    SHADOW_ADMIN[ficus-shadow]=$adm
    log "ficus-shadow: 200 with the upstream's body; /shadow/$BENCH_ROUTE compared $c, matched $m, nothing dropped or failed"
fi

# --- ficus-full (issue 13): the whole stack on one route ---
FFULL_OUT="$TMP/ficus-full.access.jsonl"
if want ficus-full; then
    check_conf ficus-full
    # stdout (the access log) to a file, as for ficus-log
    taskset -c "$SERVER_CPU" "$FICUS_BIN" run --config "$TMP/ficus-full.toml" \
        >>"$FFULL_OUT" 2>>"$TMP/ficus-full.log" </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STOPSIG[$STARTED_PID]=INT
    PNAME[$STARTED_PID]=ficus-full
    SRV_PID[ficus-full]=$STARTED_PID
    log "started ficus-full: pid $STARTED_PID (core $SERVER_CPU), access log -> $FFULL_OUT"
    wait_http ficus-full "$STARTED_PID" "http://127.0.0.1:$P_FFULL_ADMIN/readyz" "$TMP/ficus-full.log"
    u="http://127.0.0.1:$P_FFULL/"
    # The instances take traffic once their health probes have passed (1 s interval):
    # /readyz does not wait for that.
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Authorization: Bearer $JWT_TOKEN" \
            -H "$ORIGIN_HDR" "$u") == 200 ]] && break
        sleep 0.1
    done
    expect_status ficus-full "$u" 401 -H "$ORIGIN_HDR"
    for ((i = 0; i < 20; i++)); do
        expect_status ficus-full "$u" 200 -H "Authorization: Bearer $JWT_TOKEN" -H "$ORIGIN_HDR"
    done
    header_is ficus-full "Access-Control-Allow-Origin: $BENCH_ORIGIN"
    # both instances are in use: the access log names each (its "instance" field)
    # (the log is written by its own thread: give it a moment)
    for port in "$P_UP" "$P_UP2"; do
        for ((i = 0; i < 50; i++)); do
            grep -q "\"instance\":\"127.0.0.1:$port\"" "$FFULL_OUT" && break
            sleep 0.1
        done
        grep -q "\"instance\":\"127.0.0.1:$port\"" "$FFULL_OUT" ||
            die "ficus-full: after 20 requests no access log line names the instance 127.0.0.1:$port"
    done
    grep -q '"status":200' "$FFULL_OUT" || die "ficus-full: no access log line with status 200 in $FFULL_OUT"
    URL[ficus-full]=$u
    WRK_ARGS[ficus-full]="-H|Authorization: Bearer $JWT_TOKEN|-H|$ORIGIN_HDR"
    OHA_ARGS[ficus-full]="-H|Authorization: Bearer $JWT_TOKEN|-H|$ORIGIN_HDR"
    log "ficus-full: 401 without the token; 200 with it and Access-Control-Allow-Origin; both instances used; access log written"
fi

# args_of SCENARIO TOOL: the scenario's extra arguments, one a line ("|"-separated above)
extra_args() {
    local v
    if [[ "$2" == wrk ]]; then v=${WRK_ARGS[$1]:-}; else v=${OHA_ARGS[$1]:-}; fi
    [[ -n "$v" ]] && tr '|' '\n' <<<"$v"
    return 0
}
# the arguments after wrk's URL (a script's own)
wrk_tail() {
    [[ "$1" == ficus-jwt-miss ]] && printf '%s\n' -- "$JWT_DIR/pool.txt"
    return 0
}
# "hits misses" of the jwt policy's token cache, from /metrics
jwt_cache() {
    curl -s --max-time 5 "${ADMIN_URL[$1]}/metrics" | awk '
        /^ficus_auth_cache_total\{/ && /result="hit"/ {h = $NF}
        /^ficus_auth_cache_total\{/ && /result="miss"/ {m = $NF}
        END {printf "%d %d\n", h, m}'
}

FLOG_OUT="$TMP/ficus-log.access.jsonl"
if want ficus-log; then
    # stdout (the access log) appended to a file, stderr to another.
    taskset -c "$SERVER_CPU" "$FICUS_BIN" run --config "$TMP/ficus-log.toml" \
        >>"$FLOG_OUT" 2>>"$TMP/ficus-log.stderr" </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STOPSIG[$STARTED_PID]=INT
    PNAME[$STARTED_PID]=ficus-log
    log "started ficus-log: pid $STARTED_PID (core $SERVER_CPU), access log -> $FLOG_OUT"
    SRV_PID[ficus-log]=$STARTED_PID
    wait_http ficus-log "$STARTED_PID" "http://127.0.0.1:$P_FLOG_ADMIN/readyz" "$TMP/ficus-log.stderr"
    wait_http ficus-log "$STARTED_PID" "http://127.0.0.1:$P_FLOG/" "$TMP/ficus-log.stderr" "$UPSTREAM_BODY"
    URL[ficus-log]="http://127.0.0.1:$P_FLOG/"
fi

# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
ticks() { # "utime stime" (fields 14, 15) of a pid, all its threads, in clock ticks
    local rest
    rest=$(<"/proc/$1/stat") || die "pid $1 is gone"
    rest=${rest##*) } # drop "pid (comm) "; the next field is field 3
    read -r -a f <<<"$rest"
    echo "${f[11]} ${f[12]}"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# Time the hypervisor gave this VM's CPUs to someone else (the `steal` column of
# /proc/stat, all CPUs): a noisy neighbour shows up here, not in our processes' CPU time.
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }
NCPU=$(nproc)

RESULTS_DIR="$TARGET_DIR/bench-results"
mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%d-%H%M%S)
CSV="$RESULTS_DIR/load-$STAMP.csv"
SUMMARY="$RESULTS_DIR/load-$STAMP.md"
echo "round,scenario,tool,ok,requests,seconds,rps,p50_us,p99_us,p999_us,socket_errors,non2xx,cpu_us_per_req,upstream_cpu_us_per_req,rss_kb,offered_rps,note,user_cpu_us_per_req,steal_pct,auth_cache_miss_pct,store_cpu_us_per_req,store_cmds_per_req,split_a_share,shadow_compared,shadow_mismatched,shadow_failed,shadow_dropped,shadow_drain_s" >"$CSV"

cat >"$TMP/parse.py" <<'PY'
import json, re, sys

def us(v, unit):
    return float(v) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]

def wrk(path):
    t = open(path).read()
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", t)
    r["requests"] = int(m.group(1)) if m else 0
    r["seconds"] = us(m.group(2), m.group(3)) / 1e6 if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", t)
    r["rps"] = float(m.group(1)) if m else 0
    for p, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % p, t, re.M)
        r[key] = us(m.group(1), m.group(2)) if m else ""
    r["p999_us"] = ""
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    r["non2xx"] = int(m.group(1)) if m else 0
    ok = r["requests"] > 0 and r["rps"] > 0 and r["p50_us"] != "" and r["p99_us"] != ""
    r["ok"] = int(ok and r["socket_errors"] == 0 and r["non2xx"] == 0)
    r["note"] = "" if ok else "unparsed wrk output"
    return r

def oha(path):
    d = json.load(open(path))
    s = d.get("summary", {})
    lp = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {}) or {}
    errs = d.get("errorDistribution", {}) or {}
    total = sum(int(v) for v in codes.values())
    non2xx = sum(int(v) for k, v in codes.items() if not str(k).startswith("2"))
    nerr = sum(int(v) for v in errs.values())
    g = lambda k: "" if lp.get(k) is None else float(lp[k]) * 1e6
    r = {
        "requests": total,
        "seconds": s.get("total", 0) or 0,
        "rps": s.get("requestsPerSec", 0) or 0,
        "p50_us": g("p50"), "p99_us": g("p99"), "p999_us": g("p99.9"),
        "socket_errors": nerr, "non2xx": non2xx,
    }
    r["ok"] = int(total > 0 and nerr == 0 and non2xx == 0 and r["p99_us"] != "")
    r["note"] = ";".join("%s x%s" % (k.replace(",", " "), v) for k, v in errs.items())[:200]
    return r

kind, path = sys.argv[1], sys.argv[2]
r = wrk(path) if kind == "wrk" else oha(path)
fmt = lambda v: ("%.3f" % v) if isinstance(v, float) else str(v)
print(" ".join(fmt(r[k]) if fmt(r[k]) != "" else "-" for k in
      ("ok", "requests", "seconds", "rps", "p50_us", "p99_us", "p999_us", "socket_errors", "non2xx")))
print(r["note"] or "-")
PY

DUR_S=$(to_seconds "$DURATION")
WARM_S=$(to_seconds "$WARMUP")
FAILED_SAMPLES=0

# sample ROUND SCENARIO TOOL
sample() {
    local round=$1 sc=$2 tool=$3 url=${URL[$2]} pid=${SRV_PID[$2]} out c0 c1 u0 u1 rss xa xt
    local jc0="" jc1="" hits="" misses="" missp=""
    local spid=${STORE_PID[$2]:-} rc0="" rc1="" q0="" q1="" scpu="" scmds=""
    local splitm=${SPLIT_ADMIN[$2]:-} shadm=${SHADOW_ADMIN[$2]:-} sp0="" sp1="" sr0="" sr1=""
    local share="" sh_c="" sh_mm="" sh_fl="" sh_dr="" drain=""
    out="$TMP/r$round-$sc.$tool.out"
    mapfile -t xa < <(extra_args "$sc" "$tool")
    mapfile -t xt < <(wrk_tail "$sc")
    # O_APPEND, so truncating is safe; afterwards its lines are this sample's requests
    [[ "$sc" == ficus-log ]] && : >"$FLOG_OUT"
    # the token cache's counters, read outside the CPU-time window
    [[ -n "${ADMIN_URL[$sc]:-}" ]] && jc0=$(jwt_cache "$sc")
    [[ -n "${RL_ADMIN[$sc]:-}" ]] && rc0=$(rl_counts "${RL_ADMIN[$sc]}")
    [[ -n "$spid" ]] && q0=$(redis_cmds)
    if [[ -n "$splitm" ]]; then sp0=$(split_counts "$splitm"); fi
    if [[ -n "$shadm" ]]; then
        # the warm-up's copies finish before the CPU window opens
        shadow_drain "$sc" "$shadm" >/dev/null
        sr0=$(shadow_record "$shadm") || die "$sc: no shadow record"
    fi
    rss=$(rss_kb "$pid")
    if [[ -n "$spid" ]]; then
        kill -0 "$spid" 2>/dev/null || die "$sc: the store's process (pid $spid) is gone"
        t=$(ticks "$spid") && read -r sk0 ss0 <<<"$t"
    fi
    t=$(ticks "$pid") && read -r k0 sy0 <<<"$t"
    st0=$(steal_ticks)
    t=$(ticks "$UP_WORKER") && read -r uu0 us0 <<<"$t"
    if [[ "$tool" == wrk ]]; then
        timeout -s INT $((DUR_S + 30)) taskset -c "$LOADGEN_CPU" \
            wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${HDR_ARGS[@]}" "${xa[@]}" "$url" "${xt[@]}" >"$out" 2>&1 || true
    else
        timeout -s INT $((DUR_S + 30)) taskset -c "$LOADGEN_CPU" \
            "$OHA_BIN" --no-tui "${OHA_JSON_FLAG[@]}" "${OHA_EXTRA[@]}" "${HDR_ARGS[@]}" "${xa[@]}" -z "$DURATION" -c "$CONNS" -q "$RATE" \
            --latency-correction "$url" >"$out" 2>"$out.err" || true
    fi
    # the sample's copies are its work: the CPU window closes once they are done
    if [[ -n "$shadm" ]]; then drain=$(shadow_drain "$sc" "$shadm"); fi
    t=$(ticks "$pid") && read -r k1 sy1 <<<"$t"
    st1=$(steal_ticks)
    t=$(ticks "$UP_WORKER") && read -r uu1 us1 <<<"$t"
    if [[ -n "$spid" ]]; then t=$(ticks "$spid") && read -r sk1 ss1 <<<"$t"; fi
    [[ -n "${ADMIN_URL[$sc]:-}" ]] && jc1=$(jwt_cache "$sc")
    [[ -n "${RL_ADMIN[$sc]:-}" ]] && rc1=$(rl_counts "${RL_ADMIN[$sc]}")
    [[ -n "$spid" ]] && q1=$(redis_cmds)
    if [[ -n "$splitm" ]]; then sp1=$(split_counts "$splitm"); fi
    if [[ -n "$shadm" ]]; then sr1=$(shadow_record "$shadm") || die "$sc: no shadow record"; fi
    c0=$((k0 + sy0)) c1=$((k1 + sy1)) u0=$((uu0 + us0)) u1=$((uu1 + us1))
    local parsed ok req secs rps p50 p99 p999 serr non2xx note cpu ucpu kcpu steal offered=""
    if ! parsed=$(python3 "$TMP/parse.py" "$tool" "$out" 2>"$out.parse-err"); then
        parsed=$'0 0 0 0 - - - 0 0\nunparsable output'
    fi
    read -r ok req secs rps p50 p99 p999 serr non2xx <<<"$(sed -n 1p <<<"$parsed")"
    note=$(sed -n 2p <<<"$parsed")
    [[ "$note" == - ]] && note=""
    [[ "$tool" == oha ]] && offered=$RATE
    steal=$(python3 -c "print('%.1f' % (($st1-$st0)*100/($CLK_TCK*$DUR_S*$NCPU)))")
    if ((req > 0)); then
        cpu=$(python3 -c "print('%.3f' % (($c1-$c0)*1e6/$CLK_TCK/$req))")
        ucpu=$(python3 -c "print('%.3f' % (($u1-$u0)*1e6/$CLK_TCK/$req))")
        kcpu=$(python3 -c "print('%.3f' % (($k1-$k0)*1e6/$CLK_TCK/$req))")
        if [[ -n "$spid" ]]; then
            scpu=$(python3 -c "print('%.3f' % (($sk1+$ss1-$sk0-$ss0)*1e6/$CLK_TCK/$req))")
            scmds=$(python3 -c "print('%.2f' % (($q1-$q0)/$req))")
            note="${note:+$note; }redis-server cpu/req ${scpu}us, script calls/req $scmds"
        fi
    else
        cpu=""
        ucpu=""
        kcpu=""
    fi
    if [[ -n "$rc0" && -n "$rc1" ]]; then
        read -r a0 l0 e0 <<<"$rc0"
        read -r a1 l1 e1 <<<"$rc1"
        note="${note:+$note; }rate limit admitted $((a1 - a0)) limited $((l1 - l0)) store errors $((e1 - e0))"
        # every request must have been decided by the policy, and none refused
        if ((a1 - a0 < req || l1 - l0 > 0 || e1 - e0 > 0)); then
            loud "$sc round $round $tool: $req requests, but the rate limit admitted $((a1 - a0))," \
                "limited $((l1 - l0)), store errors $((e1 - e0))"
        fi
    fi
    if [[ -n "$jc0" && -n "$jc1" ]]; then
        read -r h0 m0 <<<"$jc0"
        read -r h1 m1 <<<"$jc1"
        hits=$((h1 - h0)) misses=$((m1 - m0))
        if ((hits + misses > 0)); then
            missp=$(python3 -c "print('%.2f' % ($misses*100/($hits+$misses)))")
        fi
        note="${note:+$note; }token cache hits $hits misses $misses"
        # the ficus-jwt-miss figures mean "a verification per request" only if that held
        if [[ "$sc" == ficus-jwt-miss && -n "$missp" ]] && python3 -c "import sys; sys.exit(0 if $missp < 95 else 1)"; then
            loud "ficus-jwt-miss round $round $tool: only $missp% of token lookups missed the cache"
        fi
        if ((hits + misses < req)); then
            loud "$sc round $round $tool: $req requests but $((hits + misses)) token cache lookups"
        fi
    fi
    if [[ -n "$sp0" && -n "$sp1" ]]; then
        read -r a0 b0 <<<"$sp0"
        read -r a1 b1 <<<"$sp1"
        local pa=$((a1 - a0)) pb=$((b1 - b0))
        if ((pa + pb > 0)); then share=$(python3 -c "print('%.4f' % ($pa/($pa+$pb)))"); fi
        note="${note:+$note; }split placements a $pa b $pb"
        # every request is placed once; with random placement each side gets about half
        if ((pa + pb < req)); then
            loud "$sc round $round $tool: $req requests but $((pa + pb)) split placements"
        elif ((req >= 2000)) && ! python3 -c "import sys; sys.exit(0 if 0.45 <= $share <= 0.55 else 1)"; then
            loud "$sc round $round $tool: side a got $share of $((pa + pb)) placements (weights 50/50)"
        fi
    fi
    if [[ -n "$sr0" && -n "$sr1" ]]; then
        read -r _ c0s _ mm0 fl0 dr0 <<<"$sr0"
        read -r _ c1s _ mm1 fl1 dr1 <<<"$sr1"
        sh_c=$((c1s - c0s)) sh_mm=$((mm1 - mm0)) sh_fl=$((fl1 - fl0)) sh_dr=$((dr1 - dr0))
        note="${note:+$note; }shadow copies compared $sh_c mismatched $sh_mm failed $sh_fl dropped $sh_dr, drained in ${drain}s"
        if ((sh_dr > 0)); then
            loud "$sc round $round $tool: $sh_dr shadow copies DROPPED (queue full): the shadow did not keep up"
        fi
        if ((sh_mm > 0 || sh_fl > 0)); then
            loud "$sc round $round $tool: shadow copies mismatched $sh_mm, failed $sh_fl (the same upstream should answer alike)"
        fi
        # every request is copied or counted as dropped (wrk may not count the last few
        # answers it got: more copies than requests is fine)
        if ((sh_c + sh_fl + sh_dr < req)); then
            loud "$sc round $round $tool: $req requests but $((sh_c + sh_fl + sh_dr)) copies accounted for"
        fi
    fi
    if [[ "$sc" == ficus-log && -f "$FLOG_OUT" ]]; then
        note="${note:+$note; }access log lines $(wc -l <"$FLOG_OUT")"
        : >"$FLOG_OUT"
    fi
    [[ "$p50" == - ]] && p50=""
    [[ "$p99" == - ]] && p99=""
    [[ "$p999" == - ]] && p999=""
    echo "$round,$sc,$tool,$ok,$req,$secs,$rps,$p50,$p99,$p999,$serr,$non2xx,$cpu,$ucpu,$rss,$offered,\"$note\",$kcpu,$steal,$missp,$scpu,$scmds,$share,$sh_c,$sh_mm,$sh_fl,$sh_dr,$drain" >>"$CSV"
    if [[ "$ok" != 1 ]]; then
        FAILED_SAMPLES=$((FAILED_SAMPLES + 1))
        loud "FAILED SAMPLE: round $round, $sc, $tool: requests=$req socket_errors=$serr non2xx=$non2xx ${note}" \
            "output: $out"
        sed 's/^/    /' "$out" >&2 || true
    fi
    log "round $round $sc $tool: rps=$rps p50=${p50}us p99=${p99}us${p999:+ p99.9=${p999}us} cpu/req=${cpu}us rss=${rss}kB steal=${steal}% ${note}"
}

if pgrep -x rustc >/dev/null || pgrep -x cc1 >/dev/null; then
    loud "compilers are running on this machine right now: expect noisy numbers" \
        "(the interleaved rounds and same-round ratios are there to absorb this)"
fi
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); scenarios: $SCENARIOS; rounds: $ROUNDS; duration: $DURATION; request headers: $REQUEST_HEADERS"
N_SC=$(wc -w <<<"$SCENARIOS")
PER=$((WARM_S + DUR_S + 2))
[[ -n "$OHA_BIN" ]] && PER=$((PER + DUR_S + 2))
log "expected run time: about $((ROUNDS * N_SC * PER)) s"

for ((round = 1; round <= ROUNDS; round++)); do
    for sc in $SCENARIOS; do
        # warm-up, results discarded
        mapfile -t wa < <(extra_args "$sc" wrk)
        mapfile -t wt < <(wrk_tail "$sc")
        timeout -s INT $((WARM_S + 30)) taskset -c "$LOADGEN_CPU" \
            wrk -t1 -c"$CONNS" -d"$WARMUP" "${HDR_ARGS[@]}" "${wa[@]}" "${URL[$sc]}" "${wt[@]}" >/dev/null 2>&1 || true
        sample "$round" "$sc" wrk
        if [[ -n "$OHA_BIN" && -z "${NO_OHA[$sc]:-}" ]]; then
            sample "$round" "$sc" oha
        fi
    done
done

# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------
summarize "$CSV" "$SCENARIOS" "$RATE" "${OHA_BIN:+1}" "$REQUEST_HEADERS" >"$SUMMARY"
# ficus-shadow's record over its whole life: what the per-sample counts above add up to,
# plus the checks' and warm-ups' copies
if [[ -n "${SHADOW_ADMIN[ficus-shadow]:-}" ]]; then
    shadow_drain ficus-shadow "${SHADOW_ADMIN[ficus-shadow]}" >/dev/null
    if rec=$(shadow_record "${SHADOW_ADMIN[ficus-shadow]}"); then
        read -r _ c m mm fl dr <<<"$rec"
        dropped_txt="dropped $dr (queue full)"
        ((dr > 0)) && dropped_txt="**dropped $dr (queue full): the shadow did not keep up**"
        printf '\nficus-shadow after the run, GET /shadow/%s (every copy: checks, warm-ups and samples): compared %s, matched %s, mismatched %s, failed %s, %s\n' \
            "$BENCH_ROUTE" "$c" "$m" "$mm" "$fl" "$dropped_txt" >>"$SUMMARY"
    else
        printf '\nficus-shadow after the run: no record at %s/shadow/%s\n' "${SHADOW_ADMIN[ficus-shadow]}" "$BENCH_ROUTE" >>"$SUMMARY"
    fi
fi

{
    echo
    echo "================================================================================"
    echo "ficus load benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
    echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        [[ -n "$(git -C "$ROOT" status --porcelain -- src plugins benches Cargo.toml Cargo.lock 2>/dev/null)" ]] &&
            echo ' + uncommitted changes')"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)${OHA_BIN:+, $("$OHA_BIN" --version 2>/dev/null | head -n1)}"
    [[ -z "$OHA_BIN" ]] && echo "fixed-rate latency part (oha): SKIPPED"
    echo "================================================================================"
    echo
    cat "$SUMMARY"
    echo
    echo "raw samples: $CSV"
    echo "summary:     $SUMMARY"
}

FAILED_RUN=0
if ((FAILED_SAMPLES > 0)); then
    FAILED_RUN=1
    loud "$FAILED_SAMPLES sample(s) FAILED (errors or non-2xx); they are excluded from the medians above"
    exit 1
fi
