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
