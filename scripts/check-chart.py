#!/usr/bin/env python3
"""Checks the Helm chart without a cluster (deploy/README.md, "Chart check").

1. `helm lint --strict` through the Helm v4 SDK (PyPI helm-python-sdk, module helm_python), for
   every scenario's values.
2. Renders the chart offline with the same SDK: default values, every optional feature on
   (deploy/helm/ci/all-features.yaml) and TLS off (deploy/helm/ci/plaintext.yaml).
3. Validates every rendered manifest with `kubernetes-validate --strict -k 1.33.0` (the
   Kubernetes 1.33 OpenAPI schemas, unknown fields rejected). The tool only warns, and passes,
   on a kind it has no schema for: here any such warning fails the check, and custom resources
   (the ServiceMonitor) are instead validated against deploy/helm/schemas/, a strict schema
   written for this chart.
4. Checks what schemas cannot: every pod runs with the security settings the suite promises,
   probes are native gRPC on the health port, every rendered service configuration parses as
   TOML and listens where the Service points, memory limits hold base + concurrency x largest
   message (deploy/helm/ehealth-suite/README.md "Memory"), pods carry checksums of their
   configuration and Secrets, the migration Job is a hook running `ehealth-audit migrate`, the
   OAuth2 Ingress/HTTPRoute route only the OAuth2 paths; and the options behave (anti-affinity
   modes, a Secret change changes the checksum and nothing else does, inconsistent memory values
   and incomplete migration/route values are refused).
5. The workspace's binaries need no shared library beyond those of the distroless runtime image
   (ldd), and accept every rendered configuration file (`<service> --config FILE
   --check-config`, with the chart's TLS paths pointed at a development PKI): the chart writes
   no key the services do not know. Skipped only with --no-binaries.
6. Bad values must fail rendering with a message naming the key: by the templates' own checks
   (among them twiin-authz's production rules: several replicas on SQLite, plaintext, no caller
   mTLS, missing https endpoints), and by values.schema.json (unknown keys, wrong types).
   Every scenario is rendered with deploy/helm/ci/required.yaml, the values every installation
   must give; without them the chart must refuse to render.
7. Self-test: a copy of the chart with a broken template, and one with an invalid field, must
   make this check fail, so a green run means something.
Exit code 0 when everything passes; the first failure stops it with a message.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import tomllib

import helm_python as helm
import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "ehealth-suite"
CI_VALUES = ROOT / "deploy" / "helm" / "ci"
SCHEMAS = ROOT / "deploy" / "helm" / "schemas"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "ehealth", "ehealth"
# Custom resources validated against our own schema files, by apiVersion and kind.
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-gateway.networking.k8s.io-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
}

# The metrics the services expose (crates/service-kit/src/metrics.rs, crates/audit-log/src/writer.rs;
# asserted by their tests): alerts and the dashboard may use these names only.
EXPOSED_METRICS = {
    "up",  # Prometheus' own, per scrape target
    "grpc_server_handled_total", "grpc_server_handling_seconds_bucket", "grpc_server_handling_seconds_count",
    "grpc_server_handling_seconds_sum", "grpc_server_unknown_method_total", "build_info",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds",
    "process_start_time_seconds", "audit_events_committed_total", "audit_events_failed_total",
    "audit_transactions_total", "certificate_expiry_timestamp_seconds",
}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "count", "le", "job", "namespace",
                "grpc_code", "grpc_service", "grpc_method", "pod", "service", "version", "label_values",
                "min", "time", "certificate"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers outside label matchers and strings)."""
    import re
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_matchers = re.sub(r"\{[^}]*\}", "{}", no_strings)
    no_ranges = re.sub(r"\[[^\]]*\]", "[]", no_matchers)
    no_ranges = re.sub(r"(?<![a-zA-Z_])[0-9][0-9.]*(e[+-]?[0-9]+)?", "0", no_ranges)
    words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", no_ranges))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


def observability(docs: list[dict], name: str) -> None:
    """Alerts and dashboard: every expression selects this release's jobs and known metrics."""
    checked = 0
    for rule_doc in (d for d in docs if d["kind"] == "PrometheusRule"):
        for group in rule_doc["spec"]["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                unknown = metric_names(expr) - EXPOSED_METRICS
                if unknown:
                    raise CheckFailed(f"({name}) alert {rule['alert']}: metrics the services do not expose: {unknown}")
                if f'job=~"{RELEASE}-ehealth-suite-(cps-relay|dmp-gateway|twiin-authz)"' not in expr or f'namespace="{NAMESPACE}"' not in expr:
                    raise CheckFailed(f"({name}) alert {rule['alert']}: must select this release's jobs: {expr}")
                if expr.count("{") != expr.count("}") or expr.count("(") != expr.count(")"):
                    raise CheckFailed(f"({name}) alert {rule['alert']}: unbalanced expression {expr}")
                if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                    raise CheckFailed(f"({name}) alert {rule['alert']}: severity critical or warning")
                checked += 1
    for cm in (d for d in docs if d["kind"] == "ConfigMap" and "ehealth-suite.json" in d.get("data", {})):
        dash = json.loads(cm["data"]["ehealth-suite.json"])
        for panel in dash["panels"]:
            if not panel.get("targets"):
                raise CheckFailed(f"({name}) dashboard panel {panel.get('title')}: no query")
            for t in panel["targets"]:
                unknown = metric_names(t["expr"]) - EXPOSED_METRICS
                if unknown:
                    raise CheckFailed(f"({name}) dashboard panel {panel['title']}: metrics the services do not expose: {unknown}")
                checked += 1
    if checked:
        print(f"ok   alerts and dashboard ({name}): {checked} expressions on this release's jobs and exposed metrics")

MIB = 1024 * 1024
# The memory rule of the chart (values.yaml, deploy/helm/ehealth-suite/README.md "Memory"):
#   limits.memory >= base + server.concurrency_limit x largest message of one call.
# Defaults of the services where the rendered configuration does not set a key: server.concurrency_limit
# (crates/service-config), xds.max_document_bytes and dmp.max_response_bytes (services/dmp-gateway/src/config.rs),
# gRPC's 4 MiB decoding limit (tonic's default, which cps-relay and twiin-authz keep).
MEMORY_BASE = {"dmp-gateway": 128 * MIB, "twiin-authz": 64 * MIB, "cps-relay": 64 * MIB}
DEFAULT_CONCURRENCY = 1024
DEFAULT_MAX_DOCUMENT = 20 * MIB
DEFAULT_MAX_RESPONSE = 64 * MIB
GRPC_DEFAULT_MAX_MESSAGE = 4 * MIB


def largest_message(binary: str, cfg: dict) -> tuple[int, str]:
    """The largest message one call of `binary` may hold in memory, and how it was found."""
    if binary != "dmp-gateway":
        return GRPC_DEFAULT_MAX_MESSAGE, "4 MiB (gRPC's default decoding limit)"
    doc = cfg.get("xds", {}).get("max_document_bytes", DEFAULT_MAX_DOCUMENT)
    request = 4 * doc + 4 * MIB  # services/dmp-gateway/src/lib.rs max_request_bytes
    response = cfg.get("dmp", {}).get("max_response_bytes", DEFAULT_MAX_RESPONSE)
    return max(request, response), f"max(4 x xds.max_document_bytes + 4 MiB = {request // MIB} MiB, dmp.max_response_bytes = {response // MIB} MiB)"


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity (`256Mi`, `1Gi`, `512M`, `1e9`) in bytes."""
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "Ti": 1024 ** 4, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4}
    q = str(q)
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * units[suffix])
    return int(float(q))


# twiin-authz's OAuth2 HTTP listen address is `http.listen`, the chart's
# `twiinAuthz.oauth.listenKey` default: the binary check renders twiin-authz with it.
TWIIN_OAUTH_KEY_IN_BINARY = True


# The files the chart's defaults point to (mounted TLS Secret, /etc/ehealth/secrets) and the dev
# PKI file (`dev-pki`) that stands in for each when the binaries check the rendered configuration.
# Made-up installation identifiers for dmp-gateway's configuration check.
GATEWAY_IDENTIFIERS = {
    "DMP_GATEWAY_LPS__ID": "12.34.56.78",
    "DMP_GATEWAY_LPS__HOMOLOGATION_ID": "DMP-HOMOLOG-4242",
    "DMP_GATEWAY_XDS__SOURCE_ID": "1.2.250.1.4242.1",
    "DMP_GATEWAY_XDS__HL7_SENDER_OID": "1.2.250.1.4242.2",
}

CHART_FILES_FROM_DEV_PKI = {
    "/etc/ehealth/tls/tls.crt": "services-server.pem",
    "/etc/ehealth/tls/tls.key": "services-server.key.pem",
    "/etc/ehealth/tls/ca.crt": "suite-ca.pem",
    "/etc/ehealth/secrets/dmp-ca-bundle.pem": "igc-sante-ca-bundle.pem",
    "/etc/ehealth/secrets/relay-ca.pem": "suite-ca.pem",
    "/etc/ehealth/secrets/relay-client.pem": "dmp-gateway-client.pem",
    "/etc/ehealth/secrets/relay-client.key.pem": "dmp-gateway-client.key.pem",
    "/etc/ehealth/secrets/relay-grant.pub.pem": "cps-relay-grant.pub.pem",
    "/etc/ehealth/secrets/assertion-signing.key.pem": "twiin-assertion-signing.key.pem",
    "/etc/ehealth/secrets/stelsel-ca.pem": "suite-ca.pem",
    "/etc/ehealth/secrets/cps-auth-chain.pem": "cps-auth-chain.pem",
    "/etc/ehealth/secrets/cps-auth.key.pem": "cps-auth.key.pem",
    "/etc/ehealth/secrets/cps-sign-chain.pem": "cps-sign-chain.pem",
    "/etc/ehealth/secrets/cps-sign.key.pem": "cps-sign.key.pem",
    "/etc/ehealth/secrets/uzi-client.pem": "dmp-gateway-client.pem",
    "/etc/ehealth/secrets/uzi-client.key.pem": "dmp-gateway-client.key.pem",
    "/etc/ehealth/secrets/zorg-ab-ca.pem": "suite-ca.pem",
    "/etc/ehealth/secrets/grant-signing.key.pem": "cps-relay-grant.key.pem",
    "/etc/ehealth/secrets/dmp-server-ca.pem": "igc-sante-ca-bundle.pem",
}

# Values every installation must give (twiin-authz's production endpoints, the Resource Broker).
REQUIRED = CI_VALUES / "required.yaml"
# What the rendered DATABASE_URL stands for when the binaries check a configuration.
PLACEHOLDER_DATABASE_URL = "postgres://check@127.0.0.1:5432/check"


class CheckFailed(Exception):
    pass


def merged(base: dict, over: dict) -> dict:
    """`over` deep-merged onto a copy of `base` (Helm's rule for several values files)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def required() -> dict:
    return yaml.safe_load(REQUIRED.read_text()) or {}


def scenarios() -> dict[str, dict]:
    out = {"defaults": required()}
    for f in sorted(CI_VALUES.glob("*.yaml")):
        if f == REQUIRED:
            continue
        out[f.stem] = merged(required(), yaml.safe_load(f.read_text()) or {})
    return out


def lint(chart: pathlib.Path, name: str, values: dict) -> None:
    report = helm.lint(str(chart), values or None, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if problems or report.get("errors"):
        lines = [f"  {m.get('path')}: {m.get('error')}" for m in problems] + [f"  {e}" for e in report.get("errors") or []]
        raise CheckFailed(f"helm lint --strict ({name}) failed:\n" + "\n".join(lines))
    print(f"ok   helm lint --strict ({name}): {report.get('total_charts_linted')} chart(s), no warning")


def render(chart: pathlib.Path, values: dict) -> list[dict]:
    with helm.Chart.load(str(chart)) as c:
        files = c.render(values=values or None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {})
                docs.append(doc)
    if not docs:
        raise CheckFailed("the chart rendered no manifest")
    return docs


def validate(docs: list[dict], name: str, workdir: pathlib.Path) -> None:
    core = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CUSTOM]
    custom = [d for d in docs if (d.get("apiVersion"), d.get("kind")) in CUSTOM]

    manifest = workdir / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(core, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION, str(manifest)],
        capture_output=True,
        text=True,
    )
    out = (proc.stdout + proc.stderr).strip()
    passed = [l for l in out.splitlines() if l.startswith("INFO") and " passed " in l]
    bad = [l for l in out.splitlines() if not (l.startswith("INFO") and " passed " in l)]
    if proc.returncode != 0 or bad or len(passed) != len(core):
        raise CheckFailed(
            f"kubernetes-validate --strict -k {KUBE_VERSION} ({name}) failed "
            f"(exit {proc.returncode}, {len(passed)}/{len(core)} passed):\n{out}"
        )
    kinds = sorted({d["kind"] for d in core})
    print(f"ok   kubernetes-validate --strict -k {KUBE_VERSION} ({name}): {len(core)} manifests ({', '.join(kinds)})")

    for d in custom:
        schema = json.loads((SCHEMAS / CUSTOM[(d["apiVersion"], d["kind"])]).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=lambda e: list(e.path))
        if errors:
            lines = [f"  {'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]
            raise CheckFailed(f"{d['kind']}/{d['metadata'].get('name')} ({name}) against deploy/helm/schemas:\n" + "\n".join(lines))
    if custom:
        print(f"ok   custom resources ({name}): {len(custom)} {', '.join(sorted({d['kind'] for d in custom}))} against deploy/helm/schemas")


def invariants(docs: list[dict], name: str) -> None:
    """What the schemas cannot say: the security and probe promises of the chart."""
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configs = {cm["metadata"]["name"]: cm for cm in by_kind.get("ConfigMap", [])}
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        raise CheckFailed(f"({name}) no Deployment rendered")
    jobs = by_kind.get("Job", [])
    migrations_on = bool(jobs)
    for job in jobs:
        ann = job["metadata"].get("annotations", {})
        if ann.get("helm.sh/hook") != "pre-install,pre-upgrade":
            raise CheckFailed(f"({name}) Job/{job['metadata']['name']}: must be a pre-install,pre-upgrade hook")
        c = job["spec"]["template"]["spec"]["containers"][0]
        if c["command"] != ["/usr/local/bin/ehealth-audit"] or c["args"][:2] != ["migrate", "--grant-to"]:
            raise CheckFailed(f"({name}) Job/{job['metadata']['name']}: must run ehealth-audit migrate --grant-to ROLE")
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            raise CheckFailed(f"({name}) Job/{job['metadata']['name']}: weak security context")
    for ing in by_kind.get("Ingress", []):
        paths = [(p["path"], p["backend"]["service"]["port"].get("name")) for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
        if sorted({p for p, _ in paths}) != ["/.well-known/oauth-authorization-server", "/oauth2/token"] or {b for _, b in paths} != {"oauth"}:
            raise CheckFailed(f"({name}) Ingress/{ing['metadata']['name']}: only the OAuth2 paths, to the oauth port: {paths}")
    for route in by_kind.get("HTTPRoute", []):
        values = sorted(m["path"]["value"] for r in route["spec"]["rules"] for m in r["matches"])
        if values != ["/.well-known/oauth-authorization-server", "/oauth2/token"]:
            raise CheckFailed(f"({name}) HTTPRoute/{route['metadata']['name']}: only the OAuth2 paths: {values}")

    def fail(dep: dict, msg: str) -> None:
        raise CheckFailed(f"({name}) Deployment/{dep['metadata']['name']}: {msg}")

    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(dep, "pod securityContext must set runAsNonRoot and seccomp RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            fail(dep, "the service account token must not be mounted")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            want = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "runAsNonRoot": True}
            for k, v in want.items():
                if sc.get(k) is not v:
                    fail(dep, f"container {c['name']}: securityContext.{k} must be {v}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(dep, f"container {c['name']}: capabilities must drop ALL")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                grpc = c.get(probe, {}).get("grpc")
                if not grpc or grpc.get("port") != ports.get("health"):
                    fail(dep, f"{probe} must be a native gRPC probe on the health port")
                # Readiness follows the dependencies (overall status); liveness must not, or a
                # database outage would restart every pod (service-kit's `liveness`).
                want = "liveness" if probe == "livenessProbe" else None
                if grpc and grpc.get("service") != want:
                    fail(dep, f"{probe} must ask the health service {want or 'overall (no service)'}")
            # The configuration file the container reads.
            args = c.get("args", [])
            if len(args) != 2 or args[0] != "--config":
                fail(dep, "args must be --config PATH")
            cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
            key = pathlib.PurePosixPath(args[1]).name
            try:
                cfg = tomllib.loads(configs[cm_name]["data"][key])
            except (KeyError, tomllib.TOMLDecodeError) as e:
                fail(dep, f"configuration {cm_name}/{key} is not valid TOML: {e}")
            if not isinstance(cfg.get("server"), dict) or not isinstance(cfg.get("metrics"), dict):
                fail(dep, "configuration has no [server] or [metrics] table")
            listen = cfg["server"].get("listen")
            if listen != f"0.0.0.0:{ports['grpc']}" or cfg["server"].get("health_listen") != f"0.0.0.0:{ports['health']}":
                fail(dep, f"server.listen/health_listen {listen} do not match the container ports {ports}")
            if cfg["metrics"].get("listen") != f"0.0.0.0:{ports['metrics']}":
                fail(dep, "metrics.listen does not match the metrics port")
            if not isinstance(cfg["server"].get("concurrency_limit", 1), int):
                fail(dep, "integers must be written as TOML integers")
            binary = pathlib.PurePosixPath(c["command"][0]).name
            limit = c.get("resources", {}).get("limits", {}).get("memory")
            concurrency = cfg["server"].get("concurrency_limit", DEFAULT_CONCURRENCY)
            message, how = largest_message(binary, cfg)
            need = MEMORY_BASE[binary] + concurrency * message
            if limit is None or quantity_bytes(limit) < need:
                fail(dep, f"resources.limits.memory {limit} cannot hold its calls: {MEMORY_BASE[binary] // MIB} MiB + "
                          f"server.concurrency_limit {concurrency} x {how} = {need // MIB} MiB; lower the "
                          f"concurrency or the sizes, or raise the limit")
            # Roll on changes of configuration and of the Secrets the chart renders.
            annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
            for a in ("checksum/config", "checksum/secrets"):
                if len(str(annotations.get(a, ""))) != 64:
                    fail(dep, f"pod annotation {a} (a sha256) is missing")
            if cfg.get("audit", {}).get("migrations") != ("check" if migrations_on else None):
                fail(dep, "audit.migrations must be \"check\" exactly when the migration Job runs")
            svc = services.get(dep["metadata"]["name"])
            if svc is None:
                fail(dep, "no Service of the same name")
            for sp in svc["spec"]["ports"]:
                if sp["targetPort"] not in ports:
                    fail(dep, f"Service port {sp['name']} targets {sp['targetPort']}, not a container port")
    extra = [f"{len(by_kind[k])} {k}" for k in ("Job", "Ingress", "HTTPRoute") if by_kind.get(k)]
    print(f"ok   invariants ({name}): {len(deployments)} Deployments: security context, gRPC probes, TOML configuration, "
          f"Service ports, memory limit >= base + concurrency x largest message, checksums of config and secrets"
          + (f"; {', '.join(extra)}" if extra else ""))


class Binaries:
    """Debug builds of the service binaries and a development PKI to stand in for the Secrets."""

    def __init__(self, workdir: pathlib.Path):
        # Every binary of the workspace, as the image builds them (deploy/Dockerfile).
        build = ["cargo", "build", "-q", "--workspace", "--bins"]
        proc = subprocess.run(build, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CheckFailed(f"{' '.join(build)} failed:\n{proc.stderr}")
        meta = json.loads(subprocess.run(
            ["cargo", "metadata", "-q", "--format-version", "1", "--no-deps"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        self.bin = pathlib.Path(meta["target_directory"]) / "debug"
        self.pki = workdir / "pki"
        subprocess.run([str(self.bin / "dev-pki"), str(self.pki)], check=True, capture_output=True)
        self.workdir = workdir

    def check_runtime_libraries(self) -> None:
        """The runtime image (distroless cc-debian12) has glibc, libgcc and libstdc++ and nothing
        else the suite may use: a binary that starts to need another shared library (a system
        SQLite, OpenSSL through openssl-sys) would build and then fail to start in the image,
        which cannot be built here. Checked on the debug builds with ldd."""
        meta = json.loads(subprocess.run(
            ["cargo", "metadata", "-q", "--format-version", "1", "--no-deps"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        bins = sorted({t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]})
        allowed = ("linux-vdso.so", "ld-linux", "libc.so", "libm.so", "libgcc_s.so", "libpthread.so",
                   "libdl.so", "librt.so", "libstdc++.so")
        for name in bins:
            out = subprocess.run(["ldd", str(self.bin / name)], capture_output=True, text=True, check=True).stdout
            libs = [line.split()[0] for line in out.splitlines() if line.strip()]
            extra = [lib for lib in libs if not any(pathlib.PurePosixPath(lib).name.startswith(a) for a in allowed)]
            if extra:
                raise CheckFailed(f"{name} needs shared libraries the runtime image does not have: {extra}")
        print(f"ok   runtime libraries: {len(bins)} binaries ({', '.join(bins)}) need only glibc/libgcc (distroless cc)")

    def check_config(self, docs: list[dict], name: str) -> None:
        checked = []
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            c = dep["spec"]["template"]["spec"]["containers"][0]
            binary = pathlib.PurePosixPath(c["command"][0]).name
            cm_name = next(v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
            cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
            text = cm["data"][f"{binary}.toml"]
            for chart_path, dev_file in CHART_FILES_FROM_DEV_PKI.items():
                text = text.replace(chart_path, str(self.pki / dev_file))
            if "/etc/ehealth/" in text:
                raise CheckFailed(f"({name}) {binary}: the rendered configuration names a file the check "
                                  f"cannot stand in for; add it to CHART_FILES_FROM_DEV_PKI:\n{text}")
            f = self.workdir / f"{name}-{binary}.toml"
            f.write_text(text)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("CPS_RELAY_", "DMP_GATEWAY_", "TWIIN_AUTHZ_")) and k != "DATABASE_URL"}
            # The pod gets DATABASE_URL from a Secret: stand in for it exactly when it is set.
            if any(e.get("name") == "DATABASE_URL" for e in c.get("env", [])):
                env["DATABASE_URL"] = PLACEHOLDER_DATABASE_URL
            # The chart leaves the installation's DMP identifiers to the integrator (start-up
            # refuses the official examples' values): stand in for them.
            if binary == "dmp-gateway":
                env.update(GATEWAY_IDENTIFIERS)
            proc = subprocess.run([str(self.bin / binary), "--config", str(f), "--check-config"],
                                  capture_output=True, text=True, env=env, cwd=self.workdir)
            if proc.returncode != 0:
                raise CheckFailed(f"({name}) {binary} rejects the configuration the chart renders:\n"
                                  f"{proc.stderr.strip()}\n--- {cm_name}/{binary}.toml:\n{cm['data'][f'{binary}.toml']}")
            checked.append(binary)
        print(f"ok   binaries accept the rendered configuration ({name}): {', '.join(checked)}")


def binary_values(values: dict) -> dict:
    if TWIIN_OAUTH_KEY_IN_BINARY:
        return values
    v = copy.deepcopy(values)
    v.setdefault("twiinAuthz", {}).setdefault("oauth", {})["listenKey"] = ""
    return v


def expect_render_failure(values: dict, must_mention: str, with_required: bool = True,
                          chart: pathlib.Path = CHART) -> None:
    if with_required:
        values = merged(required(), values)
    try:
        render(chart, values)
    except helm.HelmError as e:
        if must_mention not in str(e):
            raise CheckFailed(f"rendering failed as expected, but the message does not name {must_mention}: {e}")
        print(f"ok   bad values rejected: {must_mention}")
        return
    raise CheckFailed(f"values {values} rendered, but must be rejected")


def secure_defaults(docs: list[dict]) -> None:
    """Issue 13: with default values, dmp-gateway and twiin-authz require their callers' client
    certificates, and every service has a NetworkPolicy."""
    configs = {cm["metadata"]["name"]: cm for cm in docs if cm["kind"] == "ConfigMap"}
    policies = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        name = dep["metadata"]["name"]
        binary = pathlib.PurePosixPath(dep["spec"]["template"]["spec"]["containers"][0]["command"][0]).name
        cm_name = next(v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
        cfg = tomllib.loads(configs[cm_name]["data"][f"{binary}.toml"])
        if binary in ("dmp-gateway", "twiin-authz") and not cfg["server"].get("tls", {}).get("client_ca"):
            raise CheckFailed(f"(defaults) {binary}: callers' client certificates must be required by default")
        if name not in policies:
            raise CheckFailed(f"(defaults) {name}: no NetworkPolicy by default")
    print("ok   secure defaults: caller mTLS on dmp-gateway and twiin-authz, a NetworkPolicy per service")


def pod_template(docs: list[dict], component: str) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"].endswith(component))["spec"]["template"]


def options(chart: pathlib.Path) -> None:
    """The chart's operator options behave as documented (deploy/helm/ehealth-suite/README.md)."""
    base = required()
    # Soft anti-affinity by default; hard on request; a service's own affinity wins; none.
    docs = render(chart, base)
    aff = pod_template(docs, "dmp-gateway")["spec"].get("affinity", {}).get("podAntiAffinity", {})
    term = (aff.get("preferredDuringSchedulingIgnoredDuringExecution") or [{}])[0].get("podAffinityTerm", {})
    if term.get("topologyKey") != "kubernetes.io/hostname" or "app.kubernetes.io/component" not in term.get("labelSelector", {}).get("matchLabels", {}):
        raise CheckFailed(f"(defaults) soft pod anti-affinity by host name expected, got {aff}")
    aff = pod_template(render(chart, merged(base, {"podAntiAffinity": "hard"})), "dmp-gateway")["spec"]["affinity"]["podAntiAffinity"]
    if "requiredDuringSchedulingIgnoredDuringExecution" not in aff:
        raise CheckFailed(f"podAntiAffinity=hard must require it, got {aff}")
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    if pod_template(render(chart, merged(base, {"dmpGateway": {"affinity": own}})), "dmp-gateway")["spec"]["affinity"] != own:
        raise CheckFailed("a service's own affinity must replace the default")
    if "affinity" in pod_template(render(chart, merged(base, {"podAntiAffinity": "none"})), "dmp-gateway")["spec"]:
        raise CheckFailed("podAntiAffinity=none must render no affinity")
    print("ok   pod anti-affinity: soft by default, hard or none on request, a service's own affinity wins")

    # A change of a Secret the chart renders rolls the pods; a change elsewhere does not.
    def secrets_sum(values: dict, component: str = "dmp-gateway") -> str:
        return pod_template(render(chart, merged(base, values)), component)["metadata"]["annotations"]["checksum/secrets"]
    db = {"database": {"url": "postgres://a:one@db:5432/a?sslmode=verify-full"}}
    db2 = {"database": {"url": "postgres://a:two@db:5432/a?sslmode=verify-full"}}
    if secrets_sum(db) == secrets_sum(db2):
        raise CheckFailed("checksum/secrets must change with the database URL")
    files = {"dmpGateway": {"secretFiles": {"a.pem": "one"}}}
    if secrets_sum(files) == secrets_sum({"dmpGateway": {"secretFiles": {"a.pem": "two"}}}):
        raise CheckFailed("checksum/secrets must change with a secret file")
    if secrets_sum(files) != secrets_sum(merged(files, {"dmpGateway": {"replicaCount": 3}})):
        raise CheckFailed("checksum/secrets must not change with unrelated values")
    for a in pod_template(render(chart, merged(base, db)), "dmp-gateway")["metadata"]["annotations"].values():
        if "one" in str(a) and "postgres" in str(a):
            raise CheckFailed("a pod annotation shows the database URL")
    print("ok   checksum/secrets: changes with the database URL and the secret files, not with other values")

    # The memory rule refuses inconsistent values.
    try:
        invariants(render(chart, merged(base, {"dmpGateway": {"config": {"server": {"concurrency_limit": 1024}}}})), "memory rule")
    except CheckFailed as e:
        if "resources.limits.memory" not in str(e):
            raise
        print(f"ok   memory rule: dmp-gateway with 1024 concurrent calls is refused ({str(e).split(': ', 1)[1][:90]}...)")
    else:
        raise CheckFailed("dmp-gateway with concurrency_limit 1024 and a 1280Mi limit passed the memory rule")
    # Raising the limit with the concurrency satisfies it: the rule is arithmetic, not a veto.
    invariants(render(chart, merged(base, {"twiinAuthz": {"config": {"server": {"concurrency_limit": 100}},
                                                          "resources": {"limits": {"memory": "464Mi"}}}})), "memory rule, raised")

    # The migration Job needs its owner Secret and the services' role.
    expect_render_failure({"database": {"existingSecret": "db", "migrations": {"enabled": True, "serviceRole": "svc"}}},
                          "database.migrations.ownerSecret", chart=chart)
    expect_render_failure({"database": {"existingSecret": "db", "migrations": {"enabled": True, "ownerSecret": "own"}}},
                          "database.migrations.serviceRole", chart=chart)
    expect_render_failure({"database": {"migrations": {"enabled": True, "ownerSecret": "own", "serviceRole": "svc"}}},
                          "database.migrations.enabled", chart=chart)
    expect_render_failure({"twiinAuthz": {"oauth": {"ingress": {"enabled": True}}}}, "twiinAuthz.oauth.ingress.hosts", chart=chart)
    expect_render_failure({"twiinAuthz": {"oauth": {"httpRoute": {"enabled": True}}}}, "twiinAuthz.oauth.httpRoute.parentRefs", chart=chart)


def twiin_refusals(chart: pathlib.Path) -> None:
    """twiin-authz is safe by default: what it would refuse to start with does not render."""
    def refused(values: dict, must_mention: str, with_required: bool = True) -> None:
        expect_render_failure(values, must_mention, with_required, chart)
    refused({"twiinAuthz": {"replicaCount": 2}}, "twiinAuthz: 2 replicas need the PostgreSQL audit log")
    refused({"twiinAuthz": {"autoscaling": {"enabled": True}}}, "twiinAuthz: 6 replicas need the PostgreSQL audit log")
    refused({}, "twiinAuthz.config.issuer", with_required=False)
    refused({"twiinAuthz": {"config": {"zorg_ab": {"url": "http://zorg-ab.test"}}}}, "twiinAuthz.config.zorg_ab.url")
    refused({"twiinAuthz": {"config": {"resource_broker": {"identities": []}}}},
            "twiinAuthz.config.resource_broker.identities")
    refused({"twiinAuthz": {"tls": {"enabled": False}}}, "twiinAuthz.tls.enabled")
    refused({"twiinAuthz": {"tls": {"clientAuth": False}}}, "twiinAuthz.tls.clientAuth")
    # With PostgreSQL, several replicas render.
    render(chart, merged(required(), {"twiinAuthz": {"replicaCount": 2}, "database": {"existingSecret": "audit-db"}}))
    print("ok   twiin-authz renders with 2 replicas on PostgreSQL")


def check(chart: pathlib.Path, workdir: pathlib.Path, binaries: Binaries | None = None) -> None:
    for name, values in scenarios().items():
        lint(chart, name, values)
        docs = render(chart, values)
        validate(docs, name, workdir)
        invariants(docs, name)
        observability(docs, name)
        if name == "defaults":
            secure_defaults(docs)
        if binaries is not None:
            binaries.check_config(render(chart, binary_values(values)), name)
    twiin_refusals(chart)
    options(chart)


def selftest(workdir: pathlib.Path, binaries: Binaries | None) -> None:
    """The check must fail on a broken chart."""
    breakages = {
        "template syntax error": ("deployment.yaml", "{{- if not $v.autoscaling.enabled }}", "{{- if not $v.autoscaling.enabled }"),
        "unknown field": ("deployment.yaml", "containerPort: {{ $v.ports.grpc }}", "containerPorts: {{ $v.ports.grpc }}"),
        "wrong type": ("poddisruptionbudget.yaml", "maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}", "maxUnavailable: [1]"),
        "bad ServiceMonitor": ("servicemonitor.yaml", "path: /metrics", "path: metrics"),
        "alert on a metric nobody exposes": ("prometheusrule.yaml", "audit_events_failed_total{", "audit_events_lost_total{"),
        "weak security context": ("deployment.yaml", "{{- toYaml $.Values.containerSecurityContext | nindent 12 }}", "{}"),
        "configuration key the services do not know": ("_helpers.tpl", '"log_format"', '"logformat"'),
        "memory limit below the rule": ("deployment.yaml", "{{- toYaml $v.resources | nindent 12 }}",
                                        "{{- toYaml (dict \"limits\" (dict \"memory\" \"64Mi\")) | nindent 12 }}"),
        "database URL not in the pods' secrets checksum": ("_helpers.tpl", "{{ $root.Values.database.url }}{{ else }}", "{{ else }}"),
        "twiin-authz on SQLite with several replicas": (
            "_helpers.tpl",
            '{{- if and (gt $replicas 1) (not (include "ehealth.databaseSecret" .root)) -}}',
            "{{- if false -}}",
        ),
    }
    for label, (template, old, new) in breakages.items():
        if binaries is None and label.startswith("configuration key"):
            print(f"note self-test '{label}' needs the binaries (--no-binaries)")
            continue
        broken = workdir / f"broken-{label.replace(' ', '-')}" / "ehealth-suite"
        shutil.copytree(CHART, broken)
        path = broken / "templates" / template
        text = path.read_text()
        if old not in text:
            raise CheckFailed(f"self-test {label}: `{old}` not found in {template}; update the self-test")
        path.write_text(text.replace(old, new, 1))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(broken, workdir, binaries)
        except (CheckFailed, helm.HelmError) as e:
            first = str(e).strip().splitlines()[0]
            print(f"ok   self-test: a chart with a {label} fails the check ({first[:100]})")
            continue
        raise CheckFailed(f"self-test: a chart with a {label} passed the check")


def main() -> int:
    with_binaries = "--no-binaries" not in sys.argv[1:]
    print(f"chart {CHART.relative_to(ROOT)} with Helm SDK {helm.helm_sdk_version()}, Kubernetes schemas {KUBE_VERSION}")
    with tempfile.TemporaryDirectory(prefix="chart-check-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
            binaries = Binaries(workdir) if with_binaries else None
            if binaries is None:
                print("note --no-binaries: the rendered configuration is not checked against the service binaries")
            elif not TWIIN_OAUTH_KEY_IN_BINARY:
                print("note twiin-authz has no OAuth listener key yet: its binary check runs with twiinAuthz.oauth.listenKey=\"\"")
            if binaries is not None:
                binaries.check_runtime_libraries()
            check(CHART, workdir, binaries)
            # Values the templates must refuse, naming the key.
            expect_render_failure({"dmpGateway": {"tls": {"cert": "x"}}}, "dmpGateway.tls")
            expect_render_failure({"cpsRelay": {"enabled": True, "tls": {"cert": "x", "key": "y"}}}, "cpsRelay.tls.ca")
            # dmp-gateway names its callers by their certificates: off only in development mode.
            expect_render_failure({"dmpGateway": {"tls": {"clientAuth": False}}}, "dmpGateway.tls.clientAuth")
            # Pinning of the gateway's certificate is on by default: no fingerprint, no relay.
            expect_render_failure({"cpsRelay": {"enabled": True, "tls": {"existingSecret": "relay-tls"}}},
                                  "cpsRelay.pinning.fingerprints")
            # values.schema.json: misspelt keys and wrong types, named by their path.
            expect_render_failure({"twiinAuthz": {"oauth": {"listenKey": "listen"}}}, "/twiinAuthz/oauth/listenKey")
            expect_render_failure({"dmpGateway": {"replicas": 3}}, "'replicas' not allowed")
            expect_render_failure({"dmpGateway": {"ports": {"grpc": "50052"}}}, "/dmpGateway/ports/grpc")

            selftest(workdir, binaries)
        except CheckFailed as e:
            print(f"FAIL {e}", file=sys.stderr)
            return 1
        except helm.HelmError as e:
            print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print("chart check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
