#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (docs/fuzzing.md). CI calls it with the default
# short budget; for a long run: FUZZ_SECONDS=300 fuzz/run.sh.
#
#   FUZZ_SECONDS   seconds per target (default 25)
#   FUZZ_TARGETS   space-separated subset (default: all five)
#
# Exits non-zero as soon as a target fails (a crash, a failed check, a timeout or too much
# memory); libFuzzer prints the input and saves it under fuzz/artifacts/TARGET/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-25}
targets=${FUZZ_TARGETS:-"config_compile route_request request_head jwt_token cors_origin"}

# cargo-fuzz drives the build; libfuzzer-sys compiles libFuzzer with a C++ compiler.
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if ! command -v c++ >/dev/null 2>&1; then
    apt-get install -y g++
fi

# Only stable Rust is installed: RUSTC_BOOTSTRAP lets it take the -Z flags cargo-fuzz
# passes for coverage instrumentation. No sanitizer: ficus's few unsafe libc calls are not
# on the fuzzed paths,
# and the C in its dependencies (ring) would not be instrumented by rustc's ASan anyway;
# without it the targets run about twice as fast. `-a` keeps debug assertions and
# overflow checks on in the optimized build.
export RUSTC_BOOTSTRAP=1
export CARGO_INCREMENTAL=0
flags=(-O -a --sanitizer none)

cargo fuzz build "${flags[@]}"
for t in $targets; do
    corpus="$root/fuzz/corpus/$t"
    mkdir -p "$corpus"
    echo "== $t: ${seconds}s"
    cargo fuzz run "${flags[@]}" "$t" "$corpus" "$root/fuzz/seeds/$t" -- \
        -max_total_time="$seconds" \
        -dict="$root/fuzz/dicts/$t.dict" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -max_len=8192 \
        -print_final_stats=1
done
echo "fuzz: all targets ran clean (${seconds}s each)"
