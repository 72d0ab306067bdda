#!/usr/bin/env bash
# What kubectl applies, the api shows, and what the api changes, kubectl
# shows: weir-operator and weir-api (the chart's ServiceAccount, SQLite) run
# as host processes. An MqttCluster and an EdgeGateway applied with kubectl
# with label weir.dev/project=north appear through the api for a member of
# project north (signed in with the REST API), the gateway with version 1 by
# "kubernetes"; one without the label lands in project "default", which
# north's member does not see. A change made through the api shows in
# `kubectl get -o yaml` (with the project label) and comes back through
# the watch as no new version; a change made with kubectl is a new version
# by "kubernetes". Deleting with kubectl deletes in the api.
set -euo pipefail
. e2e/k8s/lib.sh

T=kubectl-visible
NS=weir-$T
fresh_tenant_namespace "$T"
wait_quota_counts_gateways
start_operator
WEIR_KUBE_SYNC_INTERVAL_SECS=1 start_api
create_tenant "$T"
tenant_quota_counts_gateways "$NS"

gateway() { # gateway NAME LABELS [CLUSTER]
  cat <<EOF
apiVersion: weir.dev/v1alpha1
kind: EdgeGateway
metadata:
  name: $1
  namespace: $NS
  labels: {$2}
spec:
  site: {name: Pump station $1, timezone: Europe/London}
  mode: external
  ${3:+clusterRef: $3}
  devices:
    - name: plc
      adapter: simulator
      groups:
        - name: process
          intervalMs: 1000
          tags:
            - {name: flow, address: sim, dataType: float64, unit: m3/h,
               signal: {kind: sine, min: 10, max: 20, periodS: 600}}
EOF
}
kubectl apply -f - >/dev/null <<EOF
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata:
  name: main
  namespace: $NS
  labels: {weir.dev/project: north}
spec:
  version: 5.8.6
  replicas: 1
  storage: {size: 1Gi, reclaimPolicy: Retain}
  listeners:
    - {name: mqtt, protocol: tcp, port: 1883}
  authentication: {mode: apiJwt}
EOF
{ gateway pump-1 "weir.dev/project: north" main; echo "---"; gateway pump-2 ""; } | kubectl apply -f - >/dev/null

# --- a member of project north sees them -----------------------------------------
api_login
north="/api/v1/orgs/$T/projects/north"
project_made() { api_call GET "$north" >/dev/null 2>&1; }
wait_for 30 project_made || fail "project north of label weir.dev/project never appeared in the api; api log: $(tail -n 5 "$API_LOG")"
USER_EMAIL=north-editor@weir-e2e.test
USER_PASSWORD="e2e-user-$(openssl rand -hex 8)"
api_call POST /api/v1/users "$(jq -nc --arg e "$USER_EMAIL" --arg p "$USER_PASSWORD" '{email: $e, name: "North editor", password: $p}')" >/dev/null \
  || fail "creating user $USER_EMAIL failed"
api_call POST "$north/members" "$(jq -nc --arg e "$USER_EMAIL" '{email: $e, role: "project-editor"}')" >/dev/null \
  || fail "making $USER_EMAIL an editor of project north failed"
api_login "$USER_EMAIL" "$USER_PASSWORD"

seen() { api_call GET "$north/gateways/pump-1" >/dev/null 2>&1 && api_call GET "$north/clusters/main" >/dev/null 2>&1; }
wait_for 30 seen || fail "cluster main or gateway pump-1 never appeared in project north: gateways $(api_call GET "$north/gateways" | jq -c '[.[].name]'), clusters $(api_call GET "$north/clusters" | jq -c '[.[].name]')"
gw=$(api_call GET "$north/gateways/pump-1")
[ "$(jq -r .cluster <<<"$gw")" = main ] || fail "gateway pump-1 is not on cluster main: $gw"
[ "$(jq -r .spec.site.name <<<"$gw")" = "Pump station pump-1" ] || fail "gateway pump-1 has another spec: $gw"
versions=$(api_call GET "$north/gateways/pump-1/versions")
[ "$(jq -c '[.[] | [.version, .author]]' <<<"$versions")" = '[[1,"kubernetes"]]' ] \
  || fail "gateway pump-1 should have version 1 by kubernetes: $versions"
[ "$(api_call GET "$north/clusters/main" | jq -r .backend)" = kubernetes ] || fail "cluster main is not a kubernetes cluster in the api"
[ "$(api_call GET "$north/gateways" | jq -c '[.[].name]')" = '["pump-1"]' ] \
  || fail "project north lists other gateways than pump-1: $(api_call GET "$north/gateways")"
if api_call GET "/api/v1/orgs/$T/projects/default/gateways" >/dev/null 2>&1; then
  fail "north's member sees project default"
fi
echo "north's editor sees cluster main and gateway pump-1 (version 1 by kubernetes), not project default"
api_login
[ "$(api_call GET "/api/v1/orgs/$T/projects/default/gateways" | jq -c '[.[].name]')" = '["pump-2"]' ] \
  || fail "pump-2 (no project label) is not in project default"
echo "pump-2 without a label is in project default"

# --- an edit through the api shows in kubectl ---------------------------------------
api_login "$USER_EMAIL" "$USER_PASSWORD"
api_call PATCH "$north/gateways/pump-1" '{"merge_patch": {"site": {"name": "Renamed in the api"}}, "comment": "e2e"}' >/dev/null \
  || fail "changing pump-1 through the api failed"
yaml=$(kubectl -n "$NS" get edgegateway pump-1 -o yaml)
grep -q "name: Renamed in the api" <<<"$yaml" || fail "the api's change is not in kubectl get -o yaml: $yaml"
grep -q "weir.dev/project: north" <<<"$yaml" || fail "pump-1 lost its project label: $yaml"
echo "kubectl get -o yaml shows the api's change"
# The watch sees the api's own write: no version of its own (wait a few passes).
sleep 4
versions=$(api_call GET "$north/gateways/pump-1/versions")
[ "$(jq -c '[.[] | .version]' <<<"$versions")" = '[2,1]' ] \
  || fail "the api's change came back as another version: $(jq -c '[.[] | [.version, .author, .comment]]' <<<"$versions")"

# --- an edit with kubectl shows in the api ---------------------------------------------
kubectl -n "$NS" patch edgegateway pump-1 --type merge -p '{"spec": {"site": {"name": "Renamed with kubectl"}}}' >/dev/null
kubectl_version() {
  api_call GET "$north/gateways/pump-1" | jq -e '.version == 3 and .spec.site.name == "Renamed with kubectl"' >/dev/null
}
wait_for 30 kubectl_version || fail "the kubectl change is not version 3 in the api: $(api_call GET "$north/gateways/pump-1" | jq -c '{version, site: .spec.site}')"
[ "$(api_call GET "$north/gateways/pump-1/versions" | jq -r '.[0].author')" = kubernetes ] \
  || fail "version 3 is not by kubernetes"
diff=$(api_call GET "$north/gateways/pump-1/versions/3/diff")
jq -e '.changes[] | select(.path == "/site/name" and .value == "Renamed with kubectl")' <<<"$diff" >/dev/null \
  || fail "the diff of version 3 does not show the renamed site: $diff"
echo "a kubectl change is version 3 by kubernetes in the api, with its diff"

# --- deleting with kubectl deletes in the api -------------------------------------------
api_login
kubectl -n "$NS" delete edgegateway pump-2 --timeout=60s >/dev/null
gone() { ! api_call GET "/api/v1/orgs/$T/projects/default/gateways/pump-2" >/dev/null 2>&1; }
wait_for 30 gone || fail "pump-2 is still in the api after kubectl delete"
echo "kubectl delete removed pump-2 from the api"
