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


def render(path):
    rendered = subprocess.run(
        ["kubectl", "kustomize", path], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(rendered.stdout)}


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed; `kubectl kustomize` renders offline"
)
def test_batch_cronjobs_run_the_scorer_nightly_and_sharded_with_arguments_the_cli_accepts():
    from inference.batch.__main__ import _parser
    from inference.settings import Settings
    from inference.sharding import Shard

    jobs = render("k8s/batch")
    assert set(jobs) == {"skill-scoring-nightly", "skill-scoring-full"}
    nightly, full = jobs["skill-scoring-nightly"], jobs["skill-scoring-full"]
    assert nightly["spec"]["schedule"] == "0 2 * * *" and nightly["spec"]["concurrencyPolicy"] == "Forbid"
    assert full["spec"]["suspend"] is True
    parser = _parser(Settings())
    service_image = render("k8s/base")["inference"]["spec"]["template"]["spec"]["containers"][0]["image"]
    for job in (nightly, full):
        job_spec = job["spec"]["jobTemplate"]["spec"]
        pod = job_spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == service_image and not container["image"].endswith(":latest")
        assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["limits"] and container["resources"]["requests"]
        env = {item["name"]: item for item in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
        assert container["command"][:3] == ["python", "-m", "inference.batch"]
        # Each worker's arguments, with the index Kubernetes gives it, parse to its own shard.
        workers = job_spec.get("completions", 1)
        for index in range(workers):
            arguments = [part.replace("$(JOB_COMPLETION_INDEX)", str(index)) for part in container["command"][3:]]
            assert parser.parse_args(arguments).shard == Shard(index, workers)
    assert nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "incremental"
    full_spec = full["spec"]["jobTemplate"]["spec"]
    assert full_spec["completionMode"] == "Indexed"
    assert full_spec["completions"] == full_spec["parallelism"] == 4
