#!/usr/bin/env bash
# weir-agent against an independent Modbus TCP server (pymodbus): every data
# type and byte order, through the whole agent (Modbus → pipeline → disk
# queue → MQTT), checked on the broker.
#
#   e2e/modbus/run.sh            (builds weir-agent in debug unless WEIR_AGENT is set)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python3 -c 'import pymodbus' 2>/dev/null || python3 -m pip install --quiet 'pymodbus>=3.9,<4'
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "FAIL: mosquitto is not installed"; exit 1; }
command -v mosquitto_sub >/dev/null || { echo "FAIL: mosquitto_sub is not installed (mosquitto-clients)"; exit 1; }
if [ -z "${WEIR_AGENT:-}" ]; then
  (cd "$root" && cargo build -q -p weir-agent --bin weir-agent)
  WEIR_AGENT="${CARGO_TARGET_DIR:-$root/target}/debug/weir-agent"
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(free_port); qport=$(free_port)

python3 "$here/server.py" "$mport" "$work" & pids+=($!)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$qport" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/config.json" ] && break; sleep 0.1; done
[ -f "$work/config.json" ] || { echo "FAIL: pymodbus server did not start"; exit 1; }

"$WEIR_AGENT" validate "$work/config.json"
"$WEIR_AGENT" keygen --out "$work/key" > /dev/null 2>&1
"$WEIR_AGENT" sign --key "$work/key" --tenant e2e --gateway modbus --version 1 "$work/config.json" > "$work/bundle.json"

mosquitto_sub -p "$qport" -t 'weir/e2e/modbus/pymodbus/all' -C 1 -W 30 > "$work/msg.json" & sub=$!
sleep 0.3
"$WEIR_AGENT" run --bundle "$work/bundle.json" --trust "$work/key.pub.json" --mqtt-url "mqtt://127.0.0.1:$qport" \
  --data-dir "$work/data" --metrics-listen 127.0.0.1:0 > "$work/agent.log" 2>&1 & pids+=($!)
if ! wait "$sub"; then
  echo "FAIL: no readings on the broker within 30 s"; cat "$work/agent.log"; exit 1
fi
python3 "$here/check.py" "$work/expected.json" < "$work/msg.json"
