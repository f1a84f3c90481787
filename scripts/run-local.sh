#!/usr/bin/env bash
# `make run`: builds and starts the whole suite on embedded defaults (no Postgres needed), prints
# every endpoint, and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
flag=""
[ "$PROFILE" = "release" ] && flag="--release"
cargo build $flag --workspace --bins
bin="target/$PROFILE"

"$bin/dev-pki" .dev-pki
"$bin/aorta-dev-pki" .dev-pki/aorta
mkdir -p .local/logs

pids=()
names=()
start() {
  local name=$1; shift
  "$bin/$name" "$@" > ".local/logs/$name.log" 2>&1 &
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
# dmp-gateway, integrator), and no session grant required until dmp-gateway presents them;
# the card signs only for the DMP simulator's certificate, which the gateway reaches as localhost.
cat > .local/cps-relay.toml <<'TOML'
# Written by scripts/run-local.sh for `make run`; never use in production.
development = true

[grants]
required = false

[signing]
allowed_hosts = ["localhost"]
TOML
start cps-relay --config .local/cps-relay.toml
start dmp-sim
start dmp-gateway
start zorg-ab-sim --config sim/data/zorg-ab.toml
start aorta-stelsel-sim --config sim/data/aorta-stelsel.toml
start as-za-sim --config sim/data/as-za.toml
sleep 0.5
start twiin-authz

sleep 1
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "${names[$i]} did not start; its log (.local/logs/${names[$i]}.log):"
    tail -n 20 ".local/logs/${names[$i]}.log"
    exit 1
  fi
done

cat <<TXT

The eHealth gateway suite is running (logs in .local/logs/, Ctrl-C stops everything):

  cps-relay     grpc  127.0.0.1:50051  (mutual TLS; CA and client certificate in .dev-pki/)
                metrics http://127.0.0.1:9451/metrics
  dmp-gateway   grpc  127.0.0.1:50052  (plaintext)   metrics http://127.0.0.1:9452/metrics
  twiin-authz   grpc  127.0.0.1:50053  (plaintext)   metrics http://127.0.0.1:9453/metrics
                oauth2 http://127.0.0.1:8080/oauth2/token  (+ /.well-known/oauth-authorization-server)
  simulators    dmp-sim https://127.0.0.1:8443 (TLS 1.2, card certificate required),
                zorg-ab-sim 127.0.0.1:8091, aorta-stelsel-sim 127.0.0.1:8092, as-za-sim 127.0.0.1:8093

Try:
  grpcurl -plaintext 127.0.0.1:50052 list
  grpcurl -plaintext 127.0.0.1:50053 describe twiin.v1.TwiinAuthz
  grpcurl -cacert .dev-pki/suite-ca.pem -cert .dev-pki/dmp-gateway-client.pem \\
          -key .dev-pki/dmp-gateway-client.key.pem 127.0.0.1:50051 list
TXT

# Stop everything on Ctrl-C, or as soon as one process exits by itself.
trap 'stop_all; exit 130' INT TERM
wait -n "${pids[@]}" || true
echo "a service exited by itself; see .local/logs/"
stop_all
