#!/usr/bin/env bash
# Once everything is Ready the operator writes nothing: a Tenant, an
# MqttCluster of 3 nodes (made Ready by weir-k8s-sim, the kubelet stand-in
# with its EMQX API fake) and an external EdgeGateway; then two full minutes
# in which the operator's user (weir-operator, see control-plane.sh) makes
# no create, update, patch or delete, Leases and Events left out, counted in
# the API server's audit log. In those minutes the clusters' requeues run
# (the count of reconciles is printed), and someone else writes the
# MqttCluster's status five times (a condition of its own): status that is
# not the operator's wakes no reconcile and is not fought.
# Needs the local control plane (its audit log): run without KUBECONFIG.
set -euo pipefail
. e2e/k8s/lib.sh

T=steady-water
NS=weir-$T
C=steady-mqtt
GW=steady-ps1
WINDOW=120
fresh_tenant_namespace "$T"
audit_mark >/dev/null # fails now, not after the set-up, without an audit log
start_sim_and_operator

phase() { kubectl get "$@" -o jsonpath='{.status.phase}'; }
mqc_state() { kubectl -n "$NS" get mqttcluster "$C" -o jsonpath='{.status.phase} {.status.readyText}'; }
mqc_ready() { [ "$(mqc_state)" = "Ready 3/3" ]; }
gw_ready() { [ "$(phase -n "$NS" edgegateway "$GW")" = Ready ]; }
# reconciles: the operator's reconciles so far, all controllers together
# (weir_operator_reconciles_total, see operator/src/metrics.rs).
reconciles() {
  curl -fsS "$OPERATOR_URL/metrics" | awk '/^weir_operator_reconciles_total/ { n += $2 } END { print n + 0 }'
}
cluster_reconciles() {
  curl -fsS "$OPERATOR_URL/metrics" \
    | awk '/^weir_operator_reconciles_total\{controller="mqttcluster"\}/ { n += $2 } END { print n + 0 }'
}

# --- everything Ready ----------------------------------------------------------
create_tenant "$T"
create_mqttcluster "$NS" "$C" "{mode: apiJwt}"
sed -e "s/name: raw-water-ps1/name: $GW/" -e "s/namespace: weir-riverside-water/namespace: $NS/" \
  -e "s/clusterRef: riverside-mqtt/clusterRef: $C/" e2e/manifests/20-edgegateway-raw-water-pump-station.yaml \
  | kubectl apply -f - >/dev/null
wait_for 120 mqc_ready \
  || fail "mqttcluster/$C is '$(mqc_state)': $(kubectl -n "$NS" get mqttcluster "$C" -o jsonpath='{.status.conditions}')"
wait_for 60 gw_ready \
  || fail "edgegateway/$GW is '$(phase -n "$NS" edgegateway "$GW")': $(kubectl -n "$NS" get edgegateway "$GW" -o jsonpath='{.status.conditions}')"
[ "$(kubectl get tenant "$T" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] \
  || fail "tenant/$T is no longer Ready: $(kubectl get tenant "$T" -o jsonpath='{.status.conditions}')"
echo "ready: tenant/$T, mqttcluster/$C (3/3), edgegateway/$GW"

# --- two minutes of steady state ---------------------------------------------------
mark=$(audit_mark)
start=$(date +%s)
before=$(reconciles)

# Someone else's status: five writes of a condition the operator does not
# set, a second apart. Each is a watch event on the MqttCluster; none may
# wake a reconcile (a requeue may fall in these seconds: at most one).
c0=$(cluster_reconciles)
kubectl -n "$NS" patch mqttcluster "$C" --subresource=status --type=json -p "[{\"op\": \"add\", \"path\": \"/status/conditions/-\", \"value\": {\"type\": \"ExternalAudit\", \"status\": \"True\", \"reason\": \"Checked\", \"message\": \"check 1\", \"lastTransitionTime\": \"$(date -u +%FT%TZ)\"}}]" >/dev/null
idx=$(kubectl -n "$NS" get mqttcluster "$C" -o json | jq '.status.conditions | map(.type) | index("ExternalAudit")')
for i in 2 3 4 5; do
  sleep 1
  kubectl -n "$NS" patch mqttcluster "$C" --subresource=status --type=json \
    -p "[{\"op\": \"replace\", \"path\": \"/status/conditions/$idx/message\", \"value\": \"check $i\"}]" >/dev/null
done
sleep 2
woken=$(( $(cluster_reconciles) - c0 ))
[ "$woken" -le 1 ] || fail "5 status writes by someone else woke $woken MqttCluster reconciles"
echo "someone else's status written 5 times: $woken MqttCluster reconciles meanwhile (a requeue at most)"

sleep $(( start + WINDOW - $(date +%s) ))
writes=$(operator_writes "$mark")
count=$(head -n1 <<<"$writes")
during=$(( $(reconciles) - before ))
[ "$count" = 0 ] || fail "the operator wrote $count times in $WINDOW s of steady state (leases and events left out):
$(tail -n +2 <<<"$writes")"
[ "$during" -gt 0 ] || fail "no reconcile in $WINDOW s: the window proves nothing"
[ "$(kubectl -n "$NS" get mqttcluster "$C" -o jsonpath='{.status.conditions[?(@.type=="ExternalAudit")].message}')" = "check 5" ] \
  || fail "someone else's condition was changed: $(kubectl -n "$NS" get mqttcluster "$C" -o jsonpath='{.status.conditions}')"
if ! mqc_ready || ! gw_ready; then
  fail "not Ready after the window: mqttcluster/$C $(mqc_state), edgegateway/$GW $(phase -n "$NS" edgegateway "$GW")"
fi
echo "steady-state: 0 writes in $WINDOW s ($during reconciles)"

# Leave the cluster as it was: the Tenant and its namespace go.
kubectl patch tenant "$T" --type=merge -p '{"spec":{"cascadeDelete":true}}' >/dev/null
kubectl delete tenant "$T" --wait=false >/dev/null
