#!/usr/bin/env bash
# `make run`: builds and starts the whole suite on embedded defaults (no PostgreSQL needed) with the
# simulators and the demo external GtK (scripts/python/demo_gtk.py, serving its JWKS where the
# ZORG-AB data says), prints which audit store is used and every endpoint, and stops everything on
# Ctrl-C. Makes sure .local/venv holds grpcurl (the README's recipes) and the Python packages of
# the demo GtK and `make demo` (scripts/python/demo.py).
#
# Variables (`make run NAME=VALUE`), defaults in brackets:
#   PROFILE               debug or release [debug]
#   AUDIT_DATABASE_URL    PostgreSQL URL of the audit log of all three services [unset: SQLite]
#   AUDIT_SQLITE_PATH     SQLite file of the audit log when no URL is given [.local/audit.sqlite]
#   RELAY_PORT GATEWAY_PORT TWIIN_PORT            gRPC [50051 50052 50053]
#   OAUTH_PORT                                    twiin-authz's OAuth2 HTTP endpoint [8080]
#   RELAY_METRICS_PORT GATEWAY_METRICS_PORT TWIIN_METRICS_PORT   Prometheus [9451 9452 9453]
#   DMP_PORT ZORG_AB_PORT STELSEL_PORT AS_ZA_PORT            simulators [8443 8091 8092 8093]
#   DEMO_GTK_PORT         the demo external GtK's JWKS [8094]
# These names must not start with a service's environment prefix (CPS_RELAY_, DMP_GATEWAY_,
# TWIIN_AUTHZ_, DMP_SIM_): make exports them to every process, which would take them for
# configuration keys.
# An exported DATABASE_URL is ignored here: the services would silently take it for their audit
# log, so the store is chosen by AUDIT_DATABASE_URL alone and printed.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
RELAY_PORT="${RELAY_PORT:-50051}"
GATEWAY_PORT="${GATEWAY_PORT:-50052}"
TWIIN_PORT="${TWIIN_PORT:-50053}"
OAUTH_PORT="${OAUTH_PORT:-8080}"
RELAY_METRICS_PORT="${RELAY_METRICS_PORT:-9451}"
GATEWAY_METRICS_PORT="${GATEWAY_METRICS_PORT:-9452}"
TWIIN_METRICS_PORT="${TWIIN_METRICS_PORT:-9453}"
DMP_PORT="${DMP_PORT:-8443}"
ZORG_AB_PORT="${ZORG_AB_PORT:-8091}"
STELSEL_PORT="${STELSEL_PORT:-8092}"
AS_ZA_PORT="${AS_ZA_PORT:-8093}"
DEMO_GTK_PORT="${DEMO_GTK_PORT:-8094}"
AUDIT_SQLITE_PATH="${AUDIT_SQLITE_PATH:-.local/audit.sqlite}"

# grpcurl, PyJWT and cryptography (test-peers), grpcio (grpc-python): a no-op once installed.
scripts/python-venv.sh scripts/requirements/test-peers.txt scripts/requirements/grpc-python.txt

flag=""
[ "$PROFILE" = "release" ] && flag="--release"
cargo build $flag --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/$PROFILE"

"$bin/dev-pki" .dev-pki
"$bin/aorta-dev-pki" .dev-pki/aorta
mkdir -p .local/logs

if [ -n "${DATABASE_URL:-}" ]; then
  echo "note: DATABASE_URL is set in your environment and ignored; use make run AUDIT_DATABASE_URL=... for PostgreSQL"
  unset DATABASE_URL
fi
for prefix in CPS_RELAY DMP_GATEWAY TWIIN_AUTHZ; do
  if [ -n "${AUDIT_DATABASE_URL:-}" ]; then
    export "${prefix}_AUDIT__DATABASE_URL=$AUDIT_DATABASE_URL"
  else
    unset "${prefix}_AUDIT__DATABASE_URL"
    export "${prefix}_AUDIT__SQLITE_PATH=$AUDIT_SQLITE_PATH"
  fi
done
if [ -n "${AUDIT_DATABASE_URL:-}" ]; then
  audit_store="PostgreSQL $(sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$AUDIT_DATABASE_URL")"
else
  audit_store="SQLite $AUDIT_SQLITE_PATH"
fi

# Each service reads its listen addresses and peers from its environment prefix (README,
# "Configuration"), so the ports above reach every process that listens on or calls them.
export CPS_RELAY_SERVER__LISTEN="127.0.0.1:$RELAY_PORT"
export CPS_RELAY_METRICS__LISTEN="127.0.0.1:$RELAY_METRICS_PORT"
# The dev card's signature key (nonRepudiation), which signs submissions' XAdES (issue 16).
export CPS_RELAY_BACKEND__SOFTWARE__SIGNATURE_CERTIFICATE_CHAIN=.dev-pki/cps-sign-chain.pem
export CPS_RELAY_BACKEND__SOFTWARE__SIGNATURE_PRIVATE_KEY=.dev-pki/cps-sign.key.pem
export DMP_SIM_LISTEN="127.0.0.1:$DMP_PORT"
export DMP_GATEWAY_SERVER__LISTEN="127.0.0.1:$GATEWAY_PORT"
export DMP_GATEWAY_METRICS__LISTEN="127.0.0.1:$GATEWAY_METRICS_PORT"
export DMP_GATEWAY_DMP__URL="https://localhost:$DMP_PORT"
export DMP_GATEWAY_RELAYS__LOCAL__ENDPOINT="https://127.0.0.1:$RELAY_PORT"
# Callers of the gateway present a client certificate of the suite CA (the integrator's).
export DMP_GATEWAY_SERVER__TLS__CERT=.dev-pki/services-server.pem
export DMP_GATEWAY_SERVER__TLS__KEY=.dev-pki/services-server.key.pem
export DMP_GATEWAY_SERVER__TLS__CLIENT_CA=.dev-pki/suite-ca.pem
# Development mode: the LPS identity, source OID and HL7 sender OID keep the official examples'
# test values, which production refuses (issue 16).
export DMP_GATEWAY_DEVELOPMENT=true
export TWIIN_AUTHZ_SERVER__LISTEN="127.0.0.1:$TWIIN_PORT"
export TWIIN_AUTHZ_HTTP__LISTEN="127.0.0.1:$OAUTH_PORT"
export TWIIN_AUTHZ_METRICS__LISTEN="127.0.0.1:$TWIIN_METRICS_PORT"
# The Twiin simulators serve HTTPS (below); these override scripts/twiin-authz.local.toml.
export TWIIN_AUTHZ_STELSEL__URL="https://127.0.0.1:$STELSEL_PORT/stelseltoken"
export TWIIN_AUTHZ_ZORG_AB__URL="https://127.0.0.1:$ZORG_AB_PORT"
export TWIIN_AUTHZ_AS_ZA__TOKEN_URL="https://127.0.0.1:$AS_ZA_PORT/token"

pids=()
names=()
start() {
  local name=$1; shift
  start_as "$name" "$bin/$name" "$@"
}
start_as() {
  local name=$1; shift
  "$@" > ".local/logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping the suite..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop_all INT TERM EXIT

# The relay in development mode (issue 13): roles from the dev PKI's identities (holder-ui,
# dmp-gateway, integrator); it signs only under a session grant, and only for the DMP
# simulator's certificate, which the gateway reaches as localhost.
cat > .local/cps-relay.toml <<'TOML'
# Written by scripts/run-local.sh for `make run`; never use in production.
development = true

[signing]
allowed_hosts = ["localhost"]
TOML
# The gateway: mutual TLS with the dev PKI's services certificate (DMP_GATEWAY_SERVER__TLS__*
# above), grants of relay `local` checked with the dev PKI's grant key (its default).
start cps-relay --config .local/cps-relay.toml
start dmp-sim
start dmp-gateway
# The Twiin/AORTA simulators over TLS; ZORG-AB and the AS ZA require the GtK's client
# certificate (the development TLS CA of .dev-pki/aorta).
aorta=.dev-pki/aorta
sim_tls=(--tls-cert "$aorta/sim-server.pem" --tls-key "$aorta/sim-server.key.pem")
# The demo external GtK (scripts/python/demo_gtk.py; its key is made on first run): ZORG-AB names
# its JWKS http://127.0.0.1:8094/jwks, rewritten here when DEMO_GTK_PORT moves it.
start_as demo-gtk .local/venv/bin/python3 scripts/python/demo_gtk.py \
  --key "$aorta/demo-gtk.key.pem" --listen "127.0.0.1:$DEMO_GTK_PORT"
sed "s#http://127.0.0.1:8094/jwks#http://127.0.0.1:$DEMO_GTK_PORT/jwks#" sim/data/zorg-ab.toml > .local/zorg-ab.toml
start zorg-ab-sim --config .local/zorg-ab.toml --listen "127.0.0.1:$ZORG_AB_PORT" \
  "${sim_tls[@]}" --client-ca "$aorta/tls-ca.pem"
start aorta-stelsel-sim --config sim/data/aorta-stelsel.toml --listen "127.0.0.1:$STELSEL_PORT" \
  "${sim_tls[@]}"
start as-za-sim --config sim/data/as-za.toml --listen "127.0.0.1:$AS_ZA_PORT" \
  "${sim_tls[@]}" --client-ca "$aorta/tls-ca.pem"
sleep 0.5
# Development mode, opted into by this file (production mode is the default).
start twiin-authz --config scripts/twiin-authz.local.toml

sleep 1
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "${names[$i]} did not start; its log (.local/logs/${names[$i]}.log):"
    tail -n 20 ".local/logs/${names[$i]}.log"
    exit 1
  fi
done

grpcurl=grpcurl
command -v grpcurl >/dev/null 2>&1 || grpcurl=.local/venv/bin/grpcurl

cat <<TXT

The eHealth gateway suite is running (logs in .local/logs/, Ctrl-C stops everything):

  audit log     $audit_store
  cps-relay     grpc  127.0.0.1:$RELAY_PORT  (mutual TLS; CA and client certificate in .dev-pki/)
                metrics http://127.0.0.1:$RELAY_METRICS_PORT/metrics
  dmp-gateway   grpc  127.0.0.1:$GATEWAY_PORT  (mutual TLS; the integrator's client certificate in .dev-pki/)
                metrics http://127.0.0.1:$GATEWAY_METRICS_PORT/metrics
  twiin-authz   grpc  127.0.0.1:$TWIIN_PORT  (plaintext, development mode)   metrics http://127.0.0.1:$TWIIN_METRICS_PORT/metrics
                oauth2 http://127.0.0.1:$OAUTH_PORT/oauth2/token  (+ /.well-known/oauth-authorization-server)
  simulators    dmp-sim https://localhost:$DMP_PORT (TLS 1.2, card certificate required),
                zorg-ab-sim https://127.0.0.1:$ZORG_AB_PORT and as-za-sim https://127.0.0.1:$AS_ZA_PORT
                (client certificate required: .dev-pki/aorta/gtk-client.pem), aorta-stelsel-sim
                https://127.0.0.1:$STELSEL_PORT (CA .dev-pki/aorta/tls-ca.pem)
  demo GtK      external GtK https://gtk-extern.localhost, JWKS http://127.0.0.1:$DEMO_GTK_PORT/jwks

Every call of the three services and the OAuth2 endpoint, with real requests and their answers:
  make demo     (in another terminal; scripts/python/demo.py)

Try (grpcurl 1.8.6 is $grpcurl):
  GATEWAY_TLS="-cacert .dev-pki/suite-ca.pem -cert .dev-pki/integrator-client.pem -key .dev-pki/integrator-client.key.pem"
  HOLDER_TLS="-cacert .dev-pki/suite-ca.pem -cert .dev-pki/holder-ui-client.pem -key .dev-pki/holder-ui-client.key.pem"
  $grpcurl \$GATEWAY_TLS 127.0.0.1:$GATEWAY_PORT list
  $grpcurl -plaintext 127.0.0.1:$TWIIN_PORT describe twiin.v1.TwiinAuthz
  # the card holder's UI grants the integrator a session (README: "Calling the services"):
  $grpcurl \$HOLDER_TLS -d '{"grantee": "integrator"}' 127.0.0.1:$RELAY_PORT cps.v1.CpsRelay/IssueSessionGrant
  # then: $grpcurl \$GATEWAY_TLS -H "dmp-session-grant: <grant>" -d '{...}' 127.0.0.1:$GATEWAY_PORT dmp.v1.DmpGateway/TestPatientDmp
TXT

# Stop everything on Ctrl-C, or as soon as one process exits by itself.
trap 'stop_all; exit 130' INT TERM
wait -n "${pids[@]}" || true
echo "a service exited by itself; see .local/logs/"
stop_all
