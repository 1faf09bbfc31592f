#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, runs
# every test. This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)          # pingora (libz-ng-sys)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# A real DNS server for discovery tests (/usr/sbin may not be on PATH).
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
# A real Redis for the rate limiter's shared store (tests/common/redis.rs starts its own
# instances on free ports; the Debian service the package may start is not used).
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
# Headless browser for the registry dashboard test.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Node runs the OpenID provider (tests/oidc, npm oidc-provider 9). It runs on Node 20 and
# warns "Unsupported runtime": upstream supports Node 22 LTS and later.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "tests/run.sh: Node $(node --version) is too old for oidc-provider 9 (tests/oidc); install Node 20 or later (22 LTS is what upstream supports)" >&2
  exit 1
fi
# The OpenID provider's packages, exactly as locked. npm writes node_modules/.package-lock.json
# on every install: when it is missing or older than the lockfile, install again.
if [ ! -f tests/oidc/node_modules/.package-lock.json ] ||
   [ tests/oidc/package-lock.json -nt tests/oidc/node_modules/.package-lock.json ]; then
  echo "== npm ci --prefix tests/oidc"
  npm ci --prefix tests/oidc --no-audit --no-fund
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
# The fuzz crate is not in the workspace (cargo fuzz builds it with its own flags): lint
# and format-check it on its own.
echo "== fuzz crate: cargo fmt --check, cargo clippy"
(cd fuzz && cargo fmt -- --check && RUSTC_BOOTSTRAP=1 cargo clippy --all-targets -- -D warnings)
echo "== tests"
# Integration tests start real gateways and origins; two cores, so keep parallelism modest.
cargo nextest run --workspace --no-fail-fast --test-threads 2 --retries 0
echo "== doc tests"
cargo test --workspace --doc
# Every cargo fuzz target, briefly (docs/fuzzing.md has the long runs). The first build of
# fuzz/ compiles the dependencies again with coverage instrumentation: several minutes.
echo "== fuzz targets, ${FUZZ_SECONDS:-10} s each"
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash fuzz/run.sh
echo "== all tests passed"
