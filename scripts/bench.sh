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
TMP=$(mktemp -d)
benches=()
for crate in agent api operator; do
  for f in "$crate"/benches/*.rs; do
    [ -e "$f" ] || continue
    benches+=("$crate:$(basename "$f" .rs)")
  done
done

for b in "${benches[@]}"; do
  crate=${b%%:*}; name=${b#*:}
  step "bench weir-$crate $name"
  if ! cargo bench -q -p "weir-$crate" --bench "$name" > "$TMP/$name.txt" 2>&1; then
    echo "(benchmark failed; see output)" >> "$TMP/$name.txt"
  fi
  tail -n 40 "$TMP/$name.txt"
done

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d). Goals are from DESIGN.md."
  echo
  echo "## Summary: each figure beside its goal"
  echo
  echo "Lines that name a goal, as the benchmarks printed them; the full output of each follows."
  echo
  echo '```'
  for b in "${benches[@]}"; do
    name=${b#*:}
    grep -i 'goal' "$TMP/$name.txt" | grep -v '^\s*Compiling' | sed "s/^/[$name] /"
  done
  echo '```'
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB memory, $(. /etc/os-release; echo "$PRETTY_NAME"), $(rustc --version)."
  echo
  for b in "${benches[@]}"; do
    crate=${b%%:*}; name=${b#*:}
    echo "## weir-$crate: $name"
    echo
    echo "Reproduce: \`cargo bench -p weir-$crate --bench $name\`"
    echo
    echo '```'
    grep -v '^\s*Compiling\|^\s*Finished\|^\s*Running' "$TMP/$name.txt" | tail -n 60
    echo '```'
    echo
  done
} > "$OUT"
rm -rf "$TMP"
ok "wrote $OUT"
