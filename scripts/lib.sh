# Shared helpers for the scripts: progress lines and prerequisite checks.
# shellcheck shell=bash

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
ok() { printf '\033[1;32m ok\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# need CMD "how to install it"
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# one_suite NAME CMD...: run a suite that is one test as far as the repo's
# total goes; show the tail of its output with its own "N passed/failed"
# counts reworded (so scripts/test.sh counts it once), then the line
# "NAME: 1 passed, 0 failed" or "NAME: 0 passed, 1 failed". Returns its status.
one_suite() {
  local name=$1; shift
  local log rc
  log=$(mktemp)
  "$@" > "$log" 2>&1
  rc=$?
  tail -n 40 "$log" | sed -E 's/([0-9]+) passed/\1 ok/g; s/([0-9]+) failed/\1 not ok/g'
  rm -f "$log"
  if [ "$rc" -eq 0 ]; then echo "$name: 1 passed, 0 failed"; else echo "$name: 0 passed, 1 failed"; fi
  return "$rc"
}
