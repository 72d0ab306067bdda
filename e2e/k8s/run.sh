#!/usr/bin/env bash
# Kubernetes end-to-end scenario: install the weir CRDs and operator on the
# cluster KUBECONFIG names, apply e2e/manifests/ and wait for Ready.
# Not part of `cargo test`: without a reachable cluster it says so in one
# line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v kubectl >/dev/null || [ -z "${KUBECONFIG:-}" ] || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e/k8s: skipped — no reachable Kubernetes cluster (set KUBECONFIG to a kind/k3d cluster)"
  exit 0
fi

NS_SYSTEM=weir-system
TENANT_NS=weir-riverside-water
kubectl create namespace "$NS_SYSTEM" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f charts/weir/crds/

operator_pid=""
if command -v helm >/dev/null && [ -n "${WEIR_OPERATOR_IMAGE:-}" ]; then
  # A pushed image: install the chart as a user would.
  helm upgrade --install weir charts/weir -n "$NS_SYSTEM" \
    --set operator.image.repository="${WEIR_OPERATOR_IMAGE%:*}" --set operator.image.tag="${WEIR_OPERATOR_IMAGE##*:}" \
    --set api.enabled=false --wait
else
  # No image: run the operator from source against the cluster.
  cargo build -p weir-operator
  "${CARGO_TARGET_DIR:-target}/debug/weir-operator" --leader-election false --listen 127.0.0.1:18080 &
  operator_pid=$!
  trap '[ -n "$operator_pid" ] && kill "$operator_pid"' EXIT
fi

kubectl apply -f e2e/manifests/00-tenant-riverside-water.yaml
kubectl wait --for=condition=Ready tenant/riverside-water --timeout=120s
# What the example cluster references: a TLS secret and the historian's database URL.
if ! kubectl -n "$TENANT_NS" get secret riverside-mqtt-tls >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=riverside-mqtt" \
    -keyout "$tmp/tls.key" -out "$tmp/tls.crt" >/dev/null 2>&1
  kubectl -n "$TENANT_NS" create secret tls riverside-mqtt-tls --cert "$tmp/tls.crt" --key "$tmp/tls.key"
fi
kubectl -n "$TENANT_NS" get secret riverside-historian-db >/dev/null 2>&1 || \
  kubectl -n "$TENANT_NS" create secret generic riverside-historian-db --from-literal=url=postgres://historian@postgres/historian
kubectl apply -f e2e/manifests/
kubectl -n "$TENANT_NS" wait --for=condition=Ready mqttcluster --all --timeout=600s
kubectl -n "$TENANT_NS" wait --for=condition=Ready edgegateway --all --timeout=120s
kubectl get tn,mqc,egw -A
echo "e2e/k8s: passed"
