"""The Bento's build settings: the base image the containerize script makes, a template that exists, packages
from the runtime lock (not locked again online), exact model versions."""

import re

import yaml

from tests.utils.servers import PROJECT_ROOT

BENTOFILE = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text())
SCRIPT = (PROJECT_ROOT / "deploy" / "containerize.sh").read_text()


def test_the_bento_builds_on_a_registry_base_and_the_local_base_is_the_one_the_script_makes():
    from deploy.bases import LOCAL_IMAGE, base_images

    suite = re.search(r"^DEBIAN_SUITE=(\S+)$", SCRIPT, flags=re.MULTILINE).group(1)
    uv = re.search(r"^UV_VERSION=(\S+)$", SCRIPT, flags=re.MULTILINE).group(1)
    assert f"localhost/inference-base:{suite}-py3.11-uv{uv}" == LOCAL_IMAGE
    # `bentoml build` + `bentoml containerize` as BentoML users run them: a base a registry serves.
    assert BENTOFILE["docker"]["base_image"] == base_images()["slim"] == "docker.io/library/python:3.11-slim-bookworm"
    assert re.search(r'^BASE="\$\{BASE:-slim\}"$', SCRIPT, flags=re.MULTILINE)  # the script's default too
    assert (PROJECT_ROOT / BENTOFILE["docker"]["dockerfile_template"]).is_file()


def test_packages_are_not_locked_online_and_models_are_pinned_to_exact_versions():
    assert BENTOFILE["python"]["lock_packages"] is False
    assert all(re.fullmatch(r"[a-z_-]+:v\d+\.\d+\.\d+", tag) for tag in BENTOFILE["models"])


def test_the_bento_carries_every_runtime_dependency_and_not_the_import_time_converters():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    served = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    import_time_only = {"onnxmltools", "onnx"}  # the ONNX conversion runs when a model is imported, not served
    expected = {Requirement(line).name for line in served} - import_time_only
    # The image installs requirements/runtime.txt, the lock of these direct pins (tests/test_runtime_lock.py: each
    # at a version inside pyproject.toml's range).
    assert BENTOFILE["python"]["requirements_txt"] == "requirements/runtime.txt"
    lines = (PROJECT_ROOT / "requirements" / "runtime.in").read_text().splitlines()
    direct = {Requirement(line.split("#")[0]).name for line in lines if line.split("#")[0].strip()}
    assert direct == expected
