"""The service's image as the tests build it: deploy/containerize.sh with podman on the local Debian base."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.utils.servers import PROJECT_ROOT

# One image per test process: with the suite spread over processes (pytest-xdist), each builds and removes its own.
TEST_VERSION = f"0.0.0-test{os.environ.get('PYTEST_XDIST_WORKER', '')}"
# deploy/containers.conf: the podman settings this machine needs (runc, cgroupfs, open-file limits).
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(PROJECT_ROOT / "deploy" / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, check=check, timeout=timeout
    )


def build_service_image(version: str = TEST_VERSION) -> str:
    """`deploy/containerize.sh --base local <version>`: the image's name (its last log line, with time and size, printed)."""
    if shutil.which("podman") is None and os.environ.get("CI") != "true":
        pytest.skip("podman is not installed (deploy/containerize.sh installs it when run as root)")
    build = subprocess.run(
        ["deploy/containerize.sh", "--base", "local", version],  # no registry serves images here
        cwd=PROJECT_ROOT,
        env={**PODMAN_ENV, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    print(build.stderr.strip().splitlines()[-1])  # "built ... in N s, M MiB"
    return build.stdout.strip()
