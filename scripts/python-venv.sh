#!/usr/bin/env bash
# Makes sure the project's Python virtual environment, .local/venv, holds the pinned packages of
# the given requirements files, installing only what is missing (a second run needs no network).
# Python tools never go into the system's Python: Debian's is externally managed (PEP 668), and a
# pip install there could break the system's own packages.
#
#   scripts/python-venv.sh scripts/requirements/test-peers.txt [more files...]
#
# The tools then are in .local/venv/bin (grpcurl, python3 with PyJWT, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

venv=.local/venv
if ! "$venv/bin/python3" -c '' >/dev/null 2>&1; then
  missing=()
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  # Debian ships venv's pip bootstrap (ensurepip) in a package of its own.
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  apt_install "${missing[@]}"
  echo "creating the Python virtual environment $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
fi

# Requirements whose pinned version is not installed yet.
mapfile -t wanted < <("$venv/bin/python3" - "$@" <<'PY'
import importlib.metadata as md
import sys

for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            req = line.split("#", 1)[0].strip()
            if not req:
                continue
            name, _, version = req.partition("==")
            try:
                installed = md.version(name)
            except md.PackageNotFoundError:
                installed = None
            if installed is None or (version and installed != version):
                print(req)
PY
)
if [ ${#wanted[@]} -gt 0 ]; then
  echo "installing Python packages into $venv: ${wanted[*]}" >&2
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${wanted[@]}" >&2
fi
