# Helpers the scenarios share. Source it from a scenario.
# shellcheck shell=bash

# fail WHY: the last log lines of the operator, the simulator and the api
# (when they run), then WHY as the last line, which run.sh shows as the reason.
fail() {
  local log
  for log in "${OPERATOR_LOG:-}" "${SIM_LOG:-}" "${API_LOG:-}"; do
    if [ -n "$log" ] && [ -f "$log" ]; then
      echo "--- last lines of $log"
      tail -n 20 "$log"
    fi
  done
  echo "$*"
  exit 1
}

# Processes a scenario started, stopped (newest first) by one EXIT trap,
# so that start_operator, start_sim and a scenario's own background
# commands never clobber each other's cleanup.
_lib_pids=()
_lib_cleanup() {
  local i p
  for (( i=${#_lib_pids[@]}-1; i>=0; i-- )); do
    p=${_lib_pids[$i]}
    kill "$p" 2>/dev/null || continue
    wait "$p" 2>/dev/null || true
  done
  _lib_pids=()
}
# kill_on_exit PID: stop PID when the scenario exits.
kill_on_exit() {
  _lib_pids+=("$1")
  trap _lib_cleanup EXIT
}

# wait_for SECONDS CMD...: run CMD every half second until it succeeds;
# false when SECONDS passed first.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# build_workspace_bins: the workspace's binaries, built as `cargo test
# --workspace` builds them (a lone `-p CRATE` resolves other features and
# rebuilds half the dependencies).
build_workspace_bins() {
  cargo build -q --workspace --bins || fail "cargo build --workspace --bins failed"
}

# start_operator [ARGS...]: build weir-operator (the binary users run, debug
# profile) and run it against KUBECONFIG's cluster until the scenario exits,
# with ARGS added to its command line (e.g. --emqx-url-template
# "$SIM_URL/{namespace}/{pod}"); its log goes to
# $WEIR_K8S_WORK/operator-<scenario>.log, its /metrics is at
# $OPERATOR_URL/metrics. On the local control plane it is the user
# weir-operator (WEIR_OPERATOR_KUBECONFIG), whose writes operator_writes counts.
# WEIR_OPERATOR_BIN runs another build (the benchmark's release binary).
start_operator() {
  build_workspace_bins
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  OPERATOR_LOG="$WEIR_K8S_WORK/operator-$(basename "$0" .sh).log"
  # shellcheck disable=SC2034 # read by the scenarios
  OPERATOR_URL="http://127.0.0.1:$port"
  KUBECONFIG="${WEIR_OPERATOR_KUBECONFIG:-$KUBECONFIG}" \
    "${WEIR_OPERATOR_BIN:-${CARGO_TARGET_DIR:-target}/debug/weir-operator}" --leader-election false --listen "127.0.0.1:$port" "$@" \
    > "$OPERATOR_LOG" 2>&1 &
  OPERATOR_PID=$!
  kill_on_exit "$OPERATOR_PID"
  for _ in $(seq 1 60); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$OPERATOR_PID" 2>/dev/null || fail "weir-operator exited at start"
    sleep 0.5
  done
  fail "weir-operator did not answer /healthz on 127.0.0.1:$port"
}

# start_sim [ARGS...]: build and run weir-k8s-sim (e2e/src/k8s_sim: marks
# the pods of MqttClusters Ready as a kubelet would, and fakes EMQX's HTTP
# API per pod) until the scenario exits; exports SIM_URL (its base URL: the
# operator's --emqx-url-template is "$SIM_URL/{namespace}/{pod}"). Its log
# goes to $WEIR_K8S_WORK/sim-<scenario>.log.
start_sim() {
  build_workspace_bins
  SIM_LOG="$WEIR_K8S_WORK/sim-$(basename "$0" .sh).log"
  "${CARGO_TARGET_DIR:-target}/debug/weir-k8s-sim" "$@" > "$SIM_LOG" 2>&1 &
  SIM_PID=$!
  kill_on_exit "$SIM_PID"
  local url=""
  for _ in $(seq 1 60); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$SIM_LOG" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || fail "weir-k8s-sim exited at start"
    sleep 0.5
  done
  [ -n "$url" ] || fail "weir-k8s-sim did not say where it listens"
  export SIM_URL=$url
}

# sim_calls [SINCE]: the EMQX API calls the simulator received (from
# position SINCE on), a JSON list of {seq, namespace, pod, method, path,
# body, status}.
sim_calls() {
  curl -fsS "$SIM_URL/_sim/calls?since=${1:-0}"
}

# sim_mark: the position the next EMQX API call will get (for sim_calls).
sim_mark() {
  sim_calls | jq length
}

# install_crds: apply crds/yaml/ (as README says) and wait until Established.
install_crds() {
  local out crd
  out=$(kubectl apply -f crds/yaml/ 2>&1) || fail "kubectl apply -f crds/yaml/ refused: $out"
  echo "$out"
  for crd in tenants.weir.dev mqttclusters.weir.dev edgegateways.weir.dev; do
    kubectl wait --for=condition=Established "crd/$crd" --timeout=60s >/dev/null \
      || fail "crd/$crd is not Established: $(kubectl get crd "$crd" -o jsonpath='{.status.conditions}')"
  done
}

# wait_reason OBJECT TYPE REASON: poll (30 s at most) until OBJECT's
# condition TYPE has REASON; prints the reason last seen.
wait_reason() {
  local got=""
  for _ in $(seq 1 30); do
    got=$(kubectl get "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].reason}")
    [ "$got" = "$3" ] && break
    sleep 1
  done
  echo "$got"
}

# ensure_namespace NAME
ensure_namespace() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# audit_mark: the number of lines in the local control plane's audit log
# (control-plane.sh), the SINCE of a later operator_writes.
audit_mark() {
  if [ -z "${WEIR_K8S_AUDIT_LOG:-}" ] || [ ! -f "$WEIR_K8S_AUDIT_LOG" ]; then
    fail "no audit log: counting the operator's writes needs the local control plane (KUBECONFIG unset)"
  fi
  wc -l < "$WEIR_K8S_AUDIT_LOG"
}

# operator_writes SINCE: the write requests (create, update, patch, delete)
# of the operator's user weir-operator in the audit log after line SINCE,
# Leases and Events left out. Prints their number, then one line per verb and
# resource: how many, and which objects (the first five).
operator_writes() {
  tail -n "+$(( $1 + 1 ))" "$WEIR_K8S_AUDIT_LOG" | python3 -c '
import collections, json, sys
data = sys.stdin.read()
lines = data.split("\n")[:-1]  # a line still being written has no newline yet
by = collections.defaultdict(list)
for line in lines:
    e = json.loads(line)
    o = e.get("objectRef") or {}
    if e.get("stage") != "ResponseComplete" or e["user"]["username"] != "weir-operator":
        continue
    if e["verb"] not in ("create", "update", "patch", "delete", "deletecollection"):
        continue
    if o.get("resource") in ("leases", "events"):
        continue
    what = o.get("resource", "?") + ("/" + o["subresource"] if o.get("subresource") else "")
    name = "/".join(x for x in (o.get("namespace"), o.get("name")) if x)
    code = e.get("responseStatus", {}).get("code", 0)
    by[(e["verb"], what)].append(name + ("" if 200 <= code < 300 else " (%d)" % code))
print(sum(len(v) for v in by.values()))
for (verb, what), names in sorted(by.items(), key=lambda kv: -len(kv[1])):
    more = " ..." if len(names) > 5 else ""
    print("  %5d %s %s: %s%s" % (len(names), verb, what, ", ".join(names[:5]), more))
'
}

# fresh_tenant_namespace TENANT: the CRDs installed and what an earlier run
# of the scenario left (Tenant TENANT, its namespace weir-TENANT) gone.
fresh_tenant_namespace() {
  install_crds >/dev/null
  kubectl delete tenant "$1" --ignore-not-found --wait=false >/dev/null
  kubectl patch tenant "$1" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kubectl delete namespace "weir-$1" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

# start_sim_and_operator: weir-k8s-sim with its defaults, and weir-operator
# reaching EMQX's API through it.
start_sim_and_operator() {
  # shellcheck disable=SC2119 # the simulator with its defaults
  start_sim
  start_operator --emqx-url-template "$SIM_URL/{namespace}/{pod}"
}

# create_tenant TENANT: the sample Tenant (e2e/manifests) named TENANT, Ready.
create_tenant() {
  sed "s/name: riverside-water/name: $1/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Ready "tenant/$1" --timeout=60s >/dev/null \
    || fail "tenant/$1 not Ready: $(kubectl get tenant "$1" -o jsonpath='{.status.conditions}')"
}

# create_mqttcluster NAMESPACE NAME AUTHENTICATION: an MqttCluster of 3
# EMQX 5.8.6 nodes with one TCP listener, spec.authentication as given
# (e.g. "{mode: apiJwt}").
create_mqttcluster() {
  kubectl apply -f - >/dev/null <<EOF
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata:
  name: $2
  namespace: $1
spec:
  version: 5.8.6
  replicas: 3
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {cpu: 500m, memory: 512Mi}
  storage: {size: 1Gi, reclaimPolicy: Retain}
  listeners:
    - {name: mqtt, protocol: tcp, port: 1883}
  authentication: $3
EOF
}

# api_kubeconfig: a kubeconfig for KUBECONFIG's cluster whose user is the
# ServiceAccount weir-e2e-api/weir-api bound to exactly the RBAC the chart
# gives weir-api (rendered with `helm template`, cluster-scoped names
# prefixed weir-e2e- so that a `helm install` of the chart does not collide
# with them), so that a scenario exercises the chart's api permissions, not
# the admin's. Sets API_KUBECONFIG to the file's path.
api_kubeconfig() {
  local ns=weir-e2e-api f="$WEIR_K8S_WORK/api.kubeconfig" out token
  ensure_namespace "$ns"
  out=$(helm template weir charts/weir --namespace "$ns" 2>&1) || fail "helm template charts/weir failed: $out"
  out=$(python3 -c '
import sys, yaml
ns = sys.argv[1]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
def is_api_sa(s):
    return s.get("kind") == "ServiceAccount" and s.get("name") == "weir-api"
keep, roles = [], set()
for d in docs:
    if d["kind"] in ("ClusterRoleBinding", "RoleBinding") and any(is_api_sa(s) for s in d.get("subjects") or []):
        roles.add((d["roleRef"]["kind"], d["roleRef"]["name"]))
        keep.append(d)
for d in docs:
    if (d["kind"], d["metadata"]["name"]) in roles:
        keep.append(d)
if not keep:
    sys.exit("the chart binds no role to the ServiceAccount weir-api")
keep.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "weir-api", "namespace": ns}})
for d in keep:
    md = d["metadata"]
    md.pop("labels", None)
    md.pop("annotations", None)
    if d["kind"].startswith("Cluster"):
        md["name"] = "weir-e2e-" + md["name"]
    if d["kind"] == "ClusterRoleBinding":
        d["roleRef"]["name"] = "weir-e2e-" + d["roleRef"]["name"]
print(yaml.safe_dump_all(keep))
' "$ns" <<<"$out" 2>&1) || fail "the chart's RBAC for weir-api: $out"
  out=$(kubectl apply -f - <<<"$out" 2>&1) || fail "applying the chart's RBAC for weir-api refused: $out"
  token=$(kubectl -n "$ns" create token weir-api --duration 24h) || fail "no token for serviceaccount $ns/weir-api"
  kubectl config view --raw --minify --flatten > "$f"
  chmod 600 "$f"
  KUBECONFIG=$f kubectl config set-credentials weir-e2e-api --token="$token" >/dev/null
  KUBECONFIG=$f kubectl config set-context --current --user=weir-e2e-api >/dev/null
  API_KUBECONFIG=$f
}

# start_api [ARGS...]: build the workspace's binaries and run weir-api (the
# debug binary) on the host until the scenario exits, against KUBECONFIG's
# cluster as the chart's api identity (api_kubeconfig; WEIR_API_KUBECONFIG
# names another kubeconfig), with Kubernetes tenants and fleet on, a fresh
# SQLite database in $WEIR_K8S_WORK/api-<scenario>/ and a bootstrap admin.
# ARGS go to its command line; extra settings as environment, e.g.
# `WEIR_FLEET_MONITOR_INTERVAL_MS=500 start_api`. Waits for /readyz, then
# exports API_URL, API_LOG, API_DIR, ADMIN_EMAIL and ADMIN_PASSWORD.
start_api() {
  build_workspace_bins
  local port kc=${WEIR_API_KUBECONFIG:-}
  if [ -z "$kc" ]; then
    api_kubeconfig
    kc=$API_KUBECONFIG
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  API_DIR="$WEIR_K8S_WORK/api-$(basename "$0" .sh)"
  rm -rf "$API_DIR"
  mkdir -p "$API_DIR"
  export API_DIR API_LOG="$API_DIR/api.log" API_URL="http://127.0.0.1:$port"
  ADMIN_PASSWORD="e2e-admin-$(openssl rand -hex 8)"
  export ADMIN_EMAIL=admin@weir-e2e.test ADMIN_PASSWORD
  KUBECONFIG=$kc \
  WEIR_DATABASE_URL="sqlite://$API_DIR/weir.db?mode=rwc" \
  WEIR_LISTEN="127.0.0.1:$port" \
  WEIR_PUBLIC_URL="${WEIR_PUBLIC_URL:-$API_URL}" \
  WEIR_BOOTSTRAP_ADMIN_EMAIL="$ADMIN_EMAIL" \
  WEIR_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  WEIR_WEB_DIR="$API_DIR/no-web" \
  WEIR_KUBE_TENANTS=on \
  WEIR_KUBE_FLEET=on \
  RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    "${CARGO_TARGET_DIR:-target}/debug/weir-api" "$@" > "$API_LOG" 2>&1 &
  API_PID=$!
  kill_on_exit "$API_PID"
  for _ in $(seq 1 120); do
    curl -fsS "$API_URL/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$API_PID" 2>/dev/null || fail "weir-api exited at start"
    sleep 0.5
  done
  fail "weir-api did not answer /readyz at $API_URL"
}

# api_login [EMAIL PASSWORD]: sign in to the api of start_api (the
# bootstrap admin by default); the session cookie goes to $API_DIR/cookies
# and its CSRF token to API_CSRF, which api_call sends.
api_login() {
  local email=${1:-$ADMIN_EMAIL} password=${2:-$ADMIN_PASSWORD} body
  body=$(jq -nc --arg e "$email" --arg p "$password" '{email: $e, password: $p}')
  API_CSRF=$(curl -fsS -c "$API_DIR/cookies" -H 'content-type: application/json' -d "$body" \
    "$API_URL/api/v1/auth/login" | jq -er .csrf_token) || fail "sign-in as $email at $API_URL refused"
  export API_CSRF
}

# api_call METHOD PATH [BODY]: a request to the api as the signed-in user
# (api_login); prints the response body. A status of 400 or more prints
# "METHOD PATH: HTTP status: body" on stderr and returns 1.
api_call() {
  local method=$1 path=$2 out code
  out=$(mktemp "$API_DIR/call.XXXXXX")
  local args=(-sS -X "$method" -b "$API_DIR/cookies" -c "$API_DIR/cookies" -H "x-csrf-token: ${API_CSRF:-}" -o "$out" -w '%{http_code}')
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' --data-binary "$3")
  code=$(curl "${args[@]}" "$API_URL$path") || { rm -f "$out"; echo "$method $path: no answer from $API_URL" >&2; return 1; }
  if [ "$code" -ge 400 ]; then
    echo "$method $path: HTTP $code: $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

# wait_quota_counts_gateways: wait until kube-controller-manager's quota
# controller counts EdgeGateways (the Tenant's quota names them, and the API
# server refuses new ones, "status unknown for quota", until they are
# counted). It learns a kind installed after it started (the CRDs) at its
# next discovery pass (30 s); a probe quota whose limit changes at each try
# is counted again at once. Call it before the Tenant is made, then
# tenant_quota_counts_gateways NS after.
wait_quota_counts_gateways() {
  local probe="weir-e2e-quota-probe-$$" try=0
  ensure_namespace "$probe"
  _probe_counts() {
    try=$((try + 1))
    kubectl -n "$probe" apply -f - >/dev/null <<EOQ || return 1
apiVersion: v1
kind: ResourceQuota
metadata: {name: probe}
spec: {hard: {count/edgegateways.weir.dev: "$((1000 + try))"}}
EOQ
    sleep 1
    kubectl -n "$probe" get resourcequota probe -o jsonpath='{.status.used}' | grep -q 'count/edgegateways.weir.dev'
  }
  wait_for 120 _probe_counts || fail "kube-controller-manager's quota controller never counted EdgeGateways"
  kubectl delete namespace "$probe" --wait=false >/dev/null
}

# tenant_quota_counts_gateways NS: wait until the Tenant's quota weir-quota
# in NS counts EdgeGateways.
tenant_quota_counts_gateways() {
  _tenant_counts() {
    kubectl -n "$1" get resourcequota weir-quota -o jsonpath='{.status.used}' 2>/dev/null | grep -q 'count/edgegateways.weir.dev'
  }
  wait_for 60 _tenant_counts "$1" \
    || fail "the resource-quota controller does not count EdgeGateways in weir-quota of $1: $(kubectl -n "$1" get resourcequota weir-quota -o jsonpath='{.status}')"
}
