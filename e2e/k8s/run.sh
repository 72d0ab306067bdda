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

# HPA: the scale subresource names the pods' selector.
selector=$(kubectl get --raw "/apis/weir.dev/v1alpha1/namespaces/$TENANT_NS/mqttclusters/riverside-mqtt/scale" | sed -n 's/.*"selector":"\([^"]*\)".*/\1/p')
[ -n "$selector" ] || { echo "e2e/k8s: MqttCluster scale has no status.selector"; exit 1; }
[ "$(kubectl -n "$TENANT_NS" get pods -l "$selector" -o name | wc -l)" -ge 1 ] || { echo "e2e/k8s: selector $selector finds no pods"; exit 1; }

# The tenant's connection quota is a listener limit in emqx.conf and in the status.
kubectl -n "$TENANT_NS" get configmap riverside-mqtt-config -o jsonpath='{.data.emqx\.conf}' | grep -q 'max_connections = ' \
  || { echo "e2e/k8s: no listener max_connections from the tenant quota"; exit 1; }
kubectl -n "$TENANT_NS" get mqttcluster riverside-mqtt -o jsonpath='{.status.connectionLimit.perListener}' | grep -q '[0-9]' \
  || { echo "e2e/k8s: status.connectionLimit missing"; exit 1; }

# Drift: a hand edit of an owned object is reverted without waiting for a resync.
kubectl -n "$TENANT_NS" patch service riverside-mqtt --type=json -p '[{"op":"replace","path":"/spec/ports/0/port","value":11883}]'
port=11883
for _ in $(seq 1 30); do
  port=$(kubectl -n "$TENANT_NS" get service riverside-mqtt -o jsonpath='{.spec.ports[0].port}')
  [ "$port" != 11883 ] && break
  sleep 1
done
[ "$port" != 11883 ] || { echo "e2e/k8s: hand edit of Service riverside-mqtt was not reverted"; exit 1; }

# In-cluster agents keep their queue on a volume.
for gw in $(kubectl -n "$TENANT_NS" get egw -o jsonpath='{range .items[?(@.spec.mode=="inCluster")]}{.metadata.name}{"\n"}{end}'); do
  kubectl -n "$TENANT_NS" get pvc "$gw-agent-data" >/dev/null || { echo "e2e/k8s: no queue volume for $gw"; exit 1; }
done

kubectl get tn,mqc,egw -A
echo "e2e/k8s: passed"
