#!/usr/bin/env bash
# The Kubernetes scenarios (e2e/k8s/run.sh) against a real kube-apiserver:
# KUBECONFIG's cluster, or a local control plane built from pinned Go
# modules. Its closing line "k8s: N passed, M failed" counts each scenario.
set -uo pipefail
cd "$(dirname "$0")/../.."
exec bash e2e/k8s/run.sh
