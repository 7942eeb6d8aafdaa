"""deploy/compose.yaml, rendered by the real Docker Compose (`config`, no engine needed): the service runs with the
Kubernetes settings and security context, and the batch scorer with the CronJob's command, so they cannot drift."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.utils.compose import docker_compose
from tests.utils.servers import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "deploy" / "compose.yaml"
SECRETS_EXAMPLE = PROJECT_ROOT / "deploy" / "secrets.env.example"
K8S = PROJECT_ROOT / "k8s"
# No engine: `config` must work where no Docker or podman runs.
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def env_file(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def pod_spec(path: str) -> dict:
    """The pod template of a Deployment or CronJob manifest under k8s/."""
    document = yaml.safe_load((K8S / path).read_text())
    spec = document["spec"]["jobTemplate"]["spec"] if document["kind"] == "CronJob" else document["spec"]
    return spec["template"]["spec"]


def seconds(duration: str) -> int:
    """Compose's rendering of a duration (`30s`, `1m0s`) in seconds."""
    minutes, _, rest = duration.rpartition("m")
    return int(minutes or 0) * 60 + int(rest.removesuffix("s"))


def render(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    variables = {key: value for key, value in os.environ.items() if not key.endswith("_IMAGE")}
    return subprocess.run(
        [str(docker_compose()), "-f", str(COMPOSE_FILE), *arguments, "config", "--format", "json"],
        cwd=PROJECT_ROOT,
        env={**variables, **NO_ENGINE, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    rendered = render("--env-file", str(SECRETS_EXAMPLE), "--profile", "batch")
    assert rendered.returncode == 0, rendered.stderr
    return json.loads(rendered.stdout)["services"]


def test_compose_renders_the_service_its_stores_and_the_scorer_on_the_image_containerize_builds(services):
    assert set(services) == {"inference", "redis", "postgres", "batch-scorer"}
    assert services["inference"]["image"] == services["batch-scorer"]["image"] == "localhost/inference:0.1.0"
    assert services["redis"]["image"] == "redis:7.4-bookworm"
    assert services["redis"]["command"][-2:] == ["--protected-mode", "no"]  # reached from the service's container
    assert services["postgres"]["image"] == "postgres:16-bookworm"
    assert services["inference"]["ports"][0]["host_ip"] == "127.0.0.1"  # loopback only


def test_the_service_has_the_kubernetes_settings_and_the_secrets_keys(services):
    environment = services["inference"]["environment"]
    settings = env_file(K8S / "base" / "settings.env")
    assert {name: environment.get(name) for name in settings} == settings
    container = pod_spec("base/deployment.yaml")["containers"][0]
    secret_names = {item["name"] for item in container["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    # Each Secret key is set here (the URLs) or read from deploy/secrets.env (the tokens), documented in its example.
    tokens = set(env_file(SECRETS_EXAMPLE)) - {"POSTGRES_PASSWORD"}
    assert secret_names == {"CACHE_URL", "DATABASE_URL", "INFERENCE_CONTROL_URL"} | tokens
    assert environment["CACHE_URL"] == "redis://redis:6379/0"
    database = "postgresql+psycopg://inference:change-me@postgres:5432/inference"
    assert environment["DATABASE_URL"] == environment["INFERENCE_CONTROL_URL"] == database
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "change-me"


@pytest.mark.parametrize(
    ("service", "manifest"), [("inference", "base/deployment.yaml"), ("batch-scorer", "batch/scorer-pod.yaml")]
)
def test_the_containers_run_with_the_kubernetes_security_context(services, service, manifest):
    pod = pod_spec(manifest)
    container = pod["containers"][0]
    rendered = services[service]
    assert rendered["user"] == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    assert rendered["read_only"] is container["securityContext"]["readOnlyRootFilesystem"] is True
    assert rendered["cap_drop"] == container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert rendered["security_opt"] == ["no-new-privileges:true"]
    # The pod's writable emptyDir volumes are the container's tmpfs mounts.
    assert {mount.split(":")[0] for mount in rendered["tmpfs"]} == {m["mountPath"] for m in container["volumeMounts"]}
    metrics = [mount for mount in rendered["tmpfs"] if mount.startswith("/home/bentoml/prometheus_multiproc_dir")]
    assert all(mount.endswith(f":uid={rendered['user'].replace(':', ',gid=')}") for mount in metrics)
    assert seconds(rendered["stop_grace_period"]) == pod["terminationGracePeriodSeconds"]


def test_the_service_is_healthy_when_ready_as_the_probes_say(services):
    probe = pod_spec("base/deployment.yaml")["containers"][0]["readinessProbe"]["httpGet"]
    healthcheck = " ".join(services["inference"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:3000{probe['path']}" in healthcheck
    for store in ("redis", "postgres"):
        assert services["inference"]["depends_on"][store]["condition"] == "service_healthy"
        assert services[store]["healthcheck"]["test"]


def test_the_scorer_runs_the_cronjobs_command_once(services):
    scorer = services["batch-scorer"]
    # Kubernetes' `command` replaces the image's entrypoint, as compose's `entrypoint` does.
    assert scorer["entrypoint"] == pod_spec("batch/nightly.yaml")["containers"][0]["command"]
    container = pod_spec("batch/scorer-pod.yaml")["containers"][0]
    assert scorer["working_dir"] == container["workingDir"]
    assert set(scorer["environment"]) == {item["name"] for item in container["env"]}
    assert scorer["restart"] == "no" and scorer["profiles"] == ["batch"]
    assert scorer["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_refuses_to_start_without_a_database_password():
    rendered = render(POSTGRES_PASSWORD="")
    assert rendered.returncode != 0 and "set POSTGRES_PASSWORD" in rendered.stderr
