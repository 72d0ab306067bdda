#!/usr/bin/env bash
# A local Kubernetes control plane on loopback, for the e2e/k8s scenarios:
# etcd, kube-apiserver (RBAC, service-account keys, a static admin token) and
# kube-controller-manager with its default controllers (service accounts,
# resource quotas, garbage collection, ...), and an audit log of every write
# request. No kubelet: pods are stored and never run; NetworkPolicies are
# stored, not enforced. The API server advertises 127.0.0.1, which the
# `kubernetes` Service's endpoint reconciler refuses, so that reconciler is
# off (nothing here connects through the Service).
#
# Source it, then:
#   cp_start DIR   build or reuse the binaries (tools/build.sh), start the
#                  three processes on free loopback ports, wait until the
#                  API answers and write DIR/kubeconfig (exported as
#                  KUBECONFIG; the binaries' directory goes first in PATH)
#   cp_stop        stop them (also run on EXIT by cp_start's trap)
# Logs: DIR/{etcd,kube-apiserver,kube-controller-manager}.log
#
# The operator gets a user of its own, `weir-operator` (a static token bound
# to cluster-admin), so that its requests can be told from everyone else's:
# cp_start exports WEIR_OPERATOR_KUBECONFIG (DIR/operator.kubeconfig, which
# lib.sh's start_operator uses) and WEIR_K8S_AUDIT_LOG (DIR/audit.log: one
# JSON line per create, update, patch and delete, written before the
# response, read by lib.sh's operator_writes).
# shellcheck shell=bash

_cp_pids=()
_cp_dir=""

_cp_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_cp_wait() { # _cp_wait SECONDS WHAT CMD...: until CMD succeeds, or a process died
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs )) p
  until "$@" >/dev/null 2>&1; do
    for p in "${_cp_pids[@]}"; do
      kill -0 "$p" 2>/dev/null || { echo "control plane: a process exited while waiting for $what" >&2; return 1; }
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "control plane: $what did not come up in ${secs}s" >&2
      return 1
    fi
    sleep 0.5
  done
}

_cp_log_tail() {
  local f
  for f in "$_cp_dir"/*.log; do
    [ -f "$f" ] || continue
    echo "--- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
}

# Newest first (controller-manager, API server, etcd), each given 5 s to
# exit before it is killed: an API server whose etcd is gone already waits
# minutes for it, and nothing here outlives the run.
cp_stop() {
  local i p
  for (( i=${#_cp_pids[@]}-1; i>=0; i-- )); do
    p=${_cp_pids[$i]}
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  _cp_pids=()
}

cp_start() {
  _cp_dir=$1
  mkdir -p "$_cp_dir"
  local here bin
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  bin=$(bash "$here/tools/build.sh") || { echo "control plane: building the binaries failed (see above)" >&2; return 1; }
  export PATH="$bin:$PATH"
  trap cp_stop EXIT

  local etcd_port etcd_peer api_port kcm_port pki="$_cp_dir/pki"
  etcd_port=$(_cp_free_port); etcd_peer=$(_cp_free_port)
  api_port=$(_cp_free_port); kcm_port=$(_cp_free_port)
  mkdir -p "$pki"
  # Service-account signing key (the token controller and the API server
  # share it); the admin's static token is fresh for every start.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  local token op_token
  token=$(openssl rand -hex 24)
  op_token=$(openssl rand -hex 24)
  {
    echo "$token,weir-admin,weir-admin,system:masters"
    echo "$op_token,weir-operator,weir-operator"
  } > "$pki/tokens.csv"
  chmod 600 "$pki/tokens.csv" "$pki/sa.key"
  # Writes only, at Metadata level (who, verb, object; no bodies); reads,
  # watches and the API server's own requests are not logged.
  cat > "$_cp_dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF

  etcd --name default --data-dir "$_cp_dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" --log-level warn \
    > "$_cp_dir/etcd.log" 2>&1 &
  _cp_pids+=($!)
  _cp_wait 30 etcd curl -fsS "http://127.0.0.1:$etcd_port/health" || { _cp_log_tail; return 1; }

  # Service range: a /16, as in a real cluster. Each MqttCluster takes two
  # ClusterIPs; a /24 ran out at 124 clusters (bench-500.sh).
  kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$pki" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode RBAC --anonymous-auth=false \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --audit-policy-file "$_cp_dir/audit-policy.yaml" --audit-log-path "$_cp_dir/audit.log" \
    --audit-log-format json --audit-log-mode blocking \
    > "$_cp_dir/kube-apiserver.log" 2>&1 &
  _cp_pids+=($!)

  # The API server writes its self-signed serving certificate into --cert-dir.
  _cp_wait 60 "kube-apiserver's certificate" test -s "$pki/apiserver.crt" || { _cp_log_tail; return 1; }
  cat > "$_cp_dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/apiserver.crt
users:
- name: weir-admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: weir-admin}
current-context: local
EOF
  sed -e "s/^- name: weir-admin$/- name: weir-operator/" -e "s/token: $token/token: $op_token/" \
    -e "s/user: weir-admin}/user: weir-operator}/" "$_cp_dir/kubeconfig" > "$_cp_dir/operator.kubeconfig"
  chmod 600 "$_cp_dir/kubeconfig" "$_cp_dir/operator.kubeconfig"
  export KUBECONFIG="$_cp_dir/kubeconfig"
  _cp_wait 120 kube-apiserver kubectl get --raw /readyz || { _cp_log_tail; return 1; }
  kubectl create clusterrolebinding weir-e2e-operator-user --clusterrole cluster-admin --user weir-operator >/dev/null \
    || { echo "control plane: cannot bind the weir-operator user to cluster-admin" >&2; return 1; }
  export WEIR_OPERATOR_KUBECONFIG="$_cp_dir/operator.kubeconfig"
  export WEIR_K8S_AUDIT_LOG="$_cp_dir/audit.log"

  kube-controller-manager \
    --kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/apiserver.crt" \
    --use-service-account-credentials=false --controllers '*' \
    > "$_cp_dir/kube-controller-manager.log" 2>&1 &
  _cp_pids+=($!)
  # The service-account controller gives every namespace its `default`
  # account; pods are admitted only once it exists.
  _cp_wait 60 "kube-controller-manager (serviceaccount default/default)" \
    kubectl -n default get serviceaccount default || { _cp_log_tail; return 1; }
}
