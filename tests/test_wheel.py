"""The package as a user installs it: the wheel built from pyproject.toml, installed into fresh virtual environments
outside the checkout, holds every package, imports every module, runs each console script, and its Python client
calls a real server; the client's install (`inference[client]`) pulls neither XGBoost nor BentoML.

The wheel is built from a copy of the sources pyproject.toml packages (setuptools reuses a `build/` folder in the
tree it builds in, and would carry files deleted since into the wheel). Two environments, each made with
`python -m venv` in a temporary folder and used from another one, so no module can come from the checkout:
- the full one gets the wheel with `--no-deps`, and the test environment's site-packages after its own, through a
  .pth file, for the third-party packages: the server stack is 170 packages (a minute or more from the index), and
  the check is of the wheel's contents, which every import proves comes from the new environment;
- the client's gets the wheel with its client extra and what pip resolves for it, at the locked versions, from the
  package index: 13 packages in a few seconds, and the check is of the metadata as pip reads it.
Building the wheel (setuptools, in an isolated build environment) and the client's install need the package index.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.utils.needs import unavailable
from tests.utils.servers import PROJECT_ROOT, RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.network]

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
TOP_LEVEL = sorted({name.split(".")[0] for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]})
SERVER_ONLY = ("xgboost", "bentoml", "numpy", "sklearn", "onnxruntime")  # none of them in the client's install


@dataclass(frozen=True)
class Wheel:
    path: Path
    modules: list[str]  # every module the wheel's RECORD lists, dotted
    scripts: list[str]  # its console scripts


@dataclass(frozen=True)
class Environment:
    python: Path
    site_packages: Path

    def run(self, command: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command of this environment's bin/ (python, a console script) from `cwd`, without the variables that
        would lead it back to the checkout's environment."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(self.python.parent / command), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The test environment's pip (`--python` points it at another environment)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout)


def new_environment(folder: Path) -> Environment:
    # Without pip: the test environment's pip installs into it (`pip --python`), which saves ensurepip's seconds.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Environment(python=python, site_packages=Path(purelib))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    scratch = tmp_path_factory.mktemp("wheel")
    probe = pip("download", "--no-deps", "--quiet", "--dest", str(scratch / "probe"), "setuptools>=68")
    if probe.returncode != 0:
        unavailable(f"the package index is out of reach (setuptools, to build the wheel): {probe.stderr[-300:]}")
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    for package in TOP_LEVEL:
        shutil.copytree(PROJECT_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(scratch / "dist"), str(source))
    assert built.returncode == 0, built.stderr
    (path,) = (scratch / "dist").glob("inference-*.whl")
    with zipfile.ZipFile(path) as archive:
        record = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        files = [line.split(",")[0] for line in archive.read(record).decode().splitlines()]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(record.replace("RECORD", "entry_points.txt")).decode())
    modules = [
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in files
        if name.endswith(".py") and ".dist-info/" not in name
    ]
    return Wheel(path=path, modules=sorted(modules), scripts=sorted(entry_points["console_scripts"]))


@pytest.fixture(scope="module")
def full_environment(tmp_path_factory: pytest.TempPathFactory, wheel: Wheel) -> Environment:
    environment = new_environment(tmp_path_factory.mktemp("full") / "venv")
    installed = pip("--python", str(environment.python), "install", "--quiet", "--no-deps", str(wheel.path))
    assert installed.returncode == 0, installed.stderr
    # After the environment's own site-packages: the wheel's packages come first; a .pth line adds a folder to
    # sys.path without running the .pth files in it (the checkout's editable install is one).
    checkout_packages = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (environment.site_packages / "test-environment-packages.pth").write_text("\n".join(sorted(checkout_packages)))
    return environment


@pytest.fixture(scope="module")
def client_environment(tmp_path_factory: pytest.TempPathFactory, wheel: Wheel) -> Environment:
    environment = new_environment(tmp_path_factory.mktemp("client") / "venv")
    constraints = str(PROJECT_ROOT / "requirements.lock")
    requirement = f"{wheel.path}[client]"
    installed = pip("--python", str(environment.python), "install", "--quiet", "-c", constraints, requirement)
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        unavailable(f"the package index is out of reach (the client's dependencies): {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    return environment


def test_the_wheel_holds_every_package_of_the_sources_and_nothing_of_the_checkouts(wheel):
    sources = {
        ".".join(folder.relative_to(PROJECT_ROOT).parts)
        for package in TOP_LEVEL
        for folder in [PROJECT_ROOT / package, *(PROJECT_ROOT / package).rglob("*")]
        if (folder / "__init__.py").is_file() and "__pycache__" not in folder.parts
    }
    assert sources <= set(wheel.modules)
    assert {"inference.client", "inference.serving", "inference.importer", "train.data"} <= set(wheel.modules)
    assert {module.split(".")[0] for module in wheel.modules} == set(TOP_LEVEL)  # no service, tests, tools, deploy


def test_every_module_of_the_wheel_imports_from_the_new_environment(wheel, full_environment, tmp_path):
    script = """
import importlib, json, sys, traceback
failed, outside = {}, []
for name in sys.argv[2:]:
    try:
        module = importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
        continue
    if not module.__file__.startswith(sys.argv[1]):
        outside.append(module.__file__)
print(json.dumps({"failed": failed, "outside": outside}))
"""
    run = full_environment.run(
        "python", "-c", script, str(full_environment.site_packages), *wheel.modules, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["failed"] == {}
    assert result["outside"] == []  # every module from the wheel, none from the checkout


def test_the_wheel_has_the_import_train_and_batch_commands_and_each_answers_help(wheel, full_environment, tmp_path):
    assert wheel.scripts == ["inference-batch", "inference-import", "inference-train"]
    for script in wheel.scripts:
        run = full_environment.run(script, "--help", cwd=tmp_path)
        assert run.returncode == 0, f"{script}: {run.stderr}"
        assert run.stdout.startswith("usage:"), f"{script}: {run.stdout[:200]}"


def test_the_client_install_pulls_neither_xgboost_nor_bentoml(client_environment, tmp_path):
    listed = pip("--python", str(client_environment.python), "list", "--format=json")
    installed = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert "inference" in installed
    assert not installed & {"xgboost", "xgboost-cpu", "bentoml", "scikit-learn", "numpy", "onnxruntime"}
    check = f"import importlib.util, inference.client, inference.client.smoke; print([n for n in {SERVER_ONLY!r} if importlib.util.find_spec(n)])"
    run = client_environment.run("python", "-c", check, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


CLIENT_CALLS = """
import json, sys
import inference.client
from inference.client import InferenceClient
with InferenceClient(sys.argv[1]) as client:
    health = client.health()
    intent = client.classify("cheap flights to lisbon in may")
print(json.dumps({"status": health.status, "intent": intent.intent, "module": inference.client.__file__}))
"""


@pytest.mark.server
@pytest.mark.parametrize("install", ["full_environment", "client_environment"])
def test_the_installed_python_client_calls_a_real_server(install, request, server: RunningServer, tmp_path):
    environment: Environment = request.getfixturevalue(install)
    run = environment.run("python", "-c", CLIENT_CALLS, server.url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["status"] == "ok"
    assert answer["intent"]
    assert answer["module"].startswith(str(environment.site_packages))
