#!/usr/bin/env bash
# Two weir-operator replicas with leader election, as the chart runs them:
# exactly one holds the Lease and reconciles (a new Tenant becomes Ready,
# its Events name the leader), the other waits and reconciles nothing. The
# leader is killed (-9, no release of the Lease): the other takes the Lease
# once it expires and reconciles a Tenant created meanwhile. Prints the
# take-over time; more than the lease duration (15 s) plus a margin fails.
set -euo pipefail
. e2e/k8s/lib.sh

LEASE_NS=weir-system
LEASE=weir-operator-failover
LEASE_SECONDS=15 # main.rs: LeaseSettings.duration
MARGIN=10
T1=failover-one
T2=failover-two
install_crds >/dev/null
ensure_namespace "$LEASE_NS"
# Leftovers of an earlier run on the same cluster.
kubectl -n "$LEASE_NS" delete lease "$LEASE" --ignore-not-found >/dev/null
for t in "$T1" "$T2"; do
  kubectl delete tenant "$t" --ignore-not-found --wait=false >/dev/null
  kubectl patch tenant "$t" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
done
for t in "$T1" "$T2"; do
  wait_for 60 bash -c "! kubectl get namespace weir-$t >/dev/null 2>&1" \
    || fail "namespace weir-$t of an earlier run is still there"
done

build_workspace_bins
declare -A PID URL LOG
start_replica() { # start_replica IDENTITY
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  URL[$1]="http://127.0.0.1:$port"
  LOG[$1]="$WEIR_K8S_WORK/operator-leader-failover-$1.log"
  # POD_NAME, as the chart sets it: the Events' reportingInstance.
  POD_NAME="$1" KUBECONFIG="${WEIR_OPERATOR_KUBECONFIG:-$KUBECONFIG}" \
    "${CARGO_TARGET_DIR:-target}/debug/weir-operator" --leader-election true \
    --lease-namespace "$LEASE_NS" --lease-name "$LEASE" --identity "$1" \
    --listen "127.0.0.1:$port" > "${LOG[$1]}" 2>&1 &
  PID[$1]=$!
  kill_on_exit "${PID[$1]}"
}
metric() { # metric IDENTITY NAME: the value of NAME (summed over labels) on its /metrics
  curl -fsS "${URL[$1]}/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}
holder() {
  kubectl -n "$LEASE_NS" get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null
}
reporters() { # reporters TENANT: the reportingInstance of the Events on TENANT
  kubectl get events -A --field-selector "involvedObject.kind=Tenant,involvedObject.name=$1" \
    -o jsonpath='{range .items[*]}{.reportingInstance}{"\n"}{end}' | sort -u | tr '\n' ' '
}
# Predicates for wait_for (evaluated at each try).
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
held_by() { [ "$(holder)" = "$1" ]; }
held() { [ -n "$(holder)" ]; }
has_events() { [ -n "$(reporters "$1")" ]; }
tenant() { # tenant NAME: apply a Tenant
  sed "s/name: riverside-water/name: $1/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f - >/dev/null
}

start_replica replica-a
start_replica replica-b
for r in replica-a replica-b; do
  wait_for 30 curl -fsS "${URL[$r]}/healthz" -o /dev/null || fail "$r did not answer /healthz: $(tail -n 5 "${LOG[$r]}")"
done
wait_for 30 held \
  || fail "nobody took the Lease $LEASE_NS/$LEASE in 30 s"
LEADER=$(holder)
case "$LEADER" in
  replica-a) FOLLOWER=replica-b ;;
  replica-b) FOLLOWER=replica-a ;;
  *) fail "the Lease is held by '$LEADER', not by one of the replicas" ;;
esac
OPERATOR_LOG=${LOG[$LEADER]} # for fail's log lines
leaders() { echo $(( $(metric replica-a weir_operator_leader) + $(metric replica-b weir_operator_leader) )); }
wait_for 10 metric_is "$LEADER" weir_operator_leader 1 \
  || fail "$LEADER holds the Lease but does not say it leads (weir_operator_leader $(metric "$LEADER" weir_operator_leader))"
[ "$(leaders)" = 1 ] || fail "$(leaders) replicas say they lead"
echo "leader: $LEADER; follower: $FOLLOWER"

# --- the leader reconciles ----------------------------------------------------------
tenant "$T1"
kubectl wait --for=condition=Ready "tenant/$T1" --timeout=60s >/dev/null \
  || fail "tenant/$T1 not Ready under leader $LEADER: $(kubectl get tenant "$T1" -o jsonpath='{.status.conditions}')"
wait_for 10 has_events "$T1" || fail "no Events on tenant/$T1"
[ "$(reporters "$T1")" = "$LEADER " ] || fail "the Events on tenant/$T1 come from '$(reporters "$T1")', not only from $LEADER"
# The follower reconciled nothing and never led.
[ "$(metric "$FOLLOWER" weir_operator_reconciles_total)" = 0 ] \
  || fail "follower $FOLLOWER reconciled $(metric "$FOLLOWER" weir_operator_reconciles_total) times while $LEADER led"
[ "$(metric "$FOLLOWER" weir_operator_leader)" = 0 ] || fail "follower $FOLLOWER says it leads"
grep -q "acquired the leader lease" "${LOG[$FOLLOWER]}" && fail "follower $FOLLOWER logged that it acquired the Lease"
grep -q "waiting for the leader lease" "${LOG[$FOLLOWER]}" || fail "follower $FOLLOWER did not log that it waits for the Lease"
echo "tenant/$T1 reconciled by $LEADER (reconciles: $(metric "$LEADER" weir_operator_reconciles_total)); $FOLLOWER: 0"

# --- the leader dies ------------------------------------------------------------------
t0=$(date +%s.%N)
kill -9 "${PID[$LEADER]}"
wait "${PID[$LEADER]}" 2>/dev/null || true
tenant "$T2"
OPERATOR_LOG=${LOG[$FOLLOWER]}
deadline=$((LEASE_SECONDS + MARGIN + 5))
wait_for "$deadline" held_by "$FOLLOWER" \
  || fail "the Lease is held by '$(holder)' ${deadline} s after $LEADER was killed, not by $FOLLOWER"
takeover=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
kubectl wait --for=condition=Ready "tenant/$T2" --timeout=60s >/dev/null \
  || fail "tenant/$T2 not Ready after $FOLLOWER took over: $(kubectl get tenant "$T2" -o jsonpath='{.status.conditions}')"
ready=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
[ "$(metric "$FOLLOWER" weir_operator_leader)" = 1 ] || fail "$FOLLOWER holds the Lease but does not say it leads"
grep -q "acquired the leader lease" "${LOG[$FOLLOWER]}" || fail "$FOLLOWER did not log that it acquired the Lease"
wait_for 10 has_events "$T2" || fail "no Events on tenant/$T2"
[ "$(reporters "$T2")" = "$FOLLOWER " ] || fail "the Events on tenant/$T2 come from '$(reporters "$T2")', not from $FOLLOWER"
echo "tenant/$T2 (created right after the kill) Ready after $ready s, reconciled by $FOLLOWER"
echo "takeover: $takeover s"
python3 -c "import sys; sys.exit(0 if $takeover <= $LEASE_SECONDS + $MARGIN else 1)" \
  || fail "take-over took $takeover s, more than the lease duration $LEASE_SECONDS s + $MARGIN s"

# Leave no Tenants behind (the operator that runs deletes their namespaces).
for t in "$T1" "$T2"; do kubectl delete tenant "$t" --wait=false >/dev/null; done
wait_for 60 bash -c "! kubectl get tenant $T1 $T2 -o name 2>/dev/null | grep -q ." \
  || fail "tenants $T1 and $T2 were not deleted by the new leader"
