#!/usr/bin/env bash
# The local demo: weir-api on SQLite with the console, a Mosquitto broker
# adopted as the projects' MQTT cluster, four agents with simulated
# water-plant devices enrolled through real tokens, the historian when
# PostgreSQL is reachable, and alert rules that fire now and then.
# Ctrl-C stops everything; a second run reuses the data in .weir/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
export PATH="$PATH:/usr/sbin"

PORT="${WEIR_DEMO_PORT:-8080}"
MQTT_PORT="${WEIR_DEMO_MQTT_PORT:-18830}"
STATE="$PWD/.weir"
BASE="http://127.0.0.1:$PORT"
ADMIN_EMAIL="admin@riverside-water.example"

need cargo "install Rust: https://rustup.rs"
need python3 "sudo apt-get install python3"
# Debian packages and PostgreSQL (for the historian); a no-op when done.
bash scripts/setup.sh || die "set-up failed (scripts/setup.sh; it needs root or sudo)"
need mosquitto "sudo apt-get install mosquitto"
need npm "sudo apt-get install nodejs npm"
mkdir -p "$STATE/agents"

step "building weir-api, weir-agent and weir-historian (first time: several minutes)"
cargo build -p weir-api -p weir-agent -p weir-historian --bins
BIN="$CARGO_TARGET_DIR/debug"

if [ ! -f web/dist/index.html ] || [ -n "$(find web/src -newer web/dist/index.html -print -quit 2>/dev/null)" ]; then
  step "building the console (web/)"
  (cd web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build)
fi

pids=()
cleanup() {
  step "stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ok "stopped; data kept in .weir/ (rm -rf .weir to start over)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

step "starting Mosquitto on 127.0.0.1:$MQTT_PORT (dynamic security: a login per gateway)"
DYNSEC_PLUGIN=""
for p in $(dpkg -L mosquitto 2>/dev/null | grep '/mosquitto_dynamic_security.so$' || true) \
    /usr/lib/*/mosquitto_dynamic_security.so /usr/lib/mosquitto/mosquitto_dynamic_security.so \
    /usr/local/lib/mosquitto_dynamic_security.so; do
  [ -f "$p" ] && { DYNSEC_PLUGIN=$p; break; }
done
[ -n "$DYNSEC_PLUGIN" ] || die "mosquitto_dynamic_security.so is missing: sudo apt-get install mosquitto (2.0 or newer)"
need mosquitto_ctrl "sudo apt-get install mosquitto (2.0 or newer)"
# The broker's dynamic-security admin, made once; its password lives only in
# a 0600 file. Weir logs in with it to give each gateway its own client.
MQTT_ADMIN=weir-admin
if [ ! -f "$STATE/dynamic-security.json" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$STATE/mqtt-admin-password")
  mosquitto_ctrl dynsec init "$STATE/dynamic-security.json" "$MQTT_ADMIN" "$(cat "$STATE/mqtt-admin-password")" >/dev/null
  chmod 600 "$STATE/dynamic-security.json"
fi
[ -f "$STATE/mqtt-historian-password" ] \
  || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$STATE/mqtt-historian-password")
cat > "$STATE/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous false
set_tcp_nodelay true
plugin $DYNSEC_PLUGIN
plugin_opt_config_file $STATE/dynamic-security.json
persistence true
persistence_location $STATE/
max_queued_messages 1000000
CONF
# As root, mosquitto drops to its own user and cannot write .weir/.
[ "$(id -u)" = 0 ] && echo "user root" >> "$STATE/mosquitto.conf"
mosquitto -c "$STATE/mosquitto.conf" > "$STATE/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do port_open "$MQTT_PORT" && break; sleep 0.25; done
port_open "$MQTT_PORT" || die "Mosquitto did not start; see .weir/mosquitto.log"

# mosquitto_ctrl as the admin (the password from its file, never printed;
# its output, warnings included, goes to .weir/mosquitto_ctrl.log).
dynsec() {
  mosquitto_ctrl -h 127.0.0.1 -p "$MQTT_PORT" -u "$MQTT_ADMIN" -P "$(cat "$STATE/mqtt-admin-password")" \
    dynsec "$@" >> "$STATE/mosquitto_ctrl.log" 2>&1 \
    || die "mosquitto_ctrl dynsec $1 failed; see .weir/mosquitto_ctrl.log"
}
# The historian's own client: it reads the tenant's readings and asks for
# replays, nothing else (its row of the ACL table, weir_crds::acl).
HIST=weir-historian
T="weir/riverside-water"
(dynsec deleteClient "$HIST") 2>/dev/null || true
(dynsec deleteRole "$HIST") 2>/dev/null || true
dynsec createRole "$HIST"
dynsec addRoleACL "$HIST" subscribePattern "$T/+/+/+" allow 2
dynsec addRoleACL "$HIST" subscribePattern "\$share/+/$T/+/+/+" allow 2
dynsec addRoleACL "$HIST" publishClientReceive "$T/+/+/+" allow 2
for c in cmd/replay/resp cmd/uplink/state; do
  dynsec addRoleACL "$HIST" subscribePattern "$T/+/$c" allow 2
  dynsec addRoleACL "$HIST" subscribePattern "\$share/+/$T/+/$c" allow 2
  dynsec addRoleACL "$HIST" publishClientReceive "$T/+/$c" allow 2
done
dynsec addRoleACL "$HIST" publishClientSend "$T/+/cmd/replay" allow 2
dynsec addRoleACL "$HIST" publishClientReceive "#" deny 0
dynsec createClient "$HIST" -p "$(cat "$STATE/mqtt-historian-password")"
dynsec addClientRole "$HIST" "$HIST"

if [ ! -f "$STATE/admin-password" ]; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(12))' > "$STATE/admin-password"
  chmod 600 "$STATE/admin-password"
fi
ADMIN_PASSWORD=$(cat "$STATE/admin-password")

HISTORIAN_URL=""
if pg_up && psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='weir_demo'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database weir_demo"
  HISTORIAN_URL="postgres://postgres@127.0.0.1:5432/weir_demo"
else
  echo "    PostgreSQL is not reachable on 127.0.0.1:5432: running without the historian (charts stay empty)"
fi

step "starting weir-api on $BASE"
WEIR_LISTEN="127.0.0.1:$PORT" \
WEIR_DATABASE_URL="sqlite://$STATE/weir.db?mode=rwc" \
WEIR_PUBLIC_URL="$BASE" \
WEIR_WEB_DIR="$PWD/web/dist" \
WEIR_BOOTSTRAP_ADMIN_EMAIL="$ADMIN_EMAIL" \
WEIR_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
WEIR_HISTORIAN_URL="$HISTORIAN_URL" \
WEIR_KUBE_TENANTS=off \
WEIR_OUTBOUND_ALLOW_CIDRS=127.0.0.0/8 \
  "$BIN/weir-api" > "$STATE/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "$BASE/healthz" >/dev/null || die "weir-api did not start; see .weir/api.log"

step "seeding Riverside Water through the API"
WEIR_DEMO_MQTT_ADMIN_USER="$MQTT_ADMIN" WEIR_DEMO_MQTT_ADMIN_PASSWORD="$(cat "$STATE/mqtt-admin-password")" \
  python3 scripts/demo_seed.py "$BASE" "$ADMIN_EMAIL" "$ADMIN_PASSWORD" "mqtt://127.0.0.1:$MQTT_PORT" > "$STATE/new-tokens"
while read -r gw token; do
  [ -n "$gw" ] && echo "$token" > "$STATE/agents/$gw.token"
done < "$STATE/new-tokens"
rm -f "$STATE/new-tokens"

step "starting agents"
mport=9110
for tokfile in "$STATE"/agents/*.token; do
  [ -e "$tokfile" ] || continue
  gw=$(basename "$tokfile" .token)
  args=(run --server "$BASE" --data-dir "$STATE/agents/$gw" --metrics-listen "127.0.0.1:$mport")
  # The token is needed only until the agent has enrolled.
  [ -f "$STATE/agents/$gw/identity.json" ] || args+=(--token "$(cat "$tokfile")")
  "$BIN/weir-agent" "${args[@]}" > "$STATE/agents/$gw.log" 2>&1 &
  pids+=($!)
  echo "    $gw (metrics on 127.0.0.1:$mport, log .weir/agents/$gw.log)"
  mport=$((mport + 1))
done

if [ -n "$HISTORIAN_URL" ]; then
  step "starting the historian (readings → PostgreSQL weir_demo)"
  WEIR_MQTT_USERNAME="$HIST" WEIR_MQTT_PASSWORD="$(cat "$STATE/mqtt-historian-password")" \
  "$BIN/weir-historian" --mqtt-url "mqtt://127.0.0.1:$MQTT_PORT" --tenant riverside-water \
    --database-url "$HISTORIAN_URL" --metrics-listen 127.0.0.1:9103 > "$STATE/historian.log" 2>&1 &
  pids+=($!)
fi

echo
ok "Weir is running: open $BASE"
echo "    sign in as $ADMIN_EMAIL with password $ADMIN_PASSWORD"
echo "    logs in .weir/; press Ctrl-C to stop"
wait
