"""A throwaway PostgreSQL database on the local server (127.0.0.1:5432, user postgres, trust auth)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@contextmanager
def throwaway_database() -> Iterator[str]:
    """Create a database of its own, yield its SQLAlchemy URL, drop it afterwards. A skip on a laptop without
    PostgreSQL; a failure in CI (which must install and start it)."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable in CI ({err}): .ci/run must install and start it")
        pytest.skip(f"PostgreSQL is not reachable: {err}")
    name = f"inference_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE ends leftover connections
