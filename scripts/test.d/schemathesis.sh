#!/usr/bin/env bash
# Property-based checks of weir-api against its own OpenAPI document
# (schemathesis): no 5xx, status codes, content types and bodies as documented.
# Ends with one line: "schemathesis: N passed, M failed" (one suite).
set -uo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp)
bash api/tests/schemathesis.sh > "$log" 2>&1
rc=$?
tail -n 25 "$log"
rm -f "$log"
if [ "$rc" -eq 0 ]; then echo "schemathesis: 1 passed, 0 failed"; else echo "schemathesis: 0 passed, 1 failed"; fi
exit "$rc"
