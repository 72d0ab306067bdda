#!/usr/bin/env bash
# weir-agent against an independent Modbus TCP server (pymodbus): every data
# type and byte order through the whole agent, checked on a real broker.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
# pymodbus 3.x prints deprecation notices for its v4 API on every start.
one_suite modbus bash -c 'bash e2e/modbus/run.sh 2>&1 | grep -v -i "deprecated\|SimData\|upgrade_40"; exit "${PIPESTATUS[0]}"'
