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
   TOML and listens where the Service points.
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
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json"}


# twiin-authz's OAuth2 HTTP listen address is `http.listen`, the chart's
# `twiinAuthz.oauth.listenKey` default: the binary check renders twiin-authz with it.
TWIIN_OAUTH_KEY_IN_BINARY = True


# The files the chart's defaults point to (mounted TLS Secret, /etc/ehealth/secrets) and the dev
# PKI file (`dev-pki`) that stands in for each when the binaries check the rendered configuration.
CHART_FILES_FROM_DEV_PKI = {
    "/etc/ehealth/tls/tls.crt": "services-server.pem",
    "/etc/ehealth/tls/tls.key": "services-server.key.pem",
    "/etc/ehealth/tls/ca.crt": "suite-ca.pem",
    "/etc/ehealth/secrets/dmp-ca-bundle.pem": "igc-sante-ca-bundle.pem",
    "/etc/ehealth/secrets/relay-ca.pem": "suite-ca.pem",
    "/etc/ehealth/secrets/relay-client.pem": "dmp-gateway-client.pem",
    "/etc/ehealth/secrets/relay-client.key.pem": "dmp-gateway-client.key.pem",
    "/etc/ehealth/secrets/signature.pem": "cps-auth.pem",
    "/etc/ehealth/secrets/signature.key.pem": "cps-auth.key.pem",
    "/etc/ehealth/secrets/relay-grant.pub.pem": "cps-relay-grant.pub.pem",
    "/etc/ehealth/secrets/assertion-signing.key.pem": "twiin-assertion-signing.key.pem",
    "/etc/ehealth/secrets/stelsel-ca.pem": "suite-ca.pem",
    "/etc/ehealth/secrets/cps-auth-chain.pem": "cps-auth-chain.pem",
    "/etc/ehealth/secrets/cps-auth.key.pem": "cps-auth.key.pem",
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
            svc = services.get(dep["metadata"]["name"])
            if svc is None:
                fail(dep, "no Service of the same name")
            for sp in svc["spec"]["ports"]:
                if sp["targetPort"] not in ports:
                    fail(dep, f"Service port {sp['name']} targets {sp['targetPort']}, not a container port")
    print(f"ok   invariants ({name}): {len(deployments)} Deployments: security context, gRPC probes, TOML configuration, Service ports")


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
        if name == "defaults":
            secure_defaults(docs)
        if binaries is not None:
            binaries.check_config(render(chart, binary_values(values)), name)
    twiin_refusals(chart)


def selftest(workdir: pathlib.Path, binaries: Binaries | None) -> None:
    """The check must fail on a broken chart."""
    breakages = {
        "template syntax error": ("deployment.yaml", "{{- if not $v.autoscaling.enabled }}", "{{- if not $v.autoscaling.enabled }"),
        "unknown field": ("deployment.yaml", "containerPort: {{ $v.ports.grpc }}", "containerPorts: {{ $v.ports.grpc }}"),
        "wrong type": ("poddisruptionbudget.yaml", "maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}", "maxUnavailable: [1]"),
        "bad ServiceMonitor": ("servicemonitor.yaml", "path: /metrics", "path: metrics"),
        "weak security context": ("deployment.yaml", "{{- toYaml $.Values.containerSecurityContext | nindent 12 }}", "{}"),
        "configuration key the services do not know": ("_helpers.tpl", '"log_format"', '"logformat"'),
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
