#!/usr/bin/env bash
# Set-up of a fresh Debian machine for the demo and the tests (run as root,
# or with sudo): the Debian packages, PostgreSQL started and reachable as
# postgres@127.0.0.1 without a password (trust on loopback only), and the
# database `test` the test suites create their own databases from.
# Idempotent: a second run changes nothing. .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

step "system packages"
missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v pg_isready >/dev/null || missing+=(postgresql-client)
command -v chromium >/dev/null || missing+=(chromium)
command -v make >/dev/null || missing+=(make)
command -v node >/dev/null || missing+=(nodejs npm)
command -v openssl >/dev/null || missing+=(openssl)
command -v socat >/dev/null || missing+=(socat)
command -v jq >/dev/null || missing+=(jq) # the k8s scenarios read JSON with it
if [ ${#missing[@]} -gt 0 ]; then
  echo "    installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

step "PostgreSQL on 127.0.0.1:5432"
version=$(ls /etc/postgresql | sort -V | tail -1)
[ -n "$version" ] || die "no PostgreSQL cluster in /etc/postgresql"
hba="/etc/postgresql/$version/main/pg_hba.conf"
# The tests connect as postgres@127.0.0.1 with no password. Trust only the
# loopback addresses, and only for the postgres user; put the lines first so
# they win over Debian's scram-sha-256 defaults.
if ! $SUDO grep -q '^# weir: loopback trust' "$hba"; then
  tmp=$(mktemp)
  {
    echo "# weir: loopback trust for the test user (scripts/setup.sh)"
    echo "host    all    postgres    127.0.0.1/32    trust"
    echo "host    all    postgres    ::1/128         trust"
    $SUDO cat "$hba"
  } > "$tmp"
  $SUDO cp "$tmp" "$hba"
  rm -f "$tmp"
  reload=1
fi
if ! pg_up; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
elif [ -n "${reload:-}" ]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
pg_up || die "PostgreSQL did not start (see /var/log/postgresql/postgresql-$version-main.log)"
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null \
  || die "postgres@127.0.0.1 cannot sign in without a password (check $hba)"
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database test"
ok "PostgreSQL $version ready; database test exists"
