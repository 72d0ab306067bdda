#!/usr/bin/env bash
# A spec the CRD accepts but whose StatefulSet the API server refuses
# (spec.resources asks for more CPU than its limit) shows on the MqttCluster
# itself, not only in the operator's log: condition Degraded=True with
# reason ReconcileFailed and the API server's words, and a Warning Event.
# Fixing the spec clears the condition and the StatefulSet is made.
set -euo pipefail
. e2e/k8s/lib.sh

NS=weir-errors-visible
C=broken-mqtt
install_crds >/dev/null
ensure_namespace "$NS"
kubectl -n "$NS" delete mqttcluster "$C" --ignore-not-found --wait=true --timeout=60s >/dev/null
start_operator

kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata: {name: $C}
spec:
  replicas: 1
  resources:
    requests: {cpu: "2"}
    limits: {cpu: "1"}
YAML

cond() { kubectl -n "$NS" get mqttcluster "$C" -o jsonpath="{.status.conditions[?(@.type==\"Degraded\")].$1}"; }
reason=""
for _ in $(seq 1 30); do
  reason=$(cond reason)
  [ "$reason" = ReconcileFailed ] && break
  sleep 1
done
[ "$reason" = ReconcileFailed ] \
  || fail "Degraded reason is '$reason', not ReconcileFailed: $(kubectl -n "$NS" get mqttcluster "$C" -o jsonpath='{.status.conditions}')"
[ "$(cond status)" = True ] || fail "Degraded is $(cond status) with reason ReconcileFailed"
message=$(cond message)
grep -q "StatefulSet" <<<"$message" && grep -qi "must be less than or equal to cpu limit" <<<"$message" \
  || fail "the condition does not carry the API server's refusal: $message"
echo "condition: Degraded=True ReconcileFailed: $message"

event=""
for _ in $(seq 1 20); do
  event=$(kubectl -n "$NS" get events --field-selector "involvedObject.name=$C,reason=ReconcileFailed,type=Warning" \
    -o jsonpath='{.items[0].message}{.items[0].note}' 2>/dev/null || true)
  [ -n "$event" ] && break
  sleep 1
done
[ -n "$event" ] || fail "no Warning Event ReconcileFailed on mqttcluster/$C: $(kubectl -n "$NS" get events -o wide 2>&1 | tail -5)"
echo "event: Warning ReconcileFailed"
kubectl -n "$NS" get statefulset "$C" >/dev/null 2>&1 && fail "a StatefulSet exists although the API server refused it"

# --- fixed -----------------------------------------------------------------------
kubectl -n "$NS" patch mqttcluster "$C" --type=merge -p '{"spec":{"resources":{"requests":{"cpu":"500m"}}}}' >/dev/null
for _ in $(seq 1 30); do
  kubectl -n "$NS" get statefulset "$C" >/dev/null 2>&1 && [ "$(cond reason)" != ReconcileFailed ] && break
  sleep 1
done
kubectl -n "$NS" get statefulset "$C" >/dev/null 2>&1 || fail "no StatefulSet after the spec was fixed"
[ "$(cond reason)" != ReconcileFailed ] || fail "still ReconcileFailed after the fix: $(cond message)"
echo "fixed: StatefulSet made, Degraded is now $(cond status) ($(cond reason))"
kubectl -n "$NS" delete mqttcluster "$C" --wait=false >/dev/null
