#!/usr/bin/env bash
# The Helm chart as a user installs it (README, charts/weir/README.md):
# `helm lint` with the default and the ci/ values; the Secrets the defaults
# need; `helm install` into weir-system; the operator and api Deployments,
# ServiceAccounts, RBAC, Services and CRDs carry what the values say (images,
# env from the Secrets) and the env names exist in the binaries' flags;
# the operator's ServiceAccount may use Secrets in no namespace (it binds
# itself a ClusterRole for them in tenant namespaces: scenario secrets-rbac);
# `helm upgrade` with changed values changes the Deployments; bad values are
# refused by values.schema.json (or the chart's `fail`) naming the value; the
# documented CRD upgrade path: with an older Tenant CRD served (no
# spec.cascadeDelete, no rule reserving `system`), `helm upgrade` alone leaves
# it (Helm never upgrades crds/), and README's `kubectl apply --server-side
# --force-conflicts -f charts/weir/crds/` then serves the new field and rule;
# `helm uninstall` removes the Deployments and keeps the CRDs; then the same
# with the api on SQLite in a PersistentVolumeClaim, which is kept.
#
# No --wait anywhere: there is no kubelet, so no pod ever runs or becomes
# Ready. The Deployment controller still makes the pods (stored, never run),
# which shows the API server admits their spec.
#
# Idempotent: a release, claim or changed CRD left by an earlier run of this
# scenario is removed first; the Secrets are applied, not created.
set -euo pipefail
. e2e/k8s/lib.sh

ns=weir-system
rel=weir
chart=charts/weir
work=${WEIR_K8S_WORK:-$(mktemp -d)}
crds=(tenants.weir.dev mqttclusters.weir.dev edgegateways.weir.dev)
mark=weir.dev/helm-install-scenario

step() { echo "--- $*"; }
# expect WHAT GOT WANT
expect() {
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  echo "  $1: $2"
}
# get KIND/NAME JSONPATH (in $ns; cluster-scoped kinds ignore the namespace)
get() { kubectl -n "$ns" get "$1" -o "jsonpath=$2"; }
env_secret() { # env_secret DEPLOYMENT VAR -> "secret/key"
  get "deployment/$1" "{.spec.template.spec.containers[0].env[?(@.name==\"$2\")].valueFrom.secretKeyRef.name}/{.spec.template.spec.containers[0].env[?(@.name==\"$2\")].valueFrom.secretKeyRef.key}"
}
env_value() { get "deployment/$1" "{.spec.template.spec.containers[0].env[?(@.name==\"$2\")].value}"; }
# gone KIND/NAME: wait up to 60 s until it is not found
gone() {
  local i
  for i in $(seq 1 120); do
    kubectl -n "$ns" get "$1" >/dev/null 2>&1 || { echo "  $1: gone"; return 0; }
    sleep 0.5
  done
  fail "$1 still exists 60 s after helm uninstall"
}
# pods_made DEPLOYMENT N: the Deployment controller made N pods (never run here)
pods_made() {
  local i n=0
  for i in $(seq 1 120); do
    n=$(kubectl -n "$ns" get pods -l "app.kubernetes.io/name=$1" --no-headers 2>/dev/null | wc -l)
    [ "$n" -eq "$2" ] && { echo "  $1: $n pods made by its ReplicaSet (stored, not run)"; return 0; }
    sleep 0.5
  done
  fail "deployment/$1: $n pods after 60 s, want $2 (the API server refused its pod template?): $(kubectl -n "$ns" get rs -l "app.kubernetes.io/name=$1" -o jsonpath='{.items[*].status.conditions}')"
}
# rs_made DEPLOYMENT IMAGE: the Deployment controller made a ReplicaSet for
# the new template (the rollout itself stalls: no pod becomes Ready here)
rs_made() {
  local i images=""
  for i in $(seq 1 120); do
    images=$(kubectl -n "$ns" get rs -l "app.kubernetes.io/name=$1" -o 'jsonpath={.items[*].spec.template.spec.containers[0].image}')
    [[ " $images " == *" $2 "* ]] && { echo "  $1: a ReplicaSet with $2"; return 0; }
    sleep 0.5
  done
  fail "deployment/$1: no ReplicaSet with $2 after 60 s (has: $images)"
}
# refused WANT_TEXT CMD...: CMD fails and its output names WANT_TEXT
refused() {
  local want=$1 out; shift
  if out=$("$@" 2>&1); then fail "accepted, should be refused: $*"; fi
  grep -qF -- "$want" <<<"$out" || fail "refused without naming $want: $*: $out"
  echo "  refused: $* -> $(grep -F -- "$want" <<<"$out" | head -n1 | sed 's/^[[:space:]]*//')"
}
uninstall_if_present() {
  if helm status "$rel" -n "$ns" >/dev/null 2>&1; then
    echo "  removing release $rel left by an earlier run"
    helm uninstall "$rel" -n "$ns" >/dev/null || fail "helm uninstall of the earlier release failed"
  fi
}
delete_claim() {
  kubectl -n "$ns" delete pvc weir-api-data --ignore-not-found --timeout=60s >/dev/null \
    || fail "pvc/weir-api-data was not deleted in 60 s: $(kubectl -n "$ns" get pvc weir-api-data -o jsonpath='{.metadata.finalizers}')"
}

step "helm lint"
out=$(helm lint "$chart" 2>&1) || fail "helm lint $chart: $out"
grep -q '0 chart(s) failed' <<<"$out" || fail "helm lint $chart: $out"
echo "  $chart: $(tail -n1 <<<"$out")"
for f in "$chart"/ci/*-values.yaml; do
  out=$(helm lint "$chart" -f "$f" 2>&1) || fail "helm lint $chart -f $f: $out"
  echo "  $chart -f $f: $(tail -n1 <<<"$out")"
done

step "every env var the chart sets is a flag of its binary"
names=$(for f in "" "$chart"/ci/*-values.yaml; do
  helm template "$rel" "$chart" -n "$ns" ${f:+-f "$f"} \
    | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "Deployment":
        for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []):
            print(d["metadata"]["name"], e["name"])'
done | sort -u)
[ -n "$names" ] || fail "helm template rendered no Deployment env"
while read -r dep var; do
  case "$dep:$var" in
    weir-api:WEIR_*) grep -rqF "env = \"$var\"" api/src || fail "weir-api has no flag with env = \"$var\" (api/src), but the chart sets it" ;;
    weir-operator:WEIR_*) grep -rqF "\"$var\"" operator/src || fail "weir-operator reads no \"$var\" (operator/src), but the chart sets it" ;;
  esac
done <<<"$names"
echo "  $(grep -c . <<<"$names") env vars checked: $(awk '{print $2}' <<<"$names" | sort -u | tr '\n' ' ')"

step "clean up an earlier run"
uninstall_if_present
delete_claim
for crd in "${crds[@]}"; do
  if [ -n "$(kubectl get crd "$crd" -o "jsonpath={.metadata.annotations.weir\.dev/helm-install-scenario}" 2>/dev/null)" ]; then
    kubectl apply --server-side --force-conflicts -f "$chart/crds/" >/dev/null || fail "restoring the chart's CRDs failed"
    kubectl annotate crd "${crds[@]}" "$mark-" >/dev/null
    break
  fi
done

step "namespace $ns and the Secrets the default values need"
ensure_namespace "$ns"
kubectl -n "$ns" create secret generic weir-database \
  --from-literal=url="postgres://weir:weir@postgres.$ns.svc:5432/weir" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" create secret generic weir-master-key \
  --from-literal=key="$(openssl rand -base64 32)" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" create secret generic weir-oidc \
  --from-literal=client-secret="$(openssl rand -hex 16)" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo "  secret/weir-database (url), secret/weir-master-key (key), secret/weir-oidc (client-secret)"

step "helm install $rel $chart -n $ns (no --wait: no pod ever runs here)"
out=$(helm install "$rel" "$chart" -n "$ns" 2>&1) || fail "helm install refused: $out"
expect "release status" "$(helm status "$rel" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')" deployed
app=$(helm show chart "$chart" | awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}')
[ -n "$app" ] || fail "no appVersion in $chart/Chart.yaml"

for crd in "${crds[@]}"; do
  kubectl wait --for=condition=Established "crd/$crd" --timeout=60s >/dev/null || fail "crd/$crd is not Established after helm install"
done
echo "  CRDs Established: ${crds[*]}"

expect "operator image" "$(get deployment/weir-operator '{.spec.template.spec.containers[0].image}')" "ghcr.io/weir-dev/weir-operator:$app"
expect "operator replicas" "$(get deployment/weir-operator '{.spec.replicas}')" 2
expect "operator serviceAccount" "$(get deployment/weir-operator '{.spec.template.spec.serviceAccountName}')" weir-operator
expect "operator WEIR_OPERATOR_LEADER_ELECTION" "$(env_value weir-operator WEIR_OPERATOR_LEADER_ELECTION)" true
expect "operator WEIR_DEFAULT_JWKS_URL" "$(env_value weir-operator WEIR_DEFAULT_JWKS_URL)" "http://weir-api.$ns.svc:8080/api/v1/jwks.json"
expect "operator WEIR_API_URL" "$(env_value weir-operator WEIR_API_URL)" "http://weir-api.$ns.svc:8080"
expect "api image" "$(get deployment/weir-api '{.spec.template.spec.containers[0].image}')" "ghcr.io/weir-dev/weir-api:$app"
expect "api replicas" "$(get deployment/weir-api '{.spec.replicas}')" 1
expect "api serviceAccount" "$(get deployment/weir-api '{.spec.template.spec.serviceAccountName}')" weir-api
expect "api WEIR_DATABASE_URL from" "$(env_secret weir-api WEIR_DATABASE_URL)" weir-database/url
expect "api WEIR_MASTER_KEY from" "$(env_secret weir-api WEIR_MASTER_KEY)" weir-master-key/key
expect "api WEIR_LISTEN" "$(env_value weir-api WEIR_LISTEN)" 0.0.0.0:8080
expect "api WEIR_PUBLIC_URL (unset: the api's default)" "$(env_value weir-api WEIR_PUBLIC_URL)" ""
expect "api runAsNonRoot" "$(get deployment/weir-api '{.spec.template.spec.securityContext.runAsNonRoot}')" true
for sa in weir-operator weir-api; do
  expect "serviceaccount/$sa" "$(get "serviceaccount/$sa" '{.metadata.name}')" "$sa"
done
for cr in weir-operator weir-operator-secrets weir-api weir-tenant-admin; do
  expect "clusterrole/$cr" "$(get "clusterrole/$cr" '{.metadata.name}')" "$cr"
done
for b in weir-operator weir-api; do
  expect "clusterrolebinding/$b subject" "$(get "clusterrolebinding/$b" '{.subjects[0].kind}/{.subjects[0].namespace}/{.subjects[0].name}')" "ServiceAccount/$ns/$b"
done
expect "rolebinding/weir-operator-leader role" "$(get rolebinding/weir-operator-leader '{.roleRef.kind}/{.roleRef.name}')" Role/weir-operator-leader
expect "service/weir-api" "$(get service/weir-api '{.spec.type} {.spec.ports[0].port}->{.spec.ports[0].targetPort}')" "ClusterIP 8080->http"
expect "service/weir-operator-metrics port" "$(get service/weir-operator-metrics '{.spec.ports[0].port}')" 8080
# The operator may do what it needs: ask the API server as its ServiceAccount.
for can in "patch statefulsets.apps -n weir-x" "bind clusterroles.rbac.authorization.k8s.io/weir-tenant-admin" "update leases.coordination.k8s.io -n $ns"; do
  # shellcheck disable=SC2086
  expect "weir-operator can $can" "$(kubectl auth can-i $can --as "system:serviceaccount:$ns:weir-operator" 2>/dev/null)" yes
done
expect "weir-operator can delete namespaces" "$(kubectl auth can-i delete namespaces --as "system:serviceaccount:$ns:weir-operator" 2>/dev/null || true)" no
# Secrets: in no namespace until a Tenant's RoleBinding grants them there.
for cannot in "list secrets --all-namespaces" "get secrets -n $ns" "get secrets -n weir-x"; do
  # shellcheck disable=SC2086
  expect "weir-operator can $cannot" "$(kubectl auth can-i $cannot --as "system:serviceaccount:$ns:weir-operator" 2>/dev/null || true)" no
done
expect "weir-operator can bind clusterroles/weir-operator-secrets" "$(kubectl auth can-i bind clusterroles.rbac.authorization.k8s.io/weir-operator-secrets --as "system:serviceaccount:$ns:weir-operator" 2>/dev/null)" yes
expect "operator WEIR_OPERATOR_SECRETS_CLUSTER_ROLE" "$(env_value weir-operator WEIR_OPERATOR_SECRETS_CLUSTER_ROLE)" weir-operator-secrets
expect "operator WEIR_OPERATOR_SERVICE_ACCOUNT from" "$(get deployment/weir-operator '{.spec.template.spec.containers[0].env[?(@.name=="WEIR_OPERATOR_SERVICE_ACCOUNT")].valueFrom.fieldRef.fieldPath}')" spec.serviceAccountName
expect "weir-api can create edgegateways" "$(kubectl auth can-i create edgegateways.weir.dev -n weir-x --as "system:serviceaccount:$ns:weir-api" 2>/dev/null)" yes
expect "ingress (api.ingress.enabled=false)" "$(kubectl -n "$ns" get ingress -o name)" ""
expect "claim (PostgreSQL, no SQLite volume)" "$(kubectl -n "$ns" get pvc -o name)" ""
pods_made weir-operator 2
pods_made weir-api 1

step "helm upgrade with changed values"
gen=$(get deployment/weir-operator '{.metadata.generation}')
out=$(helm upgrade "$rel" "$chart" -n "$ns" --reuse-values \
  --set api.replicas=3 --set api.image.tag=0.2.0-rc1 --set operator.logLevel=debug \
  --set operator.replicas=1 --set operator.logFormat=text \
  -f "$chart/ci/ingress-oidc-values.yaml" 2>&1) || fail "helm upgrade refused: $out"
expect "release revision" "$(helm status "$rel" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" 2
expect "operator replicas" "$(get deployment/weir-operator '{.spec.replicas}')" 1
expect "operator WEIR_LOG_FORMAT" "$(env_value weir-operator WEIR_LOG_FORMAT)" text
[ "$(get deployment/weir-operator '{.metadata.generation}')" -gt "$gen" ] \
  || fail "deployment/weir-operator generation is still $gen after helm upgrade changed it"
echo "  operator Deployment generation: $gen -> $(get deployment/weir-operator '{.metadata.generation}')"
expect "api replicas" "$(get deployment/weir-api '{.spec.replicas}')" 3
expect "api image" "$(get deployment/weir-api '{.spec.template.spec.containers[0].image}')" ghcr.io/weir-dev/weir-api:0.2.0-rc1
expect "operator WEIR_LOG" "$(env_value weir-operator WEIR_LOG)" debug
expect "api WEIR_PUBLIC_URL" "$(env_value weir-api WEIR_PUBLIC_URL)" https://weir.example.com
expect "api WEIR_OIDC_ISSUER" "$(env_value weir-api WEIR_OIDC_ISSUER)" https://login.example.com/realms/weir
expect "api WEIR_OIDC_CLIENT_ID" "$(env_value weir-api WEIR_OIDC_CLIENT_ID)" weir-console
expect "api WEIR_OIDC_CLIENT_SECRET from" "$(env_secret weir-api WEIR_OIDC_CLIENT_SECRET)" weir-oidc/client-secret
expect "ingress/weir-api" "$(get ingress/weir-api '{.spec.ingressClassName} {.spec.rules[0].host} tls={.spec.tls[0].secretName} -> {.spec.rules[0].http.paths[0].backend.service.name}:{.spec.rules[0].http.paths[0].backend.service.port.name}')" \
  "nginx weir.example.com tls=weir-api-tls -> weir-api:http"
rs_made weir-api ghcr.io/weir-dev/weir-api:0.2.0-rc1

step "bad values are refused, naming the value"
rev=$(helm status "$rel" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
refused "/api/replicas" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.replicas=two
refused "/api/service/type" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.service.type=Balancer
refused "'replica' not allowed" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.replica=2
refused "/operator/image/pullPolicy" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set operator.image.pullPolicy=Sometimes
refused "/api/database/sqlite/size" helm install weir-bad "$chart" -n "$ns" --set api.database.sqlite.size=lots
refused "api.replicas is 3, but api.database.sqlite.enabled is true" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.database.sqlite.enabled=true
refused "api.masterKey.secretName is empty" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.masterKey.secretName=
expect "release revision after the refusals" "$(helm status "$rel" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" "$rev"
expect "release weir-bad" "$(helm list -n "$ns" -q --filter '^weir-bad$')" ""
expect "api replicas after the refusals" "$(get deployment/weir-api '{.spec.replicas}')" 3

step "CRD upgrade path: kubectl apply --server-side --force-conflicts -f charts/weir/crds/, then helm upgrade"
# The Tenant CRD of an older chart: without spec.cascadeDelete and without
# the rule that reserves the name `system`. Written whole (kubectl replace,
# so no field of the current one survives, whoever set it) and marked, so
# that an interrupted run restores the chart's.
old_crd="$work/tenants.weir.dev-older.json"
kubectl get crd tenants.weir.dev -o json > "$old_crd" || fail "cannot read crd/tenants.weir.dev"
python3 - "$old_crd" "$mark" <<'EOF'
import json, sys
dst, mark = sys.argv[1:]
crd = json.load(open(dst))
crd["metadata"].setdefault("annotations", {})[mark] = "older"
crd["metadata"].pop("managedFields", None)
crd.pop("status", None)
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
del schema["properties"]["spec"]["properties"]["cascadeDelete"]
rules = schema["x-kubernetes-validations"]
schema["x-kubernetes-validations"] = [r for r in rules if "system" not in r["rule"]]
assert len(schema["x-kubernetes-validations"]) == len(rules) - 1
json.dump(crd, open(dst, "w"))
EOF
out=$(kubectl replace -f "$old_crd" 2>&1) || fail "writing the older Tenant CRD refused: $out"
kubectl wait --for=condition=Established crd/tenants.weir.dev --timeout=60s >/dev/null || fail "the older Tenant CRD is not Established"
# What the API server serves, asked with server-side dry runs: is
# spec.cascadeDelete kept (or pruned: --validate=false, so an unknown field
# is dropped, not refused), is a Tenant named `system` refused?
cascade() {
  printf '%s\n' 'apiVersion: weir.dev/v1alpha1' 'kind: Tenant' 'metadata: {name: crd-upgrade-probe}' \
    'spec: {displayName: Probe, cascadeDelete: true}' \
    | kubectl create --dry-run=server --validate=false -o 'jsonpath={.spec.cascadeDelete}' -f - 2>&1
}
system_tenant() {
  printf '%s\n' 'apiVersion: weir.dev/v1alpha1' 'kind: Tenant' 'metadata: {name: system}' 'spec: {displayName: System}' \
    | kubectl create --dry-run=server -f - 2>&1 || true
}
# served CASCADE TEXT: until (10 s) a probe's spec.cascadeDelete reads
# CASCADE and creating a Tenant named system says TEXT.
served() {
  local c="" s="" i
  for i in $(seq 1 20); do
    c=$(cascade || true); s=$(system_tenant)
    [ "$c" = "$1" ] && grep -qF -- "$2" <<<"$s" && return 0
    sleep 0.5
  done
  fail "served Tenant schema: spec.cascadeDelete='$c' (want '$1'), a Tenant named system: '$s' (want '$2')"
}
served "" "tenant.weir.dev/system created (server dry run)"
echo "  older CRD served: spec.cascadeDelete pruned, a Tenant named system accepted"
out=$(helm upgrade "$rel" "$chart" -n "$ns" --reuse-values 2>&1) || fail "helm upgrade refused: $out"
served "" "tenant.weir.dev/system created (server dry run)"
echo "  after helm upgrade alone: still the older CRD (Helm skips crds/)"
# The command README and charts/weir/README.md give, as written there.
for f in README.md "$chart/README.md"; do
  grep -qF 'kubectl apply --server-side --force-conflicts -f charts/weir/crds/' "$f" \
    || fail "$f no longer documents kubectl apply --server-side --force-conflicts -f charts/weir/crds/"
done
out=$(kubectl apply --server-side --force-conflicts -f charts/weir/crds/ 2>&1) || fail "kubectl apply --server-side -f charts/weir/crds/ refused: $out"
echo "$out" | sed 's/^/  /'
for crd in "${crds[@]}"; do
  kubectl wait --for=condition=Established "crd/$crd" --timeout=60s >/dev/null || fail "crd/$crd is not Established after the server-side apply"
done
served true "system is reserved"
echo "  after kubectl apply --server-side -f charts/weir/crds/: spec.cascadeDelete kept, a Tenant named system refused"
kubectl annotate crd tenants.weir.dev "$mark-" >/dev/null
out=$(helm upgrade "$rel" "$chart" -n "$ns" --reuse-values 2>&1) || fail "helm upgrade after the CRD apply refused: $out"
expect "release status after the CRD upgrade" "$(helm status "$rel" -n "$ns" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')" deployed

step "helm uninstall"
out=$(helm uninstall "$rel" -n "$ns" 2>&1) || fail "helm uninstall refused: $out"
for r in deployment/weir-operator deployment/weir-api serviceaccount/weir-api service/weir-api ingress/weir-api clusterrole/weir-operator clusterrolebinding/weir-api; do
  gone "$r"
done
for crd in "${crds[@]}"; do
  kubectl get crd "$crd" >/dev/null 2>&1 || fail "crd/$crd was deleted by helm uninstall (Helm keeps crds/)"
done
echo "  CRDs kept (Helm never deletes crds/): ${crds[*]}"

step "the api on SQLite in a PersistentVolumeClaim (ci/sqlite-values.yaml)"
out=$(helm install "$rel" "$chart" -n "$ns" -f "$chart/ci/sqlite-values.yaml" 2>&1) || fail "helm install with SQLite refused: $out"
expect "pvc/weir-api-data" "$(get pvc/weir-api-data '{.spec.accessModes[0]} {.spec.resources.requests.storage} keep={.metadata.annotations.helm\.sh/resource-policy}')" "ReadWriteOnce 2Gi keep=keep"
expect "api volume" "$(get deployment/weir-api '{.spec.template.spec.volumes[0].persistentVolumeClaim.claimName} at {.spec.template.spec.containers[0].volumeMounts[0].mountPath}')" "weir-api-data at /var/lib/weir"
expect "api strategy" "$(get deployment/weir-api '{.spec.strategy.type}')" Recreate
expect "api WEIR_DATABASE_URL" "$(env_value weir-api WEIR_DATABASE_URL)" "sqlite:///var/lib/weir/weir.db?mode=rwc"
expect "api WEIR_MASTER_KEY (generated on the volume)" "$(env_secret weir-api WEIR_MASTER_KEY)" "/"
pods_made weir-api 1
refused "api.replicas is 2, but api.database.sqlite.enabled is true" helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set api.replicas=2
out=$(helm uninstall "$rel" -n "$ns" 2>&1) || fail "helm uninstall (SQLite) refused: $out"
gone deployment/weir-api
gone deployment/weir-operator
expect "pvc/weir-api-data after helm uninstall (kept)" "$(get pvc/weir-api-data '{.metadata.name}')" weir-api-data
delete_claim
echo "helm install, upgrade, CRD upgrade path and uninstall: all as documented"
