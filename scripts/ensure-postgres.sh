#!/usr/bin/env bash
# Prints on stdout the DATABASE_URL of a PostgreSQL server the tests can use (they create their
# own databases there), and never prompts or changes a role's password:
#   1. DATABASE_URL, when exported and a server answers there without a prompt;
#   2. else 127.0.0.1:5432 when it lets `postgres` in without a password (trust, as on this
#      project's machines);
#   3. else a throwaway cluster owned by this test run: initdb in a temporary folder, trust access
#      on 127.0.0.1 only, a free port. PostgreSQL is installed from Debian's packages if missing.
#      The cluster is reused by later calls until `--stop` stops it and deletes its folder.
# In cases 2 and 3 the database $EHEALTH_TEST_DB (default ehealth_test) is created if missing.
# EHEALTH_PG_THROWAWAY=1 skips 1 and 2 (to test case 3 on a machine that has a server).
#
#   DATABASE_URL="$(scripts/ensure-postgres.sh)"
#   scripts/ensure-postgres.sh --stop          # the throwaway cluster of this checkout, if any
#   scripts/ensure-postgres.sh --run CMD...    # CMD with DATABASE_URL set; stops the throwaway
#                                              # cluster afterwards if this call started it
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

DB="${EHEALTH_TEST_DB:-ehealth_test}"
# Where the throwaway cluster of this checkout is recorded (its folder and port).
STATE=.local/postgres-throwaway
# A server that does not answer fails fast instead of hanging the test run.
export PGCONNECT_TIMEOUT=5

# The URL without its password, for messages.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Runs a PostgreSQL server tool as the cluster's owner: initdb refuses to run as root, so root
# hands the cluster to the `postgres` system user (created by Debian's package).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# `psql` without a password prompt (-w) and without the caller's ~/.psqlrc (-X).
psql_w() { psql -w -X -q -v ON_ERROR_STOP=1 "$@"; }

create_test_db() {
  local port=$1
  if [ "$(psql_w -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
    psql_w -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
  fi
}

read_state() {
  dir="" port=""
  [ -f "$STATE" ] || return 1
  while IFS='=' read -r k v; do
    case "$k" in dir) dir=$v ;; port) port=$v ;; esac
  done <"$STATE"
  [ -n "$dir" ] && [ -n "$port" ]
}

stop_throwaway() {
  local dir port bin
  if ! read_state; then return 0; fi
  if bin=$(postgres_bin_dir) && [ -d "$dir/data" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" "$STATE"
  echo "stopped the throwaway PostgreSQL on 127.0.0.1:$port" >&2
}

# A TCP port nothing listens on, below Linux's ephemeral range so that no outgoing connection
# takes it meanwhile.
free_port() {
  local p
  for p in $(shuf -i 20000-29999 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free TCP port found for PostgreSQL" >&2
  return 1
}

start_throwaway() {
  local dir port bin
  bin=$(postgres_bin_dir) || { apt_install postgresql; bin=$(postgres_bin_dir); }
  if read_state; then
    if [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      echo "PostgreSQL: the throwaway cluster on 127.0.0.1:$port (already running)" >&2
      echo "postgres://postgres@127.0.0.1:$port/$DB"
      return 0
    fi
    rm -rf "$dir" "$STATE"
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ehealth-pg.XXXXXX")
  port=$(free_port)
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  mkdir -p "$(dirname "$STATE")"
  printf 'dir=%s\nport=%s\n' "$dir" "$port" >"$STATE"
  echo "PostgreSQL: starting a throwaway cluster in $dir on 127.0.0.1:$port" >&2
  # --no-sync: the cluster dies with the test run, no need to flush initdb's files.
  if ! as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    stop_throwaway
    return 1
  fi
  # The socket goes into the cluster's own folder: /var/run/postgresql may not exist or belong
  # to the system's server.
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null; then
    cat "$dir/server.log" >&2
    stop_throwaway
    return 1
  fi
  create_test_db "$port"
  echo "postgres://postgres@127.0.0.1:$port/$DB"
}

database_url() {
  command -v psql >/dev/null 2>&1 || apt_install postgresql
  if [ "${EHEALTH_PG_THROWAWAY:-}" != 1 ]; then
    if [ -n "${DATABASE_URL:-}" ]; then
      if psql_w "$DATABASE_URL" -tAc "SELECT 1" >/dev/null 2>&1; then
        echo "PostgreSQL: DATABASE_URL $(redact "$DATABASE_URL")" >&2
        echo "$DATABASE_URL"
        return 0
      fi
      echo "PostgreSQL: DATABASE_URL ($(redact "$DATABASE_URL")) does not answer without a prompt; looking further" >&2
    fi
    if [ "$(psql_w -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc \
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null)" = "t" ]; then
      create_test_db 5432
      echo "PostgreSQL: the server on 127.0.0.1:5432 (trust access for postgres)" >&2
      echo "postgres://postgres@127.0.0.1:5432/$DB"
      return 0
    fi
  fi
  start_throwaway
}

case "${1:-}" in
  --stop)
    stop_throwaway
    ;;
  --run)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 --run COMMAND [ARGS...]" >&2; exit 2; }
    had_throwaway=0
    if read_state && [ -f "$dir/data/postmaster.pid" ]; then had_throwaway=1; fi
    url=$(database_url)
    if [ "$had_throwaway" = 0 ]; then trap stop_throwaway EXIT; fi
    DATABASE_URL="$url" "$@"
    ;;
  "")
    database_url
    ;;
  *)
    echo "usage: $0 [--stop | --run COMMAND [ARGS...]]" >&2
    exit 2
    ;;
esac
