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

start cps-relay
start dmp-sim
start dmp-gateway
# The Twiin/AORTA simulators over TLS; ZORG-AB and the AS ZA require the GtK's client
# certificate (the development TLS CA of .dev-pki/aorta).
aorta=.dev-pki/aorta
sim_tls=(--tls-cert "$aorta/sim-server.pem" --tls-key "$aorta/sim-server.key.pem")
start zorg-ab-sim --config sim/data/zorg-ab.toml "${sim_tls[@]}" --client-ca "$aorta/tls-ca.pem"
start aorta-stelsel-sim --config sim/data/aorta-stelsel.toml "${sim_tls[@]}"
start as-za-sim --config sim/data/as-za.toml "${sim_tls[@]}" --client-ca "$aorta/tls-ca.pem"
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

cat <<TXT

The eHealth gateway suite is running (logs in .local/logs/, Ctrl-C stops everything):

  cps-relay     grpc  127.0.0.1:50051  (mutual TLS; CA and client certificate in .dev-pki/)
                metrics http://127.0.0.1:9451/metrics
  dmp-gateway   grpc  127.0.0.1:50052  (plaintext)   metrics http://127.0.0.1:9452/metrics
  twiin-authz   grpc  127.0.0.1:50053  (plaintext, development mode)   metrics http://127.0.0.1:9453/metrics
                oauth2 http://127.0.0.1:8080/oauth2/token  (+ /.well-known/oauth-authorization-server)
  simulators    dmp-sim https://127.0.0.1:8443 (TLS 1.2, card certificate required),
                zorg-ab-sim https://127.0.0.1:8091 and as-za-sim https://127.0.0.1:8093 (client
                certificate required: .dev-pki/aorta/gtk-client.pem), aorta-stelsel-sim
                https://127.0.0.1:8092 (CA .dev-pki/aorta/tls-ca.pem)

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
