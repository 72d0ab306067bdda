#!/usr/bin/env bash
# What the operator runs gets credentials that work against the tenant's
# EMQX in its default JWT mode. weir-operator, weir-k8s-sim (EMQX's HTTP API
# and pod readiness) and weir-api run as host processes against the API
# server. A Tenant, an MqttCluster (apiJwt, with a historian) and an
# inCluster EdgeGateway are applied with kubectl.
#
# The in-cluster agent: the agent Deployment the operator rendered is read
# back from the API server and its one container is run ON THE HOST as its
# pod spec says: the same arguments and environment (env values as written;
# secretKeyRef/configMapKeyRef env read from the API server, an optional one
# left out when its key is missing), and each volume (Secret, ConfigMap,
# PersistentVolumeClaim, emptyDir) materialized as a directory in the work
# dir. What a host process cannot share with a pod is mapped, and only that:
#   - a mount path in an argument or env value (e.g. `--data-dir /data`)
#     becomes that volume's directory;
#   - in-cluster DNS names: a URL whose host is `weir-api.weir-system.svc`
#     (the operator's default --api-url) is rewritten to the host api's
#     127.0.0.1:PORT ($API_URL); any other `*.svc` host (the MqttCluster's
#     Service in --mqtt-url) to 127.0.0.1 on a port nothing listens on — no
#     real EMQX runs here, so the agent's MQTT connection is refused and
#     its readings queue on its volume;
#   - WEIR_METRICS_LISTEN is set to a free port (a pod has its own network;
#     the host's default 127.0.0.1:9102 may be taken).
# The agent enrolls with the token the api wrote to <gateway>-enrollment
# and obtains its broker identity (an MQTT JWT) from the api. That JWT is
# verified (EdDSA, with openssl) against the JWKS the operator rendered into
# the cluster's emqx.conf (`endpoint`, mapped to the host api as above),
# with the claims EMQX checks there (`verify_claims username`, the `acl`
# claim under `acl_claim_name = acl`, authorization `no_match = deny` with
# no other sources, so the claim is all the agent may do): the agent's row
# of the ACL table, evaluated first-match like EMQX.
#
# The historian: the api keeps its broker identity in Secret
# weir-historian-mqtt; the historian Deployment's env and volumes are
# resolved the same way, and the JWT in the mounted password file verifies
# with the historian's ACL row and the username its env names. JWTs live
# 40 s here (WEIR_MQTT_JWT_TTL_SECS), so the historian's is seen renewed
# before it expires.
set -euo pipefail
. e2e/k8s/lib.sh

T=incluster-creds
NS=weir-$T
GW=clearwell-sim
CL=mqtt
tmp="$WEIR_K8S_WORK/in-cluster-agent-credentials"
rm -rf "$tmp"
mkdir -p "$tmp"
fresh_tenant_namespace "$T"
wait_quota_counts_gateways
# The operator's defaults: the api at http://weir-api.weir-system.svc:8080.
start_sim_and_operator
# MQTT JWTs live 40 s here, so that the historian's is seen renewed.
TTL=40
WEIR_KUBE_SYNC_INTERVAL_SECS=1 WEIR_MQTT_JWT_TTL_SECS=$TTL start_api
agent="${CARGO_TARGET_DIR:-target}/debug/weir-agent"

create_tenant "$T"
tenant_quota_counts_gateways "$NS"
kubectl -n "$NS" create secret generic historian-db \
  --from-literal=url="postgres://historian@db.invalid:5432/readings" >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: weir.dev/v1alpha1
kind: MqttCluster
metadata:
  name: $CL
  namespace: $NS
spec:
  version: 5.8.6
  replicas: 1
  resources:
    requests: {cpu: 100m, memory: 128Mi}
    limits: {cpu: 500m, memory: 512Mi}
  storage: {size: 1Gi, reclaimPolicy: Delete}
  listeners:
    - {name: mqtt, protocol: tcp, port: 1883}
  authentication: {mode: apiJwt}
  historian: {databaseSecretRef: historian-db, retentionDays: 7}
---
apiVersion: weir.dev/v1alpha1
kind: EdgeGateway
metadata:
  name: $GW
  namespace: $NS
spec:
  site: {name: Clearwell (simulated)}
  mode: inCluster
  clusterRef: $CL
  devices:
    - name: clearwell-1
      adapter: simulator
      groups:
        - name: process
          intervalMs: 1000
          tags:
            - {name: level, address: sim, dataType: float64, unit: m,
               signal: {kind: sine, min: 2.0, max: 4.0, periodS: 600}}
EOF

# --- the agent Deployment as the operator rendered it ------------------------------
has_deploy() { kubectl -n "$NS" get deploy "$GW-agent" >/dev/null 2>&1; }
wait_for 60 has_deploy || fail "the operator rendered no Deployment $GW-agent: $(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status}')"
kubectl -n "$NS" get deploy "$GW-agent" -o json > "$tmp/agent-deploy.json"
args=$(jq -c '.spec.template.spec.containers[0].args' "$tmp/agent-deploy.json")
echo "rendered agent args: $args"
jq -e 'index("--server") and (index("--bundle") | not) and (index("--trust") | not)' <<<"$args" >/dev/null \
  || fail "the agent is not started to enroll with the api: $args"
jq -e 'index("--insecure-http")' <<<"$args" >/dev/null \
  || fail "the api URL is plain http:// but the agent is not started with --insecure-http: $args"
said=$(kubectl -n "$NS" get events --field-selector "involvedObject.name=$GW,reason=InsecureApiUrl" -o jsonpath='{.items[*].message}')
[ -n "$said" ] || fail "no InsecureApiUrl Event on edgegateway/$GW says the agent talks plain HTTP"
ready_msg=$(kubectl -n "$NS" get egw "$GW" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')
grep -q -- "--insecure-http" <<<"$ready_msg" || fail "the Ready condition does not say the agent talks plain HTTP: $ready_msg"
echo "plain HTTP to the api is said: $said"

secret_token() {
  kubectl -n "$NS" get secret "$GW-enrollment" -o jsonpath='{.data.token}' 2>/dev/null | base64 -d
}
has_token() { [[ "$(secret_token)" == weir_et_* ]]; }
wait_for 60 has_token || fail "the api wrote no enrollment token to Secret $GW-enrollment; api log: $(tail -n 5 "$API_LOG")"

# pod_env_and_mounts DEPLOY.json OUTDIR: materialize the container's volumes
# under OUTDIR/volumes/NAME, write its environment (resolved, mapped) to
# OUTDIR/env (NUL-separated NAME=VALUE) and its arguments to OUTDIR/args
# (NUL-separated), mapped as the header says.
pod_env_and_mounts() {
  local deploy=$1 out=$2 dead_port
  dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$out/volumes"
  # Secrets and ConfigMaps the pod names, as the API server has them.
  local kind name
  for kind in secret configmap; do
    for name in $(jq -r --arg k "$kind" '.spec.template.spec as $p
        | [($p.volumes // [])[] | if $k == "secret" then .secret.secretName else .configMap.name end]
          + [($p.containers[0].env // [])[] | .valueFrom | if $k == "secret" then .secretKeyRef.name else .configMapKeyRef.name end]
        | map(select(. != null)) | unique[]' "$deploy"); do
      kubectl -n "$NS" get "$kind" "$name" -o json > "$out/$kind-$name.json" 2>/dev/null || echo '{}' > "$out/$kind-$name.json"
    done
  done
  python3 - "$deploy" "$out" "$API_URL" "$dead_port" <<'PY'
import base64, json, os, re, sys
deploy, out, api_url, dead_port = sys.argv[1:]
pod = json.load(open(deploy))["spec"]["template"]["spec"]
c = pod["containers"][0]
api_host = re.sub(r"^https?://", "", api_url)

def obj(kind, name):
    path = os.path.join(out, f"{kind}-{name}.json")
    return json.load(open(path)) if os.path.exists(path) else {}

def data(kind, name):
    o = obj(kind, name)
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()}
    return {k: v.encode() for k, v in (o.get("data") or {}).items()}

# Volumes: each a directory.
vol_dir = {}
for v in pod.get("volumes", []):
    d = os.path.join(out, "volumes", v["name"])
    os.makedirs(d, exist_ok=True)
    vol_dir[v["name"]] = d
    src = None
    if "secret" in v:
        src = data("secret", v["secret"]["secretName"])
    elif "configMap" in v:
        src = data("configmap", v["configMap"]["name"])
    for k, b in (src or {}).items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(b)
mounts = {m["mountPath"].rstrip("/"): vol_dir[m["name"]] for m in c.get("volumeMounts", [])}

def mapped(value):
    # In-cluster DNS names: the api to the host api, other Services to a dead port.
    value = re.sub(r"(https?://)weir-api\.weir-system\.svc(:\d+)?", lambda m: m.group(1) + api_host, value)
    value = re.sub(r"(://)[a-z0-9.-]+\.svc(\.cluster\.local)?(:\d+)?", r"\g<1>127.0.0.1:" + dead_port, value)
    # Mount paths to the volumes' directories.
    for path, d in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == path or value.startswith(path + "/"):
            return d + value[len(path):]
    return value

env = {}
for e in c.get("env", []):
    if "value" in e:
        env[e["name"]] = mapped(e["value"])
        continue
    ref = e.get("valueFrom", {})
    for kind, key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
        if key in ref:
            r = ref[key]
            got = data(kind, r["name"]).get(r["key"])
            if got is None:
                if not r.get("optional"):
                    sys.exit(f"env {e['name']}: {kind} {r['name']} has no key {r['key']} (the kubelet would not start the pod)")
            else:
                env[e["name"]] = got.decode()
with open(os.path.join(out, "env"), "wb") as f:
    f.write(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
with open(os.path.join(out, "args"), "wb") as f:
    f.write(b"".join(mapped(a).encode() + b"\0" for a in c.get("args", [])))
with open(os.path.join(out, "mounts.json"), "w") as f:
    json.dump(mounts, f)
PY
}

pod_env_and_mounts "$tmp/agent-deploy.json" "$tmp/agent" || fail "the agent's pod spec cannot be resolved"
mapfile -d '' agent_args < "$tmp/agent/args"
mapfile -d '' agent_env < "$tmp/agent/env"
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "running on the host: weir-agent ${agent_args[*]} (env: $(printf '%s\n' "${agent_env[@]}" | sed 's/=.*//' | paste -sd, -))"
env -i PATH="$PATH" HOME="$tmp/agent" WEIR_LOG=info "${agent_env[@]}" WEIR_METRICS_LISTEN="127.0.0.1:$metrics_port" \
  "$agent" "${agent_args[@]}" > "$tmp/agent.log" 2>&1 &
AGENT_PID=$!
kill_on_exit "$AGENT_PID"
data_dir=$(jq -r '."/data"' "$tmp/agent/mounts.json")
enrolled() { [ -s "$data_dir/identity.json" ]; }
wait_for 60 enrolled || fail "the agent did not enroll: $(tail -n 5 "$tmp/agent.log")"
kill -0 "$AGENT_PID" 2>/dev/null || fail "weir-agent exited: $(tail -n 5 "$tmp/agent.log")"
jq -e --arg t "$T" --arg g "$GW" '.tenant == $t and .gateway == $g' "$data_dir/identity.json" >/dev/null \
  || fail "enrolled as the wrong gateway: $(jq -c '{tenant, gateway}' "$data_dir/identity.json")"
agent_id=$(jq -r .agentId "$data_dir/identity.json")
ran_bundle() { [ -s "$data_dir/bundle.json" ]; }
wait_for 30 ran_bundle || fail "the agent took no signed bundle from the api: $(tail -n 5 "$tmp/agent.log")"
echo "enrolled as agent $agent_id (identity on the agent's volume), running config version $(jq -r .highestVersion "$data_dir/config-state.json")"

# --- what the operator rendered into EMQX's config --------------------------------
conf=$(kubectl -n "$NS" get configmap "$CL-config" -o jsonpath='{.data.emqx\.conf}')
grep -q 'mechanism = jwt' <<<"$conf" || fail "emqx.conf authenticates with no JWT: $conf"
grep -q 'acl_claim_name = acl' <<<"$conf" || fail "emqx.conf takes no ACL claim"
# shellcheck disable=SC2016 # EMQX's placeholder, literally
grep -q 'verify_claims { username = "${username}" }' <<<"$conf" || fail "emqx.conf does not check the username claim"
python3 - "$conf" <<'PY' || fail "emqx.conf's authorization is not deny-by-default with the JWT's ACL alone"
import re, sys
conf = sys.argv[1]
m = re.search(r"authorization\s*=?\s*\{([^}]*)\}", conf)
assert m, "no authorization block"
body = m.group(1)
assert re.search(r"no_match\s*=\s*deny", body), body
assert re.search(r"sources\s*=\s*\[\s*\]", body), body
PY
jwks_url=$(sed -n 's/^ *endpoint = "\(.*\)"$/\1/p' <<<"$conf" | head -n1)
[ -n "$jwks_url" ] || fail "emqx.conf names no JWKS endpoint"
host_jwks=$(sed -E "s#^https?://weir-api\.weir-system\.svc(:[0-9]+)?#$API_URL#" <<<"$jwks_url")
echo "EMQX verifies JWTs against $jwks_url (here: $host_jwks)"

# verify_jwt JWT USERNAME ROLE: the JWT verifies against the JWKS (EdDSA,
# its kid), is for the MQTT audience and unexpired, names USERNAME, and its
# acl claim is ROLE's row (agent:GATEWAY or historian) of the ACL table.
verify_jwt() {
  curl -fsS "$host_jwks" > "$tmp/jwks.json" || fail "no JWKS at $host_jwks"
  python3 - "$1" "$2" "$3" "$tmp/jwks.json" "$T" "$tmp" "$TTL" <<'PY'
import base64, json, subprocess, sys, time
jwt, username, role, jwks_path, tenant, tmp, ttl = sys.argv[1:]
def b64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
head_b64, payload_b64, sig_b64 = jwt.split(".")
head, claims = json.loads(b64(head_b64)), json.loads(b64(payload_b64))
assert head["alg"] == "EdDSA", head
keys = [k for k in json.load(open(jwks_path))["keys"] if k.get("kid") == head["kid"]]
assert keys, f"kid {head['kid']} is not in the JWKS"
k = keys[0]
assert (k["kty"], k["crv"]) == ("OKP", "Ed25519"), k
# An Ed25519 SubjectPublicKeyInfo: the fixed DER prefix and the raw key.
der = bytes.fromhex("302a300506032b6570032100") + b64(k["x"])
pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
open(f"{tmp}/key.pem", "w").write(pem)
open(f"{tmp}/signed", "wb").write(f"{head_b64}.{payload_b64}".encode())
open(f"{tmp}/sig", "wb").write(b64(sig_b64))
r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", f"{tmp}/key.pem",
                    "-rawin", "-in", f"{tmp}/signed", "-sigfile", f"{tmp}/sig"],
                   capture_output=True, text=True)
assert r.returncode == 0, f"signature does not verify: {r.stdout}{r.stderr}"
# Another payload under the same signature must not verify (the check is real).
open(f"{tmp}/signed", "wb").write(f"{head_b64}.{payload_b64}x".encode())
r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", f"{tmp}/key.pem",
                    "-rawin", "-in", f"{tmp}/signed", "-sigfile", f"{tmp}/sig"], capture_output=True)
assert r.returncode != 0, "a tampered token verified"
now = time.time()
assert claims["aud"] == "weir-mqtt", claims["aud"]
assert claims["exp"] > now, f"expired at {claims['exp']} (now {now})"
assert claims["exp"] - claims["iat"] == int(ttl), f"lives {claims['exp'] - claims['iat']} s, not WEIR_MQTT_JWT_TTL_SECS={ttl}"
assert claims["username"] == username, f"username claim {claims['username']!r}, MQTT username {username!r}"
assert claims["tenant"] == tenant, claims["tenant"]
acl = claims["acl"]
# weir_crds::acl::rules, prefix weir.
base = f"weir/{tenant}"
if role.startswith("agent:"):
    gw = role.split(":", 1)[1]
    g = f"{base}/{gw}"
    want = [("allow", "publish", f"{g}/cmd/write/resp"), ("allow", "publish", f"{g}/cmd/replay/resp"),
            ("allow", "publish", f"{g}/cmd/uplink/state"), ("deny", "publish", f"{g}/cmd/#"),
            ("allow", "publish", f"{g}/+/+"), ("allow", "subscribe", f"{g}/cmd/+"), ("deny", "all", "#")]
    assert claims["gateway"] == gw, claims.get("gateway")
else:
    want = [("allow", "subscribe", f"{base}/+/+/+"), ("allow", "subscribe", f"{base}/+/cmd/replay/resp"),
            ("allow", "subscribe", f"{base}/+/cmd/uplink/state"), ("allow", "publish", f"{base}/+/cmd/replay"),
            ("deny", "all", "#")]
    assert not claims.get("gateway"), claims.get("gateway")
got = [(r["permission"], r["action"], r["topic"]) for r in acl]
assert got == want, f"acl claim {got}, want {want}"
# Evaluated as EMQX does with no_match = deny: first matching rule wins.
def covers(pattern, topic):
    p, t = pattern.split("/"), topic.split("/")
    for i, x in enumerate(p):
        if x == "#":
            return True
        if i >= len(t) or (x != "+" and x != t[i]) or (x == "+" and t[i] == "#"):
            return False
    return len(p) == len(t)
def allows(action, topic):
    for perm, act, pat in got:
        if act in (action, "all") and covers(pat, topic):
            return perm == "allow"
    return False
if role.startswith("agent:"):
    assert allows("publish", f"{g}/clearwell-1/process")
    assert allows("subscribe", f"{g}/cmd/write")
    assert not allows("publish", f"{base}/other-gw/clearwell-1/process")
    assert not allows("publish", f"{g}/cmd/write")
    assert allows("publish", f"{g}/cmd/replay/resp") and allows("publish", f"{g}/cmd/uplink/state")
    assert allows("subscribe", f"{g}/cmd/replay")
    assert not allows("subscribe", f"{base}/+/+/+")
else:
    assert allows("subscribe", f"{base}/+/+/+")
    assert allows("publish", f"{base}/{'x'}/cmd/replay")
    assert not allows("publish", f"{base}/x/d/g")
    assert not allows("subscribe", "weir/other-tenant/+/+/+")
print(f"{username}: verifies with key {head['kid']}, expires in {int(claims['exp'] - now)} s, acl {len(got)} rules")
PY
}

agent_user=$(jq -r .mqtt.username "$data_dir/identity.json")
agent_jwt=$(jq -r .mqtt.password "$data_dir/identity.json")
[[ -n "$agent_jwt" && "$agent_jwt" != null ]] \
  || fail "the api gave the agent no MQTT password (a gateway without a cluster?): $(jq -c '.mqtt | del(.password)' "$data_dir/identity.json")"
out=$(verify_jwt "$agent_jwt" "$agent_user" "agent:$GW") || fail "the agent's MQTT JWT does not hold: $out"
echo "agent: $out"

# --- a restarted pod keeps its identity (the volume), it does not enroll again -------
kill "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
pod_env_and_mounts "$tmp/agent-deploy.json" "$tmp/agent" || fail "the agent's pod spec cannot be resolved"
mapfile -d '' agent_env < "$tmp/agent/env"
env -i PATH="$PATH" HOME="$tmp/agent" WEIR_LOG=info "${agent_env[@]}" WEIR_METRICS_LISTEN="127.0.0.1:$metrics_port" \
  "$agent" "${agent_args[@]}" > "$tmp/agent-restarted.log" 2>&1 &
AGENT_PID=$!
kill_on_exit "$AGENT_PID"
sleep 3
kill -0 "$AGENT_PID" 2>/dev/null || fail "the restarted agent exited: $(tail -n 5 "$tmp/agent-restarted.log")"
! grep -q "enrolling" "$tmp/agent-restarted.log" || fail "the restarted agent enrolled again"
[ "$(jq -r .agentId "$data_dir/identity.json")" = "$agent_id" ] || fail "the restarted agent has another identity"
echo "restarted: same agent $agent_id, no new enrollment"

# --- the operator's part of the EdgeGateway's status ---------------------------------
# It applies only the fields it owns; the api's heartbeat fields are not its.
owned=$(kubectl -n "$NS" get egw "$GW" --show-managed-fields -o json | jq -c '[.metadata.managedFields[]
  | select(.manager == "weir-operator" and .subresource == "status")
  | .fieldsV1["f:status"] | keys[]] | unique')
jq -e 'length > 0 and all(.[]; IN("f:phase", "f:conditions", "f:configVersion", "f:configHash", "f:observedGeneration"))' <<<"$owned" >/dev/null \
  || fail "weir-operator owns other status fields than its own: $owned"
echo "weir-operator owns status fields $owned"

# --- the historian ----------------------------------------------------------------
has_hist() { kubectl -n "$NS" get deploy "$CL-historian" >/dev/null 2>&1; }
wait_for 60 has_hist || fail "the operator rendered no Deployment $CL-historian: $(kubectl -n "$NS" get mqttcluster "$CL" -o jsonpath='{.status.conditions}')"
has_identity() { kubectl -n "$NS" get secret weir-historian-mqtt >/dev/null 2>&1; }
wait_for 30 has_identity || fail "the api wrote no Secret weir-historian-mqtt; api log: $(tail -n 5 "$API_LOG")"
managers=$(kubectl -n "$NS" get secret weir-historian-mqtt --show-managed-fields -o jsonpath='{.metadata.managedFields[*].manager}')
[ "$managers" = "weir-api" ] || fail "Secret weir-historian-mqtt is written by '$managers', not by weir-api alone"
kubectl -n "$NS" get deploy "$CL-historian" -o json > "$tmp/historian-deploy.json"
pod_env_and_mounts "$tmp/historian-deploy.json" "$tmp/historian" || fail "the historian's pod spec cannot be resolved"
hist_env() { tr '\0' '\n' < "$tmp/historian/env" | sed -n "s/^$1=//p"; }
hist_user=$(hist_env WEIR_MQTT_USERNAME)
pw_file=$(hist_env WEIR_MQTT_PASSWORD_FILE)
[ -n "$hist_user" ] || fail "the historian's pod spec gives it no MQTT username"
[[ -n "$pw_file" && -s "$pw_file" ]] || fail "the historian's pod spec gives it no password file ('$pw_file')"
first=$(cat "$pw_file")
out=$(verify_jwt "$first" "$hist_user" historian) || fail "the historian's MQTT JWT does not hold: $out"
echo "historian: $out"

# --- renewed well before it expires ------------------------------------------------
exp_of() { python3 -c 'import base64, json, sys; p = sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["exp"])' "$1"; }
first_exp=$(exp_of "$first")
hist_jwt() { kubectl -n "$NS" get secret weir-historian-mqtt -o jsonpath='{.data.password}' | base64 -d; }
renewed() { [ "$(hist_jwt)" != "$first" ]; }
wait_for "$TTL" renewed || fail "the historian's JWT was not renewed within its lifetime of $TTL s"
now=$(date +%s)
[ "$now" -lt "$first_exp" ] || fail "the historian's JWT was renewed only after it expired"
out=$(verify_jwt "$(hist_jwt)" "$hist_user" historian) || fail "the renewed historian JWT does not hold: $out"
echo "historian JWT renewed $((first_exp - now)) s before the old one expired: $out"
