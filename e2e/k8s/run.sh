#!/usr/bin/env bash
# Kubernetes scenarios against a real kube-apiserver: the cluster KUBECONFIG
# names, or (when it is unset) a local control plane built from pinned Go
# modules and started here (control-plane.sh). Never skips: a binary that
# cannot be built or a control plane that does not start is a failure.
#
# Each scenario is e2e/k8s/scenarios/NAME.sh, run with KUBECONFIG set and
# kubectl and helm on PATH. One line each, `ok NAME` or `FAIL NAME: why`,
# then `k8s: N passed, M failed`.
#   bash e2e/k8s/run.sh                  every scenario
#   bash e2e/k8s/run.sh crds-accepted    only the ones named
# WEIR_K8S_KEEP=1 keeps the work directory (logs, kubeconfig) for a look.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
. e2e/k8s/control-plane.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-k8s.XXXXXX")
export WEIR_K8S_WORK=$work
finish() {
  cp_stop
  if [ -n "${WEIR_K8S_KEEP:-}" ]; then echo "k8s: work directory kept: $work"; else rm -rf "$work"; fi
}
trap finish EXIT

if [ -n "${KUBECONFIG:-}" ]; then
  # A cluster of the user's: still use the pinned kubectl and helm.
  bin=$(bash e2e/k8s/tools/build.sh) || { echo "FAIL tools: building kubectl and helm failed"; echo "k8s: 0 passed, 1 failed"; exit 1; }
  export PATH="$bin:$PATH"
  echo "k8s: using the cluster of KUBECONFIG=$KUBECONFIG"
else
  t0=$(date +%s)
  if ! cp_start "$work/control-plane"; then
    echo "FAIL control-plane: the local kube-apiserver did not start (see above)"
    echo "k8s: 0 passed, 1 failed"
    exit 1
  fi
  trap finish EXIT # cp_start set its own; ours stops it and cleans up
  echo "k8s: local control plane $(kube-apiserver --version 2>/dev/null | awk '{print $2}') up in $(( $(date +%s) - t0 )) s"
fi
if ! server=$(kubectl version -o json 2>"$work/version.err"); then
  echo "FAIL cluster: kubectl cannot reach the API server: $(tail -n1 "$work/version.err")"
  echo "k8s: 0 passed, 1 failed"
  exit 1
fi
echo "k8s: server $(printf '%s' "$server" | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"

wanted=("$@")
passed=0 failed=0
for script in e2e/k8s/scenarios/*.sh; do
  name=$(basename "$script" .sh)
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  log="$work/$name.log"
  start=$(date +%s)
  if (cd "$root" && bash "$script") > "$log" 2>&1; then
    echo "ok $name ($(( $(date +%s) - start )) s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $(grep -v '^[[:space:]]*$' "$log" | tail -n1)"
    # Indented, and with counts reworded so that make test's total reads only
    # the closing line.
    tail -n 40 "$log" | sed -E 's/^/    /; s/([0-9]+) (passed|failed)/\1 tests \2/g'
    failed=$((failed + 1))
  fi
done
if [ $((passed + failed)) -eq 0 ]; then
  echo "FAIL scenarios: none matched ${wanted[*]}"
  failed=1
fi
echo "k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
