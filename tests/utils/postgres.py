"""A throwaway PostgreSQL database on the local server (127.0.0.1:5432, user postgres, trust auth), or a PostgreSQL
server of a test's own that it can restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.utils.needs import unavailable
from tests.utils.servers import free_port

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@contextmanager
def throwaway_database() -> Iterator[str]:
    """Create a database of its own, yield its SQLAlchemy URL, drop it afterwards. A skip on a laptop without
    PostgreSQL; a failure in CI (which must install and start it)."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        unavailable(f"PostgreSQL is not reachable: {err}")
    name = f"inference_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE ends leftover connections


@dataclass
class Cluster:
    """A PostgreSQL server of a test's own (its own data directory and port), which the test may restart."""

    url: str
    data: Path
    bindir: Path
    log: Path

    def restart(self) -> None:
        """A fast restart: every connection is cut, as when the server is restarted for maintenance."""
        restart = [
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            "fast",
            "-w",
            "restart",
        ]
        _as_postgres(restart, self.log)


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl from Debian's PostgreSQL packages, on a free loopback port, trust auth; removed afterwards."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        unavailable(
            "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are not installed (apt-get install postgresql)"
        )
    bindir = found[-1].parent
    base = Path(tempfile.mkdtemp(prefix="inference-pg-"))
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the cluster belongs to the postgres user
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    try:
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"], log)
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], log)
        yield Cluster(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data, bindir, log)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], log)
        shutil.rmtree(base, ignore_errors=True)


def _as_postgres(command: list[str], log: Path) -> None:
    """Run a PostgreSQL tool (as the postgres user when root); its output goes to a file, never to a pipe that a
    server it starts would hold open."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    output = log.with_name("tools.log")
    with output.open("ab") as sink:
        returncode = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=120).returncode
    if returncode != 0:
        detail = "".join(path.read_text(errors="replace")[-2000:] for path in (output, log) if path.exists())
        raise subprocess.CalledProcessError(returncode, command, detail)
