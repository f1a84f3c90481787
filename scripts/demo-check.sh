#!/usr/bin/env bash
# `make demo-check` (CI): `make run` and `make demo` as a user runs them, so neither can rot.
# Starts scripts/run-local.sh on ports of its own (so a suite already running on the defaults is
# left alone) with a throwaway audit file, waits until it answers, runs scripts/python/demo.py,
# which exits non-zero when a call does not answer as expected, then stops the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

export RELAY_PORT=51051 GATEWAY_PORT=51052 TWIIN_PORT=51053 OAUTH_PORT=51080
export RELAY_METRICS_PORT=51451 GATEWAY_METRICS_PORT=51452 TWIIN_METRICS_PORT=51453
export DMP_PORT=51443 ZORG_AB_PORT=51091 STELSEL_PORT=51092 AS_ZA_PORT=51093 DEMO_GTK_PORT=51094
tmp=$(mktemp -d)
export AUDIT_SQLITE_PATH="$tmp/audit.sqlite"
log="$tmp/run-local.log"

scripts/run-local.sh >"$log" 2>&1 &
suite=$!
stop() {
  kill -TERM "$suite" 2>/dev/null || true
  wait "$suite" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop EXIT

# The first run builds the binaries: allow for it.
for _ in $(seq 1 1800); do
  grep -q "The eHealth gateway suite is running" "$log" && break
  if ! kill -0 "$suite" 2>/dev/null; then
    echo "make run stopped before the suite was up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 1
done
grep -q "The eHealth gateway suite is running" "$log" || { cat "$log" >&2; echo "make run: not up in time" >&2; exit 1; }

if ! .local/venv/bin/python3 scripts/python/demo.py --wait 60; then
  echo "make demo failed; the suite's logs (.local/logs/):" >&2
  tail -n 20 .local/logs/*.log >&2
  exit 1
fi
