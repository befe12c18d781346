"""The container packaging, checked without a container engine: the Dockerfile passes
hadolint, the Kubernetes manifests validate against the API schemas (strict), and the
compose file wires the registry to its PostgreSQL."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    res = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_runs_serve_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["/venv/bin/gati-registry", "serve"\]$', text, re.M)
    assert re.search(r"^USER 10001$", text, re.M)
    assert 'VOLUME ["/data"]' in text and "EXPOSE 8080" in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/healthz", text, re.M)


def test_kubernetes_manifests_validate() -> None:
    kinds = set()
    for path in sorted((ROOT / "packaging" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
            kinds.add(doc["kind"])
    assert kinds >= {"Deployment", "Service", "PersistentVolumeClaim", "Job", "ConfigMap", "Secret"}
    deployment = yaml.safe_load((ROOT / "packaging/kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] >= 2
    # the rollout order of docs/operations.md: a new pod joins before an old one leaves
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_compose_wires_the_registry_to_postgres() -> None:
    compose = yaml.safe_load((ROOT / "packaging" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"registry", "postgres"}
    registry = services["registry"]
    assert registry["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "@postgres:5432/" in registry["environment"]["GATI_REGISTRY_DATABASE__URL"]
    assert registry["ports"] == ["8080:8080"] and registry["volumes"] == ["registry-data:/data"]
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
