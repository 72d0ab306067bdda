#!/usr/bin/env bash
# What an agent reports in its heartbeats shows in `kubectl get egw`: a
# Tenant applied with kubectl (weir-operator running), weir-api running as
# the chart's api identity (start_api), and a console user who signs in,
# makes a project and a gateway with simulated water-plant devices and an
# enrollment token through the REST api. `weir-agent run --server --token`
# on the host enrolls and heartbeats every 2 s. Then the EdgeGateway's
# status says online, the applied bundle version, the heartbeat time, each
# device's health and the queue depth within one heartbeat interval of the
# api recording the first heartbeat, and the same values the api's gateway
# answer gives; those fields belong to the field manager weir-api on the
# status subresource and the operator's (phase, configVersion) stay its
# own. The api writes the status only when there is news (the audit log
# counts its writes), not on every heartbeat, and its writes do not make
# the operator write its part again; with only the heartbeat time and
# queue counters moving, it refreshes the status once a minute. Stopping the agent: online
# becomes false after the offline threshold (3 missed heartbeats), with the
# last heartbeat the api has. No broker runs: the gateway has no cluster,
# so the agent queues its readings (queueDepth grows).
set -euo pipefail
. e2e/k8s/lib.sh

T=status-water
NS=weir-$T
P=north-plant
GW=filtration-sim
HB=2
tmp="$WEIR_K8S_WORK/gateway-status-written-back"
mkdir -p "$tmp"
fresh_tenant_namespace "$T"

# The Tenant's quota counts EdgeGateways: the API server refuses them until
# kube-controller-manager's quota controller counts that kind.
wait_quota_counts_gateways

start_operator
create_tenant "$T"
tenant_quota_counts_gateways "$NS"
# The monitor looks for missed heartbeats every half second.
WEIR_FLEET_MONITOR_INTERVAL_MS=500 start_api
echo "api at $API_URL as serviceaccount weir-e2e-api/weir-api (the chart's api RBAC)"

# A console user: sign in, the organization of the Tenant, a project, a
# gateway with two simulated devices, an enrollment token.
api_login
org_seen() { api_call GET /api/v1/orgs | jq -e --arg t "$T" 'map(.slug) | index($t)' >/dev/null; }
wait_for 30 org_seen || fail "the api shows no organization for Tenant $T"
api_call POST "/api/v1/orgs/$T/projects" "{\"slug\":\"$P\",\"name\":\"North Plant\"}" >/dev/null
spec=$(cat <<'EOF'
{"site": {"name": "North plant filtration (simulated)", "timezone": "Europe/London"},
 "mode": "external",
 "devices": [
  {"name": "filter-bed-1", "adapter": "simulator", "simulator": {"seed": 42},
   "groups": [{"name": "process", "intervalMs": 500, "tags": [
     {"name": "inlet_turbidity", "address": "sim", "dataType": "float64", "unit": "NTU",
      "signal": {"kind": "randomWalk", "min": 0.5, "max": 4.0, "step": 0.02}},
     {"name": "backwash_pump_running", "address": "sim", "dataType": "bool",
      "signal": {"kind": "pump", "min": 0, "max": 1, "periodS": 3600, "faultRate": 0.0001}}]}]},
  {"name": "clear-well", "adapter": "simulator",
   "groups": [{"name": "levels", "intervalMs": 1000, "tags": [
     {"name": "level", "address": "sim", "dataType": "float64", "unit": "m",
      "signal": {"kind": "sine", "min": 2.0, "max": 4.5, "periodS": 43200}}]}]}]}
EOF
)
api_call POST "/api/v1/orgs/$T/projects/$P/gateways" \
  "$(jq -nc --arg n "$GW" --argjson s "$spec" '{name: $n, spec: $s}')" >/dev/null
kubectl -n "$NS" get egw "$GW" >/dev/null || fail "the gateway made through the api is no EdgeGateway in $NS"
signed() { [ -n "$(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status.configVersion}')" ]; }
wait_for 60 signed || fail "the operator did not sign the gateway's config: $(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status.conditions}')"
token=$(api_call POST "/api/v1/orgs/$T/projects/$P/gateways/$GW/enrollment-tokens" '{"expires_in_secs": 600}' | jq -er .token) \
  || fail "no enrollment token from the api"

gw_api() { api_call GET "/api/v1/orgs/$T/projects/$P/gateways/$GW"; }
egw() { kubectl -n "$NS" get egw "$GW" -o json; }
mark=$(audit_mark)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AGENT_LOG="$tmp/agent.log"
"${CARGO_TARGET_DIR:-target}/debug/weir-agent" run --server "$API_URL" --token "$token" \
  --data-dir "$tmp/agent-data" --metrics-listen "127.0.0.1:$port" --heartbeat-s "$HB" \
  > "$AGENT_LOG" 2>&1 &
agent_pid=$!
kill_on_exit "$agent_pid"
agent_fail() { echo "--- last lines of $AGENT_LOG"; tail -n 20 "$AGENT_LOG"; fail "$@"; }

# The api records the first heartbeat...
first_hb=""
api_heartbeat() {
  first_hb=$(gw_api | jq -er 'select(.online == true) | .last_heartbeat')
}
wait_for 60 api_heartbeat || agent_fail "the api recorded no heartbeat of the agent in 60 s"
seen_at=$(date +%s.%N)
echo "api: first heartbeat at $first_hb"
# ... and within one heartbeat interval the EdgeGateway's status says so.
egw_online() { [ "$(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status.online}')" = true ]; }
wait_for "$HB" egw_online || fail "status.online of egw/$GW is not true $HB s (one heartbeat interval) after the api recorded the first heartbeat: $(egw | jq -c .status)"
echo "egw: online $(python3 -c "import time; print(round(time.time() - $seen_at, 1))") s after the api showed the heartbeat"

# The agent applies its bundle and polls its devices after its first
# report: the api has them from a later heartbeat, and again within one
# interval the EdgeGateway's status.
api_applied() {
  gw_api | jq -e '.applied_version != null and (.agent_status.devices | length) == 2' >/dev/null
}
wait_for 30 api_applied || agent_fail "the api has no applied version and device health from the agent: $(gw_api | jq -c '{applied_version, agent_status}')"
a=$(gw_api)
seen_at=$(date +%s.%N)
egw_applied() {
  e=$(egw)
  [ "$(jq .status.appliedVersion <<<"$e")" = "$(jq .applied_version <<<"$a")" ] && [ "$(jq '.status.devices | length' <<<"$e")" = 2 ]
}
wait_for "$HB" egw_applied || fail "status.appliedVersion/devices of egw/$GW are not the api's $HB s after it had them: $(egw | jq -c .status)"
echo "egw: applied version and devices $(python3 -c "import time; print(round(time.time() - $seen_at, 1))") s after the api had them"

# The same values as the api's gateway answer.
a=$(gw_api)
e=$(egw)
echo "api: $(jq -c '{online, applied_version, bundle_version, last_heartbeat, agent_status: (.agent_status | {devices, queueDepth, droppedReadings})}' <<<"$a")"
echo "egw: $(jq -c .status <<<"$e")"
[ "$(jq .status.online <<<"$e")" = "$(jq .online <<<"$a")" ] || fail "online differs"
[ "$(jq .status.appliedVersion <<<"$e")" = "$(jq .applied_version <<<"$a")" ] \
  || fail "status.appliedVersion $(jq .status.appliedVersion <<<"$e") is not the api's applied_version $(jq .applied_version <<<"$a")"
# The operator signed the bundle (configVersion); the agent runs it.
[ "$(jq .status.appliedVersion <<<"$e")" = "$(jq .status.configVersion <<<"$e")" ] \
  || fail "the agent does not run the latest bundle: applied $(jq .status.appliedVersion <<<"$e"), signed $(jq .status.configVersion <<<"$e")"
# The console's "latest bundle" is the one the operator signed.
[ "$(jq .bundle_version <<<"$a")" = "$(jq .status.configVersion <<<"$e")" ] \
  || fail "the api's bundle_version $(jq .bundle_version <<<"$a") is not the operator's configVersion $(jq .status.configVersion <<<"$e")"
# Seconds: the status holds whole seconds.
secs() { python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp()))' "$1"; }
egw_hb=$(jq -r .status.lastHeartbeat <<<"$e")
[ "$(secs "$egw_hb")" -ge "$(( $(secs "$first_hb") ))" ] && [ "$(secs "$egw_hb")" -le "$(secs "$(jq -r .last_heartbeat <<<"$a")")" ] \
  || fail "status.lastHeartbeat $egw_hb is not between the first heartbeat $first_hb and the api's last $(jq -r .last_heartbeat <<<"$a")"
want_devices=$(jq -c '[.agent_status.devices[] | {name, state} + (if .lastError then {lastError} else {} end)] | sort_by(.name)' <<<"$a")
got_devices=$(jq -c '[.status.devices[]] | sort_by(.name)' <<<"$e")
[ "$got_devices" = "$want_devices" ] || fail "status.devices $got_devices, the api has $want_devices"
[ "$(jq -c '[.status.devices[] | .state] | unique' <<<"$e")" = '["ok"]' ] || fail "simulated devices not ok: $got_devices"
jq -e '.status.queueDepth >= 0 and .status.droppedReadings >= 0' <<<"$e" >/dev/null \
  || fail "no queueDepth/droppedReadings in the status: $(jq -c .status <<<"$e")"
jq -e '.status.phase == "Ready" and (.status.configVersion | type) == "number"' <<<"$e" >/dev/null \
  || fail "the operator's phase/configVersion are gone: $(jq -c .status <<<"$e")"

# kubectl's columns.
cols=$(kubectl -n "$NS" get egw "$GW")
echo "$cols"
awk 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i } NR == 2 { exit !($c["ONLINE"] == "true" && $c["APPLIED"] != "" && $c["HEARTBEAT"] ~ /^[0-9]+s$/) }' <<<"$cols" \
  || fail "kubectl get egw does not show Online true, Applied and a Heartbeat age"
kubectl -n "$NS" get egw "$GW" -o wide

# Field managers keep the writers apart: the heartbeat fields are weir-api's
# on the status subresource, phase and configVersion the operator's.
owners=$(kubectl -n "$NS" get egw "$GW" -o json --show-managed-fields | jq -c '
  [.metadata.managedFields[] | select(.subresource == "status")
   | {manager, fields: (.fieldsV1["f:status"] // {} | keys)}]')
echo "status managers: $owners"
jq -e 'map(select(.manager == "weir-api")) | .[0].fields | index("f:online") and index("f:appliedVersion") and index("f:lastHeartbeat") and index("f:devices") and (index("f:phase") | not)' <<<"$owners" >/dev/null \
  || fail "status.online/appliedVersion/lastHeartbeat/devices are not weir-api's (status subresource): $owners"
jq -e 'map(select(.manager != "weir-api") | .fields[]) | (index("f:online") | not) and (index("f:lastHeartbeat") | not)' <<<"$owners" >/dev/null \
  || fail "another manager also owns the heartbeat fields: $owners"

# Not a write per heartbeat: let 5 more heartbeats pass.
sleep $((5 * HB))
writes() { # writes USER: its writes of the gateway's status since the agent started
  tail -n "+$(( mark + 1 ))" "$WEIR_K8S_AUDIT_LOG" | jq -c --arg u "${1:-system:serviceaccount:weir-e2e-api:weir-api}" --arg ns "$NS" --arg gw "$GW" 'select(.stage == "ResponseComplete"
    and .user.username == $u
    and .objectRef.resource == "edgegateways" and .objectRef.subresource == "status"
    and .objectRef.namespace == $ns and .objectRef.name == $gw) | .responseStatus.code' | wc -l
}
n=$(writes)
echo "status writes by the api so far: $n"
# The first report, and news at start (devices polled, bundle applied).
[ "$n" -ge 1 ] && [ "$n" -le 4 ] || fail "the api wrote the status $n times over more than 6 heartbeats (want 1 to 4: only news)"
# The api's writes are no reason for the operator to write its part again.
n=$(writes weir-operator)
[ "$n" -eq 0 ] || fail "weir-operator wrote the status of egw/$GW $n times while only heartbeats changed it"

# With only the heartbeat time and queue moving, the status is refreshed
# once a minute: kubectl's Heartbeat age stays under about a minute.
hb0=$(egw | jq -r .status.lastHeartbeat)
before=$(writes)
refreshed() { [ "$(egw | jq -r .status.lastHeartbeat)" != "$hb0" ]; }
wait_for 75 refreshed || fail "status.lastHeartbeat still $hb0 after 75 s of heartbeats"
a=$(gw_api)
e=$(egw)
echo "egw: lastHeartbeat refreshed from $hb0 to $(jq -r .status.lastHeartbeat <<<"$e") (api: $(jq -r .last_heartbeat <<<"$a")), queueDepth $(jq .status.queueDepth <<<"$e")"
[ $(( $(secs "$(jq -r .last_heartbeat <<<"$a")") - $(secs "$(jq -r .status.lastHeartbeat <<<"$e")") )) -le "$HB" ] \
  || fail "the refreshed status.lastHeartbeat is more than one interval behind the api's"
[ "$(writes)" -eq $((before + 1)) ] || fail "$(( $(writes) - before )) status writes for one refresh"

# Stop the agent: offline after 3 missed heartbeats.
kill "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
stopped=$(date +%s)
egw_offline() { [ "$(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status.online}')" = false ]; }
wait_for $((3 * HB + 5)) egw_offline || fail "status.online still $(egw | jq .status.online) $((3 * HB + 5)) s after the agent stopped"
echo "egw: offline $(( $(date +%s) - stopped )) s after the agent stopped"
a=$(gw_api)
e=$(egw)
[ "$(jq .online <<<"$a")" = false ] || fail "the api says online $(jq .online <<<"$a")"
[ "$(secs "$(jq -r .status.lastHeartbeat <<<"$e")")" = "$(secs "$(jq -r .last_heartbeat <<<"$a")")" ] \
  || fail "offline status.lastHeartbeat $(jq -r .status.lastHeartbeat <<<"$e") is not the api's last heartbeat $(jq -r .last_heartbeat <<<"$a")"
kubectl -n "$NS" get egw "$GW"
echo "ok: heartbeats written back to egw/$GW ($(writes) status writes in all)"
