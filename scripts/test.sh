#!/usr/bin/env bash
# Runs every test suite. Sets the machine up first (scripts/setup.sh: Debian
# packages, PostgreSQL on 127.0.0.1:5432); the tests start their own
# Mosquitto brokers, OpenID provider, Modbus servers and Kubernetes control
# plane.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"

need cargo "install Rust with rustup (https://rustup.rs)"
need go "install Go 1.26 (the Kubernetes scenarios build their control plane from Go modules)"
# Debian packages, PostgreSQL started with its test database (a no-op when done).
bash scripts/setup.sh || die "set-up failed (scripts/setup.sh; it needs root or sudo)"
export PATH="$PATH:/usr/sbin"
need mosquitto "sudo apt-get install mosquitto"
need pg_isready "sudo apt-get install postgresql-client"
pg_up || die "PostgreSQL is not reachable on 127.0.0.1:5432 (tests need it; start it, e.g. sudo pg_ctlcluster 15 main start)"

# Test peers that are not Rust: the OpenID provider for the SSO test (npm)
# and the SMTP sink, Modbus server and API fuzzer (pip). Installed once.
if [ ! -d e2e/oidc/node_modules/oidc-provider ]; then
  need npm "sudo apt-get install nodejs npm"
  step "installing the OpenID provider for the SSO test (e2e/oidc)"
  (cd e2e/oidc && npm ci --no-audit --no-fund) || die "npm ci in e2e/oidc failed"
fi
if ! python3 -c 'import aiosmtpd, pymodbus, serial, asyncua' 2>/dev/null || ! command -v schemathesis >/dev/null; then
  step "installing the Python test peers (aiosmtpd, pymodbus, pyserial, schemathesis, asyncua)"
  python3 -m pip install -q --disable-pip-version-check aiosmtpd 'pymodbus>=3.9,<4' pyserial schemathesis 'asyncua>=2.1,<3' \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages aiosmtpd 'pymodbus>=3.9,<4' pyserial schemathesis 'asyncua>=2.1,<3' \
    || die "pip install of the Python test peers failed"
fi

LOG=$(mktemp)
failed_suites=()

run_suite() {
  local name=$1; shift
  step "$name"
  if "$@" 2>&1 | tee -a "$LOG"; then ok "$name"; else failed_suites+=("$name"); fi
}

run_suite "format" cargo fmt --all -- --check
run_suite "clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
run_suite "cargo test (workspace)" cargo test --workspace --no-fail-fast
for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  run_suite "$(basename "$extra" .sh)" bash "$extra"
done

# One closing line over every suite: cargo's per-binary results, plus the
# "N passed, N failed" lines other suites print.
passed=$(grep -Eo '(test result: [a-zA-Z]+\. )?[0-9]+ passed' "$LOG" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$LOG" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
rm -f "$LOG"
if [ ${#failed_suites[@]} -gt 0 ]; then
  echo "failed suites: ${failed_suites[*]}"
  [ "$failed" -gt 0 ] || failed=${#failed_suites[@]}
fi
echo "total: $passed passed, $failed failed"
[ ${#failed_suites[@]} -eq 0 ]
