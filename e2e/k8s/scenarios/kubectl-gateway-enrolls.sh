#!/usr/bin/env bash
# An EdgeGateway applied with kubectl enrolls an agent: weir-operator and
# weir-api run as host processes against the API server (the api as the
# chart's ServiceAccount, SQLite). The api — the one issuer of enrollment
# tokens — writes the gateway's token to Secret <gateway>-enrollment (owned
# by the EdgeGateway); `weir-agent run --server $API_URL --token <it>` on the
# host enrolls with it and runs the operator's signed bundle (the api sees
# the bundle version applied from the agent's heartbeat). The used-up token
# is replaced in the Secret and refused at /enroll; a reissue request on the
# EdgeGateway replaces the token again and revokes the old one. Deleting the
# EdgeGateway deletes the gateway in the api, and the Secret goes by garbage
# collection.
set -euo pipefail
. e2e/k8s/lib.sh

T=kubectl-enroll
NS=weir-$T
GW=filtration-sim
tmp="$WEIR_K8S_WORK/kubectl-gateway-enrolls"
mkdir -p "$tmp"
fresh_tenant_namespace "$T"
wait_quota_counts_gateways
start_operator
WEIR_KUBE_SYNC_INTERVAL_SECS=1 start_api
agent="${CARGO_TARGET_DIR:-target}/debug/weir-agent"

create_tenant "$T"
tenant_quota_counts_gateways "$NS"
kubectl apply -f - >/dev/null <<EOF
apiVersion: weir.dev/v1alpha1
kind: EdgeGateway
metadata:
  name: $GW
  namespace: $NS
spec:
  site: {name: Filtration (simulated), timezone: Europe/London}
  mode: external
  devices:
    - name: filter-bed-1
      adapter: simulator
      groups:
        - name: process
          intervalMs: 1000
          tags:
            - {name: outlet_turbidity, address: sim, dataType: float64, unit: NTU,
               signal: {kind: sine, min: 0.05, max: 0.3, periodS: 600}}
EOF

secret_token() {
  kubectl -n "$NS" get secret "$GW-enrollment" -o jsonpath='{.data.token}' 2>/dev/null | base64 -d
}
has_token() { [[ "$(secret_token)" == weir_et_* ]]; }
wait_for 60 has_token || fail "no enrollment token in Secret $GW-enrollment; api log: $(tail -n 5 "$API_LOG")"
token=$(secret_token)
owner=$(kubectl -n "$NS" get secret "$GW-enrollment" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')
[ "$owner" = "EdgeGateway/$GW" ] || fail "Secret $GW-enrollment is owned by '$owner', not EdgeGateway/$GW"
managers=$(kubectl -n "$NS" get secret "$GW-enrollment" --show-managed-fields -o jsonpath='{.metadata.managedFields[*].manager}')
[ "$managers" = "weir-api" ] || fail "Secret $GW-enrollment is written by '$managers', not by weir-api alone"
echo "token ${token:0:14}... in Secret $GW-enrollment, owned by EdgeGateway/$GW, written by weir-api"
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Ready "edgegateway/$GW" --timeout=60s >/dev/null \
  || fail "edgegateway/$GW not Ready: $(kubectl -n "$NS" get edgegateway "$GW" -o jsonpath='{.status}')"

# --- the agent enrolls with it and runs the signed bundle ------------------------
api_login
gw_path="/api/v1/orgs/$T/projects/default/gateways/$GW"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$agent" run --server "$API_URL" --token "$token" --data-dir "$tmp/agent" \
  --metrics-listen "127.0.0.1:$port" --heartbeat-s 1 > "$tmp/agent.log" 2>&1 &
AGENT_PID=$!
kill_on_exit "$AGENT_PID"
bundle=$(kubectl -n "$NS" get configmap "$GW-config" -o jsonpath='{.data.bundle\.json}' \
  | python3 -c 'import base64, json, sys; print(json.loads(base64.b64decode(json.load(sys.stdin)["payload"]))["version"])')
got=""
applied() {
  got=$(api_call GET "$gw_path" | jq -r '.applied_version // empty') || return 1
  [ "$got" = "$bundle" ]
}
wait_for 60 applied || fail "the api never saw bundle version $bundle applied (last: '$got'); agent log: $(tail -n 5 "$tmp/agent.log")"
kill -0 "$AGENT_PID" 2>/dev/null || fail "weir-agent exited: $(tail -n 5 "$tmp/agent.log")"
echo "agent enrolled and applied bundle version $bundle of the operator"

# --- a used-up token is replaced and refused ----------------------------------------
replaced() { t=$(secret_token) && [ "$t" != "$token" ] && [[ "$t" == weir_et_* ]]; }
wait_for 30 replaced || fail "the used-up token was not replaced in Secret $GW-enrollment"
second=$(secret_token)
body=$(jq -nc --arg t "$token" --arg k "$(openssl rand -base64 32)" \
  '{token: $t, publicKey: $k, facts: {hostname: "e2e", os: "linux", arch: "x86_64", agentVersion: "0.1.0"}}')
code=$(curl -s -o "$tmp/enroll.json" -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$API_URL/api/v1/enroll")
[ "$code" = 401 ] || fail "enrolling again with the used-up token answered $code: $(cat "$tmp/enroll.json")"
grep -q "used up" "$tmp/enroll.json" || fail "the refusal does not say the token is used up: $(cat "$tmp/enroll.json")"
echo "used-up token refused (401); a new token is in the Secret"

# --- a reissue request replaces it --------------------------------------------------
kubectl -n "$NS" annotate edgegateway "$GW" weir.dev/reissue-token=e2e-1 >/dev/null
reissued() { t=$(secret_token) && [ "$t" != "$second" ] && [[ "$t" == weir_et_* ]]; }
wait_for 30 reissued || fail "the reissue request did not replace the token"
tokens=$(api_call GET "$gw_path/enrollment-tokens") || fail "listing the gateway's enrollment tokens failed"
[ "$(jq '[.[] | select(.state == "revoked")] | length' <<<"$tokens")" = 1 ] \
  || fail "the token the reissue replaced is not revoked: $(jq -c '[.[] | {prefix, state}]' <<<"$tokens")"
[ "$(jq '[.[] | select(.state == "active")] | length' <<<"$tokens")" = 1 ] \
  || fail "not exactly one active token: $(jq -c '[.[] | {prefix, state}]' <<<"$tokens")"
echo "reissued: $(jq -c '[.[] | .state]' <<<"$tokens")"

# --- deleting the EdgeGateway -------------------------------------------------------------
kill "$AGENT_PID" 2>/dev/null || true
kubectl -n "$NS" delete edgegateway "$GW" --timeout=60s >/dev/null || fail "edgegateway/$GW could not be deleted"
gone_in_api() { ! api_call GET "$gw_path" >/dev/null 2>&1; }
wait_for 30 gone_in_api || fail "the gateway is still in the api after edgegateway/$GW was deleted"
# kube-controller-manager's garbage collector learns kinds installed after
# it started at its next discovery pass: allow two minutes.
secret_gone() { ! kubectl -n "$NS" get secret "$GW-enrollment" >/dev/null 2>&1; }
wait_for 120 secret_gone || fail "Secret $GW-enrollment is still there after edgegateway/$GW was deleted"
echo "deleted: the gateway in the api and Secret $GW-enrollment"
