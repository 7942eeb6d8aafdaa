"""Runtime control: the admin changes every worker and every replica must follow (version routes today), kept in
one store, versioned, with an audit record of each change.

- `FileControl` (the default): a JSON file in the server's state directory, shared by the workers of one server.
  Enough for one server; a second replica would not see it.
- `SqlControl` (`INFERENCE_CONTROL_URL=postgresql+psycopg://...`): two tables in PostgreSQL, shared by every
  replica of a deployment. PostgreSQL rather than Redis: the deployment has it already (ratings, the prediction
  log, the nightly scores), it keeps what it is given (the production Redis is a cache, allowed to evict and to
  restart empty, and a rollback that silently reverts is worse than none), and one transaction both checks the
  revision a change was based on and writes the change with its audit row. A SQLite URL works for replicas on
  one host (and the tests).

Every change names the revision it was based on; when the store has moved on since (another admin call won),
the change is refused with `ControlConflict` and nothing is written. Workers poll `read()` (about once a second)
and apply any newer revision; a worker that cannot reach the store keeps what it applied last and says so.

The store also keeps the records of the admin changes that run as operations (loading a version takes longer
than an HTTP call should wait, `inference/serving/operations.py`), so that any worker of any replica can answer
`GET /admin/operations/{id}`: files in `admin-operations/` beside the state file, or the `control_operations`
table. Records not updated for a day are dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, ProgrammingError

from inference.errors import InferenceError

STATE_FILE = "admin-state.json"
AUDIT_FILE = "admin-audit.jsonl"
OPERATIONS_DIR = "admin-operations"
State = dict[str, Any]  # {"routes": {family: {"stable": version, "weights": {version: weight}}}}
# A long admin change's record, by its `id` (inference/serving/operations.py): status, action, result or error.
OperationRecord = dict[str, Any]
OPERATION_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex: checked before an id names a file or a row
KEEP_OPERATIONS_S = 24 * 3600.0  # records not updated for this long are dropped


class ControlConflict(InferenceError):
    """The control state changed since the revision a change was based on: nothing was changed."""

    code = "conflict"
    status = HTTPStatus.CONFLICT


class ControlUnavailable(InferenceError):
    """The control store could not be reached: nothing was changed."""

    code = "control_store_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE


@dataclass(frozen=True)
class Snapshot:
    revision: int  # 0: nothing was ever changed
    state: State
    changed_at: str | None = None
    changed_by: str | None = None

    def routes(self) -> dict[str, dict[str, Any]]:
        routes = self.state.get("routes", {})
        return routes if isinstance(routes, dict) else {}


class ControlStore(Protocol):
    kind: str  # "file", "postgresql", "sqlite": said on /health

    def read(self) -> Snapshot: ...

    def commit(self, based_on: int, change: Callable[[State], State], *, actor: str, action: str) -> Snapshot:
        """Apply `change` to the state of revision `based_on` and store it as the next revision with an audit
        row; `ControlConflict` (nothing written) when the store is no longer at `based_on`."""
        ...

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest changes, newest first: revision, when, by which token name, what."""
        ...

    def save_operation(self, record: OperationRecord) -> OperationRecord:
        """Write an operation's record under its `id` (a new one, or a later status of one), stamped with
        `updated_at`, and drop the records not updated for a day; returns the record as written."""
        ...

    def operation(self, operation_id: str) -> OperationRecord | None:
        """An operation's record; None when there is none (an id never started, or pruned)."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def store_unavailable(kind: str, err: Exception) -> ControlUnavailable:
    first_line = str(err).splitlines()[0] if str(err) else ""
    return ControlUnavailable(
        f"the control store ({kind}) could not be reached ({type(err).__name__}: {first_line}); nothing was changed"
    )


def _conflict(based_on: int, current: Snapshot) -> ControlConflict:
    return ControlConflict(
        f"the control state changed while this call was made: based on revision {based_on}, now at revision "
        f"{current.revision} ({current.changed_by or 'unknown'} at {current.changed_at or 'unknown'}); nothing was "
        "changed: read GET /admin/routes and try again"
    )


class FileControl:
    """The workers of one server: a JSON file replaced atomically, changes serialised by a file lock."""

    kind = "file"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / STATE_FILE
        self.audit_path = directory / AUDIT_FILE
        self.operations_path = directory / OPERATIONS_DIR
        self._lock_path = directory / ".lock"

    def read(self) -> Snapshot:
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return Snapshot(0, {})
        if not isinstance(stored, dict):
            return Snapshot(0, {})
        return Snapshot(
            int(stored.get("revision", 0)), stored.get("state", {}), stored.get("changed_at"), stored.get("changed_by")
        )

    def commit(self, based_on: int, change: Callable[[State], State], *, actor: str, action: str) -> Snapshot:
        with self._lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current.revision != based_on:
                raise _conflict(based_on, current)
            changed = Snapshot(based_on + 1, change(json.loads(json.dumps(current.state))), _now(), actor)
            record = {"revision": changed.revision, "state": changed.state}
            record |= {"changed_at": changed.changed_at, "changed_by": actor}
            _replace_atomically(self.path, json.dumps(record))
            with self.audit_path.open("a") as audit:
                audit.write(json.dumps({**record, "action": action}) + "\n")
            return changed

    def save_operation(self, record: OperationRecord) -> OperationRecord:
        path = self._operation_path(record["id"])
        if path is None:
            raise ValueError(f"operation id {record['id']!r} is not 32 hexadecimal characters")
        stamped = {**record, "updated_at": _now()}
        self.operations_path.mkdir(exist_ok=True)
        _replace_atomically(path, json.dumps(stamped))
        cutoff = time.time() - KEEP_OPERATIONS_S
        for old in self.operations_path.glob("*.json"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except FileNotFoundError:  # another worker pruned it first
                continue
        return stamped

    def operation(self, operation_id: str) -> OperationRecord | None:
        path = self._operation_path(operation_id)
        if path is None:
            return None
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return stored if isinstance(stored, dict) else None

    def _operation_path(self, operation_id: str) -> Path | None:
        return self.operations_path / f"{operation_id}.json" if OPERATION_ID.match(operation_id) else None

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        try:
            lines = self.audit_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in reversed(lines[-limit:])]


def _replace_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


_metadata = MetaData()
control_state = Table(
    "control_state",
    _metadata,
    Column("id", Integer, primary_key=True),  # one row: id 1
    Column("revision", Integer, nullable=False),
    Column("state", Text, nullable=False),  # JSON
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(128), nullable=False),
)
control_audit = Table(
    "control_audit",
    _metadata,
    Column("revision", Integer, primary_key=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(128), nullable=False),
    Column("action", Text, nullable=False),
    Column("state", Text, nullable=False),  # the whole state after the change (JSON)
)
control_operations = Table(
    "control_operations",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # running, succeeded, failed
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("record", Text, nullable=False),  # the whole record (JSON)
)


class SqlControl:
    """Every replica of a deployment: one row of state and an audit table, changed by compare-and-set on the
    revision inside one transaction; the long changes' records in a table of their own."""

    def __init__(self, url: str, *, connect_timeout_s: float = 3.0) -> None:
        self.kind = url.split(":", 1)[0].split("+", 1)[0]
        connect_args: dict[str, Any] = {}
        if self.kind == "postgresql":
            connect_args["connect_timeout"] = max(1, round(connect_timeout_s))
        self.engine: Engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        if self.kind == "sqlite":
            _serialise_sqlite_writers(self.engine)
        self._created = False

    def _ensure_tables(self) -> None:
        if not self._created:
            try:
                _metadata.create_all(self.engine, checkfirst=True)
            except (IntegrityError, ProgrammingError):  # another replica created them at the same moment
                _metadata.create_all(self.engine, checkfirst=True)
            self._created = True

    def read(self) -> Snapshot:
        self._ensure_tables()
        with self.engine.connect() as connection:
            row = connection.execute(select(control_state).where(control_state.c.id == 1)).first()
        if row is None:
            return Snapshot(0, {})
        return Snapshot(row.revision, json.loads(row.state), _iso(row.changed_at), row.changed_by)

    def commit(self, based_on: int, change: Callable[[State], State], *, actor: str, action: str) -> Snapshot:
        self._ensure_tables()
        try:
            with self.engine.begin() as connection:
                row = connection.execute(select(control_state).where(control_state.c.id == 1)).first()
                current = (
                    Snapshot(0, {})
                    if row is None
                    else Snapshot(row.revision, json.loads(row.state), _iso(row.changed_at), row.changed_by)
                )
                if current.revision != based_on:
                    raise _conflict(based_on, current)
                state = change(current.state)
                when = datetime.now(UTC)
                values = {"revision": based_on + 1, "state": json.dumps(state), "changed_at": when, "changed_by": actor}
                if row is None:  # two first changes at once: the primary key lets one in
                    connection.execute(insert(control_state).values(id=1, **values))
                else:  # two changes at once: the revision in the WHERE lets one in
                    done = connection.execute(
                        update(control_state)
                        .where(control_state.c.id == 1, control_state.c.revision == based_on)
                        .values(**values)
                    )
                    if done.rowcount != 1:
                        raise _conflict(based_on, self.read())
                # The audit's primary key is the revision: a second writer of the same revision fails here too.
                connection.execute(insert(control_audit).values(action=action, **values))
        except IntegrityError as err:
            raise _conflict(based_on, self.read()) from err
        return Snapshot(based_on + 1, state, when.isoformat(timespec="seconds"), actor)

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        self._ensure_tables()
        with self.engine.connect() as connection:
            rows = connection.execute(select(control_audit).order_by(control_audit.c.revision.desc()).limit(limit))
            return [
                {
                    "revision": row.revision,
                    "changed_at": _iso(row.changed_at),
                    "changed_by": row.changed_by,
                    "action": row.action,
                    "state": json.loads(row.state),
                }
                for row in rows
            ]

    def save_operation(self, record: OperationRecord) -> OperationRecord:
        self._ensure_tables()
        when = datetime.now(UTC)
        stamped = {**record, "updated_at": when.isoformat(timespec="seconds")}
        values = {"status": stamped["status"], "updated_at": when, "record": json.dumps(stamped)}
        with self.engine.begin() as connection:
            # Only the worker running an operation writes its record: no two writers race on one id.
            done = connection.execute(
                update(control_operations).where(control_operations.c.id == record["id"]).values(**values)
            )
            if done.rowcount == 0:
                connection.execute(insert(control_operations).values(id=record["id"], **values))
            cutoff = when - timedelta(seconds=KEEP_OPERATIONS_S)
            connection.execute(delete(control_operations).where(control_operations.c.updated_at < cutoff))
        return stamped

    def operation(self, operation_id: str) -> OperationRecord | None:
        if not OPERATION_ID.match(operation_id):
            return None
        self._ensure_tables()
        with self.engine.connect() as connection:
            row = connection.execute(
                select(control_operations.c.record).where(control_operations.c.id == operation_id)
            ).first()
        return None if row is None else dict(json.loads(row.record))


def _serialise_sqlite_writers(engine: Engine) -> None:
    """Each transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE): two changes at once then wait
    for each other and the second sees the first's revision, instead of both reading and one failing to write
    with "database is locked"."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no zone: the value was written in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def control_store(url: str | None, state_dir: Path) -> ControlStore:
    """`INFERENCE_CONTROL_URL` when set (a SQLAlchemy URL), else the server's own state directory."""
    if not url:
        return FileControl(state_dir)
    return SqlControl(url)
