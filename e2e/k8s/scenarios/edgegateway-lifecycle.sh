#!/usr/bin/env bash
# Two EdgeGateways of one Tenant with weir-operator running as a process
# against the API server: each gets its signed bundle ConfigMap, which
# `weir-agent verify` accepts against the tenant's trust anchor (the key
# Secret's trust.json); both gateways are asked to rotate the tenant's
# signing key in the same instant (two `kubectl annotate` at once): the key
# Secret then remembers both requests, holds a chain of two rotations, both
# bundles are signed with the final key and carry the chain back to the
# first key (an agent that pinned the first key accepts them), and there is
# a SigningKeyRotated Event per gateway. Deleting a gateway removes its
# ConfigMap (garbage collection by owner reference, by
# kube-controller-manager) and leaves the tenant's key alone. The operator
# makes no enrollment token: weir-api issues it (kubectl-gateway-enrolls
# shows its Secret and that Secret's garbage collection).
set -euo pipefail
. e2e/k8s/lib.sh

T=eastbank-water
NS=weir-$T
GW1=raw-water-ps1
GW2=raw-water-ps2
KEY=weir-signing-key
ROTATE=weir.dev/rotate-signing-key
tmp="$WEIR_K8S_WORK/edgegateway-lifecycle"
mkdir -p "$tmp"
install_crds >/dev/null
# Leftovers of an earlier run on the same cluster.
kubectl delete tenant "$T" --ignore-not-found --wait=false >/dev/null
kubectl patch tenant "$T" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
for _ in $(seq 1 60); do kubectl get namespace "$NS" >/dev/null 2>&1 || break; sleep 1; done
kubectl get namespace "$NS" >/dev/null 2>&1 && fail "namespace $NS of an earlier run is still there"

# The Tenant's quota counts EdgeGateways, and the API server refuses them
# ("status unknown for quota") until kube-controller-manager's quota
# controller has counted them. It learns a kind installed after it started
# (the CRDs here) at its next discovery pass (30 s), but a quota made before
# that is counted again only at the next full resync (5 min). So wait until
# it counts EdgeGateways in a probe quota (whose limit changes at each try,
# which makes the controller count it again) before the Tenant is made.
PROBE=weir-e2e-quota-probe
quota_counts_gateways() {
  kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.status.used}' 2>/dev/null | grep -q 'count/edgegateways.weir.dev'
}
probe_try=0
probe_counts_gateways() {
  probe_try=$((probe_try + 1))
  kubectl -n "$PROBE" apply -f - >/dev/null <<EOF || return 1
apiVersion: v1
kind: ResourceQuota
metadata: {name: probe}
spec: {hard: {count/edgegateways.weir.dev: "$((1000 + probe_try))"}}
EOF
  sleep 1
  kubectl -n "$PROBE" get resourcequota probe -o jsonpath='{.status.used}' | grep -q 'count/edgegateways.weir.dev'
}
ensure_namespace "$PROBE"
wait_for 120 probe_counts_gateways || fail "kube-controller-manager's quota controller never counted EdgeGateways"
kubectl delete namespace "$PROBE" --wait=false >/dev/null

start_operator
agent="${CARGO_TARGET_DIR:-target}/debug/weir-agent"

gateway() { # gateway NAME: the example pump station as NAME in $NS
  sed -e "s/name: raw-water-ps1/name: $1/" -e "s/namespace: weir-riverside-water/namespace: $NS/" \
    e2e/manifests/20-edgegateway-raw-water-pump-station.yaml
}
bundle_of() { # bundle_of GW FILE: the bundle.json of GW's ConfigMap into FILE
  kubectl -n "$NS" get configmap "$1-config" -o jsonpath='{.data.bundle\.json}' > "$2"
}
key_id_of() { # key_id_of FILE: the keyId a bundle is signed with
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keyId"])' "$1"
}
secret_field() { # secret_field KEY: a data field of the key Secret, decoded
  kubectl -n "$NS" get secret "$KEY" -o "jsonpath={.data.${1//./\\.}}" | base64 -d
}

# --- a tenant and two gateways ---------------------------------------------------
sed "s/name: riverside-water/name: $T/" e2e/manifests/00-tenant-riverside-water.yaml | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready "tenant/$T" --timeout=60s >/dev/null \
  || fail "tenant/$T not Ready: $(kubectl get tenant "$T" -o jsonpath='{.status.conditions}')"
wait_for 60 quota_counts_gateways \
  || fail "the resource-quota controller does not count EdgeGateways in weir-quota of $NS: $(kubectl -n "$NS" get resourcequota weir-quota -o jsonpath='{.status}')"
{ gateway "$GW1"; echo "---"; gateway "$GW2"; } | kubectl apply -f - >/dev/null
for gw in "$GW1" "$GW2"; do
  kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Ready "edgegateway/$gw" --timeout=60s >/dev/null \
    || fail "edgegateway/$gw not Ready: $(kubectl -n "$NS" get edgegateway "$gw" -o jsonpath='{.status}')"
done

# The tenant's trust anchor, as an agent pins it at enrollment.
secret_field trust.json > "$tmp/trust-first.json"
K0=$(secret_field key-id)
[ -n "$K0" ] || fail "secret $KEY in $NS has no key-id"
for gw in "$GW1" "$GW2"; do
  owner=$(kubectl -n "$NS" get configmap "$gw-config" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}') \
    || fail "no ConfigMap $gw-config for edgegateway/$gw"
  [ "$owner" = "EdgeGateway/$gw" ] || fail "ConfigMap $gw-config is owned by '$owner', not EdgeGateway/$gw"
  version=$(kubectl -n "$NS" get configmap "$gw-config" -o jsonpath='{.metadata.annotations.weir\.dev/config-version}')
  [ "$version" = 1 ] || fail "ConfigMap $gw-config has config version '$version', not 1"
  [ "$(kubectl -n "$NS" get configmap "$gw-config" -o jsonpath='{.data.trust\.json}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyId"])')" = "$K0" ] \
    || fail "ConfigMap $gw-config names another trust anchor than the key Secret's $K0"
  bundle_of "$gw" "$tmp/$gw-1.json"
  out=$("$agent" verify --trust "$tmp/trust-first.json" --tenant "$T" --gateway "$gw" "$tmp/$gw-1.json" 2>&1) \
    || fail "the bundle of $gw does not verify against the tenant's key: $out"
  echo "$out"
  [ "$(key_id_of "$tmp/$gw-1.json")" = "$K0" ] || fail "the bundle of $gw is not signed with $K0"
  if kubectl -n "$NS" get secret "$gw-enrollment" >/dev/null 2>&1; then
    fail "the operator made an enrollment Secret $gw-enrollment (weir-api is the one issuer)"
  fi
done
# Another gateway's bundle is not accepted for this one.
"$agent" verify --trust "$tmp/trust-first.json" --tenant "$T" --gateway "$GW1" "$tmp/$GW2-1.json" >/dev/null 2>&1 \
  && fail "the bundle of $GW2 verified as one for $GW1"
echo "signed: $GW1 and $GW2, version 1, key $K0"

# --- two rotation requests in the same instant -------------------------------------
mark=$(wc -l < "$OPERATOR_LOG")
kubectl -n "$NS" annotate edgegateway "$GW1" "$ROTATE=$GW1-2026-q1" >/dev/null &
a1=$!
kubectl -n "$NS" annotate edgegateway "$GW2" "$ROTATE=$GW2-2026-q1" >/dev/null &
a2=$!
wait "$a1" || fail "kubectl annotate $GW1 failed"
wait "$a2" || fail "kubectl annotate $GW2 failed"

rotated() {
  done_list=$(kubectl -n "$NS" get secret "$KEY" -o jsonpath='{.metadata.annotations.weir\.dev/rotations-done}')
  key=$(secret_field key-id)
  grep -q "\"$GW1-2026-q1\"" <<<"$done_list" && grep -q "\"$GW2-2026-q1\"" <<<"$done_list" || return 1
  bundle_of "$GW1" "$tmp/$GW1-2.json" && bundle_of "$GW2" "$tmp/$GW2-2.json" || return 1
  [ "$(key_id_of "$tmp/$GW1-2.json")" = "$key" ] && [ "$(key_id_of "$tmp/$GW2-2.json")" = "$key" ]
}
wait_for 60 rotated \
  || fail "after both rotation requests: done list '$done_list', key $key, bundles signed by $(key_id_of "$tmp/$GW1-2.json") and $(key_id_of "$tmp/$GW2-2.json")"
K2=$key
[ "$K2" != "$K0" ] || fail "the key was not rotated"
echo "rotations done: $done_list"
# The Secret holds both rotations, K0 -> K1 -> K2.
chain=$(secret_field rotations.json | python3 -c '
import json, sys
links = json.load(sys.stdin)
print(" -> ".join([links[0]["oldKeyId"]] + [l["newKey"]["keyId"] for l in links]))
for a, b in zip(links, links[1:]):
    assert a["newKey"]["keyId"] == b["oldKeyId"], "broken chain"
') || fail "rotations.json of $KEY is not one unbroken chain"
[ "$(awk -F' -> ' '{print NF}' <<<"$chain")" = 3 ] || fail "the key Secret holds the chain $chain, not two rotations"
[[ "$chain" == "$K0 -> "*" -> $K2" ]] || fail "the key Secret's chain $chain does not lead from $K0 to $K2"
echo "key chain: $chain"
# An agent that pinned the first key follows both rotations; one that pinned
# the final key reads the bundle as is.
secret_field trust.json > "$tmp/trust-final.json"
for gw in "$GW1" "$GW2"; do
  out=$("$agent" verify --trust "$tmp/trust-first.json" --tenant "$T" --gateway "$gw" "$tmp/$gw-2.json" 2>&1) \
    || fail "the rotated bundle of $gw is refused by an agent that pinned $K0: $out"
  echo "$out"
  grep -q "rotations \[$chain\]" <<<"$out" || fail "the rotated bundle of $gw carries other rotations than $chain: $out"
  out=$("$agent" verify --trust "$tmp/trust-final.json" --tenant "$T" --gateway "$gw" "$tmp/$gw-2.json" 2>&1) \
    || fail "the rotated bundle of $gw is refused by an agent that pinned $K2: $out"
done
events=$(kubectl -n "$NS" get events --field-selector reason=SigningKeyRotated \
  -o jsonpath='{range .items[*]}{.involvedObject.name}{"\n"}{end}' | sort -u | tr '\n' ' ')
[ "$events" = "$GW1 $GW2 " ] || fail "SigningKeyRotated Events name '$events', not both gateways"
if sed -n "$((mark + 1)),\$p" "$OPERATOR_LOG" | grep -q "the signing key changed while rotating it"; then
  echo "the two rotations overlapped: one update was refused (409) and rotated again from the new key"
else
  echo "the two rotations did not overlap this time (one ran after the other)"
fi

# --- delete a gateway ------------------------------------------------------------------
kubectl -n "$NS" delete edgegateway "$GW2" --timeout=60s >/dev/null || fail "edgegateway/$GW2 could not be deleted"
# kube-controller-manager's garbage collector deletes the dependents; it
# picks up a kind installed after it started (the CRDs here) at its next
# discovery pass, so allow two minutes.
gone() {
  ! kubectl -n "$NS" get configmap "$GW2-config" >/dev/null 2>&1
}
wait_for 120 gone || fail "ConfigMap $GW2-config is still there after edgegateway/$GW2 was deleted"
kubectl -n "$NS" get configmap "$GW1-config" >/dev/null || fail "deleting $GW2 removed the ConfigMap of $GW1"
[ "$(secret_field key-id)" = "$K2" ] || fail "deleting $GW2 changed or removed the tenant's key"
echo "deleted: $GW2 with its ConfigMap; $GW1 and the tenant's key $K2 stay"
