#!/usr/bin/env bash
# Installs what building and testing the suite need on a Debian machine, only what is missing (a
# machine that has everything is left alone and needs no network):
#   - a C compiler and pkg-config (build-essential, pkg-config): aws-lc-sys and the bundled SQLite
#     compile C code;
#   - SoftHSM2 and OpenSC (a real PKCS#11 token), xmllint and xmlsec1 (independent XML Schema and
#     XAdES checks), openssl, PostgreSQL (the audit log; scripts/ensure-postgres.sh), python3-venv;
#   - the Python test peers, grpcurl 1.8.6 and PyJWT with cryptography, into the project's own
#     virtual environment .local/venv (scripts/python-venv.sh), where the tests look for them;
#   - grpcio and grpcio-tools (the Python gRPC client test, docs/api.md) into .local/venv, and buf
#     (npm @bufbuild/buf, with Debian's nodejs and npm) into .local/node, for `make api-check`;
#   - rustfmt and clippy (rust-toolchain.toml), when rustup manages the toolchain.
# Uses sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

missing=()
{ command -v cc && command -v make; } >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
{ command -v psql >/dev/null 2>&1 && postgres_bin_dir >/dev/null; } || missing+=(postgresql)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
apt_install "${missing[@]}"

scripts/python-venv.sh scripts/requirements/test-peers.txt scripts/requirements/grpc-python.txt
# buf, for `make api-check` (npm @bufbuild/buf into .local/node).
scripts/buf.sh --version >/dev/null

if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
