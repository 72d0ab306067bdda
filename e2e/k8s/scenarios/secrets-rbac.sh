#!/usr/bin/env bash
# The operator's access to Secrets, decided by the real API server's RBAC:
# the chart's RBAC (`helm install charts/weir`, the api left out) grants the
# operator's ServiceAccount no Secrets anywhere; weir-operator running as
# that ServiceAccount (a token from `kubectl create token` in a kubeconfig of
# its own) gives a Tenant's namespace the RoleBinding weir-operator-secrets
# (the API server allows it only through the ClusterRole's `bind` on that
# role), after which the operator may get Secrets there, and only there, and
# an MqttCluster there gets its credentials Secret. An MqttCluster in a
# namespace that is not a Tenant's gets none: the API server answers 403,
# and the operator's error says that Secrets are only in Tenant namespaces.
#
# Idempotent: a release, Tenant or namespace left by an earlier run of this
# scenario is removed first.
set -euo pipefail
. e2e/k8s/lib.sh

ns=weir-system
rel=weir
sa=weir-operator
as="system:serviceaccount:$ns:$sa"
role=weir-operator-secrets
T=rbac-water
TNS=weir-$T
OUTSIDE=rbac-outside
C=rbac-mqtt
work=${WEIR_K8S_WORK:-$(mktemp -d)}

step() { echo "--- $*"; }
# expect WHAT GOT WANT
expect() {
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  echo "  $1: $2"
}
# can VERB... : what `kubectl auth can-i VERB... --as` the operator says
can() { kubectl auth can-i "$@" --as "$as" 2>/dev/null || true; }
cluster_yaml() { # cluster_yaml NAMESPACE
  cat <<EOF
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata:
  name: $C
  namespace: $1
spec:
  version: 5.8.6
  replicas: 1
EOF
}
# clean: the Tenant, the clusters and both namespaces gone (deleted first,
# then their finalizers dropped: none can be added once deletion started).
clean() {
  local n
  kubectl delete tenant "$T" --ignore-not-found --wait=false >/dev/null
  kubectl patch tenant "$T" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  for n in "$TNS" "$OUTSIDE"; do
    kubectl -n "$n" delete mqttcluster "$C" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl -n "$n" patch mqttcluster "$C" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  kubectl delete namespace "$TNS" "$OUTSIDE" --ignore-not-found --wait=true --timeout=120s >/dev/null \
    || fail "namespaces $TNS, $OUTSIDE not deleted in 120 s"
}

step "clean up an earlier run"
if helm status "$rel" -n "$ns" >/dev/null 2>&1; then
  helm uninstall "$rel" -n "$ns" >/dev/null || fail "helm uninstall of the earlier release failed"
fi
kubectl get crd tenants.weir.dev >/dev/null 2>&1 && clean
# The chart's CRDs as README's upgrade step applies them: Helm 4 applies
# crds/ at install without taking over fields someone else set differently.
out=$(kubectl apply --server-side --force-conflicts -f charts/weir/crds/ 2>&1) || fail "kubectl apply -f charts/weir/crds/ refused: $out"

step "helm install $rel charts/weir -n $ns --set api.enabled=false (the chart's RBAC and CRDs)"
ensure_namespace "$ns"
out=$(helm install "$rel" charts/weir -n "$ns" --set api.enabled=false 2>&1) || fail "helm install refused: $out"
for crd in tenants.weir.dev mqttclusters.weir.dev edgegateways.weir.dev; do
  kubectl wait --for=condition=Established "crd/$crd" --timeout=60s >/dev/null || fail "crd/$crd is not Established"
done
expect "clusterrole/$role rules" "$(kubectl get clusterrole "$role" -o jsonpath='{.rules[*].resources} {.rules[*].verbs}')" '["secrets"] ["get","create","update","patch","delete"]'
expect "clusterrolebindings of $role" "$(kubectl get clusterrolebindings -o jsonpath="{.items[?(@.roleRef.name==\"$role\")].metadata.name}")" ""

step "as $as, before any Tenant"
expect "can list secrets --all-namespaces" "$(can list secrets --all-namespaces)" no
expect "can watch secrets --all-namespaces" "$(can watch secrets --all-namespaces)" no
expect "can get secrets -n $ns" "$(can get secrets -n "$ns")" no
expect "can get secrets -n kube-system" "$(can get secrets -n kube-system)" no
expect "can bind clusterroles/$role" "$(can bind "clusterroles.rbac.authorization.k8s.io/$role")" yes
expect "can bind clusterroles/cluster-admin" "$(can bind clusterroles.rbac.authorization.k8s.io/cluster-admin)" no

step "a kubeconfig of the ServiceAccount's own (kubectl create token)"
token=$(kubectl -n "$ns" create token "$sa" --duration=2h) || fail "kubectl create token $sa refused"
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
sa_kubeconfig="$work/kubeconfig-$sa"
cat > "$sa_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $sa
  user:
    token: $token
contexts:
- name: $sa
  context: {cluster: cluster, user: $sa}
current-context: $sa
EOF
chmod 600 "$sa_kubeconfig"
expect "kubectl auth whoami (its kubeconfig)" "$(KUBECONFIG=$sa_kubeconfig kubectl auth whoami -o jsonpath='{.status.userInfo.username}')" "$as"
out=$(KUBECONFIG=$sa_kubeconfig kubectl get secrets -A 2>&1) && fail "the ServiceAccount listed every Secret: $out"
echo "  kubectl get secrets -A: $(tail -n1 <<<"$out")"
# Its own RBAC stops it binding anything stronger in a namespace (escalation).
ensure_namespace "$OUTSIDE"
out=$(KUBECONFIG=$sa_kubeconfig kubectl -n "$OUTSIDE" create rolebinding escalate --clusterrole=cluster-admin \
  --serviceaccount="$ns:$sa" --dry-run=server 2>&1) && fail "the ServiceAccount may bind cluster-admin: $out"
echo "  rolebinding to cluster-admin: $(head -n1 <<<"$out" | cut -c1-200)"

step "weir-operator as $as"
# The chart passes these through the Deployment's env; here the flags.
# (start_operator runs it with WEIR_OPERATOR_KUBECONFIG's credentials.)
WEIR_OPERATOR_KUBECONFIG=$sa_kubeconfig WEIR_OPERATOR_NAMESPACE=$ns \
  start_operator --service-account "$sa" --secrets-cluster-role "$role"

step "a Tenant: its namespace gets the operator's RoleBinding"
sed "s/name: riverside-water/name: $T/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready "tenant/$T" --timeout=60s >/dev/null \
  || fail "tenant/$T not Ready: $(kubectl get tenant "$T" -o jsonpath='{.status.conditions}')"
expect "rolebinding/$role in $TNS" \
  "$(kubectl -n "$TNS" get rolebinding "$role" -o jsonpath='{.roleRef.kind}/{.roleRef.name} -> {.subjects[0].kind}/{.subjects[0].namespace}/{.subjects[0].name}')" \
  "ClusterRole/$role -> ServiceAccount/$ns/$sa"
expect "rolebinding/$role managed by" "$(kubectl -n "$TNS" get rolebinding "$role" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" "Tenant/$T"
expect "can get secrets -n $TNS" "$(can get secrets -n "$TNS")" yes
expect "can create secrets -n $TNS" "$(can create secrets -n "$TNS")" yes
expect "can list secrets -n $TNS (read by name only)" "$(can list secrets -n "$TNS")" no
expect "can list secrets --all-namespaces" "$(can list secrets --all-namespaces)" no
expect "can get secrets -n $OUTSIDE" "$(can get secrets -n "$OUTSIDE")" no

step "an MqttCluster in $TNS gets its Secrets from the operator"
cluster_yaml "$TNS" | kubectl apply -f - >/dev/null
wait_for 60 kubectl -n "$TNS" get secret "$C-api-credentials" >/dev/null 2>&1 \
  || fail "secret/$C-api-credentials never appeared in $TNS"
keys=$(kubectl -n "$TNS" get secret "$C-api-credentials" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}')
[[ " $keys" == *" api-key "* && " $keys" == *" api-secret "* ]] || fail "secret/$C-api-credentials holds '$keys', no api-key/api-secret"
echo "  secret/$C-api-credentials keys: $keys"
expect "secret/$C-api-credentials owner" "$(kubectl -n "$TNS" get secret "$C-api-credentials" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" "MqttCluster/$C"

step "an MqttCluster in $OUTSIDE (no Tenant's): 403, said clearly"
cluster_yaml "$OUTSIDE" | kubectl apply -f - >/dev/null
hint="only in Tenant namespaces"
said() {
  grep -qF "$hint" "$OPERATOR_LOG" \
    || kubectl -n "$OUTSIDE" get mqttcluster "$C" -o jsonpath='{.status.conditions[*].message}' | grep -qF "$hint"
}
wait_for 60 said || fail "the operator never said why $OUTSIDE/$C has no Secrets (want '$hint' in its log or a condition)"
grep -F "$hint" "$OPERATOR_LOG" | grep -q 'secrets' || fail "the operator's message does not name the Secrets refused"
line=$(grep -F "$hint" "$OPERATOR_LOG" | tail -n1 | sed 's/\x1b\[[0-9;]*m//g')
line=${line#*Kubernetes API error: }
echo "  operator: ${line%% failures=*}"
cond=$(kubectl -n "$OUTSIDE" get mqttcluster "$C" -o jsonpath='{.status.conditions[?(@.status=="True")].message}')
[ -n "$cond" ] && echo "  condition: ${cond:0:200}"
expect "secrets in $OUTSIDE made by the operator" "$(kubectl -n "$OUTSIDE" get secrets -o name)" ""

step "clean up"
clean
helm uninstall "$rel" -n "$ns" >/dev/null || fail "helm uninstall refused"
echo "the operator uses Secrets only in Tenant namespaces, through the RoleBinding each Tenant gets"
