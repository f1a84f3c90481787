#!/usr/bin/env bash
# Runs buf (https://buf.build; lint and breaking-change checks of proto/, configured by buf.yaml),
# first installing the pinned version from npm (@bufbuild/buf, a static binary per platform) into
# the project's own .local/node when it is missing. Node.js and npm come from Debian's packages.
#
#   scripts/buf.sh lint
#   scripts/buf.sh breaking --against proto-released/v0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

BUF_VERSION=1.75.0
prefix=.local/node
buf="$prefix/node_modules/.bin/buf"

installed=$(node -p "require('./$prefix/node_modules/@bufbuild/buf/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$BUF_VERSION" ]; then
  missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  apt_install "${missing[@]}"
  echo "installing buf $BUF_VERSION (npm @bufbuild/buf) into $prefix" >&2
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
    "@bufbuild/buf@$BUF_VERSION" >&2
fi
exec "$buf" "$@"
