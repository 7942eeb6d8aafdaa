"""Start real `bentoml serve` processes on free loopback ports and wait for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.canary import backend_home

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).parent / "bentoml")


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The log once it holds `text`; AssertionError with the log's end when it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the log within {timeout} s:\n{self.log()[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_server(
    log_dir: Path,
    *,
    target: str = "service:Inference",
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 90.0,
    port: int | None = None,
    command: list[str] | None = None,
) -> Iterator[RunningServer]:
    """Run `bentoml serve <target>` (or `command`, given the host and port) from the project root, on `port` or a
    free one; stop it (SIGTERM, then SIGKILL) on exit."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{port}.log"
    # Each server gets a BentoML home of its own, sharing the stores: BentoML keeps its Prometheus files in the
    # home and wipes them at every start, so a server started later would otherwise empty another's /metrics.
    shared = (env or {}).get("BENTOML_HOME") or os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    home = backend_home(log_dir, "server", port, shared=Path(shared))
    full_env = {**os.environ, **(env or {}), "BENTOML_HOME": str(home)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*(command or [BENTOML, "serve", target]), "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        wait_for(running, "/readyz" if wait_ready else "/livez", timeout)
        yield running
    finally:
        stop(process)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether `predicate` came true within `timeout` seconds, asked every 0.2 s (what a server does by a poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def wait_for(server: RunningServer, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + path, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{server.url}{path} not 200 within {timeout}s:\n{server.log()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
