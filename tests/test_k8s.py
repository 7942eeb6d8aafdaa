"""The kustomize base renders offline and probes the service's real health endpoints."""

import shutil
import subprocess

import pytest
import yaml

from tests.utils.servers import PROJECT_ROOT


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed; `kubectl kustomize` renders offline"
)
def test_base_renders_a_deployment_probing_livez_and_readyz():
    rendered = subprocess.run(
        ["kubectl", "kustomize", "k8s/base"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered.stdout)}
    assert set(objects) == {"Deployment", "Service"}
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == objects["Service"]["spec"]["selector"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
