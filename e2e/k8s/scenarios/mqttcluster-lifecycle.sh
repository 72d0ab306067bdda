#!/usr/bin/env bash
# An MqttCluster through its life with weir-operator running as a process
# against the API server, and weir-k8s-sim standing in for what this control
# plane lacks: a kubelet (it marks the pods Running and Ready) and EMQX
# (its HTTP API faked per pod from EMQX's documented shapes, reached through
# the operator's --emqx-url-template; EMQX itself cannot be obtained here).
# Every step is checked through kubectl and the simulator's log of EMQX
# API calls:
#   create: StatefulSet, Services, PDB, ConfigMap and Secrets owned by the
#     cluster; Ready 3/3; the printer columns of `kubectl get mqc`
#   scale down 3 -> 2: node 2 evacuated first (the StatefulSet keeps 3
#     replicas until it drained), then removed and force_left
#   a cancelled scale-down 2 -> 1 -> 2: the evacuation is stopped
#   scale up 2 -> 3
#   upgrade 5.8.6 -> 5.8.7: the partition steps down one node at a time
#   a runtime setting merged through the API without restarts, its removal
#     reset, a boot-time setting rolled one node at a time
#   spec.authentication changed at runtime
set -euo pipefail
. e2e/k8s/lib.sh

T=hillside-water
NS=weir-$T
C=hillside-mqtt
JWKS_1=http://weir-api.weir-system.svc:8080/api/v1/jwks.json
JWKS_2=http://weir-api.weir-system.svc:8080/api/v1/jwks-rotated.json
fresh_tenant_namespace "$T"
start_sim_and_operator

mqc() { kubectl -n "$NS" get mqttcluster "$C" -o jsonpath="$1"; }
sts() { kubectl -n "$NS" get statefulset "$C" -o jsonpath="$1"; }
state_is() { [ "$(mqc '{.status.phase} {.status.readyText}')" = "$1" ]; }
sts_replicas_is() { [ "$(sts '{.spec.replicas}')" = "$1" ]; }
node() { echo "emqx@$C-$1.$C-headless.$NS.svc.cluster.local"; }
pods() { kubectl -n "$NS" get pods -l "weir.dev/mqttcluster=$C" -o jsonpath="$1"; }
pods_ready() { [ "$(pods '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}')" = "$1" ]; }
uids() { pods '{range .items[*]}{.metadata.uid} {end}'; }
drain_after() { curl -fsS -X POST "$SIM_URL/_sim/drain-after-polls/$1" >/dev/null; }
# called SINCE METHOD PATH [BODY]: EMQX got METHOD on a path containing
# PATH (and a body containing BODY) after position SINCE, and said yes.
called() {
  sim_calls "$1" | jq -e --arg m "$2" --arg p "$3" --arg b "${4:-}" \
    'any(.[]; .method == $m and (.path | contains($p)) and (.body | contains($b)) and .status < 300)' >/dev/null
}
calls_since() { sim_calls "$1" | jq -c '[.[] | "\(.method) \(.path) \(.status)"]'; }
has_event() {
  kubectl -n "$NS" get events --field-selector "involvedObject.name=$C,reason=$1" -o name | grep -q .
}
conditions() { mqc '{range .status.conditions[*]}{.type}={.status}/{.reason}: {.message}; {end}'; }
# The StatefulSet's rollingUpdate partition, each value it takes, recorded
# by a watch between watch_partition and partition_steps (which prints the
# distinct values in order, leading zeros before the rollout dropped).
watch_partition() {
  PART_FILE="$WEIR_K8S_WORK/partition-$(date +%s%N)"
  kubectl -n "$NS" get statefulset "$C" -w \
    -o jsonpath='{.spec.updateStrategy.rollingUpdate.partition}{"\n"}' > "$PART_FILE" 2>&1 &
  PART_PID=$!
  kill_on_exit "$PART_PID"
  wait_for 30 test -s "$PART_FILE" || fail "kubectl get statefulset -w printed nothing"
}
partition_steps() {
  kill "$PART_PID" 2>/dev/null; wait "$PART_PID" 2>/dev/null || true
  uniq "$PART_FILE" | awk '$0 != "0" { s = 1 } s' | tr '\n' ' ' | sed 's/ $//'
}
# rolled OLD_UIDS: every pod replaced (none of OLD_UIDS left), all on the
# StatefulSet's update revision, partition 0, cluster Ready 3/3.
rolled() {
  local u rev
  for u in $1; do uids | grep -q "$u" && return 1; done
  rev=$(sts '{.status.updateRevision}')
  [ -n "$rev" ] && [ "$(pods '{range .items[*]}{.metadata.labels.controller-revision-hash} {end}')" = "$rev $rev $rev " ] \
    && [ "$(sts '{.spec.updateStrategy.rollingUpdate.partition}')" = 0 ] \
    && [ "$(sts '{.status.currentRevision}')" = "$rev" ] \
    && state_is "Ready 3/3"
}

# --- create ------------------------------------------------------------------
create_tenant "$T"
create_mqttcluster "$NS" "$C" "{mode: apiJwt, jwksUrl: \"$JWKS_1\"}"
wait_for 60 kubectl -n "$NS" get statefulset "$C" >/dev/null 2>&1 \
  || fail "no StatefulSet $C: $(conditions)"
for obj in "statefulset/$C" "service/$C" "service/$C-headless" "service/$C-dashboard" \
  "poddisruptionbudget/$C" "configmap/$C-config" "secret/$C-erlang-cookie" "secret/$C-api-credentials"; do
  owner=$(kubectl -n "$NS" get "$obj" -o jsonpath='{.metadata.ownerReferences[?(@.controller==true)].kind}/{.metadata.ownerReferences[?(@.controller==true)].name}' 2>&1) \
    || fail "$obj is missing: $owner"
  [ "$owner" = "MqttCluster/$C" ] || fail "$obj is controlled by '$owner', not MqttCluster/$C"
done
wait_for 60 pods_ready "True True True " \
  || fail "the 3 pods are not Ready: $(pods '{range .items[*]}{.metadata.name}:{.status.phase} {end}')"
wait_for 120 state_is "Ready 3/3" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')': $(conditions)"
[ "$(mqc '{.status.nodes[*].status}')" = "running running running" ] \
  || fail "status.nodes: $(mqc '{.status.nodes}')"
called 0 GET /api/v5/nodes || fail "the operator never asked EMQX for its nodes: $(calls_since 0)"
out=$(kubectl -n "$NS" get mqc)
echo "$out"
[ "$(head -n1 <<<"$out" | tr -s ' ')" = "NAME PHASE READY VERSION AGE" ] || fail "kubectl get mqc columns: $(head -n1 <<<"$out")"
[ "$(awk -v c="$C" '$1 == c { print $2, $3, $4 }' <<<"$out")" = "Ready 3/3 5.8.6" ] \
  || fail "kubectl get mqc row: $(grep "$C" <<<"$out")"
echo "created: StatefulSet, 3 Services, PDB, ConfigMap, 2 Secrets owned by the cluster; 3 nodes Ready"

# --- scale down 3 -> 2 ---------------------------------------------------------
drain_after 1000000 # held until the StatefulSet was seen to wait
mark=$(sim_mark)
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"replicas":2}}' >/dev/null
wait_for 60 called "$mark" POST "/load_rebalance/$(node 2)/evacuation/start" \
  || fail "no evacuation of node 2 after replicas 3 -> 2: $(calls_since "$mark")"
polls=0
for _ in $(seq 1 120); do
  sts_replicas_is 3 || fail "the StatefulSet went to $(sts '{.spec.replicas}') replicas while node 2 was still evacuating"
  polls=$(sim_calls "$mark" | jq '[.[] | select(.path | endswith("/global_status"))] | length')
  [ "$polls" -ge 3 ] && break
  sleep 0.5
done
[ "$polls" -ge 3 ] || fail "the operator polled the evacuation $polls times in 60 s"
[ "$(mqc '{.status.phase}')" = Scaling ] || fail "phase '$(mqc '{.status.phase}')' while evacuating"
has_event EvacuationStarted || fail "no EvacuationStarted Event"
drain_after 2
wait_for 60 sts_replicas_is 2 || fail "StatefulSet still at $(sts '{.spec.replicas}') replicas after node 2 drained"
wait_for 60 called "$mark" DELETE "/cluster/$(node 2)/force_leave" \
  || fail "departed node 2 was not force_left: $(calls_since "$mark")"
wait_for 60 state_is "Ready 2/2" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')' after scaling down: $(conditions)"
kubectl -n "$NS" get pvc "data-$C-2" >/dev/null || fail "the volume of node 2 is gone (reclaimPolicy Retain)"
echo "scaled down: node 2 evacuated ($polls polls, StatefulSet held at 3), removed, force_left; its volume kept"

# --- a cancelled scale-down 2 -> 1 -> 2 ------------------------------------------
drain_after 1000000 # never drains
mark=$(sim_mark)
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"replicas":1}}' >/dev/null
wait_for 60 called "$mark" POST "/load_rebalance/$(node 1)/evacuation/start" \
  || fail "no evacuation of node 1 after replicas 2 -> 1: $(calls_since "$mark")"
sts_replicas_is 2 || fail "the StatefulSet went to $(sts '{.spec.replicas}') replicas while node 1 was evacuating"
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"replicas":2}}' >/dev/null
wait_for 60 state_is "Ready 2/2" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')' after the scale-down was cancelled: $(conditions)"
sts_replicas_is 2 || fail "the StatefulSet has $(sts '{.spec.replicas}') replicas after the scale-down was cancelled"
wait_for 60 called "$mark" POST "/load_rebalance/$(node 1)/evacuation/stop" \
  || fail "the evacuation of node 1 was not stopped after the scale-down was cancelled: $(calls_since "$mark")"
wait_for 30 has_event EvacuationStopped || fail "no EvacuationStopped Event on mqttcluster/$C"
sts_replicas_is 2 || fail "the StatefulSet has $(sts '{.spec.replicas}') replicas after the evacuation stopped"
drain_after 2
echo "cancelled scale-down: evacuation of node 1 stopped, 2 nodes kept"

# --- scale up 2 -> 3 -------------------------------------------------------------
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"replicas":3}}' >/dev/null
wait_for 60 sts_replicas_is 3 || fail "StatefulSet at $(sts '{.spec.replicas}') replicas after replicas: 3"
wait_for 120 state_is "Ready 3/3" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')' after scaling up: $(conditions)"
wait_for 30 eval '[ "$(mqc "{.status.nodes[*].status}")" = "running running running" ]' \
  || fail "status.nodes after scaling up: $(mqc '{.status.nodes}')"
echo "scaled up: node 2 back, 3 nodes running"

# --- upgrade 5.8.6 -> 5.8.7 ------------------------------------------------------
old=$(uids)
watch_partition
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"version":"5.8.7"}}' >/dev/null
wait_for 240 rolled "$old" \
  || fail "upgrade unfinished: partition $(sts '{.spec.updateStrategy.rollingUpdate.partition}'), revisions $(pods '{range .items[*]}{.metadata.name}={.metadata.labels.controller-revision-hash} {end}') of $(sts '{.status.updateRevision}'); $(conditions)"
steps=$(partition_steps)
[ "$steps" = "2 1 0" ] || fail "the partition went '$steps', not one node at a time (2 1 0)"
[ "$(mqc '{.status.currentVersion}')" = 5.8.7 ] || fail "status.currentVersion is '$(mqc '{.status.currentVersion}')'"
[ "$(pods '{range .items[*]}{.spec.containers[0].image} {end}')" = "emqx/emqx:5.8.7 emqx/emqx:5.8.7 emqx/emqx:5.8.7 " ] \
  || fail "pod images: $(pods '{range .items[*]}{.spec.containers[0].image} {end}')"
wait_for 30 eval '[ "$(mqc "{.status.nodes[*].version}")" = "5.8.7 5.8.7 5.8.7" ]' \
  || fail "EMQX reports versions $(mqc '{.status.nodes[*].version}')"
echo "upgraded to 5.8.7: partition $steps, every pod on revision $(sts '{.status.updateRevision}')"

# --- config: runtime, reset, restart ---------------------------------------------
cm_has() { kubectl -n "$NS" get configmap "$C-config" -o jsonpath='{.data.emqx\.conf}' | grep -qF "$1"; }
old=$(uids)
rev=$(sts '{.status.updateRevision}')
mark=$(sim_mark)
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"config":{"mqtt.max_packet_size":"2MB"}}}' >/dev/null
wait_for 60 called "$mark" PUT "/api/v5/configs?mode=merge" "mqtt.max_packet_size = 2MB" \
  || fail "mqtt.max_packet_size was not merged at runtime: $(calls_since "$mark")"
wait_for 30 cm_has "mqtt.max_packet_size = 2MB" || fail "the ConfigMap lacks mqtt.max_packet_size"
wait_for 30 state_is "Ready 3/3" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')' after a runtime setting: $(conditions)"
[ "$(uids)" = "$old" ] && [ "$(sts '{.status.updateRevision}')" = "$rev" ] \
  || fail "a runtime setting restarted pods (revision $rev -> $(sts '{.status.updateRevision}'))"
has_event ConfigApplied || fail "no ConfigApplied Event"
echo "runtime setting: mqtt.max_packet_size merged through the API, no pod restarted"

mark=$(sim_mark)
kubectl -n "$NS" patch mqttcluster "$C" --type=json -p '[{"op":"remove","path":"/spec/config/mqtt.max_packet_size"}]' >/dev/null
wait_for 30 eval '! cm_has mqtt.max_packet_size' || fail "the ConfigMap still has mqtt.max_packet_size"
wait_for 60 called "$mark" POST "/api/v5/configs_reset/mqtt?conf_path=max_packet_size" \
  || fail "the removed mqtt.max_packet_size was not reset at runtime: $(calls_since "$mark")"
[ "$(uids)" = "$old" ] || fail "removing a runtime setting restarted pods"
echo "runtime setting removed: reset to EMQX's default through the API"

mark=$(sim_mark)
watch_partition
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"config":{"node.process_limit":"1048576"}}}' >/dev/null
wait_for 240 rolled "$old" \
  || fail "restart unfinished: pods $(uids), partition $(sts '{.spec.updateStrategy.rollingUpdate.partition}'); $(conditions)"
steps=$(partition_steps)
[ "$steps" = "2 1 0" ] || fail "the restart's partition went '$steps', not one node at a time (2 1 0)"
cm_has "node.process_limit = 1048576" || fail "the ConfigMap lacks node.process_limit"
! called "$mark" PUT /api/v5/configs node.process_limit || fail "node.process_limit was pushed at runtime; EMQX reads it only at boot"
echo "boot-time setting: node.process_limit rolled one node at a time (partition $steps), every pod replaced"

# --- authentication ------------------------------------------------------------------
old=$(uids)
mark=$(sim_mark)
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p "{\"spec\":{\"authentication\":{\"jwksUrl\":\"$JWKS_2\"}}}" >/dev/null
wait_for 30 cm_has "$JWKS_2" || fail "the ConfigMap does not have the new JWKS URL"
wait_for 60 called "$mark" PUT "/api/v5/configs?mode=merge" "$JWKS_2" \
  || fail "the new JWKS URL was not applied at runtime: $(calls_since "$mark")"
wait_for 30 state_is "Ready 3/3" || fail "cluster is '$(mqc '{.status.phase} {.status.readyText}')' after the authentication change: $(conditions)"
[ "$(uids)" = "$old" ] || fail "the authentication change restarted pods"
echo "authentication: new JWKS URL applied at runtime"

# --- licence boundary ------------------------------------------------------------------
# EMQX 5.9 clusters only with a license: without one the 5.8 nodes stay as
# they are (no template change, no pod replaced) and the cluster says why.
old=$(uids)
rev=$(sts '{.status.updateRevision}')
image=$(sts '{.spec.template.spec.containers[0].image}')
version=$(mqc '{.spec.version}')
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"version":"5.9.1"}}' >/dev/null
wait_for 30 eval '[ "$(mqc "{.status.conditions[?(@.type==\"Degraded\")].reason}")" = LicenseRequired ]' \
  || fail "no LicenseRequired after asking for 5.9.1 without a license: $(conditions)"
sleep 3 # a rollout, were one started, would have replaced node 2 by now (about 1 s a step here)
[ "$(sts '{.spec.template.spec.containers[0].image}')" = "$image" ] \
  || fail "the StatefulSet moved to $(sts '{.spec.template.spec.containers[0].image}') without a license"
[ "$(uids)" = "$old" ] && [ "$(sts '{.status.updateRevision}')" = "$rev" ] || fail "pods were replaced across the licence boundary"
[ "$(mqc '{.status.currentVersion}')" = "$version" ] || fail "status.currentVersion is $(mqc '{.status.currentVersion}') while $version runs"
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p "{\"spec\":{\"version\":\"$version\"}}" >/dev/null
wait_for 30 state_is "Ready 3/3" || fail "not Ready after going back to $version: $(conditions)"
echo "licence boundary: 5.9.1 without a license held at $version (LicenseRequired), no pod replaced"

out=$(kubectl -n "$NS" get mqc)
echo "$out"
[ "$(awk -v c="$C" '$1 == c { print $2, $3, $4 }' <<<"$out")" = "Ready 3/3 5.8.7" ] \
  || fail "kubectl get mqc row at the end: $(grep "$C" <<<"$out")"

# --- clean up --------------------------------------------------------------------------
kubectl -n "$NS" delete mqttcluster "$C" --timeout=60s >/dev/null || fail "mqttcluster/$C could not be deleted"
kubectl patch tenant "$T" --type=merge -p '{"spec":{"cascadeDelete":true}}' >/dev/null
kubectl delete tenant "$T" --timeout=60s >/dev/null || fail "tenant/$T could not be deleted"
