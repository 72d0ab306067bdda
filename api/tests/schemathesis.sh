#!/usr/bin/env bash
# Schemathesis against weir-api's OpenAPI document: starts a weir-api on a
# temporary SQLite database, makes an org with a project and an org-owner API
# token, and runs schemathesis with every check (--checks all) with that
# token: no 5xx, statuses, content types, headers and bodies as documented,
# requests the document allows are not refused (400/422) and requests it
# forbids are not accepted. Exits with schemathesis's status; it never says
# it passed when schemathesis did not run.
#
#   api/tests/schemathesis.sh [extra schemathesis options]
# Knobs: ST_MAX_EXAMPLES (default 10), ST_TIME_LIMIT seconds (default 300),
# ST_SEED (replay the run that printed "Seed: N").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis: installing from PyPI" >&2
  python3 -m pip install --quiet schemathesis >&2
fi

cargo build -q -p weir-api --bin weir-api
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/weir-api"

TMP="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
PASSWORD="schemathesis-admin-password"

WEIR_DATABASE_URL="sqlite://$TMP/weir.db?mode=rwc" \
WEIR_LISTEN="127.0.0.1:$PORT" \
WEIR_PUBLIC_URL="$BASE" \
WEIR_BOOTSTRAP_ADMIN_EMAIL="admin@schemathesis.test" \
WEIR_BOOTSTRAP_ADMIN_PASSWORD="$PASSWORD" \
WEIR_WEB_DIR="$TMP/no-web" \
WEIR_KUBE_TENANTS=off \
RUST_LOG=warn \
  "$BIN" >"$TMP/api.log" 2>&1 &
API_PID=$!
cleanup() { kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BASE/readyz" >/dev/null || { echo "weir-api did not start:"; cat "$TMP/api.log"; exit 1; }

# Sign in, make an org and a project, and an org-owner token for schemathesis.
JAR="$TMP/cookies"
CSRF="$(curl -fsS -c "$JAR" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@schemathesis.test\",\"password\":\"$PASSWORD\"}" \
  "$BASE/api/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')"
post() { curl -fsS -b "$JAR" -H "x-csrf-token: $CSRF" -H 'content-type: application/json' -d "$2" "$BASE$1"; }
post /api/v1/orgs '{"slug":"riverside-water","name":"Riverside Water"}' >/dev/null
post /api/v1/orgs/riverside-water/projects '{"slug":"north-plant","name":"North Plant"}' >/dev/null
TOKEN="$(post /api/v1/orgs/riverside-water/tokens '{"name":"schemathesis","role":"org-owner"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

# Every check schemathesis has. Excluded by name only: health and metrics
# (not part of the API), and operations that would end the fuzzer's own
# session or credentials mid-run.
LOG="$TMP/schemathesis.log"
set +e
# A new seed each run, so every CI run explores new requests; schemathesis
# prints it ("Seed: N") and ST_SEED=N replays that run exactly.
SEED_ARGS=()
[ -n "${ST_SEED:-}" ] && SEED_ARGS=(--seed "$ST_SEED")
timeout "${ST_TIME_LIMIT:-300}" schemathesis run "$BASE/api/v1/openapi.json" \
  --url "$BASE" \
  "${SEED_ARGS[@]}" \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "${ST_MAX_EXAMPLES:-10}" \
  --checks all \
  --exclude-path /healthz \
  --exclude-path /readyz \
  --exclude-path /metrics \
  --exclude-path /api/v1/auth/logout \
  --exclude-name "PUT /api/v1/me/password" \
  --exclude-name "DELETE /api/v1/me/sessions" \
  --no-color "$@" 2>&1 | tee "$LOG"
RC=${PIPESTATUS[0]}
set -e
if [ "$RC" -eq 124 ]; then
  echo "schemathesis: stopped after ${ST_TIME_LIMIT:-300} s (ST_TIME_LIMIT) before it finished"
elif [ "$RC" -eq 0 ] && ! grep -Eq "^ +Tested: [1-9]" "$LOG"; then
  echo "schemathesis: it tested no operation"
  RC=1
fi
echo "schemathesis exit status: $RC"
exit "$RC"
