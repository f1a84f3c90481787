#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with the test database, starting the
# local cluster if it is down, and prints the DATABASE_URL to use. Honours DATABASE_URL when set.
set -euo pipefail

DB="${EHEALTH_TEST_DB:-ehealth_test}"
if [ -n "${DATABASE_URL:-}" ]; then echo "$DATABASE_URL"; exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2
    exit 1
  fi
  echo "starting PostgreSQL $version" >&2
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

psql_postgres() {
  # Trust auth on the machines of this project; on a stock Debian install, peer auth as postgres.
  if psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc "$1"
  else
    $SUDO -u postgres psql -d postgres -v ON_ERROR_STOP=1 -tAc "$1"
  fi
}

url="postgres://postgres@127.0.0.1:5432/$DB"
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
  # Password auth on TCP: give the postgres role a local-only test password.
  psql_postgres "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  url="postgres://postgres:postgres@127.0.0.1:5432/$DB"
fi
if [ "$(psql_postgres "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  psql_postgres "CREATE DATABASE $DB" >/dev/null
fi
echo "$url"
