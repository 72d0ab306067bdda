#!/usr/bin/env bash
# weir-agent against an independent Modbus TCP server (pymodbus): every data
# type and byte order through the whole agent, checked on a real broker.
# Ends with one line: "modbus: N passed, M failed" (one suite).
set -uo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp)
bash e2e/modbus/run.sh > "$log" 2>&1
rc=$?
grep -v -i 'deprecated\|SimData\|upgrade_40' "$log" | tail -n 40
rm -f "$log"
if [ "$rc" -eq 0 ]; then echo "modbus: 1 passed, 0 failed"; else echo "modbus: 0 passed, 1 failed"; fi
exit "$rc"
