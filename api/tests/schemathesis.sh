#!/usr/bin/env bash
# Schemathesis against weir-api's OpenAPI document: starts a weir-api on a
# temporary SQLite database, makes an org with a project and an org-owner API
# token, and runs a short schemathesis session with that token. Fails on any
# 5xx or any response that breaks the documented schema.
#
#   api/tests/schemathesis.sh            (from the repository root or anywhere)
# Knobs: ST_MAX_EXAMPLES (default 10), ST_TIME_LIMIT seconds (default 300).
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

timeout "${ST_TIME_LIMIT:-300}" schemathesis run "$BASE/api/v1/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "${ST_MAX_EXAMPLES:-10}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /api/v1/auth/logout \
  --no-color
