#!/usr/bin/env bash
# Scenario 6 on a real Kubernetes cluster (KUBECONFIG): Tenant, MqttCluster
# and EdgeGateway reconciled and cleaned up. Without a reachable cluster it
# says so in one line and counts nothing (this machine has no cluster).
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! command -v kubectl >/dev/null || [ -z "${KUBECONFIG:-}" ] || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "k8s: skipped, no reachable Kubernetes cluster (set KUBECONFIG to a kind/k3d cluster to run e2e/k8s/run.sh)"
  exit 0
fi
. scripts/lib.sh
one_suite k8s bash e2e/k8s/run.sh
