#!/usr/bin/env bash
# Benchmark: weir-operator with 500 MqttClusters on the local control plane
# (control-plane.sh: real etcd, kube-apiserver and kube-controller-manager),
# weir-k8s-sim standing in for the kubelet (marks the pods Ready) and for
# EMQX (its HTTP API faked per pod). Slow (minutes), so not part of
# `make test` or `make bench`; run it on a quiet machine:
#
#   bash e2e/k8s/bench-500.sh
#
# Settings (environment): BENCH_CLUSTERS (500), BENCH_REPLICAS (1 node per
# cluster), BENCH_TENANTS (5, the clusters spread evenly), BENCH_PROFILE
# (release: the operator built with --release; debug: the binary of
# `cargo build`), BENCH_STEADY (60 s). The simulator is the debug build.
# Always starts its own control plane (the audit log counts the writes), so
# KUBECONFIG is ignored. WEIR_K8S_KEEP=1 keeps the logs.
#
# Measures, and prints as a table:
#   - time from the first create until every cluster is Ready (phase Ready,
#     all nodes ready), and how long the creates alone took (kubectl create
#     of one file with every cluster);
#   - the operator's writes (its user in the API server's audit log: create,
#     update, patch, delete; Leases and Events left out) until then, and in
#     the steady minute that follows, divided by the reconciles in that
#     minute (weir_operator_reconciles_total on its /metrics);
#   - the operator's peak and steady resident memory (VmHWM, VmRSS).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. e2e/k8s/control-plane.sh

CLUSTERS=${BENCH_CLUSTERS:-500}
REPLICAS=${BENCH_REPLICAS:-1}
TENANTS=${BENCH_TENANTS:-5}
PROFILE=${BENCH_PROFILE:-release}
STEADY=${BENCH_STEADY:-60}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-500.XXXXXX")
export WEIR_K8S_WORK=$work
finish() {
  cp_stop
  if [ -n "${WEIR_K8S_KEEP:-}" ]; then echo "bench-500: work directory kept: $work"; else rm -rf "$work"; fi
}
trap finish EXIT

case $PROFILE in
  release)
    echo "bench-500: cargo build --release -p weir-operator"
    cargo build -q --release -p weir-operator --bin weir-operator || { echo "FAIL bench-500: release build failed"; exit 1; }
    export WEIR_OPERATOR_BIN="$CARGO_TARGET_DIR/release/weir-operator" ;;
  debug) ;;
  *) echo "FAIL bench-500: BENCH_PROFILE is release or debug, not '$PROFILE'"; exit 1 ;;
esac

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
unset KUBECONFIG
cp_start "$work/control-plane" || { echo "FAIL bench-500: the local control plane did not start"; exit 1; }
trap finish EXIT # cp_start set its own

# The measuring part runs in a subshell: lib.sh's EXIT trap stops the
# operator and the simulator there, and this shell's then stops the
# control plane.
(
  . e2e/k8s/lib.sh
  now() { date +%s.%N; }
  secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
  mib() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$OPERATOR_PID/status"; }
  reconciles() {
    curl -fsS "$OPERATOR_URL/metrics" | awk '/^weir_operator_reconciles_total\{/ { n += $2 } END { print n + 0 }'
  }
  errors() {
    curl -fsS "$OPERATOR_URL/metrics" | awk '/^weir_operator_reconcile_errors_total\{/ { n += $2 } END { print n + 0 }'
  }
  reconciles_by() {
    curl -fsS "$OPERATOR_URL/metrics" \
      | sed -n 's/^weir_operator_reconciles_total{controller="\([a-z]*\)"} \([0-9]*\).*/\1 \2/p' | sort
  }
  # writers SINCE T0: who wrote to the API server after audit line SINCE:
  # writes and the time of the last one, in seconds after T0 (epoch); then
  # when the last StatefulSet, pod, pod status and cluster status came.
  writers() {
    tail -n "+$(( $1 + 1 ))" "$WEIR_K8S_AUDIT_LOG" | python3 -c '
import collections, datetime, json, sys
t0 = float(sys.argv[1])
n = collections.Counter(); last = {}; step = {}
steps = [
    ("weir-operator", "create", "patch", "statefulsets", None, "weir-operator: last StatefulSet applied"),
    ("kube-controller-manager", "create", "create", "pods", None, "kube-controller-manager: last pod created"),
    ("weir-k8s-sim (kubelet, EMQX)", "patch", "update", "pods", "status", "weir-k8s-sim: last pod status written"),
    ("weir-operator", "patch", "patch", "mqttclusters", "status", "weir-operator: last MqttCluster status written"),
]
for line in sys.stdin.read().split("\n")[:-1]:
    e = json.loads(line)
    if e.get("stage") != "ResponseComplete":
        continue
    ua, user = e.get("userAgent") or "", e["user"]["username"]
    who = ("weir-operator" if user == "weir-operator"
           else "kube-controller-manager" if ua.startswith("kube-controller-manager")
           else "kubectl (this script)" if ua.startswith("kubectl")
           else "weir-k8s-sim (kubelet, EMQX)" if user == "weir-admin" and not ua
           else user + " " + ua.split(" ")[0])
    t = datetime.datetime.fromisoformat(e["stageTimestamp"].replace("Z", "+00:00")).timestamp()
    n[who] += 1; last[who] = max(last.get(who, 0), t)
    o = e.get("objectRef") or {}
    for w, v1, v2, res, sub, label in steps:
        if who == w and e["verb"] in (v1, v2) and o.get("resource") == res and o.get("subresource") == sub:
            step[label] = max(step.get(label, 0), t)
for who, k in n.most_common():
    print("| %s | %d | %.1f s |" % (who, k, last[who] - t0))
print()
for *_, label in steps:
    print("| %s | %s |" % (label, "%.1f s" % (step[label] - t0) if label in step else "none"))
' "$2"
  }
  ready_count() {
    kubectl get mqttclusters -A -o jsonpath='{range .items[*]}{.status.phase} {.status.readyReplicas}{"\n"}{end}' \
      | awk -v r="$REPLICAS" '$1 == "Ready" && $2 == r' | wc -l
  }
  # While the clusters come up, one watch (not a list every half second,
  # which costs the API server and kubectl more than the operator's work on
  # 2 cores) records every change; watched_ready counts from its lines.
  watched_ready() {
    awk -v r="$REPLICAS" '{ if ($2 == "Ready" && $3 == r) ok[$1] = 1; else delete ok[$1] }
      END { n = 0; for (k in ok) n++; print n }' "$work/watch.txt"
  }

  install_crds >/dev/null
  # shellcheck disable=SC2119 # the simulator with its defaults
  start_sim
  start_operator --emqx-url-template "$SIM_URL/{namespace}/{pod}"
  [ "$(cat "/proc/$OPERATOR_PID/comm")" = weir-operator ] || fail "PID $OPERATOR_PID is not weir-operator"

  for t in $(seq 0 $((TENANTS - 1))); do
    cat <<EOF
---
apiVersion: weir.dev/v1alpha1
kind: Tenant
metadata: {name: bench-$t}
spec:
  displayName: Bench $t
  quota: {cpu: "1000", memory: 4000Gi, storage: 100Ti, persistentVolumeClaims: 1000, maxMqttConnections: 1000000}
EOF
  done > "$work/tenants.yaml"
  kubectl create -f "$work/tenants.yaml" >/dev/null || fail "the Tenants were refused"
  for t in $(seq 0 $((TENANTS - 1))); do
    kubectl wait --for=condition=Ready "tenant/bench-$t" --timeout=120s >/dev/null || fail "tenant/bench-$t not Ready"
  done

  for i in $(seq 0 $((CLUSTERS - 1))); do
    cat <<EOF
---
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata: {name: plant-$i, namespace: weir-bench-$((i % TENANTS))}
spec:
  replicas: $REPLICAS
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 500m, memory: 512Mi}
  storage: {size: 1Gi}
EOF
  done > "$work/clusters.yaml"

  kubectl get mqttclusters -A --watch \
    -o jsonpath='{.metadata.namespace}/{.metadata.name} {.status.phase} {.status.readyReplicas}{"\n"}' \
    > "$work/watch.txt" 2>"$work/watch.err" &
  watch_pid=$!
  kill_on_exit "$watch_pid"
  mark=$(audit_mark)
  t0=$(now)
  kubectl create -f "$work/clusters.yaml" >/dev/null || fail "the MqttClusters were refused"
  t_created=$(now)
  ready=0 seen=0 progress=$(date +%s)
  while [ "$ready" -lt "$CLUSTERS" ]; do
    [ "$(date +%s)" -ge $((progress + 180)) ] && fail "stuck at $ready of $CLUSTERS clusters Ready for 180 s"
    kill -0 "$watch_pid" 2>/dev/null || fail "kubectl get --watch ended: $(cat "$work/watch.err")"
    sleep 0.5
    ready=$(watched_ready)
    if [ "$ready" -gt "$seen" ]; then seen=$ready; progress=$(date +%s); fi
  done
  t_ready=$(now)
  kill "$watch_pid"
  ramp_errors=$(errors)
  ramp=$(operator_writes "$mark")
  who=$(writers "$mark" "$t0")

  mark=$(audit_mark)
  r0=$(reconciles)
  by0=$(reconciles_by)
  sleep "$STEADY"
  steady=$(operator_writes "$mark")
  r1=$(reconciles)
  steady_errors=$(( $(errors) - ramp_errors ))
  rss=$(mib VmRSS)
  hwm=$(mib VmHWM)
  by1=$(reconciles_by)
  n_ready=$(ready_count)
  writes=$(head -n1 <<<"$steady")
  n=$((r1 - r0))
  per=$(python3 -c "import sys; w, n = map(int, sys.argv[1:]); print(f'{w / n:.3f}' if n else 'n/a')" "$writes" "$n")
  by=$(join <(echo "$by0") <(echo "$by1") | awk '{ printf "%s%s %d", sep, $1, $3 - $2; sep = ", " }')
  rev=$(kube-apiserver --version 2>/dev/null | awk '{print $2}')

  echo
  echo "bench-500: weir-operator ($PROFILE build, default settings), $CLUSTERS MqttClusters of $REPLICAS node(s) across $TENANTS Tenants"
  echo "  in the path: kube-apiserver + etcd + kube-controller-manager $rev on loopback; weir-k8s-sim (debug build) as kubelet and EMQX API"
  echo "  machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| creates (kubectl create, one file of $CLUSTERS) | $(secs "$t0" "$t_created") s |"
  echo "| first create → all $CLUSTERS Ready | $(secs "$t0" "$t_ready") s |"
  echo "| operator writes until all Ready | $(head -n1 <<<"$ramp") |"
  echo "| failed reconciles until all Ready (retried) | $ramp_errors |"
  echo "| steady ${STEADY} s: reconciles | $n ($by) |"
  echo "| steady ${STEADY} s: failed reconciles | $steady_errors |"
  echo "| steady ${STEADY} s: operator writes | $writes |"
  echo "| writes per steady reconcile | $per |"
  echo "| operator RSS peak (VmHWM) | $hwm MiB |"
  echo "| operator RSS steady (VmRSS at the end) | $rss MiB |"
  echo "| clusters still Ready at the end | $n_ready of $CLUSTERS |"
  echo
  echo "every writer from the first create until all Ready (leases and events included):"
  echo
  echo "| writer | writes | last write after the first create |"
  echo "|---|---|---|"
  sed '/^$/,$d' <<<"$who"
  echo
  echo "| step | after the first create |"
  echo "|---|---|"
  sed '1,/^$/d' <<<"$who"
  echo
  echo "operator writes until all Ready, by kind:"
  tail -n +2 <<<"$ramp"
  if [ "$writes" != 0 ]; then
    echo "operator writes in the steady ${STEADY} s, by kind:"
    tail -n +2 <<<"$steady"
  fi
  [ "$n_ready" = "$CLUSTERS" ] || fail "$n_ready of $CLUSTERS clusters Ready at the end"
)
