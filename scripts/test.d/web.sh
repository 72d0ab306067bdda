#!/usr/bin/env bash
# The web console: install, API client drift check, unit/component tests,
# build, end-to-end in Debian's chromium against a real weir-api.
# Ends with one line: "web: N passed, M failed" (vitest + e2e).
set -uo pipefail
cd "$(dirname "$0")/../../web"
# Reuse the suite's target dir when run from scripts/test.sh (weir-api is built there already).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target-web}"
export NO_COLOR=1 FORCE_COLOR=0
mkdir -p test-results
passed=0 failed=0 broken=()

# Inner runners print their own "N passed" lines; reword them so that the
# repo's total counts each test once (from the closing line below).
quiet_counts() { sed -u -E 's/([0-9]+) passed/\1 ok/g; s/([0-9]+) failed/\1 not ok/g'; }

run() {
  local name=$1; shift
  echo "--- web: $name"
  "$@" 2>&1 | quiet_counts
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || broken+=("$name")
  return "$rc"
}

run "npm ci" npm ci --no-audit --no-fund || { echo "web: 0 passed, 1 failed"; exit 1; }
run "check:api" npm run --silent check:api
run "vitest" npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json
if [ -f test-results/vitest.json ]; then
  read -r vp vf < <(node -e 'const r=require("./test-results/vitest.json");console.log(r.numPassedTests, r.numFailedTests + (r.numRuntimeErrorTestSuites||0) + (r.numFailedTestSuites && !r.numFailedTests ? r.numFailedTestSuites : 0))')
  passed=$((passed + vp)); failed=$((failed + vf))
else
  failed=$((failed + 1))
fi
if run "build" npm run --silent build; then
  rm -f test-results/e2e-summary.json
  run "e2e" npm run --silent e2e
  if [ -f test-results/e2e-summary.json ]; then
    read -r ep ef < <(node -e 'const r=require("./test-results/e2e-summary.json");console.log(r.passed, r.failed)')
    passed=$((passed + ep)); failed=$((failed + ef))
  else
    failed=$((failed + 1))
  fi
fi
if [ ${#broken[@]} -gt 0 ]; then
  echo "web: failed steps: ${broken[*]}"
  [ "$failed" -gt 0 ] || failed=${#broken[@]}
fi
echo "web: $passed passed, $failed failed"
[ ${#broken[@]} -eq 0 ]
