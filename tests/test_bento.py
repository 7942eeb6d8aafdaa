"""`bentoml build` gives a versioned Bento that pins the models and serves the same answers."""

import subprocess

import httpx
import pytest
import yaml

from deploy.locks import RUNTIME_LOCK, read_pins
from tests.utils.requests import student_items
from tests.utils.servers import BENTOML, PROJECT_ROOT, start_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

BENTO_VERSION = "0.0.1"


@pytest.fixture(scope="module")
def bento(trained_versions, text_reports, session_dir):
    build = subprocess.run(
        [BENTOML, "build", "--version", BENTO_VERSION, "--output", "tag"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return f"inference:{BENTO_VERSION}"


def test_the_bento_pins_exact_model_versions(bento, session_dir):
    manifest = yaml.safe_load(
        (session_dir / "bentoml" / "bentos" / "inference" / BENTO_VERSION / "bento.yaml").read_text()
    )
    tags = sorted(model["tag"] for model in manifest["models"])
    assert len(tags) == 11 and all(tag.endswith(":v1.0.0") for tag in tags)
    src = session_dir / "bentoml" / "bentos" / "inference" / BENTO_VERSION / "src"
    assert (src / "models.env").is_file() and (src / "service.py").is_file()
    assert not (src / "tests").exists()


def test_the_bento_installs_exactly_the_runtime_lock(bento, session_dir):
    requirements = (
        session_dir / "bentoml" / "bentos" / "inference" / BENTO_VERSION / "env" / "python" / "requirements.txt"
    )
    assert read_pins(requirements) == read_pins(RUNTIME_LOCK)  # every transitive package pinned, none floats
    assert not requirements.with_name("requirements.lock.txt").exists()  # BentoML did not re-lock it at build time


def test_the_bento_serves_the_same_answers_as_the_project(bento, server, session_dir):
    items = student_items(50, seed=404)
    expected = httpx.post(server.url + "/api/v1/skills/infer/batch", json={"items": items}, timeout=30).json()
    with start_server(session_dir / "logs-bento", target=bento) as from_bento:
        served = httpx.post(from_bento.url + "/api/v1/skills/infer/batch", json={"items": items}, timeout=30).json()
        models = httpx.get(from_bento.url + "/api/v1/skills/models").json()["models"]
        families = httpx.get(from_bento.url + "/api/v1/models").json()["families"]
        classified = httpx.post(from_bento.url + "/api/classify", json={"text": "chase login"}).json()
        paired = httpx.post(from_bento.url + "/predict", json={"text1": "a dog", "text2": "a cat"}).json()
    assert served == expected
    assert {entry["served_version"] for entry in models} == {"v1.0.0"}
    assert all(family["loaded"] for family in families) and len(families) == 3
    assert classified["intent"] == "navigational" and paired["model"]["version"] == "v1.0.0"
