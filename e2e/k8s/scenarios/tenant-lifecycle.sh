#!/usr/bin/env bash
# A Tenant through its life with weir-operator running as a process against
# the API server: its namespace with quota, limits, network policies and the
# admins' RoleBinding; a quota change and isolation switched off reach the
# namespace; a Tenant whose namespace exists and is someone else's is refused
# with a condition and an Event, and nothing is written into that namespace;
# deletion is held while an MqttCluster remains and goes ahead with
# spec.cascadeDelete, the namespace then deleted by the garbage collector.
# (No EMQX here: the MqttCluster in it is only there to be counted.)
set -euo pipefail
. e2e/k8s/lib.sh

T=lakeside-water
NS=weir-$T
SQUAT=squatted
install_crds >/dev/null
# Leftovers of an earlier run on the same cluster.
kubectl delete tenant "$T" "$SQUAT" --ignore-not-found --wait=false >/dev/null
kubectl patch tenant "$T" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
kubectl delete namespace "weir-$SQUAT" --ignore-not-found --wait=true --timeout=60s >/dev/null
for _ in $(seq 1 60); do kubectl get namespace "$NS" >/dev/null 2>&1 || break; sleep 1; done

start_operator

# --- create ------------------------------------------------------------------
sed "s/name: riverside-water/name: $T/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f -
kubectl wait --for=condition=Ready "tenant/$T" --timeout=60s >/dev/null \
  || fail "tenant/$T not Ready: $(kubectl get tenant "$T" -o jsonpath='{.status.conditions}')"
owner=$(kubectl get namespace "$NS" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')
[ "$owner" = "Tenant/$T" ] || fail "namespace $NS is owned by '$owner', not Tenant/$T"
[ "$(kubectl get namespace "$NS" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = baseline ] \
  || fail "namespace $NS does not enforce the baseline pod security standard"
[ "$(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.spec.hard.limits\.cpu}')" = 8 ] \
  || fail "quota limits.cpu is not the Tenant's 8: $(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.spec.hard}')"
kubectl -n "$NS" get limitrange weir-limits >/dev/null || fail "no LimitRange weir-limits in $NS"
kubectl -n "$NS" get networkpolicy weir-isolate weir-allow-api-to-brokers >/dev/null \
  || fail "the network policies are missing in $NS"
subjects=$(kubectl -n "$NS" get rolebinding weir-tenant-admins -o jsonpath='{range .subjects[*]}{.kind}:{.name} {end}')
grep -q "ops-lead@riverside-water.example" <<<"$subjects" && grep -q "Group:riverside-plant-managers" <<<"$subjects" \
  || fail "the admins' RoleBinding names '$subjects'"
# The quota controller of kube-controller-manager has counted the namespace.
for _ in $(seq 1 30); do
  [ -n "$(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.status.hard.limits\.cpu}')" ] && break
  sleep 1
done
[ -n "$(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.status.hard.limits\.cpu}')" ] \
  || fail "the resource-quota controller never took up weir-quota"
echo "created: namespace, quota, limits, 2 network policies, admins' RoleBinding"

# --- change ------------------------------------------------------------------
kubectl patch tenant "$T" --type=merge -p '{"spec":{"quota":{"cpu":"12"},"networkIsolation":false}}' >/dev/null
for _ in $(seq 1 30); do
  cpu=$(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.spec.hard.limits\.cpu}')
  pols=$(kubectl -n "$NS" get networkpolicy -o name | wc -l)
  [ "$cpu" = 12 ] && [ "$pols" = 0 ] && break
  sleep 1
done
[ "$cpu" = 12 ] || fail "quota limits.cpu is $cpu after the Tenant asked for 12"
[ "$pols" = 0 ] || fail "$pols network policies left after networkIsolation: false"
echo "changed: quota cpu 8 -> 12, isolation off (policies removed)"

# --- a namespace that is not ours ----------------------------------------------
kubectl create namespace "weir-$SQUAT" >/dev/null
sed "s/name: riverside-water/name: $SQUAT/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f - >/dev/null
reason=$(wait_reason "tenant/$SQUAT" Ready NamespaceNotOwned)
[ "$reason" = NamespaceNotOwned ] || fail "tenant/$SQUAT on a foreign namespace: Ready reason '$reason'"
kubectl get tenant "$SQUAT" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}'; echo
[ -z "$(kubectl -n "weir-$SQUAT" get resourcequota,limitrange,networkpolicy,rolebinding -o name)" ] \
  || fail "the operator wrote into weir-$SQUAT, which is not its Tenant's"
[ -z "$(kubectl get namespace "weir-$SQUAT" -o jsonpath='{.metadata.ownerReferences}')" ] \
  || fail "the operator took over namespace weir-$SQUAT"
kubectl get events -A --field-selector reason=NamespaceNotOwned -o name | grep -q . \
  || fail "no NamespaceNotOwned Event for tenant/$SQUAT"
kubectl delete tenant "$SQUAT" --timeout=60s >/dev/null || fail "tenant/$SQUAT could not be deleted"
kubectl get namespace "weir-$SQUAT" >/dev/null || fail "deleting tenant/$SQUAT deleted the namespace it never owned"
kubectl delete namespace "weir-$SQUAT" --wait=false >/dev/null
echo "refused: tenant/$SQUAT on an existing namespace, which was left alone"

# --- delete ------------------------------------------------------------------
sed -e "s/namespace: weir-riverside-water/namespace: $NS/" e2e/manifests/10-mqttcluster-riverside-mqtt.yaml \
  | kubectl apply -f - >/dev/null
kubectl delete tenant "$T" --wait=false >/dev/null
reason=$(wait_reason "tenant/$T" Degraded DeletionBlocked)
[ "$reason" = DeletionBlocked ] || fail "deleting tenant/$T with an MqttCluster left: Degraded reason '$reason'"
kubectl get tenant "$T" >/dev/null || fail "tenant/$T went while an MqttCluster remained"
kubectl patch tenant "$T" --type=merge -p '{"spec":{"cascadeDelete":true}}' >/dev/null
kubectl wait --for=delete "tenant/$T" --timeout=60s >/dev/null || fail "tenant/$T was not deleted with cascadeDelete"
# kube-controller-manager's garbage collector deletes the namespace, the
# Tenant's dependent; it picks up a kind installed after it started (the
# CRDs here) at its next discovery pass, so allow two minutes.
phase=""
for _ in $(seq 1 120); do
  phase=$(kubectl get namespace "$NS" -o jsonpath='{.status.phase}' 2>/dev/null || echo Gone)
  [ "$phase" = Terminating ] || [ "$phase" = Gone ] && break
  sleep 1
done
[ "$phase" = Terminating ] || [ "$phase" = Gone ] || fail "namespace $NS is '$phase' after its Tenant was deleted"
echo "deleted: held while an MqttCluster remained, then with cascadeDelete; namespace $NS $phase"
# The cluster's own finalizer would keep the namespace Terminating once the
# operator is gone: let it go (a cluster of the user's stays clean).
kubectl -n "$NS" patch mqttcluster riverside-mqtt --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
