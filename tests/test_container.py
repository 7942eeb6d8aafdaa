"""The container image, built for real: deploy/containerize.sh makes the Bento and the image with podman on the local
base, the image runs as it would in Kubernetes (read-only root filesystem, non-root, no capabilities) and serves every
family with the pinned model versions; the batch scorer runs from the same image. The Containerfile of either base
(local, slim) is rendered without an engine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from deploy.bases import base_images, bentofile_for
from tests.utils.containers import TEST_VERSION, podman
from tests.utils.servers import PROJECT_ROOT, free_port

IMAGE = f"localhost/inference:{TEST_VERSION}"
# What Kubernetes gives the pod (k8s/base/deployment.yaml): a read-only root, writable /tmp and metrics directory.
RUN_LIKE_KUBERNETES = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    "/home/bentoml/prometheus_multiproc_dir:rw,U",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


# The image was 708 MiB with the demo models when measured by hand (docs/deployment.md, 2026-12-01; 636 MiB before
# ONNX Runtime): well over this means something big slipped in (a toolchain, a second copy of the models, the NCCL
# wheel of `xgboost`).
MAX_IMAGE_MIB = 780


def model_pins() -> dict[str, str]:
    lines = (PROJECT_ROOT / "models.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def manifest_pod(path: str) -> dict:
    """The pod template of a Deployment or CronJob manifest under k8s/."""
    document = yaml.safe_load((PROJECT_ROOT / "k8s" / path).read_text())
    spec = document["spec"]["jobTemplate"]["spec"] if document["kind"] == "CronJob" else document["spec"]
    return spec["template"]["spec"]


@pytest.fixture(scope="module")
def image(service_image) -> str:
    assert service_image == IMAGE  # the name containerize.sh promises for the version
    return service_image


@pytest.fixture(scope="module")
def container(image) -> Iterator[str]:
    port = free_port()
    name = f"inference-test-{port}"
    podman("run", "--detach", "--name", name, *RUN_LIKE_KUBERNETES, "-p", f"127.0.0.1:{port}:3000", image)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the container never became ready:\n{podman('logs', name, check=False).stderr[-4000:]}")
        yield url
    finally:
        podman("rm", "--force", name, check=False)


@pytest.mark.container
@pytest.mark.slow
def test_the_image_runs_as_a_non_root_user_and_holds_no_compiler(image):
    assert podman("image", "inspect", image, "--format", "{{.Config.User}}").stdout.strip() == "bentoml"
    # uid 1034 (docs/deployment.md), the uid the manifests run the service and the batch scorer as.
    assert podman("run", "--rm", image, "id", "-u").stdout.strip() == "1034"
    for manifest in ("base/deployment.yaml", "batch/scorer-pod.yaml"):
        assert manifest_pod(manifest)["securityContext"]["runAsUser"] == 1034, manifest
    # One name per `command -v`: dash, the image's sh, looks only at the first of several.
    tools = ("gcc", "cc", "g++", "make", "ld", "as")
    script = "; ".join(f"command -v {tool} || true" for tool in tools)
    assert podman("run", "--rm", image, "sh", "-c", script).stdout.strip() == ""
    assert podman("run", "--rm", image, "sh", "-c", "command -v python3").stdout.strip()  # the check can see


@pytest.mark.container
@pytest.mark.slow
def test_the_image_stays_under_its_size_bound(image):
    size_mib = int(podman("image", "inspect", image, "--format", "{{.Size}}").stdout.strip()) / 2**20
    print(f"{image}: {size_mib:.0f} MiB")
    assert 0 < size_mib < MAX_IMAGE_MIB


@pytest.mark.container
@pytest.mark.slow
def test_the_container_serves_every_family_with_the_pinned_versions(container):
    with httpx.Client(base_url=container, timeout=30) as http:
        skills = http.post(
            "/api/v1/skills/infer",
            json={"student_id": "s-1", "skill": "creativity", "features": {"novel_idea_count": 4}},
        )
        assert skills.status_code == 200 and 0 <= skills.json()["score"] <= 1
        intent = http.post("/api/classify", json={"text": "dentist near me"}, headers={"X-Model-Preference": "classic"})
        assert intent.status_code == 200 and intent.json()["variant"] == "classic"
        pair = http.post("/predict", json={"text1": "a cat sat", "text2": "a cat was sitting"})
        assert pair.status_code == 200 and pair.json()["prediction"] in (0, 1)
        pins = model_pins()
        served = http.get("/api/v1/models").json()
        versions = {family["family"]: family for family in served["families"]}
        assert set(versions) == {"skills", "intent", "textpair"}
        assert skills.json()["model_version"] == pins["INFERENCE_SKILLS_VERSION"]
        assert intent.json()["model_version"] == pins["INFERENCE_INTENT_VERSION"]
        assert pair.json()["model"]["version"] == pins["INFERENCE_TEXTPAIR_VERSION"]
        assert http.get("/metrics").status_code == 200


@pytest.mark.container
@pytest.mark.slow
def test_the_batch_scorer_runs_from_the_image_as_the_cronjob_runs_it(image, tmp_path):
    # The image carries no demo data generator (train/ stays out of the Bento): the students are written on the
    # host into a database the container reads and writes, as a team's own feature table would be.
    data = tmp_path / "data"
    data.mkdir()
    database = data / "batch.db"
    subprocess.run(
        [sys.executable, "-m", "train.data.population", "--students", "300", "--database-url", f"sqlite:///{database}"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    os.chown(data, 1034, 1034)  # the image's user writes the database and its journal there
    os.chown(database, 1034, 1034)
    command = manifest_pod("batch/nightly.yaml")["containers"][0]["command"]
    container = manifest_pod("batch/scorer-pod.yaml")["containers"][0]
    plain_env = [f"{item['name']}={item['value']}" for item in container["env"] if "value" in item]
    script = " ".join(command).replace("--mode incremental", "--mode full")
    run = podman(
        "run",
        "--rm",
        *RUN_LIKE_KUBERNETES,
        "--workdir",
        container["workingDir"],
        *(option for variable in plain_env for option in ("-e", variable)),
        "-v",
        f"{data}:/data",
        "-e",
        "DATABASE_URL=sqlite:////data/batch.db",  # the Secret's value in Kubernetes
        image,
        "sh",
        "-c",
        script,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "300 students read, 2,100 assessments written" in run.stderr
    assert f"; models {model_pins()['INFERENCE_SKILLS_VERSION']}\n" in run.stderr


@pytest.mark.parametrize("base", ["local", "slim"])
def test_the_containerfile_builds_on_either_base_without_a_toolchain(base, tmp_path):
    """What `bentoml containerize` renders for a Bento of each base, through deploy/containerfile.j2."""
    from bentoml._internal.bento.build_config import BentoBuildConfig
    from bentoml._internal.container.generate import generate_containerfile

    config = BentoBuildConfig.from_yaml(io.StringIO(bentofile_for(base))).with_defaults()
    containerfile = generate_containerfile(config.docker, str(PROJECT_ROOT), conda=config.conda, bento_fs=tmp_path)
    containerfile = [line for line in containerfile.splitlines() if line.strip()]
    assert f"FROM {base_images()[base]} as base-container" in containerfile
    # The local base carries uv; on the slim one BentoML's own step installs it before the packages.
    assert "RUN command -v uv >/dev/null || pip install uv" in containerfile
    assert any(line.startswith("RUN mkdir -p /home/bentoml/bentos") for line in containerfile)  # read-only root
    assert containerfile[-2:] == ["USER bentoml", 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]']
    assert not [line for line in containerfile if "apt-get" in line or "build-essential" in line]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [(["--base", "alpine"], "--base is local or slim"), (["--engine", "nerdctl"], "--engine is podman or docker")],
)
def test_containerize_refuses_an_unknown_base_or_engine(arguments, complaint):
    run = subprocess.run(
        ["deploy/containerize.sh", *arguments, TEST_VERSION],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and complaint in run.stderr
