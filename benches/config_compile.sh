#!/usr/bin/env bash
# Measures config compilation: `ficus check` time and peak RSS, and a running gateway's
# RSS after start and after one reload of a config with as many different routes.
#
#   benches/config_compile.sh [FICUS_BINARY] [N...]
#   SHAPE=headers benches/config_compile.sh target/release/ficus 20000 100000
#   MAX_ROUTES=2000000 benches/config_compile.sh target/release/ficus 1000000
#
# Prints one line per N. Needs GNU time (/usr/bin/time, `apt-get install time`).
set -euo pipefail
bin=${1:-target/release/ficus}
shift || true
sizes=("${@:-10000}")
shape=${SHAPE:-plain}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The lowest of a few readings over a second: compile garbage returned to the system.
settled_rss() {
  local low=999999999 r
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    r=$(rss_kib "$1"); ((r < low)) && low=$r
    sleep 0.1
  done
  echo "$low"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf "%-8s %-8s %10s %12s %14s %14s %16s\n" shape routes check_s check_KiB base_KiB start_B/route reload_B/route
for n in "${sizes[@]}"; do
  listen=127.0.0.1:$(free_port); admin=127.0.0.1:$(free_port)
  gen() { python3 "$here/gen_routes.py" "$1" --shape "$shape" --listen "$listen" --admin "$admin" ${MAX_ROUTES:+--max-routes "$MAX_ROUTES"}; }
  gen 0 > "$work/base.toml"
  gen "$n" > "$work/routes.toml"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" check "$work/routes.toml" > /dev/null 2>&1 || true
  read -r check_s check_kib < "$work/time"
  # Baseline: the same gateway with no routes.
  "$bin" run --config "$work/base.toml" > "$work/base.log" 2>&1 & pid=$!
  until curl -s -o /dev/null "http://$admin/healthz"; do sleep 0.1; done
  base=$(settled_rss "$pid"); kill "$pid"; wait "$pid" 2>/dev/null || true
  "$bin" run --config "$work/routes.toml" > "$work/run.log" 2>&1 & pid=$!
  until curl -s -o /dev/null "http://$admin/healthz"; do sleep 0.1; done
  start=$(settled_rss "$pid")
  # Reload with every route's path changed (names kept, as an edit would), and wait for it
  # to be applied.
  gen "$n" | sed 's|path = "/|path = "/v2/|' > "$work/next.toml"
  mv "$work/next.toml" "$work/routes.toml"
  until grep -q "config reloaded" "$work/run.log"; do
    if grep -q "config reload failed" "$work/run.log"; then echo "reload failed" >&2; break; fi
    sleep 0.2
  done
  reload=$(settled_rss "$pid"); kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  printf "%-8s %-8s %10s %12s %14s %14s %16s\n" "$shape" "$n" "$check_s" "$check_kib" "$base" \
    $(((start - base) * 1024 / n)) $(((reload - base) * 1024 / n))
done
