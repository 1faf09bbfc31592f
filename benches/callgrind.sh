#!/usr/bin/env bash
# Instructions per request, by function, for ficus or bare-pingora: the steady figure for
# "did this change make the hot path cheaper" (wall time on this box is too noisy for that).
#
# Starts an nginx `return 200` upstream, runs the proxy under valgrind's callgrind with one
# worker thread, warms it up with wrk, zeroes the counters, measures a fixed-length wrk run,
# dumps, and prints instructions per request: in total and for the top functions (self
# cost), plus the inclusive cost of ficus's own proxy phases.
#
# Usage: bash benches/callgrind.sh [ficus|bare] [extra [gateway] TOML lines]
#   bash benches/callgrind.sh ficus
#   bash benches/callgrind.sh ficus 'preserve_header_case = false'
#   bash benches/callgrind.sh bare
# Also prints allocations per request (calls into the allocator) and their biggest callers.
# Knobs: SECS (measured seconds, default 6), TOP (functions listed, default 30),
#        SKIP_BUILD=1 (use target/release as is), KEEP=1 (keep the temp dir),
#        REQUEST_HEADERS=browser (send benches/browser-headers.txt with every request;
#        a count such as 6, 12 or 24: that many header fields in all, see request-headers.sh),
#        FICUS_BIN=path (measure that ficus binary instead of target/release/ficus; no build),
#        ACCESS=1 (the route carries an [access.NAME] policy that admits the client: the
#        cost of the plugin chain with one request hook),
#        JWT=1 (the route has auth = "bench", an [auth.bench] jwt policy with a local RSA 2048
#        key, algorithms = ["RS256"], issuer, audience, claims_to_headers = { sub =
#        "X-User-Id" }, and every request carries the same valid token: the cache-hit path),
#        JWT=miss (the same policy with cache_size = 100, and wrk cycles through a pool of
#        JWT_POOL (default 10000) distinct tokens: a full RS256 verification per request; the
#        share of token-cache misses during the measured run is printed),
#        JWT=header (no policy, but every request carries the same Authorization header as
#        with JWT=1: what the token's bytes cost the proxy without any auth work),
#        ORIGIN=1 (every request carries `Origin: https://app.example.com`),
#        SHADOW=1 (the route copies every request to a second service at the same upstream:
#        load.sh's ficus-shadow),
#        LOG=text|json (the access log on, in that format, written to a file; default off),
#        FULL=1 (load.sh's ficus-full: JWT=1, RLCORS=1, LOG=json, and the service has two
#        instances, the nginx upstream on a second port, with health probes and
#        least_request balancing),
#        RLCORS=1 (the route has load.sh's ficus-rl-cors policies: a local rate limit that is
#        never hit and a CORS policy admitting that origin; implies ORIGIN=1).
# The total per request moves by 1-2k between runs with how busy the box is (fewer requests
# per wakeup, more runtime overhead each); the last line, ficus's proxy phases together, is
# the steady figure for changes inside the phases. Compare binaries in alternating runs.
# Binaries come from $CARGO_TARGET_DIR/release (default target/release).
set -euo pipefail

WHICH=${1:-ficus}
EXTRA=${2:-}
SECS=${SECS:-6}
TOP=${TOP:-30}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=benches/request-headers.sh
source benches/request-headers.sh

die() { echo "callgrind.sh: $*" >&2; exit 1; }
if [[ "${FULL:-0}" == 1 ]]; then
    JWT=${JWT:-1}
    RLCORS=1
    LOG=${LOG:-json}
fi
[[ "$WHICH" == ficus || "$WHICH" == bare ]] || die "first argument must be ficus or bare"
JWT=${JWT:-0}
JWT_POOL=${JWT_POOL:-10000}
case "$JWT" in
0) ;;
1 | miss | header) [[ "$WHICH" == ficus ]] || die "JWT=$JWT needs the ficus scenario" ;;
*) die "JWT must be 0, 1, miss or header (got '$JWT')" ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
[[ "$JWT" == 0 ]] || command -v node >/dev/null || need+=(nodejs)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 ||
        die "could not install ${need[*]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ -n "${FICUS_BIN:-}" ]]; then
    [[ "$WHICH" == ficus && -x "$FICUS_BIN" ]] || die "FICUS_BIN must be an executable ficus, with the ficus scenario"
elif [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    if [[ "$WHICH" == bare ]]; then
        cargo build --release -p bare-pingora --bin bare-pingora >&2
    else
        cargo build --release --bin ficus >&2
    fi
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    [[ -f "$TMP/nginx.pid" ]] && kill -QUIT "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

read -r P_UP P_PROXY P_ADMIN P_UP2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')

cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $TMP;
  server { listen 127.0.0.1:$P_UP; listen 127.0.0.1:$P_UP2; location / { return 200 "hello from upstream\n"; } }
}
EOF
"$NGINX" -c "$TMP/nginx.conf" -e "$TMP/nginx-startup.log" 2>/dev/null || "$NGINX" -c "$TMP/nginx.conf"

if [[ "$WHICH" == bare ]]; then
    CMD=("$TARGET_DIR/release/bare-pingora" --listen "127.0.0.1:$P_PROXY" --upstream "127.0.0.1:$P_UP" --threads 1)
else
    # The route's own keys and the sections after it are collected separately, so the
    # knobs combine (FULL=1 is JWT=1 RLCORS=1 LOG=json plus a two-instance service).
    ROUTE_KEYS=""
    SECTIONS=""
    INSTANCES="\"127.0.0.1:$P_UP\""
    SERVICE_KEYS=""
    if [[ "${FULL:-0}" == 1 ]]; then
        # load.sh's ficus-full: the second instance is the same nginx on a second port
        INSTANCES="\"127.0.0.1:$P_UP\", \"127.0.0.1:$P_UP2\""
        SERVICE_KEYS=$'health = { path = "/", interval = "1s", timeout = "500ms" }\nlb = "least_request"'
    fi
    if [[ "$JWT" != 0 ]]; then
        pool=0
        [[ "$JWT" == miss ]] && pool=$JWT_POOL
        node benches/jwt-tokens.js "$TMP/jwt" "$pool" || die "benches/jwt-tokens.js failed"
        JWT_TOKEN=$(<"$TMP/jwt/token.txt")
    fi
    if [[ "$JWT" == 1 || "$JWT" == miss ]]; then
        ROUTE_KEYS+=$'auth = "bench"\n'
        SECTIONS+="
[auth.bench]
type = \"jwt\"
public_key_file = \"$TMP/jwt/public.pem\"
algorithms = [\"RS256\"]
issuer = \"https://idp.bench.invalid/realms/bench\"
audience = \"ficus-bench\"
claims_to_headers = { sub = \"X-User-Id\" }
"
        [[ "$JWT" == miss ]] && SECTIONS+=$'cache_size = 100\n'
    fi
    if [[ "${RLCORS:-0}" == 1 ]]; then
        ROUTE_KEYS+=$'rate_limit = "bench"\ncors = "bench"\n'
        SECTIONS+='
[rate_limits.bench]
limits = [{ key = "client_ip", rate = "1000000/s", burst = 1000000 }]

[cors.bench]
origins = ["https://app.example.com"]
credentials = true
expose_headers = ["X-Request-Id"]
'
    fi
    if [[ "${SHADOW:-0}" == 1 ]]; then
        # A second service at the same upstream: ficus refuses a shadow that is the
        # route's own service.
        ROUTE_KEYS+=$'shadow = { service = "shadow", sample = 1.0, queue = 1024 }\n'
        SECTIONS+="
[services.shadow]
instances = [\"127.0.0.1:$P_UP\"]
"
    fi
    if [[ "${ACCESS:-0}" == 1 ]]; then
        ROUTE_KEYS+=$'access = "office"\n'
        SECTIONS+='
[access.office]
allow = ["10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32"]
deny = ["192.0.2.0/24"]
'
    fi
    cat >"$TMP/ficus.toml" <<EOF
[gateway]
listen = ["127.0.0.1:$P_PROXY"]
admin = "127.0.0.1:$P_ADMIN"
threads = 1
access_log = "${LOG:-off}"
$EXTRA

[services.upstream]
instances = [$INSTANCES]
$SERVICE_KEYS

[[routes]]
name = "plain"
match = { path = "/**" }
service = "upstream"
$ROUTE_KEYS
$SECTIONS
EOF
    CMD=("${FICUS_BIN:-$TARGET_DIR/release/ficus}" run --config "$TMP/ficus.toml")
fi

# the load: wrk's arguments before the URL, and after it (a script's own)
WRK_PRE=("${HDR_ARGS[@]}")
WRK_POST=()
if [[ "${ORIGIN:-0}" == 1 || "${RLCORS:-0}" == 1 ]]; then
    WRK_PRE+=(-H "Origin: https://app.example.com")
fi
case "$JWT" in
1 | header) WRK_PRE+=(-H "Authorization: Bearer $JWT_TOKEN") ;;
miss)
    WRK_PRE+=(-s benches/jwt-pool.lua)
    WRK_POST=(-- "$TMP/jwt/pool.txt")
    ;;
esac

valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "${CMD[@]}" >"$TMP/proxy.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 150); do
    curl -s -o /dev/null "http://127.0.0.1:$P_PROXY/" && break
    kill -0 "$VG" 2>/dev/null || die "the proxy exited: $(tail -5 "$TMP/proxy.log")"
    sleep 0.2
done
if [[ "$JWT" == 1 || "$JWT" == miss ]]; then
    # fast 401s must not pass for the authenticated path
    # health-probed instances take traffic once a probe has passed (FULL=1)
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $JWT_TOKEN" \
            "http://127.0.0.1:$P_PROXY/") == 200 ]] && break
        sleep 0.2
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$P_PROXY/")
    [[ "$code" == 401 ]] || die "JWT=$JWT: a request without a token got $code, not 401"
    curl -sf -o /dev/null --max-time 10 -H "Authorization: Bearer $JWT_TOKEN" "http://127.0.0.1:$P_PROXY/" ||
        die "JWT=$JWT: a request with a valid token did not get 200"
else
    curl -sf -o /dev/null "http://127.0.0.1:$P_PROXY/" || die "the proxy did not come up: $(tail -5 "$TMP/proxy.log")"
fi

wrk -t1 -c16 -d2s "${WRK_PRE[@]}" "http://127.0.0.1:$P_PROXY/" "${WRK_POST[@]}" >/dev/null
# "hits misses" of the policy's token cache
cache_counts() {
    curl -s --max-time 10 "http://127.0.0.1:$P_ADMIN/metrics" | awk '
        /^ficus_auth_cache_total\{/ && /result="hit"/ {h = $NF}
        /^ficus_auth_cache_total\{/ && /result="miss"/ {m = $NF}
        END {printf "%d %d\n", h, m}'
}
[[ "$JWT" == 1 || "$JWT" == miss ]] && read -r H0 M0 < <(cache_counts)
callgrind_control -z "$VG" >/dev/null
OUT=$(wrk -t1 -c16 -d"${SECS}s" "${WRK_PRE[@]}" "http://127.0.0.1:$P_PROXY/" "${WRK_POST[@]}")
callgrind_control -d "$VG" >/dev/null
if [[ "$JWT" == 1 || "$JWT" == miss ]]; then
    read -r H1 M1 < <(cache_counts)
    echo "token cache during the measured run: $((H1 - H0)) hits, $((M1 - M0)) misses"
fi
REQS=$(awk '/requests in/{print $1}' <<<"$OUT")
grep -q "Non-2xx" <<<"$OUT" && die "non-2xx responses during the run: $OUT"
[[ -n "$REQS" && "$REQS" -gt 0 ]] || die "no requests measured: $OUT"
DUMP=$(ls "$TMP"/cg.out.* 2>/dev/null | head -1)
[[ -n "$DUMP" ]] || die "callgrind wrote no dump"

python3 - "$DUMP" "$REQS" "$TOP" "$WHICH" "$JWT" <<'PY'
import re, subprocess, sys
dump, reqs, top, which, jwt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
TOP_ALLOC = 25
def rows(inclusive):
    args = ["callgrind_annotate", "--threshold=100"] + (["--inclusive=yes"] if inclusive else []) + [dump]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)", line)
        if m:
            yield int(m.group(1).replace(",", "")), float(m.group(2)), re.sub(r"^\?\?\?:| \[.*\]$", "", m.group(3))
total = next((n for n, _, f in rows(False) if "PROGRAM TOTALS" in f), None)
if total is None:
    total = max(n for n, _, _ in rows(True))
mode = {"0": "", "1": ", JWT route, one token (cache hit)", "miss": ", JWT route, token pool (cache miss)",
        "header": ", plain route, the JWT's Authorization header"}[jwt]
print(f"{which}{mode}: {reqs} requests measured, {total / reqs:,.0f} instructions per request")
print()
print("self cost per request, top functions:")
shown = 0
for n, pct, f in rows(False):
    if "PROGRAM TOTALS" in f or pct > 50:
        continue
    print(f"{n / reqs:9,.0f}  {f[:140]}")
    shown += 1
    if shown >= top:
        break
if which == "ficus":
    print()
    print("inclusive cost per request of ficus's own code:")
    phases = 0
    for n, pct, f in rows(True):
        if ("ficus::" in f or "ficus_plugins::" in f or "HeaderDeadline" in f) and pct < 99 and n / reqs >= 100 \
                and "drop_in_place" not in f:
            print(f"{n / reqs:9,.0f}  {f[:140]}")
        if re.search(r"ProxyHttp>::(request_filter|upstream_peer|upstream_request_filter|"
                     r"upstream_response_filter|response_filter|logging)::\{\{closure\}\}", f):
            phases += n
    # The total above moves by a thousand or two with how many requests each wakeup finds
    # (a busy box, fewer requests measured: more runtime overhead per request); the phases'
    # own work does not.
    print()
    print(f"ficus's proxy phases together (request_filter ... logging): {phases / reqs:,.0f} per request")
# Allocations: calls into the allocator (mimalloc, ficus's and bare-pingora's global
# allocator) per request, counted from the call graph, and their biggest callers.
out = subprocess.run(["callgrind_annotate", "--tree=caller", "--inclusive=yes", "--threshold=100", dump],
                     capture_output=True, text=True).stdout.splitlines()
def callers(fn):
    res = {}
    for i, line in enumerate(out):
        if re.search(r"\*\s+\?\?\?:%s \[" % re.escape(fn), line):
            j = i - 1
            while j >= 0 and out[j].strip():
                m = re.match(r"\s*[\d,]+ \([^)]*\)\s+<\s+(?:\?\?\?:)?(.*?) \(([\d,]+)x\)(?: \[.*\])?$", out[j])
                if m:
                    res[m.group(1)] = res.get(m.group(1), 0) + int(m.group(2).replace(",", ""))
                j -= 1
    return res
print()
counts = {fn: callers(fn) for fn in ("mi_malloc_aligned", "mi_realloc_aligned", "mi_free")}
print("allocations per request: %.1f, reallocations %.1f, frees %.1f" % tuple(
    sum(c.values()) / reqs for c in counts.values()))
for name, n in sorted(counts["mi_malloc_aligned"].items(), key=lambda kv: -kv[1])[:TOP_ALLOC]:
    if n / reqs >= 0.5:
        print(f"{n / reqs:9.1f}  {name[:140]}")
PY
