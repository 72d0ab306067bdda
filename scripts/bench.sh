#!/usr/bin/env bash
# Runs every benchmark (release builds) and writes BENCHMARKS.md with the
# figures, the machine and how to reproduce each one.
# Needs PostgreSQL on 127.0.0.1:5432 and the mosquitto binary.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
need cargo "install Rust with rustup (https://rustup.rs)"
need mosquitto "sudo apt-get install mosquitto"
pg_up || die "PostgreSQL is not reachable on 127.0.0.1:5432 (the historian and api benchmarks need it)"

OUT=BENCHMARKS.md
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d)
benches=()
for crate in agent historian api operator e2e; do
  for f in "$crate"/benches/*.rs; do
    [ -e "$f" ] || continue
    benches+=("$crate:$(basename "$f" .rs)")
  done
done

failed=()
for b in "${benches[@]}"; do
  crate=${b%%:*}; name=${b#*:}
  step "bench weir-$crate $name"
  # The e2e benches start the workspace's binaries (release builds).
  if [ "$crate" = e2e ] && [ -z "${built_bins:-}" ]; then
    cargo build -q --release -p weir-agent -p weir-api -p weir-historian > "$TMP/$name.txt" 2>&1 \
      || { echo "(building the binaries it starts failed)" >> "$TMP/$name.txt"; }
    built_bins=1
  fi
  started=$SECONDS
  if ! cargo bench -q -p "weir-$crate" --bench "$name" >> "$TMP/$name.txt" 2>&1; then
    echo "(benchmark FAILED; see output above)" >> "$TMP/$name.txt"
    failed+=("weir-$crate $name")
  fi
  echo "(ran in $((SECONDS - started)) s)" >> "$TMP/$name.txt"
  tail -n 40 "$TMP/$name.txt"
done

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d). Goals are from DESIGN.md."
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB memory, $(. /etc/os-release; echo "$PRETTY_NAME"), $(rustc --version). Load average before the run: $LOAD_BEFORE."
  echo
  echo "## Each figure beside its goal"
  echo
  echo "| measure (DESIGN.md) | goal | measured (the benchmark's own line) |"
  echo "|---|---|---|"
  # measure | goal | bench | pattern of the line(s) that carry the figure
  while IFS='|' read -r measure goal bench pattern; do
    fig=$(grep -h -- "$pattern" "$TMP/$bench.txt" 2>/dev/null | sed -E 's/^ +//; s/ {2,}/ /g; s/\|/\\|/g' | paste -sd '~' | sed 's/~/<br>/g')
    echo "| $measure | $goal | ${fig:-(not measured: see $bench below)} |"
  done <<'ROWS'
pipeline readings/s per core, in process (library; no adapter, no broker)|≥ 2,000,000|pipeline|readings/s/core
end to end, device read → row committed at 100,000 readings/s: release weir-agent (simulated devices, defaults) → Mosquitto → release weir-historian (defaults) → PostgreSQL; exact per-frame samples|p99 ≤ 50 ms|e2e_latency|e2e simulator read -> commit
the same with 4 Modbus TCP servers (in-repo tokio-modbus) instead of the simulator|p99 ≤ 50 ms|e2e_latency|e2e modbus read -> commit
agent → Mosquitto → a QoS 1 subscriber, default uplink config (library runtime, samples fed in, no adapter)|≥ 500,000 readings/s|uplink|subscriber, default config
the same, tuned config|(beside the default)|uplink|subscriber, tuned config
the same, tuned, nothing subscribed (Mosquitto discards)|(no goal)|uplink|NO subscriber
store-and-forward replay from the disk queue, nothing subscribed|≥ 500,000 readings/s|uplink|replay after outage
historian rows/s ÷ raw binary COPY of the same rows into the same table, same run|≥ 0.9|historian_vs_copy|x raw COPY (goal
historian dedupe path: the same messages redelivered|(timed)|historian_vs_copy|dedupe (the same
historian sink draining a 3,000,000-reading backlog (library, in process)|(was ≥ 300,000 rows/s)|historian_throughput|throughput:
historian alone: the bench's own publisher (not weir-agent) → Mosquitto → in-process sink → PostgreSQL, 100k readings/s|(part of the end-to-end goal)|historian_throughput|latency at 100000
replay into PostgreSQL after a 60 s broker outage, historian restarted too (release binaries, defaults, 50,000 readings/s live)|≥ 300,000 readings/s|replay_outage|replay into PostgreSQL
weir-agent process memory (release binary, enrolled, defaults, 1,000 tags: the per-gateway maximum)|peak ≤ 30 MB|agent_memory|peak RSS (VmHWM)\|steady RSS
agent library memory microbench (the bench process, 10,000 tags, no subscriber)|(see the row above)|memory|library microbench
write-back: MQTT command → Modbus register written → answer (release weir-agent, defaults)|p99 ≤ 50 ms|write_back|write-back p99 over all runs
Modbus RTU requests/s: the agent's RTU bus on a socat pty pair and RTU over TCP, pymodbus answering (a pty ignores the baud rate: this is the agent's pacing and pymodbus's answer time; the real line's capacity is computed beside it)|(no goal)|rtu|^rtu 
OPC UA subscription readings/s into the pipeline: 1,000 changing Double nodes on a Python asyncua server (the server is the bottleneck when its cores near 1.0)|(no goal)|opcua|readings/s into the pipeline\|node updates/s made
api over an 8-endpoint read mix at a fixed 500 req/s (release weir-api, oha)|p99 ≤ 10 ms|api_mix|fixed 500 req/s
api over the mix at saturation (wrk, 4 and 32 connections)|≥ 5,000 req/s on PostgreSQL|api_mix|saturation over the 8-endpoint mix
api, one endpoint in process (microbench)|(see api_mix)|api_load|GET /api
Weir vs Node-RED 4.1 on the same flows, same run: readings/s per core and peak memory|≥ 20×, ≤ ¼ memory|node_red|Weir/Node-RED readings/s per core
operator reconcile loop in memory, 500 MqttClusters (kube's mock service as API server, no watches; the real-server figure is e2e/k8s/bench-500.sh, see README)|no hot loop|reconcile_500|to ready:\|steady state
alerts: readings/s through 1,000 rules on one core (250 tags × 4 rules; rules are indexed by tag, so each reading meets 4)|≥ 1,000,000|alerts_eval|one core
alerts: p99 reading → notification (issue 7)|≤ 1 s|alerts_eval|webhook delay
ROWS
  echo
  echo
  for b in "${benches[@]}"; do
    crate=${b%%:*}; name=${b#*:}
    echo "## weir-$crate: $name"
    echo
    echo "Reproduce: \`cargo bench -p weir-$crate --bench $name\`"
    echo
    echo '```'
    # The whole raw output (cargo's own build lines aside), so every figure
    # in the table above can be checked against what printed it.
    grep -v '^\s*Compiling\|^\s*Finished\|^\s*Running' "$TMP/$name.txt"
    echo '```'
    echo
  done
} > "$OUT"
rm -rf "$TMP"
ok "wrote $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  die "benchmarks failed: ${failed[*]} (their output is in $OUT)"
fi
