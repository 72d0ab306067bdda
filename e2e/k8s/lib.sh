# Helpers the scenarios share. Source it from a scenario.
# shellcheck shell=bash

fail() { echo "$*"; exit 1; }

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

# ensure_namespace NAME
ensure_namespace() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}
