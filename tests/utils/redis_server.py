"""A real Redis of the tests' own (its own port, nothing saved), which a test may stop and start again."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.utils.needs import tool
from tests.utils.servers import free_port


def require_redis_server() -> str:
    """The redis-server binary (tests.utils.needs: a skip on a laptop without one, a failure in CI)."""
    return tool("redis-server", "apt-get install redis-server")


class RedisServer:
    def __init__(self, work_dir: Path) -> None:
        self.binary = require_redis_server()
        self.port = free_port()
        self.work_dir = work_dir
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 1) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work_dir),
                "--enable-debug-command",  # DEBUG SLEEP makes a slow Redis for the timeout tests
                "local",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
